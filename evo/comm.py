"""Transport: the only module that imports mpi4py.

Small Python objects (scores, hyperparameters, plans) travel with the lowercase, pickling calls;
weights and optimizer state travel as preallocated contiguous float32 buffers with the uppercase
calls. ``comm`` is always passed in explicitly, so tests can use ``MPI.COMM_SELF``.

Three ways to move a plan of :class:`~evo.selection.Transfer`:

* :class:`BroadcastTransport` (winner takes all): one ``Bcast`` from the winner to everyone.
* :class:`P2PTransport` (truncation): every donor ``Isend``s to its receivers and every receiver
  ``Irecv``s from its donor, all pairs at once; no rank relays for others.
* :class:`SubcommTransport` (truncation, collective): ``Split`` the world into one
  sub-communicator per donor (donor + its receivers) and ``Bcast`` inside each; ranks not in
  the plan get ``COMM_NULL``. No rank ever holds more than one member's weights.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from mpi4py import MPI

from evo.selection import Transfer, donor_groups

Comm = MPI.Comm
WEIGHTS_TAG = 17
T = TypeVar("T")


def world() -> MPI.Comm:
    return MPI.COMM_WORLD


def local_size(comm: MPI.Comm) -> int:
    """Ranks of ``comm`` on this node (for sizing per-rank threads)."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return int(node.Get_size())
    finally:
        node.Free()


def abort(comm: MPI.Comm, code: int) -> None:
    """Tear down every rank of the job (used when one rank fails, so nobody waits forever)."""
    sys.stdout.flush()
    sys.stderr.flush()
    comm.Abort(code)


def agree(comm: MPI.Comm, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank."""
    return bool(comm.allreduce(bool(flag), op=MPI.LOR))


def root_decides(comm: MPI.Comm, fn: Callable[[], T], root: int = 0) -> T:
    """Run ``fn`` on ``root`` and broadcast its result, or its exception, to every rank.

    An exception raised by ``fn`` is re-raised on every rank, so a check that only the root can
    make (e.g. "is the log dir writable") fails the whole job the same way, not by a hang.
    """
    result: Any = None
    error: BaseException | None = None
    if comm.Get_rank() == root:
        try:
            result = fn()
        except Exception as exc:  # forwarded to every rank below
            error = exc
    error, result = comm.bcast((error, result), root=root)
    if error is not None:
        raise error
    return result


def on_every_rank(comm: MPI.Comm, fn: Callable[[], T]) -> T:
    """Run ``fn`` on every rank; if it raises on any rank, raise on every rank.

    The first failing rank's exception is re-raised everywhere (an :class:`~evo.errors.EvoError`
    as itself, anything else wrapped with the rank), so one bad checkpoint file or one env that
    fails to build ends the job cleanly instead of leaving the other ranks in the next collective.
    """
    from evo.errors import EvoError

    result: Any = None
    error: BaseException | None = None
    try:
        result = fn()
    except Exception as exc:
        error = exc
    errors = comm.allgather(None if error is None else (type(error).__name__, str(error),
                                                        error if isinstance(error, EvoError) else None))
    for rank, err in enumerate(errors):
        if err is not None:
            name, msg, evo_error = err
            if evo_error is not None:
                raise evo_error
            raise RuntimeError(f"rank {rank}: {name}: {msg}")
    return result


class Transport:
    """Moves flat float32 member states along an exploit plan."""

    def __init__(self, comm: MPI.Comm, size: int) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.send_buf = np.empty(size, dtype=np.float32)
        self.recv_buf = np.empty(size, dtype=np.float32)

    def move(self, transfers: Sequence[Transfer], pack: Callable[[np.ndarray], Any]) -> np.ndarray | None:
        """Carry out ``transfers``. ``pack(buf)`` fills ``buf`` with this rank's state (called only
        on donors). Returns the received state on receivers, ``None`` elsewhere."""
        raise NotImplementedError

    def _buffer(self, buf: np.ndarray) -> list[Any]:
        return [buf, MPI.FLOAT]


class BroadcastTransport(Transport):
    """Winner takes all: the single donor broadcasts to the whole communicator."""

    def move(self, transfers: Sequence[Transfer], pack: Callable[[np.ndarray], Any]) -> np.ndarray | None:
        if not transfers:
            return None
        donors = {t.donor for t in transfers}
        if len(donors) != 1:
            raise ValueError(f"broadcast transport needs exactly one donor, got {sorted(donors)}")
        root = donors.pop()
        buf = self.send_buf if self.rank == root else self.recv_buf
        if self.rank == root:
            pack(buf)
        self.comm.Bcast(self._buffer(buf), root=root)
        receivers = {t.receiver for t in transfers}
        return self.recv_buf if self.rank in receivers else None


class P2PTransport(Transport):
    """Truncation, point to point: all donor->receiver pairs move at once (Isend / Irecv)."""

    def move(self, transfers: Sequence[Transfer], pack: Callable[[np.ndarray], Any]) -> np.ndarray | None:
        sends = [t.receiver for t in transfers if t.donor == self.rank]
        recvs = [t.donor for t in transfers if t.receiver == self.rank]
        if len(recvs) > 1:
            raise ValueError(f"rank {self.rank} would receive {len(recvs)} states in one plan")
        if sends and recvs:
            raise ValueError(f"rank {self.rank} is both donor and receiver in one plan")
        requests = []
        if sends:
            pack(self.send_buf)
            requests = [self.comm.Isend(self._buffer(self.send_buf), dest=r, tag=WEIGHTS_TAG) for r in sends]
        if recvs:
            requests.append(self.comm.Irecv(self._buffer(self.recv_buf), source=recvs[0], tag=WEIGHTS_TAG))
        if requests:
            MPI.Request.Waitall(requests)
        return self.recv_buf if recvs else None


class SubcommTransport(Transport):
    """Truncation, collective: one sub-communicator per donor, a ``Bcast`` inside each."""

    def move(self, transfers: Sequence[Transfer], pack: Callable[[np.ndarray], Any]) -> np.ndarray | None:
        groups = donor_groups(transfers)
        donors = set(groups)
        donor_of = {r: d for d, rs in groups.items() for r in rs}
        if self.rank in donors:
            color, key = self.rank, 0
        elif self.rank in donor_of:
            color, key = donor_of[self.rank], 1 + self.rank
        else:
            color, key = MPI.UNDEFINED, self.rank
        # Split is collective over the whole communicator, even for ranks outside the plan.
        sub = self.comm.Split(color, key)
        if sub == MPI.COMM_NULL:
            return None
        try:
            if self.rank in donors:
                pack(self.send_buf)
                sub.Bcast(self._buffer(self.send_buf), root=0)
                return None
            sub.Bcast(self._buffer(self.recv_buf), root=0)
            return self.recv_buf
        finally:
            sub.Free()


TRANSPORTS: dict[str, type[Transport]] = {
    "wta": BroadcastTransport,
    "truncation": P2PTransport,
    "truncation_collective": SubcommTransport,
}


def make_transport(strategy: str, comm: MPI.Comm, size: int) -> Transport:
    return TRANSPORTS[strategy](comm, size)


def set_threads(comm: MPI.Comm, threads: int = 0) -> int:
    """Give each rank its share of this node's cores for torch (at least one thread)."""
    import torch

    if threads <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // max(1, local_size(comm)))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (a second run in the same process)
        pass
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads
