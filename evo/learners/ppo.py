"""PPO (stable-baselines3) as a population member: its spec (names, domains, SB3's defaults, default
search space, named sets) and its adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import FloatSchedule

from evo.core.algos import AlgoSpec
from evo.core.domains import COUNT, NON_NEGATIVE
from evo.core.params import HParams, Param
from evo.learners.onpolicy import ON_POLICY_DOMAINS, ON_POLICY_SETTINGS, OnPolicyLearner
from evo.learners.registry import register

PPO_DEFAULTS: dict[str, Any] = {
    "learning_rate": 3e-4, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "gamma": 0.99,
    "gae_lambda": 0.95, "n_epochs": 10, "batch_size": 64, "max_grad_norm": 0.5,
}  # fmt: skip
"""PPO constructor defaults for hyperparameters a space may leave out."""

SETS: dict[str, dict[str, Any]] = {
    # The PPO settings of the Procgen paper (Cobbe et al. 2020, "Leveraging Procedural Generation to
    # Benchmark Reinforcement Learning", Table 4) with its IMPALA CNN. As in the paper, rewards are
    # normalised (divided by a running estimate of the return's standard deviation, VecNormalize);
    # observations are images scaled to [0, 1] only.
    "baseline": {
        "normalize_reward": True, "n_envs": 64, "n_steps": 256, "n_epochs": 3, "n_minibatches": 8, "gamma": 0.999,
        "gae_lambda": 0.95, "learning_rate": 5.0e-4, "clip_range": 0.2, "ent_coef": 0.01, "vf_coef": 0.5,
        "max_grad_norm": 0.5, "policy": "impala", "eval_deterministic": False,
    },
    # stable-baselines3's PPO defaults (with SB3's NatureCNN for images, an MLP otherwise).
    "baseline3": {
        "n_envs": 1, "n_steps": 2048, "batch_size": 64, "n_epochs": 10, "gamma": 0.99, "gae_lambda": 0.95,
        "learning_rate": 3.0e-4, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5,
        "policy": "auto",
    },
    # Solves CartPole-v1 (mean return 500) in about 100k env steps: the RL Zoo's tuned CartPole settings
    # with constant (not linearly decaying) learning rate and clip range.
    "cartpole": {
        "n_envs": 8, "n_steps": 32, "batch_size": 256, "n_epochs": 20, "gamma": 0.98, "gae_lambda": 0.8,
        "learning_rate": 1.0e-3, "clip_range": 0.2, "ent_coef": 0.0, "vf_coef": 0.5, "max_grad_norm": 0.5,
        "policy": "MlpPolicy",
    },
    # RL Zoo (rl-baselines3-zoo) hyperparams/ppo.yml, Pendulum-v1 (batch_size: SB3's default).
    "zoo-ppo-pendulum": {
        "n_envs": 4, "n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10, "ent_coef": 0.0,
        "learning_rate": 1.0e-3, "clip_range": 0.2, "use_sde": True, "sde_sample_freq": 4, "batch_size": 64,
        "policy": "MlpPolicy",
    },
}  # fmt: skip

SPEC = AlgoSpec(
    name="ppo",
    on_policy=True,
    action_spaces=("Box", "Discrete", "MultiDiscrete", "MultiBinary"),
    live=("learning_rate", "clip_range", "ent_coef", "vf_coef", "gamma", "gae_lambda", "n_epochs", "batch_size",
          "max_grad_norm"),
    settings=ON_POLICY_SETTINGS,
    domains={**ON_POLICY_DOMAINS, "clip_range": NON_NEGATIVE, "n_epochs": COUNT, "batch_size": COUNT},
    defaults=PPO_DEFAULTS,
    setting_defaults={"use_sde": False, "sde_sample_freq": -1, "normalize_advantage": True},
    # From the RL Zoo's Optuna sampler (rl-baselines3-zoo, rl_zoo3/hyperparams_opt.py, sample_ppo_params; its
    # earlier version sampled gamma from 0.9 and gae_lambda from 0.8, the current one from 0.97 and 0.9): gamma
    # 0.9 ... 0.9999 and gae_lambda 0.8 ... 0.999 (log-uniform in 1 - x; the Zoo's tuned Pendulum-v1 has gamma
    # 0.9, CartPole-v1 gae_lambda 0.8), clip_range from its choices 0.1 ... 0.4, ent_coef 1e-8 ... 0.1, vf_coef
    # from its range, learning rate 1e-5 ... 2e-3 (bounds to 1e-2). n_epochs 1 ... 20 and its batch sizes as
    # bounds; initially 5 ... 10 epochs of 64 ... 256 samples, so the members' cost (updates per env step,
    # evo.core.cost) starts within a factor of 8. max_grad_norm (0.3 ... 2 there) stays SB3's 0.5 unless a
    # --hyperparams file searches it. batch_size: the sizes that divide the rollout (default_space).
    space=(
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=(1e-5, 2e-3)),
        Param("clip_range", low=0.05, high=0.5, init=(0.1, 0.4)),
        Param("ent_coef", scale="log", low=1e-8, high=0.1, init=(1e-8, 1e-2)),
        Param("vf_coef", low=0.1, high=1.0, init=(0.1, 1.0)),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.9, 0.9999)),
        Param("gae_lambda", scale="one_minus", low=0.8, high=0.999, init=(0.8, 0.999)),
        Param("n_epochs", kind="int", low=1, high=20, init=(5, 10)),
        Param("batch_size", kind="categorical", choices=(32, 64, 128, 256, 512, 1024), init=(64, 128, 256)),
    ),
    rollout_batches=True,
    sets=SETS,
    auto_sets={"CartPole-v1": "cartpole"},
    procgen_set="baseline",
    default_set="baseline3",
)


class PPOLearner(OnPolicyLearner):
    """Live: learning_rate, clip_range, ent_coef, vf_coef, gamma, gae_lambda, n_epochs, batch_size (must
    divide the rollout), max_grad_norm. Flat state: policy weights, Adam (exp_avg, exp_avg_sq, step)."""

    spec: ClassVar[AlgoSpec] = SPEC
    sb3_class: ClassVar[type[PPO]] = PPO
    model: PPO

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        s = self._built_settings
        return self.sb3_class(
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


register(PPOLearner)
