"""Transport: the only module that imports mpi4py.

Small Python objects (scores, hyperparameters, plans) travel with the lowercase, pickling calls;
weights and optimizer state travel as preallocated contiguous float32 buffers with the uppercase
calls. ``comm`` is always passed in explicitly, so tests can use ``MPI.COMM_SELF``.

Three ways to move a plan of :class:`~evo.core.selection.Transfer`:

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
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

import numpy as np
from mpi4py import MPI

from evo.core.selection import Transfer, donor_groups

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


def local_rank(comm: MPI.Comm) -> int:
    """This rank's index among the ranks of ``comm`` on its node (collective: every rank calls it),
    for placing members on the node's GPUs."""
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return int(node.Get_rank())
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


def owner_of(member: int, world_size: int) -> int:
    """The rank that hosts ``member``: members are dealt round-robin, so every rank hosts
    ceil(N/world) or floor(N/world) of them and member ``m`` of a one-per-rank run lives on rank ``m``."""
    return member % world_size


def local_members(num_agents: int, rank: int, world_size: int) -> list[int]:
    """The members ``rank`` hosts, in ascending order."""
    return list(range(rank, num_agents, world_size))


@dataclass(frozen=True)
class RankPlan:
    """What one rank must do in one exchange: only the transfers that involve its members (so its
    message volume does not grow with the population), plus what a collective transport needs
    every rank to know (the number of ``Split`` rounds, each donor group's round)."""

    transfers: tuple[Transfer, ...] = ()
    wta_donor: int | None = None
    rounds: int = 0
    round_of: tuple[tuple[int, int], ...] = ()


def split_plan(strategy: str, transfers: Sequence[Transfer], world_size: int) -> list[RankPlan]:
    """(root) One :class:`RankPlan` per rank for a member-level plan."""
    owner = partial(owner_of, world_size=world_size)
    per_rank: list[list[Transfer]] = [[] for _ in range(world_size)]
    for t in sorted(transfers):
        ranks = {owner(t.donor), owner(t.receiver)}
        for r in ranks:
            per_rank[r].append(t)
    wta_donor = transfers[0].donor if strategy == "wta" and transfers else None
    rounds, round_of = 0, ()  # type: tuple[int, tuple[tuple[int, int], ...]]
    if strategy == "truncation_collective":
        rounds, assignment = collective_rounds(transfers, world_size)
        round_of = tuple(sorted(assignment.items()))
    return [RankPlan(tuple(ts), wta_donor, rounds, round_of) for ts in per_rank]


def collective_rounds(transfers: Sequence[Transfer], world_size: int) -> tuple[int, dict[int, int]]:
    """Greedy rounds of donor groups whose rank sets are disjoint (a rank is in one sub-communicator
    per ``Split``). With one member per rank every group is disjoint: one round, as before."""
    taken: list[set[int]] = []
    assignment: dict[int, int] = {}
    for donor, receivers in donor_groups(transfers).items():
        ranks = {owner_of(donor, world_size)} | {owner_of(r, world_size) for r in receivers}
        for i, used in enumerate(taken):
            if not used & ranks:
                used |= ranks
                assignment[donor] = i
                break
        else:
            taken.append(set(ranks))
            assignment[donor] = len(taken) - 1
    return len(taken), assignment


