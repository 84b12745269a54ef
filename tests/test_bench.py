"""evo.bench on real learners and real PBT runs: micro, exchange and member-vs-baseline report
numbers that agree with each other and with the work the runs did (not only that they exist)."""

from __future__ import annotations

import csv
import json
import re

import pytest

from tests.conftest import mpiexec_path, run_module


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.mpi
@pytest.mark.timeout(90)
def test_micro_rates_are_size_over_time(tmp_path):
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    r = run_module("evo.bench", "micro", "--repeats", "3", "--nets", "cartpole_mlp", "--out", str(tmp_path),
                   timeout=85)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _rows(tmp_path / "micro.csv")
    assert [row["network"] for row in rows] == ["cartpole_mlp"]
    row = {k: float(v) for k, v in rows[0].items() if k != "network"}
    # the flat state holds the weights and Adam's two moments of each: at least 3 floats per parameter
    assert row["flat_mb"] * 1e6 / 4 >= 3 * row["params"] > 0
    for key in ("pack_ms", "unpack_ms", "copyto_ms", "bcast_ms", "sendrecv_ms"):
        assert row[key] > 0, key
    # the printed rates are the printed size over the printed times (MB / ms = GB / s)
    assert row["bcast_gb_s"] == pytest.approx(row["flat_mb"] / row["bcast_ms"], rel=1e-9)
    assert row["copyto_gb_s"] == pytest.approx(row["flat_mb"] / row["copyto_ms"], rel=1e-9)
    assert json.loads((tmp_path / "micro.json").read_text())["repeats"] == 3


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(480)
def test_exchange_sweep_one_row_per_configuration_and_counts_copies(tmp_path):
    """2 members, 2 generations: only generation 0 exchanges (the last ends with its evaluation), and
    both rules plan exactly one copy for 2 members; the --no-exchange twin copies nothing."""
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    rules, transports = ["wta", "truncation"], ["p2p", "broadcast"]
    r = run_module("evo.bench", "exchange", "--ranks", "2", "--generations", "2", "--steps-per-generation", "256",
                   "--n-epochs", "1", "--rules", *rules, "--transports", *transports, "--out", str(tmp_path),
                   "--timeout", "200", timeout=470)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _rows(tmp_path / "exchange.csv")
    assert [(row["rule"], row["transport"], row["ranks"]) for row in rows] == \
        [(rule, t, "2") for rule in rules for t in transports]
    for row in rows:
        assert row["gens_used"] == "1-1" and row["exchange_gens"] == "0-0"
        assert int(row["n_exploits"]) == 1 and int(row["n_exploits_noex"]) == 0
        assert float(row["exchange_ms_median"]) > 0
        wall, wall_noex = float(row["wall_steps_per_s"]), float(row["wall_steps_per_s_noex"])
        assert wall > 0 and wall_noex > 0
        assert float(row["overhead_pct"]) == pytest.approx(100 * (1 - wall / wall_noex), rel=1e-9, abs=1e-9)
    meta = json.loads((tmp_path / "exchange.json").read_text())
    assert meta["workload"]["generations"] == 2 and len(meta["rows"]) == len(rules) * len(transports)


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_member_vs_baseline_ratio_is_the_ratio_of_the_medians(tmp_path):
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    r = run_module("evo.bench", "member-vs-baseline", "--env-id", "CartPole-v1", "--n-envs", "2", "--n-steps", "128",
                   "--policy", "MlpPolicy", "--param-name", "cartpole", "--generations", "3", "--out", str(tmp_path),
                   "--timeout", "140", timeout=290)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "WARNING" not in r.stdout  # both runs trained with the same hyperparameters
    rows = _rows(tmp_path / "member_vs_baseline.csv")
    assert len(rows) == 2 and rows[0]["run"].startswith("pbt_members") and rows[1]["run"].startswith("baseline")
    assert all(row["gens_used"] == "1-2" and row["ranks"] == "2" for row in rows)
    pbt, base = (float(row["env_steps_per_s_median"]) for row in rows)
    assert pbt > 0 and base > 0
    printed = float(re.search(r"env-steps/s = ([0-9.eE+-]+)", r.stdout).group(1))
    assert printed == pytest.approx(pbt / base, rel=1e-5)
    assert json.loads((tmp_path / "member_vs_baseline.json").read_text())["ratio"] == pytest.approx(pbt / base,
                                                                                                    rel=1e-12)


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_outside_splits_whole_commands_into_loop_and_the_rest(tmp_path):
    """Two installations (here the same one twice) timed round by round: outside = command - loop,
    the loop's span is generations.csv's, the split adds up, and the printed ratio is the median of
    the per-round ratios in the JSON."""
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    import sys

    from tests.conftest import TINY

    r = run_module("evo.bench", "outside", "--python", f"a={sys.executable}", "--python", f"b={sys.executable}",
                   "--ranks", "2", "--rounds", "1", "--out", str(tmp_path), "--",
                   *TINY, "--generations", "2", "--num-agents", "2", timeout=190)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((tmp_path / "outside.json").read_text())
    assert [row["install"] for row in data["rows"]] == ["a", "b"]
    for row in data["rows"]:
        assert row["outside_s"] == pytest.approx(row["command_s"] - row["loop_s"])
        assert 0 < row["loop_s"] < row["command_s"] and row["train_s"] > 0 and row["eval_s"] > 0
        inside = row["to_start_s"] + row["start_s"] + row["finish_s"] + row["exit_s"]
        assert inside + row["loop_s"] == pytest.approx(row["command_s"], abs=0.5)  # + the loop's own marks
        assert 0 < row["eval_share"] < 1 and row["checkpoint_s"] > 0
    a, b = data["rows"]
    got = re.search(r"b / a: whole command ([0-9.]+)x, outside the loop ([0-9.]+)x", r.stdout)
    assert got, r.stdout[-2000:]
    assert float(got.group(1)) == pytest.approx(b["command_s"] / a["command_s"], abs=1e-3)
    assert float(got.group(2)) == pytest.approx(b["outside_s"] / a["outside_s"], abs=1e-3)
