"""Plots and a Markdown summary from evo's own records (no TensorBoard needed).

``python -m evo.report RUN_DIR [RUN_DIR ...] --out DIR`` reads each run directory (see
:mod:`evo.records` for the layout) and writes into ``DIR``:

``scores.png``            score vs env steps per member: per PBT run its best and mean member,
                          per baseline (or replay) run the mean over seeds with a min-max band
``hparams_<run>.png``     per PBT run: the hyperparameters the final winner's ancestors trained
                          with, generation by generation (the schedule :mod:`evo.replay` follows)
``lineage_<run>.png``     per PBT run: who copied whom, with the final winner's ancestry
``summary.md``            a table comparing all runs at the same env-step budget per member
``report.json``           the numbers of that table at full precision

The pure parts (:func:`load_run`, :func:`winner_ancestry`, :func:`hparam_schedule`,
:func:`budget_table`) need neither matplotlib nor MPI, so replay and tests use them directly.

Ancestry: the final winner is generation ``G-1``'s ``best_member`` (the member selection ranks
first). Walking back, if the ancestor ``a[g+1]`` received weights in generation ``g``'s exploit
(a ``lineage.jsonl`` entry with that generation and receiver), then ``a[g]`` is its donor,
otherwise ``a[g] = a[g+1]``. Its schedule is the ``hp_*`` columns of ``members.csv`` at
``(g, a[g])``: the hyperparameters that trained the winner's weights in generation ``g``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo.errors import ConfigError, EvoError
from evo.records import read_csv, read_jsonl, write_json

PROG = "python -m evo.report"

INT_COLUMNS = {"generation", "member", "failed", "env_steps", "total_env_steps", "copied_from", "episodes",
               "best_member", "n_exploits", "n_failed"}


# -- reading records ------------------------------------------------------------------------------
def _parse_value(column: str, text: str) -> Any:
    """A CSV cell as evo wrote it: '' is None, ints stay ints, floats round-trip exactly."""
    if text == "":
        return None
    if column in INT_COLUMNS:
        return int(text)
    if column.startswith("hp_"):
        try:
            return int(text)
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse_rows(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{k: _parse_value(k, v if v is not None else "") for k, v in r.items() if k is not None} for r in rows]


@dataclass
class Run:
    """One run directory's records, parsed."""

    path: Path
    meta: dict[str, Any]
    """The whole ``config.json`` (``meta["config"]`` is the resolved configuration)."""
    members: list[dict[str, Any]]
    """``members.csv`` rows, sorted by (generation, member)."""
    generations: list[dict[str, Any]]
    """``generations.csv`` rows, sorted by generation."""
    lineage: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None
    """``replay_schedule.json`` if this run is a replay."""
    label: str = ""

    def __post_init__(self) -> None:
        self._by_gen: dict[int, list[dict[str, Any]]] = {}
        self._by_key: dict[tuple[int, int], dict[str, Any]] = {}
        for r in self.members:
            self._by_gen.setdefault(r["generation"], []).append(r)
            self._by_key[(r["generation"], r["member"])] = r
        self._gen_rows = {r["generation"]: r for r in self.generations}

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("config", {}))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def strategy(self) -> str:
        return str(self.config.get("strategy", "?"))

    @property
    def kind(self) -> str:
        """``pbt``, ``baseline`` or ``replay``."""
        if self.strategy != "baseline":
            return "pbt"
        return "replay" if self.replay is not None else "baseline"

    @property
    def description(self) -> str:
        if self.kind == "pbt":
            return f"PBT ({self.strategy})"
        if self.kind == "replay":
            return "replay of a PBT schedule"
        return f"baseline ({self.config.get('param_name', '?')} set)"

    @property
    def n_members(self) -> int:
        return len({r["member"] for r in self.members})

    @property
    def members_text(self) -> str:
        n = self.n_members
        if self.kind == "pbt":
            return f"{n} member{'s' if n != 1 else ''}"
        return f"{n} seed{'s' if n != 1 else ''}"

    @property
    def generation_ids(self) -> list[int]:
        return sorted({r["generation"] for r in self.members})

    def rows_at(self, generation: int) -> list[dict[str, Any]]:
        return self._by_gen.get(generation, [])

    def row(self, generation: int, member: int) -> dict[str, Any]:
        try:
            return self._by_key[(generation, member)]
        except KeyError:
            raise ConfigError(f"{self.path}: members.csv has no row for generation {generation}, "
                              f"member {member}") from None

    def generation_row(self, generation: int) -> dict[str, Any] | None:
        return self._gen_rows.get(generation)

    @property
    def hp_names(self) -> list[str]:
        if not self.members:
            return []
        return [k[3:] for k in self.members[0] if k.startswith("hp_")]

    @property
    def searched(self) -> dict[str, dict[str, Any]]:
        """Searched (explorable) hyperparameters of a PBT run: name -> its ``Param`` as recorded."""
        params = (self.meta.get("search_space") or {}).get("params") or {}
        out = {}
        for name, p in params.items():
            fixed = (len(p.get("choices") or ()) == 1) if p.get("kind") == "categorical" \
                else p.get("low") == p.get("high")
            if not fixed:
                out[name] = p
        return out

    @property
    def has_test(self) -> bool:
        return any(r.get("test_score") is not None for r in self.members)

    @property
    def select_on(self) -> str:
        return str(self.config.get("select_on", "train"))