class Transport:
    """Moves flat float32 member states along an exploit plan.

    ``move_members`` works on member ids (several members per rank; a copy between two members
    of one rank is a local copy); ``move`` is the one-member-per-rank form (member id = rank).
    """

    def __init__(self, comm: MPI.Comm, size: int) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.world_size = comm.Get_size()
        self.size = size
        self._pool: list[np.ndarray] = []
        self._used = 0

    # buffers: preallocated, reused from one exchange to the next
    def _take(self) -> np.ndarray:
        if self._used == len(self._pool):
            self._pool.append(np.empty(self.size, dtype=np.float32))
        self._used += 1
        return self._pool[self._used - 1]

    @property
    def send_buf(self) -> np.ndarray:  # the first pooled buffer (kept for callers of the rank-level API)
        if not self._pool:
            self._pool.append(np.empty(self.size, dtype=np.float32))
        return self._pool[0]

    def _owner(self, member: int) -> int:
        return owner_of(member, self.world_size)

    def _packed(self, donors: Sequence[int], pack: Callable[[int, np.ndarray], Any]) -> dict[int, np.ndarray]:
        out = {}
        for d in sorted(set(donors)):
            if self._owner(d) == self.rank:
                out[d] = self._take()
                pack(d, out[d])
        return out

    def move(self, transfers: Sequence[Transfer], pack: Callable[[np.ndarray], Any]) -> np.ndarray | None:
        """Carry out a one-member-per-rank plan. ``pack(buf)`` fills ``buf`` with this rank's state
        (called only on donors). Returns the received state on receivers, ``None`` elsewhere."""
        plan = split_plan(self.strategy, transfers, self.world_size)[self.rank]
        if self.strategy == "truncation_collective":  # one member per rank: all groups disjoint, one round
            plan = replace(plan, rounds=1, round_of=tuple((t.donor, 0) for t in transfers))
        got = self.move_members(plan, lambda _m, buf: pack(buf))
        return got.get(self.rank)

    def move_members(self, plan: RankPlan, pack: Callable[[int, np.ndarray], Any]) -> dict[int, np.ndarray]:
        """Carry out this rank's part of a plan: ``pack(member, buf)`` fills ``buf`` with a local
        donor's state. Returns ``{receiver member: state}`` for the receivers this rank hosts."""
        self._used = 0
        return self._move(plan, pack)

    strategy = ""

    def _move(self, plan: RankPlan, pack: Callable[[int, np.ndarray], Any]) -> dict[int, np.ndarray]:
        raise NotImplementedError

    def _buffer(self, buf: np.ndarray) -> list[Any]:
        return [buf, MPI.FLOAT]


class BroadcastTransport(Transport):
    """Winner takes all: the single donor's rank broadcasts it to the whole communicator."""

    strategy = "wta"

    def _move(self, plan: RankPlan, pack: Callable[[int, np.ndarray], Any]) -> dict[int, np.ndarray]:
        if plan.wta_donor is None:
            return {}
        donors = {t.donor for t in plan.transfers}
        if len(donors) > 1:
            raise ValueError(f"broadcast transport needs exactly one donor, got {sorted(donors)}")
        root = self._owner(plan.wta_donor)
        packed = self._packed([plan.wta_donor], pack)
        buf = packed[plan.wta_donor] if self.rank == root else self._take()
        self.comm.Bcast(self._buffer(buf), root=root)
        return {t.receiver: buf for t in plan.transfers if self._owner(t.receiver) == self.rank}


class P2PTransport(Transport):
    """Truncation, point to point: all donor->receiver pairs move at once (Isend / Irecv)."""

    strategy = "truncation"

    def _move(self, plan: RankPlan, pack: Callable[[int, np.ndarray], Any]) -> dict[int, np.ndarray]:
        mine = [t for t in plan.transfers if self.rank in (self._owner(t.donor), self._owner(t.receiver))]
        receivers = [t.receiver for t in mine]
        if len(receivers) != len(set(receivers)):
            raise ValueError("a member would receive two states in one plan")
        if {t.donor for t in mine} & set(receivers):
            raise ValueError("a member cannot be both donor and receiver in one plan")
        packed = self._packed([t.donor for t in mine], pack)
        requests, out = [], {}
        for t in mine:  # the same order on both sides of every pair of ranks
            local_donor, local_receiver = self._owner(t.donor) == self.rank, self._owner(t.receiver) == self.rank
            tag = WEIGHTS_TAG + t.receiver % 30000
            if local_donor and local_receiver:
                out[t.receiver] = packed[t.donor]
            elif local_donor:
                requests.append(self.comm.Isend(self._buffer(packed[t.donor]), dest=self._owner(t.receiver), tag=tag))
            else:
                out[t.receiver] = self._take()
                requests.append(self.comm.Irecv(self._buffer(out[t.receiver]), source=self._owner(t.donor), tag=tag))
        if requests:
            MPI.Request.Waitall(requests)
        return out


