"""evo.report and evo.replay on real (tiny) runs: plots, the equal-budget table, ancestry, replay.
The rule for fewer than 5 runs (no IQM, no CI) is tested in test_report_small_n.py.

The runs (a 4-rank winner-takes-all PBT run and a 2-seed baseline on CartPole) are made once
per test session by :func:`make_tiny_runs` and shared with test_tensorboard_http.py.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_module, run_mpi

from evo.errors import ConfigError
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
    """The first Markdown table in ``text`` (its consecutive ``|`` lines)."""
    all_lines = [ln.strip() for ln in text.splitlines()]
    start = next(i for i, ln in enumerate(all_lines) if ln.startswith("|"))
    lines = list(itertools.takewhile(lambda ln: ln.startswith("|"), all_lines[start:]))
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

    for name in ("scores.png", "profile.png", "hparams_pbt.png", "lineage_pbt.png"):
        path = report / name
        assert path.is_file() and path.stat().st_size > 5000, name
        img = matplotlib.image.imread(path)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300, (name, img.shape)
        colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
        assert len(colours) > 20, f"{name} looks blank ({len(colours)} colours)"
        assert float(img[..., :3].std()) > 0.02, name
    summary = (report / "summary.md").read_text()
    for name in ("scores.png", "profile.png", "hparams_pbt.png", "lineage_pbt.png"):
        assert f"]({name})" in summary
    assert not (report / "hparams_base.png").exists()  # baselines have no schedule to plot
    assert {"scores.png", "profile.png", "hparams_pbt.png", "lineage_pbt.png"} <= set(check_html_links(report))


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
    rows = {r["run"]: r for r in md_section_table(text, "## Per run")}
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
def test_methods_table_on_real_runs(report: Path, runs: Path) -> None:
    """One PBT run (n = 1 whatever its 4 members), a 2-seed baseline (n = 2) and a replay, compared at
    the budget every run was evaluated at, with the selected member's score from generations.csv."""
    text = (report / "summary.md").read_text()
    rows = {r["method"]: r for r in md_section_table(text, "## Did PBT beat the baseline?")}
    assert set(rows) == {"wta", "wta, all members", "baseline (cartpole)", "replay", "random policy (reference)"}
    assert rows["wta"]["runs (n)"] == "1" and rows["baseline (cartpole)"]["runs (n)"] == "2"
    assert rows["replay"]["runs (n)"] == "1"
    budget = str(PBT_GENERATIONS * 256)
    assert {rows[k]["env steps per member"] for k in ("wta", "baseline (cartpole)", "replay")} == {budget}
    members = read(runs / "pbt" / "members.csv")
    best = int(read(runs / "pbt" / "generations.csv")[-1]["best_member"])
    last = [r for r in members if r["generation"] == str(PBT_GENERATIONS - 1)]
    final = json.loads((runs / "pbt" / "summary.json").read_text()).get("final_eval")
    # the budget is the end of the PBT run: its fresh final evaluation counts where the run has one
    selected = final["scores"][best] if final else next(float(r["score"]) for r in last if int(r["member"]) == best)
    assert rows["wta"]["median (min to max)"] == f"{selected:.2f}"  # one run: no range, no IQM, no CI
    population = sum(float(r["score"]) for r in last) / len(last)  # always the members' own evaluation
    assert rows["wta, all members"]["median (min to max)"] == f"{population:.2f}"
    base = [float(r["score"]) for r in read(runs / "base" / "members.csv") if r["env_steps"] == budget]
    assert rows["baseline (cartpole)"]["mean"] == f"{sum(base) / 2:.2f}"  # 768 is not the baseline's end
    # the selected member is the best of 4 members, each baseline seed one: marked, and no best-of-4 row from 2 seeds
    assert rows["wta"]["P(improvement over baseline (cartpole))"].endswith(
        "(point estimate; no CI: n = 1 vs 2; not compute-matched)")
    assert "`baseline (cartpole)` has 2 seed(s), fewer than the population size 4: no compute-matched best-of-4 " \
           "row." in text
    assert "IQM" not in text and "[95% CI]" not in text
    assert ("`final_eval`" in text) == bool(final) and ("**optimistic**" in text) == (not final)
    ref = json.loads((report / "report.json").read_text())["tasks"][0]["reference"]
    assert 5.0 < ref["score"] < 60.0 and ref["episodes"] >= 2  # random CartPole: ~22 per episode


