"""``exchange`` and ``scaling``: real PBT runs (``python -m evo.pbt --rule R --transport T``) per
rule x transport x world size, each with and without ``--no-exchange`` on the same workload.

A run is summarised from the records the loop writes (``generations.csv``, ``members.csv``). The
last generation ends with its evaluation (no exploit), so exchange statistics come from the
generations before it; generation 0 (warm-up) is skipped whenever more than one is left.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import mpi_module, num, pyplot, ratio, table, write_outputs
from evo.records import read_csv

CARTPOLE = {"env_id": "CartPole-v1", "n_envs": 2, "n_steps": 128, "steps_per_generation": 1024,
            "generations": 5, "eval_episodes": 2, "policy": "auto"}
PROCGEN = {"n_envs": 4, "n_steps": 64, "steps_per_generation": 512, "generations": 3, "eval_episodes": 2,
           "policy": "CnnPolicy"}
"""Default workloads: CartPole, and a small one for ProcGen games (CNN policies)."""

DEFAULT_RULES = ("truncation",)
EXCHANGE_COLUMNS = ["rule", "transport", "ranks", "gens_used", "exchange_gens", "exchange_ms_median",
                    "exchange_ms_max", "exchange_share_pct", "train_steps_per_s", "wall_steps_per_s",
                    "train_steps_per_s_noex", "wall_steps_per_s_noex", "overhead_pct", "overhead_noeval_pct",
                    "n_exploits", "n_exploits_noex", "seconds"]
NOTES = ("gens_used: generations of the throughput statistics (0 is skipped: warm-up). exchange_gens: the "
         "generations that exchanged (every one but the last, which ends with its evaluation; 0 skipped if "
         "others remain). exchange_ms = max over members per generation (median/max over exchange_gens). "
         "train_steps_per_s = sum over members of env_steps_per_s (training time only, median over generations); "
         "wall_steps_per_s = all members' env steps / rank 0 wall time (includes eval, select, exchange). "
         "overhead_pct = 100 x (1 - wall_steps_per_s / wall_steps_per_s_noex); overhead_noeval_pct: the same from "
         "per-generation time minus evaluation time (max over members), since evaluation time depends on the policy. "
         "n_exploits / n_exploits_noex: copies made by the whole run with / without exchange.")


def configurations(ns: argparse.Namespace) -> list[tuple[str, str]]:
    """Every (rule, transport) the sweep runs, in order."""
    from evo.comm import TRANSPORTS

    transports = ns.transports or sorted(TRANSPORTS)
    return [(rule, transport) for rule in ns.rules or DEFAULT_RULES for transport in transports]


def workload(ns: argparse.Namespace) -> dict[str, Any]:
    """The workload of ``ns``: defaults by env (CartPole or ProcGen), overridden by given flags."""
    from evo.envs import procgen_game

    base = dict(PROCGEN if procgen_game(ns.env_id) else CARTPOLE)
    base["env_id"] = ns.env_id
    base["algo"] = ns.algo
    for key in ("n_envs", "n_steps", "steps_per_generation", "generations", "eval_episodes", "policy"):
        if getattr(ns, key, None) is not None:
            base[key] = getattr(ns, key)
    return base


def fixed_space_yaml(path: Path, wl: dict[str, Any], n_epochs: int) -> Path:
    """Fix the two PPO hparams that set the amount of work (n_epochs, batch_size), so that runs with
    and without exchange (and members of one run) do equal work; the others stay searchable."""
    rollout = wl["n_envs"] * wl["n_steps"]
    batch = next((b for b in (64, 128, 256, 32) if rollout % b == 0), rollout)
    path.write_text(f"n_epochs: {n_epochs}\nbatch_size: {batch}\n")
    return path


def pbt_args(wl: dict[str, Any], rule: str, transport: str, log_dir: Path, exp_name: str,
             hyperparams: Path | None, exchange: bool, threads: int) -> list[str]:
    """The ``evo.pbt`` command line of one run (``--async`` for the hub)."""
    args = ["--rule", rule, "--transport", transport, "--env-id", wl["env_id"], "--n-envs", str(wl["n_envs"]),
            "--n-steps", str(wl["n_steps"]), "--steps-per-generation", str(wl["steps_per_generation"]),
            "--generations", str(wl["generations"]), "--eval-episodes", str(wl["eval_episodes"]),
            "--policy", wl["policy"], "--no-tb-writer", "--checkpoint-every", "0", "--threads", str(threads),
            "--log-dir", str(log_dir), "--exp-name", exp_name, "--verbose", "0", "--algo", wl["algo"]]
    if transport == "hub":
        args.append("--async")
    if hyperparams is not None:
        args += ["--hyperparams", str(hyperparams)]
    if not exchange:
        args.append("--no-exchange")
    return args


def _span(gens: Sequence[dict[str, str]]) -> str:
    return f"{gens[0]['generation']}-{gens[-1]['generation']}" if gens else "none"


def summarize_run(run_dir: Path, world: int, steps_per_generation: int) -> dict[str, Any]:
    """Statistics of one finished run from its generations.csv and members.csv."""
    gens = sorted(read_csv(run_dir / "generations.csv"), key=lambda g: int(g["generation"]))
    members = read_csv(run_dir / "members.csv")
    skip = 1 if len(gens) > 1 else 0
    kept = gens[skip:]
    deciding = gens[:-1]  # the last generation ends with its evaluation: no exchange
    exchanged = deciding[1:] if len(deciding) > 1 else deciding
    ex_ms = [num(g["exchange_ms_max"]) for g in exchanged]
    ex_gen_s = [num(g["generation_s_max"]) for g in exchanged]
    by_gen: dict[int, float] = {}
    no_eval: dict[int, float] = {}
    for m in members:
        g = int(m["generation"])
        if g >= skip:
            by_gen[g] = by_gen.get(g, 0.0) + num(m["env_steps_per_s"])
            no_eval[g] = max(no_eval.get(g, 0.0), num(m["time_generation_s"]) - num(m["time_eval_s"]))
    wall = [num(g["wall_s"]) for g in gens]
    span, n_gen = (wall[-1] - wall[0], len(wall) - 1) if skip else (wall[-1], len(wall))
    return {
        "gens_used": _span(kept), "exchange_gens": _span(exchanged),
        "exchange_ms_median": statistics.median(ex_ms) if ex_ms else math.nan,
        "exchange_ms_max": max(ex_ms) if ex_ms else math.nan,
        "exchange_share_pct": 100 * ratio(sum(ex_ms) / 1000, sum(ex_gen_s)) if ex_ms else math.nan,
        "train_steps_per_s": statistics.median(by_gen.values()) if by_gen else math.nan,
        "wall_steps_per_s": ratio(world * steps_per_generation * n_gen, span),
        "noeval_steps_per_s": ratio(world * steps_per_generation * len(no_eval), sum(no_eval.values())),
        "n_exploits": sum(int(g["n_exploits"]) for g in gens),
    }


def run_pbt(rule: str, transport: str, world: int, wl: dict[str, Any], tmp: Path, hyperparams: Path | None,
            exchange: bool, threads: int, timeout: float) -> dict[str, Any]:
    """One PBT run under ``mpiexec -n world``; its summary, or ``{"ok": False}`` if it failed."""
    name = f"{rule}-{transport}-n{world}-{'ex' if exchange else 'noex'}"
    args = pbt_args(wl, rule, transport, tmp, name, hyperparams, exchange, threads)
    rc, _out, err, secs = mpi_module(world, "evo.pbt", args, timeout)
    if rc != 0:
        print(f"evo.bench: {name} failed (exit {rc}):\n{err[-2000:]}", file=sys.stderr, flush=True)
        return {"ok": False, "seconds": secs}
    return {"ok": True, "seconds": secs, **summarize_run(tmp / name, world, wl["steps_per_generation"])}


def compare(rule: str, transport: str, n: int, with_ex: dict[str, Any], without: dict[str, Any]) -> dict[str, Any]:
    """One table row: the run with exchange, next to the same run without."""
    row = {"rule": rule, "transport": transport, "ranks": n, **{k: v for k, v in with_ex.items() if k != "ok"}}
    row["seconds"] = with_ex.get("seconds", 0) + without.get("seconds", 0)
    if not with_ex.get("ok"):
        row["gens_used"] = "FAILED"
    if without.get("ok"):
        row["train_steps_per_s_noex"] = without["train_steps_per_s"]
        row["wall_steps_per_s_noex"] = without["wall_steps_per_s"]
        row["n_exploits_noex"] = without["n_exploits"]
        if with_ex.get("ok"):
            row["overhead_pct"] = 100 * (1 - ratio(with_ex["wall_steps_per_s"], without["wall_steps_per_s"]))
            row["overhead_noeval_pct"] = 100 * (1 - ratio(with_ex["noeval_steps_per_s"],
                                                          without["noeval_steps_per_s"]))
    return row


def sweep(ns: argparse.Namespace, ranks: Sequence[int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every configuration on every world size: one row each."""
    wl = workload(ns)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # PPO: fix the hparams that set the amount of work; other learners keep their default space
        hp = fixed_space_yaml(tmp / "space.yaml", wl, ns.n_epochs) if ns.n_epochs > 0 and wl["algo"] == "ppo" \
            else None
        for n in ranks:
            for rule, transport in configurations(ns):
                print(f"  running {rule} / {transport} on {n} rank(s) ...", file=sys.stderr, flush=True)
                with_ex = run_pbt(rule, transport, n, wl, tmp, hp, True, ns.threads, ns.timeout)
                without = (run_pbt(rule, transport, n, wl, tmp, hp, False, ns.threads, ns.timeout)
                           if not ns.skip_no_exchange else {"ok": False})
                rows.append(compare(rule, transport, n, with_ex, without))
    meta = {"workload": wl, "fixed_hparams": {"n_epochs": ns.n_epochs} if ns.n_epochs > 0 else None,
            "threads_per_rank": ns.threads, "cores": os.cpu_count(), "ranks": list(ranks),
            "configurations": [list(c) for c in configurations(ns)], "notes": NOTES}
    return rows, meta


