"""Can an algorithm drive an env? A cheap check of the env's action space, made in config validation
so every rank rejects a bad ``--algo``/``--env-id`` pair with the same one-line error.

Only gymnasium here (no stable-baselines3): ProcGen games are known to have ``Discrete(15)``; a
Gymnasium id is built once (without rendering) to read its action space.
"""

from __future__ import annotations

import functools
from typing import Any

from evo.core.algos import algo_spec
from evo.errors import ConfigError


@functools.lru_cache(maxsize=64)
def action_space_of(env_id: str) -> tuple[str, str] | None:
    """``(class name, description)`` of ``env_id``'s action space, or ``None`` if the env cannot be
    built here (its own factory reports that later, with its own message)."""
    from evo.envs import procgen_game

    if procgen_game(env_id):
        return "Discrete", "Discrete(15)"
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except Exception:
        return None
    try:
        space = env.action_space
        return type(space).__name__, str(space)
    finally:
        env.close()


def check_algo_env(algo: str, spec: Any) -> None:
    """One-line :class:`ConfigError` when ``algo`` cannot act in the env of ``spec`` (an EnvSpec)."""
    allowed = algo_spec(algo).action_spaces
    found = action_space_of(spec.env_id)
    if found is None:
        return
    kind, text = found
    if kind not in allowed:
        need = {"Box": "a continuous (Box)", "Discrete": "a discrete (Discrete)"}
        what = need[allowed[0]] if len(allowed) == 1 else f"one of {', '.join(allowed)}"
        raise ConfigError(f"--algo {algo} needs {what} action space, but {spec.env_id} has {text}")
