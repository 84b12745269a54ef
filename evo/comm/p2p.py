"""The point-to-point transport: every state crossing ranks is one ``Isend`` / ``Irecv`` pair."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from evo.comm.transport import RankPlan, Transport, as_message, register_transport

WEIGHTS_TAG = 17


@register_transport
class P2PTransport(Transport):
    """All donor -> receiver pairs on different ranks move at once (``Isend`` / ``Irecv``, then one
    ``Waitall``); no rank relays for others and ranks without a transfer do nothing, so it is not
    collective. A donor with k remote receivers sends k messages."""

    name = "p2p"
    collective = False
    description = "Isend/Irecv per donor-receiver pair; only the ranks involved take part"

    def move_remote(self, plan: RankPlan, packed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        requests, out = [], {}
        for t in plan.transfers:  # sorted on both sides of every pair of ranks: messages match in order
            src, dst = self.owner(t.donor), self.owner(t.receiver)
            if src == dst:
                continue  # a local copy, made by the base class
            tag = WEIGHTS_TAG + t.receiver % 30000  # below 32767, the smallest TAG_UB MPI allows
            if src == self.rank:
                requests.append(self.comm.Isend(as_message(packed[t.donor]), dest=dst, tag=tag))
            elif dst == self.rank:
                out[t.receiver] = self.take_buffer()
                requests.append(self.comm.Irecv(as_message(out[t.receiver]), source=src, tag=tag))
        if requests:
            MPI.Request.Waitall(requests)
        return out
