"""The random-policy reference: what uniformly random actions score on a run's evaluation env.

A score only means something next to a floor. :func:`random_policy_score` plays uniformly random
actions on the evaluation env built exactly as a member builds it (same env spec, same number of
envs, the same paired evaluation seed of generation 0) and returns the mean return over
``n_episodes`` episodes, allocated to the envs the way stable-baselines3's ``evaluate_policy``
allocates them, so the reference and a member's score average the same kind of episodes.

Actions come from ``numpy.random.default_rng`` seeded with ``evo.core.seeds.rng(seed, REFERENCE)``:
the same ``(config, n_episodes, seed)`` always gives the same score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from evo.core import seeds
from evo.errors import ConfigError


def sample_actions(space: Any, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniformly random actions of a Gymnasium ``space`` (one per env), drawn from ``rng``."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return int(space.start) + rng.integers(0, int(space.n), size=n)
    if isinstance(space, spaces.MultiDiscrete):
        return np.asarray(space.start) + rng.integers(0, np.asarray(space.nvec), size=(n, *space.nvec.shape))
    if isinstance(space, spaces.MultiBinary):
        return rng.integers(0, 2, size=(n, *np.atleast_1d(space.n)))
    if isinstance(space, spaces.Box):
        low = np.broadcast_to(space.low, space.shape).astype(np.float64)
        high = np.broadcast_to(space.high, space.shape).astype(np.float64)
        bounded = np.isfinite(low) & np.isfinite(high)
        out = rng.standard_normal((n, *space.shape))  # unbounded dimensions: a standard normal
        uniform = rng.uniform(np.where(bounded, low, 0.0), np.where(bounded, high, 1.0), size=(n, *space.shape))
        return np.where(bounded, uniform, out).astype(space.dtype)
    raise ConfigError(f"random-policy reference: unsupported action space {space}")


def episode_targets(n_episodes: int, n_envs: int) -> np.ndarray:
    """Episodes each env plays: ``(n + i) // n_envs`` for env ``i``, as ``evaluate_policy`` does."""
    return np.array([(n_episodes + i) // n_envs for i in range(n_envs)], dtype=np.int64)


def play_random(env: Any, n_episodes: int, rng: np.random.Generator) -> list[float]:
    """Returns of ``n_episodes`` random-action episodes on a seeded, not yet reset VecEnv."""
    n_envs = env.num_envs
    targets = episode_targets(n_episodes, n_envs)
    counts = np.zeros(n_envs, dtype=np.int64)
    current = np.zeros(n_envs, dtype=np.float64)
    returns: list[float] = []
    env.reset()
    while (counts < targets).any():
        _, rewards, dones, infos = env.step(sample_actions(env.action_space, rng, n_envs))
        current += rewards
        for i in np.flatnonzero(dones):
            if counts[i] < targets[i]:
                episode = infos[i].get("episode")
                returns.append(float(episode["r"]) if episode is not None else float(current[i]))
                counts[i] += 1
            current[i] = 0.0
    return returns


def random_policy_score(cfg_dict: Mapping[str, Any], n_episodes: int, seed: int) -> float:
    """Mean return of uniformly random actions over ``n_episodes`` episodes of the evaluation env.

    ``cfg_dict`` is a run's ``config`` (``config.json``): the env (``env_id``, its ProcGen level
    options or its ``env_kwargs`` and ``env_wrapper`` chain) and ``n_envs`` are read (defaults as
    in evo's CLI), so the floor is measured on the env the members are scored on.
    """
    from evo.envs import EnvSpec, make_vec_env

    if n_episodes <= 0:
        raise ConfigError(f"random-policy reference: n_episodes must be > 0, got {n_episodes}")
    spec = EnvSpec.from_config(cfg_dict)
    n_envs = max(1, min(int(cfg_dict.get("n_envs", 1)), n_episodes))
    env = make_vec_env(spec, n_envs=n_envs, seed=seeds.env_seed(seed, 0, 1))
    try:
        env.seed(seeds.eval_seed(seed, 0, 0, paired=True))
        returns = play_random(env, n_episodes, seeds.rng(seed, seeds.REFERENCE))
    finally:
        env.close()
    return float(np.mean(returns))


__all__ = ["episode_targets", "play_random", "random_policy_score", "sample_actions"]
