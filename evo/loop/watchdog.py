"""A progress watchdog on every rank: a job that stops making progress ends, it never hangs.

A silent network (a switch port down, a partition) leaves every rank blocked in an MPI call that
never returns, with no process dead for the launcher to notice. The watchdog is a daemon thread
per rank that the schedules tick after every completed generation (sync) or interval (async).
When no tick came for the limit (``--watchdog-s S``; ``0``, the default: ``max(600 s, 5 x the
slowest generation so far)``; negative: off), it

1. finds the ranks it is waiting for: it asks one rank of every other host over a plain TCP
   socket (each rank's watchdog answers with its progress; an unanswered host is unreachable), and
   reads every rank's heartbeat file (``<run>/.watchdog/rank_NNNNN.json``: rank, host, completed
   generations, time) for ranks that are behind;
2. prints one line naming them and writes it to ``<run>/.watchdog/stalled`` (a batch script that
   sees it ends a launcher that cannot reach the dead node, see ``hpc/common.sh``);
3. exits the process at once with :data:`EXIT_STALLED` (76) through ``os._exit``: MPI_Abort and
   MPI_Finalize may themselves wait forever on the dead link.

``hpc/common.sh`` treats 76 like 75: requeue the job, and the next allocation resumes from the
last complete checkpoint. Probes go to 127.0.0.1 for ranks on this host, else to the addresses
that rank published at start (its interfaces' IPv4 addresses).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evo.loop.finish import EXIT_STALLED

DEFAULT_FLOOR_S = 600.0
SLOWEST_FACTOR = 5.0
PROBE_TIMEOUT_S = 2.0


def limit_for(setting: float, slowest: float) -> float:
    """The stall limit in seconds: ``setting`` if positive, else max(600, 5 x the slowest gap); inf if off."""
    if setting < 0:
        return math.inf
    if setting > 0:
        return setting
    return max(DEFAULT_FLOOR_S, SLOWEST_FACTOR * slowest)


def ipv4_addresses() -> list[str]:
    """This host's non-loopback IPv4 addresses (Linux; empty where unknown)."""
    out = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:  # SIOCGIFADDR
                raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            addr = socket.inet_ntoa(raw[20:24])
            if not addr.startswith("127."):
                out.append(addr)
    return out


@dataclass(frozen=True)
class Peer:
    rank: int
    host: str
    addrs: tuple[str, ...]
    port: int