def cmd_exchange(ns: argparse.Namespace) -> None:
    run_exchange(ns, "exchange")


def run_exchange(ns: argparse.Namespace, name: str) -> list[dict[str, Any]]:
    """The sweep over ``ns.ranks``: print its table, write its CSV and JSON; the rows."""
    too_small = [n for n in ns.ranks if n < 2]
    if too_small:
        raise SystemExit(f"evo.bench {name}: --ranks {too_small[0]}: a PBT population needs at least 2 ranks")
    rows, meta = sweep(ns, ns.ranks)
    wl = meta["workload"]
    print(f"\n{name}: {wl['env_id']} policy={wl['policy']} n_envs={wl['n_envs']} n_steps={wl['n_steps']} "
          f"steps/gen={wl['steps_per_generation']} generations={wl['generations']} "
          f"n_epochs={ns.n_epochs} threads/rank={ns.threads} on {os.cpu_count()} cores")
    print(table(rows, EXCHANGE_COLUMNS))
    print(f"note: {NOTES}")
    write_outputs(Path(ns.out), output_name(name, wl["env_id"]), rows, EXCHANGE_COLUMNS, meta)
    failed = [f"{r['rule']}/{r['transport']} on {r['ranks']}" for r in rows if r.get("gens_used") == "FAILED"]
    if failed:
        raise SystemExit(f"evo.bench {name}: failed runs: {', '.join(failed)}")
    return rows


