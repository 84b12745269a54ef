"""Shared test helpers: running evo under mpiexec with a hard timeout."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MPI_SCRIPTS = Path(__file__).resolve().parent / "mpi"


def mpiexec_path() -> str | None:
    """The mpiexec next to this Python (pip's mpich), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    return shutil.which("mpiexec")


@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_cmd(args: list[str], timeout: float, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> Completed:
    """Run ``args`` in its own process group; on timeout kill the whole group and fail the test."""
    import time

    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    t0 = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, cwd=cwd or ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout}s (deadlock?): {' '.join(args)}\n--- stdout\n{out[-3000:]}\n"
                    f"--- stderr\n{err[-3000:]}")
    return Completed(proc.returncode, out, err, time.monotonic() - t0)


def run_mpi(n: int, module_or_script: str, *args: str, timeout: float = 180,
            env: dict[str, str] | None = None) -> Completed:
    """``mpiexec -n N python [-m mpi4py] ...`` under a hard timeout.

    Test scripts run through ``-m mpi4py`` so that an exception on one rank aborts every rank.
    evo's own entry points do that themselves (evo.cli.main_guard aborts the job on a crash, and
    exits cleanly with code 2 on bad input, which ``-m mpi4py`` would turn into an MPI_Abort).
    """
    mpiexec = mpiexec_path()
    if mpiexec is None:
        pytest.skip("no mpiexec (pip install mpich, or load an MPI)")
    if module_or_script.endswith(".py"):
        target = ["-m", "mpi4py", module_or_script]
    else:
        target = ["-m", module_or_script]
    return run_cmd([mpiexec, "-n", str(n), sys.executable, *target, *args], timeout=timeout, env=env)


def run_module(module: str, *args: str, timeout: float = 180, env: dict[str, str] | None = None) -> Completed:
    """``python -m module ...`` as a plain single process."""
    return run_cmd([sys.executable, "-m", module, *args], timeout=timeout, env=env)


TINY = ["--env-id", "CartPole-v1", "--n-envs", "2", "--n-steps", "128", "--steps-per-generation", "256",
        "--eval-episodes", "2"]
"""Flags for the smallest real run: 256 env steps per member per generation."""


def signal_after(proc: subprocess.Popen, path: Path, sig: int, wait_s: float) -> tuple[float, str, str]:
    """Wait (at most ``wait_s``) until ``path`` exists, send ``sig`` to the launcher ``proc`` (mpiexec
    forwards it to every rank) and collect its output. Returns (seconds from signal to exit, stdout,
    stderr); fails if ``path`` never appeared. Kills the whole process group if anything goes wrong."""
    try:
        deadline = time.monotonic() + wait_s
        while not path.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert path.exists(), f"the run never got going (no {path.name})"
        t0 = time.monotonic()
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
        return time.monotonic() - t0, out, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
