"""One run per run directory: a lock file that works on the shared filesystems clusters use.

``flock``/``fcntl`` locks are not reliable across the nodes of an NFS or Lustre mount, so the lock
is a file, ``<run>/.lock``, created with ``O_CREAT | O_EXCL`` (atomic on local disks, NFSv3+ and
Lustre). It names its holder as JSON: host, pid, the process's start time, boot id and pid
namespace (Linux), Slurm job id and restart count (when set), start time, and a random token.
A daemon thread refreshes the file's mtime every ``heartbeat_s`` seconds while the run lives.

A holder is gone (its lock is stale) when:

* it ran on this host (and in this pid namespace) and its pid no longer exists, or is now another
  process (another start time), or the host has rebooted since (another boot id);
* it is an earlier incarnation of this very Slurm job (same job id, lower ``SLURM_RESTART_COUNT``:
  Slurm ended it before requeueing);
* otherwise, when its heartbeat is older than ``stale_after_s`` (a dead node; hosts' clocks are
  assumed to agree to well within that).

Takeover is race-free: a contender renames the lock file to a name of its own (atomic), checks
that what it moved is the stale file it judged (token and inode), and only then creates a new
lock with ``O_EXCL``; if it moved a newer, live lock by mistake it links it back. Of any number
of contenders exactly one ends up holding the lock; the others see a live holder and refuse.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from evo.errors import ConfigError

LOCK_NAME = ".lock"
_ATTEMPTS = 8  # create / take-over rounds before giving up on a lock that keeps changing hands
_READ_RETRY_S = 1.0  # how long a lock file may stay empty (its creator between open and write)


def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the command name may contain spaces


def _read_proc(path: str, link: bool = False) -> str | None:
    """A line of /proc (Linux), or None where there is none."""
    try:
        return os.readlink(path) if link else Path(path).read_text().strip()
    except OSError:
        return None


def _pid_alive(pid: int, proc_start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        pass
    now = _proc_start(pid)
    return proc_start is None or now is None or now == proc_start


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


class _Holder:
    """What a lock file says about its holder, and the file's identity (inode, mtime, raw text)."""

    def __init__(self, raw: bytes, ino: int, mtime: float) -> None:
        self.raw, self.ino, self.mtime = raw, ino, mtime
        try:
            info = json.loads(raw)
            self.info: dict[str, Any] = info if isinstance(info, dict) else {}
        except ValueError:
            self.info = {}

    @property
    def readable(self) -> bool:
        return "host" in self.info and "pid" in self.info

    def same_file(self, other: _Holder) -> bool:
        return self.ino == other.ino and self.raw == other.raw

    def describe(self) -> str:
        if not self.readable:
            return "an unknown holder (unreadable lock file)"
        job = self.info.get("job")
        return f"host {self.info['host']} pid {self.info['pid']}" + (f" (Slurm job {job})" if job else "")


