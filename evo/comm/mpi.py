"""MPI helpers shared by every part of evo: the world, node-local sizes, agreeing, deciding on
the root, failing on every rank at once, and sending each rank only its own share of a decision.

Small Python objects (scores, hyperparameters, plans) travel with the lowercase, pickling calls.
``comm`` is always passed in explicitly, so tests can use ``MPI.COMM_SELF``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mpi4py import MPI

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


def local_rank(comm: MPI.Comm) -> int:
    """This rank's index among the ranks of ``comm`` on its node (collective: every rank calls it),
    for placing members on the node's GPUs."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return int(node.Get_rank())
    finally:
        node.Free()


ABORT_GRACE_S = 0.3
"""Seconds between a failing rank's last output and MPI_Abort."""


def abort(comm: MPI.Comm, code: int) -> None:
    """Tear down every rank of the job (used when one rank fails, so nobody waits forever). The
    short pause after flushing lets the launcher forward this rank's last line (the one-line error)
    before MPI_Abort kills its processes: once in four loaded CI runs, Hydra lost it."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_S)
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
        raise mark_everywhere(error)
    return result


def mark_everywhere(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised identically on every rank (so each can exit cleanly, no abort)."""
    exc.evo_everywhere = True  # type: ignore[attr-defined]
    return exc


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
                raise mark_everywhere(evo_error)
            raise mark_everywhere(RuntimeError(f"rank {rank}: {name}: {msg}"))
    return result


class _ScatterError:
    def __init__(self, message: str) -> None:
        self.message = message


def scatter_decisions(comm: MPI.Comm, per_rank: Sequence[Any] | None, root: int = 0) -> Any:
    """Send each rank only its own item of ``per_rank`` (given on ``root``; ``len == comm.size``).

    Per-rank message volume stays constant as the population grows (a broadcast of the whole
    plan grows with it). A wrong ``per_rank`` on the root raises ``ValueError`` on every rank
    instead of leaving the others in the collective.
    """
    items: list[Any] | None = None
    if comm.Get_rank() == root:
        size = comm.Get_size()
        if per_rank is None or len(per_rank) != size:
            got = "None" if per_rank is None else f"{len(per_rank)} items"
            items = [_ScatterError(f"scatter_decisions needs one item per rank ({size}), got {got}")] * size
        else:
            items = list(per_rank)
    mine = comm.scatter(items, root=root)
    if isinstance(mine, _ScatterError):
        raise ValueError(mine.message)
    return mine
