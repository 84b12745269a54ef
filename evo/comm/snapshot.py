"""The pieces of the asynchronous hub that need no MPI: a member's published snapshot
(:class:`SnapshotSlot`), the hub's counters (:class:`HubStats`) and the polling loops' sleeps
(:class:`Backoff`, :func:`idle_max_for`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


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

