"""``python -m evo.report RUN [RUN ...] --out DIR``: the command line of :func:`evo.report.make.make_report`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from evo.errors import EvoError
from evo.report.make import make_report
from evo.report.runs import PROG
from evo.report.stats import MIN_RUNS_FOR_CI


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line's options."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Did PBT beat the baseline? Compares methods (groups of evo runs: PBT, baseline, "
                               "replay; per baseline also its best of N seeds, compute-matched with a PBT run "
                               "of N members) at one env-step budget per member: IQM with bootstrap CIs (from "
                               f"{MIN_RUNS_FOR_CI} runs; below, median and range), probability of improvement, the "
                               "random-policy reference, plots, summary.md and index.html.")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run directory (<log-dir>/<exp-name>), or LABEL=DIR to set its method's label "
                             "(runs with the same label form one method)")
    parser.add_argument("--out", default="report", help="output directory (created if missing)")
    parser.add_argument("--budget", type=_positive, default=None,
                        help="env steps per member to compare at (default: the largest one at which every run "
                             "was evaluated)")
    parser.add_argument("--reps", type=_positive, default=2000, help="bootstrap resamples for the CIs")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (reproducible CIs)")
    parser.add_argument("--gif", default=None, help="a GIF of the winner playing, shown in index.html "
                                                    "(runs' own winner.gif files, as `evo.enjoy RUN --gif` writes "
                                                    "them, are shown too)")
    parser.add_argument("--random-episodes", type=_positive, default=None,
                        help="measure the random-policy reference now with this many episodes (default: the one "
                             "stored in config.json, else the runs' eval_episodes)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report; 0 on success, the error's exit code (one line on stderr) on bad input."""
    args = build_parser().parse_args(argv)
    try:
        data = make_report(args.runs, args.out, budget=args.budget, reps=args.reps, seed=args.bootstrap_seed,
                           gif=args.gif, random_episodes=args.random_episodes)
    except EvoError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(data["text"])
    print(f"\nreport written to {args.out} (summary.md, index.html, scores.png, profile.png, ...)")
    return 0
