"""Statistics over runs (rliable), honest about small samples.

Scores come as rliable's ``(num_runs, num_tasks)`` arrays. With :data:`MIN_RUNS_FOR_CI` or more runs a
method is summarised by its interquartile mean (IQM) with a stratified-bootstrap 95 % CI (percentile
method, seeded), as rliable recommends (Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice"). With fewer runs there is no IQM and no interval: the IQM of 4 or fewer runs trims at most
one run from each end (with 3 it trims none and equals the mean), and a percentile bootstrap over so few
runs can only return their range; the report shows the median and the range (min to max) instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from evo.errors import EvoError

MIN_RUNS_FOR_CI = 5
"""Fewest runs (of a method on a task, and on each side of P(improvement)) with an IQM and a CI."""
SMALL_N_REASON = f"fewer than {MIN_RUNS_FOR_CI} runs: no confidence interval; median and range shown"
"""The one sentence the report gives wherever it shows no interval because of too few runs."""

IQM, MEDIAN, MEAN, IMPROVEMENT = "iqm", "median", "mean", "probability_of_improvement"
"""Names of the statistics, as ``report.json`` writes them."""


@dataclass
class Interval:
    """A point estimate, which statistic it is, and its 95 % confidence interval (None where there is none)."""

    statistic: str
    """:data:`IQM`, :data:`MEDIAN`, :data:`MEAN` or :data:`IMPROVEMENT`."""
    value: float
    low: float | None = None
    high: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.low is not None and self.high is not None


@dataclass
class MethodStats:
    """A method's run scores: median, mean and range always; the IQM and CIs only with enough runs."""

    n: int
    median: Interval
    mean: Interval
    low: float
    """The lowest run score."""
    high: float
    """The highest run score."""
    iqm: Interval | None = None
    """None below :data:`MIN_RUNS_FOR_CI` runs."""

    @property
    def statistic(self) -> str:
        """The headline statistic: :data:`IQM` with enough runs, else :data:`MEDIAN`."""
        return IQM if self.iqm is not None else MEDIAN

    @property
    def headline(self) -> Interval:
        return self.iqm if self.iqm is not None else self.median


def enough_runs(*n: int) -> bool:
    """Whether every sample has enough runs for an IQM and a CI."""
    return min(n) >= MIN_RUNS_FOR_CI


def _rliable() -> tuple[Any, Any]:
    try:
        from rliable import library, metrics
    except Exception as exc:  # rliable 1.2 imports arch, and arch 7 does not import under pandas 3
        raise EvoError(f"cannot import rliable ({type(exc).__name__}: {exc}); with rliable 1.2 this is arch 7 "
                       f"under pandas 3: pip install 'pandas<3'") from None
    return library, metrics


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws from numpy's global generator: seed it, and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _aggregates(scores: np.ndarray) -> np.ndarray:
    _, metrics = _rliable()
    return np.array([metrics.aggregate_iqm(scores), np.median(scores), metrics.aggregate_mean(scores)])


def aggregate_stats(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> MethodStats | None:
    """Median, mean and range of a ``(num_runs, num_tasks)`` array; with :data:`MIN_RUNS_FOR_CI` runs or
    more also the IQM, and stratified-bootstrap 95 % CIs (percentile method, ``reps`` resamples, seeded)
    of all three. None with no run."""
    if scores.size == 0:
        return None
    n = int(scores.shape[0])
    low, high = float(np.min(scores)), float(np.max(scores))
    if not enough_runs(n):  # the mean as rliable's aggregate_mean takes it: per task over runs, then over tasks
        return MethodStats(n, Interval(MEDIAN, float(np.median(scores))),
                           Interval(MEAN, float(np.mean(np.mean(scores, axis=0)))), low, high)
    point = _aggregates(scores)
    library, _ = _rliable()
    with seeded_numpy(seed):
        _, cis = library.get_interval_estimates({"m": scores}, _aggregates, reps=reps)
    iqm, median, mean = (Interval(name, float(v), float(a), float(b))
                         for name, v, a, b in zip((IQM, MEDIAN, MEAN), point, *np.asarray(cis["m"]), strict=True))
    return MethodStats(n, median, mean, low, high, iqm)


def improvement_probability(x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0) -> Interval | None:
    """P(X > Y): the probability that a run of X scores higher than a run of Y (ties count half). With
    :data:`MIN_RUNS_FOR_CI` runs or more on both sides, with a stratified-bootstrap 95 % CI resampling
    both independently; otherwise the point estimate alone (the fraction of all pairs of runs X wins)."""
    if x.size == 0 or y.size == 0:
        return None
    library, metrics = _rliable()
    p = float(metrics.probability_of_improvement(x, y))
    if not enough_runs(x.shape[0], y.shape[0]):
        return Interval(IMPROVEMENT, p)
    with seeded_numpy(seed):
        _, cis = library.get_interval_estimates({"p": [x, y]}, metrics.probability_of_improvement, reps=reps)
    lo, hi = np.ravel(cis["p"])
    return Interval(IMPROVEMENT, p, float(lo), float(hi))


def score_profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = 2000,
                   seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method: the fraction of its runs scoring above each threshold in ``taus`` (rliable's score
    distribution) and its ``(2, len(taus))`` bootstrap CI (meaningful from :data:`MIN_RUNS_FOR_CI` runs)."""
    library, _ = _rliable()
    out = {}
    for label, s in scores.items():
        if s.size == 0:
            continue
        with seeded_numpy(seed):
            prof, cis = library.create_performance_profile({label: s}, taus, reps=reps)
        out[label] = (np.asarray(prof[label]), np.asarray(cis[label]))
    return out
