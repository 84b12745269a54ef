"""DQN (stable-baselines3) as a population member: its spec and its adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule

from evo.core.algos import AlgoSpec
from evo.core.domains import COUNT, DISCOUNT, POSITIVE, PROBABILITY
from evo.core.params import HParams, Param
from evo.learners.flat import ExtraField
from evo.learners.offpolicy import OFF_POLICY_DEFAULTS, OFF_POLICY_DOMAINS, OFF_POLICY_LIVE, OffPolicyLearner
from evo.learners.registry import register

SETS: dict[str, dict[str, Any]] = {
    # RL Zoo hyperparams/dqn.yml, CartPole-v1 (net_arch from its policy_kwargs).
    "zoo-dqn-cartpole": {
        "n_envs": 1, "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100000, "learning_starts": 1000,
        "gamma": 0.99, "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128,
        "exploration_fraction": 0.16, "exploration_final_eps": 0.04, "net_arch": [256, 256], "policy": "MlpPolicy",
    },
    # stable-baselines3's DQN defaults (the fallback of `--param-name auto`).
    "sb3-dqn": {
        "n_envs": 1, "learning_rate": 1.0e-4, "buffer_size": 1000000, "learning_starts": 100, "batch_size": 32,
        "tau": 1.0, "gamma": 0.99, "train_freq": 4, "gradient_steps": 1, "target_update_interval": 10000,
        "exploration_fraction": 0.1, "exploration_initial_eps": 1.0, "exploration_final_eps": 0.05, "policy": "auto",
    },
}  # fmt: skip

SPEC = AlgoSpec(
    name="dqn",
    on_policy=False,
    action_spaces=("Discrete",),
    live=(*OFF_POLICY_LIVE, "target_update_interval", "exploration_fraction", "exploration_initial_eps",
          "exploration_final_eps", "max_grad_norm"),
    settings=("net_arch", "buffer_size"),
    domains={**{k: v for k, v in OFF_POLICY_DOMAINS.items() if k != "action_noise_std"},
             "target_update_interval": COUNT, "exploration_fraction": DISCOUNT, "exploration_initial_eps": PROBABILITY,
             "exploration_final_eps": PROBABILITY, "max_grad_norm": POSITIVE},
    defaults={"learning_rate": 1e-4, "gamma": 0.99, "batch_size": 32, "tau": 1.0, "train_freq": 4,
              "gradient_steps": 1, "learning_starts": 100, "target_update_interval": 10000,
              "exploration_fraction": 0.1, "exploration_initial_eps": 1.0, "exploration_final_eps": 0.05,
              "max_grad_norm": 10.0, **OFF_POLICY_DEFAULTS},
    setting_defaults={"buffer_size": 1_000_000},
    # From the RL Zoo's Optuna sampler (rl-baselines3-zoo, rl_zoo3/hyperparams_opt.py, sample_dqn_params):
    # gamma from its choices 0.9 ... 0.9999, batch sizes 16 ... 512, target_update_interval 1 ... 20000,
    # exploration_fraction 0 ... 0.5 (> 0 here: SB3's linear schedule divides by it), exploration_final_eps
    # 0 ... 0.2, learning rate from its 1e-5 ... 1 cut at 1e-2 (initially around SB3's 1e-4 and the Zoo's tuned
    # CartPole-v1 2.3e-3). The sampler's gradient_steps = train_freq // subsample_steps (1, 2, 4 or 8) is a
    # replay ratio of 1/8 ... 1 update per env step; evo searches it as one bounded number (1/8 ... 2,
    # initially 1/4 ... 1: SB3's default 1/4 and the Zoo's CartPole 1/2 inside) with SB3's train_freq 4 as
    # the base period.
    space=(
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=(5e-5, 3e-3)),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.9, 0.9999)),
        Param("batch_size", kind="categorical", choices=(16, 32, 64, 128, 256, 512), init=(32, 64, 128)),
        Param("replay_ratio", scale="log", low=0.125, high=2.0, init=(0.25, 1.0)),
        Param("target_update_interval", kind="int", scale="log", low=1, high=20000, init=(10, 10000)),
        Param("exploration_fraction", low=0.01, high=0.5, init=(0.05, 0.5)),
        Param("exploration_final_eps", low=0.0, high=0.2, init=(0.01, 0.2)),
    ),
    sets=SETS,
    auto_sets={"CartPole-v1": "zoo-dqn-cartpole"},
    default_set="sb3-dqn",
)


class DQNLearner(OffPolicyLearner):
    """Live, besides the off-policy ones: ``target_update_interval`` (env steps), ``exploration_fraction``,
    ``exploration_initial_eps``, ``exploration_final_eps`` (the linear epsilon schedule is rebuilt and
    the current epsilon recomputed), ``max_grad_norm``. Epsilon anneals over the member's whole run
    (planned env steps of the run, not one ``learn()`` call).

    Flat state: q_net, q_net_target, Adam; the exploration rate and progress (float64)."""

    spec: ClassVar[AlgoSpec] = SPEC
    sb3_class: ClassVar[type[DQN]] = DQN
    model: DQN

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        return self.sb3_class(
            policy, self.env, learning_rate=float(hp["learning_rate"]),
            buffer_size=int(self._built_settings["buffer_size"]), learning_starts=int(hp["learning_starts"]),
            batch_size=int(hp["batch_size"]), tau=float(hp["tau"]), gamma=float(hp["gamma"]),
            train_freq=int(hp["train_freq"]), gradient_steps=int(hp["gradient_steps"]),
            target_update_interval=int(hp["target_update_interval"]),
            exploration_fraction=float(hp["exploration_fraction"]),
            exploration_initial_eps=float(hp["exploration_initial_eps"]),
            exploration_final_eps=float(hp["exploration_final_eps"]), max_grad_norm=float(hp["max_grad_norm"]),
            policy_kwargs=policy_kwargs, seed=self.seed, device=self.device, verbose=0,
        )

    def _apply(self, name: str, value: Any) -> None:
        m = self.model
        if name in ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps"):
            setattr(m, name, float(value))
            m.exploration_schedule = LinearSchedule(m.exploration_initial_eps, m.exploration_final_eps,
                                                    m.exploration_fraction)
            m.exploration_rate = m.exploration_schedule(m._current_progress_remaining)
        elif name == "target_update_interval":
            m.target_update_interval = int(value)
        elif name == "max_grad_norm":
            m.max_grad_norm = float(value)
        else:
            super()._apply(name, value)

    def live_hparams(self) -> HParams:
        m = self.model
        sched = m.exploration_schedule
        assert isinstance(sched, LinearSchedule)
        return {**super().live_hparams(), "target_update_interval": int(m.target_update_interval),
                "exploration_fraction": float(sched.end_fraction), "exploration_initial_eps": float(sched.start),
                "exploration_final_eps": float(sched.end), "max_grad_norm": float(m.max_grad_norm)}

    def _extra_fields(self) -> list[ExtraField]:
        m = self.model

        def put(name: str) -> Any:
            return lambda a: setattr(m, name, float(a[0]))

        return [
            ExtraField("exploration_rate", 1, lambda: np.array([m.exploration_rate], np.float64),
                       put("exploration_rate")),
            ExtraField("progress_remaining", 1, lambda: np.array([m._current_progress_remaining], np.float64),
                       put("_current_progress_remaining")),
        ]

    def _clock(self) -> dict[str, int]:
        return {**super()._clock(), "n_calls": int(self.model._n_calls)}

    def _set_clock(self, clock: Any) -> None:
        super()._set_clock(clock)
        self.model._n_calls = int(clock.get("n_calls", 0))

    def _sync_targets(self) -> None:
        self.model.q_net_target.load_state_dict(self.model.q_net.state_dict())


register(DQNLearner)
