"""PBT with truncation selection, point to point: members in the bottom quantile each copy a member
drawn from the top quantile (Isend/Irecv between the pairs only), then explore.

Usage: ``mpiexec -n 8 python -m evo.truncation --env-id CartPole-v1`` (see ``--help``).
"""

from __future__ import annotations

from collections.abc import Sequence

from evo.cli import exit_process, run_strategy

DESCRIPTION = (
    'PBT with truncation selection, point to point: members in the bottom quantile each copy a '
    'member drawn from the top quantile (Isend/Irecv between the pairs only), then explore. '
).strip()


def main(argv: Sequence[str] | None = None) -> int:
    return run_strategy("truncation", argv, DESCRIPTION)


if __name__ == "__main__":
    exit_process(main())
