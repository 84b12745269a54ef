"""evo's communication layer, the only package that imports mpi4py.

* :mod:`evo.comm.mpi`: MPI helpers (the world, node-local sizes, agreeing, deciding on the root,
  failing on every rank at once, scattering each rank's share of a decision);
* :mod:`evo.comm.placement`: which rank hosts which member;
* :mod:`evo.comm.threads`: per-rank torch threads;
* :mod:`evo.comm.transport`: the transport interface and registry; one module per transport
  (:mod:`~evo.comm.broadcast`, :mod:`~evo.comm.p2p`, :mod:`~evo.comm.subcomm`), each registering itself;
* :mod:`evo.comm.hub` (with :mod:`evo.comm.snapshot`): asynchronous PBT's :class:`AsyncHub`.
"""

from evo.comm import broadcast, p2p, subcomm  # noqa: F401  (each registers its transport)
from evo.comm.broadcast import BroadcastTransport
from evo.comm.hub import AsyncHub
from evo.comm.mpi import (
    abort,
    agree,
    local_rank,
    local_size,
    mark_everywhere,
    on_every_rank,
    root_decides,
    scatter_decisions,
    world,
)
from evo.comm.p2p import P2PTransport
from evo.comm.placement import local_members, owner_of
from evo.comm.snapshot import Backoff, HubStats, SnapshotSlot, idle_max_for
from evo.comm.subcomm import SubcommTransport
from evo.comm.threads import set_threads
from evo.comm.transport import (
    TRANSPORTS,
    RankPlan,
    Transport,
    donor_groups,
    make_transport,
    register_transport,
)

__all__ = [
    "TRANSPORTS",
    "AsyncHub",
    "Backoff",
    "BroadcastTransport",
    "HubStats",
    "P2PTransport",
    "RankPlan",
    "SnapshotSlot",
    "SubcommTransport",
    "Transport",
    "abort",
    "agree",
    "donor_groups",
    "idle_max_for",
    "local_members",
    "local_rank",
    "local_size",
    "make_transport",
    "mark_everywhere",
    "on_every_rank",
    "owner_of",
    "register_transport",
    "root_decides",
    "scatter_decisions",
    "set_threads",
    "world",
]
