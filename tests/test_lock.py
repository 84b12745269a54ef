"""The run-directory lock: one run per directory, stale locks of dead holders taken over, race-free."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from evo.errors import ConfigError
from evo.loop.lock import LOCK_NAME, RunLock

pytestmark = pytest.mark.timeout(60)


def _write_lock(run_dir: Path, age_s: float = 0.0, **info: Any) -> Path:
    """A lock file as another run would have left it, its heartbeat ``age_s`` seconds old."""
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps({"token": "theirs", "started_at": "2024-01-01 00:00:00", **info}))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from evo.loop.lock import RunLock
    with RunLock(Path(sys.argv[1]), heartbeat_s=0.1) as lock:
        print("held", flush=True)
        sys.stdin.readline()
""")


def test_a_second_run_is_refused_with_one_line_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "SLURM_JOB_ID": "4242"})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError) as err:
            RunLock(tmp_path).acquire()
        msg = str(err.value)
        assert "\n" not in msg
        assert f"pid {holder.pid}" in msg and socket.gethostname() in msg and "Slurm job 4242" in msg
        assert (tmp_path / LOCK_NAME).exists()  # the refused run left the holder's lock alone
    finally:
        holder.communicate("\n", timeout=20)
    assert holder.returncode == 0
    assert not (tmp_path / LOCK_NAME).exists()
    assert RunLock(tmp_path).acquire() is None  # free again


def test_release_removes_the_lock_and_is_idempotent(tmp_path: Path) -> None:
    lock = RunLock(tmp_path)
    assert lock.acquire() is None
    info = json.loads((tmp_path / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    lock.release()
    with RunLock(tmp_path) as again:
        assert again.note is None and (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_held_in_this_process_refuses_a_second_one(tmp_path: Path) -> None:
    with RunLock(tmp_path), pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
        RunLock(tmp_path).acquire()


def test_dead_pid_on_this_host_is_taken_over_with_a_note(tmp_path: Path) -> None:
    pid = _dead_pid()
    _write_lock(tmp_path, age_s=1.0, host=socket.gethostname(), pid=pid, job="77")
    with RunLock(tmp_path) as lock:
        assert lock.note is not None and "took over a stale lock" in lock.note
        assert f"pid {pid}" in lock.note and "Slurm job 77" in lock.note and "\n" not in lock.note
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left aside


def test_reused_pid_on_this_host_is_stale(tmp_path: Path) -> None:
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("process start times come from Linux's /proc")
    _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), proc_start="1")  # alive pid, other process
    with RunLock(tmp_path) as lock:
        assert lock.note is not None and "its process is gone" in lock.note


def test_this_host_after_a_reboot_or_in_another_pid_namespace(tmp_path: Path) -> None:
    if not Path("/proc/sys/kernel/random/boot_id").exists():
        pytest.skip("boot ids and pid namespaces come from Linux's /proc")
    _write_lock(tmp_path, host=socket.gethostname(), pid=os.getpid(), boot="another-boot")  # live pid, other boot
    with RunLock(tmp_path) as lock:
        assert lock.note is not None and "rebooted" in lock.note
    # a container sharing our host name: its pids are not ours to probe, only its heartbeat counts
    path = _write_lock(tmp_path, host=socket.gethostname(), pid=_dead_pid(), pidns="pid:[1]")
    with pytest.raises(ConfigError, match="in use by another run"):
        RunLock(tmp_path).acquire()
    os.utime(path, (time.time() - 120, time.time() - 120))
    with RunLock(tmp_path) as lock:
        assert lock.note is not None and "last alive 2 min ago" in lock.note


def test_another_host_with_an_old_heartbeat_is_taken_over(tmp_path: Path) -> None:
    _write_lock(tmp_path, age_s=180.0, host="node-elsewhere", pid=1234)
    with RunLock(tmp_path, stale_after_s=60.0) as lock:
        assert lock.note is not None
        assert "host node-elsewhere pid 1234" in lock.note and "last alive 3 min ago" in lock.note


def test_another_host_with_a_live_heartbeat_is_refused(tmp_path: Path) -> None:
    path = _write_lock(tmp_path, age_s=5.0, host="node-elsewhere", pid=1234)
    with pytest.raises(ConfigError, match="host node-elsewhere pid 1234") as err:
        RunLock(tmp_path, stale_after_s=60.0).acquire()
    assert "in use by another run" in str(err.value)
    assert json.loads(path.read_text())["token"] == "theirs"


def test_an_earlier_incarnation_of_this_slurm_job_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "99")
    _write_lock(tmp_path, host="node-elsewhere", pid=1, job="99", restart=0)  # fresh heartbeat
    with pytest.raises(ConfigError):  # same job, same incarnation: two steps of one job
        RunLock(tmp_path).acquire()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # requeued: Slurm ended the first incarnation
    with RunLock(tmp_path) as lock:
        assert lock.note is not None and "requeued" in lock.note


