"""Results you can trust: continuing episodes, paired evaluation, strict resume, torn records,
errors seen by some ranks only, separate random streams."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, mpiexec_path, run_cmd, run_mpi

from evo.config import CommonConfig
from evo.core import seeds
from evo.loop.resume import resume_changes
from evo.records import truncate_records


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _without_times(table: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if not k.startswith("time_") and k != "env_steps_per_s"} for r in table]


# -- continuing episodes ------------------------------------------------------------------------
@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_pendulum_episodes_longer_than_a_generation_finish(tmp_path: Path) -> None:
    # 64 steps per env per generation, 200-step episodes: a reset per generation finishes none
    res = run_mpi(2, "evo.truncation", "--env-id", "Pendulum-v1", "--n-envs", "2", "--n-steps", "64",
                  "--steps-per-generation", "128", "--generations", "4", "--eval-episodes", "1",
                  "--log-dir", str(tmp_path), "--exp-name", "p", "--no-tb-writer", timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    table = rows(tmp_path / "p" / "members.csv")
    finished = sum(int(r["episodes"]) for r in table)
    # 2 members x 2 envs x 256 steps = 1 full 200-step episode per env
    assert finished == 4, table
    assert all(float(r["mean_episodic_return"]) < 0 for r in table if r["episodes"] != "0")


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_bigfish_resume_equals_uninterrupted_run_with_continuing_envs(tmp_path: Path) -> None:
    fish = ["--env-id", "bigfish", "--num-levels", "5", "--n-envs", "2", "--n-steps", "32",
            "--steps-per-generation", "64", "--eval-episodes", "1", "--policy", "CnnPolicy", "--no-tb-writer",
            "--log-dir", str(tmp_path)]
    full = run_mpi(2, "evo.wta", *fish, "--generations", "3", "--exp-name", "full", timeout=200)
    assert full.returncode == 0, full.stderr[-3000:]
    cut = run_mpi(2, "evo.wta", *fish, "--generations", "2", "--exp-name", "cut", timeout=200)
    assert cut.returncode == 0, cut.stderr[-3000:]
    assert (tmp_path / "cut" / "checkpoints" / "gen_000002" / "member_000.env").exists()
    more = run_mpi(2, "evo.wta", *fish, "--generations", "3", "--exp-name", "cut", "--resume", timeout=200)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "could not be checkpointed" not in more.stderr
    assert _without_times(rows(tmp_path / "cut" / "members.csv")) == _without_times(
        rows(tmp_path / "full" / "members.csv"))
    assert (tmp_path / "cut" / "lineage.jsonl").read_text() == (tmp_path / "full" / "lineage.jsonl").read_text()
    saved = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert saved["env_state_checkpointed"] is True
    assert saved["config"]["generations"] == 3
    assert saved["resumes"][-1]["changed"] == {"generations": [2, 3]}


# -- paired evaluation --------------------------------------------------------------------------
def test_paired_evaluation_gives_equal_members_equal_scores() -> None:
    from evo.learners import make_learner as Member

    cfg = CommonConfig(env_id="CartPole-v1", n_envs=2, n_steps=64, eval_episodes=4, log_dir="logs", exp_name="t")
    a, b = Member(cfg, {"batch_size": 64}, index=0), Member(cfg, {"batch_size": 64}, index=1)
    b.unpack(a.pack())  # the same policy in two members
    paired = [seeds.eval_seed(0, 3, m, paired=True) for m in (0, 1)]
    unpaired = [seeds.eval_seed(0, 3, m, paired=False) for m in (0, 1)]
    assert paired[0] == paired[1] and unpaired[0] != unpaired[1]
    # stochastic evaluation of an untrained policy: every return depends on the episodes' seeds
    assert a.evaluate(4, False, paired[0]) == b.evaluate(4, False, paired[1])
    scores_a = [a.evaluate(4, False, seeds.eval_seed(0, g, 0, paired=False)) for g in range(3)]
    scores_b = [b.evaluate(4, False, seeds.eval_seed(0, g, 1, paired=False)) for g in range(3)]
    assert scores_a != scores_b


def test_random_streams_are_distinct_per_purpose() -> None:
    draws = {
        "init0": seeds.init_rng(0, 0).random(4), "select2": seeds.selection_rng(0, 2).random(4),
        "select0": seeds.selection_rng(0, 0).random(4), "explore00": seeds.explore_rng(0, 0, 0).random(4),
    }
    values = [tuple(v) for v in draws.values()]
    assert len(set(values)) == len(values)
    purposes = {seeds.train_seed(0, 0, 2), seeds.eval_seed(0, 2, 0), seeds.eval_seed(0, 2, 0, test_levels=True),
                seeds.env_seed(0, 0, 2), seeds.final_eval_seed()}
    assert len(purposes) == 5


# -- resume refuses what would change the result ------------------------------------------------
def test_resume_changes_are_split_into_refused_and_accepted() -> None:
    saved = {"seed": 0, "quantile": 0.25, "generations": 5, "search_space": {"a": 1}, "hyperparams": "x.yaml"}
    new = {"seed": 7, "quantile": 0.25, "generations": 9, "search_space": {"a": 2}, "hyperparams": "y.yaml",
           "paired_eval": True}
    refused, accepted = resume_changes(saved, new)
    assert refused == {"seed": [0, 7], "search_space": [{"a": 1}, {"a": 2}]}
    assert accepted == {"generations": [5, 9]}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust")
    res = run_mpi(2, "evo.truncation", *TINY, "--generations", "2", "--log-dir", str(root), "--exp-name", "base",
                  "--no-tb-writer", timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def _copy(small_run: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(small_run / "base", dst / "base")
    return dst


def _resume(root: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_mpi(2, "evo.truncation", *TINY, "--log-dir", str(root), "--exp-name", "base", "--no-tb-writer",
                   "--resume", *extra, timeout=120)


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_resume_refuses_changed_settings_and_records_accepted_ones(small_run: Path, tmp_path: Path) -> None:
    root = _copy(small_run, tmp_path)
    res = _resume(root, "--generations", "2", "--seed", "7", "--quantile", "0.5")
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "seed 0 -> 7" in lines[0] and "quantile 0.25 -> 0.5" in lines[0], res.stderr
    hp = tmp_path / "hp.yaml"
    hp.write_text("learning_rate: {low: 1.0e-4, high: 1.0e-3, scale: log}\n")
    res = _resume(root, "--generations", "2", "--hyperparams", str(hp))
    assert res.returncode == 2 and "search_space (contents differ)" in res.stderr
    saved = json.loads((root / "base" / "config.json").read_text())
    assert saved["config"]["seed"] == 0 and saved["resumes"] == []  # nothing recorded for a refusal
    res = _resume(root, "--generations", "3", "--checkpoint-every", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    saved = json.loads((root / "base" / "config.json").read_text())
    assert saved["config"]["generations"] == 3 and saved["config"]["checkpoint_every"] == 2
    assert saved["resumes"][0]["at_generation"] == 2
    assert saved["resumes"][0]["changed"] == {"generations": [2, 3], "checkpoint_every": [1, 2]}


# -- records survive a kill mid-write -----------------------------------------------------------
def test_truncate_records_drops_torn_last_lines(tmp_path: Path) -> None:
    (tmp_path / "members.csv").write_text("generation,member,score\n0,0,1.5\n1,0,2.5\n1,1,2.")
    (tmp_path / "lineage.jsonl").write_text('{"generation": 0, "receiver": 1}\n{"generation": 1, "rec')
    notes = truncate_records(tmp_path, keep_below=2)
    assert (tmp_path / "members.csv").read_text().splitlines() == ["generation,member,score", "0,0,1.5", "1,0,2.5"]
    assert (tmp_path / "lineage.jsonl").read_text() == '{"generation": 0, "receiver": 1}\n'
    assert len(notes) == 2 and all("incomplete line" in n and "kill mid-write" in n for n in notes)
    assert not list(tmp_path.glob("*.damaged"))  # a torn last line is a kill's doing: nothing kept aside
    assert truncate_records(tmp_path, keep_below=1) == []


def test_truncate_records_keeps_damaged_middle_lines_aside(tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_text("generation,member,score\n0,0,1.5\n0,1\n1,0,2.5\nx,1,3.0\n1,1,2.")
    lineage = tmp_path / "lineage.jsonl"
    lineage.write_text('{"generation": 0, "receiver": 1}\n{"generation": 1, "rec\n[1, 2]\n{"generation": 1, '
                       '"receiver": 0}\n')
    notes = truncate_records(tmp_path, keep_below=2)
    assert members.read_text().splitlines() == ["generation,member,score", "0,0,1.5", "1,0,2.5"]
    assert (tmp_path / "members.csv.damaged").read_text() == "0,1\nx,1,3.0\n"
    assert lineage.read_text().splitlines() == ['{"generation": 0, "receiver": 1}', '{"generation": 1, "receiver": 0}']
    assert (tmp_path / "lineage.jsonl.damaged").read_text() == '{"generation": 1, "rec\n[1, 2]\n'
    assert "dropped 1 incomplete line(s) of members.csv (a kill mid-write)" in notes
    assert "2 damaged line(s) in the middle of members.csv (not a kill mid-write) were kept in " \
           "members.csv.damaged" in notes
    assert any("2 damaged line(s)" in n and "lineage.jsonl.damaged" in n for n in notes)
    assert len(notes) == 3 and not any("incomplete" in n for n in notes if "lineage" in n)  # its last line was whole
    # damaged lines are appended: a second damage later adds to the file, losing nothing
    members.write_text(members.read_text() + "1,1\n")
    assert truncate_records(tmp_path, keep_below=2) == [
        "1 damaged line(s) in the middle of members.csv (not a kill mid-write) were kept in members.csv.damaged"]
    assert (tmp_path / "members.csv.damaged").read_text() == "0,1\nx,1,3.0\n1,1\n"


def test_truncate_records_with_a_rule_per_file(tmp_path: Path) -> None:
    """The asynchronous form: each member redoes its own intervals; files without a rule are left alone."""
    (tmp_path / "members.csv").write_text("generation,member,score\n0,0,1\n0,1,2\n1,0,3\n1,1,4\n2,1,5\n7,9,6\n")
    (tmp_path / "generations.csv").write_text("generation,best\n0,2\n1,4\n")
    (tmp_path / "checkpoints.jsonl").write_text('{"generation": 5}\n')
    starts = [1, 2]
    notes = truncate_records(tmp_path, keep={
        "members.csv": lambda x: int(x["generation"]) < starts[int(x["member"])],
        "generations.csv": lambda x: int(x["generation"]) < min(starts),
    })
    assert rows(tmp_path / "members.csv") == [{"generation": "0", "member": "0", "score": "1"},
                                              {"generation": "0", "member": "1", "score": "2"},
                                              {"generation": "1", "member": "1", "score": "4"}]
    assert (tmp_path / "generations.csv").read_text() == "generation,best\n0,2\n"
    assert (tmp_path / "checkpoints.jsonl").read_text() == '{"generation": 5}\n'  # no rule: untouched
    assert (tmp_path / "members.csv.damaged").read_text() == "7,9,6\n"  # member 9 does not exist: damage
    assert notes == ["1 damaged line(s) in the middle of members.csv (not a kill mid-write) were kept in "
                     "members.csv.damaged"]


def test_truncate_records_repairs_a_torn_header(tmp_path: Path) -> None:
    (tmp_path / "generations.csv").write_text("generation,be")
    assert truncate_records(tmp_path, keep_below=0) == ["dropped 1 incomplete line(s) of generations.csv "
                                                        "(a kill mid-write)"]
    assert (tmp_path / "generations.csv").read_text() == ""  # TableWriter writes a whole header into it


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_torn_lineage_line_does_not_block_resume(small_run: Path, tmp_path: Path) -> None:
    root = _copy(small_run, tmp_path)
    with open(root / "base" / "lineage.jsonl", "a") as fh:
        fh.write('{"generation": 2, "receiver": 0, "don')
    with open(root / "base" / "members.csv", "a") as fh:
        fh.write("2,0,12.")
    res = _resume(root, "--generations", "3")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "dropped 1 incomplete line(s) of lineage.jsonl" in res.stderr
    assert "dropped 1 incomplete line(s) of members.csv" in res.stderr
    for line in (root / "base" / "lineage.jsonl").read_text().splitlines():
        json.loads(line)
    assert [r["generation"] for r in rows(root / "base" / "members.csv")] == ["0", "0", "1", "1", "2", "2"]


# -- no rank waits for an error it cannot see ---------------------------------------------------
def _mpmd(tmp_path: Path, module: str, flag: str, where: str, *args: str):  # type: ignore[no-untyped-def]
    """Rank 0 runs in dir A, rank 1 in dir B; the file ``flag`` names exists only in ``where``."""
    mpiexec = mpiexec_path()
    if mpiexec is None:
        pytest.skip("no mpiexec")
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    name = "hp.yaml"
    text = ("learning_rate: {low: 1.0e-4, high: 1.0e-3, scale: log}\n" if flag == "--hyperparams"
            else "mine: {n_envs: 2, n_steps: 128, learning_rate: 0.001}\n")
    (a if where == "A" else b).joinpath(name).write_text(text)
    cmd = [*args, flag, name, "--log-dir", str(tmp_path / "logs"), "--exp-name", "x", "--no-tb-writer"]
    argv = [mpiexec, "-n", "1", "-wdir", str(a), sys.executable, "-m", module, *cmd, ":",
            "-n", "1", "-wdir", str(b), sys.executable, "-m", module, *cmd]
    t0 = time.monotonic()
    res = run_cmd(argv, timeout=120)
    return res, time.monotonic() - t0


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["A", "B"])
def test_file_seen_by_one_rank_only_never_hangs(where: str, tmp_path: Path) -> None:
    res, seconds = _mpmd(tmp_path, "evo.truncation", "--hyperparams", where, *TINY, "--generations", "1")
    print(f"MPMD --hyperparams only in {where}: exit {res.returncode} after {seconds:.1f} s")
    if where == "A":  # rank 0 reads it and broadcasts its contents: the run works
        assert res.returncode == 0, res.stderr[-3000:]
    else:
        assert res.returncode == 2
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "cannot read hyperparameter file 'hp.yaml'" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_param_file_seen_by_one_rank_only_never_hangs(tmp_path: Path) -> None:
    res, seconds = _mpmd(tmp_path, "evo.baseline", "--param-file", "B", "--env-id", "CartPole-v1",
                         "--param-name", "mine", "--num-timesteps", "256", "--eval-episodes", "1")
    print(f"MPMD --param-file only on rank 1: exit {res.returncode} after {seconds:.1f} s")
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot read hyperparameter sets 'hp.yaml'" in lines[0], res.stderr


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_manifest_error_on_rank_0_only_ends_the_job(tmp_path: Path) -> None:
    t0 = time.monotonic()
    res = run_mpi(3, "evo.truncation", *TINY, "--generations", "4", "--log-dir", str(tmp_path), "--exp-name", "x",
                  "--no-tb-writer", env={"EVO_FAULT": "manifest:0:1"}, timeout=150)
    seconds = time.monotonic() - t0
    assert res.returncode == 2
    evo_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("python -m evo")]
    assert len(evo_lines) == 1 and "injected fault: cannot write the manifest" in evo_lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "x" / "checkpoints" / "gen_000002" / "manifest.json").exists()
    assert (tmp_path / "x" / "checkpoints" / "gen_000001" / "manifest.json").exists()
    assert seconds < 120


# -- the selected member's own scores -----------------------------------------------------------
def test_final_eval_scores_are_finite_in_summary(small_run: Path) -> None:
    summary = json.loads((small_run / "base" / "summary.json").read_text())
    final = summary["final_eval"]
    assert len(final["scores"]) == 2 and all(math.isfinite(v) for v in final["scores"])
    gens = rows(small_run / "base" / "generations.csv")
    members = rows(small_run / "base" / "members.csv")
    for g in gens:
        chosen = [m for m in members if m["generation"] == g["generation"] and m["member"] == g["best_member"]]
        assert chosen and float(chosen[0]["score"]) == float(g["best_member_score"])
    assert np.isclose(summary["best_score"], float(gens[-1]["best_member_score"]))
