"""Benchmarks of evo: exchange cost, scaling, flat-state moves, PBT member vs baseline.

``python -m evo.bench SUBCOMMAND [options]`` prints a table and writes CSV + JSON (and a PNG for
``scaling``) to ``--out`` (default ``bench_out/``):

* ``exchange``  each strategy x world size on a small fixed workload, with and without
  ``--no-exchange``: exchange ms per generation, its share of the generation, env-steps/s.
* ``scaling``   the same over world sizes 1 2 4 8, plus a plot.
* ``micro``     size, pack/unpack and MPI move time (Bcast, Sendrecv under ``mpiexec -n 2``) of
  the flat state of the CartPole MLP, NatureCNN and IMPALA CNN, against a local ``np.copyto``.
* ``member-vs-baseline``  env-steps/s of a 1-rank PBT member vs ``evo.baseline`` doing the same work.
* ``transport`` the sync exchange (allgather, plan, scatter, move) against the async hub
  (:class:`evo.comm.AsyncHub`) on synthetic numpy members, per state size, strategy and world size:
  exchange ms, idle share, bytes per rank, plus a plot.

Every run is a subprocess with a timeout. Generation 0 includes warm-up (first ``learn()``,
lazy MPI connection set-up), so statistics skip it whenever there is more than one generation.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STRATEGIES = ("wta", "truncation", "truncation_collective")

CARTPOLE = {"env_id": "CartPole-v1", "n_envs": 2, "n_steps": 128, "steps_per_generation": 1024,
            "generations": 5, "eval_episodes": 2, "policy": "auto"}
PROCGEN = {"n_envs": 4, "n_steps": 64, "steps_per_generation": 512, "generations": 3, "eval_episodes": 2,
           "policy": "CnnPolicy"}
"""Default workloads: CartPole, and a small one for ProcGen games (CNN policies)."""


# -- processes ------------------------------------------------------------------------------
def mpiexec_path() -> str:
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    import shutil

    found = shutil.which("mpiexec")
    if found is None:
        raise SystemExit("evo.bench: no mpiexec found (pip install mpich, or load an MPI)")
    return found


def run_cmd(args: Sequence[str], timeout: float) -> tuple[int, str, str, float]:
    """Run ``args`` in its own process group; kill the group on timeout (returncode -9)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        rc = -9
        err += f"\nevo.bench: timed out after {timeout:.0f}s"
    return rc, out, err, time.monotonic() - t0


def mpi_module(n: int, module: str, args: Sequence[str], timeout: float) -> tuple[int, str, str, float]:
    return run_cmd([mpiexec_path(), "-n", str(n), sys.executable, "-m", module, *args], timeout)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _f(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


# -- output ---------------------------------------------------------------------------------
def fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return "-" if v is None else str(v)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def write_outputs(out: Path, name: str, rows: Sequence[dict[str, Any]], columns: Sequence[str],
                  meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{name}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in columns})
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    (out / f"{name}.json").write_text(json.dumps({**meta, "rows": clean}, indent=2, default=str) + "\n")


# -- PBT runs -------------------------------------------------------------------------------
def workload(ns: argparse.Namespace) -> dict[str, Any]:
    """The workload of ``ns``: defaults by env (CartPole or ProcGen), overridden by given flags."""
    from evo.envs import procgen_game

    base = dict(PROCGEN if procgen_game(ns.env_id) else CARTPOLE)
    base["env_id"] = ns.env_id
    base["algo"] = getattr(ns, "algo", "ppo")
    for key in ("n_envs", "n_steps", "steps_per_generation", "generations", "eval_episodes", "policy"):
        if getattr(ns, key, None) is not None:
            base[key] = getattr(ns, key)
    return base


def fixed_space_yaml(path: Path, wl: dict[str, Any], n_epochs: int) -> Path:
    """Fix the two hparams that set the amount of work (n_epochs, batch_size), so that runs with
    and without exchange (and members of one run) do equal work; the others stay searchable."""
    rollout = wl["n_envs"] * wl["n_steps"]
    batch = next((b for b in (64, 128, 256, 32) if rollout % b == 0), rollout)
    path.write_text(f"n_epochs: {n_epochs}\nbatch_size: {batch}\n")
    return path


def pbt_args(wl: dict[str, Any], log_dir: Path, exp_name: str, hyperparams: Path | None,
             exchange: bool, threads: int) -> list[str]:
    args = ["--env-id", wl["env_id"], "--n-envs", str(wl["n_envs"]), "--n-steps", str(wl["n_steps"]),
            "--steps-per-generation", str(wl["steps_per_generation"]), "--generations", str(wl["generations"]),
            "--eval-episodes", str(wl["eval_episodes"]), "--policy", wl["policy"], "--no-tb-writer",
            "--checkpoint-every", "0", "--threads", str(threads), "--log-dir", str(log_dir),
            "--exp-name", exp_name, "--verbose", "0", "--algo", wl.get("algo", "ppo")]
    if hyperparams is not None:
        args += ["--hyperparams", str(hyperparams)]
    if not exchange:
        args.append("--no-exchange")
    return args


