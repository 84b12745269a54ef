"""A2C (stable-baselines3) as a population member: its spec and its adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stable_baselines3 import A2C
from stable_baselines3.common.base_class import BaseAlgorithm

from evo.core.algos import AlgoSpec
from evo.core.domains import FLAG, POSITIVE
from evo.core.params import Param
from evo.learners.onpolicy import ON_POLICY_DOMAINS, ON_POLICY_LIVE, ON_POLICY_SETTINGS, OnPolicyLearner
from evo.learners.registry import register

SETS: dict[str, dict[str, Any]] = {
    # RL Zoo hyperparams/a2c.yml, CartPole-v1: 8 envs, ent_coef 0; the rest SB3's A2C defaults.
    "zoo-a2c-cartpole": {
        "n_envs": 8, "n_steps": 5, "ent_coef": 0.0, "learning_rate": 7.0e-4, "gamma": 0.99, "gae_lambda": 1.0,
        "vf_coef": 0.5, "max_grad_norm": 0.5, "policy": "MlpPolicy",
    },
    # RL Zoo hyperparams/a2c.yml, Pendulum-v1 ("normalize: true" = observations and rewards; learning rate
    # lin_7e-4 there, constant here; policy_kwargs log_std_init=-2, ortho_init=False).
    "zoo-a2c-pendulum": {
        "normalize_obs": True, "normalize_reward": True, "n_envs": 8, "n_steps": 8, "ent_coef": 0.0,
        "max_grad_norm": 0.5, "gae_lambda": 0.9, "vf_coef": 0.4, "gamma": 0.9, "use_rms_prop": True,
        "normalize_advantage": False, "learning_rate": 7.0e-4, "use_sde": True, "log_std_init": -2.0,
        "ortho_init": False, "policy": "MlpPolicy",
    },
    # stable-baselines3's A2C defaults (the fallback of `--param-name auto`).
    "sb3-a2c": {
        "n_envs": 1, "n_steps": 5, "learning_rate": 7.0e-4, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.0,
        "vf_coef": 0.5, "max_grad_norm": 0.5, "policy": "auto",
    },
}  # fmt: skip

SPEC = AlgoSpec(
    name="a2c",
    on_policy=True,
    action_spaces=("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    live=ON_POLICY_LIVE,
    settings=(*ON_POLICY_SETTINGS, "use_rms_prop", "rms_prop_eps"),
    domains={**ON_POLICY_DOMAINS, "use_rms_prop": FLAG, "rms_prop_eps": POSITIVE},
    defaults={"learning_rate": 7e-4, "gamma": 0.99, "gae_lambda": 1.0, "ent_coef": 0.0, "vf_coef": 0.5,
              "max_grad_norm": 0.5},
    setting_defaults={"use_sde": False, "sde_sample_freq": -1, "normalize_advantage": False, "use_rms_prop": True,
                      "rms_prop_eps": 1e-5},
    # From the RL Zoo's Optuna sampler (rl-baselines3-zoo, rl_zoo3/hyperparams_opt.py, sample_a2c_params; its
    # earlier version sampled gamma from 0.9 and gae_lambda from 0.8): gamma 0.9 ... 0.9999 and gae_lambda
    # 0.8 ... 0.999 (log-uniform in 1 - x; the Zoo's tuned Pendulum-v1 has 0.9 and 0.9), ent_coef 1e-8 ... 0.1,
    # vf_coef from its range, learning rate 1e-5 ... 2e-3 (bounds to 1e-2); max_grad_norm (0.3 ... 2 there) stays
    # SB3's 0.5 unless a --hyperparams file searches it. n_steps stays fixed (--n-steps): a rollout is one
    # update, so every member costs the same (1 / rollout, evo.core.cost).
    space=(
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=(1e-5, 2e-3)),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.9, 0.9999)),
        Param("ent_coef", scale="log", low=1e-8, high=0.1, init=(1e-8, 1e-2)),
        Param("vf_coef", low=0.1, high=1.0, init=(0.1, 1.0)),
        Param("gae_lambda", scale="one_minus", low=0.8, high=0.999, init=(0.8, 0.999)),
    ),
    sets=SETS,
    auto_sets={"CartPole-v1": "zoo-a2c-cartpole", "Pendulum-v1": "zoo-a2c-pendulum"},
    default_set="sb3-a2c",
)


class A2CLearner(OnPolicyLearner):
    """Live: learning_rate, gamma, gae_lambda, ent_coef, vf_coef, max_grad_norm; ``n_steps`` (the
    rollout, one gradient step each) stays fixed. Flat state: policy weights, RMSprop (square_avg,
    step) or Adam with ``use_rms_prop: false``."""

    spec: ClassVar[AlgoSpec] = SPEC
    sb3_class: ClassVar[type[A2C]] = A2C
    model: A2C

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        s = self._built_settings
        return self.sb3_class(
            policy, self.env, n_steps=self.cfg.n_steps, learning_rate=float(hp["learning_rate"]),
            gamma=float(hp["gamma"]), gae_lambda=float(hp["gae_lambda"]), ent_coef=float(hp["ent_coef"]),
            vf_coef=float(hp["vf_coef"]), max_grad_norm=float(hp["max_grad_norm"]),
            rms_prop_eps=float(s["rms_prop_eps"]), use_rms_prop=bool(s["use_rms_prop"]), use_sde=bool(s["use_sde"]),
            sde_sample_freq=int(s["sde_sample_freq"]), normalize_advantage=bool(s["normalize_advantage"]),
            policy_kwargs=policy_kwargs, seed=self.seed, device=self.device, verbose=0,
        )


register(A2CLearner)
