"""Populations larger than the MPI world (several members per rank), and PB2 end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import MPI_SCRIPTS, TINY, run_mpi

from evo.comm import collective_rounds, local_members, owner_of, split_plan
from evo.core.selection import Transfer

STRATEGIES = ["wta", "truncation", "truncation_collective"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_members_are_dealt_round_robin() -> None:
    assert [local_members(7, r, 3) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert all(owner_of(m, 3) == r for r in range(3) for m in local_members(7, r, 3))


def test_split_plan_sends_each_rank_only_its_transfers() -> None:
    transfers = [Transfer(5, 0), Transfer(6, 1), Transfer(4, 3)]
    plans = split_plan("truncation", transfers, 3)
    # rank 0 hosts 0, 3 and 6: every transfer touches it; rank 2 hosts 2 and 5: only 5 <- 0
    assert set(plans[0].transfers) == set(transfers)
    assert plans[2].transfers == (Transfer(5, 0),)
    for r, p in enumerate(plans):
        assert all(r in (owner_of(t.donor, 3), owner_of(t.receiver, 3)) for t in p.transfers)
    assert sum(len(p.transfers) for p in plans) <= 2 * len(transfers)


def test_collective_rounds_keep_each_rank_in_one_group_per_round() -> None:
    # 7 members on 3 ranks: donors 0 (rank 0) and 4 (rank 1); receivers 3 (rank 0), 1 (rank 1), 2, 5 (rank 2)
    transfers = [Transfer(3, 4), Transfer(1, 0), Transfer(2, 0), Transfer(5, 4)]
    rounds, assignment = collective_rounds(transfers, 3)
    assert rounds == 2 and set(assignment) == {0, 4}
    assert collective_rounds([Transfer(1, 0), Transfer(3, 2)], 4) == (1, {0: 0, 2: 0})  # one member per rank


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("strategy", "n", "ranks"), [("wta", 7, 3), ("truncation", 7, 3),
                                                      ("truncation_collective", 7, 3), ("truncation", 5, 2)])
def test_several_members_per_rank_move_bit_exactly(strategy: str, n: int, ranks: int) -> None:
    res = run_mpi(ranks, str(MPI_SCRIPTS / "members_exchange_check.py"), strategy, str(n), timeout=200)
    assert res.returncode == 0 and "MEMBERS-EXCHANGE-OK" in res.stdout, res.stderr[-3000:]


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_population_larger_than_the_world_with_pb2(strategy: str, tmp_path: Path) -> None:
    res = run_mpi(2, f"evo.{strategy}", *TINY, "--generations", "3", "--num-agents", "5", "--explore", "pb2",
                  "--log-dir", str(tmp_path), "--exp-name", "x", timeout=250)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "x"
    table = rows(run / "members.csv")
    assert sorted((int(r["generation"]), int(r["member"])) for r in table) == [(g, m) for g in range(3)
                                                                               for m in range(5)]
    lineage = [json.loads(x) for x in (run / "lineage.jsonl").read_text().splitlines()]
    assert lineage and all(0 <= d["donor"] < 5 and d["donor"] != d["receiver"] for d in lineage)
    ops = {c["op"] for d in lineage for c in d["changes"].values()}
    assert "pb2" in ops, ops  # the GP chose once history allowed it (earlier: "fallback:...")
    assert {f"member_{m:03d}" for m in range(5)} <= {p.name for p in (run / "tb").iterdir()}
    manifest = json.loads((run / "checkpoints" / "gen_000003" / "manifest.json").read_text())
    assert manifest["num_agents"] == 5 and len([k for k in manifest["files"] if k.endswith(":zip")]) == 5
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_agents"] == 5 and len(summary["final_eval"]["scores"]) == 5
    assert (run / "best_model.zip").exists()


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_resume_with_several_members_per_rank_and_pb2_equals_uninterrupted(tmp_path: Path) -> None:
    common = [*TINY, "--num-agents", "5", "--explore", "pb2", "--log-dir", str(tmp_path), "--no-tb-writer"]
    full = run_mpi(2, "evo.truncation", *common, "--generations", "4", "--exp-name", "full", timeout=250)
    assert full.returncode == 0, full.stderr[-3000:]
    cut = run_mpi(2, "evo.truncation", *common, "--generations", "2", "--exp-name", "cut", timeout=250)
    assert cut.returncode == 0, cut.stderr[-3000:]
    more = run_mpi(2, "evo.truncation", *common, "--generations", "4", "--exp-name", "cut", "--resume", timeout=250)
    assert more.returncode == 0, more.stderr[-3000:]

    def strip(table: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "env_steps_per_s"} for r in table]

    assert strip(rows(tmp_path / "cut" / "members.csv")) == strip(rows(tmp_path / "full" / "members.csv"))
    assert (tmp_path / "cut" / "lineage.jsonl").read_text() == (tmp_path / "full" / "lineage.jsonl").read_text()


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_fewer_members_than_ranks_is_an_error(tmp_path: Path) -> None:
    res = run_mpi(3, "evo.truncation", *TINY, "--num-agents", "2", "--log-dir", str(tmp_path), "--exp-name", "x",
                  timeout=100)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "smaller than the MPI world size 3" in lines[0], res.stderr
