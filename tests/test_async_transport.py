"""evo.comm's async PBT transport: AsyncHub (snapshot slots, service thread, coordinator, finish)
and scatter_decisions. Pure pieces in-process; the hub under mpiexec with 2, 3 and 5 ranks."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

import evo.comm as comm_mod
from tests.conftest import MPI_SCRIPTS, run_mpi

Backoff, SnapshotSlot, idle_max_for = comm_mod.Backoff, comm_mod.SnapshotSlot, comm_mod.idle_max_for


def _line(stdout: str, tag: str) -> dict:
    for line in stdout.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    raise AssertionError(f"no {tag} line in:\n{stdout[-3000:]}")


# -- pure pieces ------------------------------------------------------------------------------
def test_backoff_doubles_to_cap_and_resets() -> None:
    b = Backoff(2e-4, 5e-3)
    seq = [b.next() for _ in range(8)]
    assert seq[:6] == pytest.approx([2e-4, 4e-4, 8e-4, 1.6e-3, 3.2e-3, 5e-3])
    assert seq[6:] == pytest.approx([5e-3, 5e-3])
    b.reset()
    assert b.next() == pytest.approx(2e-4)
    with pytest.raises(ValueError):
        Backoff(1e-3, 1e-4)


def test_idle_max_grows_with_oversubscription_up_to_a_cap() -> None:
    assert idle_max_for(2, 2) == pytest.approx(5e-3)
    assert idle_max_for(1, 16) == pytest.approx(5e-3)
    assert idle_max_for(6, 2) == pytest.approx(1.5e-2)
    assert idle_max_for(128, 2) == pytest.approx(2e-2)


def test_slot_pairs_meta_with_its_buffer_and_keeps_read_buffers_intact() -> None:
    slot = SnapshotSlot(16)
    assert slot.acquire() is None and slot.meta() is None
    out = np.zeros(16, dtype=np.float32)
    assert slot.read_into(out) is None and not out.any()
    meta = {"version": 1}
    slot.publish(meta, lambda buf: buf.fill(1))
    meta["version"] = 99  # the slot keeps its own copy
    got = slot.acquire()
    assert got is not None
    m1, b1, t1 = got
    assert m1 == {"version": 1} and (b1 == 1).all()
    # while version 1 is being read (e.g. sent), two more publishes go to other buffers
    slot.publish({"version": 2}, lambda buf: buf.fill(2))
    slot.publish({"version": 3}, lambda buf: buf.fill(3))
    assert (b1 == 1).all(), "a buffer being read was overwritten"
    assert slot.buffers == 3
    assert slot.read_into(out) == {"version": 3} and (out == 3).all()
    slot.release(t1)
    slot.publish({"version": 4}, lambda buf: buf.fill(4))
    assert slot.buffers == 3 and slot.version == 4


def test_slot_publish_waits_only_when_every_buffer_is_read() -> None:
    slot = SnapshotSlot(8, max_buffers=2)
    slot.publish({"v": 1}, lambda buf: buf.fill(1))
    got = slot.acquire()
    assert got is not None
    slot.publish({"v": 2}, lambda buf: buf.fill(2))  # the spare is free: no wait
    got2 = slot.acquire()  # now both buffers are read
    assert got2 is not None
    waited: list[float] = []
    t = threading.Thread(target=lambda: waited.append(slot.publish({"v": 3}, lambda buf: buf.fill(3))))
    t.start()
    time.sleep(0.2)
    assert t.is_alive(), "publish must wait: both buffers are being read"
    assert (got[1] == 1).all() and (got2[1] == 2).all()
    slot.release(got[2])
    t.join(5)
    assert not t.is_alive() and waited[0] >= 0.15
    assert slot.meta() == {"v": 3}
    slot.release(got2[2])


def test_slot_failed_pack_leaves_the_published_pair() -> None:
    slot = SnapshotSlot(4)
    slot.publish({"v": 1}, lambda buf: buf.fill(1))

    def bad(buf: np.ndarray) -> None:
        buf.fill(7)
        raise RuntimeError("pack failed")

    for _ in range(3):  # a leaked reference would exhaust the buffers
        with pytest.raises(RuntimeError):
            slot.publish({"v": 2}, bad)
    out = np.empty(4, dtype=np.float32)
    assert slot.read_into(out) == {"v": 1} and (out == 1).all()
    slot.publish({"v": 3}, lambda buf: buf.fill(3))
    assert slot.buffers == 2


def test_slot_threads_never_see_a_torn_snapshot() -> None:
    slot = SnapshotSlot(200_000)
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        v = 0
        while not stop.is_set():
            slot.publish({"v": v}, lambda buf, v=v: buf.fill(v))
            v += 1

    def reader() -> None:
        out = np.empty(200_000, dtype=np.float32)
        while not stop.is_set():
            meta = slot.read_into(out)
            if meta is not None and not (out == meta["v"]).all():
                errors.append(f"meta {meta} with values {np.unique(out)[:4]}")

    threads = [threading.Thread(target=writer), *(threading.Thread(target=reader) for _ in range(2))]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors, errors[:3]
    assert slot.version > 10


# -- the hub on one rank (COMM_SELF): local fetches, the coordinator's own reports --------------
def test_hub_single_rank_local_paths() -> None:
    from mpi4py import MPI

    calls: list[dict] = []
    hub = comm_mod.AsyncHub(MPI.COMM_SELF, 32, [0, 1], decide=lambda r: calls.append(r) or {"donor": 1})
    try:
        with pytest.raises(LookupError):
            hub.fetch(0)
        hub.publish(0, {"member": 0}, lambda buf: buf.fill(0.5))
        meta, snap = hub.fetch(0)
        assert meta == {"member": 0} and (snap == 0.5).all()
        out = np.empty(32, dtype=np.float32)
        assert hub.fetch(0, out=out)[1] is out
        with pytest.raises(ValueError):
            hub.fetch(0, out=np.empty(31, dtype=np.float32))
        with pytest.raises(ValueError):
            hub.publish(5, {}, lambda buf: None)
        assert hub.report({"member": 1, "score": 2.0}) == {"donor": 1}
        assert calls == [{"member": 1, "score": 2.0}]
        st = hub.stats()
        assert st["local_fetches"] == 3 and st["reports"] == 1 and st["bytes_sent"] == 0
    finally:
        hub.finish()
    hub.finish()
    with pytest.raises(RuntimeError):
        hub.fetch(0)
    assert hub.stats()["service_wall_s"] > 0


def test_hub_rejects_members_of_other_ranks() -> None:
    from mpi4py import MPI

    with pytest.raises(ValueError, match="live elsewhere"):
        comm_mod.AsyncHub(MPI.COMM_SELF, 4, [0], owner=lambda m: m + 1)


def test_scatter_decisions_single_rank() -> None:
    from mpi4py import MPI

    assert comm_mod.scatter_decisions(MPI.COMM_SELF, [{"plan": [1, 2]}]) == {"plan": [1, 2]}
    with pytest.raises(ValueError, match="one item per rank"):
        comm_mod.scatter_decisions(MPI.COMM_SELF, [1, 2])


# -- under mpiexec ------------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_fetch_is_bit_identical_even_while_the_donor_republishes(n: int) -> None:
    res = run_mpi(n, str(MPI_SCRIPTS / "async_snapshot_check.py"), str(1 << 20), "40", timeout=100)
    assert res.returncode == 0, res.stderr[-3000:]
    info = _line(res.stdout, "SNAPSHOT-OK")
    print(f"n={n}: {info}")
    assert info["publishes"] > 20 and info["distinct_versions_fetched"] > 5


@pytest.mark.mpi
@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_busy_donor_serves_fetches_promptly(n: int) -> None:
    res = run_mpi(n, str(MPI_SCRIPTS / "async_busy_donor.py"), "7.5", "3.0", "8", timeout=100)
    assert res.returncode == 0, res.stderr[-3000:]
    info = _line(res.stdout, "BUSY-DONOR")
    print(f"n={n}: fetch of 7.5 MB from a busy donor: median {info['fetch_ms_median']:.1f} ms, "
          f"max {info['fetch_ms_max']:.1f} ms; report to a busy rank 0: median {info['report_ms_median']:.1f} ms; "
          f"idle service thread CPU {info['service_cpu_pct_others_mean']:.2f}%")
    assert info["fetches"] == 8 * (n - 1)
    assert info["fetch_ms_max"] < 200 and info["report_ms_max"] < 200
    assert info["service_cpu_pct_others_mean"] < 10


@pytest.mark.mpi
@pytest.mark.timeout(120)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_a_slow_member_does_not_hold_back_the_others(n: int) -> None:
    res = run_mpi(n, str(MPI_SCRIPTS / "async_no_barrier.py"), "3.0", "0.5", "0.02", timeout=100)
    assert res.returncode == 0, res.stderr[-3000:]
    info = _line(res.stdout, "NO-BARRIER")
    print(f"n={n}: {info}")
    assert info["fast_intervals_min"] >= 4 * info["slow_intervals"]
    assert info["copies"] > 0


@pytest.mark.mpi
@pytest.mark.timeout(90)
@pytest.mark.parametrize("n", [2, 3, 5])
def test_finish_at_different_times_does_not_hang(n: int) -> None:
    res = run_mpi(n, str(MPI_SCRIPTS / "async_finish.py"), "0.3", timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    info = _line(res.stdout, "FINISH-OK")
    assert max(info["called_s"]) - min(info["called_s"]) >= 0.3 * (n - 1) - 0.05


@pytest.mark.mpi
@pytest.mark.timeout(90)
@pytest.mark.parametrize("n", [2, 3])
def test_an_exception_in_decide_aborts_the_job_with_one_line(n: int) -> None:
    res = run_mpi(n, str(MPI_SCRIPTS / "async_decide_error.py"), timeout=60)
    assert res.returncode != 0
    assert "NOT-ABORTED" not in res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("evo: error on rank")]
    assert lines == ["evo: error on rank 0: ValueError: boom from decide"], res.stderr[-2000:]
    assert res.seconds < 20