def test_an_empty_lock_file_is_live_until_its_heartbeat_is_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("evo.loop.lock._READ_RETRY_S", 0.1)  # how long a reader waits for the holder to write
    path = tmp_path / LOCK_NAME
    path.write_text("")
    with pytest.raises(ConfigError, match="unknown holder"):
        RunLock(tmp_path).acquire()
    os.utime(path, (time.time() - 120, time.time() - 120))
    with RunLock(tmp_path) as lock:
        assert lock.note is not None and "unknown holder" in lock.note


def test_heartbeat_refreshes_the_mtime_and_notices_a_takeover(tmp_path: Path) -> None:
    with RunLock(tmp_path, stale_after_s=1.0, heartbeat_s=0.05) as lock:
        path = tmp_path / LOCK_NAME
        os.utime(path, (0, 0))
        deadline = time.monotonic() + 5
        while path.stat().st_mtime < time.time() - 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_mtime > time.time() - 30
        _write_lock(tmp_path, host="node-elsewhere", pid=5)  # as if another run took it over
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lock.lost
    assert json.loads(path.read_text())["token"] == "theirs"  # release left the new holder's lock alone


def _contend(run_dirs: list[str], start: Any, done: Any, results: Any) -> None:
    """One contender: in each round, take over that round's stale lock at the same moment as the others."""
    for run_dir in run_dirs:
        lock = RunLock(Path(run_dir))
        start.wait()
        try:
            lock.acquire()
            results.put((run_dir, os.getpid(), json.loads((Path(run_dir) / LOCK_NAME).read_text())["pid"]))
        except ConfigError:
            results.put((run_dir, os.getpid(), None))
        done.wait()  # hold until every contender has tried
        lock.release()


def test_concurrent_takeovers_of_one_stale_lock_have_exactly_one_winner(tmp_path: Path) -> None:
    n, rounds = 4, 20
    dead = _dead_pid()
    run_dirs = []
    for r in range(rounds):
        d = tmp_path / f"run{r}"
        d.mkdir()
        _write_lock(d, age_s=1.0, host=socket.gethostname(), pid=dead)
        run_dirs.append(str(d))
    ctx = mp.get_context("spawn")
    start, done, results = ctx.Barrier(n), ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(run_dirs, start, done, results)) for _ in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=40) for _ in range(n * rounds)]
    for p in procs:
        p.join(timeout=20)
        assert p.exitcode == 0
    for name in run_dirs:
        outcome = [(pid, holder) for run_dir, pid, holder in got if run_dir == name]
        winners = [pid for pid, holder in outcome if holder is not None]
        assert len(outcome) == n and len(winners) == 1, outcome
        assert all(holder == winners[0] for _, holder in outcome if holder is not None)  # the file names the winner
        assert sorted(f.name for f in Path(name).iterdir()) == []  # released; nothing left aside


def test_a_takeover_that_finds_a_newer_live_lock_puts_it_back(tmp_path: Path) -> None:
    """The step the race above hinges on, made deterministic: between judging the lock stale and
    moving it aside, another contender replaced it with its own live lock."""
    _write_lock(tmp_path, age_s=1.0, host=socket.gethostname(), pid=_dead_pid())
    late = RunLock(tmp_path)
    judged = late._settled_holder()
    assert judged is not None and late._gone(judged, late._identity()) == "its process is gone"
    with RunLock(tmp_path) as winner:
        assert winner.note is not None
        live = (tmp_path / LOCK_NAME).read_text()
        assert late._take(judged) is False
        assert (tmp_path / LOCK_NAME).read_text() == live
        assert sorted(f.name for f in tmp_path.iterdir()) == [LOCK_NAME]
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            late.acquire()
