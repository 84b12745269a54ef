"""The random-policy reference: what uniformly random actions score on a run's evaluation env.

A score only means something next to a floor. :func:`random_policy_score` plays uniformly random
actions on the episodes a member is scored on: the evaluation envs built as a member builds them
(same env spec), the same paired evaluation set (generation 0's seed) and the same path
(:func:`evo.learners.evaluation.play`: every episode played to its end, ``eval_envs`` side by side),
and returns their mean return.

Episode ``j``'s actions come from its own generator ``evo.core.seeds.rng(seed, REFERENCE, j)``: the
same ``(config, n_episodes, seed)`` always gives the same score, whatever ``eval_envs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


class RandomActor:
    """Uniformly random actions (an :class:`evo.learners.evaluation.Actor`), each episode from its own stream."""

    def __init__(self, seed: int, action_space: Any) -> None:
        self.seed = seed
        self.action_space = action_space

    def rng(self, seed: int, episode: int) -> np.random.Generator:
        return seeds.rng(self.seed, seeds.REFERENCE, episode)

    def rows(self, n_episodes: int) -> int:
        return n_episodes  # no forward pass: any grouping will do

    def act(self, episodes: Sequence[Any], rows: int) -> list[Any]:
        return [sample_actions(self.action_space, e.rng, 1)[0] for e in episodes]


def random_policy_score(cfg_dict: Mapping[str, Any], n_episodes: int, seed: int) -> float:
    """Mean return of uniformly random actions over ``n_episodes`` episodes of the evaluation set.

    ``cfg_dict`` is a run's ``config`` (``config.json``): the env (``env_id``, its ProcGen level
    options or its ``env_kwargs`` and ``env_wrapper`` chain) and ``eval_envs`` are read (defaults as
    in evo's CLI), so the floor is measured on the env the members are scored on.
    """
    from evo.envs import EnvSpec
    from evo.learners.envs import make_eval_envs
    from evo.learners.evaluation import play

    if n_episodes <= 0:
        raise ConfigError(f"random-policy reference: n_episodes must be > 0, got {n_episodes}")
    envs = make_eval_envs(EnvSpec.from_config(cfg_dict))
    try:
        returns = play(envs, RandomActor(seed, envs.action_space), n_episodes, seeds.eval_seed(seed, 0, 0, paired=True),
                       int(cfg_dict.get("eval_envs", 0)))
    finally:
        envs.close()
    return float(np.mean(returns))


__all__ = ["RandomActor", "random_policy_score", "sample_actions"]