def summarize_run(run_dir: Path, world: int, steps_per_generation: int) -> dict[str, Any]:
    """Statistics of one finished run from its generations.csv and members.csv."""
    gens = read_csv(run_dir / "generations.csv")
    members = read_csv(run_dir / "members.csv")
    skip = 1 if len(gens) > 1 else 0
    kept = [g for g in gens if int(g["generation"]) >= skip]
    ex_ms = [_f(g["exchange_ms_max"]) for g in kept]
    gen_s = [_f(g["generation_s_max"]) for g in kept]
    by_gen: dict[int, float] = {}
    no_eval: dict[int, float] = {}
    for m in members:
        g = int(m["generation"])
        if g >= skip:
            by_gen[g] = by_gen.get(g, 0.0) + _f(m["env_steps_per_s"])
            no_eval[g] = max(no_eval.get(g, 0.0), _f(m["time_generation_s"]) - _f(m["time_eval_s"]))
    wall = [_f(g["wall_s"]) for g in gens]
    if skip and len(wall) > 1:
        span, n_gen = wall[-1] - wall[0], len(wall) - 1
    else:
        span, n_gen = wall[-1], len(wall)
    return {
        "gens_used": f"{skip}-{len(gens) - 1}",
        "exchange_ms_median": statistics.median(ex_ms) if ex_ms else math.nan,
        "exchange_ms_max": max(ex_ms) if ex_ms else math.nan,
        "exchange_share_pct": 100 * sum(ex_ms) / 1000 / sum(gen_s) if gen_s and sum(gen_s) > 0 else math.nan,
        "train_steps_per_s": statistics.median(by_gen.values()) if by_gen else math.nan,
        "wall_steps_per_s": world * steps_per_generation * n_gen / span if span > 0 else math.nan,
        "noeval_steps_per_s": (world * steps_per_generation * len(no_eval) / sum(no_eval.values())
                               if no_eval and sum(no_eval.values()) > 0 else math.nan),
        "n_exploits": sum(int(g["n_exploits"]) for g in kept),
    }


def run_pbt(strategy: str, world: int, wl: dict[str, Any], tmp: Path, hyperparams: Path | None,
            exchange: bool, threads: int, timeout: float) -> dict[str, Any]:
    name = f"{strategy}-n{world}-{'ex' if exchange else 'noex'}"
    args = pbt_args(wl, tmp, name, hyperparams, exchange, threads)
    rc, _out, err, secs = mpi_module(world, f"evo.{strategy}", args, timeout)
    if rc != 0:
        print(f"evo.bench: {name} failed (exit {rc}):\n{err[-2000:]}", file=sys.stderr, flush=True)
        return {"ok": False, "seconds": secs}
    return {"ok": True, "seconds": secs, **summarize_run(tmp / name, world, wl["steps_per_generation"])}


EXCHANGE_COLUMNS = ["strategy", "ranks", "gens_used", "exchange_ms_median", "exchange_ms_max",
                    "exchange_share_pct", "train_steps_per_s", "wall_steps_per_s", "train_steps_per_s_noex",
                    "wall_steps_per_s_noex", "overhead_pct", "overhead_noeval_pct", "n_exploits", "seconds"]


def sweep(ns: argparse.Namespace, ranks: Sequence[int]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    wl = workload(ns)
    strategies = ns.strategies or list(STRATEGIES)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        tmp = Path(tmpdir)
        # PPO: fix the hparams that set the amount of work; other learners keep their default space
        hp = fixed_space_yaml(tmp / "space.yaml", wl, ns.n_epochs) if ns.n_epochs > 0 and wl["algo"] == "ppo" \
            else None
        for n in ranks:
            for strategy in strategies:
                print(f"  running {strategy} on {n} rank(s) ...", file=sys.stderr, flush=True)
                with_ex = run_pbt(strategy, n, wl, tmp, hp, True, ns.threads, ns.timeout)
                without = (run_pbt(strategy, n, wl, tmp, hp, False, ns.threads, ns.timeout)
                           if not ns.skip_no_exchange else {"ok": False})
                row = {"strategy": strategy, "ranks": n, **{k: v for k, v in with_ex.items() if k != "ok"}}
                row["seconds"] = with_ex.get("seconds", 0) + without.get("seconds", 0)
                if without.get("ok"):
                    row["train_steps_per_s_noex"] = without["train_steps_per_s"]
                    row["wall_steps_per_s_noex"] = without["wall_steps_per_s"]
                    if with_ex.get("ok") and without["wall_steps_per_s"] > 0:
                        row["overhead_pct"] = 100 * (1 - with_ex["wall_steps_per_s"] / without["wall_steps_per_s"])
                        row["overhead_noeval_pct"] = 100 * (1 - with_ex["noeval_steps_per_s"]
                                                            / without["noeval_steps_per_s"])
                if not with_ex.get("ok"):
                    row["gens_used"] = "FAILED"
                rows.append(row)
    meta = {"workload": wl, "fixed_hparams": {"n_epochs": ns.n_epochs} if ns.n_epochs > 0 else None,
            "threads_per_rank": ns.threads, "cores": os.cpu_count(), "ranks": list(ranks),
            "notes": NOTES}
    return rows, meta


NOTES = ("generation 0 is skipped (warm-up: first learn(), lazy MPI connections). exchange_ms = max over "
         "members per generation (median/max over generations). train_steps_per_s = sum over members of "
         "env_steps_per_s (training time only, median over generations); wall_steps_per_s = all members' env "
         "steps / rank 0 wall time (includes eval, select, exchange). overhead_pct = 1 - wall(with) / "
         "wall(--no-exchange); overhead_noeval_pct: the same from per-generation time minus evaluation time (max "
         "over members), since evaluation time depends on the policy (longer CartPole episodes after a copy).")


def cmd_exchange(ns: argparse.Namespace, name: str = "exchange") -> list[dict[str, Any]]:
    rows, meta = sweep(ns, ns.ranks)
    wl = meta["workload"]
    print(f"\n{name}: {wl['env_id']} policy={wl['policy']} n_envs={wl['n_envs']} n_steps={wl['n_steps']} "
          f"steps/gen={wl['steps_per_generation']} generations={wl['generations']} "
          f"n_epochs={ns.n_epochs} threads/rank={ns.threads} on {os.cpu_count()} cores")
    print(table(rows, EXCHANGE_COLUMNS))
    print(f"note: {NOTES}")
    write_outputs(Path(ns.out), name if wl["env_id"] == "CartPole-v1" else f"{name}_{wl['env_id']}",
                  rows, EXCHANGE_COLUMNS, meta)
    return rows


def cmd_scaling(ns: argparse.Namespace) -> None:
    rows = cmd_exchange(ns, "scaling")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("evo.bench: matplotlib not installed, no PNG", file=sys.stderr)
        return
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
    for strategy in sorted({r["strategy"] for r in rows}):
        rs = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["ranks"])
        x = [r["ranks"] for r in rs]
        line, = ax0.plot(x, [r.get("wall_steps_per_s", math.nan) for r in rs], "o-", label=f"{strategy}")
        ax0.plot(x, [r.get("wall_steps_per_s_noex", math.nan) for r in rs], "x--", color=line.get_color(),
                 label=f"{strategy} --no-exchange")
        ax1.plot(x, [r.get("exchange_ms_median", math.nan) for r in rs], "o-", label=strategy)
    ax0.set(xlabel="ranks", ylabel="aggregate env-steps/s (wall)", title="throughput")
    ax1.set(xlabel="ranks", ylabel="exchange ms / generation (median of max)", title="exchange time")
    for ax in (ax0, ax1):
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    suffix = "" if rows and workload(ns)["env_id"] == "CartPole-v1" else f"_{ns.env_id}"
    path = Path(ns.out) / f"scaling{suffix}.png"
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


