"""A member's envs: the training VecEnv (with VecNormalize when asked), seeded from the member's
index, and the evaluation envs (training and held-out levels), whose episodes are fixed by the
evaluation set alone (:mod:`evo.learners.evaluation`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize, VecTransposeImage

from evo.envs import EnvSpec, make_gym_env, make_vec_env, procgen_game
from evo.learners.evaluation import episode_level, start_seed


@dataclass
class MemberEnvs:
    raw: VecEnv
    """The training envs without normalisation (what a checkpoint snapshots)."""
    vecnorm: VecNormalize | None
    """The normalising wrapper around ``raw`` (``--normalize-obs`` / ``--normalize-reward``)."""
    train: VecEnv
    """What the model trains on: ``vecnorm`` if any, else ``raw``."""
    evaluation: EvalEnvs
    test: EvalEnvs | None
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

    evaluation = make_eval_envs(env_spec)
    test = make_eval_envs(env_spec, test_levels=True) if cfg.eval_test_levels else None
    return MemberEnvs(raw, vecnorm, vecnorm if vecnorm is not None else raw, evaluation, test)


class EvalEnvs:
    """Evaluation envs in slots, built as they are needed: :meth:`start` begins episode ``j`` of a
    set in a slot (as :mod:`evo.learners.evaluation` defines it), :meth:`step` plays one action there.

    With ``obs_rms`` set (``--normalize-obs``: a frozen copy of the training statistics, see
    :meth:`freeze`), observations leave normalised as a ``VecNormalize(training=False)`` would give
    them (images transposed to channels first before, as the training envs do); rewards stay raw.
    """

    def __init__(self, spec: EnvSpec, observation_space: Any, action_space: Any) -> None:
        self.spec = spec
        self.observation_space = observation_space
        self.action_space = action_space
        self.obs_rms: RunningMeanStd | None = None
        self._clip, self._eps = 10.0, 1e-8

    def freeze(self, vecnorm: VecNormalize) -> None:
        """Normalise observations with a copy of ``vecnorm``'s statistics as they are now."""
        assert isinstance(vecnorm.obs_rms, RunningMeanStd), "--normalize-obs with Dict observations"
        self.obs_rms = vecnorm.obs_rms.copy()
        self._clip, self._eps = float(vecnorm.clip_obs), float(vecnorm.epsilon)

    def observe(self, obs: Any) -> Any:
        if self.obs_rms is None:
            return obs
        x = np.asarray(obs)
        if is_image_space(self.observation_space) and not is_image_space_channels_first(self.observation_space):
            x = np.transpose(x, (2, 0, 1))
        rms = self.obs_rms
        return np.clip((x - rms.mean) / np.sqrt(rms.var + self._eps), -self._clip, self._clip).astype(np.float32)

    def start(self, slot: int, seed: int, episode: int) -> Any:
        """Begin episode ``episode`` of set ``seed`` in ``slot``; its first observation."""
        raise NotImplementedError

    def step(self, slot: int, action: Any) -> tuple[Any, float, bool]:
        """``(observation, reward, episode ended)`` after ``action`` in ``slot``."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class GymEvalEnvs(EvalEnvs):
    """One Gymnasium env per slot (kwargs and wrappers applied), reset with the episode's seed and
    never auto-reset: a slot whose episode ended is not stepped again until it starts another."""

    def __init__(self, spec: EnvSpec) -> None:
        self.envs: list[Any] = [make_gym_env(spec)]
        super().__init__(spec, self.envs[0].observation_space, self.envs[0].action_space)

    def start(self, slot: int, seed: int, episode: int) -> Any:
        while len(self.envs) <= slot:
            self.envs.append(make_gym_env(self.spec))
        obs, _ = self.envs[slot].reset(seed=start_seed(seed, episode))
        return self.observe(obs)

    def step(self, slot: int, action: Any) -> tuple[Any, float, bool]:
        obs, reward, terminated, truncated, _ = self.envs[slot].step(action)
        return self.observe(obs), float(reward), bool(terminated or truncated)

    def close(self) -> None:
        for env in self.envs:
            env.close()


class ProcgenEvalEnvs(EvalEnvs):
    """ProcGen: each episode on an engine of its own built for its one level (a millisecond or two)."""

    def __init__(self, spec: EnvSpec, test_levels: bool) -> None:
        from gymnasium import spaces

        from evo.envs.procgen import INT32_MAX, N_ACTIONS, OBS_SHAPE, check_procgen_options, held_out_levels

        game = procgen_game(spec.env_id)
        assert game is not None
        check_procgen_options(game, spec.distribution_mode, spec.num_levels, spec.start_level, test_levels)
        if test_levels:
            self.low, self.count = held_out_levels(spec.num_levels, spec.start_level)
        elif spec.num_levels > 0:
            self.low, self.count = spec.start_level, spec.num_levels
        else:
            self.low, self.count = 0, INT32_MAX
        self.game = game
        self.envs: dict[int, Any] = {}
        super().__init__(spec, spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8), spaces.Discrete(N_ACTIONS))

    def start(self, slot: int, seed: int, episode: int) -> Any:
        from evo.envs.procgen import ProcgenVecEnv

        if slot in self.envs:
            self.envs.pop(slot).close()
        level = episode_level(seed, episode, self.low, self.count)
        env = ProcgenVecEnv(self.game, 1, seed=level, num_levels=1, start_level=level,
                            distribution_mode=self.spec.distribution_mode)
        self.envs[slot] = env
        return np.asarray(env.reset())[0]

    def step(self, slot: int, action: Any) -> tuple[Any, float, bool]:
        obs, rewards, dones, _ = self.envs[slot].step(np.asarray(action).reshape(1))
        if dones[0]:
            self.envs.pop(slot).close()  # its engine has already begun the level again
        return np.asarray(obs)[0], float(rewards[0]), bool(dones[0])

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


def make_eval_envs(spec: EnvSpec, test_levels: bool = False) -> EvalEnvs:
    """Evaluation envs of ``spec``; ``test_levels=True``: ProcGen's held-out levels."""
    return ProcgenEvalEnvs(spec, test_levels) if spec.is_procgen else GymEvalEnvs(spec)
