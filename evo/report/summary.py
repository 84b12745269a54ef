"""The summary: per task, the methods table and what its numbers are; over several tasks, the
normalised comparison; then the per-run part and the plots (``summary.md`` and ``index.html``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from evo.report.blocks import Block, Bullets, Heading, Image, Para, Table, render_text_table
from evo.report.compare import AcrossTasks, TaskReport
from evo.report.fmt import fmt_interval, fmt_median_range, fmt_score, no_ci_why
from evo.report.per_run import per_run_blocks
from evo.report.runs import Run
from evo.report.samples import Entry, Sample
from evo.report.stats import MIN_RUNS_FOR_CI, SMALL_N_REASON, Interval, MethodStats

FEW_RUNS_CELL = f"— (fewer than {MIN_RUNS_FOR_CI} runs)"
"""The IQM cell of a row with too few runs, where other rows have enough."""


# -- cells shared by the per-task and the across-tasks tables -------------------------------------
def score_header(stats: Sequence[MethodStats | None]) -> list[str]:
    """The score columns: ``IQM [95% CI]`` only if some row has enough runs for it, then the median with
    the range of the run scores, and the mean."""
    iqm = any(st is not None and st.iqm is not None for st in stats)
    return [*(["IQM [95% CI]"] if iqm else []), "median (min to max)", "mean"]


def score_cells(st: MethodStats | None, with_iqm: bool, empty: str = "—") -> list[str]:
    """A row's cells under :func:`score_header`; ``empty`` in the first one if it has no finite score."""
    if st is None:
        return [empty, *(["—"] * (2 if with_iqm else 1))]
    iqm = [fmt_interval(st.iqm) if st.iqm is not None else FEW_RUNS_CELL] if with_iqm else []
    return [*iqm, fmt_median_range(st), fmt_score(st.mean.value)]


def improvement_header(baseline: str, cells: Sequence[Interval | None]) -> str:
    """``P(improvement over B)``, with ``[95% CI]`` only if some cell of the column has one."""
    ci = " [95% CI]" if any(iv is not None and iv.has_ci for iv in cells) else ""
    return f"P(improvement over {baseline}){ci}"


NOT_MATCHED = "not compute-matched"
"""Said in a P(improvement) cell whose row and baseline spend different compute per run."""


def improvement_cell(iv: Interval | None, n: int, baseline_n: int, matched: bool = True) -> str:
    if iv is not None and iv.has_ci:
        return fmt_interval(iv) + ("" if matched else f" ({NOT_MATCHED})")
    return fmt_interval(iv, f"point estimate; {no_ci_why(n, baseline_n)}" + ("" if matched else f"; {NOT_MATCHED}"))


def _ticks(labels: Sequence[str]) -> str:
    return ", ".join(f"`{x}`" for x in labels)


# -- one task ---------------------------------------------------------------------------------------
def _runs_cell(e: Entry) -> str:
    extra = []
    if e.failed:
        extra.append(f"{e.failed} failed, left out")
    if e.missing:
        extra.append(f"{len(e.missing)} not evaluated by the budget, left out")
    return f"{e.n}" + (f" ({'; '.join(extra)})" if extra else "")


def _size_text(e: Entry) -> str:
    sizes = e.sizes
    return "" if not sizes else str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"


def members_cell(e: Entry) -> str:
    """Members trained per run for one score: ``best of 4`` (compute-matched), ``mean of 4``, ``1``."""
    n = _size_text(e)
    if not n:
        return "—"
    if e.compute_matched:
        return f"best of {n}"
    return f"mean of {n}" if e.variant == "population" else n


def _steps_cell(e: Entry) -> str:
    steps = sorted({s.env_steps for s in e.samples})
    if not steps:
        return "—"
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]} (differs)"


def method_table(tr: TaskReport) -> Table:
    """The per-method table of one task: n, env steps, IQM [CI] (rows with enough runs), median (min to
    max), mean, P(improvement) over each baseline."""
    bases = tr.baselines
    stats = [tr.stats.get(e.label) for e in tr.entries]
    scores = score_header(stats)
    with_iqm = len(scores) == 3
    columns = {b.label: [tr.improvement.get((e.label, b.label)) for e in tr.entries] for b in bases}
    header = ["method", "runs (n)", "members per run", "env steps per member", *scores,
              *[improvement_header(b.label, columns[b.label]) for b in bases]]
    rows = []
    for e, st in zip(tr.entries, stats, strict=True):
        cells = [e.label, _runs_cell(e), members_cell(e), _steps_cell(e), *score_cells(st, with_iqm, "no finite score")]
        cells += ["—" if e.is_baseline else
                  improvement_cell(tr.improvement.get((e.label, b.label)), e.n, b.n, e.matches(b)) for b in bases]
        rows.append(cells)
    if tr.reference is not None:
        ref = tr.reference
        rows.append(["random policy (reference)", "—", "—", "—", *(["—"] * (len(scores) - 1)),
                     f"{fmt_score(ref.score)} (mean of {ref.episodes} episodes)", *(["—"] * len(bases))])
    return Table(header, rows, right=1)


