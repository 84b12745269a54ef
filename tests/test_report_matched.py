"""evo.report's compute-matched row: a baseline's best of N seeds (N = the PBT population size), chosen
by the selection score at the last evaluation as PBT chooses its member, and scored on the final
evaluation's fresh episodes; the *members per run* column, the *not compute-matched* marks, the notes
on draws, too few seeds and episodes; and the report without a baseline. Fake run directories as in
test_report.py (the real-run check is in test_report.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import make_fake_report, md_section_table, write_run

from evo.report import compare_task, group_methods, load_run

PTS = [256, 512]
BEST3 = "baseline (cartpole), best of 3 seeds"


def final(scores: list[float | None], seed: int) -> dict:
    """summary.json of a run that ended at 512 env steps per member; its fresh episodes' seed is ``1000 + seed``."""
    return {"env_steps_per_member": 512, "final_eval": {"scores": scores, "episodes": 10, "seed": 1000 + seed}}


def scenario(tmp_path: Path) -> list[Path]:
    """Two 3-member PBT runs (--seed 0, 1) and one baseline method of 7 seeds in two directories.

    Seed order: ``z0`` (--seed 0, first despite its name) then ``a5`` (--seed 5). Groups of 3:
    [z0/0, z0/1, z0/2] keeps z0/1 (best last evaluation 9.0; z0/2 has the best *final* score, 90, and
    z0/0 the best score of an earlier evaluation, 100): 20.0. [z0/3, a5/0, a5/1] ties 7.0 and 7.0 (a5/1
    failed): the first in seed order, z0/3: 40.0. a5/2 is left over.
    """
    p0 = write_run(tmp_path / "p0", [[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]], PTS, best=[2, 2], config={"seed": 0},
                   summary=final([50.0, 60.0, 55.0], 0))
    p1 = write_run(tmp_path / "p1", [[1.0, 2.0, 3.0], [4.0, 3.0, 2.0]], PTS, best=[2, 0], config={"seed": 1},
                   summary=final([44.0, 1.0, 2.0], 1))
    z0 = write_run(tmp_path / "z0", [[100.0, 0.0, 0.0, 0.0], [1.0, 9.0, 3.0, 7.0]], PTS, strategy="baseline",
                   config={"seed": 0}, summary=final([10.0, 20.0, 90.0, 40.0], 0))
    a5 = write_run(tmp_path / "a5", [[1.0, 1.0, 1.0], [7.0, None, 0.5]], PTS, strategy="baseline",
                   config={"seed": 5}, summary=final([70.0, None, 71.0], 5))
    return [p0, p1, a5, z0]


def test_best_of_n_groups_seeds_in_seed_order_and_keeps_the_selection_winner(tmp_path: Path) -> None:
    runs = [load_run(p) for p in scenario(tmp_path)]
    tr = compare_task(group_methods(runs), runs[0].task, reps=100)
    labels = [e.label for e in tr.entries]
    assert labels == ["truncation", "truncation, all members", "baseline (cartpole)", BEST3]
    best = tr.entry(BEST3)
    assert best.is_baseline and best.variant == "best_of" and best.compute_matched and best.sizes == [3]
    assert [(s.run, s.score, s.source, s.members, s.final_seed) for s in best.samples] == \
        [("z0/1", 20.0, "final_eval", 3, 1000), ("z0/3", 40.0, "final_eval", 3, 1000)]
    assert [s.chosen_from for s in best.samples] == [["z0/0", "z0/1", "z0/2"], ["z0/3", "a5/0", "a5/1"]]
    assert best.unused == ["a5/2"] and best.n == 2 and best.selected_on == "train"
    # PBT's selected member: best_member of generations.csv, scored on its final evaluation
    assert tr.entry("truncation").scores[:, 0].tolist() == [55.0, 44.0]
    seeds = tr.entry("baseline (cartpole)")
    assert seeds.n == 6 and seeds.failed == 1 and not seeds.compute_matched and seeds.sizes == [1]
    assert tr.entry("truncation").matches(best) and not tr.entry("truncation").matches(seeds)
    assert tr.entry("truncation, all members").matches(seeds)
    assert tr.improvement[("truncation", BEST3)].value == 1.0  # type: ignore[union-attr]