@pytest.fixture(scope="module")
def base4(runs: Path) -> Path:
    """A 4-seed baseline with the PBT run's --seed (0) that ends at its budget: a best-of-4 draw."""
    out = runs / "base4"
    if not (out / "summary.json").exists():
        res = run_mpi(4, "evo.baseline", "--env-id", "CartPole-v1", "--n-envs", "2", "--n-steps", "128",
                      "--num-timesteps", str(PBT_GENERATIONS * 256), "--eval-every", "256", "--eval-episodes", "2",
                      "--log-dir", str(runs), "--exp-name", "base4", "--checkpoint-every", "0", "--no-tb-writer",
                      "--overwrite", timeout=240)
        assert res.returncode == 0, res.stderr[-3000:]
    return out


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_best_of_n_baseline_row_on_real_runs(runs: Path, base4: Path, tmp_path: Path) -> None:
    """A 4-member PBT run and a 4-seed baseline: the baseline's best of 4 seeds is the seed with the best score
    at the last evaluation (members.csv), scored on the final evaluation's fresh episodes (summary.json), the
    same episodes as PBT's selected member (same --seed)."""
    out = tmp_path / "report"
    res = run_module("evo.report", str(runs / "pbt"), str(base4), "--out", str(out), "--reps", "200", timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    text = (out / "summary.md").read_text()
    rows = {r["method"]: r for r in md_section_table(text, "## Did PBT beat the baseline?")}
    label = "baseline (cartpole), best of 4 seeds"
    last = sorted((r for r in read(base4 / "members.csv") if r["generation"] == str(PBT_GENERATIONS - 1)),
                  key=lambda r: int(r["member"]))
    scores = [float(r["score"]) for r in last]
    chosen = min(range(4), key=lambda m: (-scores[m], m))  # the highest score; ties to the lowest member
    final = json.loads((base4 / "summary.json").read_text())["final_eval"]
    pbt_final = json.loads((runs / "pbt" / "summary.json").read_text())["final_eval"]
    assert rows[label]["runs (n)"] == "1" and rows[label]["members per run"] == "best of 4"
    assert rows["wta"]["members per run"] == "best of 4" and rows["baseline (cartpole)"]["members per run"] == "1"
    assert rows[label]["median (min to max)"] == f"{final['scores'][chosen]:.2f}"
    assert rows["wta"][f"P(improvement over {label})"].endswith("(point estimate; no CI: n = 1 vs 1)")
    assert final["seed"] == pbt_final["seed"] and final["episodes"] == pbt_final["episodes"]
    assert f"`wta` and `{label}` are scored on the same fresh episodes (final-evaluation seed {final['seed']})." \
        in text
    data = json.loads((out / "report.json").read_text())
    m = next(x for x in data["tasks"][0]["methods"] if x["label"] == label)
    assert m["compute_matched"] and m["samples"][0]["chosen_from"] == [f"base4/{k}" for k in range(4)]
    assert m["samples"][0]["run"] == f"base4/{chosen}"


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


# -- methods, budget and statistics on fake run directories --------------------------------------
BASE_CONFIG = {"env_id": "CartPole-v1", "n_envs": 2, "n_steps": 128, "eval_episodes": 5, "num_levels": 0,
               "start_level": 0, "distribution_mode": "easy", "policy": "auto", "select_on": "train",
               "eval_deterministic": None, "exchange": True, "quantile": 0.25, "tb_writer": False, "threads": 0,
               "checkpoint_every": 0, "resume": False, "overwrite": False, "verbose": 0, "hyperparams": None}
RANDOM = {"score": 21.5, "episodes": 100}


def write_run(path: Path, scores: list[list[float | None]], points: list[int], *, strategy: str = "truncation",
              best: list[int] | None = None, config: dict | None = None, summary: dict | None = None,
              random_policy: dict | None = RANDOM, tests: list[list[float]] | None = None) -> Path:
    """A run directory as evo writes it: ``scores[g][m]`` is member m's score at ``points[g]`` env steps
    (``tests[g][m]`` its held-out score, if given)."""
    path.mkdir(parents=True)
    n = len(scores[0])
    cfg = {**BASE_CONFIG, "strategy": strategy, "seed": 0, "exp_name": path.name, "log_dir": str(path.parent),
           "num_agents": n, "generations": len(points), "steps_per_generation": points[0], **(config or {})}
    if strategy == "baseline":
        cfg.setdefault("param_name", "cartpole")
    meta: dict = {"config": cfg, "world_size": n, "search_space": {"params": {"learning_rate": {"low": 1e-5}}}}
    if random_policy is not None:
        meta["random_policy"] = random_policy
    (path / "config.json").write_text(json.dumps(meta))
    with open(path / "members.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["generation", "member", "score", "failed", "env_steps", "total_env_steps", "copied_from",
                    "hp_learning_rate", *(["test_score"] if tests is not None else [])])
        for g, row in enumerate(scores):
            for m, s in enumerate(row):
                w.writerow([g, m, "" if s is None else repr(s), int(s is None), points[g], n * points[g], -1, 1e-3,
                            *([repr(tests[g][m])] if tests is not None else [])])
    with open(path / "generations.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["generation", "env_steps", "total_env_steps", "best_score", "mean_score", "worst_score",
                    "best_member", "n_exploits", "n_failed", "wall_s"])
        for g, row in enumerate(scores):
            fin = [s for s in row if s is not None]
            b = best[g] if best is not None else max(range(n), key=lambda m: (fin_or(row[m]), -m))
            w.writerow([g, points[g], n * points[g], max(fin), sum(fin) / len(fin), min(fin), b, 0, 0, g + 1.0])
    if summary is not None:
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def fin_or(v: float | None) -> float:
    return -1e9 if v is None else v


