"""evo.report with few runs: below 5 runs per method (or on either side of P(improvement)) no IQM and no
confidence interval anywhere (Markdown, HTML, JSON, stdout, plots), but n, the median and the range; from
5 runs the IQM with its stratified-bootstrap 95 % CI. Fake run directories as in test_report.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report import make_fake_report, md_section_table, write_run

CI = re.compile(r"\[-?\d+\.\d+, -?\d+\.\d+\]")
"""A printed interval: ``[1.00, 2.00]``."""
REASON = "fewer than 5 runs: no confidence interval; median and range shown"


def make_runs(tmp_path: Path, n_pbt: int, n_base: int) -> tuple[list[Path], Path, list[float], list[float]]:
    """``n_pbt`` PBT runs of one method (selected member scores 10, 13, 16, ...; the other member 1.0) and
    one baseline directory of ``n_base`` seeds (scores 5, 7, 9, ...), all evaluated at 256 env steps."""
    selected = [10.0 + 3 * i for i in range(n_pbt)]
    seeds = [5.0 + 2 * k for k in range(n_base)]
    pbt = [write_run(tmp_path / f"pbt{i}", [[s, 1.0]], [256], config={"seed": i}) for i, s in enumerate(selected)]
    base = write_run(tmp_path / "base", [seeds], [256], strategy="baseline")
    return pbt, base, selected, seeds


def fractions_won(x: list[float], y: list[float]) -> float:
    """P(X > Y) counted over all pairs, ties half."""
    return sum((a > b) + 0.5 * (a == b) for a in x for b in y) / (len(x) * len(y))


def iqm(values: list[float]) -> float:
    """Interquartile mean as rliable takes it (scipy's trim_mean, 25 %: int(n / 4) runs cut from each end)."""
    v = sorted(values)
    q = int(0.25 * len(v))
    return float(np.mean(v[q:len(v) - q]))


def walk(v: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a JSON document."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield k, x
            yield from walk(x)
    elif isinstance(v, list):
        for x in v:
            yield from walk(x)


def plot_axes(tmp_path: Path, paths: list[Path]) -> tuple[Any, Any, Any]:
    """The two panels of profile.png for these runs, drawn by evo.report.figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evo.report import compare_task, group_methods, load_run, stored_reference
    from evo.report.figures import plot_run_scores, plot_score_distribution

    runs = [load_run(p) for p in paths]
    tr = compare_task(group_methods(runs), runs[0].task, reps=200, reference=stored_reference(runs))
    fig, (left, right) = plt.subplots(1, 2)
    colors = ["C0", "C1", "C2"]
    plot_run_scores(left, tr, colors)
    plot_score_distribution(right, tr, 200, 0, colors)
    return fig, left, right


def close(fig: Any) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def errorbars(ax: Any) -> list[Any]:
    from matplotlib.container import ErrorbarContainer

    return [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.has_yerr]


def bands(ax: Any) -> int:
    from matplotlib.collections import PolyCollection

    return sum(isinstance(c, PolyCollection) for c in ax.collections)


@pytest.mark.timeout(300)
def test_three_runs_show_no_ci_and_no_iqm(tmp_path: Path) -> None:
    pbt, base, selected, seeds = make_runs(tmp_path, 3, 4)
    out, stdout = make_fake_report(tmp_path, [*pbt, base])
    summary, page, raw = ((out / f).read_text() for f in ("summary.md", "index.html", "report.json"))
    for where, text in (("summary.md", summary), ("index.html", page), ("report.json", raw), ("stdout", stdout)):
        assert "iqm" not in text.lower() and "interquartile" not in text.lower(), where
        assert not CI.search(text), (where, CI.search(text))
    assert "[95% CI]" not in summary and REASON in summary.lower() and REASON in page.lower()
    rows = {r["method"]: r for r in md_section_table(summary, "Did PBT beat the baseline?")}
    assert list(rows["truncation"]) == ["method", "runs (n)", "members per run", "env steps per member",
                                        "median (min to max)", "mean", "P(improvement over baseline (cartpole))",
                                        "P(improvement over baseline (cartpole), best of 2 seeds)"]
    assert rows["truncation"]["runs (n)"] == "3" and rows["baseline (cartpole)"]["runs (n)"] == "4"
    assert rows["truncation"]["median (min to max)"] == "13.00 (10.00 to 16.00)"
    assert rows["baseline (cartpole)"]["median (min to max)"] == "8.00 (5.00 to 11.00)"
    p = fractions_won(selected, seeds)
    assert rows["truncation"]["P(improvement over baseline (cartpole))"] == \
        f"{p:.2f} (point estimate; no CI: n = 3 vs 4; not compute-matched)"
    assert rows["baseline (cartpole), best of 2 seeds"]["median (min to max)"] == "9.00 (7.00 to 11.00)"
    data = json.loads(raw)
    assert all(v is None for k, v in walk(data) if k == "ci")
    methods = {m["label"]: m for m in data["tasks"][0]["methods"]}
    for label, scores in (("truncation", selected), ("baseline (cartpole)", seeds)):
        m = methods[label]
        assert (m["statistic"], m["value"], m["ci"], m["note"]) == ("median", float(np.median(scores)), None, REASON)
        assert (m["min"], m["max"]) == (min(scores), max(scores)) and m["mean"]["statistic"] == "mean"
    imp = next(i for i in data["tasks"][0]["improvement"] if i["method"] == "truncation")
    assert (imp["statistic"], imp["value"], imp["ci"], imp["n"], imp["baseline_n"]) == \
        ("probability_of_improvement", p, None, 3, 4)
    assert imp["note"].startswith("point estimate")
    fig, left, right = plot_axes(tmp_path, [*pbt, base])
    assert errorbars(left) == [] and bands(right) == 0  # no error bars, no CI bands
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert "median (fewer than 5 runs: no CI)" in labels and not any("IQM" in x for x in labels)
    assert "CI" not in right.get_title()
    close(fig)


@pytest.mark.timeout(300)
def test_five_runs_show_iqm_with_ci(tmp_path: Path) -> None:
    """5 PBT runs of 2 members and 10 baseline seeds (so 5 runs of its best of 2 seeds too)."""
    pbt, base, selected, seeds = make_runs(tmp_path, 5, 10)
    out, stdout = make_fake_report(tmp_path, [*pbt, base])
    summary = (out / "summary.md").read_text()
    assert "IQM [95% CI]" in stdout and "IQM [95% CI]" in (out / "index.html").read_text()
    assert REASON not in summary.lower()
    rows = {r["method"]: r for r in md_section_table(summary, "Did PBT beat the baseline?")}
    assert list(rows["truncation"]) == ["method", "runs (n)", "members per run", "env steps per member",
                                        "IQM [95% CI]", "median (min to max)", "mean",
                                        "P(improvement over baseline (cartpole)) [95% CI]",
                                        "P(improvement over baseline (cartpole), best of 2 seeds) [95% CI]"]
    best_of_2 = seeds[1::2]  # seeds score 5, 7, 9, ...: each pair keeps its second
    for label, scores in (("truncation", selected), ("baseline (cartpole)", seeds),
                          ("baseline (cartpole), best of 2 seeds", best_of_2)):
        cell = rows[label]["IQM [95% CI]"]
        assert CI.search(cell) and cell.startswith(f"{iqm(scores):.2f} ["), cell
    assert CI.search(rows["truncation"]["P(improvement over baseline (cartpole)) [95% CI]"])
    data = json.loads((out / "report.json").read_text())
    methods = {m["label"]: m for m in data["tasks"][0]["methods"]}
    m = methods["truncation"]
    assert m["statistic"] == "iqm" and m["note"] is None and m["iqm"]["statistic"] == "iqm"
    assert m["value"] == pytest.approx(iqm(selected)) and m["iqm"]["value"] == m["value"]
    lo, hi = m["ci"]
    assert lo <= m["value"] <= hi and lo < hi and m["median"]["ci"] is not None
    imp = next(i for i in data["tasks"][0]["improvement"] if i["method"] == "truncation")
    assert imp["value"] == fractions_won(selected, seeds) and len(imp["ci"]) == 2 and imp["note"] is None
    fig, left, right = plot_axes(tmp_path, [*pbt, base])
    assert len(errorbars(left)) == 4 and bands(right) == 4  # selected, all members, baseline, best of 2: 5 runs+
    assert "IQM [95% CI]" in [t.get_text() for t in left.get_legend().get_texts()]
    assert "95% CI" in right.get_title()
    close(fig)


@pytest.mark.timeout(300)
def test_mixed_run_counts_keep_the_ci_only_where_there_are_five(tmp_path: Path) -> None:
    """3 PBT runs against a 5-seed baseline: the baseline keeps its IQM and CI, the PBT rows show their
    median and range, and P(improvement) is a point estimate (3 runs on one side)."""
    pbt, base, selected, seeds = make_runs(tmp_path, 3, 5)
    assert len(selected) == 3 and len(seeds) == 5
    out, _ = make_fake_report(tmp_path, [*pbt, base])
    summary = (out / "summary.md").read_text()
    rows = {r["method"]: r for r in md_section_table(summary, "Did PBT beat the baseline?")}
    assert rows["truncation"]["IQM [95% CI]"] == "— (fewer than 5 runs)"
    assert rows["truncation"]["median (min to max)"] == "13.00 (10.00 to 16.00)"
    assert CI.search(rows["baseline (cartpole)"]["IQM [95% CI]"])
    assert rows["truncation"]["P(improvement over baseline (cartpole))"].endswith(
        "(point estimate; no CI: n = 3 vs 5; not compute-matched)")
    assert "`truncation`, `truncation, all members`, `baseline (cartpole), best of 2 seeds`: Fewer than 5 runs" \
        in summary
    methods = {m["label"]: m for m in json.loads((out / "report.json").read_text())["tasks"][0]["methods"]}
    assert "iqm" not in methods["truncation"] and methods["baseline (cartpole)"]["statistic"] == "iqm"
    fig, left, _ = plot_axes(tmp_path, [*pbt, base])
    assert len(errorbars(left)) == 1
    close(fig)
