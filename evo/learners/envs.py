"""A member's envs: the training VecEnv (with VecNormalize when asked), the evaluation env and the
held-out-level env, each seeded from the member's index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, VecTransposeImage

from evo.core import seeds
from evo.envs import make_vec_env


@dataclass
class MemberEnvs:
    raw: VecEnv
    """The training envs without normalisation (what a checkpoint snapshots)."""
    vecnorm: VecNormalize | None
    """The normalising wrapper around ``raw`` (``--normalize-obs`` / ``--normalize-reward``)."""
    train: VecEnv
    """What the model trains on: ``vecnorm`` if any, else ``raw``."""
    evaluation: VecEnv
    test: VecEnv | None
    """Held-out levels (``--eval-test-levels``)."""


def build_envs(cfg: Any, index: int, seed: int, gamma: float) -> MemberEnvs:
    """Member ``index``'s envs; ``gamma`` is VecNormalize's discount for the return estimate."""
    env_spec = cfg.env_spec()
    raw: VecEnv = make_vec_env(env_spec, cfg.n_envs, seed=seed)
    norm_obs = bool(getattr(cfg, "normalize_obs", False))
    norm_reward = bool(getattr(cfg, "normalize_reward", False))
    vecnorm: VecNormalize | None = None
    if norm_obs or norm_reward:
        inner = raw
        space = inner.observation_space
        if is_image_space(space) and not is_image_space_channels_first(space):  # type: ignore[arg-type]
            # SB3 would put its transposing wrapper outside VecNormalize, whose raw observations
            # (stored by off-policy algorithms) would then keep the wrong layout
            inner = VecTransposeImage(inner)
        vecnorm = VecNormalize(inner, training=True, norm_obs=norm_obs, norm_reward=norm_reward, gamma=gamma)

    def frozen(venv: VecEnv) -> VecEnv:
        """Observations normalised with frozen statistics when training normalises them; raw rewards."""
        if vecnorm is None or not vecnorm.norm_obs:
            return venv
        return VecNormalize(venv, training=False, norm_obs=True, norm_reward=False)

    n_eval = max(1, min(cfg.n_envs, cfg.eval_episodes))
    evaluation = frozen(make_vec_env(env_spec, n_eval, seed=seeds.env_seed(cfg.seed, index, 1)))
    test = None
    if cfg.eval_test_levels:
        test = frozen(make_vec_env(env_spec, n_eval, seed=seeds.env_seed(cfg.seed, index, 2), test_levels=True))
    return MemberEnvs(raw, vecnorm, vecnorm if vecnorm is not None else raw, evaluation, test)
