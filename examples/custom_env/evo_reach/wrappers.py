"""A wrapper to pass with ``--wrapper evo_reach.wrappers:StepPenalty penalty=0.05``."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym


class StepPenalty(gym.RewardWrapper):
    """Subtract ``penalty`` from every step's reward: a return of ``1 - penalty * length`` rewards
    reaching the goal by the shortest path."""

    def __init__(self, env: gym.Env[Any, Any], penalty: float = 0.01) -> None:
        super().__init__(env)
        self.penalty = float(penalty)

    def reward(self, reward: SupportsFloat) -> float:
        return float(reward) - self.penalty