def md_section_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after ``heading``."""
    return md_table(text.split(heading, 1)[1])


def test_default_grouping_ignores_non_result_settings_and_names_differences(tmp_path: Path) -> None:
    from evo.report import group_methods

    pts = [256, 512]
    runs = [
        write_run(tmp_path / "t0", [[1.0, 2.0]] * 2, pts),
        write_run(tmp_path / "t1", [[1.0, 2.0]] * 2, pts, config={"seed": 7, "threads": 2, "verbose": 1,
                                                                   "generations": 9, "log_dir": "elsewhere"}),
        write_run(tmp_path / "q5", [[1.0, 2.0]] * 2, pts, config={"quantile": 0.5}),
        write_run(tmp_path / "b0", [[1.0, 2.0, 3.0]] * 2, pts, strategy="baseline",
                  config={"num_timesteps": 512, "eval_every": 256}),
        write_run(tmp_path / "b1", [[1.0]] * 2, pts, strategy="baseline",
                  config={"seed": 3, "num_timesteps": 4096, "eval_every": 128}),
    ]
    methods = group_methods([load_run(p) for p in runs])
    got = {m.label: sorted(r.name for r in m.runs) for m in methods}
    assert got == {"truncation (quantile=0.25)": ["t0", "t1"], "truncation (quantile=0.5)": ["q5"],
                   "baseline (cartpole)": ["b0", "b1"]}
    assert [m.is_baseline for m in methods] == [False, False, True]


def test_explicit_labels_group_runs_and_refuse_mixed_kinds(tmp_path: Path) -> None:
    from evo.report import group_methods, parse_run_arg

    a = write_run(tmp_path / "a", [[1.0]], [256])
    b = write_run(tmp_path / "b", [[1.0]], [256], config={"quantile": 0.5})
    c = write_run(tmp_path / "c", [[1.0]], [256], strategy="baseline")
    assert parse_run_arg(f"mine={a}") == ("mine", str(a))
    assert parse_run_arg(str(a)) == (None, str(a))
    odd = tmp_path / "x=y"
    odd.mkdir()
    assert parse_run_arg(str(odd)) == (None, str(odd))  # an existing path with '=' stays a path
    methods = group_methods([load_run(a), load_run(b)], ["mine", "mine"])
    assert [(m.label, len(m.runs)) for m in methods] == [("mine", 2)]
    with pytest.raises(ConfigError, match="mixes"):
        group_methods([load_run(a), load_run(c)], ["mine", "mine"])
    with pytest.raises(ConfigError, match="given twice"):
        group_methods([load_run(a), load_run(a)])


def test_runs_per_method_selected_member_and_population_mean(tmp_path: Path) -> None:
    """A baseline directory of K seeds is K runs; a PBT directory is one run whose score is its
    *selected* member's (best_member, here not the member with the highest score) and its mean."""
    from evo.report import build_entries, choose_budget, group_methods

    pts = [256, 512]
    p0 = write_run(tmp_path / "p0", [[5.0, 6.0, 7.0, 8.0], [10.0, 40.0, 20.0, 30.0]], pts, best=[3, 2])
    p1 = write_run(tmp_path / "p1", [[1.0, 2.0, 3.0, 4.0], [11.0, 12.0, 13.0, 14.0]], pts, best=[0, 3])
    b = write_run(tmp_path / "b", [[1.0, 2.0, 3.0], [9.0, None, 15.0]], pts, strategy="baseline")
    runs = [load_run(p) for p in (p0, p1, b)]
    methods = group_methods(runs)
    budget = choose_budget(runs)
    assert budget.steps == 512 and budget.equal
    entries = {e.label: e for e in build_entries(methods, runs[0].task, budget)}
    assert set(entries) == {"truncation", "truncation, all members", "baseline (cartpole)"}
    assert entries["truncation"].scores[:, 0].tolist() == [20.0, 14.0]
    assert entries["truncation, all members"].scores[:, 0].tolist() == [25.0, 12.5]
    base = entries["baseline (cartpole)"]
    assert base.scores[:, 0].tolist() == [9.0, 15.0] and base.n == 2 and base.failed == 1
    assert {s.env_steps for e in entries.values() for s in e.samples} == {512}


