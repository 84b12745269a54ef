"""What both schedules record: members.csv / generations.csv rows, TensorBoard, printed lines.

Rows are built here from an :class:`~evo.loop.context.Outcome`; rank 0 writes them (sync after
gathering a generation, async as the coordinator receives them), so both modes write the same
columns, tags and lines.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from evo.core.selection import best_member
from evo.loop.context import Outcome, Population, Run
from evo.records import JsonlWriter, TableWriter, TensorBoard

MEMBER_COLUMNS_HEAD = ["generation", "member", "score", "test_score", "eval_set", "failed", "failure", "env_steps",
                       "total_env_steps", "copied_from", "episodes", "mean_episodic_return"]
MEMBER_COLUMNS_TAIL = ["time_train_s", "time_rollout_s", "time_learn_s", "time_eval_s", "time_select_s",
                       "time_exchange_s", "time_generation_s", "env_steps_per_s"]
GENERATION_COLUMNS = ["generation", "env_steps", "total_env_steps", "best_score", "mean_score", "worst_score",
                      "best_member", "best_member_score", "best_member_test_score", "best_test_score",
                      "mean_test_score", "worst_test_score", "n_exploits",
                      "n_failed", "wall_s", "exchange_ms_max", "generation_s_max"]
PBT_ONLY_TAGS = ("pbt/copied_from",)


def nan_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _stats(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None, None
    return max(finite), float(np.mean(finite)), min(finite)


def member_row(r: Run, o: Outcome, donor: int, timing: Mapping[str, float]) -> dict[str, Any]:
    m, stats = o.slot.member, o.stats
    returns = [ret for _, ret, _ in stats.episodes]
    return {
        "generation": o.generation, "member": m.index, "score": o.score, "test_score": o.test_score,
        "eval_set": o.eval_set, "failed": int(not math.isfinite(o.score)), "failure": o.failure or None,
        "env_steps": m.num_timesteps, "copied_from": donor,
        "episodes": len(returns), "mean_episodic_return": float(np.mean(returns)) if returns else None,
        **{f"hp_{k}": v for k, v in o.hp_used.items()},
        "time_train_s": stats.seconds, "time_rollout_s": stats.rollout_seconds, "time_learn_s": stats.learn_seconds,
        "time_eval_s": o.eval_s, "time_select_s": timing["select"], "time_exchange_s": timing["exchange"],
        "time_generation_s": timing["generation"],
        "env_steps_per_s": r.cfg.steps_per_generation / stats.seconds if stats.seconds > 0 else None,
    }


def population_of(rows: Sequence[Mapping[str, Any]], select_on: str) -> Population:
    """The population view of one generation's rows (ordered by member)."""
    scores = [math.nan if x["score"] is None else float(x["score"]) for x in rows]
    tests = [None if x.get("test_score") is None else float(x["test_score"]) for x in rows]
    sel = [(math.nan if t is None else t) for t in tests] if select_on == "test" else list(scores)
    hps = [{k[3:]: v for k, v in x.items() if k.startswith("hp_")} for x in rows]
    return Population(scores, tests, sel, hps)


def generation_row(r: Run, gen: int, pop: Population, rows: Sequence[Mapping[str, Any]], n_exploits: int,
                   wall_s: float | None = None) -> dict[str, Any]:
    best, mean, worst = _stats(pop.scores)
    tbest, tmean, tworst = _stats([t for t in pop.tests if t is not None])
    chosen = best_member(pop.selection) if not all(math.isnan(s) for s in pop.selection) else -1
    return {
        "generation": gen, "env_steps": int(rows[0]["env_steps"]),
        "total_env_steps": sum(int(x["env_steps"]) for x in rows),
        "best_score": best, "mean_score": mean, "worst_score": worst, "best_member": chosen,
        "best_member_score": pop.scores[chosen] if chosen >= 0 else None,
        "best_member_test_score": pop.tests[chosen] if chosen >= 0 else None,
        "best_test_score": tbest, "mean_test_score": tmean, "worst_test_score": tworst,
        "n_exploits": n_exploits, "n_failed": sum(1 for s in pop.scores if not math.isfinite(s)),
        "wall_s": time.perf_counter() - r.t_run0 if wall_s is None else wall_s,
        "exchange_ms_max": 1000 * max(float(x["time_exchange_s"] or 0.0) for x in rows),
        "generation_s_max": max(float(x["time_generation_s"] or 0.0) for x in rows),
    }


