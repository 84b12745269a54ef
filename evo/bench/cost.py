"""``cost``: how far apart the members' training times drift when explore moves the hyperparameters that
set the cost (replay ratio, epochs, batch size), under the cost cap (``--max-cost-ratio``).

A real PBT run (``python -m evo.truncation`` under ``mpiexec``) from the algorithm's default search space,
explore on, small enough for a few minutes on a laptop: 4 members on 2 ranks, 10 generations of a few
hundred env steps. From its members.csv, per generation: the max/median of the members' training time
(``time_train_s``) and of their cost figure (gradient updates per env step, :mod:`evo.core.cost`).
Generation 0 is left out of the summary (warm-up: each rank's first ``learn()``). The last line is
``max/median member training time per generation: X``, X the largest ratio of the generations kept.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import mpi_module, num, ratio, table, write_outputs
from evo.records import read_csv

COST_COLUMNS = ["generation", "time_train_s_median", "time_train_s_max", "time_ratio", "cost_median", "cost_max",
                "cost_ratio", "capped"]
DEFAULT_ENV = {"dqn": "CartPole-v1"}
"""The env of an algorithm without continuous actions (others: Pendulum-v1)."""


def add_parser(sub: Any) -> None:
    """The ``cost`` subcommand's flags."""
    sp = sub.add_parser("cost", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="max/median member training time per generation from an algorithm's default space "
                             "(explore on, cost cap on)")
    sp.add_argument("--out", default="bench_out", help="output folder (CSV, JSON, the run's records)")
    sp.add_argument("--timeout", type=float, default=900, help="seconds for the run")
    sp.add_argument("--algo", default="sac", help="ppo, a2c, sac, td3 or dqn")
    sp.add_argument("--env-id", default=None, help="default: CartPole-v1 for dqn, else Pendulum-v1")
    sp.add_argument("--members", type=int, default=4)
    sp.add_argument("--ranks", type=int, default=2)
    sp.add_argument("--generations", type=int, default=10)
    sp.add_argument("--steps-per-generation", type=int, default=256)
    sp.add_argument("--n-envs", type=int, default=None, help="default: 1 off-policy, 2 on-policy")
    sp.add_argument("--n-steps", type=int, default=128, help="on-policy rollout length per env")
    sp.add_argument("--max-cost-ratio", type=float, default=None, help="default: the run's own default")
    sp.add_argument("--seed", type=int, default=0)


def generation_rows(members: Sequence[Mapping[str, str]], algo: str, n_envs: int, n_steps: int,
                    lineage: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """Per generation: the median and max of the members' training time and cost, and their ratios."""
    from evo.core.cost import CAP_OP, cost

    capped = {int(x["generation"]): sum(1 for c in x["changes"].values() if CAP_OP in str(c["op"]))
              for x in lineage}
    rows = []
    for gen in sorted({int(m["generation"]) for m in members}):
        mine = [m for m in members if int(m["generation"]) == gen]
        times = [num(m["time_train_s"]) for m in mine]
        costs = [cost(algo, {k[3:]: _value(v) for k, v in m.items() if k.startswith("hp_")}, n_envs, n_steps)
                 for m in mine]
        t_med, c_med = statistics.median(times), statistics.median(costs)
        rows.append({"generation": gen, "time_train_s_median": t_med, "time_train_s_max": max(times),
                     "time_ratio": ratio(max(times), t_med), "cost_median": c_med, "cost_max": max(costs),
                     "cost_ratio": ratio(max(costs), c_med), "capped": capped.get(gen - 1, 0)})
    return rows


def _value(text: str) -> Any:
    """A CSV cell as the number it holds (else the text: ``none``, ``auto``)."""
    value = num(text)
    if value != value:  # NaN: not a number
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def cmd_cost(ns: argparse.Namespace) -> int:
    from evo.core.algos import algo_spec

    spec = algo_spec(ns.algo)
    env_id = ns.env_id or DEFAULT_ENV.get(ns.algo, "Pendulum-v1")
    n_envs = ns.n_envs or (2 if spec.on_policy else 1)
    out = Path(ns.out)
    run_dir = out / f"cost-{ns.algo}"
    args = ["--algo", ns.algo, "--env-id", env_id, "--num-agents", str(ns.members), "--generations",
            str(ns.generations), "--steps-per-generation", str(ns.steps_per_generation), "--n-envs", str(n_envs),
            "--n-steps", str(ns.n_steps), "--eval-episodes", "1", "--seed", str(ns.seed), "--threads", "1",
            "--checkpoint-every", "0", "--no-tb-writer", "--verbose", "0", "--log-dir", str(out),
            "--exp-name", run_dir.name, "--overwrite"]
    if ns.max_cost_ratio is not None:
        args += ["--max-cost-ratio", str(ns.max_cost_ratio)]
    print(f"  running {ns.members} {ns.algo} members on {ns.ranks} ranks, {env_id}, {ns.generations} generations "
          f"of {ns.steps_per_generation} env steps ...", file=sys.stderr, flush=True)
    rc, _out, err, seconds = mpi_module(ns.ranks, "evo.truncation", args, ns.timeout)
    if rc != 0:
        raise SystemExit(f"evo.bench cost: the run failed (exit {rc}):\n{err[-3000:]}")
    from evo.records import read_jsonl

    lineage = read_jsonl(run_dir / "lineage.jsonl") if (run_dir / "lineage.jsonl").exists() else []
    rows = generation_rows(read_csv(run_dir / "members.csv"), ns.algo, n_envs, ns.n_steps, lineage)
    kept = [r for r in rows if r["generation"] > 0] or rows
    worst = max(r["time_ratio"] for r in kept)
    print(f"\ncost: --algo {ns.algo} --env-id {env_id}, {ns.members} members on {ns.ranks} ranks, n_envs {n_envs}, "
          f"{ns.generations} generations of {ns.steps_per_generation} env steps, {seconds:.0f} s; cost = gradient "
          f"updates per env step; capped = explores the cap moved before the generation")
    print(table(rows, COST_COLUMNS))
    write_outputs(out, f"cost_{ns.algo}", rows, COST_COLUMNS,
                  {"algo": ns.algo, "env_id": env_id, "members": ns.members, "ranks": ns.ranks, "n_envs": n_envs,
                   "generations": ns.generations, "steps_per_generation": ns.steps_per_generation,
                   "max_time_ratio": worst, "seconds": seconds})
    print(f"max/median member training time per generation: {worst:.3g}")
    return 0