class SubcommTransport(Transport):
    """Truncation, collective: one sub-communicator per donor, a ``Bcast`` inside each.

    Several members per rank: donor groups are split into rounds of disjoint rank sets (one
    ``Split`` per round, collective over the whole communicator, ranks outside it get COMM_NULL)."""

    strategy = "truncation_collective"

    def _move(self, plan: RankPlan, pack: Callable[[int, np.ndarray], Any]) -> dict[int, np.ndarray]:
        groups = donor_groups(plan.transfers)
        round_of = dict(plan.round_of)
        out: dict[int, np.ndarray] = {}
        for rnd in range(plan.rounds):
            mine = [d for d in groups if round_of.get(d) == rnd]
            if len(mine) > 1:
                raise ValueError(f"rank {self.rank} is in {len(mine)} donor groups of round {rnd}")
            color, key = MPI.UNDEFINED, self.rank
            if mine:
                donor = mine[0]
                color = donor
                key = 0 if self._owner(donor) == self.rank else 1 + self.rank
            sub = self.comm.Split(color, key)
            if sub == MPI.COMM_NULL:
                continue
            try:
                donor = mine[0]
                if self._owner(donor) == self.rank:
                    buf = self._packed([donor], pack)[donor]
                else:
                    buf = self._take()
                if sub.Get_size() > 1:
                    sub.Bcast(self._buffer(buf), root=0)
                for r in groups[donor]:
                    if self._owner(r) == self.rank:
                        out[r] = buf
            finally:
                sub.Free()
        return out


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


# -- asynchronous PBT: snapshot slots, a service thread, a coordinator ------------------------
#
# Async PBT has no generation barrier: each member publishes (meta, snapshot) when it is ready,
# reports its score to the coordinator (rank 0) and, if told to, copies a donor's latest
# snapshot. The donor must not stop training to serve it, and on MPICH a passive-target
# MPI_Get only progresses when the target enters MPI, so every rank runs a service thread that
# drives MPI progress explicitly: it probes for requests on a private communicator, answers
# them with nonblocking sends, and sleeps with an exponential backoff when idle.
#
# Wire protocol on the hub's own communicator (a Dup, so nothing mixes with the driver's calls):
#   request   client -> owner, tag REQUEST_TAG, pickled (kind, payload, reply_tag)
#             kind "fetch": payload = member;  kind "report": payload = the report dict
#   fetch     owner -> client: pickled meta (or None) on reply_tag, float32 snapshot on reply_tag + 1
#             (the client posts the Irecv for the snapshot before it sends the request)
#   report    rank 0 -> client: pickled reply of decide(report) on reply_tag
# Reply tags are drawn per request from a per-hub counter, so concurrent requests from several
# threads of one rank never take each other's replies.

import atexit  # noqa: E402  (this section's own imports, kept with it)
import pickle  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

REQUEST_TAG = 1
_REPLY_TAG_FIRST = 2
_REPLY_TAG_PAIRS = 16000  # reply tags stay below 32767, the smallest TAG_UB MPI allows


class Backoff:
    """Sleep durations of a polling loop: ``min_s`` after work, doubling up to ``max_s`` while idle."""

    def __init__(self, min_s: float = 2e-4, max_s: float = 5e-3, factor: float = 2.0) -> None:
        if not (0 < min_s <= max_s) or factor < 1:
            raise ValueError(f"bad backoff: min_s={min_s} max_s={max_s} factor={factor}")
        self.min_s, self.max_s, self.factor = min_s, max_s, factor
        self._next = min_s

    def reset(self) -> None:
        self._next = self.min_s

    def next(self) -> float:
        """The next sleep; every call without a :meth:`reset` grows it by ``factor`` (capped)."""
        d = self._next
        self._next = min(self._next * self.factor, self.max_s)
        return d


