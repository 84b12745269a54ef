"""Exploit step of PBT: who copies whom. Pure functions of the scores (and a seeded rng).

Every rank computes (or receives) the same plan, so the transport layer only has to move bytes
along it. A plan is a list of :class:`Transfer` ``(receiver, donor)``; a member appears at most
once as a receiver and never as both receiver and donor.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evo.errors import ConfigError


@dataclass(frozen=True, order=True)
class Transfer:
    """``receiver`` takes weights, optimizer state and hyperparameters from ``donor``."""

    receiver: int
    donor: int


def _key(score: float) -> float:
    return score if math.isfinite(score) else -math.inf


def rank_members(scores: Sequence[float]) -> list[int]:
    """Member indices, best first. Non-finite scores (NaN, +/-inf) rank last; ties by index."""
    finite = [i for i, s in enumerate(scores) if math.isfinite(s)]
    failed = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    finite.sort(key=lambda i: (-scores[i], i))
    return finite + failed


def best_member(scores: Sequence[float]) -> int:
    """Index of the best member (lowest index among ties; a failed member only if all failed)."""
    return rank_members(scores)[0]


def validate_quantile(quantile: float) -> None:
    if not (0.0 < quantile <= 0.5) or not math.isfinite(quantile):
        raise ConfigError(f"--quantile must be in (0, 0.5], got {quantile}")


def truncation_size(n: int, quantile: float) -> int:
    """How many members are in the bottom (and top) quantile: ``ceil(n*q)``, at most ``n // 2``."""
    validate_quantile(quantile)
    # round first: 100 * 0.07 is 7.000000000000001 in floating point, and ceil would make it 8
    return min(math.ceil(round(n * quantile, 9)), n // 2)


def plan_wta(scores: Sequence[float]) -> list[Transfer]:
    """Winner takes all: every member but the best copies the best."""
    if len(scores) < 2 or not any(math.isfinite(s) for s in scores):
        return []
    best = best_member(scores)
    return [Transfer(r, best) for r in range(len(scores)) if r != best]


def plan_truncation(scores: Sequence[float], quantile: float, rng: np.random.Generator) -> list[Transfer]:
    """Truncation selection.

    The bottom ``k = truncation_size(n, quantile)`` members, plus any member with a non-finite
    score, each copy a donor drawn from the top ``k``. Donors are drawn without replacement while
    possible (so with only the bottom quantile receiving, every donor sends exactly once), then
    with replacement for extra failed members.
    """
    n = len(scores)
    order = rank_members(scores)
    n_finite = sum(1 for s in scores if math.isfinite(s))
    if n < 2 or n_finite == 0:
        return []
    k = truncation_size(n, quantile)
    top = [i for i in order[:k] if math.isfinite(scores[i])]
    failed = {i for i, s in enumerate(scores) if not math.isfinite(s)}
    receivers = [i for i in order[n - k:] if i not in top]
    receivers += sorted(failed - set(receivers))
    if not top or not receivers:
        return []
    perm = [top[int(i)] for i in rng.permutation(len(top))]
    donors = [perm[j] if j < len(perm) else top[int(rng.integers(len(top)))] for j in range(len(receivers))]
    return sorted(Transfer(r, d) for r, d in zip(receivers, donors, strict=True))


def selection_rng(seed: int, generation: int) -> np.random.Generator:
    """The rng of generation ``generation``'s selection: a pure function of the seed (replayable)."""
    from evo.core.seeds import selection_rng as rng

    return rng(seed, generation)


def explore_rng(seed: int, generation: int, receiver: int) -> np.random.Generator:
    """The rng of one receiver's explore step in one generation."""
    from evo.core.seeds import explore_rng as rng

    return rng(seed, generation, receiver)
