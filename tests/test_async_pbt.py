"""Asynchronous PBT (``--async``, evo.pbt_async): donor rules in-process; end-to-end runs under mpiexec
(2, 3 and 5 members on 2-3 ranks), a slow member, bit-exact copies, bad input, a crash, SIGTERM + resume."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, TINY, mpiexec_path, run_mpi, signal_after

from evo.config import PBTConfig, parse
from evo.errors import ConfigError
from evo.pbt_async import choose_donor


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def lineage(run: Path) -> list[dict]:
    path = run / "lineage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# -- donor rules (pure) -------------------------------------------------------------------------
def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_truncation_bottom_copies_top_only_with_at_least_as_much_experience() -> None:
    scores = {0: 10.0, 1: 9.0, 2: 5.0, 3: 1.0}
    steps = {0: 512, 1: 512, 2: 512, 3: 512}
    # n=4, q=0.25: k=1, the bottom member (3) copies the top member (0)
    assert choose_donor("truncation", 3, scores, steps, 4, 0.25, _rng()) == 0
    assert all(choose_donor("truncation", m, scores, steps, 4, 0.25, _rng()) is None for m in (0, 1, 2))
    # the top member has trained less than the receiver: no copy (DexPBT's rule)
    assert choose_donor("truncation", 3, scores, {**steps, 0: 256}, 4, 0.25, _rng()) is None
    # q=0.5: k=2, donors drawn from the experienced members of the top two
    got = {choose_donor("truncation", 3, scores, steps, 4, 0.5, np.random.default_rng(s)) for s in range(30)}
    assert got == {0, 1}
    got = {choose_donor("truncation", 3, scores, {**steps, 1: 0}, 4, 0.5, np.random.default_rng(s))
           for s in range(30)}
    assert got == {0}


def test_exploitation_waits_for_a_complete_scoreboard_except_for_failed_members() -> None:
    steps = {0: 256, 1: 256, 2: 256}
    assert choose_donor("truncation", 2, {0: 9.0, 2: 1.0}, steps, 3, 0.5, _rng()) is None
    assert choose_donor("wta", 2, {0: 9.0, 2: 1.0}, steps, 3, 0.5, _rng()) is None
    assert choose_donor("truncation", 2, {0: 9.0, 2: math.nan}, steps, 3, 0.5, _rng()) == 0
    assert choose_donor("wta", 2, {0: 9.0, 2: math.inf}, steps, 3, 0.5, _rng()) == 0


def test_failed_member_takes_the_best_experienced_member_beyond_the_top_quantile() -> None:
    scores = {0: 10.0, 1: 9.0, 2: 5.0, 3: math.nan}
    steps = {0: 100, 1: 100, 2: 900, 3: 800}
    # top quantile (k=1) is member 0, too inexperienced; member 2 is the only valid donor
    assert choose_donor("truncation", 3, scores, steps, 4, 0.25, _rng()) == 2
    assert choose_donor("wta", 3, scores, steps, 4, 0.25, _rng()) == 2
    # a failed member never donates; nobody experienced enough: no copy
    assert choose_donor("truncation", 3, scores, {**steps, 2: 100}, 4, 0.25, _rng()) is None
    assert choose_donor("truncation", 2, {0: math.nan, 1: 3.0, 2: 1.0, 3: math.nan}, steps, 4, 0.25,
                        _rng()) is None


def test_wta_copies_the_best_if_it_is_at_least_as_experienced() -> None:
    scores = {0: 1.0, 1: 7.0, 2: 3.0}
    steps = {0: 256, 1: 512, 2: 768}
    assert choose_donor("wta", 0, scores, steps, 3, 0.25, _rng()) == 1
    assert choose_donor("wta", 1, scores, steps, 3, 0.25, _rng()) is None
    assert choose_donor("wta", 2, scores, steps, 3, 0.25, _rng()) is None


def test_async_flag_and_strategies_without_an_async_form() -> None:
    cfg = parse(PBTConfig, ["--async"], "evo", "", strategy="truncation")
    assert cfg.async_mode
    cfg.validate()
    assert not parse(PBTConfig, [], "evo", "", strategy="wta").async_mode
    with pytest.raises(ConfigError, match="truncation_collective has no asynchronous form"):
        parse(PBTConfig, ["--async"], "evo", "", strategy="truncation_collective").validate()


# -- end to end -------------------------------------------------------------------------------
def _run(tmp_path: Path, strategy: str, ranks: int, members: int, generations: int, *extra: str,
         env: dict[str, str] | None = None, timeout: float = 170):  # type: ignore[no-untyped-def]
    return run_mpi(ranks, f"evo.{strategy}", "--async", *TINY, "--generations", str(generations),
                   "--num-agents", str(members), "--log-dir", str(tmp_path), "--exp-name", "x", *extra,
                   env={"EVO_CHECK_COPIES": "1", **(env or {})}, timeout=timeout)


def check_records(run: Path, members: int, generations: int) -> tuple[list[dict[str, str]], list[dict]]:
    """members.csv / lineage.jsonl / generations.csv / summary.json of a finished --async run agree."""
    r = rows(run / "members.csv")
    keys = sorted((int(x["member"]), int(x["generation"])) for x in r)
    assert keys == [(m, g) for m in range(members) for g in range(generations)], "a gap or a duplicate"
    lin = lineage(run)
    copied = {(int(x["member"]), int(x["generation"])): int(x["copied_from"]) for x in r
              if int(x["copied_from"]) >= 0}
    assert {(e["receiver"], e["generation"]): e["donor"] for e in lin} == copied
    steps = {(int(x["member"]), int(x["generation"])): int(x["env_steps"]) for x in r}
    for e in lin:
        assert e["donor_env_steps"] >= e["receiver_env_steps"], e
        assert e["receiver_env_steps"] == steps[(e["receiver"], e["generation"])]
        assert e["donor"] != e["receiver"] and e["generation"] < generations - 1
        # the copy is bit-exact: what the donor published == what arrived == the receiver after unpack
        assert e["snapshot_sha256"] == e["received_sha256"] == e["unpacked_sha256"] is not None
    gens = rows(run / "generations.csv")
    assert [int(g["generation"]) for g in gens] == list(range(generations))
    assert sum(int(g["n_exploits"]) for g in gens) == len(lin)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["async"]["intervals"] == [generations] * members
    assert summary["async"]["exploits"] == len(lin)
    assert 0 <= summary["best_member"] < members and (run / "best_model.zip").exists()
    assert all(v is not None for v in summary["final_eval"]["scores"])
    for m in range(members):
        manifest = run / "checkpoints" / f"member_{m:03d}" / f"int_{generations:06d}" / "manifest.json"
        assert manifest.exists()
    return r, lin


E2E = [("truncation", 3, 3), ("wta", 3, 2), ("truncation", 5, 2), ("wta", 5, 3)]
"""(strategy, members, ranks): one and several members per rank, odd counts (2-member runs add nothing)."""


@pytest.mark.mpi
@pytest.mark.timeout(200)
@pytest.mark.parametrize(("strategy", "members", "ranks"), E2E, ids=[f"{s}-{m}m-{n}r" for s, m, n in E2E])
def test_async_end_to_end(strategy: str, members: int, ranks: int, tmp_path: Path) -> None:
    generations = 4
    quantile = ["--quantile", "0.5"] if strategy == "truncation" else []
    res = _run(tmp_path, strategy, ranks, members, generations, *quantile,
               *(["--no-tb-writer"] if members == 5 else []))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "--async" in res.stdout and "round   4/4" in res.stdout
    _, lin = check_records(tmp_path / "x", members, generations)
    print(f"{strategy} {members} members on {ranks} ranks: {len(lin)} copies, {res.seconds:.1f} s")
    # copies depend on who is ahead (a member copies only a donor with at least its env steps): the tests
    # below force them (a slow member, a failed one)
    assert (tmp_path / "x" / "tb" / f"member_{members - 1:03d}").exists() == (members != 5)


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_a_slow_member_does_not_hold_back_the_others(tmp_path: Path) -> None:
    slow_s, generations = 4.0, 3
    res = _run(tmp_path, "wta", 3, 3, generations, "--no-tb-writer", env={"EVO_SLOW": f"0:{slow_s}"})
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "x"
    r, _ = check_records(run, 3, generations)
    order = [(int(x["member"]), int(x["generation"])) for x in r]
    # by the time the slow member (on the coordinator's rank) finished its second interval, both fast
    # members had finished all of theirs
    slow_second = order.index((0, 1))
    assert {(1, generations - 1), (2, generations - 1)} <= set(order[:slow_second]), order
    done = json.loads((run / "summary.json").read_text())["async"]["member_done_s"]
    print(f"slow member done at {done[0]:.1f} s, fast ones at {done[1]:.1f} s and {done[2]:.1f} s")
    assert max(done[1], done[2]) < done[0] - slow_s
    waits = json.loads((run / "summary.json").read_text())["async"]["wait_s"]
    assert waits["report_s"] < 2.0  # reports are answered while rank 0 is busy


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_failed_member_copies_an_experienced_donor(tmp_path: Path) -> None:
    # member 2 is slow (behind everybody) and its weights go NaN after interval 1: it copies at once
    res = _run(tmp_path, "truncation", 2, 3, 4, "--no-tb-writer",
               env={"EVO_FAULT": "nan:2:1", "EVO_SLOW": "2:1.5"})
    assert res.returncode == 0, res.stderr[-3000:]
    r, lin = check_records(tmp_path / "x", 3, 4)
    bad = next(x for x in r if x["member"] == "2" and x["generation"] == "1")
    assert bad["failed"] == "1" and bad["copied_from"] in ("0", "1")
    nxt = next(x for x in r if x["member"] == "2" and x["generation"] == "2")
    assert nxt["failed"] == "0"
    assert any(e["receiver"] == 2 and e["generation"] == 1 and e["receiver_score"] is None for e in lin)


@pytest.mark.mpi
@pytest.mark.timeout(90)
@pytest.mark.parametrize("ranks", [2, 3])
def test_async_with_a_collective_strategy_is_one_line(ranks: int, tmp_path: Path) -> None:
    res = run_mpi(ranks, "evo.truncation_collective", "--async", *TINY, "--log-dir", str(tmp_path),
                  "--exp-name", "x", timeout=60)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "has no asynchronous form" in lines[0], res.stderr[-2000:]
    assert not (tmp_path / "x").exists()


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_exception_in_an_async_member_aborts_the_job(tmp_path: Path) -> None:
    res = _run(tmp_path, "truncation", 3, 3, 6, "--no-tb-writer", env={"EVO_FAULT": "raise:1:1"}, timeout=90)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert lines == ["python -m evo.truncation: error on rank 1: RuntimeError: injected fault on rank 1 in "
                     "generation 1 (set EVO_TRACEBACK=1 for the traceback)"], res.stderr[-2000:]


def _start(tmp_path: Path, generations: int, *extra: str) -> subprocess.Popen:
    mpiexec = mpiexec_path()
    assert mpiexec
    return subprocess.Popen(
        [mpiexec, "-n", "2", sys.executable, "-m", "evo.truncation", "--async", *TINY, "--generations",
         str(generations), "--num-agents", "3", "--quantile", "0.5", "--threads", "1", "--log-dir", str(tmp_path),
         "--exp-name", "cut", "--no-tb-writer", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "EVO_CHECK_COPIES": "1"})


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_sigterm_exits_75_and_resume_completes_the_records(tmp_path: Path) -> None:
    generations = 8
    proc = _start(tmp_path, generations)
    manifest = tmp_path / "cut" / "checkpoints" / "member_001" / "int_000002" / "manifest.json"
    elapsed, _, err = signal_after(proc, manifest, signal.SIGTERM, wait_s=90)
    assert proc.returncode == 75, err[-2000:]
    assert "resume with --resume" in err and elapsed < 30
    before = rows(tmp_path / "cut" / "members.csv")
    assert len(before) < 3 * generations, "the signal came too late to test anything"
    print(f"SIGTERM -> exit 75 in {elapsed:.2f} s after {len(before)} member intervals")

    resumed = _start(tmp_path, generations, "--resume")
    out, err = resumed.communicate(timeout=200)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed (next intervals" in out
    notes = [ln for ln in err.splitlines() if "asynchronous resume" in ln]
    assert len(notes) == 1 and "up to one interval per member" in notes[0]
    check_records(tmp_path / "cut", 3, generations)
    config = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert len(config["resumes"]) == 1
