"""Exploit + explore as one pure decision, and PB2's data (pure: no MPI, no SB3).

:func:`decide` is what the synchronous schedule's root runs once per generation; the
asynchronous coordinator runs the same rule per member (see :mod:`evo.loop.coordinator`) and the
same :func:`explore_from` per receiver. Both take the run's cost cap (``--max-cost-ratio``,
:class:`~evo.core.cost.CostLimit`): no receiver's explored hyperparameters cost more than its cap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evo.core import seeds
from evo.core.cost import CostLimit
from evo.core.rules import get_rule
from evo.core.space import HParams, Space, explore

if TYPE_CHECKING:  # PB2 needs scikit-learn: imported only when --explore pb2 is used
    from evo.core.pb2 import Observation


@dataclass(frozen=True)
class Decision:
    """One exploit + explore: ``receiver`` copies ``donor`` and explores from its hparams."""

    generation: int
    receiver: int
    donor: int
    receiver_score: float
    donor_score: float
    hparams_before: HParams
    donor_hparams: HParams
    hparams_after: HParams
    changes: dict[str, Any] = field(default_factory=dict)


def explore_from(donor_hparams: Mapping[str, Any], space: Space, seed: int, generation: int, receiver: int,
                 method: str = "perturb", history: Sequence[Observation] = (),
                 pending: Sequence[Mapping[str, Any]] = (), *, limit: CostLimit | None = None,
                 population: Sequence[Mapping[str, Any]] = ()) -> tuple[HParams, dict[str, Any]]:
    """A receiver's new hyperparameters: PBT's perturbation, or PB2's GP bandit fitted on
    ``history`` (``pending``: the choices already made this round). The rng is
    ``(seed, EXPLORE, generation, receiver)``. With a cost ``limit`` and ``population`` (every
    member's hyperparameters for its next interval, by member; the receiver's own is replaced), no
    member of the population the receiver joins costs more than the cap (:meth:`CostLimit.clamp`;
    it draws no random number)."""
    rng = seeds.explore_rng(seed, generation, receiver)
    if method == "pb2":
        from evo.core.pb2 import pb2_explore

        new, changes = pb2_explore(donor_hparams, space, rng, history, float(generation), list(pending))
    else:
        new, changes = explore(donor_hparams, space, rng)
    if limit is None:
        return new, changes
    return limit.clamp(new, space, [hp for i, hp in enumerate(population) if i != receiver], changes)


def decide(rule: str, generation: int, scores: Sequence[float], hparams: Sequence[Mapping[str, Any]],
           space: Space, quantile: float, seed: int, method: str = "perturb",
           history: Sequence[Observation] = (), *, limit: CostLimit | None = None) -> list[Decision]:
    """Select who copies whom (``rule``), and explore every receiver's new hyperparameters.

    A pure function of its arguments: the selection rng is ``(seed, SELECT, generation)`` and each
    receiver's explore rng ``(seed, EXPLORE, generation, receiver)``; PB2 explores receivers in
    order, each one's choice pending for the next. With a cost ``limit``, receivers are capped in
    order, each against the population as the earlier ones left it.
    """
    transfers = get_rule(rule).plan(scores, quantile, seeds.selection_rng(seed, generation))
    out: list[Decision] = []
    population = [dict(hp) for hp in hparams]
    for t in transfers:
        new, changes = explore_from(hparams[t.donor], space, seed, generation, t.receiver, method, history,
                                    [d.hparams_after for d in out], limit=limit, population=population)
        population[t.receiver] = new
        out.append(Decision(generation, t.receiver, t.donor, float(scores[t.receiver]), float(scores[t.donor]),
                            dict(hparams[t.receiver]), dict(hparams[t.donor]), new, changes))
    return out


def observation(generation: int, member: int, hparams: Mapping[str, Any], score: float,
                start: Mapping[int, float]) -> Observation | None:
    """PB2's datum of one member's interval: its change in score, with the hparams it trained
    with (``start[member]``: its own previous score, or its donor's after a copy)."""
    from evo.core.pb2 import Observation

    if member not in start or not math.isfinite(score) or not math.isfinite(start[member]):
        return None
    return Observation(float(generation), dict(hparams), float(score) - start[member], member)


def pb2_observations(generation: int, scores: Sequence[float], hparams: Sequence[Mapping[str, Any]],
                     start: Mapping[int, float]) -> list[Observation]:
    """Every member's :func:`observation` of one generation."""
    found = (observation(generation, m, hparams[m], scores[m], start) for m in range(len(scores)))
    return [o for o in found if o is not None]


def next_start_scores(scores: Sequence[float], decisions: Sequence[Decision]) -> dict[int, float]:
    """Where each member's next interval starts from: its own score, or its donor's after a copy."""
    start = dict(enumerate(float(s) for s in scores))
    start.update({d.receiver: d.donor_score for d in decisions})
    return start
