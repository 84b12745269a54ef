"""The batch scripts in hpc/ on a real single-node Slurm cluster (see tests/slurm_cluster.py).

* every PBT strategy through ``hpc/pbt.sbatch`` (srun --mpi=pmi2 and Hydra's mpiexec), tiny budget;
* bad input ends the job with exit code 2;
* the baseline job array (one seed per array task), once ``evo.baseline`` exists;
* preemption: ``scancel -b -s USR1`` (what ``--signal=B:USR1@T`` sends before the time limit) ->
  evo checkpoints and exits 75 -> the script requeues the job -> the next allocation resumes and
  finishes with every generation recorded exactly once.

Needs root and Debian's slurm packages (installed by the fixture with apt-get when missing).
Run: ``.venv/bin/python -m pytest tests/test_slurm.py -v -m slurm``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import SlurmCluster, SlurmError, SlurmUnavailable, ensure_installed
from slurm_cluster import job_log as read_log
from slurm_cluster import wait_for_job as wait_done

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
HPC = ROOT / "hpc"
TINY = ("--env-id CartPole-v1 --steps-per-generation 512 --n-envs 2 --n-steps 256 --eval-episodes 2 "
        "--no-tb-writer")
RANKS = 2


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """A running single-node cluster for this module; stopped (jobs cancelled first) afterwards."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("Slurm tests need root (they run slurmctld, slurmd and munged on this host)")
    try:
        ensure_installed(timeout=300)
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm on this host: {exc}")
    with SlurmCluster(cpus=8) as cluster:
        print(f"\nslurm cluster up in {cluster.startup_seconds:.2f} s ({cluster.root})")
        yield cluster


