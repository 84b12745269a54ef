"""Replay a PBT run's winning hyperparameter schedule on a fresh agent.

``python -m evo.replay <pbt-run-dir>`` trains one new PPO agent (or K seeds under
``mpiexec -n K``) from scratch with the hyperparameters the final winner's ancestors trained
with, generation by generation (the "replay" of the PBT paper and of Ray Tune's
``PopulationBasedTrainingReplay``). It answers whether the schedule, rather than the weights
PBT selected along the way, carries the result.

The run is a baseline run (same loop, member code and records as ``python -m evo.baseline``)
with the PBT run's env settings, generations and steps per generation; the schedule is
:func:`evo.report.hparam_schedule` of the PBT run, applied at the start of every generation,
and is saved as ``replay_schedule.json`` in the replay's run directory.

Default output: ``<pbt-run-dir>/../<pbt-exp-name>-replay``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.cli import exit_process
from evo.errors import ConfigError

PROG = "python -m evo.replay"
DESCRIPTION = ("Train a fresh agent that follows the final PBT winner's hyperparameter schedule "
               "(one agent per MPI rank, independent seeds).")

ENV_KEYS = ("env_id", "n_envs", "n_steps", "policy", "eval_episodes", "eval_deterministic", "eval_test_levels",
            "num_levels", "start_level", "distribution_mode", "seed", "threads", "checkpoint_every", "algo",
            "normalize_obs", "normalize_reward", "device", "paired_eval", "env_kwargs", "env_wrapper")
"""Settings copied from the PBT run's config (flags given to replay override some of them)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    p.add_argument("run_dir", metavar="PBT_RUN_DIR", help="the PBT run to replay (<log-dir>/<exp-name>)")
    p.add_argument("--exp-name", default=None, help="replay run name (default: <pbt-exp-name>-replay)")
    p.add_argument("--log-dir", default=None, help="root folder of the replay run (default: the PBT run's parent)")
    p.add_argument("--seed", type=int, default=None, help="base seed (default: the PBT run's); rank i uses seed + i")
    p.add_argument("--eval-episodes", type=int, default=None, help="episodes per evaluation (default: the PBT run's)")
    p.add_argument("--tb-writer", action=argparse.BooleanOptionalAction, default=True,
                   help="write TensorBoard event files (default: on)")
    p.add_argument("--overwrite", action="store_true", help="delete an existing replay run directory first")
    p.add_argument("--resume", action="store_true", help="continue an interrupted replay from its checkpoint")
    p.add_argument("--verbose", type=int, default=1, help="0 = quiet, 1 = one line per generation (default: 1)")
    return p


def plan_replay(run_dir: str | Path) -> dict[str, Any]:
    """(Pure, reads files) What to replay: the PBT run's config, winner ancestry and schedule."""
    from evo.report import hparam_schedule, load_run, winner_ancestry

    run = load_run(run_dir)
    if run.kind != "pbt":
        raise ConfigError(f"{run.path} is a {run.kind} run, not a PBT run: there is no schedule to replay")
    ancestry = winner_ancestry(run)
    schedule = hparam_schedule(run)
    recorded = len(run.generation_ids)
    planned = int(run.config.get("generations", recorded))
    return {
        "source_run": str(run.path.resolve()),
        "source_exp_name": run.path.name,
        "config": run.config,
        "winner": ancestry[-1][1],
        "ancestry": [list(a) for a in ancestry],
        "schedule": schedule,
        "generations_recorded": recorded,
        "generations_planned": planned,
    }


def make_config(plan: dict[str, Any], args: argparse.Namespace) -> Any:
    """The :class:`~evo.config.BaselineConfig` of the replay run."""
    from evo.config import BaselineConfig

    src = plan["config"]
    values = {k: src[k] for k in ENV_KEYS if k in src}
    schedule = plan["schedule"]
    spg = int(src["steps_per_generation"])
    generations = len(schedule)
    if args.seed is not None:
        values["seed"] = args.seed
    if args.eval_episodes is not None:
        values["eval_episodes"] = args.eval_episodes
    src_dir = Path(plan["source_run"])
    cfg = BaselineConfig(
        **values,
        log_dir=str(args.log_dir) if args.log_dir is not None else str(src_dir.parent),
        exp_name=args.exp_name or f"{plan['source_exp_name']}-replay",
        tb_writer=args.tb_writer, overwrite=args.overwrite, resume=args.resume, verbose=args.verbose,
        param_name="replay", num_timesteps=generations * spg, eval_every=spg,
        generations=generations, steps_per_generation=spg, set_hparams=dict(schedule[0]),
    )
    cfg.strategy = "baseline"
    if cfg.run_dir.resolve() == src_dir:
        raise ConfigError("the replay would overwrite the PBT run it replays: choose another --exp-name")
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from evo import loop
        from evo.comm import root_decides, world
        from evo.records import write_json

        comm = world()
        plan = root_decides(comm, lambda: plan_replay(args.run_dir))
        from evo.errors import everywhere

        with everywhere():  # the plan was broadcast: every rank raises the same error
            cfg = make_config(plan, args)
            cfg.validate()
        if comm.Get_rank() == 0 and plan["generations_recorded"] < plan["generations_planned"]:
            print(f"{PROG}: note: the PBT run recorded {plan['generations_recorded']} of its "
                  f"{plan['generations_planned']} generations; replaying those", file=sys.stderr, flush=True)
        code = loop.run(cfg, comm, schedule=plan["schedule"])
        if comm.Get_rank() == 0:
            write_json(cfg.run_dir / "replay_schedule.json", {
                "source_run": plan["source_run"], "winner": plan["winner"], "ancestry": plan["ancestry"],
                "steps_per_generation": cfg.steps_per_generation, "generations": cfg.generations,
                "schedule": plan["schedule"],
            })
        return int(code)

    from evo.cli import main_guard

    return main_guard(body, PROG)


if __name__ == "__main__":
    exit_process(main())