def test_budget_is_the_largest_common_evaluation_point(tmp_path: Path) -> None:
    """The case the old report got wrong: baseline evaluated every 12288 steps, PBT every 8192. The old
    rule (the smallest final step count) compared the baseline at 36864 with PBT at 40960."""
    from evo.report import choose_budget

    pbt_pts = [8192 * (g + 1) for g in range(5)]
    base_pts = [12288 * (g + 1) for g in range(4)]
    pbt = load_run(write_run(tmp_path / "pbt", [[float(g)] * 2 for g in range(5)], pbt_pts))
    base = load_run(write_run(tmp_path / "base", [[float(g)] * 2 for g in range(4)], base_pts, strategy="baseline"))
    budget = choose_budget([pbt, base])
    assert budget.steps == 24576 and budget.equal and not budget.missing
    asked = choose_budget([pbt, base], 40960)
    assert not asked.equal and asked.requested and asked.missing == {"base": (36864, 49152)}
    assert choose_budget([pbt, base], 24576).equal


def make_fake_report(tmp_path: Path, runs: list[str | Path], *args: str) -> tuple[Path, str]:
    """``python -m evo.report`` in this process (the end-to-end tests on real runs use a subprocess)."""
    from evo.report import main

    out = tmp_path / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([*[str(r) for r in runs], "--out", str(out), "--reps", "200", *args])
    assert code == 0, buf.getvalue()
    return out, buf.getvalue()


@pytest.mark.timeout(300)
def test_no_common_point_is_said_plainly_and_not_called_equal(tmp_path: Path) -> None:
    pbt = write_run(tmp_path / "pbt", [[1.0, 2.0], [3.0, 4.0]], [1000, 2000])
    base = write_run(tmp_path / "base", [[5.0, 6.0], [7.0, 8.0]], [1500, 2500], strategy="baseline")
    out, stdout = make_fake_report(tmp_path, [pbt, base])
    text = (out / "summary.md").read_text()
    assert "equal budget" not in text.lower() and "equal budget" not in stdout.lower()
    assert "Budgets differ" in text and "No env-step count per member is an evaluation point of every run" in text
    assert "`base` (nearest evaluations: 1500 below, 2500 above)" in text
    rows = {r["method"]: r for r in md_section_table(text, "Did PBT beat the baseline?")}
    assert rows["truncation"]["env steps per member"] == "2000"
    assert rows["baseline (cartpole)"]["env steps per member"] == "1500"
    assert rows["baseline (cartpole)"]["mean"] == "5.50"
    # --budget that is a point of every run makes it an equal budget again; one that is not, does not
    out, _ = make_fake_report(tmp_path / "again", [pbt, base], "--budget", "1000")
    text = (out / "summary.md").read_text()
    assert "`base` (nearest evaluations: none below, 1500 above)" in text and "equal budget" not in text.lower()
    assert "not evaluated by the budget, left out" in text


