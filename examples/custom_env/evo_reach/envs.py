"""1-D reach: walk along a line of ``size`` cells to the goal cell.

Each episode puts the agent and the goal on two different random cells. Actions: 0 = left,
1 = right (a wall stops the agent at either end). Reward 1 on reaching the goal, which ends the
episode; the episode is cut after ``max_steps`` steps (default ``2 * size``). Moving towards the
goal every step is optimal, so PPO learns it within a few thousand steps.

``Reach-v0`` observes ``[position, goal]`` scaled to [-1, 1] (a Box); ``DictReach-v0`` observes
the same numbers as ``{"position": [p], "goal": [g]}`` (a Dict, for SB3's ``MultiInputPolicy``).
Both render ``rgb_array`` frames: one 16-pixel square per cell, the agent blue, the goal green.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

CELL = 16


class Reach(gym.Env):
    """The 1-D reach task with Box observations."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 10, max_steps: int | None = None, render_mode: str | None = None) -> None:
        if int(size) < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        self.size = int(size)
        self.max_steps = int(max_steps) if max_steps is not None else 2 * self.size
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(2)
        self.observation_space = self._space()
        self.position = 0
        self.goal = 1
        self.steps = 0

    def _space(self) -> spaces.Space[Any]:
        return spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def _scaled(self, cell: int) -> float:
        return 2.0 * cell / (self.size - 1) - 1.0

    def _obs(self) -> Any:
        return np.array([self._scaled(self.position), self._scaled(self.goal)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.position, self.goal = (int(c) for c in self.np_random.choice(self.size, size=2, replace=False))
        self.steps = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        move = 1 if int(action) == 1 else -1
        self.position = min(max(self.position + move, 0), self.size - 1)
        self.steps += 1
        reached = self.position == self.goal
        return self._obs(), float(reached), reached, self.steps >= self.max_steps and not reached, {}

    def render(self) -> Any:
        frame = np.full((CELL, CELL * self.size, 3), 255, dtype=np.uint8)
        frame[:, CELL * self.goal:CELL * (self.goal + 1)] = (40, 180, 60)
        frame[2:-2, CELL * self.position + 2:CELL * (self.position + 1) - 2] = (40, 80, 220)
        return frame


class DictReach(Reach):
    """The same task observed as a Dict ``{"position": [p], "goal": [g]}``."""

    def _space(self) -> spaces.Space[Any]:
        box = spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
        return spaces.Dict({"position": box, "goal": box})

    def _obs(self) -> Any:
        p, g = super()._obs()
        return {"position": np.array([p], dtype=np.float32), "goal": np.array([g], dtype=np.float32)}


gym.register(id="Reach-v0", entry_point="evo_reach.envs:Reach")
gym.register(id="DictReach-v0", entry_point="evo_reach.envs:DictReach")
