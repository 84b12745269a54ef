"""Asynchronous PBT (``--async``, evo.loop.asynchronous + evo.loop.coordinator): the coordinator's
decisions in-process (same-set comparisons only); end-to-end runs under mpiexec (3 and 5 members on 2-3
ranks), a slow member, bit-exact copies, paired scores, bad input, a crash, SIGTERM + resume."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT, TINY, mpiexec_path, run_mpi, signal_after

from evo.cmdline import parse
from evo.config import PBTConfig
from evo.errors import ConfigError
from evo.loop.coordinator import Board, Coordinator


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def lineage(run: Path) -> list[dict]:
    path = run / "lineage.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# -- the coordinator's decisions (in-process) ------------------------------------------------------
def coordinator(n: int, rule: str = "truncation", quantile: float = 0.25) -> Coordinator:
    cfg = SimpleNamespace(rule=rule, quantile=quantile, seed=0, select_on="train", explore="perturb",
                          generations=100)
    run = SimpleNamespace(cfg=cfg, n=n, exchanging=True, rule=rule, pb2_start={}, pb2_history=[])
    return Coordinator(run, Board(n), {}, 0)  # type: ignore[arg-type]


def report(c: Coordinator, member: int, interval: int, score: float, env_steps: int | None = None) -> dict:
    steps = (interval + 1) * 256 if env_steps is None else env_steps
    return c({"kind": "ready", "member": member, "interval": interval, "score": score, "test_score": None,
              "eval_set": interval, "env_steps": steps, "hparams": {}})


def test_no_decision_until_every_member_has_a_score_on_one_set() -> None:
    c = coordinator(4)
    assert report(c, 0, 0, 1.0)["donor"] is None
    assert report(c, 1, 0, 2.0)["donor"] is None
    assert report(c, 2, 0, 3.0)["donor"] is None
    # member 0 races ahead: its interval-1 score is compared with nobody (set 1 is incomplete, set 0 too)
    assert report(c, 0, 1, -50.0)["donor"] is None
    # the last member completes set 0: the plan is set 0's, the sync plan of generation 0
    reply = report(c, 3, 0, 4.0)
    assert reply["donor"] is None  # member 3 is the best on set 0
    assert c.board.complete_set() == 0


def test_decisions_compare_scores_of_one_evaluation_set_only() -> None:
    c = coordinator(4)
    for m, score in ((1, 2.0), (2, 3.0), (3, 4.0)):
        report(c, m, 0, score)
    for m, score in ((1, 50.0), (2, 60.0), (3, -70.0)):  # the fast members' set-1 scores
        report(c, m, 1, score)
    # the slow member 0 completes set 0, where it is the worst: it copies the best *on set 0* (member 3),
    # although member 3's latest score (-70, on set 1) is the worst of all; both compared scores are set 0's
    reply = report(c, 0, 0, 1.0)
    assert reply["donor"] == 3 and reply["eval_set"] == reply["receiver_eval_set"] == 0
    assert (reply["receiver_score"], reply["donor_score"]) == (1.0, 4.0)
    # set 1 completes with member 0's next report: now member 3 is the worst there and member 0 is not
    reply = report(c, 0, 1, 55.0)
    assert reply["donor"] is None
    report(c, 2, 2, 0.0)  # member 2, the best on set 1, moves on (so it has trained as long as member 3)
    assert report(c, 3, 2, 0.0)["donor"] == 2  # top of set 1 (quantile 0.25 of 4: one donor, one receiver)
    # each member acts on a set's plan once: set 2 is incomplete, set 1 was acted on
    assert report(c, 3, 3, 0.0)["donor"] is None


def test_identical_scores_on_one_set_rank_by_member_index_whatever_later_sets_say() -> None:
    # two members with identical weights have identical scores on one set (paired episodes): the rule sees a
    # tie, never one member's set-0 score against the other's set-5 score
    c = coordinator(2, rule="wta")
    report(c, 0, 0, 7.0)
    for k in range(1, 6):
        report(c, 0, k, 100.0 + k, env_steps=(k + 1) * 256)
    reply = report(c, 1, 0, 7.0)
    # wta on set 0 is a tie (lowest index wins): member 1 copies member 0, and the compared scores are both
    # set-0 scores, equal, not member 0's latest 105
    assert reply["donor"] == 0 and reply["eval_set"] == reply["receiver_eval_set"] == 0
    assert reply["receiver_score"] == reply["donor_score"] == 7.0


def test_experience_rule_and_failed_members() -> None:
    c = coordinator(3, rule="wta")
    report(c, 0, 0, 5.0, env_steps=256)
    report(c, 1, 0, 1.0, env_steps=256)
    # member 2 is far ahead in env steps: wta says copy member 0, but member 0 has trained less
    report(c, 2, 0, 0.0, env_steps=256)
    c.board.latest[2].env_steps = 10_000
    assert report(c, 2, 1, 0.0, env_steps=10_000)["donor"] is None
    # a failed member copies the best of the newest complete set at once, as often as it fails
    first = report(c, 1, 1, math.nan, env_steps=512)
    assert first["donor"] == 0 and math.isnan(first["receiver_score"]) and first["receiver_eval_set"] == 1
    assert report(c, 1, 2, math.nan, env_steps=768)["donor"] == 0


def test_async_flag_transports_and_the_collective_preset() -> None:
    cfg = parse(PBTConfig, ["--async"], "evo", "", strategy="truncation")
    cfg.validate()
    assert cfg.async_mode and cfg.transport == "hub" and cfg.rule == "truncation"
    cfg = parse(PBTConfig, ["--async", "--explore", "pb2"], "evo", "", strategy="wta")
    cfg.validate()
    assert cfg.transport == "hub" and cfg.rule == "wta"
    assert not parse(PBTConfig, [], "evo", "", strategy="wta").async_mode
    with pytest.raises(ConfigError, match="needs every rank in every exchange"):
        parse(PBTConfig, ["--async"], "evo", "", strategy="truncation_collective").validate()
    with pytest.raises(ConfigError, match="needs every rank in every exchange"):
        parse(PBTConfig, ["--async", "--transport", "p2p"], "evo", "", strategy="truncation").validate()
    with pytest.raises(ConfigError, match="use it with --async"):
        parse(PBTConfig, ["--transport", "hub"], "evo", "", strategy="truncation").validate()


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
    by = {(int(x["member"]), int(x["generation"])): x for x in r}
    for e in lin:
        assert e["donor_env_steps"] >= e["receiver_env_steps"], e
        # paired: both compared scores come from one evaluation set, and are the members' scores on it
        if e["receiver_score"] is not None:
            assert e["receiver_eval_set"] == e["donor_eval_set"], e
            assert float(by[(e["receiver"], e["receiver_eval_set"])]["score"]) == e["receiver_score"]
        assert float(by[(e["donor"], e["donor_eval_set"])]["score"]) == e["donor_score"]
        assert by[(e["donor"], e["donor_eval_set"])]["eval_set"] == str(e["donor_eval_set"])
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
    for t in summary["timing"]["ranks"]:  # every rank's checkpoints and final evaluation timed inside its loop
        assert 0 < t["checkpoint_s"] < t["loop_s"] and 0 < t["final_eval_s"] < t["loop_s"]
        assert t["outside_loop_s"] == pytest.approx(t["total_s"] - t["loop_s"], abs=1e-3)
    for m in range(members):
        manifest = run / "checkpoints" / f"gen_{generations:06d}" / f"member_{m:03d}.manifest.json"
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
    assert "--async" in res.stdout and "gen   4/4" in res.stdout
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
    assert len(lines) == 1 and "needs every rank in every exchange" in lines[0], res.stderr[-2000:]
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
    manifest = tmp_path / "cut" / "checkpoints" / "gen_000002" / "member_001.manifest.json"
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
