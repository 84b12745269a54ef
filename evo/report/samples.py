"""One score per run at one env-step budget per member, and the rows of a task's table (pure).

**Budget.** Methods are compared at one env-step count per member B: by default the largest one at
which every run was evaluated (``--budget`` picks another). If some run has no evaluation at B the
summary says so, lists the nearest points, and does not call the comparison equal.

A PBT run's score is that of the member selection ranked first (``best_member`` in
``generations.csv``), and a second row (``..., all members``) gives the population's mean, so the
selection effect is visible; a baseline or replay directory gives one score per seed. The
compute-matched row of a baseline (its best of N seeds) is built in :mod:`evo.report.matched`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evo.report.methods import Method
from evo.report.runs import Run, finite


@dataclass
class Budget:
    """The env steps per member at which methods are compared."""

    steps: int
    equal: bool
    """Every run was evaluated at exactly ``steps`` env steps per member."""
    requested: bool = False
    """``steps`` came from ``--budget``."""
    missing: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """Runs without an evaluation at ``steps``: their nearest evaluation points (below, above)."""
    reason: str = ""


def nearest_points(run: Run, steps: int) -> tuple[int | None, int | None]:
    """The run's evaluation points nearest to ``steps``: the largest at or below, the smallest above."""
    below = [p for p in run.evaluation_points if p <= steps]
    above = [p for p in run.evaluation_points if p > steps]
    return (below[-1] if below else None, above[0] if above else None)


def choose_budget(runs: Sequence[Run], requested: int | None = None) -> Budget:
    """``requested`` if given, else the largest env-step count that is an evaluation point of every
    run; if there is none, the largest count every run reached, marked as not equal."""
    common = set.intersection(*(set(r.evaluation_points) for r in runs))
    if requested is not None:
        steps, reason = int(requested), f"--budget {requested} is not an evaluation point of every run"
    elif common:
        return Budget(steps=max(common), equal=True)
    else:
        steps = min(r.evaluation_points[-1] for r in runs)
        reason = "no env-step count per member is an evaluation point of every run"
    missing = {r.label: nearest_points(r, steps) for r in runs if steps not in r.evaluation_points}
    return Budget(steps=steps, equal=not missing, requested=requested is not None, missing=missing,
                  reason=reason if missing else "")


def steps_for(run: Run, budget: Budget) -> int | None:
    """The evaluation point used for ``run``: the budget itself, else the nearest one below it (a run
    never gets more env steps than the budget); None if the run has none at or below it."""
    return budget.steps if budget.steps in run.evaluation_points else nearest_points(run, budget.steps)[0]


# -- one score per run at the budget (pure) ---------------------------------------------------------
@dataclass
class Sample:
    """One run's score at the budget."""

    run: str
    score: float
    """NaN if the run (or seed) failed."""
    env_steps: int
    source: str
    """``final_eval`` (fresh episodes after training, summary.json) or ``eval`` (the run's evaluation)."""
    episodes: int | None = None
    """Evaluation episodes behind the score (per member)."""
    members: int = 1
    """Members (or seeds) the run trained for this score: a PBT run's population size, N for a baseline's
    best of N seeds, 1 for one seed."""
    final_seed: int | None = None
    """With ``source == "final_eval"``: the seed of those fresh episodes (summary.json ``final_eval.seed``)."""
    chosen_from: list[str] = field(default_factory=list)
    """A best-of-N sample: the N seeds it was chosen from (the score is that of :attr:`run`)."""


@dataclass
class Entry:
    """One table row: a method's runs on one task (or, for PBT, its population means)."""

    label: str
    method: Method
    variant: str
    """``selected`` (PBT: the member selection ranked first), ``population`` (PBT: the mean of all
    members), ``seeds`` (baseline, replay: every seed) or ``best_of`` (baseline: the best of N seeds,
    :mod:`evo.report.matched`)."""
    task: str
    samples: list[Sample]
    missing: list[str] = field(default_factory=list)
    """Runs left out: no evaluation at or below the budget."""
    selected_on: str = ""
    """``selected`` and ``best_of`` rows: the score the member was chosen on (``train`` or ``test``)."""
    unused: list[str] = field(default_factory=list)
    """``best_of`` rows: seeds left over after the last full group of N."""

    @property
    def scores(self) -> np.ndarray:
        """Finite scores as rliable's ``(num_runs, num_tasks=1)`` array."""
        return np.array([[s.score] for s in self.samples if math.isfinite(s.score)], dtype=np.float64).reshape(-1, 1)

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if not math.isfinite(s.score))

    @property
    def is_baseline(self) -> bool:
        return self.method.is_baseline

    @property
    def compute_matched(self) -> bool:
        """Each run's score is the one member chosen by its selection score out of N trained ones (PBT's
        selected member, random search's, a baseline's best of N seeds), not a member's own score."""
        return self.variant in ("selected", "best_of")

    @property
    def sizes(self) -> list[int]:
        """The distinct members-per-run of the samples (N), ascending."""
        return sorted({s.members for s in self.samples})

    def matches(self, other: Entry) -> bool:
        """Whether a comparison of the two rows is compute-matched: both per member, or both the best
        of the same N."""
        if self.compute_matched != other.compute_matched:
            return False
        return not self.compute_matched or self.sizes == other.sizes