def output_name(name: str, env_id: str) -> str:
    return name if env_id == "CartPole-v1" else f"{name}_{env_id}"


def cmd_scaling(ns: argparse.Namespace) -> None:
    rows = run_exchange(ns, "scaling")
    plt = pyplot()
    if plt is None:
        return
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for rule, transport in sorted({(r["rule"], r["transport"]) for r in rows}):
        rs = sorted((r for r in rows if (r["rule"], r["transport"]) == (rule, transport)), key=lambda r: r["ranks"])
        x = [r["ranks"] for r in rs]
        label = f"{rule}/{transport}"
        line, = ax0.plot(x, [r.get("wall_steps_per_s", math.nan) for r in rs], "o-", label=label)
        ax0.plot(x, [r.get("wall_steps_per_s_noex", math.nan) for r in rs], "x--", color=line.get_color(),
                 label=f"{label} --no-exchange")
        ax1.plot(x, [r.get("exchange_ms_median", math.nan) for r in rs], "o-", label=label)
    ax0.set(xlabel="ranks", ylabel="aggregate env-steps/s (wall)", title="throughput")
    ax1.set(xlabel="ranks", ylabel="exchange ms / generation (median of max)", title="exchange time")
    for ax in (ax0, ax1):
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(ns.out) / f"{output_name('scaling', ns.env_id)}.png"
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")
