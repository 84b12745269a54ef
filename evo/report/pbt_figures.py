"""Figures of one PBT run: the final winner's hyperparameter schedule (``hparams_<run>.png``) and who
copied whom (``lineage_<run>.png``)."""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

from evo.errors import EvoError
from evo.report.figures import pyplot
from evo.report.fmt import safe_name
from evo.report.runs import PROG, Run, exploit_edges, hparam_schedule, winner_ancestry


def plot_schedule(run: Run, out: Path) -> None:
    """The winner's hyperparameters by generation, over the population's range."""
    plt = pyplot()
    ancestry = winner_ancestry(run)
    schedule = hparam_schedule(run)
    searched = run.searched
    names = [n for n in run.hp_names if n in searched] or \
        [n for n in run.hp_names if len({s[n] for s in schedule}) > 1] or run.hp_names
    gens = [g for g, _ in ancestry]
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows + 0.8), squeeze=False)
    received = {(int(e["generation"]), int(e["receiver"])) for e in run.lineage}
    explored = [gens[i + 1] for i in range(len(gens) - 1) if (gens[i], ancestry[i + 1][1]) in received]
    for k, name in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        xs = [*gens, gens[-1] + 1]
        ys = [s[name] for s in schedule]
        lo = [min(r[f"hp_{name}"] for r in run.rows_at(g)) for g in gens]
        hi = [max(r[f"hp_{name}"] for r in run.rows_at(g)) for g in gens]
        ax.fill_between(xs, [*lo, lo[-1]], [*hi, hi[-1]], step="post", color="0.85", linewidth=0,
                        label="population min–max")
        ax.step(xs, [*ys, ys[-1]], where="post", color="C3", linewidth=2, label="winner's ancestry")
        for x in explored:
            ax.axvline(x, color="C1", linestyle=":", linewidth=1)
        p = searched.get(name, {})
        if p.get("scale") == "log" and min(min(lo), min(ys)) > 0:
            ax.set_yscale("log")
        scale = p.get("scale", "fixed" if name not in searched else "linear")
        ax.set_title(f"{name} ({scale})", fontsize=10)
        ax.set_xlabel("generation")
        ax.set_xlim(gens[0], gens[-1] + 1)
        step = max(1, len(gens) // 8)
        ax.set_xticks([g + 0.5 for g in gens[::step]], [str(g) for g in gens[::step]])
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
    for k in range(len(names), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    spg = run.config.get("steps_per_generation")
    fig.suptitle(f"{run.label}: hyperparameters of the final winner (member {ancestry[-1][1]}) and its ancestors\n"
                 f"per generation of {spg} env steps per member; dotted: the ancestor explored new values "
                 f"after copying a better member ({len(explored)} time(s))", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_lineage(run: Run, out: Path) -> None:
    """Generations on x, members on y; who copied whom; the final winner's ancestry in red."""
    plt = pyplot()
    from matplotlib.lines import Line2D

    ancestry = winner_ancestry(run)
    gens = run.generation_ids
    n = run.n_members
    edges = exploit_edges(run)
    received = {(g, r) for g, _, r in edges}
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.6 * len(gens) + 4)), min(14.0, max(4.0, 0.45 * n + 2.5))))
    for g in gens[:-1]:
        for m in range(n):
            if (g, m) not in received:
                ax.plot([g, g + 1], [m, m], color="0.6", linewidth=1, zorder=1)
    for g, d, r in edges:
        if g + 1 > gens[-1]:
            continue  # the last generation's exploit trains no further generation
        ax.annotate("", xy=(g + 1, r), xytext=(g, d), zorder=2,
                    arrowprops={"arrowstyle": "->", "color": "C1", "lw": 1.2, "shrinkA": 4, "shrinkB": 4})
    ax.plot([g for g, _ in ancestry], [m for _, m in ancestry], color="C3", linewidth=3, alpha=0.8, zorder=3)
    xs, ys, cs = [], [], []
    for row in run.members:
        xs.append(row["generation"])
        ys.append(row["member"])
        cs.append(row["score"] if row["score"] is not None and math.isfinite(row["score"]) else float("nan"))
    sc = ax.scatter(xs, ys, c=cs, cmap="viridis", s=40, zorder=4, edgecolors="k", linewidths=0.4)
    fig.colorbar(sc, ax=ax, label="score at that generation", pad=0.02, fraction=0.04)
    ax.scatter([ancestry[-1][0]], [ancestry[-1][1]], marker="*", s=260, color="C3", zorder=5,
               edgecolors="k", linewidths=0.6)
    ax.set_xlabel(f"generation ({run.config.get('steps_per_generation')} env steps per member each)")
    ax.set_ylabel("member (MPI rank)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
    if n <= 16:
        ax.set_yticks(range(n))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=16, integer=True))
    ax.set_ylim(-0.6, n - 0.4)
    ax.invert_yaxis()
    hidden = sum(1 for g, _, _ in edges if g >= gens[-1])
    note = (f"\n({hidden} exploit(s) after the last evaluation not drawn: no generation trained after them)"
            if hidden else "")
    ax.set_title(f"{run.label}: lineage, {run.strategy}, {len(edges)} exploits{note}", fontsize=10)
    handles = [Line2D([], [], color="0.6", label="member keeps its weights"),
               Line2D([], [], color="C1", marker=">", label="exploit: donor → receiver (copies weights)"),
               Line2D([], [], color="C3", linewidth=3, label="final winner's ancestry"),
               Line2D([], [], color="C3", marker="*", linestyle="", markersize=12, label="final winner")]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_pbt_runs(runs: Sequence[Run], out_dir: Path, plots: dict[str, list[str]]) -> None:
    """Both figures for every PBT run with a winner, their files added to ``plots`` (title -> files)."""
    for run in runs:
        if run.kind != "pbt":
            continue
        try:
            winner_ancestry(run)
        except EvoError as exc:
            print(f"{PROG}: warning: {exc}; no schedule or lineage plot", file=sys.stderr)
            continue
        tag = safe_name(run.label)
        plot_schedule(run, out_dir / f"hparams_{tag}.png")
        plot_lineage(run, out_dir / f"lineage_{tag}.png")
        plots.setdefault("winner's hyperparameter schedule", []).append(f"hparams_{tag}.png")
        plots.setdefault("lineage", []).append(f"lineage_{tag}.png")
