"""One task's comparison (budget, rows, statistics, P(improvement), the random-policy reference) and
the comparison over several tasks on normalised scores."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from evo.report.matched import TooFew, add_matched
from evo.report.methods import Method
from evo.report.runs import PROG, Run
from evo.report.samples import Budget, Entry, build_entries, choose_budget
from evo.report.stats import Interval, MethodStats, aggregate_stats, improvement_probability


@dataclass
class Reference:
    """What uniformly random actions score on a task's evaluation env."""

    score: float
    episodes: int
    source: str


def stored_reference(runs: Sequence[Run]) -> Reference | None:
    """The ``random_policy`` entries of the runs' ``config.json``; distinct measurements (other seeds,
    other episode counts) are pooled, weighted by their episodes."""
    found: dict[str, tuple[float, int]] = {}
    for run in runs:
        rp = run.meta.get("random_policy")
        if isinstance(rp, Mapping) and rp.get("score") is not None and rp.get("episodes"):
            score, episodes = float(rp["score"]), int(rp["episodes"])
            found[repr((score, episodes))] = (score, episodes)  # one measurement, however many runs repeat it
    if not found:
        return None
    total = sum(e for _, e in found.values())
    mean = sum(s * e for s, e in found.values()) / total
    return Reference(mean, total, f"stored in config.json ({len(found)} distinct measurement(s))")


def task_reference(runs: Sequence[Run], episodes: int | None = None) -> Reference | None:
    """The stored reference, else :func:`evo.reference.random_policy_score` on the first run's config
    (``episodes`` or its ``eval_episodes``, its seed). None (with a warning) if the env cannot be built."""
    if episodes is None:
        stored = stored_reference(runs)
        if stored is not None:
            return stored
    from evo.reference import random_policy_score

    cfg = runs[0].config
    n = int(episodes or cfg.get("eval_episodes") or 10)
    try:
        score = random_policy_score(cfg, n, int(cfg.get("seed", 0)))
    except Exception as exc:  # e.g. ProcGen missing on this machine: the report goes on without it
        print(f"{PROG}: warning: no random-policy reference for {runs[0].task}: {exc}", file=sys.stderr)
        return None
    return Reference(score, n, f"computed now from {runs[0].label}'s config.json")


# -- one task's comparison ------------------------------------------------------------------------
@dataclass
class TaskReport:
    task: str
    runs: list[Run]
    budget: Budget
    entries: list[Entry]
    stats: dict[str, MethodStats | None]
    improvement: dict[tuple[str, str], Interval | None]
    """``(entry label, baseline label)`` -> P(entry > baseline)."""
    reference: Reference | None
    too_few: list[TooFew] = field(default_factory=list)
    """Baselines with fewer seeds than a PBT population: no best-of-N row for them."""

    @property
    def baselines(self) -> list[Entry]:
        return [e for e in self.entries if e.is_baseline]

    def entry(self, label: str) -> Entry:
        return next(e for e in self.entries if e.label == label)


def compare_task(methods: Sequence[Method], task: str, requested: int | None = None, reps: int = 2000,
                 seed: int = 0, reference: Reference | None = None, use_final_eval: bool = True) -> TaskReport:
    """Budget, rows (with the compute-matched best-of-N baseline rows), statistics and P(improvement)
    of every non-baseline row over every baseline row."""
    runs = [r for m in methods for r in m.runs_on(task)]
    budget = choose_budget(runs, requested)
    entries, too_few = add_matched(build_entries(methods, task, budget, use_final_eval), task, budget,
                                   use_final_eval)
    stats = {e.label: aggregate_stats(e.scores, reps, seed) for e in entries}
    improvement = {(e.label, b.label): improvement_probability(e.scores, b.scores, reps, seed)
                   for e in entries if not e.is_baseline for b in entries if b.is_baseline}
    return TaskReport(task, runs, budget, entries, stats, improvement, reference, too_few)


# -- several tasks: normalised scores (pure) ------------------------------------------------------
def normalised_matrices(tasks: Sequence[TaskReport]) -> tuple[dict[str, np.ndarray], str]:
    """Per row present on every task: rliable's ``(num_runs, num_tasks)`` array of its scores normalised
    per task, 0 = the random policy and 1 = the best run of any method on that task; ``num_runs`` is the
    row's smallest run count over the tasks (its first runs on each). ``({}, why)`` if not possible."""
    scales = []
    for tr in tasks:
        finite = [float(v) for e in tr.entries for v in e.scores[:, 0]]
        if tr.reference is None or not finite or max(finite) <= tr.reference.score:
            return {}, f"{tr.task} has no random-policy reference or no run scoring above it"
        scales.append((tr.reference.score, max(finite)))
    out = {}
    for e in tasks[0].entries:
        rows = [next((x for x in tr.entries if x.label == e.label), None) for tr in tasks]
        cols = [r.scores[:, 0] for r in rows if r is not None]
        n = min(len(c) for c in cols)
        if len(cols) == len(tasks) and n > 0:
            out[e.label] = np.stack([(c[:n] - lo) / (hi - lo) for c, (lo, hi) in zip(cols, scales, strict=True)], 1)
    return out, "" if out else "no method has runs on every task"


@dataclass
class AcrossTasks:
    """Methods compared over several tasks at once, on normalised scores."""

    scores: dict[str, np.ndarray]
    baselines: list[str]
    stats: dict[str, MethodStats | None]
    improvement: dict[tuple[str, str], Interval | None]
    why_not: str = ""


def compare_across(tasks: Sequence[TaskReport], reps: int = 2000, seed: int = 0) -> AcrossTasks:
    scores, why = normalised_matrices(tasks)
    bases = [e.label for e in tasks[0].entries if e.is_baseline and e.label in scores]
    stats = {k: aggregate_stats(v, reps, seed) for k, v in scores.items()}
    improvement = {(k, b): improvement_probability(v, scores[b], reps, seed)
                   for k, v in scores.items() if k not in bases for b in bases}
    return AcrossTasks(scores, bases, stats, improvement, why)
