"""The broadcast transport: one ``Bcast`` per donor group, every rank joins each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evo.comm.placement import owner_of
from evo.comm.transport import (
    RankPlan,
    Transport,
    as_message,
    crossing_groups,
    register_transport,
    with_rounds,
)
from evo.core.selection import Transfer


@register_transport
class BroadcastTransport(Transport):
    """One ``Bcast`` over the whole communicator per donor group that crosses ranks, rooted at the
    donor's rank, in ascending donor order (the same on every rank). Winner takes all is a single
    ``Bcast`` (a tree: O(log ranks) steps, nobody sends N - 1 copies); with many donor groups every
    rank receives every group's state, so it suits plans with few donors."""

    name = "broadcast"
    collective = True
    description = "one Bcast per donor group over all ranks (best for one donor, e.g. wta)"

    @classmethod
    def split(cls, transfers: Sequence[Transfer], world_size: int) -> list[RankPlan]:
        donors = sorted(crossing_groups(transfers, world_size))
        return with_rounds(super().split(transfers, world_size), [[d] for d in donors], world_size,
                           roots=tuple(owner_of(d, world_size) for d in donors))

    def move_remote(self, plan: RankPlan, packed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        if len(plan.roots) != plan.rounds:
            raise ValueError(f"broadcast plan has {plan.rounds} rounds but {len(plan.roots)} roots")
        donor_in = {rnd: d for d, rnd in plan.round_of}
        scratch: np.ndarray | None = None  # for the groups this rank has no part in
        out: dict[int, np.ndarray] = {}
        for rnd, root in enumerate(plan.roots):
            donor = donor_in.get(rnd)
            if donor is None:
                if scratch is None:
                    scratch = self.take_buffer()
                buf = scratch
            elif root == self.rank:
                buf = packed[donor]
            else:
                buf = self.take_buffer()
            self.comm.Bcast(as_message(buf), root=root)
            if donor is not None:
                out.update(dict.fromkeys(self.remote_receivers(plan, donor), buf))
        return out
