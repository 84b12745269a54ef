"""What every benchmark shares: launching jobs under a timeout, and writing tables, CSV and JSON."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


# -- processes ------------------------------------------------------------------------------
def mpiexec_path() -> str:
    """The mpiexec next to this Python (pip's mpich), else the one on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit("evo.bench: no mpiexec found (pip install mpich, or load an MPI)")
    return found


def run_cmd(args: Sequence[str], timeout: float, cwd: str | Path | None = None) -> tuple[int, str, str, float]:
    """Run ``args`` (in ``cwd``) in its own process group; kill the group on timeout (returncode -9).
    Returns (returncode, stdout, stderr, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = -9
        err += f"\nevo.bench: timed out after {timeout:.0f}s"
    return rc, out, err, time.monotonic() - t0


def mpi_module(n: int, module: str, args: Sequence[str], timeout: float) -> tuple[int, str, str, float]:
    """``mpiexec -n N python -m module args`` under ``timeout``."""
    return run_cmd([mpiexec_path(), "-n", str(n), sys.executable, "-m", module, *args], timeout)


def num(v: Any) -> float:
    """``v`` as a float; NaN for an empty or missing CSV cell."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN unless both are finite and ``b > 0``."""
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


# -- output ---------------------------------------------------------------------------------
def fmt(v: Any) -> str:
    """A table cell: large numbers with separators, small ones to 3 significant digits."""
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return "-" if v is None else str(v)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as a right-aligned text table of ``columns``."""
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    out = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def write_outputs(out: Path, name: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                  meta: Mapping[str, Any]) -> None:
    """``out/name.csv`` (``columns`` of every row, full precision) and ``out/name.json`` (``meta``
    plus every row with all its keys; NaN as null)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in columns})
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    (out / f"{name}.json").write_text(json.dumps({**meta, "rows": clean}, indent=2, default=str) + "\n")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None (with a note) if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("evo.bench: matplotlib not installed, no PNG", file=sys.stderr)
        return None
    return plt