@dataclass
class FinalEval:
    """``summary.json``'s ``final_eval``: every member's score on the same fresh episodes."""

    scores: list[float]
    episodes: int | None
    seed: int | None
    """The episodes' seed (recorded; for old runs that do not record it, derived from their ``--seed``)."""


def final_eval_scores(run: Run, steps: int) -> FinalEval | None:
    """``summary.json``'s ``final_eval``, if the run ended at ``steps``."""
    summary = run.summary or {}
    fe = summary.get("final_eval")
    if not isinstance(fe, Mapping) or not isinstance(fe.get("scores"), list) or not run.evaluation_points:
        return None
    end = summary.get("env_steps_per_member", run.evaluation_points[-1])
    if steps != run.evaluation_points[-1] or end is None or int(end) != steps or len(fe["scores"]) != run.n_members:
        return None
    episodes = fe.get("episodes")
    seed = fe.get("seed")
    if seed is None and run.config.get("seed") is not None:
        from evo.core.seeds import legacy_final_eval_seed

        seed = legacy_final_eval_seed(int(run.config["seed"]))
    return FinalEval([_as_float(v) for v in fe["scores"]], int(episodes) if episodes is not None else None,
                     int(seed) if seed is not None else None)


def _as_float(v: Any) -> float:
    return math.nan if v is None else float(v)


def run_samples(run: Run, variant: str, steps: int, use_final_eval: bool = True) -> list[Sample]:
    """A run's scores at the evaluation point ``steps``: per seed, its selected member, or its mean.

    ``final_eval`` (fresh episodes) replaces the last evaluation for seeds and for the selected member,
    never for the population mean: PBT's final evaluation runs after the last exploit, when the
    members that lost already hold copies of the winners (and a mean over all members has no
    selection bias to remove)."""
    g = run.generation_at(steps)
    members = [int(r["member"]) for r in run.rows_at(g)]
    final = final_eval_scores(run, steps) if use_final_eval and variant != "population" else None
    source = "final_eval" if final is not None else "eval"
    episodes = final.episodes if final is not None else run.config.get("eval_episodes")
    seed = final.seed if final is not None else None

    def score(m: int) -> float:
        return final.scores[m] if final is not None else _as_float(run.row(g, m)["score"])

    if variant == "seeds":
        return [Sample(seed_label(run, m), score(m), steps, source, episodes, final_seed=seed) for m in members]
    n = run.n_members
    if variant == "selected":
        grow = run.generation_row(g) or {}
        best = int(grow["best_member"]) if grow.get("best_member") is not None else -1
        return [Sample(run.label, score(best) if best >= 0 else math.nan, steps, source, episodes, n, seed)]
    vals = finite([score(m) for m in members])
    return [Sample(run.label, float(np.mean(vals)) if vals else math.nan, steps, source, episodes, n, seed)]


def seed_label(run: Run, member: int) -> str:
    """How a baseline seed is named: ``RUN/K``, or ``RUN`` in a one-seed directory."""
    return f"{run.label}/{member}" if run.n_members > 1 else run.label


def build_entries(methods: Sequence[Method], task: str, budget: Budget, use_final_eval: bool = True) -> list[Entry]:
    """The rows of one task's table: per PBT method its selected member and its population mean, per
    baseline or replay method every seed."""
    entries = []
    for m in methods:
        runs = m.runs_on(task)
        if not runs:
            continue
        for variant in (("selected", "population") if m.kind == "pbt" else ("seeds",)):
            samples: list[Sample] = []
            missing = []
            for run in runs:
                steps = steps_for(run, budget)
                if steps is None:
                    missing.append(run.label)
                else:
                    samples += run_samples(run, variant, steps, use_final_eval)
            label = f"{m.label}, all members" if variant == "population" else m.label
            selected_on = runs[0].select_on if variant == "selected" else ""
            entries.append(Entry(label, m, variant, task, samples, missing, selected_on))
    return entries
