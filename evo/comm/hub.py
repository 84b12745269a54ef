"""Asynchronous PBT: snapshot slots, a service thread, a coordinator (:class:`AsyncHub`).

Async PBT has no generation barrier: each member publishes (meta, snapshot) when it is ready,
reports its score to the coordinator (rank 0) and, if told to, copies a donor's latest
snapshot. The donor must not stop training to serve it, and on MPICH a passive-target
MPI_Get only progresses when the target enters MPI, so every rank runs a service thread that
drives MPI progress explicitly: it probes for requests on a private communicator, answers
them with nonblocking sends, and sleeps with an exponential backoff when idle.

Wire protocol on the hub's own communicator (a Dup, so nothing mixes with the driver's calls):
  request   client -> owner, tag REQUEST_TAG, pickled (kind, payload, reply_tag)
            kind "fetch": payload = member;  kind "report": payload = the report dict
  fetch     owner -> client: pickled meta (or None) on reply_tag, float32 snapshot on reply_tag + 1
            (the client posts the Irecv for the snapshot before it sends the request)
  report    rank 0 -> client: pickled reply of decide(report) on reply_tag
Reply tags are drawn per request from a per-hub counter, so concurrent requests from several
threads of one rank never take each other's replies.
"""

from __future__ import annotations

import atexit
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from evo.comm.mpi import abort, local_size
from evo.comm.snapshot import Backoff, HubStats, SnapshotSlot, idle_max_for

REQUEST_TAG = 1
_REPLY_TAG_FIRST = 2
_REPLY_TAG_PAIRS = 16000  # reply tags stay below 32767, the smallest TAG_UB MPI allows


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