def _not_a_run(path: Path, why: str) -> ConfigError:
    hint = ""
    if path.is_dir():
        inner = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
        if inner:
            shown = ", ".join(inner[:5]) + (", ..." if len(inner) > 5 else "")
            hint = f"; it contains run directories: {shown}"
    return ConfigError(f"{path} is not an evo run directory ({why}){hint}")


def load_run(path: str | Path) -> Run:
    """Read a run directory. Raises :class:`~evo.errors.ConfigError` if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise _not_a_run(p, "no such directory")
    config_path = p / "config.json"
    if not config_path.is_file():
        raise _not_a_run(p, "no config.json")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise _not_a_run(p, f"config.json is unreadable: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "strategy" not in meta["config"]:
        raise _not_a_run(p, "config.json has no config.strategy")
    if not (p / "members.csv").is_file() or not (p / "generations.csv").is_file():
        raise _not_a_run(p, "no members.csv / generations.csv")
    try:
        members = _parse_rows(read_csv(p / "members.csv"))
        generations = _parse_rows(read_csv(p / "generations.csv"))
        lineage = read_jsonl(p / "lineage.jsonl") if (p / "lineage.jsonl").is_file() else []
        summary = json.loads((p / "summary.json").read_text()) if (p / "summary.json").is_file() else None
        replay = json.loads((p / "replay_schedule.json").read_text()) \
            if (p / "replay_schedule.json").is_file() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{p}: cannot read its records: {exc}") from None
    if not members or not generations:
        raise ConfigError(f"{p}: the run has no completed generation yet")
    # Keep the last row of any (generation, member) pair and only generations present in both files.
    dedup = {(r["generation"], r["member"]): r for r in members}
    gens = {r["generation"]: r for r in generations}
    common = set(gens) & {g for g, _ in dedup}
    members = [dedup[k] for k in sorted(dedup) if k[0] in common]
    generations = [gens[g] for g in sorted(common)]
    return Run(path=p, meta=meta, members=members, generations=generations, lineage=lineage,
               summary=summary, replay=replay, label=p.name)


# -- ancestry and schedule (pure) -----------------------------------------------------------
def winner_ancestry(run: Run) -> list[tuple[int, int]]:
    """``[(generation, member), ...]`` for every generation, ending at the final winner.

    The winner is the last generation's ``best_member`` in ``generations.csv`` (ranked on the
    score PBT selects on); earlier ancestors follow ``lineage.jsonl`` back through exploits.
    """
    gens = run.generation_ids
    last = gens[-1]
    grow = run.generation_row(last)
    winner = int(grow["best_member"]) if grow is not None and grow.get("best_member") is not None else -1
    if winner < 0:
        raise ConfigError(f"{run.path}: no winner in generation {last} (every member failed)")
    donor_of = {(int(e["generation"]), int(e["receiver"])): int(e["donor"]) for e in run.lineage}
    ancestry = [(last, winner)]
    member = winner
    for g in reversed(gens[:-1]):
        member = donor_of.get((g, member), member)
        ancestry.append((g, member))
    ancestry.reverse()
    return ancestry


def hparam_schedule(run: Run) -> list[dict[str, Any]]:
    """The hyperparameters each of the final winner's ancestors trained with, one dict per
    generation (from ``members.csv``'s ``hp_*`` columns, values exactly as recorded)."""
    names = run.hp_names
    return [{n: run.row(g, m)[f"hp_{n}"] for n in names} for g, m in winner_ancestry(run)]


def exploit_edges(run: Run) -> list[tuple[int, int, int]]:
    """``(generation, donor, receiver)`` of every exploit."""
    return sorted((int(e["generation"]), int(e["donor"]), int(e["receiver"])) for e in run.lineage)


# -- equal-budget comparison (pure) ---------------------------------------------------------
def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def cumulative_wall(run: Run) -> dict[int, float]:
    """Wall seconds since the start of the run, per generation.

    ``generations.csv``'s ``wall_s`` restarts from zero when a run is resumed; a drop is taken
    as a restart and the clock is continued from the last value before it.
    """
    out: dict[int, float] = {}
    offset = 0.0
    prev: float | None = None
    for r in run.generations:
        w = float(r["wall_s"])
        if prev is not None and w < prev:
            offset += prev
        out[r["generation"]] = offset + w
        prev = w
    return out


def run_stats(run: Run, budget: int) -> dict[str, Any]:
    """One run's numbers at the last generation evaluated within ``budget`` env steps per member."""
    within = [r for r in run.generations if r["env_steps"] <= budget]
    base = {"run": run.label, "path": str(run.path), "kind": run.kind, "description": run.description,
            "members": run.n_members, "members_text": run.members_text}
    if not within:
        return {**base, "generation": None, "env_steps": None}
    g = within[-1]["generation"]
    rows = run.rows_at(g)
    scores = _finite([r["score"] for r in rows])
    tests = _finite([r.get("test_score") for r in rows])
    per_gen_best = {}
    for r in within:
        s = _finite([m["score"] for m in run.rows_at(r["generation"])])
        if s:
            per_gen_best[r["generation"]] = max(s)
    best_gen = max(per_gen_best, key=lambda k: (per_gen_best[k], -k)) if per_gen_best else None
    best_row = run.generation_row(best_gen) if best_gen is not None else None
    wall = cumulative_wall(run)[g]
    total = int(within[-1]["total_env_steps"])
    return {
        **base,
        "generation": g,
        "env_steps": int(within[-1]["env_steps"]),
        "total_env_steps": total,
        "final_best": max(scores) if scores else None,
        "final_mean": sum(scores) / len(scores) if scores else None,
        "final_min": min(scores) if scores else None,
        "final_max": max(scores) if scores else None,
        "best_ever": per_gen_best[best_gen] if best_gen is not None else None,
        "best_ever_generation": best_gen,
        "best_ever_env_steps": best_row["env_steps"] if best_row is not None else None,
        "test_best": max(tests) if tests else None,
        "test_mean": sum(tests) / len(tests) if tests else None,
        "wall_s": wall,
        "env_steps_per_s": total / wall if wall > 0 else None,
        "failed": sum(1 for r in rows if r.get("failed")),
    }


def equal_budget(runs: Sequence[Run]) -> int:
    """The largest env-step count per member that every run reached (and evaluated at)."""
    return min(max(r["env_steps"] for r in run.generations) for run in runs)


def budget_table(runs: Sequence[Run]) -> tuple[int, list[dict[str, Any]]]:
    """``(budget, one stats dict per run)`` with every run cut at the same env steps per member."""
    budget = equal_budget(runs)
    return budget, [run_stats(run, budget) for run in runs]


# -- formatting ----------------------------------------------------------------------------------
def fmt_score(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def fmt_seconds(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def fmt_rate(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


TABLE_COLUMNS = ["run", "kind", "members", "env steps / member", "final best", "final mean", "final min–max",
                 "best so far (env steps)", "held-out best", "held-out mean", "wall time (s)", "env steps/s"]


def table_row(s: dict[str, Any]) -> list[str]:
    """The Markdown cells of one :func:`run_stats` dict, in :data:`TABLE_COLUMNS` order."""
    if s.get("generation") is None:
        return [s["run"], s["description"], s["members_text"], "not evaluated within the budget",
                *(["—"] * (len(TABLE_COLUMNS) - 4))]
    best_so_far = fmt_score(s["best_ever"])
    if s["best_ever_env_steps"] is not None:
        best_so_far += f" ({s['best_ever_env_steps']})"
    return [
        s["run"], s["description"], s["members_text"], str(s["env_steps"]),
        fmt_score(s["final_best"]), fmt_score(s["final_mean"]),
        f"{fmt_score(s['final_min'])}–{fmt_score(s['final_max'])}",
        best_so_far, fmt_score(s["test_best"]), fmt_score(s["test_mean"]),
        fmt_seconds(s["wall_s"]), fmt_rate(s["env_steps_per_s"]),
    ]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def summary_markdown(runs: Sequence[Run], budget: int, stats: Sequence[dict[str, Any]],
                     plots: dict[str, list[str]]) -> str:
    lines = ["# evo report", ""]
    lines.append(f"Runs compared at an equal budget of **{budget} env steps per member**: the largest env-step "
                 f"count every run reached. Each run's numbers come from its last evaluation at or below it.")
    lines.append("")
    lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(TABLE_COLUMNS) - 3)) + "|")
    for s in stats:
        lines.append("| " + " | ".join(_md_escape(c) for c in table_row(s)) + " |")
    lines += [
        "",
        "- *final best / mean / min–max*: over the run's members (PBT) or seeds (baseline, replay) at that "
        "evaluation; a score is the mean return of the evaluation episodes. The best of N noisy evaluations "
        "is biased upwards: compare PBT's *final best* with a baseline's *final best* (its best seed) as "
        "well as with its mean.",
        "- *best so far*: the highest member score at any evaluation up to the budget, with its env steps "
        "per member.",
        "- *held-out*: score on levels outside the training levels (ProcGen with --eval-test-levels); — if "
        "not evaluated.",
        "- *wall time*: seconds from the start of the run's generation loop to the end of that evaluation's "
        "generation (continued across resumes); *env steps/s*: env steps of all members together divided by that wall "
        "time (training, evaluation and exchange included).",
        "",
        "## Runs",
        "",
    ]
    for run, s in zip(runs, stats, strict=True):
        cfg = run.config
        total_gens = len(run.generation_ids)
        lines.append(f"### {run.label}")
        lines.append("")
        lines.append(f"- `{run.path}`: {run.description}, {run.members_text}, {cfg.get('env_id')}, "
                     f"{total_gens} generation(s) of {cfg.get('steps_per_generation')} env steps per member "
                     f"(n_envs {cfg.get('n_envs')}, n_steps {cfg.get('n_steps')}), seed {cfg.get('seed')}")
        last = run.generations[-1]
        end_wall = cumulative_wall(run)[last["generation"]]
        lines.append(f"- at its end ({last['env_steps']} env steps per member): best {fmt_score(last['best_score'])}"
                     f", mean {fmt_score(last['mean_score'])}, wall {fmt_seconds(end_wall)} s")
        if run.kind == "pbt":
            try:
                ancestry = winner_ancestry(run)
                schedule = hparam_schedule(run)
            except EvoError as exc:
                lines.append(f"- winner: {exc}")
            else:
                path = " → ".join(str(m) for _, m in ancestry)
                lines.append(f"- exploits: {len(run.lineage)}; selection on the {run.select_on} score; "
                             f"final winner: member {ancestry[-1][1]}, ancestry by generation: {path}")
                final = ", ".join(f"{k}={_short(v)}" for k, v in schedule[-1].items())
                lines.append(f"- the winner's last hyperparameters: {final}")
        if run.kind == "replay" and run.replay is not None:
            lines.append(f"- replays the schedule of `{run.replay.get('source_run')}` "
                         f"(winner member {run.replay.get('winner')})")
        if s.get("failed"):
            lines.append(f"- {s['failed']} member(s) failed (non-finite score) at the budget evaluation")
        lines.append("")
    lines += ["## Plots", ""]
    for title, files in plots.items():
        for f in files:
            lines.append(f"![{title}]({f})")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- plots ---------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def plot_scores(runs: Sequence[Run], budget: int, out: Path) -> None:
    """Score vs env steps per member for every run (training levels; held-out in a second panel)."""
    plt = _pyplot()
    panels = [("score", "training levels" if any(r.has_test for r in runs) else "evaluation")]
    if any(r.has_test for r in runs):
        panels.append(("test_score", "held-out levels"))
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (column, where) in zip(axes[0], panels, strict=True):
        for i, run in enumerate(runs):
            color = colors[i % len(colors)]
            xs, best, mean, lo, hi = [], [], [], [], []
            for g in run.generation_ids:
                vals = _finite([r.get(column) for r in run.rows_at(g)])
                if not vals:
                    continue
                xs.append(run.rows_at(g)[0]["env_steps"])
                best.append(max(vals))
                mean.append(sum(vals) / len(vals))
                lo.append(min(vals))
                hi.append(max(vals))
            if not xs:
                continue
            if run.kind == "pbt":
                ax.plot(xs, best, "-o", color=color, ms=3, label=f"{run.label}: PBT best of {run.n_members}")
                ax.plot(xs, mean, "--", color=color, label=f"{run.label}: PBT mean of {run.n_members}")
            else:
                what = "replay" if run.kind == "replay" else "baseline"
                n = run.n_members
                band = f" (band: min–max of {n} seeds)" if n > 1 else " (1 seed)"
                ax.plot(xs, mean, "-s", color=color, ms=3, label=f"{run.label}: {what} mean{band}")
                if n > 1:
                    ax.fill_between(xs, lo, hi, color=color, alpha=0.2, linewidth=0)
        ax.axvline(budget, color="0.4", linestyle=":", linewidth=1, label=f"equal budget ({budget} steps)")
        ax.set_xlabel("env steps per member")
        ax.set_ylabel("score (mean evaluation return)")
        ax.set_title(f"Score on {where} vs env steps per member")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_schedule(run: Run, out: Path) -> None:
    """The winner's hyperparameters by generation, over the population's range."""
    plt = _pyplot()
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
    plt = _pyplot()
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


# -- command line ----------------------------------------------------------------------------------
def _unique_labels(runs: Sequence[Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        run.label = run.name if seen[run.name] == 1 else f"{run.path.parent.name}/{run.name}"


def make_report(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Load ``paths``, write the plots, ``summary.md`` and ``report.json`` to ``out``."""
    runs = [load_run(p) for p in paths]
    _unique_labels(runs)
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out_dir}: {exc.strerror or exc}") from None
    budget, stats = budget_table(runs)
    plots: dict[str, list[str]] = {"score vs env steps": ["scores.png"]}
    plot_scores(runs, budget, out_dir / "scores.png")
    for run in runs:
        if run.kind != "pbt":
            continue
        try:
            winner_ancestry(run)
        except EvoError as exc:
            print(f"{PROG}: warning: {exc}; no schedule or lineage plot", file=sys.stderr)
            continue
        tag = _safe(run.label)
        plot_schedule(run, out_dir / f"hparams_{tag}.png")
        plot_lineage(run, out_dir / f"lineage_{tag}.png")
        plots.setdefault("winner's hyperparameter schedule", []).append(f"hparams_{tag}.png")
        plots.setdefault("lineage", []).append(f"lineage_{tag}.png")
    (out_dir / "summary.md").write_text(summary_markdown(runs, budget, stats, plots))
    data = {"budget_env_steps_per_member": budget, "runs": stats,
            "schedules": {r.label: {"ancestry": winner_ancestry(r), "schedule": hparam_schedule(r)}
                          for r in runs if r.kind == "pbt" and _has_winner(r)}}
    write_json(out_dir / "report.json", data)
    return data


def _has_winner(run: Run) -> bool:
    try:
        winner_ancestry(run)
    except EvoError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Plots and a Markdown summary comparing evo runs (PBT, baseline, replay) "
                               "at an equal env-step budget per member.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (<log-dir>/<exp-name>)")
    parser.add_argument("--out", default="report", help="output directory (created if missing)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        make_report(args.runs, args.out)
    except EvoError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(f"report written to {args.out} (summary.md, scores.png, ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
