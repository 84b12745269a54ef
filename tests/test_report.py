"""evo.report and evo.replay on real (tiny) runs: plots, the equal-budget table, ancestry, replay.

The runs (a 4-rank winner-takes-all PBT run and a 2-seed baseline on CartPole) are made once
per test session by :func:`make_tiny_runs` and shared with test_tensorboard_http.py.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_module, run_mpi

from evo.report import Run, hparam_schedule, load_run, winner_ancestry

PBT_GENERATIONS = 3
BASELINE_TIMESTEPS = 1024  # one evaluation more than the PBT run: the table must cut it at 768


def make_tiny_runs(base: Path) -> Path:
    """``<base>/evo-tiny-runs/{pbt,base}``, made once per session (a marker file says done)."""
    root = base / "evo-tiny-runs"
    if (root / ".done").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    res = run_mpi(4, "evo.wta", *TINY, "--generations", str(PBT_GENERATIONS), "--log-dir", str(root),
                  "--exp-name", "pbt", "--checkpoint-every", "0", timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    res = run_mpi(2, "evo.baseline", "--env-id", "CartPole-v1", "--n-envs", "2", "--n-steps", "128",
                  "--num-timesteps", str(BASELINE_TIMESTEPS), "--eval-every", "256", "--eval-episodes", "2",
                  "--log-dir", str(root), "--exp-name", "base", "--checkpoint-every", "0", timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    (root / ".done").write_text("ok\n")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_runs(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def replay(runs: Path) -> Path:
    """A replay of the PBT run, written to its default place ``<pbt>/../pbt-replay``."""
    out = runs / "pbt-replay"
    if not (out / "replay_schedule.json").exists():
        res = run_module("evo.replay", str(runs / "pbt"), "--no-tb-writer", "--overwrite", timeout=180)
        assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def report(runs: Path, replay: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    res = run_module("evo.report", str(runs / "pbt"), str(runs / "base"), str(replay), "--out", str(out),
                     timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


# -- helpers that read the CSVs without evo's code ----------------------------------------------
def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def md_table(text: str) -> list[dict[str, str]]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in ln.strip("|").split("|")], strict=True)) for ln in lines[2:]]


def hp_value(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


# -- report ----------------------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_report_writes_readable_plots(report: Path) -> None:
    import matplotlib.image

    for name in ("scores.png", "hparams_pbt.png", "lineage_pbt.png"):
        path = report / name
        assert path.is_file() and path.stat().st_size > 5000, name
        img = matplotlib.image.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, (name, img.shape)
        colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert len(colours) > 20, f"{name} looks blank ({len(colours)} colours)"
        assert float(img[..., :3].std()) > 0.02, name
    summary = (report / "summary.md").read_text()
    for name in ("scores.png", "hparams_pbt.png", "lineage_pbt.png"):
        assert f"]({name})" in summary
    assert not (report / "hparams_base.png").exists()  # baselines have no schedule to plot


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_summary_table_equals_the_records(report: Path, runs: Path, replay: Path) -> None:
    dirs = {"pbt": runs / "pbt", "base": runs / "base", "pbt-replay": replay}
    gens = {k: read(d / "generations.csv") for k, d in dirs.items()}
    members = {k: read(d / "members.csv") for k, d in dirs.items()}
    budget = min(max(int(r["env_steps"]) for r in g) for g in gens.values())
    assert budget == PBT_GENERATIONS * 256
    text = (report / "summary.md").read_text()
    assert f"**{budget} env steps per member**" in text
    rows = {r["run"]: r for r in md_table(text)}
    assert set(rows) == set(dirs)
    for name in dirs:
        within = [r for r in gens[name] if int(r["env_steps"]) <= budget]
        last = within[-1]
        g = last["generation"]
        scores = [float(r["score"]) for r in members[name] if r["generation"] == g]
        per_gen_best = {int(r["generation"]): max(float(m["score"]) for m in members[name]
                                                  if m["generation"] == r["generation"]) for r in within}
        best_gen = max(per_gen_best, key=lambda k: (per_gen_best[k], -k))
        wall = float(last["wall_s"])
        row = rows[name]
        n = len({r["member"] for r in members[name]})
        assert row["members"] == (f"{n} members" if name == "pbt" else f"{n} seed{'s' if n > 1 else ''}")
        assert row["env steps / member"] == last["env_steps"] == str(budget)
        assert row["final best"] == f"{max(scores):.2f}"
        assert row["final mean"] == f"{sum(scores) / len(scores):.2f}"
        assert row["final min–max"] == f"{min(scores):.2f}–{max(scores):.2f}"
        best_steps = next(r["env_steps"] for r in within if int(r["generation"]) == best_gen)
        assert row["best so far (env steps)"] == f"{per_gen_best[best_gen]:.2f} ({best_steps})"
        assert row["held-out best"] == row["held-out mean"] == "—"
        assert row["wall time (s)"] == f"{wall:.1f}"
        assert row["env steps/s"] == f"{int(last['total_env_steps']) / wall:.0f}"
    assert rows["base"]["members"] == "2 seeds" and rows["pbt"]["members"] == "4 members"
    # report.json carries the same numbers at full precision
    data = json.loads((report / "report.json").read_text())
    assert data["budget_env_steps_per_member"] == budget
    base = next(s for s in data["runs"] if s["run"] == "base")
    base_scores = [float(r["score"]) for r in members["base"] if int(r["generation"]) == 2]
    assert base["final_mean"] == sum(base_scores) / len(base_scores)


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_winner_ancestry_follows_the_lineage(runs: Path) -> None:
    run = load_run(runs / "pbt")
    ancestry = winner_ancestry(run)
    schedule = hparam_schedule(run)
    gens = read(runs / "pbt" / "generations.csv")
    members = read(runs / "pbt" / "members.csv")
    lineage = [json.loads(ln) for ln in (runs / "pbt" / "lineage.jsonl").read_text().splitlines() if ln.strip()]
    assert [g for g, _ in ancestry] == list(range(PBT_GENERATIONS))
    assert ancestry[-1][1] == int(gens[-1]["best_member"])
    exploit = {(e["generation"], e["receiver"]): e for e in lineage}
    for (g, a), (_, a_next) in itertools.pairwise(ancestry):
        e = exploit.get((g, a_next))
        if e is None:
            assert a == a_next
        else:
            assert e["donor"] == a
            # the receiver trained the next generation with exactly the explored hyperparameters
            assert schedule[g + 1] == {k: e["hparams_after"][k] for k in schedule[g + 1]}
    for (g, a), hp in zip(ancestry, schedule, strict=True):
        row = next(r for r in members if int(r["generation"]) == g and int(r["member"]) == a)
        assert hp == {k[3:]: hp_value(v) for k, v in row.items() if k.startswith("hp_")}


def test_winner_ancestry_walks_back_through_several_donors(tmp_path: Path) -> None:
    """Synthetic truncation-style lineage: the winner's line hops 0 -> 2 -> 0 -> 1."""
    rows = [{"generation": g, "member": m, "score": float(g + m), "env_steps": 256 * (g + 1), "hp_lr": 10 * g + m}
            for g in range(4) for m in range(3)]
    gens = [{"generation": g, "env_steps": 256 * (g + 1), "best_member": 1 if g == 3 else 0} for g in range(4)]
    lineage = [{"generation": 0, "receiver": 2, "donor": 0}, {"generation": 1, "receiver": 0, "donor": 2},
               {"generation": 2, "receiver": 1, "donor": 0}, {"generation": 1, "receiver": 1, "donor": 2}]
    run = Run(path=tmp_path, meta={"config": {"strategy": "truncation"}}, members=rows, generations=gens,
              lineage=lineage)
    assert winner_ancestry(run) == [(0, 0), (1, 2), (2, 0), (3, 1)]
    assert hparam_schedule(run) == [{"lr": 0}, {"lr": 12}, {"lr": 20}, {"lr": 31}]


