"""``member-vs-baseline``: training env-steps/s of PBT members next to ``evo.baseline`` seeds doing the
same work (the same named hyperparameter set, rollout and generations) on as many ranks.

Both read the loop's own members.csv; the ratio is PBT's median over baseline's median."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import mpi_module, num, ratio, table, write_outputs
from evo.records import read_csv

MVB_COLUMNS = ["run", "ranks", "env_steps_per_s_median", "env_steps_per_s_mean", "gens_used", "time_train_s",
               "time_eval_s", "seconds"]


def set_hparams(name: str, rollout: int) -> dict[str, Any]:
    """The algorithm hyperparameters of the named PPO set (its run settings are given as flags)."""
    from evo.envs import split_env_settings
    from evo.hparam_sets import get_set, split_set

    _env, values = split_env_settings(get_set(name))
    hp, _run = split_set(values, rollout, "ppo")
    return hp


def summarize(label: str, ranks: int, members: Sequence[Mapping[str, str]], seconds: float) -> dict[str, Any]:
    """One row: env-steps/s of every member in every generation after the first (warm-up)."""
    gens = sorted({int(m["generation"]) for m in members})
    skip = 1 if len(gens) > 1 else 0
    kept = [m for m in members if int(m["generation"]) >= gens[skip]]
    sps = [num(m["env_steps_per_s"]) for m in kept]
    return {"run": label, "ranks": ranks, "env_steps_per_s_median": statistics.median(sps),
            "env_steps_per_s_mean": statistics.fmean(sps), "gens_used": f"{gens[skip]}-{gens[-1]}",
            "time_train_s": statistics.median(num(m["time_train_s"]) for m in kept),
            "time_eval_s": statistics.median(num(m["time_eval_s"]) for m in kept), "seconds": seconds,
            "hparams": {k: members[-1][k] for k in members[-1] if k.startswith("hp_")}}


def cmd_member_vs_baseline(ns: argparse.Namespace) -> None:
    import yaml

    rollout = ns.n_envs * ns.n_steps
    hp = set_hparams(ns.param_name, rollout)
    common = ["--env-id", ns.env_id, "--n-envs", str(ns.n_envs), "--n-steps", str(ns.n_steps),
              "--policy", ns.policy, "--eval-episodes", str(ns.eval_episodes), "--no-tb-writer",
              "--checkpoint-every", "0", "--threads", str(ns.threads), "--verbose", "0"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        tmp = Path(tmpdir)
        space = tmp / "fixed.yaml"
        space.write_text(yaml.safe_dump(hp))
        runs = {
            f"pbt_members (evo.pbt, {ns.ranks} ranks)": ("evo.pbt", [
                *common, "--log-dir", str(tmp), "--exp-name", "pbt", "--hyperparams", str(space),
                "--generations", str(ns.generations), "--steps-per-generation", str(rollout)], tmp / "pbt"),
            f"baseline (evo.baseline --param-name {ns.param_name}, {ns.ranks} seeds)": ("evo.baseline", [
                *common, "--log-dir", str(tmp), "--exp-name", "base", "--param-name", ns.param_name,
                "--num-timesteps", str(ns.generations * rollout), "--eval-every", str(rollout),
                "--save-every", "0"], tmp / "base"),
        }
        for label, (module, args, run_dir) in runs.items():
            print(f"  running {label} ...", file=sys.stderr, flush=True)
            rc, _out, err, secs = mpi_module(ns.ranks, module, args, ns.timeout)
            if rc != 0:
                raise SystemExit(f"evo.bench: {label} failed (exit {rc}):\n{err[-3000:]}")
            rows.append(summarize(label, ns.ranks, read_csv(run_dir / "members.csv"), secs))
    r = ratio(rows[0]["env_steps_per_s_median"], rows[1]["env_steps_per_s_median"])
    print(f"\nmember-vs-baseline: {ns.env_id} policy={ns.policy} n_envs={ns.n_envs} n_steps={ns.n_steps} "
          f"generations={ns.generations} (gen 0 skipped: warm-up), PPO set {ns.param_name}: {hp}")
    print(table(rows, MVB_COLUMNS))
    print(f"ratio pbt_members / baseline env-steps/s = {r:.6g}")
    if rows[0]["hparams"] != rows[1]["hparams"]:
        print(f"WARNING: hparams differ: pbt {rows[0]['hparams']} vs baseline {rows[1]['hparams']}")
    write_outputs(Path(ns.out), "member_vs_baseline", rows, [*MVB_COLUMNS, "hparams"],
                  {"ratio": r, "env_id": ns.env_id, "policy": ns.policy, "n_envs": ns.n_envs, "n_steps": ns.n_steps,
                   "generations": ns.generations, "ranks": ns.ranks, "ppo": hp})
