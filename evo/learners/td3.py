"""TD3 (stable-baselines3) as a population member: its spec and its adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from stable_baselines3 import TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from evo.core.algos import AlgoSpec
from evo.core.domains import COUNT, NON_NEGATIVE
from evo.core.params import HParams, Param
from evo.learners.offpolicy import OFF_POLICY_DEFAULTS, OFF_POLICY_DOMAINS, OFF_POLICY_LIVE, OffPolicyLearner
from evo.learners.registry import register

SETS: dict[str, dict[str, Any]] = {
    # RL Zoo hyperparams/td3.yml, Pendulum-v1: Gaussian action noise 0.1, net_arch [400, 300]. The Zoo trains
    # once per episode (train_freq [1, "episode"]) with as many gradient steps as env steps (gradient_steps
    # -1); Pendulum's episodes are always 200 steps, so train_freq 200 is the same.
    "zoo-td3-pendulum": {
        "n_envs": 1, "gamma": 0.98, "buffer_size": 200000, "learning_starts": 10000, "action_noise_std": 0.1,
        "train_freq": 200, "gradient_steps": -1, "learning_rate": 1.0e-3, "net_arch": [400, 300],
        "policy": "MlpPolicy",
    },
    # stable-baselines3's TD3 defaults (the fallback of `--param-name auto`).
    "sb3-td3": {
        "n_envs": 1, "learning_rate": 1.0e-3, "buffer_size": 1000000, "learning_starts": 100, "batch_size": 256,
        "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "policy": "auto",
    },
}  # fmt: skip

SPEC = AlgoSpec(
    name="td3",
    on_policy=False,
    action_spaces=("Box",),
    live=(*OFF_POLICY_LIVE, "policy_delay", "target_policy_noise", "target_noise_clip", "action_noise_std"),
    settings=("net_arch", "buffer_size"),
    domains={**OFF_POLICY_DOMAINS, "policy_delay": COUNT, "target_policy_noise": NON_NEGATIVE,
             "target_noise_clip": NON_NEGATIVE},
    defaults={"learning_rate": 1e-3, "gamma": 0.99, "batch_size": 256, "tau": 0.005, "train_freq": 1,
              "gradient_steps": 1, "learning_starts": 100, "policy_delay": 2, "target_policy_noise": 0.2,
              "target_noise_clip": 0.5, "action_noise_std": 0.0, **OFF_POLICY_DEFAULTS},
    setting_defaults={"buffer_size": 1_000_000},
    # From the RL Zoo's Optuna sampler (rl-baselines3-zoo, rl_zoo3/hyperparams_opt.py, sample_td3_params):
    # gamma from its choices 0.9 ... 0.9999, tau from 0.001 ... 0.08, Gaussian action noise from its noise_std
    # 0 ... 1, learning rate from its 1e-5 ... 1 cut at 1e-2 (initially around SB3's and the Zoo's tuned
    # Pendulum-v1 1e-3). The sampler ties gradient_steps to train_freq (one update per env step); evo searches
    # that ratio as one bounded number (0.25 ... 4, initially 0.5 ... 2) with SB3's train_freq 1 as the base
    # period. Batch sizes: 64 ... 256 of its 16 ... 2048 (see sac.py). policy_delay and target_policy_noise
    # (not sampled there) around SB3's defaults.
    space=(
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=(1e-4, 2e-3)),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.9, 0.9999)),
        Param("batch_size", kind="categorical", choices=(64, 100, 128, 256), init=(100, 128, 256)),
        Param("tau", scale="log", low=1e-3, high=0.08, init=(1e-3, 0.08)),
        Param("replay_ratio", scale="log", low=0.25, high=4.0, init=(0.5, 2.0)),
        Param("action_noise_std", low=0.0, high=1.0, init=(0.05, 0.5)),
        Param("target_policy_noise", low=0.0, high=0.5, init=(0.1, 0.3)),
        Param("policy_delay", kind="int", low=1, high=4, init=2),
    ),
    sets=SETS,
    auto_sets={"Pendulum-v1": "zoo-td3-pendulum"},
    default_set="sb3-td3",
)


class TD3Learner(OffPolicyLearner):
    """Live, besides the off-policy ones: ``policy_delay``, ``target_policy_noise``,
    ``target_noise_clip``, ``action_noise_std``. Flat state: actor, actor_target, critic,
    critic_target; Adam of actor and critic; ``n_updates`` (it times the delayed policy updates)."""

    spec: ClassVar[AlgoSpec] = SPEC
    sb3_class: ClassVar[type[TD3]] = TD3
    model: TD3

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        return self.sb3_class(
            policy, self.env, learning_rate=float(hp["learning_rate"]),
            buffer_size=int(self._built_settings["buffer_size"]), learning_starts=int(hp["learning_starts"]),
            batch_size=int(hp["batch_size"]), tau=float(hp["tau"]), gamma=float(hp["gamma"]),
            train_freq=int(hp["train_freq"]), gradient_steps=int(hp["gradient_steps"]),
            policy_delay=int(hp["policy_delay"]), target_policy_noise=float(hp["target_policy_noise"]),
            target_noise_clip=float(hp["target_noise_clip"]),
            policy_kwargs=policy_kwargs, seed=self.seed, device=self.device, verbose=0,
        )

    def _apply(self, name: str, value: Any) -> None:
        if name == "policy_delay":
            self.model.policy_delay = int(value)
        elif name in ("target_policy_noise", "target_noise_clip"):
            setattr(self.model, name, float(value))
        else:
            super()._apply(name, value)

    def live_hparams(self) -> HParams:
        m = self.model
        return {**super().live_hparams(), "policy_delay": int(m.policy_delay),
                "target_policy_noise": float(m.target_policy_noise), "target_noise_clip": float(m.target_noise_clip)}

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.model.actor.optimizer, self.model.critic.optimizer]

    def _sync_targets(self) -> None:
        self.model.actor_target.load_state_dict(self.model.actor.state_dict())
        self.model.critic_target.load_state_dict(self.model.critic.state_dict())


register(TD3Learner)
