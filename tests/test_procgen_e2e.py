"""ProcGen end to end: PBT on bigfish (2 ranks x 2 tiny generations) and the baseline runner."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_module, run_mpi

pytestmark = pytest.mark.mpi
BIGFISH = ["--env-id", "bigfish", "--num-levels", "10", "--distribution-mode", "easy", "--n-envs", "4",
           "--n-steps", "64", "--eval-episodes", "2"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(300)
def test_pbt_on_bigfish_with_held_out_levels(tmp_path: Path) -> None:
    res = run_mpi(2, "evo.truncation", *BIGFISH, "--steps-per-generation", "256", "--generations", "2",
                  "--policy", "CnnPolicy", "--eval-test-levels", "--select-on", "test",
                  "--log-dir", str(tmp_path), "--exp-name", "fish", timeout=280)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "fish"
    r = rows(run / "members.csv")
    assert len(r) == 4
    assert all(x["test_score"] != "" for x in r)  # held-out levels were evaluated
    saved = json.loads((run / "config.json").read_text())
    assert saved["config"]["eval_deterministic"] is None and saved["deterministic_eval"] is False  # as the paper
    gens = rows(run / "generations.csv")
    assert gens[0]["best_test_score"] != ""
    # --select-on test: the reported best member is the one with the best *test* score, and its
    # own train and test scores are reported next to it
    for g in gens:
        chosen = next(x for x in r if x["generation"] == g["generation"] and x["member"] == g["best_member"])
        same_gen = [float(x["test_score"]) for x in r if x["generation"] == g["generation"]]
        assert float(chosen["test_score"]) == max(same_gen)
        assert float(g["best_member_test_score"]) == float(chosen["test_score"])
        assert float(g["best_member_score"]) == float(chosen["score"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["select_on"] == "test" and summary["best_test_score"] == float(gens[-1]["best_member_test_score"])
    lineage = [json.loads(ln) for ln in (run / "lineage.jsonl").read_text().splitlines()]
    assert len(lineage) == 1  # one exploit per generation with 2 members, none after the last
    assert (run / "best_model.zip").exists()


@pytest.mark.timeout(300)
def test_baseline_on_bigfish_with_the_procgen_paper_set(tmp_path: Path) -> None:
    # the paper's set (IMPALA CNN, 64 envs x 256 steps) scaled down on the command line
    res = run_module("evo.baseline", "--env-id", "bigfish", "--param-name", "baseline", "--num-levels", "10",
                     "--n-envs", "4", "--n-steps", "64", "--num-timesteps", "512", "--eval-every", "256",
                     "--eval-episodes", "2", "--eval-test-levels", "--log-dir", str(tmp_path),
                     "--exp-name", "easy-run-10", timeout=280)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "easy-run-10"
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["policy"] == "impala" and cfg["param_name"] == "baseline" and cfg["eval_deterministic"] is False
    r = rows(run / "members.csv")
    assert len(r) == 2 and all(x["test_score"] != "" for x in r)
    # the paper's PPO values: 8 minibatches of the (scaled-down) rollout, 3 epochs, gamma 0.999
    assert {int(x["hp_batch_size"]) for x in r} == {4 * 64 // 8}
    assert {int(x["hp_n_epochs"]) for x in r} == {3} and {float(x["hp_gamma"]) for x in r} == {0.999}
    assert (run / "models" / "final_member_000.zip").exists()
    assert list((run / "tb" / "member_000").glob("events.out.tfevents.*"))
