"""``python -m evo.bench``'s command line: one subcommand per benchmark (see :mod:`evo.bench`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

HELP = ("Benchmarks of evo: exchange cost, scaling, flat-state moves, PBT members vs baseline, transports, "
        "members' training cost, time outside the loop.")


def _common(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--out", default="bench_out", help="output folder (CSV, JSON, PNG)")
    sp.add_argument("--timeout", type=float, default=900, help="seconds per launched job")


def _sweep_parsers(sub: Any, rules: list[str], transports: list[str]) -> None:
    from evo.bench.sweep import CARTPOLE, DEFAULT_RULES, PROCGEN

    for name, ranks in (("exchange", [4, 8]), ("scaling", [2, 4, 8])):
        sp = sub.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                            help=f"real PBT runs per rule x transport x world size (default ranks {ranks})")
        _common(sp)
        sp.add_argument("--ranks", type=int, nargs="+", default=ranks)
        sp.add_argument("--rules", nargs="+", choices=rules, default=None,
                        help=f"selection rules (default: {' '.join(DEFAULT_RULES)})")
        sp.add_argument("--transports", nargs="+", choices=transports, default=None,
                        help="transports (hub: the asynchronous schedule); default: every synchronous one")
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


def _transport_parser(sub: Any, rules: list[str], transports: list[str]) -> None:
    from evo.bench.transport import DEFAULT_RULES, DEFAULTS, SMOKE

    sp = sub.add_parser("transport", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="the loop's exchange phases on synthetic members, per rule x transport x world size")
    _common(sp)
    sp.add_argument("--ranks", type=int, nargs="+", default=None, help=f"world sizes; default {DEFAULTS['ranks']}")
    sp.add_argument("--mb", type=float, nargs="+", default=None,
                    help=f"flat state sizes in MB; default {DEFAULTS['mb']} (the CartPole MLP and the IMPALA CNN)")
    sp.add_argument("--rules", nargs="+", choices=rules, default=None, help=f"default: {' '.join(DEFAULT_RULES)}")
    sp.add_argument("--transports", nargs="+", choices=transports, default=None,
                    help="registered transports, and hub for the asynchronous schedule; default: all")
    sp.add_argument("--generations", type=int, default=None, help=f"intervals per member; default "
                                                                   f"{DEFAULTS['generations']}")
    sp.add_argument("--interval-s", type=float, default=None,
                    help=f"mean fake training seconds; default {DEFAULTS['interval_s']}")
    sp.add_argument("--spread", type=float, default=0.3, help="sigma of the per-member lognormal slowness")
    sp.add_argument("--jitter", type=float, default=0.1, help="sigma of the per-interval lognormal jitter")
    sp.add_argument("--quantile", type=float, default=0.25, help="truncation quantile")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--no-exchange", action="store_true", help="members never copy (the loop's --no-exchange)")
    sp.add_argument("--smoke", action="store_true", help=f"tiny and quick: {SMOKE} (flags given win)")

    sp = sub.add_parser("_transport_worker")
    sp.add_argument("--config", required=True)
    sp.add_argument("--result", required=True)
    sp.add_argument("--workdir", required=True)


def build_parser() -> argparse.ArgumentParser:
    from evo.bench.micro import MICRO_NETS
    from evo.bench.transport import transport_names
    from evo.core.rules import RULES

    rules, transports = sorted(RULES), transport_names()
    p = argparse.ArgumentParser(prog="python -m evo.bench", description=HELP,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    _sweep_parsers(sub, rules, transports)

    sp = sub.add_parser("micro", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="flat-state size, pack/unpack and MPI move times of real networks")
    _common(sp)
    sp.add_argument("--repeats", type=int, default=20)
    sp.add_argument("--ranks", type=int, default=2)
    sp.add_argument("--nets", nargs="+", choices=[n for n, _, _ in MICRO_NETS], default=None)
    sp = sub.add_parser("_micro_worker")
    sp.add_argument("--repeats", type=int, default=20)
    sp.add_argument("--result", required=True)
    sp.add_argument("--nets", nargs="+", default=None)

    sp = sub.add_parser("member-vs-baseline", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="training env-steps/s of PBT members vs evo.baseline seeds doing the same work")
    _common(sp)
    sp.add_argument("--env-id", default="bigfish")
    sp.add_argument("--n-envs", type=int, default=16)
    sp.add_argument("--n-steps", type=int, default=256)
    sp.add_argument("--policy", default="CnnPolicy")
    sp.add_argument("--param-name", default="baseline3", help="PPO set both runs use (evo.hparam_sets)")
    sp.add_argument("--generations", type=int, default=3, help="rollouts per run (one per generation)")
    sp.add_argument("--eval-episodes", type=int, default=2)
    sp.add_argument("--ranks", type=int, default=2, help="ranks of each run (PBT members / baseline seeds), >= 2")
    sp.add_argument("--threads", type=int, default=0, help="torch threads (0 = evo's default)")

    sp = sub.add_parser("agreement", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="paired vs unpaired evaluation: agreement on the bottom quantile of a trained run")
    sp.add_argument("run", help="a finished PBT run directory (its newest checkpoint is evaluated)")
    sp.add_argument("--episodes", type=int, default=10, help="episodes per evaluation")
    sp.add_argument("--trials", type=int, default=20, help="pairs of independent evaluations")
    sp.add_argument("--quantile", type=float, default=0.25, help="bottom quantile (as truncation)")
    sp.add_argument("--out", default="bench_out", help="output folder")

    _transport_parser(sub, rules, transports)
    from evo.bench.cost import add_parser as add_cost_parser

    add_cost_parser(sub)
    from evo.bench.outside import add_parser as add_outside_parser

    add_outside_parser(sub)
    return p


def _commands() -> dict[str, Callable[[argparse.Namespace], Any]]:
    from evo.bench.agreement import cmd_agreement
    from evo.bench.cost import cmd_cost
    from evo.bench.micro import cmd_micro, micro_worker
    from evo.bench.outside import cmd_outside
    from evo.bench.phases import transport_worker
    from evo.bench.sweep import cmd_exchange, cmd_scaling
    from evo.bench.transport import cmd_transport
    from evo.bench.versus import cmd_member_vs_baseline

    return {"exchange": cmd_exchange, "scaling": cmd_scaling, "micro": cmd_micro, "_micro_worker": micro_worker,
            "member-vs-baseline": cmd_member_vs_baseline, "transport": cmd_transport,
            "_transport_worker": transport_worker, "agreement": cmd_agreement, "cost": cmd_cost,
            "outside": cmd_outside}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one benchmark; 0 on success (a failed benchmark raises SystemExit with its reason)."""
    from evo.errors import ConfigError

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ns = build_parser().parse_args(argv)
    try:
        rc = _commands()[ns.cmd](ns)
    except ConfigError as exc:
        raise SystemExit(f"evo.bench {ns.cmd}: {exc}") from None
    return rc if isinstance(rc, int) else 0