def test_final_eval_is_used_only_at_the_end_of_the_run(tmp_path: Path) -> None:
    from evo.report import choose_budget, run_samples

    pts = [256, 512]
    summary = {"best_member": 1, "env_steps_per_member": 512,
               "final_eval": {"scores": [50.0, 60.0, None], "episodes": 30}}
    run = load_run(write_run(tmp_path / "p", [[1.0, 2.0, 3.0], [10.0, 20.0, 5.0]], pts, best=[2, 1],
                             summary=summary))
    sel = run_samples(run, "selected", 512)
    assert [(s.score, s.source, s.episodes) for s in sel] == [(60.0, "final_eval", 30)]
    # the population mean stays on the members' evaluation: final_eval comes after the last exploit
    assert [(s.score, s.source) for s in run_samples(run, "population", 512)] == [(35.0 / 3, "eval")]
    assert [(s.score, s.source) for s in run_samples(run, "selected", 256)] == [(3.0, "eval")]
    assert run_samples(run, "selected", 512, use_final_eval=False)[0].score == 20.0
    assert choose_budget([run]).steps == 512


@pytest.mark.timeout(300)
def test_summary_says_which_score_was_used(tmp_path: Path) -> None:
    pts = [256, 512]
    fresh = write_run(tmp_path / "fresh", [[1.0, 2.0], [3.0, 4.0]], pts, config={"quantile": 0.5},
                      summary={"env_steps_per_member": 512, "final_eval": {"scores": [7.0, 9.0], "episodes": 40}})
    stale = write_run(tmp_path / "stale", [[1.0, 2.0], [3.0, 4.0]], pts)
    out, _ = make_fake_report(tmp_path, [fresh, stale])
    text = (out / "summary.md").read_text()
    assert "`truncation (quantile=0.5)`: the selected member's score; 1 of 1 from fresh episodes after training " \
           "(summary.json `final_eval`, 40 episodes each)" in text
    assert "`truncation (quantile=0.25)`: the selected member's score; 1 of 1 from the evaluation at the budget " \
           "(5 episodes): the same episodes the member was selected on, so **optimistic**" in text
    assert "Did PBT beat the baseline?" not in text  # no baseline: the section says what it shows instead
    rows = {r["method"]: r for r in md_section_table(text, "## Scores at the budget")}
    assert rows["truncation (quantile=0.5)"]["median (min to max)"] == "9.00"
    assert rows["truncation (quantile=0.5), all members"]["mean"] == "3.50"
    assert rows["truncation (quantile=0.25)"]["median (min to max)"] == "4.00"
    assert "Fewer than 5 runs: no confidence interval; median and range shown" in text
    assert "No baseline run among the inputs" in text


def iqm(values: list[float]) -> float:
    """Interquartile mean for n divisible by 4: drop the lowest and highest quarter."""
    v = sorted(values)
    q = len(v) // 4
    return sum(v[q:len(v) - q]) / (len(v) - 2 * q)


def test_aggregate_stats_points_cis_and_reproducibility() -> None:
    from evo.report import aggregate_stats

    values = [3.0, 100.0, 7.0, 5.0, 6.0, 4.0, 8.0, -50.0]
    scores = np.array(values).reshape(-1, 1)
    st = aggregate_stats(scores, reps=500, seed=1)
    assert st is not None and st.n == 8
    assert st.iqm.value == pytest.approx(iqm(values)) == pytest.approx(5.5)
    assert st.median.value == pytest.approx(float(np.median(values)))
    assert st.mean.value == pytest.approx(float(np.mean(values)))
    for iv in (st.iqm, st.median, st.mean):
        assert iv.has_ci and iv.low is not None and iv.high is not None
        assert min(values) <= iv.low <= iv.value <= iv.high <= max(values)
        assert iv.high > iv.low
    state = np.random.get_state()[1].copy()
    again = aggregate_stats(scores, reps=500, seed=1)
    assert again == st  # same seed, same intervals
    assert np.array_equal(np.random.get_state()[1], state)  # numpy's global generator is left as it was
    assert aggregate_stats(scores, reps=500, seed=2) != st
    assert st.statistic == "iqm" and st.headline is st.iqm and (st.low, st.high) == (-50.0, 100.0)
    one = aggregate_stats(np.array([[4.0]]), reps=500)
    assert one is not None and one.n == 1 and one.iqm is None and one.statistic == "median"
    assert one.median.value == 4.0 and not one.median.has_ci and (one.low, one.high) == (4.0, 4.0)
    assert aggregate_stats(np.zeros((0, 1))) is None