def budget_text(tr: TaskReport) -> str:
    b = tr.budget
    if b.equal:
        how = "chosen with --budget" if b.requested else "the largest env-step count at which every run was evaluated"
        return f"Methods compared at an equal budget of **{b.steps} env steps per member**: {how}."
    lacking = "; ".join(f"`{run}` (nearest evaluations: {_opt(lo)} below, {_opt(hi)} above)"
                        for run, (lo, hi) in b.missing.items())
    return (f"**Budgets differ: this is not a comparison at one budget.** {b.reason[0].upper()}{b.reason[1:]}. "
            f"Target: {b.steps} env steps per member. Runs without an evaluation at {b.steps}: {lacking}. "
            f"Their scores come from their last evaluation below {b.steps} (the *env steps per member* column "
            f"shows which); a run with none is left out.")


def _opt(v: int | None) -> str:
    return "none" if v is None else str(v)


def _episodes(samples: Sequence[Sample]) -> str:
    return "/".join(str(e) for e in sorted({s.episodes for s in samples if s.episodes is not None})) or "?"


def source_note(e: Entry) -> str:
    """Which score a row uses, and whether it is optimistic."""
    fresh = [s for s in e.samples if s.source == "final_eval"]
    stale = [s for s in e.samples if s.source != "final_eval"]
    on = {"train": "training-level", "test": "held-out"}.get(e.selected_on, e.selected_on)
    what = {"selected": "the selected member's score", "population": "the mean over all members",
            "seeds": "each seed's score",
            "best_of": f"per group of {_size_text(e)} seeds, the score of the seed with the best {on} score "
                       f"at the last evaluation (the rule PBT picks its member by)"}[e.variant]
    parts = []
    if fresh:
        unseen = ", not the episodes selection used" if e.compute_matched else ""
        parts.append(f"{len(fresh)} of {len(e.samples)} from fresh episodes after training (summary.json "
                     f"`final_eval`, {_episodes(fresh)} episodes each){unseen}")
    if stale:
        caveat = (": the same episodes the member was selected on, so **optimistic** (the best of several noisy "
                  "scores)" if e.compute_matched else "")
        parts.append(f"{len(stale)} of {len(e.samples)} from the evaluation at the budget ({_episodes(stale)} "
                     f"episodes){caveat}")
    return f"`{e.label}`: {what}; " + "; ".join(parts) + "."


def statistics_notes(stats: Sequence[MethodStats | None], few: Sequence[str], reps: int, seed: int,
                     improvement: bool) -> list[str]:
    """What the score and P(improvement) columns are; ``few``: the rows with too few runs for a CI."""
    notes = []
    if any(st is not None and st.iqm is not None for st in stats):
        notes.append(f"*IQM*: interquartile mean of the run scores (the mean of the middle 50 %; rliable), robust "
                     f"to one outlier run; given from {MIN_RUNS_FOR_CI} runs. *[95% CI]*: stratified bootstrap over "
                     f"runs, percentile method, {reps} resamples, seed {seed}.")
    notes.append("*median (min to max)*: the median of the run scores and their range; *mean*: their mean.")
    if few:
        notes.append(f"{_ticks(few)}: {SMALL_N_REASON[0].upper()}{SMALL_N_REASON[1:]} (a bootstrap over so few runs "
                     f"only restates their range). Run more seeds before drawing conclusions.")
    if improvement:
        notes.append(f"*P(improvement over B)*: the probability that a run of the row's method scores higher than a "
                     f"run of B (ties count half; rliable); 0.5 means no difference. With {MIN_RUNS_FOR_CI} or more "
                     f"runs on both sides it has a 95% CI that resamples both methods' runs independently; with "
                     f"fewer on either side it is a *point estimate* (the share of all pairs of runs the row's method "
                     f"wins) without an interval, a description of these runs and not a test.")
    return notes