def write_generation(r: Run, gen_row: Mapping[str, Any]) -> None:
    """(rank 0) One generation's row, population TensorBoard and printed line."""
    r.writers["generations"].write([gen_row])
    values = {
        "population/best_score": gen_row["best_score"], "population/mean_score": gen_row["mean_score"],
        "population/worst_score": gen_row["worst_score"], "population/best_test_score": gen_row["best_test_score"],
        "population/mean_test_score": gen_row["mean_test_score"],
        "population/worst_test_score": gen_row["worst_test_score"],
        "population/total_env_steps": gen_row["total_env_steps"],
    }
    if not r.baseline:
        values.update({"population/n_exploits": gen_row["n_exploits"],
                       "time/exchange_ms_max": gen_row["exchange_ms_max"]})
    r.pop_tb.scalars(values, step=int(gen_row["env_steps"]))
    if r.cfg.verbose:
        print_generation(r, gen_row)


def log_member_tb(r: Run, tb: TensorBoard, o: Outcome, row: Mapping[str, Any]) -> None:
    """A member's TensorBoard scalars: its episodes against env steps, then this generation's
    score, losses, hyperparameters used and phase times at its env-step count."""
    for step, ret, length in o.stats.episodes:
        tb.scalars({"charts/episodic_return": ret, "charts/episodic_length": length}, step=step)
    values: dict[str, Any] = {
        "pbt/score": row["score"] if math.isfinite(row["score"]) else None,
        "pbt/test_score": row["test_score"],
        "charts/env_steps_per_s": row["env_steps_per_s"],
        **{f"losses/{k}": v for k, v in o.stats.losses.items()},
        **{f"hparams/{k}": v for k, v in o.hp_used.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        **{f"time/{k[5:]}": row[k] for k in MEMBER_COLUMNS_TAIL if k.startswith("time_")},
    }
    if not r.baseline:
        values["pbt/copied_from"] = row["copied_from"]
    else:
        for key in ("time/select_s", "time/exchange_s"):
            values.pop(key, None)
    tb.scalars(values, step=o.slot.member.num_timesteps)


def open_writers(r: Run) -> None:
    """(rank 0) The run's record files, appended to (a resume continues them)."""
    run_dir = r.cfg.run_dir
    hp_cols = [f"hp_{k}" for k in r.slots[0].member.hparams]
    r.writers = {
        "members": TableWriter(run_dir / "members.csv", MEMBER_COLUMNS_HEAD + hp_cols + MEMBER_COLUMNS_TAIL),
        "generations": TableWriter(run_dir / "generations.csv", GENERATION_COLUMNS),
        "lineage": JsonlWriter(run_dir / "lineage.jsonl"), "checkpoints": JsonlWriter(run_dir / "checkpoints.jsonl"),
    }


def print_start(r: Run, threads: int, resumed_at: str) -> None:
    cfg = r.cfg
    if not cfg.verbose:
        return
    world = r.comm.Get_size()
    if r.baseline:
        what = "baseline"
    else:
        mode = " --async" if cfg.async_mode else ""
        what = f"PBT/{cfg.strategy} (rule {cfg.rule}, transport {cfg.transport}{mode})"
    per = f" ({r.n / world:.3g} per rank on {world} ranks)" if r.n > world else ""
    print(f"evo {what}: {r.n} member(s){per} on {cfg.env_id}, {cfg.generations} generations x "
          f"{cfg.steps_per_generation} steps, {threads} torch thread(s)/rank -> {cfg.run_dir}{resumed_at}", flush=True)
    if cfg.tb_writer:
        print(f"evo: TensorBoard: {tensorboard_command(cfg.log_dir)}", flush=True)


def tensorboard_command(log_dir: str) -> str:
    """The command that shows every run under ``log_dir`` (PBT and baselines side by side),
    spelled with this Python's own tensorboard so it works without activating the venv."""
    from pathlib import Path

    exe = Path(sys.executable).parent / "tensorboard"
    return f"{exe if exe.exists() else 'tensorboard'} --logdir {log_dir}"


def print_generation(r: Run, g: Mapping[str, Any]) -> None:
    """One line per generation: scores, env steps, throughput and an ETA for the whole run."""
    def f(v: Any) -> str:
        return "nan" if v is None else f"{v:.2f}"

    cfg, done = r.cfg, g["generation"] + 1
    recent = r.gen_seconds[-5:]
    per_gen = sum(recent) / len(recent) if recent else 0.0
    rate = r.n * cfg.steps_per_generation / per_gen if per_gen > 0 else 0.0
    eta = per_gen * (cfg.generations - done)
    pbt = "" if r.baseline else f" | exchange {g['exchange_ms_max']:.1f} ms | exploits {g['n_exploits']}"
    print(f"gen {done:>3}/{cfg.generations} | best {f(g['best_score'])} mean {f(g['mean_score'])} "
          f"worst {f(g['worst_score'])} | steps/member {g['env_steps']} | {rate:,.0f} env-steps/s | "
          f"wall {g['wall_s']:.1f}s ETA {fmt_eta(eta)}{pbt}", flush=True)


def fmt_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def close(r: Run) -> None:
    for w in r.writers.values():
        w.close()
    for s in r.slots:
        s.tb.close()
        s.member.close()
    r.pop_tb.close()
    if r.lock is not None:
        r.lock.release()
