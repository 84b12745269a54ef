"""What the phases of one rank share: its members, writers, transport and the run's settings."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from evo.config import PBTConfig
from evo.core.decide import Decision
from evo.core.space import HParams, Space
from evo.loop.timing import Timeline
from evo.records import TensorBoard
from evo.stop import StopFlag

if TYPE_CHECKING:
    from evo.core.pb2 import Observation
    from evo.learners import Learner, TrainStats


@dataclass
class Slot:
    """One member hosted on this rank, with its TensorBoard writer."""

    member: Learner
    tb: TensorBoard
    failures: int = 0
    """Generations in a row this member failed."""
    broken_envs: bool = False
    """Its training envs raised: rebuilt when it next receives a copy."""
    rebuilds: int = 0

    @property
    def index(self) -> int:
        return self.member.index


@dataclass
class Outcome:
    """What one member did in one generation (or interval): train, then evaluate."""

    slot: Slot
    generation: int
    stats: TrainStats
    hp_used: HParams
    score: float = math.nan
    test_score: float | None = None
    eval_set: int = -1
    """The evaluation episodes the scores were measured on (generation ``g``'s set is ``g``)."""
    eval_s: float = 0.0
    failure: str = ""
    """Why the member failed this generation (empty if it did not)."""
    t0: float = 0.0

    def selection(self, select_on: str) -> float:
        if select_on == "test":
            return math.nan if self.test_score is None else float(self.test_score)
        return self.score


@dataclass
class Population:
    """Rank 0's view of one generation: every member's scores and hyperparameters, by member id."""

    scores: list[float]
    tests: list[float | None]
    selection: list[float]
    hparams: list[HParams]
    decisions: list[Decision] = field(default_factory=list)


@dataclass
class Run:
    """Everything the phases share on one rank."""

    cfg: PBTConfig
    comm: Any
    space: Space
    slots: list[Slot]
    stop: StopFlag
    expected: dict[str, Any]
    schedule: Sequence[Mapping[str, Any]] | None = None
    transport: Any = None
    writers: dict[str, Any] = field(default_factory=dict)
    pop_tb: TensorBoard = field(default_factory=lambda: TensorBoard(None))
    t_run0: float = 0.0
    gen_seconds: list[float] = field(default_factory=list)
    pb2_history: list[Observation] = field(default_factory=list)
    """(rank 0, ``--explore pb2``) every member's change in score per generation, for PB2's GP."""
    pb2_start: dict[int, float] = field(default_factory=dict)
    final_eval: dict[int, float] = field(default_factory=dict)
    """This rank's members scored on unseen episodes after their last generation."""
    lock: Any = None
    timeline: Timeline = field(default_factory=Timeline)
    """This rank's phase marks and spans (summary.json ``timing``, :mod:`evo.loop.timing`)."""

    @property
    def rank(self) -> int:
        return int(self.comm.Get_rank())

    @property
    def n(self) -> int:
        assert self.cfg.num_agents is not None
        return int(self.cfg.num_agents)

    @property
    def baseline(self) -> bool:
        return self.cfg.strategy == "baseline"

    @property
    def rule(self) -> str:
        """The selection rule (resolved from the preset by ``PBTConfig.validate``)."""
        assert self.cfg.rule is not None, "PBTConfig.validate() resolves --rule"
        return self.cfg.rule

    @property
    def transport_name(self) -> str:
        assert self.cfg.transport is not None, "PBTConfig.validate() resolves --transport"
        return self.cfg.transport

    @property
    def exchanging(self) -> bool:
        """Whether this run copies members at all (not a baseline, not --no-exchange, n > 1)."""
        return not self.baseline and bool(self.cfg.exchange) and self.n > 1

    def slot(self, index: int) -> Slot:
        return next(s for s in self.slots if s.index == index)
