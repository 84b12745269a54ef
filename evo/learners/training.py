"""One generation of training: what it did (:class:`TrainStats`), the SB3 callback that records it,
and the horizon of a member's schedules (:func:`planned_env_steps`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback


@dataclass
class TrainStats:
    """What one generation of training did."""

    seconds: float = 0.0
    rollout_seconds: float = 0.0
    episodes: list[tuple[int, float, int]] = field(default_factory=list)
    """(env step, return, length) of every episode that ended during training."""
    losses: dict[str, float] = field(default_factory=dict)
    stopped: bool = False
    """Training was cut short by a stop request (preemption)."""

    @property
    def learn_seconds(self) -> float:
        return max(self.seconds - self.rollout_seconds, 0.0)


class GenerationCallback(BaseCallback):
    """Times rollouts, collects finished episodes, and stops early on request."""

    def __init__(self, stats: TrainStats, should_stop: Any = None) -> None:
        super().__init__()
        self.stats = stats
        self.should_stop = should_stop
        self._t_rollout = 0.0

    def _on_rollout_start(self) -> None:
        self._t_rollout = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.stats.rollout_seconds += time.perf_counter() - self._t_rollout

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            ep = info.get("episode")
            if ep is not None:
                self.stats.episodes.append((int(self.num_timesteps), float(ep["r"]), int(ep["l"])))
        if self.should_stop is not None and self.should_stop():
            self.stats.stopped = True
            return False
        return True


def planned_env_steps(cfg: Any, default: int = 1_000_000) -> int:
    """Env steps a member trains in its whole run (generations x steps per generation), the horizon
    of schedules such as DQN's exploration; ``default`` when the config does not say. A resumed run
    keeps the horizon it was first planned with (``horizon_env_steps``), so a resume that adds
    generations continues the schedules instead of stretching them."""
    horizon = int(getattr(cfg, "horizon_env_steps", 0) or 0)
    if horizon > 0:
        return horizon
    generations = int(getattr(cfg, "generations", 0) or 0)
    per_generation = int(getattr(cfg, "steps_per_generation", 0) or 0)
    if generations > 0 and per_generation > 0:
        return generations * per_generation
    total = int(getattr(cfg, "num_timesteps", 0) or 0)
    return total if total > 0 else default
