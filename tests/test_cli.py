"""End to end: each CLI runs 4 ranks x 3 generations on CartPole-v1 and writes every output."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from conftest import TINY, run_cmd, run_module, run_mpi

pytestmark = pytest.mark.mpi
STRATEGIES = ["wta", "truncation", "truncation_collective"]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cli_writes_all_outputs(strategy: str, tmp_path: Path) -> None:
    res = run_mpi(4, f"evo.{strategy}", *TINY, "--generations", "3", "--log-dir", str(tmp_path),
                  "--exp-name", "run", timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    # rank 0 prints one line per generation
    assert sum(ln.startswith("gen ") for ln in res.stdout.splitlines()) == 3

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["strategy"] == strategy and cfg["world_size"] == 4
    assert set(cfg["search_space"]["params"]) >= {"learning_rate", "gamma", "batch_size"}

    rows = read_rows(run / "members.csv")
    assert len(rows) == 12
    assert {(int(r["generation"]), int(r["member"])) for r in rows} == {(g, m) for g in range(3) for m in range(4)}
    for r in rows:
        assert int(r["env_steps"]) == 256 * (int(r["generation"]) + 1)
        assert float(r["hp_learning_rate"]) > 0 and float(r["time_train_s"]) > 0
        assert float(r["time_exchange_s"]) >= 0 and r["time_eval_s"] and r["time_select_s"]

    gens = read_rows(run / "generations.csv")
    assert [int(g["generation"]) for g in gens] == [0, 1, 2]
    for g in gens:
        scores = [float(r["score"]) for r in rows if r["generation"] == g["generation"]]
        assert float(g["best_score"]) == max(scores) and float(g["worst_score"]) == min(scores)

    lineage = lines(run / "lineage.jsonl")
    assert len(lineage) == sum(int(g["n_exploits"]) for g in gens) > 0
    for e in lineage:
        assert {"generation", "receiver", "donor", "hparams_before", "hparams_after", "donor_hparams"} <= set(e)
        # the receiver trained the next generation with the explored hyperparameters
        if e["generation"] < 2:
            nxt = next(r for r in rows if int(r["generation"]) == e["generation"] + 1
                       and int(r["member"]) == e["receiver"])
            assert float(nxt["hp_learning_rate"]) == pytest.approx(e["hparams_after"]["learning_rate"], rel=1e-12)
    per_gen = 3 if strategy == "wta" else 1  # ceil(4 * 0.25) = 1
    # the last generation ends with its evaluation: no exploit after it
    assert [int(g["n_exploits"]) for g in gens] == [per_gen, per_gen, 0]
    assert sorted({e["generation"] for e in lineage}) == [0, 1]

    from stable_baselines3 import PPO

    model = PPO.load(run / "best_model.zip", device="cpu")
    assert model.num_timesteps == 3 * 256
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_score"] == max(summary["final_scores"])

    for m in range(4):
        assert list((run / "tb" / f"member_{m:03d}").glob("events.out.tfevents.*"))
    assert list((run / "tb" / "population").glob("events.out.tfevents.*"))
    manifest = json.loads((run / "checkpoints" / "gen_000003" / "manifest.json").read_text())
    assert manifest["generation"] == 3 and manifest["world_size"] == 4


@pytest.mark.timeout(120)
def test_single_process_run_and_no_tb_writer(tmp_path: Path) -> None:
    # a population of one is no PBT: refused with the fix, before anything is written
    res = run_module("evo.wta", *TINY, "--generations", "2", "--log-dir", str(tmp_path), "--exp-name", "solo",
                     "--no-tb-writer", timeout=100)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
    assert "at least 2 members" in lines[0] and "mpiexec -n N" in lines[0] and "--num-agents N" in lines[0]
    assert not (tmp_path / "solo").exists()
    res = run_module("evo.wta", *TINY, "--generations", "2", "--num-agents", "2", "--log-dir", str(tmp_path),
                     "--exp-name", "solo", "--no-tb-writer", timeout=100)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "solo"
    assert len(read_rows(run / "members.csv")) == 4
    assert not (run / "tb").exists()
    assert json.loads((run / "config.json").read_text())["config"]["tb_writer"] is False


def _strip_times(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "env_steps_per_s"} for r in rows]


@pytest.mark.timeout(300)
def test_same_seed_gives_identical_records(tmp_path: Path) -> None:
    args = [*TINY, "--generations", "3", "--threads", "1", "--seed", "7", "--no-tb-writer"]
    for name in ("a", "b"):
        res = run_mpi(4, "evo.truncation", *args, "--log-dir", str(tmp_path), "--exp-name", name, timeout=200)
        assert res.returncode == 0, res.stderr[-3000:]
    a, b = tmp_path / "a", tmp_path / "b"
    assert _strip_times(read_rows(a / "members.csv")) == _strip_times(read_rows(b / "members.csv"))
    assert (a / "lineage.jsonl").read_text() == (b / "lineage.jsonl").read_text()
    assert (a / "lineage.jsonl").read_text().strip()
    # ...and a different seed changes them
    res = run_mpi(4, "evo.truncation", *[x if x != "7" else "8" for x in args], "--log-dir", str(tmp_path),
                  "--exp-name", "c", timeout=200)
    assert res.returncode == 0
    assert _strip_times(read_rows(tmp_path / "c" / "members.csv")) != _strip_times(read_rows(a / "members.csv"))


@pytest.mark.timeout(240)
def test_seed_range_depends_on_the_population_size(tmp_path: Path) -> None:
    """Member i seeds numpy with seed + i, which numpy takes below 2**32 only: with 3 members the largest
    --seed is 2**32 - 3. Out of range: exit 2 and one line, before any training (not a crash of rank 1)."""
    top = 2**32 - 3
    for extra in (["--num-agents", "3", "--seed", "-1"], ["--num-agents", "3", "--seed", str(top + 1)],
                  ["--seed", str(2**32 - 1)]):  # no --num-agents: the world (2 ranks) is the population
        res = run_mpi(2, "evo.truncation", *TINY, *extra, "--log-dir", str(tmp_path), "--exp-name", "bad", timeout=60)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
        assert "--seed must be in [0, " in lines[0] and "Traceback" not in res.stderr, lines
    assert not (tmp_path / "bad").exists()
    res = run_mpi(2, "evo.truncation", *TINY, "--num-agents", "3", "--seed", str(top), "--generations", "1",
                  "--no-tb-writer", "--log-dir", str(tmp_path), "--exp-name", "top", timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [r["member"] for r in read_rows(tmp_path / "top" / "members.csv")] == ["0", "1", "2"]


@pytest.mark.timeout(240)
def test_baseline_runs_k_independent_seeds(tmp_path: Path) -> None:
    res = run_mpi(2, "evo.baseline", "--env-id", "CartPole-v1", "--num-timesteps", "768", "--eval-every", "256",
                  "--n-envs", "2", "--n-steps", "128", "--eval-episodes", "2", "--save-every", "2",
                  "--log-dir", str(tmp_path), "--exp-name", "base", timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "base"
    rows = read_rows(run / "members.csv")
    assert len(rows) == 2 * 3 and all(r["copied_from"] == "-1" for r in rows)
    # the cartpole set's PPO settings (n_envs/n_steps given on the command line win)
    assert {float(r["hp_learning_rate"]) for r in rows} == {1e-3}
    assert {int(r["hp_n_epochs"]) for r in rows} == {20}
    assert not (run / "lineage.jsonl").read_text().strip()
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert cfg["param_name"] == "cartpole" and cfg["n_envs"] == 2 and cfg["seed"] == 0
    assert (run / "models" / "member_000_steps_512.zip").exists()
    assert (run / "models" / "final_member_001.zip").exists()
    # two seeds differ
    s0 = [r["score"] for r in rows if r["member"] == "0"]
    s1 = [r["score"] for r in rows if r["member"] == "1"]
    assert s0 != s1


@pytest.mark.timeout(60)
def test_baseline_default_log_dir_and_unknown_set(tmp_path: Path) -> None:
    res = run_module("evo.baseline", "--env-id", "CartPole-v1", "--param-name", "nope", timeout=50)
    assert res.returncode == 2
    assert "unknown --param-name 'nope'" in res.stderr and "baseline3" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_no_gym_banner_when_sb3_or_procgen_is_imported() -> None:
    """ProcGen needs the old gym package, which SB3 imports whenever it is installed: in evo's environment
    neither a plain `import stable_baselines3` (a user's script, rl_zoo3.enjoy) nor evo prints gym's banner."""
    code = "import stable_baselines3, procgen, evo.learners, evo.envs"
    res = run_cmd([sys.executable, "-c", code], timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Gym has been unmaintained" not in res.stderr and "gym" not in res.stderr.lower(), res.stderr
