"""Single-agent PPO baseline with the same member code and logging as PBT.

``python -m evo.baseline --exp-name easy-run-200 --env-id bigfish --param-name baseline
--num-levels 200 --distribution-mode easy --num-timesteps 25000000``; under ``mpiexec -n K`` it
trains K independent seeds (seed + rank), the fair comparison to a K-member population.
"""

from __future__ import annotations

from collections.abc import Sequence

from evo.cli import exit_process, run_baseline

DESCRIPTION = "Train PPO agents (one per MPI rank, independent seeds) with a named hyperparameter set."


def main(argv: Sequence[str] | None = None) -> int:
    return run_baseline(argv, DESCRIPTION)


if __name__ == "__main__":
    exit_process(main())
