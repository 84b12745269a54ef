"""evo.bench transport: the async decide rule, and the smoke sweep at 2 and 3 ranks writes its
table, CSV, JSON and PNG."""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.conftest import mpiexec_path, run_module


def test_async_rule_wta_copies_the_best_known() -> None:
    from evo.bench import AsyncRule

    rule = AsyncRule("wta", 0.25, 0)
    assert rule({"member": 0, "score": 1.0}) == {"donor": None}  # alone: nobody to copy
    assert rule({"member": 1, "score": 3.0}) == {"donor": None}  # the best copies nobody
    assert rule({"member": 0, "score": 1.5}) == {"donor": 1}
    assert rule({"member": 2, "score": math.nan}) == {"donor": 1}  # a failed member copies too


def test_async_rule_truncation_bottom_copies_from_top() -> None:
    from evo.bench import AsyncRule

    rule = AsyncRule("truncation", 0.25, 0)
    for m in range(8):
        rule({"member": m, "score": float(m)})
    # of 8 members, k = 2: members 0 and 1 are the bottom, 6 and 7 the top
    donors = {rule({"member": 0, "score": 0.0})["donor"] for _ in range(20)}
    assert donors <= {6, 7} and donors
    assert rule({"member": 4, "score": 4.0}) == {"donor": None}
    assert rule({"member": 7, "score": 7.0}) == {"donor": None}


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_transport_smoke_writes_csv_and_png(tmp_path) -> None:
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    r = run_module("evo.bench", "transport", "--smoke", "--ranks", "2", "3", "--out", str(tmp_path), "--timeout",
                   "120", timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    for col in ("mode", "exchange_ms_median", "idle_pct", "bytes_in_max"):
        assert col in r.stdout
    with open(tmp_path / "transport.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = reader.fieldnames
    assert columns is not None
    for col in ("mb", "mode", "strategy", "ranks", "exchange_ms_median", "exchange_ms_max", "idle_pct",
                "drain_pct", "bytes_in_max", "ctrl_bytes_in_median", "ctrl_bytes_in_max", "weights_bytes_in_mean",
                "msgs_in_mean", "service_cpu_pct"):
        assert col in columns, col
    combos = {(row["mb"], row["mode"], row["strategy"], row["ranks"]) for row in rows}
    expected = {(mb, mode, s, n) for mb in ("0.01", "0.05") for n in ("2", "3")
                for mode, s in [("sync", "wta"), ("sync", "truncation"), ("sync", "truncation_collective"),
                                ("async", "wta"), ("async", "truncation")]}
    assert combos == expected
    for row in rows:
        assert float(row["exchange_ms_median"]) > 0 and 0 <= float(row["idle_pct"]) < 100
        assert float(row["bytes_in_max"]) > 0 and float(row["msgs_in_mean"]) > 0
        if row["mode"] == "async":
            assert float(row["service_cpu_pct"]) < 50
    data = json.loads((tmp_path / "transport.json").read_text())
    assert not data["failed"] and all(row["bad_copies"] == 0 for row in data["rows"])
    assert (tmp_path / "transport.png").stat().st_size > 10_000
