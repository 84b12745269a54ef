"""A toy selection rule and a toy transport, registered from outside evo (see test_extending.py).

``EVO_PLUGINS=toy_plugins python -m evo.pbt --rule last_copies_first --transport allgather`` uses both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evo.comm.transport import RankPlan, Transport, register_transport
from evo.core.rules import Rule, register_rule
from evo.core.selection import Transfer


@register_rule
class LastCopiesFirst(Rule):
    """The last member copies member 0, whatever the scores (so a test knows every exploit)."""

    name = "last_copies_first"
    description = "the last member copies member 0"
    default_transport = "allgather"

    def plan(self, scores: Sequence[float], quantile: float, rng: np.random.Generator) -> list[Transfer]:
        return [Transfer(len(scores) - 1, 0)] if len(scores) > 1 else []


@register_transport
class AllgatherTransport(Transport):
    """Every rank sends the states of its donors to everybody (lowercase allgather: pickled copies)."""

    name = "allgather"
    collective = True
    description = "every rank sends its donors' states to every rank (a toy)"

    def move_remote(self, plan: RankPlan, packed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        everything: dict[int, np.ndarray] = {}
        for part in self.comm.allgather({d: np.array(buf) for d, buf in packed.items()}):
            everything.update(part)
        return {t.receiver: everything[t.donor] for t in plan.transfers
                if self.owner(t.receiver) == self.rank and self.owner(t.donor) != self.rank}
