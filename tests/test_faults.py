"""Fault tolerance: bad input, crashes, killed ranks, failed members, signals, checkpoint/resume."""

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

pytestmark = pytest.mark.mpi


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.strip()]


def assert_clean_failure(res, tmp_path: Path, needle: str, exp: str = "x") -> None:  # type: ignore[no-untyped-def]
    assert res.returncode != 0, res.stdout[-2000:]
    lines = error_lines(res.stderr)
    assert len(lines) == 1, f"expected one error line, got:\n{res.stderr[-3000:]}"
    assert "error" in lines[0] and needle in lines[0], lines[0]
    assert "Traceback" not in res.stderr
    assert res.seconds < 30


# -- bad input: one line, non-zero exit on every rank, nothing written -------------------------
def _yaml(tmp_path: Path, text: str) -> str:
    p = tmp_path / "hp.yaml"
    p.write_text(text)
    return str(p)


BAD = [
    (["--env-id", "NoSuchEnv-v9"], "unknown env id"),
    (["--env-id", "procgen-bigfsh"], "unknown ProcGen game"),
    (["--env-id", "bigfish", "--distribution-mode", "extreme"], "has no 'extreme' mode"),
    (["--num-agents", "1"], "smaller than the MPI world size 2"),
    (["--generations", "0"], "--generations must be > 0"),
    (["--steps-per-generation", "0"], "--steps-per-generation must be > 0"),
    (["--n-envs", "0"], "--n-envs must be > 0"),
    (["--eval-episodes", "-1"], "--eval-episodes must be > 0"),
    (["--quantile", "0.7"], "--quantile must be in (0, 0.5]"),
    (["--quantile", "0"], "--quantile must be in (0, 0.5]"),
    (["--steps-per-generation", "300"], "must be a multiple of the rollout"),
    (["--generations", "many"], "invalid int value"),
    (["--hyperparams", "YAML:learning_rate: [1, 2\n"], "not valid YAML"),
    (["--hyperparams", "YAML:momentum: {low: 0.1, high: 0.9}\n"], "unknown hyperparameter 'momentum'"),
    (["--hyperparams", "YAML:clip_range: {low: 0.5, high: 0.1}\n"], "inverted bounds"),
    (["--hyperparams", "YAML:gamma: {low: 0.9, high: 0.99, init: 0.5}\n"], "outside bounds"),
    (["--hyperparams", "YAML:batch_size: {choices: [100, 128]}\n"], "does not divide the rollout"),
    (["--hyperparams", "/no/such/file.yaml"], "cannot read hyperparameter file"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("args", "needle"), BAD, ids=[f"{i}-{b[1][:24]}" for i, b in enumerate(BAD)])
def test_bad_input_fails_cleanly_on_every_rank(args: list[str], needle: str, tmp_path: Path) -> None:
    args = [_yaml(tmp_path, a[5:]) if a.startswith("YAML:") else a for a in args]
    base = dict(zip(TINY[::2], TINY[1::2], strict=True))
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    res = run_mpi(2, "evo.truncation", *flat, "--log-dir", str(tmp_path / "logs"), "--exp-name", "x", timeout=50)
    assert_clean_failure(res, tmp_path, needle)
    assert not (tmp_path / "logs" / "x").exists(), "a failed start must not leave a run directory"


@pytest.mark.timeout(60)
def test_unwritable_log_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = run_mpi(2, "evo.wta", *TINY, "--log-dir", str(blocker / "sub"), "--exp-name", "x", timeout=50)
    assert_clean_failure(res, tmp_path, "cannot write log dir")


@pytest.mark.timeout(60)
def test_help_exits_zero() -> None:
    res = run_mpi(1, "evo.wta", "--help", timeout=50)
    assert res.returncode == 0 and "--steps-per-generation" in res.stdout


# -- crashes ------------------------------------------------------------------------------------
@pytest.mark.timeout(90)
def test_exception_on_one_rank_aborts_the_job(tmp_path: Path) -> None:
    res = run_mpi(3, "evo.truncation", *TINY, "--generations", "5", "--log-dir", str(tmp_path), "--exp-name", "x",
                  "--no-tb-writer", env={"EVO_FAULT": "raise:1:1"}, timeout=60)
    assert res.returncode != 0
    assert "error on rank 1: RuntimeError: injected fault on rank 1 in generation 1" in res.stderr
    assert res.seconds < 45


@pytest.mark.timeout(90)
def test_sigkill_of_one_rank_ends_the_job(tmp_path: Path) -> None:
    mpiexec = mpiexec_path()
    assert mpiexec
    proc = subprocess.Popen(
        [mpiexec, "-n", "3", sys.executable, "-m", "evo.wta", *TINY, "--generations", "500", "--log-dir",
         str(tmp_path), "--exp-name", "x", "--no-tb-writer"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        manifest = tmp_path / "x" / "checkpoints" / "gen_000001" / "manifest.json"
        deadline = time.monotonic() + 40
        while not manifest.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert manifest.exists(), "the run never got going"
        victim = _rank_pids(str(tmp_path))[-1]
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0
    assert elapsed < 30
    print(f"SIGKILL of one rank -> job exit in {elapsed:.2f} s")


def _rank_pids(marker: str) -> list[int]:
    """PIDs of the python ranks whose command line contains ``marker`` (not mpiexec itself)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(cmd[0]).startswith(b"python") and marker.encode() in b" ".join(cmd):
            out.append(int(p.name))
    return sorted(out)


@pytest.mark.timeout(120)
def test_non_finite_member_is_replaced_and_the_run_goes_on(tmp_path: Path) -> None:
    res = run_mpi(4, "evo.truncation", *TINY, "--generations", "3", "--log-dir", str(tmp_path), "--exp-name", "x",
                  "--no-tb-writer", env={"EVO_FAULT": "nan:2:1"}, timeout=100)
    assert res.returncode == 0, res.stderr[-3000:]
    r = rows(tmp_path / "x" / "members.csv")
    bad = next(x for x in r if x["generation"] == "1" and x["member"] == "2")
    assert bad["failed"] == "1" and bad["score"] == "nan"
    assert bad["copied_from"] not in ("-1", "2")
    nxt = next(x for x in r if x["generation"] == "2" and x["member"] == "2")
    assert nxt["failed"] == "0" and float(nxt["score"]) > 0
    lineage = [json.loads(ln) for ln in (tmp_path / "x" / "lineage.jsonl").read_text().splitlines()]
    assert any(e["generation"] == 1 and e["receiver"] == 2 and e["receiver_score"] is None for e in lineage)
    gens = rows(tmp_path / "x" / "generations.csv")
    assert gens[1]["n_failed"] == "1"


# -- signals, checkpoints and resume ------------------------------------------------------------
def _start(tmp_path: Path, name: str, generations: int, *extra: str) -> subprocess.Popen:
    mpiexec = mpiexec_path()
    assert mpiexec
    return subprocess.Popen(
        [mpiexec, "-n", "2", sys.executable, "-m", "evo.truncation", *TINY, "--generations", str(generations),
         "--threads", "1", "--seed", "5", "--log-dir", str(tmp_path), "--exp-name", name, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})


def _without_times(r: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in x.items() if not k.startswith("time_") and k != "env_steps_per_s"} for x in r]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_signal_checkpoints_and_resume_matches_uninterrupted_run(signame: str, tmp_path: Path) -> None:
    generations = 6
    proc = _start(tmp_path, "cut", generations)
    manifest = tmp_path / "cut" / "checkpoints" / "gen_000002" / "manifest.json"
    elapsed, out, err = signal_after(proc, manifest, getattr(signal, signame), wait_s=60)
    assert proc.returncode == 75, err[-2000:]
    assert elapsed < 60
    assert "resume with --resume" in err
    print(f"{signame} -> exit in {elapsed:.2f} s")
    done_before = len(rows(tmp_path / "cut" / "generations.csv"))
    assert done_before < generations, "the signal came too late to test anything"

    # an existing run directory without --resume is refused
    again = _start(tmp_path, "cut", generations)
    _, err2 = again.communicate(timeout=60)
    assert again.returncode == 2 and "already exists" in err2

    resumed = _start(tmp_path, "cut", generations, "--resume")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed at generation" in out

    full = _start(tmp_path, "full", generations)
    _, err = full.communicate(timeout=120)
    assert full.returncode == 0, err[-3000:]

    cut_rows, full_rows = rows(tmp_path / "cut" / "members.csv"), rows(tmp_path / "full" / "members.csv")
    keys = [(r["generation"], r["member"]) for r in cut_rows]
    assert len(keys) == len(set(keys)) == 2 * generations  # no gap, no duplicate
    assert _without_times(cut_rows) == _without_times(full_rows)
    assert (tmp_path / "cut" / "lineage.jsonl").read_text() == (tmp_path / "full" / "lineage.jsonl").read_text()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    res = run_mpi(2, "evo.wta", *TINY, "--generations", "2", "--log-dir", str(root), "--exp-name", "base",
                  "--no-tb-writer", timeout=100)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src / "base", dst / "base")
    return dst / "base"


def _resume(root: Path, n: int = 2, *extra: str):  # type: ignore[no-untyped-def]
    return run_mpi(n, "evo.wta", *TINY, "--generations", "3", "--log-dir", str(root), "--exp-name", "base",
                   "--no-tb-writer", "--resume", *extra, timeout=60)


@pytest.mark.timeout(90)
def test_resume_from_missing_run(tmp_path: Path) -> None:
    res = _resume(tmp_path)
    assert_clean_failure(res, tmp_path, "does not exist")


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]  # the manifest's recorded size no longer matches


def _zero_first_half(data: bytes) -> bytes:
    return bytes(len(data) // 2) + data[len(data) // 2:]  # same size, but no longer a readable model


def _check_fallback(res, run: Path, why: str) -> None:  # type: ignore[no-untyped-def]
    """--resume skipped the damaged newest checkpoint (one note naming it and why), kept it aside, went on
    from the one before, and finished with every (generation, member) recorded once."""
    assert res.returncode == 0, res.stderr[-3000:]
    notes = [ln for ln in res.stderr.splitlines() if "skipped the damaged checkpoint gen_000002" in ln]
    assert len(notes) == 1 and why in notes[0] and "gen_000002.damaged" in notes[0], res.stderr[-2000:]
    assert "resumed at generation 1" in res.stdout
    assert (run / "checkpoints" / "gen_000002.damaged").is_dir()  # moved aside, not deleted
    pairs = sorted((int(r["generation"]), int(r["member"])) for r in csv.DictReader(open(run / "members.csv")))
    assert pairs == [(g, m) for g in range(3) for m in range(2)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("damage", "why"), [(_truncate, "manifest says"), (_zero_first_half, "fails its CRC check")])
def test_resume_falls_back_from_a_damaged_zip(damage, why: str, finished_run: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = _copy_run(finished_run, tmp_path)
    z = run / "checkpoints" / "gen_000002" / "member_001.zip"
    z.write_bytes(damage(z.read_bytes()))
    _check_fallback(_resume(tmp_path), run, why)


@pytest.mark.timeout(120)
def test_resume_falls_back_from_a_damaged_manifest(finished_run: Path, tmp_path: Path) -> None:
    run = _copy_run(finished_run, tmp_path)
    (run / "checkpoints" / "gen_000002" / "member_000.manifest.json").write_text("{not json")
    _check_fallback(_resume(tmp_path), run, "corrupt checkpoint manifest")


@pytest.mark.timeout(90)
def test_resume_without_an_intact_checkpoint_is_one_line(finished_run: Path, tmp_path: Path) -> None:
    run = _copy_run(finished_run, tmp_path)
    for g in (1, 2):
        (run / "checkpoints" / f"gen_{g:06d}" / "manifest.json").write_text("{not json")
    res = _resume(tmp_path)
    assert_clean_failure(res, tmp_path, "no complete checkpoint")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["gen_000001.damaged", "gen_000002.damaged"]


@pytest.mark.timeout(90)
def test_resume_with_another_population_size_or_env(finished_run: Path, tmp_path: Path) -> None:
    _copy_run(finished_run, tmp_path)
    res = _resume(tmp_path, 3)
    assert_clean_failure(res, tmp_path, "world_size=2 but this run has world_size=3")
    res = _resume(tmp_path, 2, "--env-id", "Acrobot-v1")
    assert_clean_failure(res, tmp_path, "env_id='CartPole-v1'")


@pytest.mark.timeout(90)
def test_resume_restores_members_bit_exactly(finished_run: Path, tmp_path: Path) -> None:
    """Resuming for zero further generations leaves each member's checkpoint untouched."""
    run = _copy_run(finished_run, tmp_path)
    res = run_mpi(2, "tests/mpi/resume_check.py", str(run), timeout=80)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("RESUME-OK") == 1


def test_checkpoint_keeps_two_newest(finished_run: Path) -> None:
    gens = sorted(p.name for p in (finished_run / "base" / "checkpoints").iterdir())
    assert gens == ["gen_000001", "gen_000002"]
    log = [json.loads(ln) for ln in (finished_run / "base" / "checkpoints.jsonl").read_text().splitlines()]
    assert [e["completed_generations"] for e in log] == [1, 2]
    assert all(e["bytes_per_member"] > 0 for e in log)


@pytest.mark.timeout(90)
def test_resume_after_the_final_checkpoint_writes_the_final_outputs(finished_run: Path, tmp_path: Path) -> None:
    """Killed between the last checkpoint and the final files: --resume writes them, trains nothing."""
    run = _copy_run(finished_run, tmp_path)
    best = json.loads((run / "summary.json").read_text())["best_member"]
    (run / "summary.json").unlink()
    (run / "best_model.zip").unlink()
    before = (run / "members.csv").read_text()
    res = run_mpi(2, "evo.wta", *TINY, "--generations", "2", "--log-dir", str(tmp_path), "--exp-name", "base",
                  "--no-tb-writer", "--resume", timeout=60)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["best_member"] == best
    assert (run / "best_model.zip").exists()
    assert (run / "members.csv").read_text() == before
