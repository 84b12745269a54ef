"""Shared by the on-policy adapters (PPO, A2C): rollouts of ``n_steps * n_envs`` env steps, GAE."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from evo.core.space import HParams
from evo.learners.base import Learner


class OnPolicyLearner(Learner):
    """SB3's ``learn()`` once per generation (``reset_num_timesteps=False``): a generation is a whole
    number of rollouts, so counters and the rollout buffer continue exactly as in one long run."""

    model: OnPolicyAlgorithm

    def _apply(self, name: str, value: Any) -> None:
        m = self.model
        if name in ("gamma", "gae_lambda"):
            # the rollout buffer keeps its own copies, used when it computes returns and advantages
            setattr(m, name, float(value))
            setattr(m.rollout_buffer, name, float(value))
        elif name in ("ent_coef", "vf_coef", "max_grad_norm"):
            setattr(m, name, float(value))
        else:
            super()._apply(name, value)

    def live_hparams(self) -> HParams:
        m = self.model
        return {
            **super().live_hparams(),
            "ent_coef": float(m.ent_coef),
            "vf_coef": float(m.vf_coef),
            "gamma": float(m.rollout_buffer.gamma),
            "gae_lambda": float(m.rollout_buffer.gae_lambda),
            "max_grad_norm": float(m.max_grad_norm),
        }

    def _learn(self, steps: int, callback: BaseCallback) -> None:
        self.model.learn(total_timesteps=steps, callback=callback, reset_num_timesteps=False,
                         log_interval=None)  # type: ignore[arg-type]
