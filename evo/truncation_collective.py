"""PBT with truncation selection moved by collectives: one sub-communicator per donor and a broadcast
inside it; no rank gathers all weights.

Usage: ``mpiexec -n 8 python -m evo.truncation_collective --env-id CartPole-v1`` (see ``--help``).
"""

from __future__ import annotations

from collections.abc import Sequence

from evo.cli import exit_process, run_strategy

DESCRIPTION = (
    'PBT with truncation selection moved by collectives: one sub-communicator per donor and a '
    'broadcast inside it; no rank gathers all weights. '
).strip()


def main(argv: Sequence[str] | None = None) -> int:
    return run_strategy("truncation_collective", argv, DESCRIPTION)


if __name__ == "__main__":
    exit_process(main())
