"""Figures of the comparison: score against env steps per member (``scores.png``), and each method's
run scores at the budget with its score distribution (``profile.png``). matplotlib is imported only
when a figure is drawn."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from evo.report.compare import Reference, TaskReport
from evo.report.methods import Method
from evo.report.runs import Run, finite
from evo.report.samples import Budget
from evo.report.stats import MIN_RUNS_FOR_CI, score_profiles


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _run_curve(run: Run, column: str) -> tuple[list[int], list[float], list[float], list[float], list[float]]:
    """Per evaluation: env steps, best, mean, min and max of the members' ``column``."""
    xs, best, mean, lo, hi = [], [], [], [], []
    for g in run.generation_ids:
        vals = finite([r.get(column) for r in run.rows_at(g)])
        if vals:
            xs.append(int(run.rows_at(g)[0]["env_steps"]))
            best.append(max(vals))
            mean.append(sum(vals) / len(vals))
            lo.append(min(vals))
            hi.append(max(vals))
    return xs, best, mean, lo, hi


def plot_method(ax: Any, method: Method, runs: Sequence[Run], column: str, color: str) -> None:
    """One method's runs in one colour, one legend entry per line style. A PBT run is drawn as its
    best member (solid) and its population mean (dashed), a baseline or replay run as its mean over
    seeds with a min–max band; a method of several runs draws every run, thinner."""
    several = len(runs) > 1
    of_runs = f", {len(runs)} runs" if several else ""
    for k, run in enumerate(runs):
        xs, best, mean, lo, hi = _run_curve(run, column)
        if not xs:
            continue
        first = k == 0
        width = 1.0 if several else 1.5
        if run.kind == "pbt":
            n = run.n_members
            ax.plot(xs, best, "-o", color=color, ms=3, lw=width,
                    label=f"{method.label}: best of {n}{of_runs}" if first else None)
            ax.plot(xs, mean, "--", color=color, lw=width, label=f"{method.label}: mean of {n}" if first else None)
            continue
        n = run.n_members
        band = f" (band: min–max of {n} seeds)" if n > 1 else " (1 seed)"
        ax.plot(xs, mean, "-s", color=color, ms=3, lw=width, label=f"{method.label}: mean{band}" if first else None)
        if n > 1:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2 if not several else 0.1, linewidth=0)


def _budget_line(ax: Any, budget: Budget) -> None:
    what = "equal budget" if budget.equal else "comparison budget (runs differ)"
    ax.axvline(budget.steps, color="0.4", linestyle=":", linewidth=1, label=f"{what}: {budget.steps} steps")


def _reference_line(ax: Any, ref: Reference | None, horizontal: bool = True) -> None:
    if ref is None:
        return
    line = ax.axhline if horizontal else ax.axvline
    line(ref.score, color="k", linestyle="-.", linewidth=1, label=f"random policy: {ref.score:.2f}")


