"""A CartPole that fails once, on purpose, in one MPI rank's process (for tests of failed members).

``--env-id faulty_env:Faulty-v0 --env-kwargs fault=nan_reward rank=1 after=300`` (with this folder on
PYTHONPATH): in rank 1's process, the env step that comes after 300 steps of that process's envs
returns a NaN reward (``nan_reward``), a NaN observation (``nan_obs``) or raises (``raise``). Only
once per process, so a member that got fresh envs trains normally again.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

_state = {"steps": 0, "fired": False}


class Faulty(gym.Wrapper):
    def __init__(self, fault: str = "nan_reward", rank: int = 1, after: int = 300) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.fault, self.rank, self.after = fault, int(rank), int(after)

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        here = int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))
        if here == self.rank and not _state["fired"]:
            _state["steps"] += 1
            if _state["steps"] > self.after:
                _state["fired"] = True
                if self.fault == "raise":
                    raise RuntimeError("the faulty env broke down")
                if self.fault == "nan_obs":
                    obs = np.full_like(obs, np.nan)
                else:
                    reward = float("nan")
        return obs, reward, terminated, truncated, info


gym.register("Faulty-v0", entry_point=Faulty, max_episode_steps=500)