def _read(path: Path) -> _Holder | None:
    """The lock file's holder, or None when there is no lock file. Opening it revalidates NFS's
    cached attributes (close-to-open consistency), so the mtime is the server's current one."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return _Holder(b"".join(chunks), st.st_ino, st.st_mtime)
    finally:
        os.close(fd)


class RunLock:
    """Held by rank 0 for the life of a run (fresh or resumed) on ``run_dir``, which must exist."""

    def __init__(self, run_dir: Path, stale_after_s: float = 60.0, heartbeat_s: float = 5.0) -> None:
        if not 0 < heartbeat_s < stale_after_s:
            raise ValueError(f"need 0 < heartbeat_s ({heartbeat_s}) < stale_after_s ({stale_after_s})")
        self.path = Path(run_dir) / LOCK_NAME
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.note: str | None = None
        self.lost = False  # set by the heartbeat if another run took the lock over (we were frozen too long)
        self._token: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public ----------------------------------------------------------------------------------
    def acquire(self) -> str | None:
        """Take the lock. Returns None, or a one-line note when a stale lock was taken over.
        Raises ConfigError (one line naming the holder) when another live run holds it."""
        if self._token is not None:
            return self.note
        me = self._identity()
        note = None
        holder: _Holder | None = None
        for _ in range(_ATTEMPTS):
            if self._create(me):
                self._token = me["token"]
                self.note = note
                self._start_heartbeat()
                return note
            holder = self._settled_holder()
            if holder is None:
                continue  # released meanwhile: try again
            why = self._gone(holder, me)
            if why is None:
                break
            if self._take(holder):
                note = f"took over a stale lock of {holder.describe()}, last alive {_ago(time.time() - holder.mtime)}"
                note += f" ({why})" if why else ""
        what = "other runs" if holder is None else holder.describe() + (
            f", started {holder.info['started_at']}" if holder.info.get("started_at") else "") + (
            f", last alive {_ago(time.time() - holder.mtime)}")
        raise ConfigError(f"{self.path.parent} is in use by another run: {what}; wait for it to end (a lock whose "
                          f"heartbeat stops is stale after {self.stale_after_s:.0f} s), or use another --exp-name")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock file if it is still ours. Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._token is not None and self._owns():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self._token = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # -- creating and judging --------------------------------------------------------------------
    @staticmethod
    def _identity() -> dict[str, Any]:
        pid = os.getpid()
        return {"host": socket.gethostname(), "pid": pid, "proc_start": _proc_start(pid),
                "boot": _read_proc("/proc/sys/kernel/random/boot_id"), "pidns": _read_proc("/proc/self/ns/pid", True),
                "job": os.environ.get("SLURM_JOB_ID") or None,
                "restart": int(os.environ.get("SLURM_RESTART_COUNT") or 0),
                "started_at": time.strftime("%Y-%m-%d %H:%M:%S"), "token": uuid.uuid4().hex}

    def _create(self, me: dict[str, Any]) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, (json.dumps(me, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _settled_holder(self) -> _Holder | None:
        """The current holder; waits a moment while the file is still empty (being written)."""
        deadline = time.monotonic() + _READ_RETRY_S
        while True:
            holder = _read(self.path)
            if holder is None or holder.readable or time.monotonic() > deadline:
                return holder
            time.sleep(0.02)

    def _gone(self, holder: _Holder, me: dict[str, Any]) -> str | None:
        """Why ``holder`` is no longer running ("" when only its heartbeat says so), or None if alive."""
        info = holder.info
        age = time.time() - holder.mtime
        if not holder.readable:
            return "" if age > self.stale_after_s else None
        if info["host"] == me["host"]:
            if None not in (info.get("boot"), me["boot"]) and info.get("boot") != me["boot"]:
                return "its host has rebooted since"
            if info.get("pidns") in (None, me["pidns"]):  # its pids are ours (not another container's)
                alive = _pid_alive(int(info["pid"]), info.get("proc_start"))
                return None if alive else "its process is gone"
        if info.get("job") and info.get("job") == me["job"] and int(info.get("restart") or 0) < me["restart"]:
            return "an earlier run of this Slurm job, since requeued"
        return "" if age > self.stale_after_s else None

    def _take(self, stale: _Holder) -> bool:
        """Move the stale lock aside (atomically, under a name of our own) if it is still there.
        True when we removed exactly that file; a newer lock moved by mistake is put back."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale.{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False  # another contender moved it first
        moved = _read(aside)
        if moved is not None and moved.same_file(stale):
            aside.unlink()
            return True
        try:  # we moved a live lock created after our look: put it back unless a newer one exists
            os.link(aside, self.path)
        except FileExistsError:
            pass
        aside.unlink()
        return False

    # -- heartbeat -------------------------------------------------------------------------------
    def _owns(self) -> bool:
        holder = _read(self.path)
        return holder is not None and holder.info.get("token") == self._token

    def _taken_by_another(self) -> bool:
        """True when the lock file now names another holder (a missing file may be a contender's
        brief mistaken move, which it undoes: not a loss)."""
        holder = _read(self.path)
        return holder is not None and holder.info.get("token") != self._token

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="evo-run-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if self._taken_by_another():
                    self.lost = True
                    return
                os.utime(self.path)  # None: the file server's clock on NFS
            except OSError:
                pass  # a hiccup of the filesystem: try again at the next beat