def idle_max_for(ranks_on_node: int, cores: int, base_s: float = 5e-3, cap_s: float = 2e-2) -> float:
    """Longest idle sleep of a service thread: ``base_s``, stretched by how oversubscribed the node
    is (ranks per core), at most ``cap_s``. Each wakeup costs ~20-30 us of CPU (mostly the sleep
    syscall), so 128 ranks on 2 cores polling every 5 ms would burn most of a core."""
    return min(cap_s, base_s * max(1.0, ranks_on_node / max(1, cores)))


class SnapshotSlot:
    """The published snapshot of one member: a small pool of float32 buffers with reader counts.

    :meth:`publish` packs into a buffer that nobody reads, outside any lock, then makes it the
    current one together with its meta under a short lock, so a reader always gets a (meta,
    buffer) pair that belong together and never a half-written buffer. Readers (a local copy, or
    the service thread's nonblocking send) hold a reference to the buffer they read instead of
    the lock. Two buffers suffice while nobody reads; a third is allocated (up to
    ``max_buffers``) when the previous one is still being sent, so a publish does not wait for
    a send in flight; only with all ``max_buffers`` buffers busy does it wait for one.
    """

    def __init__(self, size: int, max_buffers: int = 3) -> None:
        if max_buffers < 2:
            raise ValueError("a snapshot slot needs at least 2 buffers")
        self.size = int(size)
        self.max_buffers = max_buffers
        self._cond = threading.Condition()
        self._bufs: list[np.ndarray] = [np.empty(self.size, dtype=np.float32) for _ in range(2)]
        self._refs: list[int] = [0, 0]
        self._current: int | None = None
        self._meta: dict[str, Any] | None = None
        self.version = 0  # number of completed publishes

    @property
    def buffers(self) -> int:
        return len(self._bufs)

    def _take_spare(self) -> tuple[int, float]:
        """Index of a buffer nobody reads (allocating or waiting if needed), and the seconds waited."""
        t0 = time.perf_counter()
        with self._cond:
            while True:
                for i, refs in enumerate(self._refs):
                    if refs == 0 and i != self._current:
                        self._refs[i] = 1  # the writer's own reference
                        return i, time.perf_counter() - t0
                if len(self._bufs) < self.max_buffers:
                    self._bufs.append(np.empty(self.size, dtype=np.float32))
                    self._refs.append(1)
                    return len(self._bufs) - 1, time.perf_counter() - t0
                self._cond.wait()

    def publish(self, meta: dict[str, Any], pack: Callable[[np.ndarray], Any]) -> float:
        """``pack(buf)`` fills a spare buffer; then it becomes current with a copy of ``meta``.
        Returns the seconds spent waiting for a free buffer (0 unless all were being read)."""
        idx, waited = self._take_spare()
        try:
            pack(self._bufs[idx])
        except BaseException:
            self.release(idx)
            raise
        with self._cond:
            self._refs[idx] -= 1
            self._current = idx
            self._meta = dict(meta)
            self.version += 1
            self._cond.notify_all()
        return waited

    def acquire(self) -> tuple[dict[str, Any], np.ndarray, int] | None:
        """The current (meta, buffer) and a token for :meth:`release`; ``None`` before the first
        publish. The buffer stays unchanged until released."""
        with self._cond:
            if self._current is None:
                return None
            idx = self._current
            self._refs[idx] += 1
            return dict(self._meta or {}), self._bufs[idx], idx

    def release(self, token: int) -> None:
        with self._cond:
            self._refs[token] -= 1
            self._cond.notify_all()

    def meta(self) -> dict[str, Any] | None:
        with self._cond:
            return None if self._meta is None else dict(self._meta)

    def read_into(self, out: np.ndarray) -> dict[str, Any] | None:
        """Copy the current snapshot into ``out``; its meta, or ``None`` (``out`` untouched)."""
        got = self.acquire()
        if got is None:
            return None
        meta, buf, token = got
        try:
            np.copyto(out, buf)
        finally:
            self.release(token)
        return meta