def test_improvement_probability_counts_pairs() -> None:
    from evo.report import improvement_probability

    x = np.array([[1.0], [5.0], [9.0]])
    y = np.array([[2.0], [5.0], [3.0], [0.0]])
    # pairs x > y: 1 beats 0; 5 beats 2, 3, 0 (ties with 5: half); 9 beats all four -> (1 + 3.5 + 4) / 12
    p = improvement_probability(x, y, reps=400, seed=0)
    assert p is not None and p.value == pytest.approx(8.5 / 12) and p.statistic == "probability_of_improvement"
    assert not p.has_ci  # fewer than 5 runs on either side: the point estimate alone
    x5, y5 = np.array([[1.0], [5.0], [9.0], [7.0], [8.0]]), np.array([[2.0], [5.0], [3.0], [0.0], [6.0]])
    # 1 beats 0; 5 beats 2, 3, 0 and ties 5; 9, 7 and 8 beat all five -> (1 + 3.5 + 15) / 25
    p5 = improvement_probability(x5, y5, reps=400, seed=0)
    assert p5 is not None and p5.value == pytest.approx(19.5 / 25)
    assert p5.low is not None and p5.high is not None and 0.0 <= p5.low <= p5.value <= p5.high <= 1.0
    assert p5.high > p5.low
    assert improvement_probability(y + 100, x, reps=100).value == 1.0  # type: ignore[union-attr]
    assert improvement_probability(x, x, reps=100).value == 0.5  # type: ignore[union-attr]
    single = improvement_probability(np.array([[3.0]]), y, reps=100)
    assert single is not None and single.value == pytest.approx(2.5 / 4) and not single.has_ci


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]


def check_html_links(out: Path) -> list[str]:
    parser = Links()
    parser.feed((out / "index.html").read_text())
    for link in parser.links:
        assert "://" not in link and not link.startswith("/"), link
        assert (out / link).is_file(), link
    return parser.links


