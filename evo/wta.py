"""PBT with winner-takes-all: the best member's weights, optimizer state and hyperparameters are
broadcast to every other member, who then explore.

Usage: ``mpiexec -n 8 python -m evo.wta --env-id CartPole-v1`` (see ``--help``).
"""

from __future__ import annotations

from collections.abc import Sequence

from evo.cli import exit_process, run_strategy

DESCRIPTION = (
    "PBT with winner-takes-all: the best member's weights, optimizer state and hyperparameters "
    'are broadcast to every other member, who then explore. '
).strip()


def main(argv: Sequence[str] | None = None) -> int:
    return run_strategy("wta", argv, DESCRIPTION)


if __name__ == "__main__":
    exit_process(main())