class HubStats:
    """Counters of one hub, updated from both the caller's and the service thread."""

    FIELDS = ("msgs_sent", "bytes_sent", "msgs_recv", "bytes_recv", "fetches", "local_fetches", "fetch_s",
              "fetch_max_s", "reports", "report_s", "report_max_s", "served_fetches", "served_reports",
              "decide_s", "publishes", "publish_s", "publish_wait_s", "finish_wait_s", "service_cpu_s",
              "service_wall_s", "service_wakeups")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._v: dict[str, float] = dict.fromkeys(self.FIELDS, 0.0)

    def add(self, **kw: float) -> None:
        with self._lock:
            for k, v in kw.items():
                self._v[k] += v

    def peak(self, key: str, value: float) -> None:
        with self._lock:
            self._v[key] = max(self._v[key], value)

    def sent(self, nbytes: int) -> None:
        self.add(msgs_sent=1, bytes_sent=nbytes)

    def received(self, nbytes: int) -> None:
        self.add(msgs_recv=1, bytes_recv=nbytes)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._v)


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class AsyncHub:
    """Snapshots, fetches and coordinator reports of asynchronous PBT (one hub per rank).

    ``AsyncHub(comm, flat_size, local_members, decide=None)`` is collective over ``comm``: it
    ``Dup``s it and starts this rank's service thread. ``local_members`` are the members this
    rank hosts (member ``m`` lives on rank ``owner(m)``, by default ``m % comm.size``).
    ``decide(report) -> reply`` is used on the coordinator (rank 0) only; every call to it, from
    any rank, is serialised under one lock.

    Caller side (any thread): :meth:`publish`, :meth:`fetch`, :meth:`report`, :meth:`finish`.
    Service thread: answers fetches of this rank's snapshots with nonblocking sends and, on rank
    0, reports; it polls with :class:`Backoff` (``idle_min_s`` .. ``idle_max_s``; by default
    :func:`idle_max_for` this node's ranks per core, 5 ms when not oversubscribed). An exception
    in it prints ``evo: error on rank R: ...`` and aborts the job, so no rank hangs. Needs
    ``MPI_THREAD_MULTIPLE`` (mpi4py's default). While the hub runs, the interpreter's switch
    interval is at most ``switch_interval_s`` (process-wide; restored by :meth:`finish`), so a
    caller busy in Python code hands the service thread the GIL within ~1 ms instead of 5 ms.
    """

    def __init__(self, comm: MPI.Comm, flat_size: int, local_members: Sequence[int],
                 decide: Callable[[dict[str, Any]], dict[str, Any]] | None = None, *,
                 owner: Callable[[int], int] | None = None, coordinator: int = 0,
                 idle_min_s: float = 2e-4, idle_max_s: float | None = None, wait_max_s: float = 1e-3,
                 max_buffers: int = 3, switch_interval_s: float | None = 1e-3) -> None:
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            raise RuntimeError("AsyncHub needs MPI_THREAD_MULTIPLE (mpi4py's default; check mpi4py.rc.thread_level)")
        self.comm: MPI.Comm = comm.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.flat_size = int(flat_size)
        self.coordinator = coordinator
        self.owner: Callable[[int], int] = owner if owner is not None else (lambda m: m % self.size)
        wrong = [m for m in local_members if self.owner(m) != self.rank]
        problems = self.comm.allgather(f"rank {self.rank} was given members {wrong} that live elsewhere"
                                       if wrong else None)
        if any(problems):
            self.comm.Free()
            raise ValueError("; ".join(p for p in problems if p))
        self._decide = decide
        self._decide_lock = threading.Lock()
        self._slots = {int(m): SnapshotSlot(self.flat_size, max_buffers) for m in local_members}
        if idle_max_s is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            idle_max_s = idle_max_for(local_size(self.comm), cores)
        self._idle = (idle_min_s, max(idle_min_s, idle_max_s))
        self.idle_max_s = self._idle[1]
        self._wait_max_s = wait_max_s
        self._stats = HubStats()
        self._tag_lock = threading.Lock()
        self._tag_next = 0
        self._pending: list[tuple[MPI.Request, Callable[[], None] | None, Any]] = []
        self._stop = threading.Event()
        self._closing = False  # no more fetch / report / publish from this rank
        self._closed = False  # service thread joined, communicator freed
        self._wall0 = time.perf_counter()
        # The service thread needs the GIL for a few short stretches per request; while the caller's
        # thread runs Python code it gets it only every switch interval (5 ms by default).
        self._switch_restore: float | None = None
        if switch_interval_s is not None and sys.getswitchinterval() > switch_interval_s:
            self._switch_restore = sys.getswitchinterval()
            sys.setswitchinterval(switch_interval_s)
        self._thread = threading.Thread(target=self._serve, name=f"evo-hub-{self.rank}", daemon=True)
        self._thread.start()
        # runs before mpi4py's own exit hook (registered earlier): no thread inside MPI at MPI_Finalize
        atexit.register(self.abandon)

    # -- caller side ------------------------------------------------------------------------
    @property
    def local_members(self) -> list[int]:
        return sorted(self._slots)

    def publish(self, member: int, meta: dict[str, Any], pack: Callable[[np.ndarray], Any]) -> None:
        """Make ``(meta, snapshot)`` member ``member``'s published state: ``pack(buf)`` fills a
        float32 buffer of ``flat_size`` elements nobody is reading; readers see the previous
        pair until the swap, and never a mix."""
        self._check_open("publish")
        slot = self._slots.get(member)
        if slot is None:
            raise ValueError(f"member {member} is not hosted on rank {self.rank} (hosts {self.local_members})")
        t0 = time.perf_counter()
        waited = slot.publish(meta, pack)
        self._stats.add(publishes=1, publish_s=time.perf_counter() - t0, publish_wait_s=waited)

    def published(self, member: int) -> dict[str, Any] | None:
        """Meta of the snapshot this rank currently publishes for ``member`` (``None`` before any)."""
        return self._slots[member].meta()

    def fetch(self, donor: int, out: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray]:
        """A copy of ``donor``'s currently published (meta, snapshot), bit-identical to what it
        published; into ``out`` if given. A local copy if the donor lives on this rank.
        Raises ``LookupError`` if the donor has published nothing yet."""
        self._check_open("fetch")
        if out is None:
            out = np.empty(self.flat_size, dtype=np.float32)
        elif out.dtype != np.float32 or out.size != self.flat_size or not out.flags.c_contiguous:
            raise ValueError(f"fetch needs a contiguous float32 buffer of {self.flat_size} elements")
        t0 = time.perf_counter()
        owner = self.owner(donor)
        if owner == self.rank:
            slot = self._slots.get(donor)
            meta = slot.read_into(out) if slot is not None else None
            self._stats.add(local_fetches=1)
        else:
            tag = self._reply_tag()
            data = self.comm.Irecv([out, MPI.FLOAT], source=owner, tag=tag + 1)
            self._send_request(owner, ("fetch", int(donor), tag))
            status = MPI.Status()
            meta = self._wait_obj(owner, tag, extra=data, extra_status=status)
            got = status.Get_count(MPI.FLOAT)
            self._stats.received(got * 4)
            if meta is not None and got != self.flat_size:
                raise RuntimeError(f"fetch of member {donor}: got {got} floats, expected {self.flat_size}")
        dt = time.perf_counter() - t0
        self._stats.add(fetches=1, fetch_s=dt)
        self._stats.peak("fetch_max_s", dt)
        if meta is None:
            raise LookupError(f"member {donor} has not published a snapshot yet")
        return meta, out

    def report(self, report: dict[str, Any]) -> dict[str, Any]:
        """Send ``report`` to the coordinator and return ``decide(report)`` computed there.

        On the coordinator itself ``decide`` runs in the calling thread (under the same lock), and
        an exception in it propagates to the caller; for a report from another rank it runs in the
        coordinator's service thread, where an exception aborts the job."""
        self._check_open("report")
        t0 = time.perf_counter()
        if self.rank == self.coordinator:
            reply = self._run_decide(report)
        else:
            tag = self._reply_tag()
            self._send_request(self.coordinator, ("report", report, tag))
            reply = self._wait_obj(self.coordinator, tag)
        dt = time.perf_counter() - t0
        self._stats.add(reports=1, report_s=dt)
        self._stats.peak("report_max_s", dt)
        return reply

    def stats(self) -> dict[str, float]:
        """Counters: messages / bytes sent and received by this rank (both threads), fetch and
        report counts and seconds, publishes, service-thread CPU seconds and wall seconds (live
        while it runs, on Linux)."""
        out = self._stats.snapshot()
        ident = self._thread.ident
        if self._thread.is_alive() and ident is not None and hasattr(time, "pthread_getcpuclockid"):
            try:
                out["service_cpu_s"] = time.clock_gettime(time.pthread_getcpuclockid(ident))
                out["service_wall_s"] = time.perf_counter() - self._wall0
            except OSError:  # the thread ended in between
                pass
        return out

    def finish(self) -> None:
        """Collective end. This rank stops fetching and reporting but keeps serving until every
        rank has called ``finish`` (an ``Ibarrier`` tested in a sleep loop); then the service
        thread stops and the communicator is freed. Idempotent."""
        if self._closing:
            return
        self._closing = True
        t0 = time.perf_counter()
        barrier = self.comm.Ibarrier()
        backoff = Backoff(self._idle[0], self._idle[1])
        while not barrier.Test():
            time.sleep(backoff.next())
        self._stats.add(finish_wait_s=time.perf_counter() - t0)
        self._stop.set()
        self._thread.join()
        self.comm.Free()
        self._closed = True
        self._restore_switch_interval()
        atexit.unregister(self.abandon)

    def _restore_switch_interval(self) -> None:
        if self._switch_restore is not None:
            sys.setswitchinterval(self._switch_restore)
            self._switch_restore = None

    def abandon(self) -> None:
        """Stop this rank's service thread without waiting for the others (on the way to an
        abort: another rank fetching from this one would wait forever)."""
        self._closing = True
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._restore_switch_interval()

    def __enter__(self) -> AsyncHub:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abandon()

    # -- internals --------------------------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._closing:
            raise RuntimeError(f"AsyncHub.{what} after finish()")

    def _reply_tag(self) -> int:
        with self._tag_lock:
            k = self._tag_next
            self._tag_next = (k + 1) % _REPLY_TAG_PAIRS
        return _REPLY_TAG_FIRST + 2 * k

    def _send_request(self, dest: int, request: tuple[str, Any, int]) -> None:
        data = _dumps(request)
        self.comm.Send([data, MPI.BYTE], dest=dest, tag=REQUEST_TAG)  # small: eager, returns at once
        self._stats.sent(len(data))

    def _wait_obj(self, source: int, tag: int, extra: MPI.Request | None = None,
                  extra_status: MPI.Status | None = None) -> Any:
        """Wait (probe + short sleeps, no spinning) for a pickled reply on ``tag``, and for
        ``extra`` (the snapshot's receive) if given. Both threads drive MPI progress."""
        backoff = Backoff(min(2e-5, self._wait_max_s), self._wait_max_s)
        status = MPI.Status()
        obj: Any = None
        have_obj = False
        while True:
            if not have_obj:
                msg = self.comm.Improbe(source=source, tag=tag, status=status)
                if msg is not None:
                    nbytes = status.Get_count(MPI.BYTE)
                    buf = bytearray(nbytes)
                    msg.Recv([buf, MPI.BYTE])
                    self._stats.received(nbytes)
                    obj = pickle.loads(buf)
                    have_obj = True
                    backoff.reset()
            if extra is not None and extra.Test(extra_status):
                extra = None
            if have_obj and extra is None:
                return obj
            time.sleep(backoff.next())

    def _run_decide(self, report: dict[str, Any]) -> dict[str, Any]:
        if self._decide is None:
            raise RuntimeError(f"a member reported to rank {self.rank}, which has no decide() registered")
        t0 = time.perf_counter()
        with self._decide_lock:
            reply = self._decide(report)
        self._stats.add(decide_s=time.perf_counter() - t0)
        return reply

    def _isend(self, data: Any, dest: int, tag: int, nbytes: int, on_done: Callable[[], None] | None = None) -> None:
        req = self.comm.Isend(data, dest=dest, tag=tag)
        self._stats.sent(nbytes)
        self._pending.append((req, on_done, data))  # keeps the buffer alive until the send completes

    def _progress_sends(self) -> bool:
        if not self._pending:
            return False
        done = MPI.Request.Testsome([p[0] for p in self._pending])
        if not done:
            return False
        finished = set(done)
        for i in finished:
            on_done = self._pending[i][1]
            if on_done is not None:
                on_done()
        self._pending = [p for i, p in enumerate(self._pending) if i not in finished]
        return True

    def _handle(self, msg: MPI.Message, status: MPI.Status) -> None:
        nbytes = status.Get_count(MPI.BYTE)
        buf = bytearray(nbytes)
        msg.Recv([buf, MPI.BYTE])
        self._stats.received(nbytes)
        kind, payload, tag = pickle.loads(buf)
        source = status.Get_source()
        if kind == "fetch":
            slot = self._slots.get(payload)
            got = slot.acquire() if slot is not None else None
            if got is None:
                meta_bytes = _dumps(None)
                self._isend([meta_bytes, MPI.BYTE], source, tag, len(meta_bytes))
                self._isend([np.empty(0, dtype=np.float32), MPI.FLOAT], source, tag + 1, 0)
            else:
                meta, snap, token = got
                slot_ = slot
                assert slot_ is not None
                meta_bytes = _dumps(meta)
                self._isend([meta_bytes, MPI.BYTE], source, tag, len(meta_bytes))
                self._isend([snap, MPI.FLOAT], source, tag + 1, snap.nbytes, lambda: slot_.release(token))
            self._stats.add(served_fetches=1)
        elif kind == "report":
            reply_bytes = _dumps(self._run_decide(payload))
            self._isend([reply_bytes, MPI.BYTE], source, tag, len(reply_bytes))
            self._stats.add(served_reports=1)
        else:
            raise RuntimeError(f"unknown hub request {kind!r} from rank {source}")

    def _serve(self) -> None:
        cpu0, wall0 = time.thread_time(), self._wall0
        backoff = Backoff(*self._idle)
        status = MPI.Status()
        wakeups = 0
        try:
            while True:
                wakeups += 1
                worked = False
                for _ in range(64):  # a burst of requests, then look at the sends again
                    msg = self.comm.Improbe(source=MPI.ANY_SOURCE, tag=REQUEST_TAG, status=status)
                    if msg is None:
                        break
                    self._handle(msg, status)
                    worked = True
                worked = self._progress_sends() or worked
                if self._stop.is_set() and not self._pending:
                    break
                if worked:
                    backoff.reset()
                # sends in flight: keep polling them at the shortest interval
                time.sleep(self._idle[0] if self._pending else backoff.next())
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._stats.add(service_cpu_s=time.thread_time() - cpu0, service_wall_s=time.perf_counter() - wall0,
                            service_wakeups=wakeups)

    def _fail(self, exc: BaseException) -> None:
        if os.environ.get("EVO_TRACEBACK"):
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"evo: error on rank {MPI.COMM_WORLD.Get_rank()}: {type(exc).__name__}: {msg}", file=sys.stderr,
              flush=True)
        abort(self.comm, 1)


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
