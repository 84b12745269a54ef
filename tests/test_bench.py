"""evo.bench: the cheap micro path and a tiny exchange sweep write their tables."""

from __future__ import annotations

import csv
import json

import pytest

from tests.conftest import mpiexec_path, run_module


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(60)
def test_micro_writes_positive_numbers(tmp_path):
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    r = run_module("evo.bench", "micro", "--repeats", "3", "--nets", "cartpole_mlp", "--out", str(tmp_path),
                   timeout=55)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "cartpole_mlp" in r.stdout and "bcast_ms" in r.stdout
    rows = _rows(tmp_path / "micro.csv")
    assert [row["network"] for row in rows] == ["cartpole_mlp"]
    for key in ("params", "flat_mb", "pack_ms", "unpack_ms", "copyto_ms", "bcast_ms", "sendrecv_ms"):
        assert float(rows[0][key]) > 0, key
    data = json.loads((tmp_path / "micro.json").read_text())
    assert data["rows"][0]["flat_mb"] > 0 and data["repeats"] == 3


@pytest.mark.timeout(240)
def test_exchange_tiny_table(tmp_path):
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    r = run_module("evo.bench", "exchange", "--ranks", "2", "--generations", "2", "--steps-per-generation",
                   "256", "--n-epochs", "1", "--out", str(tmp_path), timeout=230)
    assert r.returncode == 0, r.stderr[-3000:]
    for col in ("strategy", "exchange_ms_median", "exchange_share_pct", "wall_steps_per_s", "overhead_pct"):
        assert col in r.stdout
    rows = _rows(tmp_path / "exchange.csv")
    assert [row["strategy"] for row in rows] == ["wta", "truncation", "truncation_collective"]
    for row in rows:
        assert row["ranks"] == "2" and row["gens_used"] == "1-1"
        assert float(row["exchange_ms_median"]) > 0
        assert float(row["wall_steps_per_s"]) > 0 and float(row["wall_steps_per_s_noex"]) > 0
        assert int(row["n_exploits"]) == 1
    meta = json.loads((tmp_path / "exchange.json").read_text())
    assert meta["workload"]["generations"] == 2 and len(meta["rows"]) == 3
