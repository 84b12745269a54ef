"""The generation loop: the member step (:mod:`~evo.loop.step`), written once, and two schedules
that decide when ``decide`` runs — :mod:`~evo.loop.sync` (once every member of a generation has
published) and :mod:`~evo.loop.asynchronous` (for each member when it publishes, on the newest
evaluation set every member has been scored on). Start / resume, checkpoints and records are
shared by both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evo.config import PBTConfig


def run(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Run (or resume) a PBT or baseline job on ``comm``. Returns the process exit code.

    ``schedule`` (baseline only, used by replay): hyperparameters to apply at the start of each
    generation, ``schedule[g]`` for generation ``g`` (the last entry holds for later ones).
    """
    if cfg.async_mode:
        from evo.loop.asynchronous import run_async

        return run_async(cfg, comm, schedule)
    from evo.loop.sync import run_sync

    return run_sync(cfg, comm, schedule)
