"""Nothing lost, nothing silent: failed members fail alone, one run per directory, advice that works,
resume keeps the plan (issue: run-directory locks, failed members, checkpoint fallback...)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY, mpiexec_path, run_mpi, signal_after

ENVS = str(Path(__file__).parent / "envs")


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def pairs(run: Path) -> list[tuple[int, int]]:
    return sorted((int(r["generation"]), int(r["member"])) for r in rows(run / "members.csv"))


def faulty(fault: str, after: int = 300) -> list[str]:
    return ["--env-id", "faulty_env:Faulty-v0", "--env-kwargs", f"fault={fault}", "rank=1", f"after={after}",
            *TINY[2:]]


# -- failed members fail alone ---------------------------------------------------------------------
CASES = [("", "nan_reward"), ("", "raise"), ("--async", "raise"), ("--async", "nan_obs")]


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("mode", "fault"), CASES, ids=[f"{m or 'sync'}-{f}" for m, f in CASES])
def test_a_failing_member_fails_alone_and_is_replaced(mode: str, fault: str, tmp_path: Path) -> None:
    args = [*faulty(fault), "--num-agents", "4", "--quantile", "0.5", "--log-dir", str(tmp_path), "--exp-name", "x",
            "--no-tb-writer", *([mode] if mode else [])]
    res = run_mpi(2, "evo.truncation", *args, "--generations", "3", env={"PYTHONPATH": ENVS}, timeout=250)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "x"
    table = rows(run / "members.csv")
    bad = [r for r in table if r["failed"] == "1"]
    assert len(bad) == 1, [(r["generation"], r["member"], r["failure"]) for r in bad]  # one member, once
    assert int(bad[0]["member"]) % 2 == 1  # a member of rank 1, where the env broke
    assert bad[0]["failure"].startswith(("training: ", "evaluation: "))
    assert "broke down" in bad[0]["failure"] or fault != "raise"
    if mode == "":  # it ranked last and took a copy of a valid donor (async: once a complete set allows)
        assert int(bad[0]["copied_from"]) >= 0
    after = [r for r in table if r["member"] == bad[0]["member"] and int(r["generation"]) > int(bad[0]["generation"])]
    assert after and all(r["failed"] == "0" for r in after)  # fresh envs, the donor's weights: training again
    assert pairs(run) == [(g, m) for g in range(3) for m in range(4)]
    if mode == "":  # and the run resumes with more generations
        more = run_mpi(2, "evo.truncation", *args, "--generations", "4", "--resume", env={"PYTHONPATH": ENVS},
                       timeout=250)
        assert more.returncode == 0, more.stderr[-3000:]
        assert pairs(run) == [(g, m) for g in range(4) for m in range(4)]


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_a_member_failing_three_times_in_a_row_ends_the_job(tmp_path: Path) -> None:
    # without exchange nobody replaces it: NaN rewards poison its weights for good
    res = run_mpi(2, "evo.truncation", *faulty("nan_reward", after=10), "--num-agents", "2", "--no-exchange",
                  "--generations", "6", "--log-dir", str(tmp_path), "--exp-name", "x", "--no-tb-writer",
                  env={"PYTHONPATH": ENVS}, timeout=150)
    assert res.returncode == 1, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "member 1 failed 3 generations in a row" in lines[0], res.stderr[-3000:]
    assert "Traceback" not in res.stderr


# -- one run per directory -------------------------------------------------------------------------
def _popen(tmp_path: Path, *extra: str) -> subprocess.Popen:
    mpiexec = mpiexec_path()
    assert mpiexec
    return subprocess.Popen([mpiexec, "-n", "2", sys.executable, "-m", "evo.truncation", *TINY, "--threads", "1",
                             "--log-dir", str(tmp_path), "--exp-name", "x", "--no-tb-writer", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_a_second_run_on_a_busy_directory_is_refused(tmp_path: Path) -> None:
    first = _popen(tmp_path, "--generations", "400")
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "x" / "members.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for extra in (["--overwrite"], ["--resume"]):
            res = run_mpi(2, "evo.truncation", *TINY, "--generations", "8", "--log-dir", str(tmp_path),
                          "--exp-name", "x", "--no-tb-writer", *extra, timeout=60)
            lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
            assert res.returncode == 2 and len(lines) == 1, res.stderr[-3000:]
            assert "in use by another run" in lines[0] and "pid" in lines[0]  # names the holder
        assert first.poll() is None, "the first run ended before the test could try a second one"
        os.kill(first.pid, signal.SIGTERM)
        _, err = first.communicate(timeout=100)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 75, err[-3000:]
    done = pairs(tmp_path / "x")
    assert done == sorted(set(done)) and done == [(g, m) for g in range(len(done) // 2) for m in range(2)]
    assert not (tmp_path / "x" / ".lock").exists()  # released at the end


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_two_resumes_at_once_one_wins(tmp_path: Path) -> None:
    done = run_mpi(2, "evo.truncation", *TINY, "--generations", "2", "--log-dir", str(tmp_path), "--exp-name", "x",
                   "--no-tb-writer", timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    procs = [_popen(tmp_path, "--generations", "4", "--resume") for _ in range(2)]
    results = [p.communicate(timeout=250) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [e[-1500:] for _, e in results]
    loser = results[[p.returncode for p in procs].index(2)][1]
    assert "in use by another run" in loser
    config = json.loads((tmp_path / "x" / "config.json").read_text())
    assert len(config["resumes"]) == 1  # no fake entry from the refused one
    assert pairs(tmp_path / "x") == [(g, m) for g in range(4) for m in range(2)]


# -- printed advice that works; resume keeps the plan ------------------------------------------------
@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_stopped_before_the_first_checkpoint_resume_starts_afresh(tmp_path: Path) -> None:
    proc = _popen(tmp_path, "--generations", "6", "--checkpoint-every", "100")
    _, _, err = signal_after(proc, tmp_path / "x" / "members.csv", signal.SIGTERM, wait_s=120)
    assert proc.returncode == 75, err[-2000:]
    assert "no checkpoint was written yet, so --resume starts afresh" in err
    again = run_mpi(2, "evo.truncation", *TINY, "--generations", "6", "--checkpoint-every", "100", "--log-dir",
                    str(tmp_path), "--exp-name", "x", "--no-tb-writer", "--resume", timeout=200)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "has no checkpoint yet (stopped before the first one): starting afresh" in again.stderr
    assert pairs(tmp_path / "x") == [(g, m) for g in range(6) for m in range(2)]


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_resume_refuses_fewer_generations_and_keeps_the_schedules_horizon(tmp_path: Path) -> None:
    hp = tmp_path / "dqn.yaml"
    hp.write_text("exploration_fraction: 1.0\nexploration_final_eps: 0.05\nlearning_starts: 0\n")
    args = ["--algo", "dqn", "--env-id", "CartPole-v1", "--n-envs", "2", "--steps-per-generation", "256",
            "--eval-episodes", "2", "--hyperparams", str(hp), "--log-dir", str(tmp_path), "--exp-name", "q",
            "--no-tb-writer"]
    first = run_mpi(2, "evo.truncation", *args, "--generations", "2", timeout=200)
    assert first.returncode == 0, first.stderr[-3000:]
    fewer = run_mpi(2, "evo.truncation", *args, "--generations", "1", "--resume", timeout=60)
    lines = [ln for ln in fewer.stderr.splitlines() if ln.strip()]
    assert fewer.returncode == 2 and len(lines) == 1 and "fewer than the 2 generations" in lines[0], fewer.stderr
    more = run_mpi(2, "evo.truncation", *args, "--generations", "4", "--resume", timeout=250)
    assert more.returncode == 0, more.stderr[-3000:]
    config = json.loads((tmp_path / "q" / "config.json").read_text())["config"]
    assert config["horizon_env_steps"] == 2 * 256  # the plan the run started with
    from stable_baselines3.common.save_util import load_from_zip_file

    # epsilon decays over the first planned 512 steps (exploration_fraction 1.0) and stays at its final value:
    # a resume that added generations does not stretch the schedule (which would put it back near 0.5)
    data, _, _ = load_from_zip_file(tmp_path / "q" / "checkpoints" / "gen_000003" / "member_000.zip")
    assert data is not None and data["exploration_rate"] == pytest.approx(0.05)