def compute_notes(tr: TaskReport) -> list[str]:
    """Which rows are compute-matched, how the best-of-N rows draw their seeds, and which baselines have too few."""
    matched = [e.label for e in tr.entries if e.compute_matched]
    per_member = [e.label for e in tr.entries if not e.compute_matched]
    notes = [f"*members per run*: how many members (or seeds) each run trained, each for the budget, behind its one "
             f"score. *Compute-matched* rows (*best of N*: the one member of N kept by the selection score at the "
             f"last evaluation; compare them with each other at equal N): {_ticks(matched) or 'none'}. This covers "
             f"PBT's selected member, random search's (PBT without exchange) and a baseline's best of N seeds. "
             f"*Per-member* rows (one seed, or the mean of a population's members): {_ticks(per_member) or 'none'}."
             + (f" A P(improvement) between rows of different kinds is marked *{NOT_MATCHED}*: the best of N noisy "
                f"members beats a single seed with no PBT at all." if tr.baselines else "")]
    for e in tr.entries:
        if e.variant == "best_of":
            n = _size_text(e)
            left = f"; left out (after the last full group): {_ticks(e.unused)}" if e.unused else ""
            notes.append(f"`{e.label}`: the baseline's seeds in seed order (runs by --seed, then name; seeds by index) "
                         f"cut into disjoint groups of {n}, each group one run of this method ({len(e.samples)} "
                         f"from {len(e.samples) * e.sizes[0] + len(e.unused)} seeds){left}.")
            episodes = episodes_note(tr, e)
            if episodes:
                notes.append(episodes)
    for t in tr.too_few:
        notes.append(f"`{t.baseline}` has {t.seeds} seed(s), fewer than the population size {t.size}: no "
                     f"compute-matched best-of-{t.size} row. Train {t.size} or more seeds (`mpiexec -n {t.size} "
                     f"python -m evo.baseline ...`, or several baseline runs of one method).")
    return notes


def _fresh_seeds(e: Entry) -> set[int | None] | None:
    """The final-evaluation seeds behind a row's scores; None unless every score is from ``final_eval``."""
    if not e.samples or any(s.source != "final_eval" for s in e.samples):
        return None
    return {s.final_seed for s in e.samples}


def episodes_note(tr: TaskReport, best: Entry) -> str | None:
    """Whether the best-of-N row and the PBT rows of the same N were scored on the same fresh episodes."""
    ours = _fresh_seeds(best)
    out = []
    for e in tr.entries:
        theirs = _fresh_seeds(e)
        if e.variant != "selected" or e.sizes != best.sizes or ours is None or theirs is None:
            continue
        if theirs == ours and None not in ours:
            out.append(f"`{e.label}` and `{best.label}` are scored on the same fresh episodes (final-evaluation "
                       f"seed {', '.join(str(x) for x in sorted(x for x in ours if x is not None))}).")
        else:
            def seeds(xs: Any) -> str:
                return ", ".join(str(x) for x in sorted(x for x in xs if x is not None))

            out.append(f"`{e.label}` and `{best.label}` are **not** scored on the same fresh episodes: their "
                       f"final-evaluation seeds differ ({seeds(theirs)} vs {seeds(ours)}; runs made before evo "
                       f"shared one set of fresh episodes across runs drew them from their own --seed). Both are "
                       f"unbiased (no selection saw them) but not paired, so their difference includes the luck "
                       f"of the episodes; rerun the older runs to pair them.")
    return " ".join(out) or None


def intro_text(tr: TaskReport) -> str | None:
    """What the table shows when it cannot say whether PBT beat a baseline."""
    pbt = any(e.method.kind == "pbt" for e in tr.entries)
    if tr.baselines and pbt:
        return None
    missing = "no baseline run" if not tr.baselines else "no PBT run"
    add = ("add a baseline run (`python -m evo.baseline` under `mpiexec -n N`, N at least the population size, also "
           "gives the compute-matched best-of-N row)" if not tr.baselines else "add a PBT run of the same task")
    return (f"There is {missing} among the inputs, so the table shows what each method scored at the budget and "
            f"does not say whether PBT beat a baseline; for that, {add}.")


