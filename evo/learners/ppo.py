"""PPO (stable-baselines3) as a population member."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import FloatSchedule

from evo.core.space import HParams
from evo.learners.onpolicy import OnPolicyLearner

PPO_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-4, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "gamma": 0.99,
    "gae_lambda": 0.95, "n_epochs": 10, "batch_size": 64, "max_grad_norm": 0.5,
}  # fmt: skip
"""PPO constructor defaults for hyperparameters a space may leave out."""


class PPOLearner(OnPolicyLearner):
    """Live: learning_rate, clip_range, ent_coef, vf_coef, gamma, gae_lambda, n_epochs, batch_size (must
    divide the rollout), max_grad_norm. Flat state: policy weights, Adam (exp_avg, exp_avg_sq, step)."""

    algo = "ppo"
    DEFAULTS: ClassVar[dict[str, Any]] = PPO_DEFAULTS
    SETTING_DEFAULTS: ClassVar[dict[str, Any]] = {"use_sde": False, "sde_sample_freq": -1, "normalize_advantage": True}
    model: PPO

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        s = self._built_settings
        return PPO(
            policy, self.env, n_steps=self.cfg.n_steps, batch_size=int(hp["batch_size"]), n_epochs=int(hp["n_epochs"]),
            learning_rate=float(hp["learning_rate"]), gamma=float(hp["gamma"]), gae_lambda=float(hp["gae_lambda"]),
            clip_range=float(hp["clip_range"]), ent_coef=float(hp["ent_coef"]), vf_coef=float(hp["vf_coef"]),
            max_grad_norm=float(hp["max_grad_norm"]), use_sde=bool(s["use_sde"]),
            sde_sample_freq=int(s["sde_sample_freq"]), normalize_advantage=bool(s["normalize_advantage"]),
            policy_kwargs=policy_kwargs, seed=self.seed, device=self.device, verbose=0,
        )

    def _apply(self, name: str, value: Any) -> None:
        m = self.model
        if name == "clip_range":
            m.clip_range = FloatSchedule(float(value))
        elif name == "n_epochs":
            m.n_epochs = int(value)
        elif name == "batch_size":
            if self.cfg.rollout_size % int(value) != 0:
                raise ValueError(f"batch_size {value} does not divide the rollout {self.cfg.rollout_size}")
            m.batch_size = int(value)
        else:
            super()._apply(name, value)

    def live_hparams(self) -> HParams:
        m = self.model
        return {
            **super().live_hparams(),
            "clip_range": float(m.clip_range(m._current_progress_remaining)),  # type: ignore[operator]
            "n_epochs": int(m.n_epochs),
            "batch_size": int(m.batch_size),
        }
