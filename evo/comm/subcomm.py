"""The sub-communicator transport: one ``Split`` per round of disjoint donor groups, and a
``Bcast`` inside each group's sub-communicator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mpi4py import MPI

from evo.comm.transport import (
    RankPlan,
    Transport,
    as_message,
    crossing_groups,
    group_ranks,
    register_transport,
    with_rounds,
)
from evo.core.selection import Transfer


def disjoint_rounds(groups: dict[int, list[int]], world_size: int) -> list[list[int]]:
    """Greedy rounds of donor groups (in ascending donor order) whose rank sets are disjoint: a rank
    is in one sub-communicator per ``Split``. With one member per rank every group is disjoint: one round."""
    taken: list[set[int]] = []
    rounds: list[list[int]] = []
    for donor, receivers in groups.items():
        ranks = group_ranks(donor, receivers, world_size)
        for used, donors in zip(taken, rounds, strict=True):
            if not used & ranks:
                used |= ranks
                donors.append(donor)
                break
        else:
            taken.append(set(ranks))
            rounds.append([donor])
    return rounds


@register_transport
class SubcommTransport(Transport):
    """Each round ``Split``s the communicator (collective over every rank) into one sub-communicator
    per donor group (the donor's rank first, then its receivers' ranks; ranks outside every group
    get ``COMM_NULL``) and ``Bcast``s the donor's state inside each. A rank receives only the
    states of its own receivers' donors."""

    name = "subcomm"
    collective = True
    description = "one sub-communicator per donor group, Bcast inside it (rounds of disjoint groups)"

    @classmethod
    def split(cls, transfers: Sequence[Transfer], world_size: int) -> list[RankPlan]:
        rounds = disjoint_rounds(crossing_groups(transfers, world_size), world_size)
        return with_rounds(super().split(transfers, world_size), rounds, world_size)

    def move_remote(self, plan: RankPlan, packed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        donor_in: dict[int, int] = {}
        for donor, rnd in plan.round_of:
            if rnd in donor_in:
                raise ValueError(f"rank {self.rank} is in two donor groups of round {rnd}")
            donor_in[rnd] = donor
        out: dict[int, np.ndarray] = {}
        for rnd in range(plan.rounds):
            mine = donor_in.get(rnd)
            sending = mine is not None and self.owner(mine) == self.rank
            color = MPI.UNDEFINED if mine is None else mine
            sub = self.comm.Split(color, 0 if sending else 1 + self.rank)
            if sub == MPI.COMM_NULL:
                continue
            try:
                assert mine is not None
                buf = packed[mine] if sending else self.take_buffer()
                if sub.Get_size() > 1:
                    sub.Bcast(as_message(buf), root=0)
                out.update(dict.fromkeys(self.remote_receivers(plan, mine), buf))
            finally:
                sub.Free()
        return out