def plot_scores(runs: Sequence[Run], tasks: Sequence[TaskReport], out: Path) -> None:
    """Score vs env steps per member for every run, one row per task (held-out levels in a second
    column), with the comparison budget and the random-policy reference."""
    plt = pyplot()
    has_test = any(r.has_test for r in runs)
    panels = [("score", "training levels" if has_test else "evaluation")]
    if has_test:
        panels.append(("test_score", "held-out levels"))
    fig, axes = plt.subplots(len(tasks), len(panels), figsize=(10.5 * len(panels), 5 * len(tasks)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, tr in zip(axes, tasks, strict=True):
        for ax, (column, where) in zip(row, panels, strict=True):
            methods = list({id(e.method): e.method for e in tr.entries}.values())
            for i, method in enumerate(methods):
                plot_method(ax, method, method.runs_on(tr.task), column, colors[i % len(colors)])
            _budget_line(ax, tr.budget)
            if column == "score":
                _reference_line(ax, tr.reference)
            ax.set_xlabel("env steps per member")
            ax.set_ylabel("score (mean evaluation return)")
            ax.set_title(f"{tr.task}: score on {where} vs env steps per member")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_run_scores(ax: Any, tr: TaskReport, colors: Sequence[str]) -> None:
    """Each row's run scores (dots) with its IQM and 95 % CI, or, below MIN_RUNS_FOR_CI runs, its median
    without an error bar."""
    shown: set[str] = set()
    for i, e in enumerate(tr.entries):
        s = e.scores[:, 0]
        jitter = np.linspace(-0.15, 0.15, len(s)) if len(s) > 1 else np.zeros(len(s))
        ax.scatter(i + jitter, s, color=colors[i % len(colors)], alpha=0.6, s=22, zorder=3)
        st = tr.stats.get(e.label)
        if st is None:
            continue
        if st.iqm is not None:
            iqm, label = st.iqm, "IQM [95% CI]"
            err = None if not iqm.has_ci else [[iqm.value - float(iqm.low or 0.0)],
                                               [float(iqm.high or 0.0) - iqm.value]]
            ax.errorbar([i + 0.3], [iqm.value], yerr=err, fmt="D", color="k", ms=5, capsize=4, zorder=4,
                        label=None if label in shown else label)
        else:
            label = f"median (fewer than {MIN_RUNS_FOR_CI} runs: no CI)"
            ax.scatter([i + 0.3], [st.median.value], marker="_", s=160, linewidths=2, color="k", zorder=4,
                       label=None if label in shown else label)
        shown.add(label)
    _reference_line(ax, tr.reference)
    names = [textwrap.fill(e.label, 11, break_long_words=False) for e in tr.entries]
    ax.set_xticks(range(len(tr.entries)), [f"{name}\n(n={e.n})" for name, e in zip(names, tr.entries, strict=True)],
                  fontsize=8)
    ax.set_ylabel(f"score at {tr.budget.steps} env steps per member")
    ax.set_title(f"{tr.task}: one dot per run")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="best")


def plot_score_distribution(ax: Any, tr: TaskReport, reps: int, seed: int, colors: Sequence[str]) -> None:
    """rliable's score distributions: the fraction of runs above each score, with CI bands for rows of
    MIN_RUNS_FOR_CI runs or more."""
    vals = [float(v) for e in tr.entries for v in e.scores[:, 0]]
    if tr.reference is not None:
        vals.append(tr.reference.score)
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    taus = np.linspace(lo - pad, hi + pad, 101)
    profiles = score_profiles({e.label: e.scores for e in tr.entries}, taus, reps, seed)
    bands = 0
    for i, e in enumerate(tr.entries):
        if e.label not in profiles:
            continue
        prof, ci = profiles[e.label]
        ax.plot(taus, prof, color=colors[i % len(colors)], label=f"{e.label} (n={e.n})")
        if e.n >= MIN_RUNS_FOR_CI:
            ax.fill_between(taus, ci[0], ci[1], color=colors[i % len(colors)], alpha=0.15, linewidth=0)
            bands += 1
    _reference_line(ax, tr.reference, horizontal=False)
    ax.set_xlabel(f"score τ at {tr.budget.steps} env steps per member")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    where = "" if bands == len(profiles) else f" for n ≥ {MIN_RUNS_FOR_CI}"
    ax.set_title(f"{tr.task}: score distribution" + (f" (bands: 95% CI{where})" if bands else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_profile(tasks: Sequence[TaskReport], out: Path, reps: int = 2000, seed: int = 0) -> None:
    """Per task: the run scores of every method with its IQM and CI (median below MIN_RUNS_FOR_CI runs),
    and their score distributions."""
    plt = pyplot()
    fig, axes = plt.subplots(len(tasks), 2, figsize=(15, 5.5 * len(tasks)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (left, right), tr in zip(axes, tasks, strict=True):
        plot_run_scores(left, tr, colors)
        plot_score_distribution(right, tr, reps, seed, colors)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