@pytest.mark.timeout(300)
def test_summary_shows_the_matched_row_marks_and_notes(tmp_path: Path) -> None:
    out, stdout = make_fake_report(tmp_path, scenario(tmp_path))
    text = (out / "summary.md").read_text()
    rows = md_section_table(text, "## Did PBT beat the baseline?")
    by = {r["method"]: r for r in rows}
    assert list(rows[0]) == ["method", "runs (n)", "members per run", "env steps per member", "IQM [95% CI]",
                             "median (min to max)", "mean", "P(improvement over baseline (cartpole))",
                             f"P(improvement over {BEST3})"]
    assert {k: by[k]["members per run"] for k in by} == {
        "truncation": "best of 3", "truncation, all members": "mean of 3", "baseline (cartpole)": "1",
        BEST3: "best of 3", "random policy (reference)": "—"}
    assert by[BEST3]["runs (n)"] == "2" and by[BEST3]["median (min to max)"] == "30.00 (20.00 to 40.00)"
    assert by[BEST3]["IQM [95% CI]"] == "— (fewer than 5 runs)"
    # the matched pair has no mark; the others say they are not compute-matched
    assert by["truncation"][f"P(improvement over {BEST3})"] == "1.00 (point estimate; no CI: n = 2 vs 2)"
    assert by["truncation"]["P(improvement over baseline (cartpole))"].endswith(
        "(point estimate; no CI: n = 2 vs 6; not compute-matched)")
    assert by["truncation, all members"][f"P(improvement over {BEST3})"].endswith("; not compute-matched)")
    assert "compute-matched" not in by["truncation, all members"]["P(improvement over baseline (cartpole))"]
    assert "*Compute-matched* rows" in text and f"`truncation`, `{BEST3}`" in text
    assert "*Per-member* rows (one seed, or the mean of a population's members): `truncation, all members`, " \
           "`baseline (cartpole)`." in text
    assert "cut into disjoint groups of 3, each group one run of this method (2 from 7 seeds); left out (after the " \
           "last full group): `a5/2`." in text
    assert f"`{BEST3}`: per group of 3 seeds, the score of the seed with the best training-level score at the last " \
           "evaluation" in text
    assert "**not** scored on the same fresh episodes" in text
    # fake summaries recording different final-evaluation seeds (old runs drew them from their --seed)
    assert "final-evaluation seeds differ (1000, 1001 vs 1000;" in text
    assert BEST3 in stdout and "members per run" in stdout
    data = json.loads((out / "report.json").read_text())
    methods = {m["label"]: m for m in data["tasks"][0]["methods"]}
    m = methods[BEST3]
    assert (m["variant"], m["compute_matched"], m["members_per_run"], m["unused_seeds"]) == \
        ("best_of", True, [3], ["a5/2"])
    assert [s["chosen_from"] for s in m["samples"]] == [["z0/0", "z0/1", "z0/2"], ["z0/3", "a5/0", "a5/1"]]
    assert (m["statistic"], m["value"], m["n"]) == ("median", 30.0, 2)
    assert methods["baseline (cartpole)"]["compute_matched"] is False
    imp = {(i["method"], i["baseline"]): i["compute_matched"] for i in data["tasks"][0]["improvement"]}
    assert imp == {("truncation", "baseline (cartpole)"): False, ("truncation", BEST3): True,
                   ("truncation, all members", "baseline (cartpole)"): True,
                   ("truncation, all members", BEST3): False}


