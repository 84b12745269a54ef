"""The per-run part of the summary: one table row per run at the budget, and each run's facts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evo.errors import EvoError
from evo.report.blocks import Block, Bullets, Heading, Table
from evo.report.fmt import fmt_rate, fmt_score, fmt_seconds, short
from evo.report.runs import Run, cumulative_wall, hparam_schedule, winner_ancestry

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


def per_run_blocks(runs: Sequence[Run], stats: Sequence[dict[str, Any]]) -> list[Block]:
    notes = [
        "*final best / mean / min–max*: over the run's members (PBT) or seeds (baseline, replay) at its last "
        "evaluation at or below the budget; a score is the mean return of the evaluation episodes. The best of N "
        "noisy evaluations is biased upwards: compare PBT's *final best* with a baseline's *final best* (its best "
        "seed) as well as with its mean.",
        "*best so far*: the highest member score at any evaluation up to the budget, with its env steps per member.",
        "*held-out*: score on levels outside the training levels (ProcGen with --eval-test-levels); — if not "
        "evaluated.",
        "*wall time*: seconds from the start of the run's generation loop to the end of that evaluation's "
        "generation (continued across resumes); *env steps/s*: env steps of all members together divided by that "
        "wall time (training, evaluation and exchange included).",
    ]
    return [Heading(2, "Per run"), Table(TABLE_COLUMNS, [table_row(s) for s in stats], right=3), Bullets(notes),
            Heading(2, "Runs"), *[b for run, s in zip(runs, stats, strict=True) for b in run_blocks(run, s)]]


def run_blocks(run: Run, s: Mapping[str, Any]) -> list[Block]:
    cfg = run.config
    items = [f"`{run.path}`: {run.description}, {run.members_text}, {cfg.get('env_id')}, "
             f"{len(run.generation_ids)} generation(s) of {cfg.get('steps_per_generation')} env steps per member "
             f"(n_envs {cfg.get('n_envs')}, n_steps {cfg.get('n_steps')}), seed {cfg.get('seed')}"]
    last = run.generations[-1]
    wall = cumulative_wall(run)[last["generation"]]
    items.append(f"at its end ({last['env_steps']} env steps per member): best {fmt_score(last['best_score'])}, "
                 f"mean {fmt_score(last['mean_score'])}, wall {fmt_seconds(wall)} s")
    if run.kind == "pbt":
        try:
            ancestry = winner_ancestry(run)
            schedule = hparam_schedule(run)
        except EvoError as exc:
            items.append(f"winner: {exc}")
        else:
            path = " → ".join(str(m) for _, m in ancestry)
            items.append(f"exploits: {len(run.lineage)}; selection on the {run.select_on} score; final winner: "
                         f"member {ancestry[-1][1]}, ancestry by generation: {path}")
            items.append("the winner's last hyperparameters: "
                         + ", ".join(f"{k}={short(v)}" for k, v in schedule[-1].items()))
    if run.kind == "replay" and run.replay is not None:
        items.append(f"replays the schedule of `{run.replay.get('source_run')}` (winner member "
                     f"{run.replay.get('winner')})")
    if s.get("failed"):
        items.append(f"{s['failed']} member(s) failed (non-finite score) at the budget evaluation")
    return [Heading(3, run.label), Bullets(items)]
