"""Stop requests: SIGTERM / SIGUSR1, as Slurm sends them before preemption or the time limit.

The handler is installed by the entry points before mpi4py starts MPI: MPICH installs its own
SIGUSR1 handler at start-up and chains to one that already exists, but would swallow the signal
if Python's handler came later. A signal that arrives during start-up is therefore kept, and the
generation loop stops at its first safe point.
"""

from __future__ import annotations

import signal
import time
from typing import Any


class StopFlag:
    """Set by SIGTERM / SIGUSR1 (what Slurm sends before preemption or the time limit)."""

    SIGNALS = ("SIGTERM", "SIGUSR1")

    def __init__(self) -> None:
        self.signal: int | None = None
        self.time: float | None = None
        self._installed = False

    def install(self) -> StopFlag:
        """Install the handlers once; later calls keep them (and any signal already recorded)."""
        if not self._installed:
            for name in self.SIGNALS:
                if hasattr(signal, name):
                    signal.signal(getattr(signal, name), self._handler)
            self._installed = True
        return self

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.signal is None:
            self.signal, self.time = signum, time.monotonic()
        # From now on the job is stopping: ignore repeats (a batch script may re-send the signal).
        # Python restores SIG_DFL for its own handlers at shutdown, and a repeated SIGUSR1 would
        # then kill a rank that is already exiting cleanly with EXIT_PREEMPTED; SIG_IGN stays.
        for name in self.SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)

    def clear(self) -> None:
        """Forget a recorded signal and re-arm (for tests that run several jobs in one process)."""
        self.signal = self.time = None
        self._installed = False
        self.install()

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def __call__(self) -> bool:
        return self.requested


STOP = StopFlag()
"""The process-wide stop flag (one per rank)."""
