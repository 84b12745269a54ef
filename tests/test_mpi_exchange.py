"""Under mpiexec (2 and 4 ranks), for each strategy: receivers end bit-identical to their donors."""

from __future__ import annotations

import json

import pytest
from conftest import MPI_SCRIPTS, run_mpi

pytestmark = pytest.mark.mpi


@pytest.mark.timeout(200)
@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("strategy", ["wta", "truncation", "truncation_collective"])
def test_exchange_is_bit_exact(strategy: str, n: int) -> None:
    res = run_mpi(n, str(MPI_SCRIPTS / "exchange_check.py"), strategy, timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("EXCHANGE-OK"))
    info = json.loads(line.split(" ", 1)[1])
    assert info["n"] == n and info["plan"]


@pytest.mark.timeout(200)
@pytest.mark.parametrize("strategy", ["wta", "truncation", "truncation_collective"])
def test_failed_member_is_replaced(strategy: str) -> None:
    """A member with a NaN score never donates and always receives."""
    res = run_mpi(5, str(MPI_SCRIPTS / "exchange_check.py"), strategy, "nan", timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("EXCHANGE-OK")).split(" ", 1)[1])
    receivers = [r for r, _ in info["plan"]]
    donors = [d for _, d in info["plan"]]
    assert 1 in receivers and 1 not in donors
