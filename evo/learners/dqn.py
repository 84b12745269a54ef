"""DQN (stable-baselines3) as a population member."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import LinearSchedule

from evo.core.space import HParams
from evo.learners.base import ExtraField
from evo.learners.offpolicy import OffPolicyLearner


class DQNLearner(OffPolicyLearner):
    """Live, besides the off-policy ones: ``target_update_interval`` (env steps), ``exploration_fraction``,
    ``exploration_initial_eps``, ``exploration_final_eps`` (the linear epsilon schedule is rebuilt and
    the current epsilon recomputed), ``max_grad_norm``. Epsilon anneals over the member's whole run
    (planned env steps of the run, not one ``learn()`` call).

    Flat state: q_net, q_net_target, Adam; the exploration rate and progress (float64)."""

    algo = "dqn"
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "learning_rate": 1e-4, "gamma": 0.99, "batch_size": 32, "tau": 1.0, "train_freq": 4,
        "gradient_steps": 1, "learning_starts": 100, "target_update_interval": 10000,
        "exploration_fraction": 0.1, "exploration_initial_eps": 1.0, "exploration_final_eps": 0.05,
        "max_grad_norm": 10.0
    }
    SETTING_DEFAULTS: ClassVar[dict[str, Any]] = {"buffer_size": 1_000_000}
    model: DQN

    def _build(self, policy: Any, policy_kwargs: dict[str, Any], hp: Mapping[str, Any]) -> BaseAlgorithm:
        return DQN(
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