@pytest.mark.timeout(300)
def test_report_end_to_end_on_fake_runs(tmp_path: Path) -> None:
    """Methods table, P(improvement), random reference row, stdout, profile.png, index.html and GIFs."""
    pts = [256, 512]
    pbt = [write_run(tmp_path / f"pbt{i}", [[1.0, 2.0], [30.0 + i, 10.0]], pts, config={"seed": i})
           for i in range(3)]
    base = write_run(tmp_path / "base", [[1.0, 2.0, 3.0, 4.0], [10.0, 12.0, 29.0, 11.0]], pts, strategy="baseline")
    (pbt[1] / "winner.gif").write_bytes(b"GIF89a-one")
    gif = tmp_path / "given.gif"
    gif.write_bytes(b"GIF89a-two")
    out, stdout = make_fake_report(tmp_path, [*pbt, f"my baseline={base}"], "--gif", str(gif))
    text = (out / "summary.md").read_text()
    assert "Methods compared at an equal budget of **512 env steps per member**" in text
    rows = md_section_table(text, "Did PBT beat the baseline?")
    header = list(rows[0])
    # 3 runs and 4 seeds: no IQM and no interval anywhere (see test_report_small_n.py for 5 runs)
    assert header == ["method", "runs (n)", "members per run", "env steps per member", "median (min to max)", "mean",
                      "P(improvement over my baseline)", "P(improvement over my baseline, best of 2 seeds)"]
    by = {r["method"]: r for r in rows}
    assert [r["method"] for r in rows] == ["truncation", "truncation, all members", "my baseline",
                                           "my baseline, best of 2 seeds", "random policy (reference)"]
    assert by["truncation"]["runs (n)"] == "3" and by["my baseline"]["runs (n)"] == "4"
    assert by["truncation"]["median (min to max)"] == "31.00 (30.00 to 32.00)"
    assert by["my baseline"]["mean"] == f"{62 / 4:.2f}"
    # P(truncation > my baseline): 30, 31, 32 each beat 10, 12, 29, 11 -> 1.0; the population means
    # 20, 20.5, 21 each beat 10, 12, 11 but not 29 -> 0.75
    assert by["truncation"]["P(improvement over my baseline)"] == \
        "1.00 (point estimate; no CI: n = 3 vs 4; not compute-matched)"
    assert by["truncation, all members"]["P(improvement over my baseline)"] == \
        "0.75 (point estimate; no CI: n = 3 vs 4)"
    assert by["my baseline"]["P(improvement over my baseline)"] == "—"
    # best of 2 seeds (groups [10, 12] and [29, 11] keep 12 and 29): compute-matched with the selected member
    assert by["my baseline, best of 2 seeds"]["median (min to max)"] == "20.50 (12.00 to 29.00)"
    assert by["truncation"]["P(improvement over my baseline, best of 2 seeds)"] == \
        "1.00 (point estimate; no CI: n = 3 vs 2)"
    assert by["random policy (reference)"]["mean"] == "21.50 (mean of 100 episodes)"
    assert "my baseline" in stdout and "P(improvement over my baseline)" in stdout and "random policy" in stdout
    data = json.loads((out / "report.json").read_text())
    methods = {m["label"]: m for m in data["tasks"][0]["methods"]}
    assert methods["truncation"]["n"] == 3 and methods["truncation"]["statistic"] == "median"
    assert methods["truncation"]["value"] == 31.0 and methods["truncation"]["ci"] is None
    assert data["tasks"][0]["reference"] == {"score": 21.5, "episodes": 100,
                                             "source": "stored in config.json (1 distinct measurement(s))"}
    # the same report twice: identical numbers (seeded bootstrap)
    again, _ = make_fake_report(tmp_path / "again", [*pbt, f"my baseline={base}"])
    assert json.loads((again / "report.json").read_text())["tasks"] == data["tasks"]
    links = check_html_links(out)
    assert {"scores.png", "profile.png", "winner.gif", "winner_pbt1.gif"} <= set(links)
    assert (out / "winner.gif").read_bytes() == b"GIF89a-two"
    assert (out / "winner_pbt1.gif").read_bytes() == b"GIF89a-one"
    html_text = (out / "index.html").read_text()
    assert "<table>" in html_text and "my baseline" in html_text and "http" not in html_text
    import matplotlib.image

    img = matplotlib.image.imread(out / "profile.png")
    assert img.shape[0] > 300 and float(img[..., :3].std()) > 0.02


@pytest.mark.timeout(300)
def test_reference_is_computed_when_config_has_none(tmp_path: Path) -> None:
    from evo.reference import random_policy_score
    from evo.report import task_reference

    run = load_run(write_run(tmp_path / "p", [[1.0, 2.0]], [256], random_policy=None, config={"seed": 4}))
    ref = task_reference([run])
    assert ref is not None and ref.episodes == 5 and "computed now" in ref.source
    assert ref.score == random_policy_score(run.config, 5, 4)
    more = task_reference([run], episodes=12)
    assert more is not None and more.episodes == 12 and more.score == random_policy_score(run.config, 12, 4)


