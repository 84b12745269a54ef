"""A2C (stable-baselines3) as a population member."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stable_baselines3 import A2C
from stable_baselines3.common.base_class import BaseAlgorithm

from evo.learners.onpolicy import OnPolicyLearner


class A2CLearner(OnPolicyLearner):
    """Live: learning_rate, gamma, gae_lambda, ent_coef, vf_coef, max_grad_norm; ``n_steps`` (the
    rollout, one gradient step each) stays fixed. Flat state: policy weights, RMSprop (square_avg,
    step) or Adam with ``use_rms_prop: false``."""

    algo = "a2c"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 7e-4, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.0, "vf_coef": 0.5,
        "max_grad_norm": 0.5
    }
    SETTING_DEFAULTS: ClassVar[dict[str, Any]] = {
        "use_sde": False, "sde_sample_freq": -1, "normalize_advantage": False,
        "use_rms_prop": True, "rms_prop_eps": 1e-5
    }
    model: A2C

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        s = self._built_settings
        return A2C(
            policy, self.env, n_steps=self.cfg.n_steps, learning_rate=float(hp["learning_rate"]),
            gamma=float(hp["gamma"]), gae_lambda=float(hp["gae_lambda"]), ent_coef=float(hp["ent_coef"]),
            vf_coef=float(hp["vf_coef"]), max_grad_norm=float(hp["max_grad_norm"]),
            rms_prop_eps=float(s["rms_prop_eps"]), use_rms_prop=bool(s["use_rms_prop"]), use_sde=bool(s["use_sde"]),
            sde_sample_freq=int(s["sde_sample_freq"]), normalize_advantage=bool(s["normalize_advantage"]),
            policy_kwargs=policy_kwargs, seed=self.seed, device=self.device, verbose=0,
        )