@pytest.mark.timeout(300)
def test_same_seed_means_the_same_fresh_episodes(tmp_path: Path) -> None:
    """One PBT run and a baseline launched with its --seed: the same final-evaluation episodes, said so."""
    pbt = write_run(tmp_path / "pbt", [[1.0, 2.0], [3.0, 4.0]], PTS, config={"seed": 3}, summary=final([5.0, 6.0], 3))
    base = write_run(tmp_path / "base", [[1.0] * 4, [1.0, 2.0, 4.0, 3.0]], PTS, strategy="baseline",
                     config={"seed": 3}, summary=final([1.5, 2.5, 3.5, 4.5], 3))
    out, _ = make_fake_report(tmp_path, [pbt, base])
    text = (out / "summary.md").read_text()
    by = {r["method"]: r for r in md_section_table(text, "## Did PBT beat the baseline?")}
    assert by["baseline (cartpole), best of 2 seeds"]["median (min to max)"] == "3.00 (2.50 to 3.50)"
    assert "`truncation` and `baseline (cartpole), best of 2 seeds` are scored on the same fresh episodes " \
           "(final-evaluation seed 1003)." in text
    assert "left out" not in text


@pytest.mark.timeout(300)
def test_too_few_seeds_give_no_row_and_say_so(tmp_path: Path) -> None:
    pbt = write_run(tmp_path / "pbt", [[1.0, 2.0, 3.0]], [256])
    base = write_run(tmp_path / "base", [[1.0, 2.0]], [256], strategy="baseline")
    out, _ = make_fake_report(tmp_path, [pbt, base])
    text = (out / "summary.md").read_text()
    rows = {r["method"] for r in md_section_table(text, "## Did PBT beat the baseline?")}
    assert rows == {"truncation", "truncation, all members", "baseline (cartpole)", "random policy (reference)"}
    assert "`baseline (cartpole)` has 2 seed(s), fewer than the population size 3: no compute-matched best-of-3 " \
           "row." in text
    data = json.loads((out / "report.json").read_text())
    assert data["tasks"][0]["too_few_seeds"] == [{"baseline": "baseline (cartpole)", "seeds": 2, "size": 3}]


def test_selection_on_held_out_levels_picks_by_the_held_out_score(tmp_path: Path) -> None:
    """PBT that selected on held-out levels: the baseline's best of N is kept by its held-out score too;
    a baseline without held-out scores falls back to the training-level score, and the label says which."""
    cfg = {"select_on": "test", "eval_test_levels": True}
    pbt = write_run(tmp_path / "pbt", [[1.0, 2.0]], [256], best=[0], config=cfg, tests=[[5.0, 1.0]])
    held = write_run(tmp_path / "held", [[9.0, 1.0]], [256], strategy="baseline", tests=[[1.0, 9.0]],
                     config={"eval_test_levels": True})
    plain = write_run(tmp_path / "plain", [[9.0, 1.0]], [256], strategy="baseline", config={"param_name": "x"})
    runs = [load_run(p) for p in (pbt, held, plain)]
    tr = compare_task(group_methods(runs, ["pbt", "held", "plain"]), runs[0].task, reps=100)
    on_test = tr.entry("held, best of 2 seeds, on held-out levels")
    assert on_test.selected_on == "test" and on_test.scores[:, 0].tolist() == [1.0]  # member 1: held-out 9.0
    fallback = tr.entry("plain, best of 2 seeds")
    assert fallback.selected_on == "train" and fallback.scores[:, 0].tolist() == [9.0]


@pytest.mark.timeout(300)
def test_without_a_baseline_the_report_says_what_it_shows(tmp_path: Path) -> None:
    one = write_run(tmp_path / "one", [[1.0, 2.0]], [256])
    out, _ = make_fake_report(tmp_path, [one])
    text = (out / "summary.md").read_text()
    assert "Did PBT beat the baseline?" not in text and "## Scores at the budget" in text
    assert "There is no baseline run among the inputs, so the table shows what each method scored at the budget " \
           "and does not say whether PBT beat a baseline; for that, add a baseline run" in text
    assert "P(improvement" not in md_section_table(text, "## Scores at the budget")[0]
    assert "Did PBT beat the baseline?" not in (out / "index.html").read_text()
    base = write_run(tmp_path / "base", [[1.0, 2.0]], [256], strategy="baseline")
    out, _ = make_fake_report(tmp_path / "b", [base])
    text = (out / "summary.md").read_text()
    assert "## Scores at the budget" in text and "There is no PBT run among the inputs" in text
