"""The progress watchdog (evo.loop.watchdog) without MPI: its limit rule, heartbeats, probes and the
line it prints when it fires. The end-to-end proof (a real link taken down under mpiexec) is in
tests/test_multinode.py."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from evo.loop import watchdog as wd
from evo.loop.finish import EXIT_PREEMPTED, EXIT_STALLED


def test_limit_rule() -> None:
    assert wd.limit_for(-1, 100) == math.inf
    assert wd.limit_for(12.5, 1000) == 12.5
    assert wd.limit_for(0, 3) == 600
    assert wd.limit_for(0, 200) == 1000
    assert EXIT_STALLED != EXIT_PREEMPTED


class FakeComm:
    """A world of ``n`` ranks in one process: allgather returns the table set by the test."""

    def __init__(self, rank: int, table: list) -> None:
        self.rank, self.table = rank, table

    def Get_rank(self) -> int:
        return self.rank

    def allgather(self, value: object) -> list:
        self.table[self.rank] = value
        return self.table


def _pair(tmp_path: Path, setting: float) -> tuple[wd.Watchdog, wd.Watchdog, list[int]]:
    """Two ranks' watchdogs, as if on hosts 'alpha' and 'beta' (probes go to 127.0.0.1)."""
    exits: list[int] = []
    dogs = []
    for rank, host in enumerate(("alpha", "beta")):
        dog = wd.Watchdog(tmp_path, rank, setting, exit_fn=exits.append)
        dog.host = host
        dogs.append(dog)
    table = [(d.host, ("127.0.0.1",), d.listen()[2]) for d in dogs]
    peers = [wd.Peer(k, h, a, p) for k, (h, a, p) in enumerate(table)]
    for d in dogs:
        d.run_threads(peers)
    return dogs[0], dogs[1], exits


def test_fires_and_names_the_unreachable_host(tmp_path: Path) -> None:
    a, b, exits = _pair(tmp_path, 1.0)
    try:
        a.tick()
        b.tick()
        b.stop()  # rank 1's watchdog no longer answers: its host looks unreachable
        t0 = time.monotonic()
        while not exits and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert exits == [EXIT_STALLED]
        assert time.monotonic() - t0 < 6
        line = a.fired or ""
        assert "rank 0 on alpha" in line and "ranks 1 on beta (unreachable)" in line, line
        assert "exit 76" in line
        assert (tmp_path / ".watchdog" / "stalled").read_text().strip() == line
        beat = json.loads((tmp_path / ".watchdog" / "rank_00001.json").read_text())
        assert beat["rank"] == 1 and beat["done"] == 1 and beat["host"] == "beta"
    finally:
        a.stop()
        b.stop()


def test_ticks_keep_it_quiet_and_the_rank_behind_is_named(tmp_path: Path) -> None:
    a, b, exits = _pair(tmp_path, 1.0)
    try:
        for _ in range(12):  # 2.4 s of regular ticks on rank 0 only
            a.tick()
            time.sleep(0.2)
        assert a.fired is None
        assert exits == [EXIT_STALLED]  # rank 1 never completed a generation
        line = b.fired or ""
        assert "rank 1 on beta" in line and "after 0 generations" in line, line
        assert "unreachable" not in line and "ranks 1 (behind: 0 of " in line, line
    finally:
        a.stop()
        b.stop()


def test_off_and_stopped_never_fire(tmp_path: Path) -> None:
    exits: list[int] = []
    dog = wd.Watchdog(tmp_path, 0, 0.2, exit_fn=exits.append)
    dog.listen()
    dog.run_threads([wd.Peer(0, dog.host, (), 0)])
    dog.stop()
    off = wd.start(tmp_path, FakeComm(0, [None]), -1)
    time.sleep(0.6)
    assert exits == [] and off.fired is None and off not in wd._ACTIVE


def test_behind_ranks_from_heartbeats(tmp_path: Path) -> None:
    exits: list[int] = []
    dog = wd.Watchdog(tmp_path, 0, 60, exit_fn=exits.append)
    dog.peers = [wd.Peer(0, dog.host, (), 0), wd.Peer(1, dog.host, (), 0), wd.Peer(2, dog.host, (), 0)]
    (tmp_path / ".watchdog").mkdir()
    for rank, done in ((1, 4), (2, 3)):
        (tmp_path / ".watchdog" / f"rank_{rank:05d}.json").write_text(json.dumps({"rank": rank, "done": done}))
    dog.done = 4
    assert dog.waiting_for() == "waiting for ranks 2 (behind: 3 of 4 done)"


@pytest.mark.parametrize("setting", [0.0, 30.0])
def test_start_registers_and_tick_counts(tmp_path: Path, setting: float) -> None:
    dog = wd.start(tmp_path, FakeComm(0, [None]), setting)
    try:
        assert dog in wd._ACTIVE
        wd.tick()
        wd.tick(7)
        assert dog.done == 7
        assert json.loads((tmp_path / ".watchdog" / "rank_00000.json").read_text())["done"] == 7
    finally:
        dog.stop()
    assert dog not in wd._ACTIVE
