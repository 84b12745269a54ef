"""Compute-matched rows: a baseline's best of N seeds, set beside PBT runs of N members (pure).

A PBT run's selected member is the best of N members that together trained N x B env steps; one
baseline seed trained B. So a PBT run is compared fairly with the baseline drawn N times and kept
the way PBT keeps its member: the seed with the highest selection score (``--select-on``: the
training-level score, or the held-out one) at its last evaluation at or below the budget, ranked by
:func:`evo.core.selection.best_member` (non-finite scores last, ties to the lower index), and scored
like PBT's selected member (on its final evaluation's fresh episodes where its run ended at the
budget, else on that evaluation).

Draws: a baseline method's seeds in seed order (its runs by ``--seed``, then name; in a run, by
member index) cut into disjoint groups of N. Each full group is one run of the method "best of N
seeds", so K seeds give ``K // N`` runs; the seeds after the last full group are left out and named.
One such row per baseline method and per population size N of the task's PBT runs (and, where PBT
selected on held-out levels, per selection score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from evo.core.selection import best_member
from evo.report.methods import Method
from evo.report.runs import Run
from evo.report.samples import Budget, Entry, Sample, run_samples, steps_for


@dataclass
class TooFew:
    """A baseline method with fewer seeds than a PBT population: no best-of-N row for it."""

    baseline: str
    seeds: int
    size: int


@dataclass
class Seed:
    """One baseline seed at the budget: its score as the table uses it and the score it is chosen on."""

    sample: Sample
    selection: float


def seed_order(runs: Sequence[Run]) -> list[Run]:
    """A method's runs in seed order: by ``--seed``, then by name."""
    return sorted(runs, key=lambda r: (int(r.config.get("seed") or 0), r.label))


def _selection(row: dict, select_on: str) -> float:
    v = row.get("test_score") if select_on == "test" else row.get("score")
    return math.nan if v is None else float(v)


def baseline_seeds(method: Method, task: str, budget: Budget, select_on: str,
                   use_final_eval: bool = True) -> tuple[list[Seed], list[str]]:
    """Every seed of a baseline method at the budget, in seed order; and the runs with no evaluation
    at or below the budget (left out)."""
    seeds, missing = [], []
    for run in seed_order(method.runs_on(task)):
        steps = steps_for(run, budget)
        if steps is None:
            missing.append(run.label)
            continue
        rows = run.rows_at(run.generation_at(steps))
        samples = run_samples(run, "seeds", steps, use_final_eval)
        seeds += [Seed(s, _selection(r, select_on)) for r, s in zip(rows, samples, strict=True)]
    return seeds, missing


def best_of(group: Sequence[Seed]) -> Sample:
    """The seed PBT's rule keeps out of ``group``, as one sample of N members (NaN if every one failed)."""
    sel = [s.selection for s in group]
    names = [s.sample.run for s in group]
    if all(math.isnan(v) for v in sel):
        first = group[0].sample
        return Sample(first.run, math.nan, first.env_steps, first.source, first.episodes, len(group),
                      chosen_from=names)
    won = group[best_member(sel)].sample
    return Sample(won.run, won.score, won.env_steps, won.source, won.episodes, len(group), won.final_seed, names)


def best_of_entry(method: Method, task: str, budget: Budget, size: int, select_on: str,
                  use_final_eval: bool = True) -> Entry | None:
    """The row ``<baseline>, best of N seeds``; None if the method has fewer than N seeds at the budget."""
    on = select_on
    if select_on == "test" and not any(r.has_test for r in method.runs_on(task)):
        on = "train"  # the baseline was not evaluated on held-out levels: the training-level score
    seeds, missing = baseline_seeds(method, task, budget, on, use_final_eval)
    if len(seeds) < size:
        return None
    full = len(seeds) // size * size
    samples = [best_of(seeds[i:i + size]) for i in range(0, full, size)]
    label = f"{method.label}, best of {size} seeds" + (", on held-out levels" if on == "test" else "")
    return Entry(label, method, "best_of", task, samples, missing, selected_on=on,
                 unused=[s.sample.run for s in seeds[full:]])


def population_sizes(entries: Sequence[Entry]) -> list[tuple[int, str]]:
    """``(N, select_on)`` of the task's PBT selected rows, in order of appearance."""
    out: dict[tuple[int, str], None] = {}
    for e in entries:
        if e.variant == "selected":
            for n in e.sizes:
                out[(n, e.selected_on or "train")] = None
    return list(out)


def add_matched(entries: list[Entry], task: str, budget: Budget,
                use_final_eval: bool = True) -> tuple[list[Entry], list[TooFew]]:
    """``entries`` with a best-of-N row after each baseline's per-seed row, one per PBT population size
    (and selection score); and the baselines with too few seeds for one."""
    sizes = population_sizes(entries)
    out: list[Entry] = []
    too_few: list[TooFew] = []
    for e in entries:
        out.append(e)
        if e.variant != "seeds" or not e.is_baseline:
            continue
        for size, select_on in sizes:
            row = best_of_entry(e.method, task, budget, size, select_on, use_final_eval)
            if row is None:
                if all((t.baseline, t.size) != (e.label, size) for t in too_few):
                    too_few.append(TooFew(e.label, len(e.samples), size))
            elif all(x.label != row.label for x in out):
                out.append(row)
    return out, too_few