# -- micro ----------------------------------------------------------------------------------
MICRO_NETS = [("cartpole_mlp", "CartPole-v1", "MlpPolicy"), ("nature_cnn", "bigfish", "CnnPolicy"),
              ("impala_cnn", "bigfish", "impala")]
MICRO_COLUMNS = ["network", "params", "flat_mb", "pack_ms", "unpack_ms", "copyto_ms", "bcast_ms",
                 "sendrecv_ms", "bcast_gb_s", "copyto_gb_s"]


def _median_ms(times: Sequence[float]) -> float:
    return 1000 * statistics.median(times)


def micro_worker(ns: argparse.Namespace) -> int:
    """(under ``mpiexec -n 2``) Build each network as a real Member, time its flat-state moves."""
    import numpy as np
    import torch
    from mpi4py import MPI

    from evo.config import PBTConfig
    from evo.member import Member

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    results = []
    for label, env_id, policy in MICRO_NETS:
        if ns.nets and label not in ns.nets:
            continue
        cfg = PBTConfig(env_id=env_id, n_envs=1, n_steps=64, eval_episodes=1, policy=policy, tb_writer=False)
        member = Member(cfg, {}, index=rank)
        n = member.flat_size
        src = member.pack()
        buf = np.empty(n, dtype=np.float32)
        dst = np.empty(n, dtype=np.float32)
        t: dict[str, list[float]] = {"pack": [], "unpack": [], "copyto": [], "bcast": [], "sendrecv": []}
        for _ in range(ns.repeats + 1):  # the first repeat is warm-up, dropped below
            t0 = time.perf_counter()
            member.pack(buf)
            t["pack"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            member.unpack(buf)
            t["unpack"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            np.copyto(dst, src)
            t["copyto"].append(time.perf_counter() - t0)
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Bcast([buf if rank == 0 else dst, MPI.FLOAT], root=0)
            t["bcast"].append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
            if size > 1:
                peer = 1 - rank if rank < 2 else MPI.PROC_NULL
                comm.Barrier()
                t0 = time.perf_counter()
                comm.Sendrecv([src, MPI.FLOAT], dest=peer, sendtag=5, recvbuf=[dst, MPI.FLOAT], source=peer,
                              recvtag=5)
                t["sendrecv"].append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        member.close()
        if rank == 0:
            mb = n * 4 / 1e6
            row: dict[str, Any] = {"network": label, "params": member.num_params, "flat_mb": mb, "ranks": size,
                   **{f"{k}_ms": _median_ms(v[1:]) if len(v) > 1 else math.nan for k, v in t.items()}}
            row["bcast_gb_s"] = mb / 1e3 / (row["bcast_ms"] / 1e3) if row["bcast_ms"] > 0 else math.nan
            row["copyto_gb_s"] = mb / 1e3 / (row["copyto_ms"] / 1e3) if row["copyto_ms"] > 0 else math.nan
            results.append(row)
    if rank == 0:
        Path(ns.result).write_text(json.dumps(results))
    return 0


def cmd_micro(ns: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        result = Path(tmpdir) / "micro.json"
        args = ["_micro_worker", "--repeats", str(ns.repeats), "--result", str(result)]
        if ns.nets:
            args += ["--nets", *ns.nets]
        rc, _out, err, _ = mpi_module(ns.ranks, "evo.bench", args, ns.timeout)
        if rc != 0 or not result.exists():
            raise SystemExit(f"evo.bench micro: worker failed (exit {rc}):\n{err[-3000:]}")
        rows = json.loads(result.read_text())
    print(f"\nmicro: flat state (weights + Adam moments, float32), median of {ns.repeats} repeats after 1 warm-up; "
          f"MPI times under mpiexec -n {ns.ranks} on one node (max over ranks)")
    print(table(rows, MICRO_COLUMNS))
    write_outputs(Path(ns.out), "micro", rows, MICRO_COLUMNS,
                  {"repeats": ns.repeats, "ranks": ns.ranks, "obs": "ProcGen 64x64x3 for the CNNs"})


# -- member vs baseline ---------------------------------------------------------------------
MVB_COLUMNS = ["run", "env_steps_per_s_median", "env_steps_per_s_mean", "gens_used", "time_train_s",
               "time_eval_s", "seconds"]


def cmd_member_vs_baseline(ns: argparse.Namespace) -> None:
    from evo.hparam_sets import get_set, split_set

    rollout = ns.n_envs * ns.n_steps
    hp, _ = split_set(get_set(ns.param_name), rollout)
    common = ["--env-id", ns.env_id, "--n-envs", str(ns.n_envs), "--n-steps", str(ns.n_steps),
              "--policy", ns.policy, "--eval-episodes", str(ns.eval_episodes), "--no-tb-writer",
              "--checkpoint-every", "0", "--threads", str(ns.threads), "--verbose", "0"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        tmp = Path(tmpdir)
        space = tmp / "fixed.yaml"
        space.write_text("".join(f"{k}: {v}\n" for k, v in hp.items()))
        runs = {
            "pbt_member (evo.wta, 1 rank)": ("evo.wta", [
                *common, "--log-dir", str(tmp), "--exp-name", "pbt", "--hyperparams", str(space),
                "--generations", str(ns.generations), "--steps-per-generation", str(rollout)], tmp / "pbt"),
            f"baseline (evo.baseline --param-name {ns.param_name})": ("evo.baseline", [
                *common, "--log-dir", str(tmp), "--exp-name", "base", "--param-name", ns.param_name,
                "--num-timesteps", str(ns.generations * rollout), "--eval-every", str(rollout),
                "--save-every", "0"], tmp / "base"),
        }
        for label, (module, args, run_dir) in runs.items():
            print(f"  running {label} ...", file=sys.stderr, flush=True)
            rc, _out, err, secs = mpi_module(1, module, args, ns.timeout)
            if rc != 0:
                raise SystemExit(f"evo.bench: {label} failed (exit {rc}):\n{err[-3000:]}")
            members = read_csv(run_dir / "members.csv")
            skip = 1 if len(members) > 1 else 0
            kept = [m for m in members if int(m["generation"]) >= skip]
            sps = [_f(m["env_steps_per_s"]) for m in kept]
            hp_cols = {k: members[-1][k] for k in members[-1] if k.startswith("hp_")}
            rows.append({"run": label, "env_steps_per_s_median": statistics.median(sps),
                         "env_steps_per_s_mean": statistics.fmean(sps), "gens_used": f"{skip}-{len(members) - 1}",
                         "time_train_s": statistics.median(_f(m["time_train_s"]) for m in kept),
                         "time_eval_s": statistics.median(_f(m["time_eval_s"]) for m in kept),
                         "seconds": secs, "hparams": hp_cols})
    ratio = float(rows[0]["env_steps_per_s_median"]) / float(rows[1]["env_steps_per_s_median"])
    print(f"\nmember-vs-baseline: {ns.env_id} policy={ns.policy} n_envs={ns.n_envs} n_steps={ns.n_steps} "
          f"generations={ns.generations} (gen 0 skipped: warm-up), PPO set {ns.param_name}: {hp}")
    print(table(rows, MVB_COLUMNS))
    print(f"ratio pbt_member / baseline env-steps/s = {ratio:.3f}")
    if rows[0]["hparams"] != rows[1]["hparams"]:
        print(f"WARNING: hparams differ: pbt {rows[0]['hparams']} vs baseline {rows[1]['hparams']}")
    write_outputs(Path(ns.out), "member_vs_baseline", rows, [*MVB_COLUMNS, "hparams"],
                  {"ratio": ratio, "env_id": ns.env_id, "policy": ns.policy, "n_envs": ns.n_envs,
                   "n_steps": ns.n_steps, "generations": ns.generations, "ppo": hp})


# -- transport: sync exchange vs async hub on synthetic members -------------------------------
TRANSPORT_COLUMNS = ["mb", "mode", "strategy", "ranks", "exchange_ms_median", "exchange_ms_max", "idle_pct",
                     "drain_pct", "makespan_s", "intervals_per_s", "ctrl_bytes_in_median", "ctrl_bytes_in_max",
                     "weights_bytes_in_mean",
                     "bytes_in_max", "msgs_in_mean", "copies_per_gen", "service_cpu_pct", "seconds"]
TRANSPORT_NOTES = (
    "synthetic members: a float32 state of MB megabytes, 'training' = a sleep of interval_s x a per-member "
    "slowness (lognormal, sigma=spread) x a per-interval jitter (lognormal, sigma=jitter), seeded; the same "
    "durations in both modes. sync: allgather scores, rank 0 plans with evo.core.selection.plan, scatter_decisions "
    "sends each rank only its transfers, weights move with make_transport(strategy). async: AsyncHub; each "
    "member publishes, reports to rank 0 (truncation / wta against the latest reported scores) and fetches "
    "its donor; truncation_collective has no async form. exchange_ms: per generation (async: per interval "
    "index) the max over ranks of the time from 'scores known' (sync: after the allgather; async: after "
    "training) to 'state replaced', median / max over generations after the first (warm-up). idle_pct: "
    "time not training / wall time up to each rank's last interval, all ranks (sync: waiting for the slowest "
    "in the allgather + exchange; async: publish + report + fetch). drain_pct: async ranks waiting in "
    "finish() for the slowest member to end its last interval (an artefact of a fixed interval count). "
    "intervals_per_s: sum over ranks of generations / that rank's wall time (each rank at its own pace; the "
    "same as ranks x generations / makespan in sync). makespan_s: the slowest rank's wall time. bytes "
    "and msgs: received per rank per generation; ctrl = scores, plans, reports, metas; weights = snapshots "
    "(Bcast relaying inside MPI is not counted); the async ctrl max is rank 0, the coordinator, which receives "
    "every report. service_cpu_pct: CPU of each rank's service thread / its "
    "wall time, mean over ranks.")


def _durations(n: int, generations: int, cfg: dict[str, Any]) -> Any:
    """Fake training seconds per (member, generation): interval x slowness x jitter, seeded."""
    import numpy as np

    rng = np.random.default_rng([cfg["seed"], 11])
    slowness = np.exp(cfg["spread"] * rng.standard_normal(n))
    jitter = np.exp(cfg["jitter"] * rng.standard_normal((n, generations)))
    return cfg["interval_s"] * slowness[:, None] * jitter


class AsyncRule:
    """Rank 0's decide() of the async benchmark: truncation or winner-takes-all against the latest
    reported score of every member that has reported (those have published a snapshot)."""

    def __init__(self, strategy: str, quantile: float, seed: int) -> None:
        import numpy as np

        self.strategy, self.quantile = strategy, quantile
        self.latest: dict[int, float] = {}
        self.rng = np.random.default_rng([seed, 12])

    def __call__(self, report: dict[str, Any]) -> dict[str, Any]:
        from evo.core.selection import rank_members, truncation_size

        member = int(report["member"])
        self.latest[member] = float(report["score"])
        members = sorted(self.latest)
        if len(members) < 2:
            return {"donor": None}
        order = [members[i] for i in rank_members([self.latest[m] for m in members])]
        if self.strategy == "wta":
            best = order[0]
            return {"donor": best if best != member and math.isfinite(self.latest[best]) else None}
        k = truncation_size(len(order), self.quantile)
        top = [m for m in order[:k] if math.isfinite(self.latest[m])]
        if k == 0 or member not in order[len(order) - k:] or not top or member in top:
            return {"donor": None}
        return {"donor": int(top[int(self.rng.integers(len(top)))])}


def _sync_run(comm: Any, strategy: str, size: int, durations: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    import pickle

    import numpy as np

    from evo.comm import make_transport, scatter_decisions
    from evo.core.selection import plan, selection_rng

    rank, n = comm.Get_rank(), comm.Get_size()
    state = np.zeros(size, dtype=np.float32)
    gain = 1.0 + 0.5 * np.random.default_rng([cfg["seed"], 13, rank]).standard_normal()
    transport = make_transport(strategy, comm, size)
    rec: dict[str, Any] = {"train_s": 0.0, "exchange": [], "ctrl_in": [], "weights_in": [], "msgs_in": [],
                           "copies": 0, "bad": 0}
    comm.Barrier()
    t_start = time.perf_counter()
    for g in range(durations.shape[1]):
        t0 = time.perf_counter()
        time.sleep(durations[rank, g])
        rec["train_s"] += time.perf_counter() - t0
        state[0] += gain
        state[-1] = state[0]
        score = float(state[0])
        scores = comm.allgather(score)
        t1 = time.perf_counter()
        per_rank = None
        if rank == 0:
            transfers = plan(strategy, scores, cfg["quantile"], selection_rng(cfg["seed"], g))
            per_rank = [[t for t in transfers if rank_ in (t.donor, t.receiver)] for rank_ in range(n)]
        mine = scatter_decisions(comm, per_rank)
        received = transport.move(mine, lambda buf: np.copyto(buf, state))
        if received is not None:
            np.copyto(state, received)
            rec["copies"] += 1
            rec["bad"] += int(state[0] != state[-1])
        rec["exchange"].append(time.perf_counter() - t1)
        ctrl = sum(len(pickle.dumps(s, pickle.HIGHEST_PROTOCOL)) for i, s in enumerate(scores) if i != rank)
        ctrl += len(pickle.dumps(mine, pickle.HIGHEST_PROTOCOL))
        rec["ctrl_in"].append(ctrl)
        rec["weights_in"].append(size * 4 if received is not None else 0)
        rec["msgs_in"].append(n - 1 + 1 + (received is not None))
    rec["wall_s"] = time.perf_counter() - t_start
    rec["drain_s"] = 0.0
    del transport
    return rec


def _async_run(comm: Any, strategy: str, size: int, durations: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    from evo.comm import AsyncHub

    rank = comm.Get_rank()
    state = np.zeros(size, dtype=np.float32)
    fetched = np.empty(size, dtype=np.float32)
    gain = 1.0 + 0.5 * np.random.default_rng([cfg["seed"], 13, rank]).standard_normal()
    rule = AsyncRule(strategy, cfg["quantile"], cfg["seed"]) if rank == 0 else None
    hub = AsyncHub(comm, size, [rank], decide=rule)
    rec: dict[str, Any] = {"train_s": 0.0, "exchange": [], "copies": 0, "bad": 0}
    comm.Barrier()
    t_start = time.perf_counter()
    try:
        for g in range(durations.shape[1]):
            t0 = time.perf_counter()
            time.sleep(durations[rank, g])
            rec["train_s"] += time.perf_counter() - t0
            state[0] += gain
            state[-1] = state[0]
            t1 = time.perf_counter()
            meta = {"member": rank, "interval": g, "score": float(state[0])}
            hub.publish(rank, meta, lambda buf: np.copyto(buf, state))
            reply = hub.report(meta)
            if reply["donor"] is not None:
                got, _ = hub.fetch(reply["donor"], out=fetched)
                np.copyto(state, fetched)
                rec["copies"] += 1
                rec["bad"] += int(state[0] != state[-1] or state[0] != np.float32(got["score"]))
            rec["exchange"].append(time.perf_counter() - t1)
        rec["wall_s"] = time.perf_counter() - t_start
    finally:
        hub.finish()
    st = hub.stats()
    weights_in = (st["fetches"] - st["local_fetches"]) * size * 4
    gens = durations.shape[1]
    rec["ctrl_in"] = [(st["bytes_recv"] - weights_in) / gens] * gens
    rec["weights_in"] = [weights_in / gens] * gens
    rec["msgs_in"] = [st["msgs_recv"] / gens] * gens
    rec["drain_s"] = st["finish_wait_s"]
    rec["service_cpu"] = st["service_cpu_s"] / st["service_wall_s"] if st["service_wall_s"] > 0 else math.nan
    return rec


def _transport_row(recs: list[dict[str, Any]], n: int, generations: int) -> dict[str, Any]:
    skip = 1 if generations > 1 else 0
    per_gen = [max(r["exchange"][g] for r in recs) * 1000 for g in range(skip, generations)]
    wall = sum(r["wall_s"] for r in recs)
    train = sum(r["train_s"] for r in recs)
    makespan = max(r["wall_s"] for r in recs)
    ctrl = [statistics.fmean(r["ctrl_in"][skip:]) for r in recs]
    weights = [statistics.fmean(r["weights_in"][skip:]) for r in recs]
    total = [c + w for c, w in zip(ctrl, weights, strict=True)]
    cpu = [r["service_cpu"] for r in recs if "service_cpu" in r]
    return {
        "exchange_ms_median": statistics.median(per_gen), "exchange_ms_max": max(per_gen),
        "idle_pct": 100 * (wall - train) / wall if wall > 0 else math.nan,
        "drain_pct": 100 * sum(r["drain_s"] for r in recs) / (wall + sum(r["drain_s"] for r in recs)),
        "makespan_s": makespan,
        "intervals_per_s": sum(generations / r["wall_s"] for r in recs if r["wall_s"] > 0),
        "ctrl_bytes_in_median": statistics.median(ctrl), "ctrl_bytes_in_max": max(ctrl),
        "weights_bytes_in_mean": statistics.fmean(weights), "bytes_in_max": max(total),
        "msgs_in_mean": statistics.fmean(statistics.fmean(r["msgs_in"][skip:]) for r in recs),
        "copies_per_gen": sum(r["copies"] for r in recs) / generations,
        "service_cpu_pct": 100 * statistics.fmean(cpu) if cpu else math.nan,
        "bad_copies": sum(r["bad"] for r in recs),
    }


def transport_worker(ns: argparse.Namespace) -> int:
    """(under ``mpiexec -n N``) Every (size, mode, strategy) of the config on this world size."""
    import gc

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, n = comm.Get_rank(), comm.Get_size()
    cfg = json.loads(ns.config)
    durations = _durations(n, cfg["generations"], cfg)
    rows = []
    for mb in cfg["mb"]:
        size = max(2, int(round(mb * 1e6 / 4)))
        for mode in cfg["modes"]:
            for strategy in cfg["strategies"]:
                if mode == "async" and strategy == "truncation_collective":
                    continue
                t0 = time.perf_counter()
                run = _sync_run if mode == "sync" else _async_run
                rec = run(comm, strategy, size, durations, cfg)
                recs = comm.gather(rec, root=0)
                gc.collect()
                if rank == 0:
                    assert recs is not None
                    row = {"mb": mb, "mode": mode, "strategy": strategy, "ranks": n,
                           **_transport_row(recs, n, cfg["generations"]), "seconds": time.perf_counter() - t0}
                    rows.append(row)
                    print(f"  {n} ranks {mb} MB {mode} {strategy}: exchange {row['exchange_ms_median']:.1f} ms, "
                          f"idle {row['idle_pct']:.1f}%", file=sys.stderr, flush=True)
    if rank == 0:
        Path(ns.result).write_text(json.dumps(rows))
    return 0


def _transport_plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("evo.bench: matplotlib not installed, no PNG", file=sys.stderr)
        return
    sizes = sorted({r["mb"] for r in rows})
    metrics = [("exchange_ms_median", "exchange ms / generation (median)"), ("idle_pct", "idle % of wall time"),
               ("bytes_in_max", "bytes in / rank / generation (max)"),
               ("ctrl_bytes_in_median", "control bytes in / rank / generation (median)")]
    ranks = sorted({r["ranks"] for r in rows})
    fig, axes = plt.subplots(len(sizes), len(metrics), figsize=(5 * len(metrics), 3.6 * len(sizes)), squeeze=False)
    for i, mb in enumerate(sizes):
        for j, (key, label) in enumerate(metrics):
            ax = axes[i][j]
            for mode, strategy in sorted({(r["mode"], r["strategy"]) for r in rows}):
                rs = sorted((r for r in rows if r["mb"] == mb and r["mode"] == mode and r["strategy"] == strategy),
                            key=lambda r: r["ranks"])
                if rs:
                    ax.plot([r["ranks"] for r in rs], [r.get(key, math.nan) for r in rs],
                            "o-" if mode == "async" else "x--", label=f"{mode} {strategy}")
            ax.set(xlabel="ranks", ylabel=label, title=f"{mb} MB state")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ranks, [str(r) for r in ranks])
            ax.minorticks_off()
            if "bytes_in" in key:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


def cmd_transport(ns: argparse.Namespace) -> None:
    if ns.smoke:
        ns.ranks = ns.ranks or [2]
        ns.mb = ns.mb or [0.01, 0.05]
        ns.generations = ns.generations or 3
        ns.interval_s = ns.interval_s or 0.02
    ranks = ns.ranks or [8, 16, 32, 64, 128]
    cfg = {"mb": ns.mb or [0.1, 7.5], "modes": ns.modes, "strategies": ns.strategies or list(STRATEGIES),
           "generations": ns.generations or 4, "interval_s": ns.interval_s or 0.5, "spread": ns.spread,
           "jitter": ns.jitter, "quantile": ns.quantile, "seed": ns.seed}
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        for n in ranks:
            print(f"  transport on {n} rank(s) ...", file=sys.stderr, flush=True)
            result = Path(tmpdir) / f"transport-{n}.json"
            rc, _out, err, secs = mpi_module(n, "evo.bench", ["_transport_worker", "--config", json.dumps(cfg),
                                                              "--result", str(result)], ns.timeout)
            if rc != 0 or not result.exists():
                what = "timed out (deadlock?)" if rc == -9 else f"failed (exit {rc})"
                print(f"evo.bench transport: {n} ranks {what} after {secs:.0f}s:\n{err[-2000:]}", file=sys.stderr,
                      flush=True)
                failed.append(f"{n} ranks: {what}")
                continue
            rows += json.loads(result.read_text())
    rows.sort(key=lambda r: (r["mb"], r["mode"] != "sync", STRATEGIES.index(r["strategy"]), r["ranks"]))
    print(f"\ntransport: synthetic members, {cfg['generations']} generations of {cfg['interval_s']} s "
          f"(spread {cfg['spread']}, jitter {cfg['jitter']}), quantile {cfg['quantile']}, on {os.cpu_count()} cores")
    print(table(rows, TRANSPORT_COLUMNS))
    print(f"note: {TRANSPORT_NOTES}")
    bad = sum(int(r.get("bad_copies", 0)) for r in rows)
    if bad:
        print(f"WARNING: {bad} copies did not bring the donor's state", file=sys.stderr)
    out = Path(ns.out)
    write_outputs(out, "transport", rows, TRANSPORT_COLUMNS, {**cfg, "ranks": ranks, "failed": failed,
                                                               "cores": os.cpu_count(), "notes": TRANSPORT_NOTES})
    if rows:
        _transport_plot(rows, out / "transport.png")
    if failed or bad:
        raise SystemExit(f"evo.bench transport: {'; '.join(failed) or f'{bad} bad copies'}")


# -- command line ---------------------------------------------------------------------------
# -- paired vs unpaired evaluation ----------------------------------------------------------------
def bottom_agreement(first: Sequence[float], second: Sequence[float], k: int) -> float:
    """Share of the bottom-``k`` members of ``first`` that are also in the bottom ``k`` of ``second``."""
    from evo.core.selection import rank_members

    a, b = set(rank_members(first)[-k:]), set(rank_members(second)[-k:])
    return len(a & b) / k


def cmd_agreement(ns: argparse.Namespace) -> None:
    """Load every member of a finished run and evaluate the population twice, independently, many
    times over: how often do two evaluations agree on who is in the bottom quantile (whom
    truncation replaces), with paired episodes (one seed set per evaluation, shared by every
    member) and unpaired (a seed set per member)?"""
    import json

    from evo import checkpoint as ckpt
    from evo.config import PBTConfig
    from evo.core import seeds
    from evo.core.selection import truncation_size
    from evo.member import Member

    run = Path(ns.run)
    saved = json.loads((run / "config.json").read_text())
    cfg = PBTConfig(**{k: v for k, v in saved["config"].items() if k in PBTConfig.__dataclass_fields__})
    directory = ckpt.find_latest(run)
    n = int(cfg.num_agents or saved["world_size"])
    members = []
    for i in range(n):
        meta = json.loads((directory / f"member_{i:03d}.json").read_text())
        m = Member(cfg, meta["hparams"], index=i)
        ckpt.load_member(directory, m)
        members.append(m)
    k = truncation_size(n, ns.quantile)
    det = bool(saved.get("deterministic_eval", True))
    out: list[dict[str, Any]] = []
    for mode in ("paired", "unpaired"):
        agree, exact = [], 0
        for trial in range(ns.trials):
            evals = []
            for rep in range(2):
                key = 1000 + 2 * trial + rep  # evaluation "generations" no run ever used
                evals.append([m.evaluate(ns.episodes, det, seeds.eval_seed(cfg.seed, key, m.index,
                                                                           paired=mode == "paired"))
                              for m in members])
            share = bottom_agreement(evals[0], evals[1], k)
            agree.append(share)
            exact += int(share == 1.0)
        out.append({"mode": mode, "members": n, "bottom_k": k, "episodes": ns.episodes, "trials": ns.trials,
                    "mean_overlap": sum(agree) / len(agree), "same_bottom_set": exact / ns.trials})
    cols = ["mode", "members", "bottom_k", "episodes", "trials", "mean_overlap", "same_bottom_set"]
    print(f"bottom-quantile agreement between two independent evaluations of {run}")
    print(table(out, cols))
    write_outputs(Path(ns.out), "agreement", out, cols, {"run": str(run), "deterministic_eval": det})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evo.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--out", default="bench_out", help="output folder (CSV, JSON, PNG)")
        sp.add_argument("--timeout", type=float, default=900, help="seconds per launched job")

    for name, ranks in (("exchange", [4, 8]), ("scaling", [1, 2, 4, 8])):
        sp = sub.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                            help=f"PBT runs per strategy x world size (default ranks {ranks})")
        common(sp)
        sp.add_argument("--ranks", type=int, nargs="+", default=ranks)
        sp.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=None)
        sp.add_argument("--env-id", default="CartPole-v1")
        sp.add_argument("--algo", default="ppo", help="learner of every member: ppo, a2c, sac, td3, dqn")
        sp.add_argument("--policy", default=None, help="default: auto (CartPole), CnnPolicy (ProcGen)")
        for flag in ("n_envs", "n_steps", "steps_per_generation", "generations", "eval_episodes"):
            sp.add_argument("--" + flag.replace("_", "-"), dest=flag, type=int, default=None,
                            help=f"default: {CARTPOLE[flag]} (CartPole), {PROCGEN[flag]} (ProcGen)")
        sp.add_argument("--n-epochs", type=int, default=4,
                        help="fix n_epochs (and a batch size) for equal work per run; 0 = leave searchable")
        sp.add_argument("--threads", type=int, default=1, help="torch threads per rank")
        sp.add_argument("--skip-no-exchange", action="store_true", help="do not run the --no-exchange runs")

    sp = sub.add_parser("micro", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="flat-state size, pack/unpack and MPI move times")
    common(sp)
    sp.add_argument("--repeats", type=int, default=20)
    sp.add_argument("--ranks", type=int, default=2)
    sp.add_argument("--nets", nargs="+", choices=[n for n, _, _ in MICRO_NETS], default=None)

    sp = sub.add_parser("_micro_worker")
    sp.add_argument("--repeats", type=int, default=20)
    sp.add_argument("--result", required=True)
    sp.add_argument("--nets", nargs="+", default=None)

    sp = sub.add_parser("member-vs-baseline", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="env-steps/s of a 1-rank PBT member vs evo.baseline doing the same work")
    common(sp)
    sp.add_argument("--env-id", default="bigfish")
    sp.add_argument("--n-envs", type=int, default=16)
    sp.add_argument("--n-steps", type=int, default=256)
    sp.add_argument("--policy", default="CnnPolicy")
    sp.add_argument("--param-name", default="baseline3", help="PPO set both runs use (evo/data/hyperparams.yaml)")
    sp.add_argument("--generations", type=int, default=3, help="rollouts per run (one per generation)")
    sp.add_argument("--eval-episodes", type=int, default=2)
    sp.add_argument("--threads", type=int, default=0, help="torch threads (0 = evo's default)")

    sp = sub.add_parser("agreement", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="paired vs unpaired evaluation: agreement on the bottom quantile of a trained run")
    sp.add_argument("run", help="a finished PBT run directory (its newest checkpoint is evaluated)")
    sp.add_argument("--episodes", type=int, default=10, help="episodes per evaluation")
    sp.add_argument("--trials", type=int, default=20, help="pairs of independent evaluations")
    sp.add_argument("--quantile", type=float, default=0.25, help="bottom quantile (as truncation)")
    sp.add_argument("--out", default="bench_out", help="output folder")
    sp = sub.add_parser("transport", help="sync exchange vs the async hub on synthetic members, against world size")
    sp.add_argument("--out", default="bench_out", help="output folder (CSV, JSON, PNG); default bench_out")
    sp.add_argument("--timeout", type=float, default=900, help="seconds per mpiexec launch (one per world size); "
                                                                "default 900")
    sp.add_argument("--ranks", type=int, nargs="+", default=None, help="world sizes; default 8 16 32 64 128")
    sp.add_argument("--mb", type=float, nargs="+", default=None,
                    help="flat state sizes in MB; default 0.1 7.5 (the CartPole MLP and the IMPALA CNN)")
    sp.add_argument("--modes", nargs="+", choices=("sync", "async"), default=["sync", "async"],
                    help="default: both")
    sp.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=None, help="default: all three")
    sp.add_argument("--generations", type=int, default=None, help="intervals per member; default 4")
    sp.add_argument("--interval-s", type=float, default=None, help="mean fake training seconds; default 0.5")
    sp.add_argument("--spread", type=float, default=0.3,
                    help="sigma of the per-member lognormal slowness; default 0.3")
    sp.add_argument("--jitter", type=float, default=0.1,
                    help="sigma of the per-interval lognormal jitter; default 0.1")
    sp.add_argument("--quantile", type=float, default=0.25, help="truncation quantile; default 0.25")
    sp.add_argument("--seed", type=int, default=0, help="default 0")
    sp.add_argument("--smoke", action="store_true",
                    help="tiny and quick: 2 ranks, 0.01 and 0.05 MB, 3 generations of 0.02 s (flags given win)")

    sp = sub.add_parser("_transport_worker")
    sp.add_argument("--config", required=True)
    sp.add_argument("--result", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ns = build_parser().parse_args(argv)
    if ns.cmd == "_micro_worker":
        return micro_worker(ns)
    if ns.cmd == "_transport_worker":
        return transport_worker(ns)
    commands: dict[str, Callable[[argparse.Namespace], Any]] = {
        "exchange": cmd_exchange, "scaling": cmd_scaling, "micro": cmd_micro,
        "member-vs-baseline": cmd_member_vs_baseline, "transport": cmd_transport,
        "agreement": cmd_agreement}
    commands[ns.cmd](ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