def task_notes(tr: TaskReport, reps: int, seed: int) -> list[str]:
    notes = [source_note(e) for e in tr.entries if e.samples]
    notes.append("*runs (n)*: independent runs. A PBT run directory is one run whatever its population size; a "
                 "baseline directory launched with `mpiexec -n K` holds K seeds, each one run (and K // N runs of "
                 "its best of N seeds).")
    notes += compute_notes(tr)
    if any(e.variant == "population" for e in tr.entries):
        notes.append("*…, all members*: the mean score of all members of each PBT run, without picking the best; "
                     "its gap to the row above is the selection effect. It comes from the members' own evaluation "
                     "at the budget (the episodes selection saw: a mean over every member picks none of them, so "
                     "those episodes bias it no more than fresh ones would).")
    few = [e.label for e in tr.entries if 0 < e.n < MIN_RUNS_FOR_CI]
    notes += statistics_notes([tr.stats.get(e.label) for e in tr.entries], few, reps, seed, bool(tr.baselines))
    if not tr.baselines:
        notes.append("No baseline run among the inputs, so no probability of improvement.")
    if tr.reference is not None:
        notes.append(f"*random policy*: the mean return of uniformly random actions over {tr.reference.episodes} "
                     f"episodes of the evaluation env (evo.reference; {tr.reference.source}). Scores near it mean "
                     f"nothing was learned.")
    else:
        notes.append("*random policy*: not available (the env could not be built here).")
    return notes


COMPARISON_TITLE = "Did PBT beat the baseline?"
SCORES_TITLE = "Scores at the budget"
"""The section's title without a baseline (or without a PBT run) to compare."""


def comparison_blocks(tr: TaskReport, reps: int, seed: int, several: bool) -> list[Block]:
    intro = intro_text(tr)
    title = (SCORES_TITLE if intro else COMPARISON_TITLE) + (f" {tr.task}" if several else "")
    return [Heading(2, title), *([Para(intro)] if intro else []), Para(budget_text(tr)), method_table(tr),
            Bullets(task_notes(tr, reps, seed))]


# -- several tasks ------------------------------------------------------------------------------------
def across_blocks(ac: AcrossTasks, tasks: Sequence[TaskReport], reps: int = 2000, seed: int = 0) -> list[Block]:
    head: list[Block] = [Heading(2, f"All {len(tasks)} tasks together")]
    if not ac.scores:
        return [*head, Para(f"No comparison over all tasks: {ac.why_not}.")]
    stats = [ac.stats.get(label) for label in ac.scores]
    scores = score_header(stats)
    columns = {b: [ac.improvement.get((label, b)) for label in ac.scores] for b in ac.baselines}
    header = ["method", "runs per task (n)", *scores, *[improvement_header(b, columns[b]) for b in ac.baselines]]
    rows = []
    first = {e.label: e for e in tasks[0].entries}
    for (label, m), st in zip(ac.scores.items(), stats, strict=True):
        rows.append([label, str(m.shape[0]), *score_cells(st, len(scores) == 3),
                     *["—" if label in ac.baselines else
                       improvement_cell(ac.improvement.get((label, b)), m.shape[0], ac.scores[b].shape[0],
                                        first[label].matches(first[b]))
                       for b in ac.baselines]])
    note = (f"Scores normalised per task: 0 = the random policy, 1 = the best run of any method on that task at "
            f"its budget; tasks: {', '.join(tr.task for tr in tasks)}. rliable's statistics run over the "
            f"(runs × tasks) array, resampling runs within each task; a method with fewer runs on some task uses "
            f"that many (its first runs) on every task.")
    few = [label for label, m in ac.scores.items() if m.shape[0] < MIN_RUNS_FOR_CI]
    return [*head, Table(header, rows), Bullets([note, *statistics_notes(stats, few, reps, seed, bool(ac.baselines))])]


# -- the whole summary --------------------------------------------------------------------------------
def report_blocks(tasks: Sequence[TaskReport], runs: Sequence[Run], stats: Sequence[dict[str, Any]],
                  plots: Mapping[str, Sequence[str]], reps: int, seed: int,
                  across: AcrossTasks | None = None) -> list[Block]:
    """The whole summary (``summary.md`` and ``index.html`` differ only in rendering)."""
    blocks: list[Block] = [Heading(1, "evo report")]
    for tr in tasks:
        blocks += comparison_blocks(tr, reps, seed, several=len(tasks) > 1)
    if across is not None:
        blocks += across_blocks(across, tasks, reps, seed)
    blocks += per_run_blocks(runs, stats)
    blocks.append(Heading(2, "Plots"))
    blocks += [Image(f, title) for title, files in plots.items() for f in files]
    return blocks


def text_summary(tasks: Sequence[TaskReport]) -> str:
    """The method tables for stdout."""
    parts = []
    for tr in tasks:
        budget = re.sub(r"\*\*|`", "", budget_text(tr))
        parts.append(f"{tr.task}: {budget}\n{render_text_table(method_table(tr))}")
    return "\n\n".join(parts)