def evo_env(log_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a batch script: this checkout and this Python environment."""
    env = {"EVO_HOME": str(ROOT), "EVO_LOG_DIR": str(log_dir), "OMP_NUM_THREADS": "1"}
    if (Path(sys.prefix) / "bin" / "activate").exists():
        env["EVO_VENV"] = sys.prefix  # also puts pip-mpich's mpiexec on PATH
    else:
        env["EVO_PYTHON"] = sys.executable
    env.update(extra)
    return env


def submit(slurm: SlurmCluster, script: str, workdir: Path, log: Path, env: dict[str, str],
           *sbatch_args: str) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    return slurm.sbatch(HPC / script, ["--chdir", str(workdir), "--output", str(log), *sbatch_args], env=env)


def members_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "members.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def check_complete_run(run_dir: Path, ranks: int, generations: int) -> None:
    """Outputs of a finished run: every (generation, member) row exactly once, summary, checkpoint."""
    rows = members_rows(run_dir)
    pairs = [(int(r["generation"]), int(r["member"])) for r in rows]
    assert len(pairs) == len(set(pairs)), f"duplicate (generation, member) rows: {sorted(pairs)}"
    assert sorted(pairs) == [(g, m) for g in range(generations) for m in range(ranks)]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["generations"] == generations
    assert summary["world_size"] == ranks
    manifest = json.loads((run_dir / "checkpoints" / f"gen_{generations:06d}" / "manifest.json").read_text())
    assert manifest["generation"] == generations and manifest["world_size"] == ranks
    with open(run_dir / "generations.csv", newline="") as fh:
        assert [int(r["generation"]) for r in csv.DictReader(fh)] == list(range(generations))


# -- PBT, every strategy ------------------------------------------------------------------------
STRATEGIES = [("wta", "srun"), ("truncation", "mpiexec"), ("truncation_collective", "srun")]


@pytest.fixture(scope="module")
def pbt_jobs(slurm: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path, Path]]:
    """Submit one tiny job per strategy at once (they share the node); strategy -> (job, log, run dir)."""
    base = tmp_path_factory.mktemp("pbt")
    jobs = {}
    for strategy, launcher in STRATEGIES:
        log = base / f"{strategy}.out"
        env = evo_env(base / "logs", EVO_STRATEGY=strategy, EVO_LAUNCHER=launcher, EVO_EXP_NAME=strategy,
                      EVO_ARGS=f"{TINY} --generations 2")
        jobs[strategy] = (submit(slurm, "pbt.sbatch", base, log, env, "--ntasks", str(RANKS)), log,
                          base / "logs" / strategy)
    return jobs


@pytest.mark.timeout(240, func_only=True)
@pytest.mark.parametrize(("strategy", "launcher"), STRATEGIES, ids=[f"{s}-{la}" for s, la in STRATEGIES])
def test_pbt_sbatch(slurm: SlurmCluster, pbt_jobs: dict[str, tuple[str, Path, Path]], strategy: str,
                    launcher: str) -> None:
    job, log, run_dir = pbt_jobs[strategy]
    info = wait_done(slurm, job, log, timeout=230)
    text = read_log(log)
    assert info["JobState"] == "COMPLETED", f"{info['JobState']} {info.get('ExitCode')}\n{text}"
    assert info["ExitCode"] == "0:0"
    assert f"launching: {launcher}" in text
    assert "starting a new run" in text and "run complete" in text
    assert "--resume" not in text
    check_complete_run(run_dir, RANKS, 2)
    assert (run_dir / "best_model.zip").exists()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["strategy"] == strategy and config["world_size"] == RANKS
    assert config["threads_per_rank"] == 1  # from --cpus-per-task=1 in the script


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.timeout(150, func_only=True)
def test_bad_input_exits_2(slurm: SlurmCluster, tmp_path: Path) -> None:
    """Rejected by the script (unknown strategy, a flag it owns) or by evo (a bad budget): exit 2, no requeue."""
    cases = {
        "strategy": dict(EVO_STRATEGY="bogus", EVO_ARGS=TINY),
        "owned-flag": dict(EVO_STRATEGY="wta", EVO_ARGS=f"{TINY} --resume"),
        "evo": dict(EVO_STRATEGY="wta", EVO_LAUNCHER="mpiexec",
                    EVO_ARGS=TINY.replace("--steps-per-generation 512", "--steps-per-generation 500")),
    }
    jobs = {name: submit(slurm, "pbt.sbatch", tmp_path, tmp_path / f"{name}.out",
                         evo_env(tmp_path / "logs", EVO_EXP_NAME=name, **env), "--ntasks", str(RANKS))
            for name, env in cases.items()}
    for name, job in jobs.items():
        info = wait_done(slurm, job, tmp_path / f"{name}.out", timeout=120)
        text = read_log(tmp_path / f"{name}.out")
        assert info["JobState"] == "FAILED", text
        assert info["ExitCode"] == "2:0", text
        assert info["Restarts"] == "0", text
    assert "EVO_STRATEGY must be" in read_log(tmp_path / "strategy.out")
    assert "do not pass --resume" in read_log(tmp_path / "owned-flag.out")
    evo_log = read_log(tmp_path / "evo.out")
    assert "must be a multiple of the rollout" in evo_log and "evo rejected its input (exit 2)" in evo_log


# -- baseline job array -------------------------------------------------------------------------
@pytest.mark.timeout(240, func_only=True)
def test_baseline_array(slurm: SlurmCluster, tmp_path: Path) -> None:
    env = evo_env(tmp_path / "logs", EVO_EXP_NAME="base", EVO_SEED_BASE="10",
                  EVO_ARGS="--env-id CartPole-v1 --num-timesteps 1024 --n-envs 2 --n-steps 256 --eval-episodes 2 "
                           "--no-tb-writer")
    job = submit(slurm, "baseline.sbatch", tmp_path, tmp_path / "base-%a.out", env, "--array", "0-1",
                 "--ntasks", "1", "--cpus-per-task", "1")
    logs = [tmp_path / f"base-{i}.out" for i in range(2)]
    try:
        slurm.wait_for(job, timeout=230)
    except SlurmError as exc:
        pytest.fail(f"{exc}\n" + "\n".join(read_log(p)[-3000:] for p in logs))
    records = slurm.jobs(job)
    assert len(records) == 2, records
    for rec in records:
        task = int(rec["ArrayTaskId"])
        text = read_log(logs[task])
        assert rec["JobState"] == "COMPLETED" and rec["ExitCode"] == "0:0", text
        seed = 10 + task
        run_dir = tmp_path / "logs" / f"base-seed{seed}"
        assert f"baseline seed {seed} (array task {task})" in text
        assert "run complete" in text, text
        assert (run_dir / "summary.json").exists(), sorted(p.name for p in run_dir.iterdir())
        config = json.loads((run_dir / "config.json").read_text())
        assert config["config"]["seed"] == seed


# -- preemption: signal -> checkpoint -> requeue -> resume ----------------------------------------
PREEMPT_GENERATIONS = 6


PREEMPT = [("srun", ""), ("mpiexec", ""), ("mpiexec", "--async")]


@pytest.mark.timeout(300, func_only=True)
@pytest.mark.parametrize(("launcher", "mode"), PREEMPT, ids=[f"{la}{m.replace('--', '-')}" for la, m in PREEMPT])
def test_preemption_requeue_resume(slurm: SlurmCluster, tmp_path: Path, launcher: str, mode: str) -> None:
    gens = PREEMPT_GENERATIONS
    log = tmp_path / "pre.out"
    run_dir = tmp_path / "logs" / "pre"
    env = evo_env(tmp_path / "logs", EVO_STRATEGY="wta", EVO_LAUNCHER=launcher, EVO_EXP_NAME="pre",
                  EVO_ARGS=TINY.replace("512", "1024") + f" --generations {gens} {mode}")
    job = submit(slurm, "pbt.sbatch", tmp_path, log, env, "--ntasks", str(RANKS))

    # 1. wait for the first member checkpoint, then send what --signal=B:USR1@T sends
    deadline = time.monotonic() + 90
    while not list(run_dir.glob("checkpoints/gen_*/member_*.manifest.json")):
        state = slurm.state(job)
        if state not in ("PENDING", "RUNNING", "CONFIGURING"):
            pytest.fail(f"job left the queue ({state}) before its first checkpoint\n{read_log(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint after 90 s (state {state})\n{read_log(log)}")
        time.sleep(0.1)
    t_signal = time.monotonic()
    slurm.run(["scancel", "--batch", "--signal", "USR1", job])

    # 2. the first allocation ends and the job is requeued (Restarts=1)
    deadline = t_signal + 60
    while True:
        info = slurm.job(job)
        if info.get("Restarts") == "1" or info.get("JobState") in ("PENDING", "REQUEUED"):
            break
        if info.get("JobState") not in ("RUNNING", "COMPLETING"):
            pytest.fail(f"job not requeued: {info.get('JobState')} {info.get('ExitCode')}\n{read_log(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"job still {info.get('JobState')} 60 s after USR1\n{read_log(log)}")
        time.sleep(0.05)
    signal_to_requeue = time.monotonic() - t_signal

    # 3. the second allocation resumes and completes
    info = wait_done(slurm, job, log, timeout=140)
    text = read_log(log)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text
    assert info["Restarts"] == "1", text

    first, _, second = text.partition("restart=1]")
    assert "received SIGUSR1: forwarding it to the launcher" in first, text
    assert "evo: stop signal received" in first, text
    m = re.search(r"launcher exited with code 75 \(([\d.]+) s after the first signal\)", first)
    assert m, f"first allocation did not exit 75 after the signal\n{text}"
    signal_to_exit = float(m.group(1))
    assert "requeueing job" in first
    assert "resuming from it" in second and "--resume" in second and "run complete" in second, text
    if mode == "--async":  # every member from its own newest checkpoint: not all from the start
        starts = re.search(r"resumed \(next intervals \[([\d, ]+)\]\)", second)
        assert starts, text
        resumed_at = min(int(x) for x in starts.group(1).split(","))
        assert max(int(x) for x in starts.group(1).split(",")) >= 1, "the async run restarted from scratch"
    else:
        resumed_at = int(re.search(r"resumed at generation (\d+)", second).group(1))  # type: ignore[union-attr]
    assert resumed_at < gens, "the signal should land mid-run"

    check_complete_run(run_dir, RANKS, gens)
    print(f"\n[{launcher} {mode}] USR1 -> evo exit 75: {signal_to_exit:.1f} s (script log); "
          f"USR1 -> job requeued: {signal_to_requeue:.1f} s; resumed at generation {resumed_at}/{gens}")
    # evo notices the signal within one env step and writes nothing more; exit takes ~2-3 s on an idle
    # 2-core machine, ~17 s at load 16. The bound is well inside the default --signal lead time (180 s).
    assert signal_to_exit < 60, text


@pytest.mark.timeout(240, func_only=True)
def test_signal_during_startup(slurm: SlurmCluster, tmp_path: Path) -> None:
    """USR1 while the ranks are still starting (before evo's handler exists) must not lose the run.

    Depending on the moment, the signal kills the ranks before MPI_Init (launcher exit 138), is
    swallowed by MPICH's handler and repeated by the script (exit 75), or reaches evo (exit 75):
    every path must requeue, and the job must complete with every generation recorded once.
    """
    gens = 4
    log = tmp_path / "start.out"
    run_dir = tmp_path / "logs" / "start"
    # mpiexec inside the allocation: with pip's MPICH, srun --mpi=pmi2 start-ups failed in MPI_Init
    # now and then on this machine ("Message truncated" in MPIDI_UCX_comm_set_vcis), which is not
    # what this test is about; srun is covered by the other tests.
    env = evo_env(tmp_path / "logs", EVO_STRATEGY="truncation", EVO_LAUNCHER="mpiexec", EVO_EXP_NAME="start",
                  EVO_RESIGNAL_EVERY="3", EVO_ARGS=TINY.replace("512", "1024") + f" --generations {gens}")
    job = submit(slurm, "pbt.sbatch", tmp_path, log, env, "--ntasks", str(RANKS))
    deadline = time.monotonic() + 60
    while "launching:" not in read_log(log):
        if time.monotonic() > deadline:
            pytest.fail(f"job did not launch evo in 60 s ({slurm.state(job)})\n{read_log(log)}")
        time.sleep(0.05)
    time.sleep(1.5)  # imports under way: MPI is up, evo's handler not yet
    slurm.run(["scancel", "--batch", "--signal", "USR1", job])
    info = wait_done(slurm, job, log, timeout=170)
    text = read_log(log)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text
    assert info["Restarts"] == "1", text
    first = text.partition("restart=1]")[0]
    assert "requeueing job" in first, text
    m = re.search(r"launcher exited with code (\d+) \(([\d.]+) s after", first)
    assert m, text
    check_complete_run(run_dir, RANKS, gens)
    resent = "sending it again" in first
    print(f"\nfirst allocation: launcher exit {m.group(1)} {m.group(2)} s after USR1"
          f"{' (signal repeated by the script)' if resent else ''}")


@pytest.mark.timeout(180, func_only=True)
def test_restart_without_checkpoint(slurm: SlurmCluster, tmp_path: Path) -> None:
    """A run dir without a checkpoint: started again if this job created it, else left alone (exit 2)."""
    logs = tmp_path / "logs"
    jobs = {}
    for name in ("own", "foreign"):
        env = evo_env(logs, EVO_STRATEGY="wta", EVO_LAUNCHER="mpiexec", EVO_EXP_NAME=name,
                      EVO_ARGS=f"{TINY} --generations 1")
        jobs[name] = submit(slurm, "pbt.sbatch", tmp_path, tmp_path / f"{name}.out", env, "--ntasks", str(RANKS),
                            "--hold")
        (logs / name).mkdir(parents=True)
        (logs / name / "config.json").write_text("{}\n")  # what a stop before the first checkpoint leaves
    (logs / ".own.slurm-job").write_text(jobs["own"])  # the script's record: this job created the run dir
    (logs / ".foreign.slurm-job").write_text("12345")
    for job in jobs.values():
        slurm.run(["scontrol", "release", job])

    own = wait_done(slurm, jobs["own"], tmp_path / "own.out", timeout=120)
    text = read_log(tmp_path / "own.out")
    assert own["JobState"] == "COMPLETED", text
    assert "has no complete checkpoint: starting again" in text and "--overwrite" in text
    check_complete_run(logs / "own", RANKS, 1)

    foreign = wait_done(slurm, jobs["foreign"], tmp_path / "foreign.out", timeout=50)
    text = read_log(tmp_path / "foreign.out")
    assert foreign["JobState"] == "FAILED" and foreign["ExitCode"] == "2:0", text
    assert "was not started by this job" in text and "already exists" in text
    assert (logs / "foreign" / "config.json").read_text() == "{}\n"  # untouched