class Watchdog:
    """One rank's watchdog. Build it with :func:`start`; the schedules call :meth:`tick` and :meth:`stop`."""

    def __init__(self, run_dir: Path, rank: int, setting: float, what: str = "generation",
                 exit_fn: Callable[[int], Any] = os._exit) -> None:
        self.dir = Path(run_dir) / ".watchdog"
        self.rank = rank
        self.setting = setting
        self.what = what
        self.host = socket.gethostname()
        self.done = 0
        self.last = time.monotonic()
        self.slowest = 0.0
        self.peers: list[Peer] = []
        self.fired: str | None = None
        self._exit = exit_fn
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._lock = threading.Lock()

    # the loop's side ----------------------------------------------------------------------------
    def tick(self, done: int | None = None) -> None:
        """A generation (interval) completed; ``done``: how many this rank has completed in all."""
        now = time.monotonic()
        with self._lock:
            self.slowest = max(self.slowest, now - self.last)
            self.last = now
            self.done = self.done + 1 if done is None else done
        self._write_heartbeat()

    @property
    def limit(self) -> float:
        return limit_for(self.setting, self.slowest)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        _ACTIVE.discard(self)

    # setup ----------------------------------------------------------------------------------------
    def listen(self) -> tuple[str, tuple[str, ...], int]:
        """Open the probe port; what the other ranks need to reach it: (host, addresses, port)."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", 0))
        srv.listen(64)
        srv.settimeout(0.5)
        self._server = srv
        return self.host, tuple(ipv4_addresses()), int(srv.getsockname()[1])

    def run_threads(self, peers: Sequence[Peer]) -> None:
        self.peers = list(peers)
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / "stalled").unlink()
        self._write_heartbeat()
        threading.Thread(target=self._serve, name="evo-watchdog-probe", daemon=True).start()
        threading.Thread(target=self._watch, name="evo-watchdog", daemon=True).start()

    # threads ------------------------------------------------------------------------------------
    def _serve(self) -> None:
        srv = self._server
        assert srv is not None
        while not self._stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                conn.settimeout(PROBE_TIMEOUT_S)
                conn.sendall((json.dumps(self._status()) + "\n").encode())

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, max(0.05, self.limit / 20) if math.isfinite(self.limit) else 1.0)):
            idle = time.monotonic() - self.last
            if idle > self.limit and not self._stop.is_set():
                self._fire(idle)
                return

    def _fire(self, idle: float) -> None:
        line = (f"evo: watchdog: rank {self.rank} on {self.host}: no {self.what} completed for {idle:.0f} s "
                f"(limit {self.limit:.0f} s, after {self.done} {self.what}s); {self.waiting_for()}; "
                f"exit {EXIT_STALLED} (stalled: requeue and resume from the last complete checkpoint)")
        self.fired = line
        print(line, file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            (self.dir / "stalled").write_text(line + "\n")
        if self._stop.is_set():
            return
        self._exit(EXIT_STALLED)

    # diagnosis ----------------------------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        return {"rank": self.rank, "host": self.host, "pid": os.getpid(), "done": self.done, "time": time.time()}

    def _write_heartbeat(self) -> None:
        path = self.dir / f"rank_{self.rank:05d}.json"
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with contextlib.suppress(OSError):
            tmp.write_text(json.dumps(self._status()))
            os.replace(tmp, path)

    def heartbeats(self) -> dict[int, dict[str, Any]]:
        out = {}
        for p in self.peers:
            with contextlib.suppress(OSError, ValueError):
                out[p.rank] = json.loads((self.dir / f"rank_{p.rank:05d}.json").read_text())
        return out

    def unreachable_hosts(self) -> list[str]:
        """Other hosts none of whose addresses answered a probe of one of its ranks (probed in parallel)."""
        first: dict[str, Peer] = {}
        for p in self.peers:
            if p.host != self.host and p.host not in first:
                first[p.host] = p
        answers: dict[str, bool] = {}
        threads = [threading.Thread(target=lambda p=p: answers.__setitem__(p.host, probe(p)), daemon=True)
                   for p in first.values()]
        for t in threads:
            t.start()
        deadline = time.monotonic() + PROBE_TIMEOUT_S * 2 + 1
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return sorted(h for h in first if not answers.get(h, False))

    def waiting_for(self) -> str:
        """'waiting for ranks 2, 3 (n2: unreachable)' or the ranks that are behind."""
        lost = self.unreachable_hosts()
        beats = self.heartbeats()
        most = max([b.get("done", 0) for b in beats.values()] + [self.done])
        parts = []
        for host in lost:
            ranks = [p.rank for p in self.peers if p.host == host]
            parts.append(f"ranks {_ranks(ranks)} on {host} (unreachable)")
        behind = sorted(r for r, b in beats.items() if b.get("done", 0) < most
                        and not any(p.rank == r and p.host in lost for p in self.peers))
        if behind:
            parts.append(f"ranks {_ranks(behind)} (behind: {', '.join(str(beats[r]['done']) for r in behind)} "
                         f"of {most} done)")
        if not parts:
            return "waiting for: no rank unreachable or behind (every rank blocked in the same step)"
        return "waiting for " + "; ".join(parts)


def _ranks(ranks: Sequence[int]) -> str:
    return ", ".join(str(r) for r in sorted(ranks))


def probe(p: Peer) -> bool:
    """Whether rank ``p``'s watchdog answers (127.0.0.1 on this host, else its addresses)."""
    addrs = ("127.0.0.1",) if p.host == socket.gethostname() else p.addrs
    for addr in addrs:
        try:
            with socket.create_connection((addr, p.port), timeout=PROBE_TIMEOUT_S) as s:
                s.settimeout(PROBE_TIMEOUT_S)
                if s.recv(4096):
                    return True
        except OSError:
            continue
    return False


_ACTIVE: set[Watchdog] = set()


def start(run_dir: Path, comm: Any, setting: float, what: str = "generation") -> Watchdog:
    """(collective) This rank's watchdog, running; off (never fires) when ``setting`` is negative.
    The ranks exchange their probe addresses here."""
    dog = Watchdog(run_dir, comm.Get_rank(), setting, what)
    if setting < 0:
        return dog
    host, addrs, port = dog.listen()
    table = comm.allgather((host, addrs, port))
    dog.run_threads([Peer(k, h, a, p) for k, (h, a, p) in enumerate(table)])
    _ACTIVE.add(dog)
    return dog


def tick(done: int | None = None) -> None:
    """Tick this process's running watchdog (one per rank): a generation or interval completed;
    ``done``: this rank's progress so far (default: one more than before)."""
    for dog in list(_ACTIVE):
        dog.tick(done)
