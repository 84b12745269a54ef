"""TD3 (stable-baselines3) as a population member."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from stable_baselines3 import TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from evo.core.space import HParams
from evo.learners.offpolicy import OffPolicyLearner


class TD3Learner(OffPolicyLearner):
    """Live, besides the off-policy ones: ``policy_delay``, ``target_policy_noise``,
    ``target_noise_clip``, ``action_noise_std``. Flat state: actor, actor_target, critic,
    critic_target; Adam of actor and critic; ``n_updates`` (it times the delayed policy updates)."""

    algo = "td3"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 1e-3, "gamma": 0.99, "batch_size": 256, "tau": 0.005, "train_freq": 1,
        "gradient_steps": 1, "learning_starts": 100, "policy_delay": 2, "target_policy_noise": 0.2,
        "target_noise_clip": 0.5, "action_noise_std": 0.0
    }
    SETTING_DEFAULTS: ClassVar[dict[str, Any]] = {"buffer_size": 1_000_000}
    model: TD3

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        return TD3(
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
