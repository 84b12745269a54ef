"""Populations larger than the MPI world (several members per rank), and PB2 end to end."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY, run_mpi

from evo.comm import local_members, owner_of

STRATEGIES = ["wta", "truncation", "truncation_collective"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_members_are_dealt_round_robin() -> None:
    assert [local_members(7, r, 3) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert all(owner_of(m, 3) == r for r in range(3) for m in local_members(7, r, 3))


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_population_larger_than_the_world_with_pb2(strategy: str, tmp_path: Path) -> None:
    res = run_mpi(2, f"evo.{strategy}", *TINY, "--generations", "4", "--num-agents", "5", "--explore", "pb2",
                  "--log-dir", str(tmp_path), "--exp-name", "x", timeout=250)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "x"
    table = rows(run / "members.csv")
    assert sorted((int(r["generation"]), int(r["member"])) for r in table) == [(g, m) for g in range(4)
                                                                               for m in range(5)]
    lineage = [json.loads(x) for x in (run / "lineage.jsonl").read_text().splitlines()]
    assert lineage and all(0 <= d["donor"] < 5 and d["donor"] != d["receiver"] for d in lineage)
    ops = {c["op"] for d in lineage for c in d["changes"].values()}
    assert "pb2" in ops, ops  # the GP chose once history allowed it (earlier: "fallback:...")
    assert all(d["generation"] < 3 for d in lineage)  # the last generation ends with its evaluation
    assert {f"member_{m:03d}" for m in range(5)} <= {p.name for p in (run / "tb").iterdir()}
    manifest = json.loads((run / "checkpoints" / "gen_000004" / "manifest.json").read_text())
    assert manifest["num_agents"] == 5
    assert all((run / "checkpoints" / "gen_000004" / f"member_{m:03d}.manifest.json").exists() for m in range(5))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["num_agents"] == 5 and len(summary["final_eval"]["scores"]) == 5
    assert (run / "best_model.zip").exists()
    # where each rank's time went: marks in order, the loop's span that of generations.csv
    timing = summary["timing"]["ranks"]
    wall = float(rows(run / "generations.csv")[-1]["wall_s"])
    assert len(timing) == 2 and "reference_s" in timing[0] and "reference_s" not in timing[1]
    for t in timing:
        assert 0 < t["to_start_s"] < t["total_s"] and t["start_s"] > 0 and t["finish_s"] >= 0
        assert wall - 0.05 <= t["loop_s"] <= wall + 5.0, (t, wall)
        assert t["total_s"] == pytest.approx(t["to_start_s"] + t["start_s"] + t["loop_s"] + t["finish_s"], abs=1e-3)
        assert t["outside_loop_s"] == pytest.approx(t["total_s"] - t["loop_s"], abs=1e-3)
        assert 0 < t["final_eval_s"] < t["loop_s"] and 0 < t["checkpoint_s"] < t["loop_s"]


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_resume_with_several_members_per_rank_and_pb2_equals_uninterrupted(tmp_path: Path) -> None:
    common = [*TINY, "--num-agents", "5", "--explore", "pb2", "--log-dir", str(tmp_path), "--no-tb-writer",
              "--generations", "4", "--checkpoint-every", "2"]
    full = run_mpi(2, "evo.truncation", *common, "--exp-name", "full", timeout=250)
    assert full.returncode == 0, full.stderr[-3000:]
    # a crash after the checkpoint of generation 2: the same run with its later checkpoint gone
    shutil.copytree(tmp_path / "full", tmp_path / "cut")
    shutil.rmtree(tmp_path / "cut" / "checkpoints" / "gen_000004")
    (tmp_path / "cut" / "summary.json").unlink()
    more = run_mpi(2, "evo.truncation", *common, "--exp-name", "cut", "--resume", timeout=250)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed at generation 2" in more.stdout

    def strip(table: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "env_steps_per_s"} for r in table]

    assert strip(rows(tmp_path / "cut" / "members.csv")) == strip(rows(tmp_path / "full" / "members.csv"))
    assert (tmp_path / "cut" / "lineage.jsonl").read_text() == (tmp_path / "full" / "lineage.jsonl").read_text()
    assert len(rows(tmp_path / "cut" / "generations.csv")) == 4


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_fewer_members_than_ranks_is_an_error(tmp_path: Path) -> None:
    res = run_mpi(3, "evo.truncation", *TINY, "--num-agents", "2", "--log-dir", str(tmp_path), "--exp-name", "x",
                  timeout=100)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "smaller than the MPI world size 3" in lines[0], res.stderr
