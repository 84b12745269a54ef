"""SAC (stable-baselines3) as a population member: its spec and its adapter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from evo.core.algos import AlgoSpec
from evo.core.domains import ANY_REAL, COUNT, FLAG, integer, real
from evo.core.params import HParams, Param
from evo.learners.offpolicy import OFF_POLICY_DEFAULTS, OFF_POLICY_DOMAINS, OFF_POLICY_LIVE, OffPolicyLearner
from evo.learners.registry import register

SETS: dict[str, dict[str, Any]] = {
    # RL Zoo hyperparams/sac.yml, Pendulum-v1: learning_rate 1e-3, everything else SB3's SAC defaults.
    "zoo-sac-pendulum": {
        "n_envs": 1, "learning_rate": 1.0e-3, "buffer_size": 1000000, "learning_starts": 100, "batch_size": 256,
        "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "ent_coef": "auto", "policy": "MlpPolicy",
    },
    # stable-baselines3's SAC defaults (the fallback of `--param-name auto`).
    "sb3-sac": {
        "n_envs": 1, "learning_rate": 3.0e-4, "buffer_size": 1000000, "learning_starts": 100, "batch_size": 256,
        "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1, "ent_coef": "auto", "policy": "auto",
    },
}  # fmt: skip

SPEC = AlgoSpec(
    name="sac",
    on_policy=False,
    action_spaces=("Box",),
    live=(*OFF_POLICY_LIVE, "ent_coef", "target_entropy", "target_update_interval", "action_noise_std"),
    settings=("net_arch", "buffer_size", "log_std_init", "use_sde", "sde_sample_freq"),
    domains={
        **OFF_POLICY_DOMAINS,
        "ent_coef": real(0, extra=("auto",), auto_prefix=True),  # fixed, or learned ("auto_<start>")
        "target_entropy": real(extra=("auto",)),  # "auto": -dim(action)
        "target_update_interval": COUNT, "log_std_init": ANY_REAL, "use_sde": FLAG,
        "sde_sample_freq": integer(1, extra=(-1,)),
    },
    defaults={"learning_rate": 3e-4, "gamma": 0.99, "batch_size": 256, "tau": 0.005, "train_freq": 1,
              "gradient_steps": 1, "learning_starts": 100, "ent_coef": "auto", "target_entropy": "auto",
              "target_update_interval": 1, "action_noise_std": 0.0, **OFF_POLICY_DEFAULTS},
    setting_defaults={"buffer_size": 1_000_000, "use_sde": False, "sde_sample_freq": -1},
    # From the RL Zoo's Optuna sampler (rl-baselines3-zoo, rl_zoo3/hyperparams_opt.py, sample_sac_params):
    # gamma from its choices 0.9 ... 0.9999 (log-uniform in 1 - gamma, as its choices are spaced), tau from
    # its choices 0.001 ... 0.08, learning rate from its 1e-5 ... 1 cut at 1e-2 (initially around SB3's 3e-4
    # and the Zoo's tuned Pendulum-v1 1e-3). The sampler ties gradient_steps to train_freq (one update per
    # env step); evo searches that ratio as one bounded number (0.25 ... 4 updates per env step, initially
    # 0.5 ... 2) with SB3's train_freq 1 as the base period: the cost cap (--max-cost-ratio) bounds it.
    # Batch sizes: 64 ... 256 of its 16 ... 2048 (one update of 512 took 3x as long as one of 256 on a CPU;
    # the cost figure, updates per env step, does not see batch size). ent_coef stays 'auto' (as there).
    space=(
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=(1e-4, 2e-3)),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.9, 0.9999)),
        Param("batch_size", kind="categorical", choices=(64, 128, 256), init=(128, 256)),
        Param("tau", scale="log", low=1e-3, high=0.08, init=(1e-3, 0.08)),
        Param("replay_ratio", scale="log", low=0.25, high=4.0, init=(0.5, 2.0)),
    ),
    sets=SETS,
    auto_sets={"Pendulum-v1": "zoo-sac-pendulum"},
    default_set="sb3-sac",
)


class SACLearner(OffPolicyLearner):
    """Live, besides the off-policy ones: ``ent_coef`` (a fixed value, or ``"auto"``: learned towards
    ``target_entropy``, a number or ``"auto"`` = -dim(action)), ``target_update_interval``.

    Every member is built with a learned entropy coefficient (``log_ent_coef`` and its Adam), so the
    flat state has the same layout whether ``ent_coef`` is fixed or ``"auto"``; a fixed value simply
    sets SB3's ``ent_coef_optimizer`` aside during training (SB3's own switch between the two), and
    switching back to ``"auto"`` learns on from the coefficient moved with the weights.
    Flat state: actor, critic, critic_target, log_ent_coef; Adam of actor, critic and ent_coef.
    """

    spec: ClassVar[AlgoSpec] = SPEC
    sb3_class: ClassVar[type[SAC]] = SAC
    model: SAC

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ent_auto = True
        super().__init__(*args, **kwargs)

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        s = self._built_settings
        ent = hp["ent_coef"]
        start = ent if isinstance(ent, str) else (f"auto_{float(ent)!r}" if float(ent) > 0 else "auto")
        return self.sb3_class(
            policy, self.env, learning_rate=float(hp["learning_rate"]), buffer_size=int(s["buffer_size"]),
            learning_starts=int(hp["learning_starts"]), batch_size=int(hp["batch_size"]), tau=float(hp["tau"]),
            gamma=float(hp["gamma"]), train_freq=int(hp["train_freq"]), gradient_steps=int(hp["gradient_steps"]),
            ent_coef=start, use_sde=bool(s["use_sde"]), sde_sample_freq=int(s["sde_sample_freq"]),
            policy_kwargs=policy_kwargs, seed=self.seed, device=self.device, verbose=0,
        )

    def _apply(self, name: str, value: Any) -> None:
        m = self.model
        if name == "ent_coef":
            self._ent_auto = isinstance(value, str)
            m.ent_coef = value
            if not self._ent_auto:
                m.ent_coef_tensor = torch.tensor(float(value), device=m.device)
        elif name == "target_entropy":
            m.target_entropy = float(-np.prod(m.action_space.shape or (1,)).astype(np.float32)) if value == "auto" \
                else float(value)  # SB3's own "auto"
        elif name == "target_update_interval":
            m.target_update_interval = int(value)
        else:
            super()._apply(name, value)

    def live_hparams(self) -> HParams:
        m = self.model
        return {
            **super().live_hparams(),
            "ent_coef": "auto" if self._ent_auto else float(m.ent_coef_tensor),
            "target_entropy": float(m.target_entropy),
            "target_update_interval": int(m.target_update_interval),
        }

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        m = self.model
        assert m.ent_coef_optimizer is not None
        return [m.actor.optimizer, m.critic.optimizer, m.ent_coef_optimizer]

    def _extra_weights(self) -> list[torch.Tensor]:
        assert self.model.log_ent_coef is not None
        return [self.model.log_ent_coef]

    def _sync_targets(self) -> None:
        self.model.critic_target.load_state_dict(self.model.critic.state_dict())

    def _learn(self, steps: int, callback: BaseCallback) -> None:
        m = self.model
        optimizer = m.ent_coef_optimizer
        if not self._ent_auto:
            m.ent_coef_optimizer = None  # SB3 then uses ent_coef_tensor
        try:
            super()._learn(steps, callback)
        finally:
            m.ent_coef_optimizer = optimizer


register(SACLearner)
