"""The PBT paper's toy example (experiments/toy_pbt.py): PBT beats explore-only, exploit-only and
grid search, and one process and ``mpiexec -n 2`` (one member per rank) give the same numbers."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import ROOT, run_cmd, run_mpi

SCRIPT = ROOT / "experiments" / "toy_pbt.py"


def load_toy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("toy_pbt", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def final_q(stdout: str) -> dict[str, float]:
    line = next(ln for ln in stdout.splitlines() if ln.startswith("FINAL_Q "))
    return dict(json.loads(line.split(" ", 1)[1]))


@pytest.fixture(scope="module")
def in_process() -> dict[str, float]:
    toy = load_toy()
    args = toy.build_parser().parse_args(["--no-plot"])
    space = toy.h_space(args.resample_probability, args.perturb_factors)
    return {m: toy.simulate(m, toy.Local(2), args, space)["final_q"] for m in toy.METHODS}


@pytest.mark.timeout(120)
def test_pbt_beats_explore_exploit_and_grid_over_seeds() -> None:
    # A statement over 10 seeds, not one lucky stream (on one seed in ten explore-only edges PBT).
    import statistics

    toy = load_toy()
    q: dict[str, list[float]] = {m: [] for m in toy.METHODS}
    for seed in range(10):
        args = toy.build_parser().parse_args(["--no-plot", "--seed", str(seed)])
        space = toy.h_space(args.resample_probability, args.perturb_factors)
        for m in toy.METHODS:
            q[m].append(toy.simulate(m, toy.Local(2), args, space)["final_q"])
    assert set(q) == {"pbt", "explore", "exploit", "grid"}
    # each starting h shrinks one coordinate only: alone it cannot pass Q = 1.2 - 0.81
    assert max(q["grid"]) < 0.39 and max(q["exploit"]) < 0.39 < min(q["pbt"]) and max(q["pbt"]) <= 1.2
    assert statistics.median(q["pbt"]) > statistics.median(q["explore"]) + 0.05, q
    assert sum(p > e for p, e in zip(q["pbt"], q["explore"], strict=True)) >= 8, q


@pytest.mark.timeout(60)
def test_toy_is_seeded_and_deterministic() -> None:
    toy = load_toy()
    args = toy.build_parser().parse_args(["--no-plot", "--seed", "3"])
    space = toy.h_space(args.resample_probability, args.perturb_factors)
    a = toy.simulate("pbt", toy.Local(2), args, space)
    b = toy.simulate("pbt", toy.Local(2), args, space)
    assert a == b


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_one_process_and_two_ranks_agree(in_process: dict[str, float], tmp_path: Path) -> None:
    import matplotlib.image

    single = run_cmd([sys.executable, str(SCRIPT), "--out", str(tmp_path / "toy.png")], timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    ranks = run_mpi(2, str(SCRIPT), "--no-plot", timeout=120)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert "2 MPI ranks" in ranks.stdout and "one process" in single.stdout
    assert final_q(single.stdout) == final_q(ranks.stdout) == in_process
    img = matplotlib.image.imread(tmp_path / "toy.png")
    assert img.shape[0] > 300 and float(img[..., :3].std()) > 0.02
