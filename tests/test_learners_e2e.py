"""End to end with --algo: SAC and TD3 on Pendulum-v1, DQN and A2C on CartPole-v1, under the three PBT
strategies (2-3 ranks) and the baseline runner; an exchange of every learner over every transport;
an off-policy resume equal to the uninterrupted run. Tiny runs (tiny networks, 2 generations)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import MPI_SCRIPTS, run_module, run_mpi

pytestmark = pytest.mark.mpi

ENV = {"sac": "Pendulum-v1", "td3": "Pendulum-v1", "dqn": "CartPole-v1", "a2c": "CartPole-v1"}
SPACE = {  # tiny networks and buffers; the rest is the algorithm's default search space
    "sac": "net_arch: [32, 32]\nbuffer_size: 2000\nlearning_starts: 32\n",
    "td3": "net_arch: [32, 32]\nbuffer_size: 2000\nlearning_starts: 32\n",
    "dqn": "net_arch: [32, 32]\nbuffer_size: 2000\nlearning_starts: 32\ntarget_update_interval: "
           "{low: 1, high: 1000, scale: log, type: int, init: [8, 64]}\n",
    "a2c": "net_arch: [32, 32]\n",
}
OWN = {"sac": "hp_tau", "td3": "hp_policy_delay", "dqn": "hp_exploration_final_eps", "a2c": "hp_vf_coef"}
CASES = [("sac", "wta", 2), ("sac", "truncation", 2), ("sac", "truncation_collective", 3),
         ("td3", "wta", 3), ("td3", "truncation", 2), ("td3", "truncation_collective", 2),
         ("dqn", "wta", 2), ("dqn", "truncation", 3), ("dqn", "truncation_collective", 2),
         ("a2c", "wta", 2), ("a2c", "truncation", 2), ("a2c", "truncation_collective", 3)]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def flags(algo: str, tmp_path: Path, *extra: str) -> list[str]:
    space = tmp_path / f"{algo}.yaml"
    space.write_text(SPACE[algo])
    return ["--algo", algo, "--env-id", ENV[algo], "--n-envs", "2", "--n-steps", "8", "--steps-per-generation", "64",
            "--eval-episodes", "1", "--hyperparams", str(space), "--log-dir", str(tmp_path), "--threads", "1", *extra]


@pytest.mark.timeout(200)
@pytest.mark.parametrize("algo,strategy,ranks", CASES)
def test_pbt_runs_every_learner(algo: str, strategy: str, ranks: int, tmp_path: Path) -> None:
    norm = ["--normalize-obs", "--normalize-reward"] if algo in ("td3", "a2c") else []
    res = run_mpi(ranks, f"evo.{strategy}", *flags(algo, tmp_path, "--generations", "2", "--exp-name", "run", *norm),
                  timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "run"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["algo"] == algo
    rows = read_rows(run / "members.csv")
    assert len(rows) == 2 * ranks and all(int(r["env_steps"]) == 64 * (int(r["generation"]) + 1) for r in rows)
    assert OWN[algo] in rows[0] and "hp_clip_range" not in rows[0]
    gens = read_rows(run / "generations.csv")
    assert len(gens) == 2 and int(gens[0]["n_exploits"]) >= 1  # the last generation ends with its evaluation
    import stable_baselines3

    model = getattr(stable_baselines3, algo.upper()).load(run / "best_model.zip", device="cpu")
    assert model.num_timesteps == 128
    assert (run / "best_model.vecnormalize.pkl").exists() == bool(norm)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("algo", ["sac", "td3", "dqn", "a2c"])
def test_baseline_runs_the_zoo_set_of_every_learner(algo: str, tmp_path: Path) -> None:
    total = 160 if algo == "a2c" else 128  # zoo-a2c-cartpole: rollouts of 8 envs x 5 steps
    res = run_module("evo.baseline", "--algo", algo, "--env-id", ENV[algo], "--num-timesteps", str(total),
                     "--eval-every", str(total // 2), "--eval-episodes", "1", "--log-dir", str(tmp_path),
                     "--exp-name", "base", "--threads", "1", timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads((tmp_path / "base" / "config.json").read_text())["config"]
    assert cfg["param_name"] == f"zoo-{algo}-{ENV[algo].split('-')[0].lower()}" and cfg["algo"] == algo
    assert cfg["set_hparams"]["learning_rate"] > 0
    rows = read_rows(tmp_path / "base" / "members.csv")
    assert len(rows) == 2 and int(rows[-1]["env_steps"]) == total


def test_bad_algorithm_for_the_env_fails_on_every_rank_with_one_line(tmp_path: Path) -> None:
    res = run_mpi(2, "evo.wta", "--algo", "sac", "--env-id", "CartPole-v1", "--log-dir", str(tmp_path), timeout=90)
    assert res.returncode == 2
    err = [ln for ln in res.stderr.splitlines() if ln.startswith("python -m evo.wta")]
    assert err == ["python -m evo.wta: error: --algo sac needs a continuous (Box) action space, but CartPole-v1 "
                   "has Discrete(2)"]


@pytest.mark.timeout(200)
def test_off_policy_resume_continues_exactly(tmp_path: Path) -> None:
    """The replay buffer is checkpointed (not moved by exploits): a resumed run equals the uninterrupted one."""
    base = flags("sac", tmp_path, "--generations", "2")
    full = run_mpi(2, "evo.wta", *base, "--exp-name", "full", timeout=180)
    assert full.returncode == 0, full.stderr[-3000:]
    first = run_mpi(2, "evo.wta", *flags("sac", tmp_path, "--generations", "1"), "--exp-name", "cut", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    assert any(p.name.endswith(".replay") for p in (tmp_path / "cut" / "checkpoints").rglob("*"))
    resumed = run_mpi(2, "evo.wta", *base, "--exp-name", "cut", "--resume", timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    keep = ("generation", "member", "score", "env_steps", "copied_from", "hp_learning_rate", "hp_tau")
    a = [{k: r[k] for k in keep} for r in read_rows(tmp_path / "full" / "members.csv")]
    b = [{k: r[k] for k in keep} for r in read_rows(tmp_path / "cut" / "members.csv")]
    assert a == b


@pytest.mark.timeout(200)
def test_every_learner_exchanges_bit_exactly_over_every_transport() -> None:
    res = run_mpi(3, str(MPI_SCRIPTS / "learner_exchange.py"), timeout=180)
    assert res.returncode == 0 and "LEARNER-EXCHANGE-OK" in res.stdout, res.stderr[-3000:]
