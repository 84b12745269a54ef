"""Shared by the on-policy adapters (PPO, A2C): rollouts of ``n_steps * n_envs`` env steps, GAE."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from evo.core.domains import ANY_REAL, DISCOUNT, FLAG, LAYERS, NON_NEGATIVE, POSITIVE, Domain, integer
from evo.core.params import HParams
from evo.learners.base import Learner

ON_POLICY_LIVE = ("learning_rate", "ent_coef", "vf_coef", "gamma", "gae_lambda", "max_grad_norm")
"""Live hyperparameters every on-policy adapter handles (:class:`OnPolicyLearner`)."""
ON_POLICY_SETTINGS = ("net_arch", "ortho_init", "log_std_init", "use_sde", "sde_sample_freq", "normalize_advantage")
"""Settings (fixed at build) both PPO and A2C take."""
ON_POLICY_DOMAINS: dict[str, Domain] = {
    "learning_rate": POSITIVE, "ent_coef": NON_NEGATIVE, "vf_coef": NON_NEGATIVE, "gamma": DISCOUNT,
    "gae_lambda": DISCOUNT, "max_grad_norm": POSITIVE, "net_arch": LAYERS, "ortho_init": FLAG,
    "log_std_init": ANY_REAL, "use_sde": FLAG, "sde_sample_freq": integer(1, extra=(-1,)), "normalize_advantage": FLAG,
}  # fmt: skip
"""Domains of those names (SB3: -1 for ``sde_sample_freq`` = resample the noise only per rollout)."""


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
