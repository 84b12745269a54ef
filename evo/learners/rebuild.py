"""Fresh training envs for a member whose envs failed."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.vec_env import VecEnv, VecTransposeImage

from evo.core import seeds
from evo.envs import make_vec_env


def rebuild_training_envs(learner: Any, attempt: int) -> None:
    """Fresh training envs for a member whose envs failed (an exception, non-finite observations or
    rewards): the old ones are closed, their episodes in progress end, and the model's next rollout
    starts from a reset. Normalisation statistics stay (they move with the weights). ``attempt``
    makes the new envs' seed differ from the failed ones'."""
    old = learner.raw_env
    raw: VecEnv = make_vec_env(learner.cfg.env_spec(), learner.cfg.n_envs,
                               seed=seeds.derive_seed(learner.seed, seeds.ENV, 1000 + attempt))
    learner.raw_env = raw
    if learner.vecnorm is not None:
        inner = learner.vecnorm.venv
        if isinstance(inner, VecTransposeImage):
            inner.venv = raw
        else:
            learner.vecnorm.venv = raw
        learner.env = learner.vecnorm
    else:
        learner.env = raw
    learner.model.set_env(learner.env, force_reset=True)
    try:
        old.close()
    except Exception:  # a broken env may not even close
        pass
