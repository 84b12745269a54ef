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


def improvement_cell(iv: Interval | None, n: int, baseline_n: int) -> str:
    return fmt_interval(iv, f"point estimate; {no_ci_why(n, baseline_n)}")


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
    header = ["method", "runs (n)", "env steps per member", *scores,
              *[improvement_header(b.label, columns[b.label]) for b in bases]]
    rows = []
    for e, st in zip(tr.entries, stats, strict=True):
        cells = [e.label, _runs_cell(e), _steps_cell(e), *score_cells(st, with_iqm, "no finite score")]
        cells += ["—" if e.is_baseline else improvement_cell(tr.improvement.get((e.label, b.label)), e.n, b.n)
                  for b in bases]
        rows.append(cells)
    if tr.reference is not None:
        ref = tr.reference
        rows.append(["random policy (reference)", "—", "—", *(["—"] * (len(scores) - 1)),
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
    what = {"selected": "the selected member's score", "population": "the mean over all members",
            "seeds": "each seed's score"}[e.variant]
    parts = []
    if fresh:
        unseen = ", not the episodes selection used" if e.variant == "selected" else ""
        parts.append(f"{len(fresh)} of {len(e.samples)} from fresh episodes after training (summary.json "
                     f"`final_eval`, {_episodes(fresh)} episodes each){unseen}")
    if stale:
        caveat = (": the same episodes the member was selected on, so **optimistic** (the best of several noisy "
                  "scores)" if e.variant == "selected" else "")
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


def task_notes(tr: TaskReport, reps: int, seed: int) -> list[str]:
    notes = [source_note(e) for e in tr.entries if e.samples]
    notes.append("*runs (n)*: independent runs. A PBT run directory is one run whatever its population size; a "
                 "baseline directory launched with `mpiexec -n K` holds K seeds, each one run.")
    if any(e.variant == "population" for e in tr.entries):
        notes.append("*…, all members*: the mean score of all members of each PBT run, without picking the best; "
                     "its gap to the row above is the selection effect. It always comes from the members' own "
                     "evaluation: a run's `final_eval` is taken after its last exploit, when the losers already "
                     "hold copies of the winners.")
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


def comparison_blocks(tr: TaskReport, reps: int, seed: int, several: bool) -> list[Block]:
    title = "Did PBT beat the baseline?" + (f" {tr.task}" if several else "")
    return [Heading(2, title), Para(budget_text(tr)), method_table(tr), Bullets(task_notes(tr, reps, seed))]


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
    for (label, m), st in zip(ac.scores.items(), stats, strict=True):
        rows.append([label, str(m.shape[0]), *score_cells(st, len(scores) == 3),
                     *["—" if label in ac.baselines else
                       improvement_cell(ac.improvement.get((label, b)), m.shape[0], ac.scores[b].shape[0])
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