# -- replay ----------------------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_replay_trains_with_the_recorded_schedule(runs: Path, replay: Path) -> None:
    schedule = hparam_schedule(load_run(runs / "pbt"))
    rows = read(replay / "members.csv")
    assert sorted({int(r["generation"]) for r in rows}) == list(range(PBT_GENERATIONS))
    assert {int(r["member"]) for r in rows} == {0}
    for r in rows:
        used = {k[3:]: hp_value(v) for k, v in r.items() if k.startswith("hp_")}
        assert used == schedule[int(r["generation"])]  # exact: floats round-trip through repr
    saved = json.loads((replay / "replay_schedule.json").read_text())
    assert saved["schedule"] == schedule
    assert Path(saved["source_run"]) == (runs / "pbt").resolve()
    cfg = json.loads((replay / "config.json").read_text())["config"]
    pbt_cfg = json.loads((runs / "pbt" / "config.json").read_text())["config"]
    assert cfg["strategy"] == "baseline"
    for key in ("env_id", "n_envs", "n_steps", "steps_per_generation", "generations", "seed", "eval_episodes"):
        assert cfg[key] == pbt_cfg[key], key
    assert load_run(replay).kind == "replay"
    env_steps = [int(r["env_steps"]) for r in read(replay / "generations.csv")]
    assert env_steps == [256 * (g + 1) for g in range(PBT_GENERATIONS)]


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_replay_refuses_a_baseline_run(runs: Path) -> None:
    res = run_module("evo.replay", str(runs / "base"), timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a PBT run" in lines[0], res.stderr


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_not_a_run_dir_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    for bad in (tmp_path / "empty", tmp_path / "file.txt", tmp_path / "missing"):
        res = run_module("evo.report", str(bad), "--out", str(tmp_path / "out"), timeout=60)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        assert lines[0].startswith("python -m evo.report: error: ") and "not an evo run directory" in lines[0]