def test_several_tasks_are_compared_per_task_and_normalised_together(tmp_path: Path) -> None:
    from evo.report import compare_across, compare_task, group_methods, stored_reference

    pts = [256]
    ref_a, ref_b = {"score": 10.0, "episodes": 10}, {"score": -100.0, "episodes": 10}
    dirs = [write_run(tmp_path / "pa0", [[20.0, 1.0]], pts, random_policy=ref_a),
            write_run(tmp_path / "pa1", [[30.0, 1.0]], pts, random_policy=ref_a, config={"seed": 1}),
            write_run(tmp_path / "pb0", [[-50.0, -90.0]], pts, random_policy=ref_b, config={"env_id": "Pendulum-v1"}),
            write_run(tmp_path / "pb1", [[0.0, -90.0]], pts, random_policy=ref_b,
                      config={"env_id": "Pendulum-v1", "seed": 1}),
            write_run(tmp_path / "ba", [[10.0, 15.0]], pts, strategy="baseline", random_policy=ref_a),
            write_run(tmp_path / "bb", [[-100.0, -75.0]], pts, strategy="baseline", random_policy=ref_b,
                      config={"env_id": "Pendulum-v1"})]
    runs = [load_run(d) for d in dirs]
    methods = group_methods(runs)
    assert sorted(m.label for m in methods) == ["baseline (cartpole)", "truncation"]
    tasks = [compare_task(methods, t, reps=100, reference=stored_reference([r for r in runs if r.task == t]))
             for t in ("CartPole-v1", "Pendulum-v1")]
    assert [tr.reference.score for tr in tasks if tr.reference is not None] == [10.0, -100.0]
    assert [tr.entries[0].scores[:, 0].tolist() for tr in tasks] == [[20.0, 30.0], [-50.0, 0.0]]
    across = compare_across(tasks, reps=100)
    # CartPole: random 10, best run 30; Pendulum: random -100, best run 0
    assert across.scores["truncation"].tolist() == [[0.5, 0.5], [1.0, 1.0]]
    assert across.scores["baseline (cartpole)"].tolist() == [[0.0, 0.0], [0.25, 0.25]]
    assert across.improvement[("truncation", "baseline (cartpole)")] is not None
    assert across.improvement[("truncation", "baseline (cartpole)")].value == 1.0  # type: ignore[union-attr]


def test_bad_report_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evo.report import main

    run = write_run(tmp_path / "p", [[1.0, 2.0]], [256])
    assert main([str(run), "--out", str(tmp_path / "out"), "--gif", str(tmp_path / "missing.gif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--gif" in err[0] and "no such file" in err[0]
    assert not (tmp_path / "out").exists()  # nothing written before the input is checked
    with pytest.raises(SystemExit):
        main([str(run), "--reps", "0"])
    with pytest.raises(SystemExit):
        main([str(run), "--budget", "-5"])


def test_run_description_names_random_search_pb2_and_async(tmp_path: Path) -> None:
    """The per-run table tells a --no-exchange population (random search) and a PB2 run from PBT."""
    pts = [256]
    cases = {"plain": ({}, "PBT (truncation)"),
             "rs": ({"exchange": False}, "PBT (truncation, no exchange: random search)"),
             "pb2": ({"explore": "pb2"}, "PBT (truncation, explore pb2)"),
             "async": ({"async_mode": True}, "PBT (truncation, async)")}
    for name, (config, want) in cases.items():
        assert load_run(write_run(tmp_path / name, [[1.0]], pts, config=config)).description == want


def test_score_plot_draws_one_colour_and_one_legend_entry_per_method(tmp_path: Path) -> None:
    """Three runs of one PBT method are one legend entry each for best and mean, in one colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evo.report import group_methods
    from evo.report.figures import plot_method

    pts = [256, 512]
    paths = [write_run(tmp_path / f"p{s}", [[1.0, 2.0], [3.0, 4.0]], pts, config={"seed": s}) for s in (0, 1, 2)]
    paths.append(write_run(tmp_path / "b", [[1.0, 2.0], [2.0, 5.0]], pts, strategy="baseline"))
    runs = [load_run(p) for p in paths]
    methods = group_methods(runs, ["PBT", "PBT", "PBT", "base"])
    fig, ax = plt.subplots()
    for method, color in zip(methods, ["C0", "C1"], strict=True):
        plot_method(ax, method, method.runs, "score", color)
    labels = [t.get_text() for t in ax.legend().get_texts()]
    assert labels == ["PBT: best of 2, 3 runs", "PBT: mean of 2", "base: mean (band: min–max of 2 seeds)"]
    assert len(ax.lines) == 3 * 2 + 1
    assert {line.get_color() for line in ax.lines[:6]} == {"C0"} and ax.lines[6].get_color() == "C1"
    plt.close(fig)
