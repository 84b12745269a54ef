"""Shared by the off-policy adapters (SAC, TD3, DQN): replay buffer, train_freq / gradient_steps.

A generation is any multiple of ``n_envs`` env steps. SB3's own ``learn()`` collects ``train_freq``
steps per round even past ``total_timesteps``, and starts each call's ``train_freq`` count afresh, so
a generation that is not a multiple of ``train_freq`` would overshoot. :meth:`OffPolicyLearner._learn`
runs SB3's own ``collect_rollouts`` and ``train`` instead, collecting at most up to the end of the
generation and carrying the steps collected since the last update into the next generation: the
member trains exactly as one long SB3 run would (``train_freq`` in steps of the VecEnv).

The cost of a member (gradient updates per env step, :mod:`evo.core.cost`) is ``gradient_steps /
(train_freq * n_envs)``. The default search spaces search it as one number, ``replay_ratio``: with a
replay ratio (anything but ``"none"``), ``gradient_steps`` (and, below one update per ``train_freq``
VecEnv steps, ``train_freq``) are derived from it (:func:`evo.core.cost.replay_schedule`), ``train_freq``
being the base period; ``replay_ratio: none`` leaves SB3's own pair as given.

Schedules follow the member's whole run: SB3 measures progress within one ``learn()`` call, evo
measures it against the planned env steps of the run (generations x steps per generation, see
:func:`~evo.learners.base.planned_env_steps`), so DQN's exploration rate anneals over the run.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise, VectorizedActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit

from evo.core.cost import NO_REPLAY_RATIO, REPLAY_RATIO, replay_schedule
from evo.core.domains import COUNT, DISCOUNT, LAYERS, NON_NEGATIVE, POSITIVE, STEPS, Domain, integer, real
from evo.core.params import HParams
from evo.learners.base import Learner
from evo.learners.training import planned_env_steps

OFF_POLICY_LIVE = ("learning_rate", "gamma", "batch_size", "tau", "train_freq", "gradient_steps", "learning_starts",
                   REPLAY_RATIO)
"""Live hyperparameters every off-policy adapter handles (:class:`OffPolicyLearner`)."""
OFF_POLICY_DOMAINS: dict[str, Domain] = {
    "learning_rate": POSITIVE, "gamma": DISCOUNT, "batch_size": COUNT, "tau": DISCOUNT, "train_freq": COUNT,
    "gradient_steps": integer(1, extra=(-1,)), "learning_starts": STEPS, "action_noise_std": NON_NEGATIVE,
    "net_arch": LAYERS, "buffer_size": COUNT, REPLAY_RATIO: real(0, low_open=True, extra=(NO_REPLAY_RATIO,)),
}  # fmt: skip
"""Domains of those names, of ``action_noise_std`` (SAC, TD3) and of the settings ``net_arch`` and
``buffer_size`` (SB3: ``gradient_steps`` -1 = as many as env steps collected; ``tau`` 1 = hard update;
``replay_ratio`` "none" = ``train_freq`` and ``gradient_steps`` as given)."""
OFF_POLICY_DEFAULTS: dict[str, Any] = {REPLAY_RATIO: NO_REPLAY_RATIO}
"""The default of the live names evo adds to SB3's (an adapter's ``defaults`` merge it in)."""


class OffPolicyLearner(Learner):
    """Live: learning_rate, gamma, batch_size, tau, train_freq, gradient_steps (-1: as many as env
    steps collected), learning_starts, replay_ratio (gradient updates per env step; derives
    gradient_steps, see the module), action_noise_std (Gaussian exploration noise, 0 = none; SAC/TD3).

    With a replay ratio, ``hparams["gradient_steps"]`` (what the records show) is the derived value,
    and ``hparams["train_freq"]`` stays the base period; :meth:`live_hparams` reads both from the model."""

    model: OffPolicyAlgorithm

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._since_train = 0
        """VecEnv steps collected since the last gradient update (carried across generations)."""
        self._replay: dict[str, Any] = {"train_freq": 1, "gradient_steps": 1, REPLAY_RATIO: NO_REPLAY_RATIO}
        """The given train_freq, gradient_steps and replay_ratio, from which the model's pair is derived."""
        super().__init__(*args, **kwargs)
        self.planned_steps = planned_env_steps(self.cfg)

    def _apply(self, name: str, value: Any) -> None:
        m = self.model
        if name == "gamma":
            m.gamma = float(value)
        elif name == "tau":
            m.tau = float(value)
        elif name == "batch_size":
            m.batch_size = int(value)
        elif name in self._replay:
            self._replay[name] = value
            freq, steps = self.train_schedule()
            m.train_freq = TrainFreq(freq, TrainFrequencyUnit.STEP)  # type: ignore[assignment]
            m.gradient_steps = steps
        elif name == "learning_starts":
            m.learning_starts = int(value)
        elif name == "action_noise_std":
            n = int(np.prod(m.action_space.shape or (1,)))
            m.action_noise = NormalActionNoise(np.zeros(n), float(value) * np.ones(n)) if value > 0 else None
        else:
            super()._apply(name, value)

    def train_schedule(self) -> tuple[int, int]:
        """``(train_freq, gradient_steps)`` SB3 runs: the given pair, or the pair derived from the
        replay ratio (:func:`evo.core.cost.replay_schedule`)."""
        given = self._replay
        ratio = given[REPLAY_RATIO]
        if isinstance(ratio, str):
            return int(given["train_freq"]), int(given["gradient_steps"])
        return replay_schedule(float(ratio), int(given["train_freq"]), int(self.model.n_envs))

    def apply_hparams(self, hparams: Mapping[str, Any]) -> None:
        super().apply_hparams(hparams)
        if not isinstance(self._replay[REPLAY_RATIO], str):
            self.hparams["gradient_steps"] = self.train_schedule()[1]

    def live_hparams(self) -> HParams:
        m = self.model
        assert isinstance(m.train_freq, TrainFreq)
        out = {
            **super().live_hparams(),
            "gamma": float(m.gamma),
            "tau": float(m.tau),
            "batch_size": int(m.batch_size),
            "train_freq": int(m.train_freq.frequency),
            "gradient_steps": int(m.gradient_steps),
            "learning_starts": int(m.learning_starts),
            REPLAY_RATIO: self._replay[REPLAY_RATIO],
        }
        if "action_noise_std" in self.spec.defaults:
            noise = m.action_noise
            if isinstance(noise, VectorizedActionNoise):
                noise = noise.base_noise
            out["action_noise_std"] = float(noise._sigma.flat[0]) if isinstance(noise, NormalActionNoise) else 0.0
        return out

    def replay_state(self) -> bytes | None:
        rb = self.model.replay_buffer
        assert rb is not None
        n = rb.buffer_size if rb.full else rb.pos
        arrays: dict[str, Any] = {}
        for key, value in vars(rb).items():
            if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == rb.buffer_size:
                arrays[key] = value[:n]
            elif isinstance(value, dict) and value and all(
                    isinstance(v, np.ndarray) and v.shape[0] == rb.buffer_size for v in value.values()):
                arrays[key] = {k: v[:n] for k, v in value.items()}
        return pickle.dumps({"pos": rb.pos, "full": rb.full, "n": n, "arrays": arrays}, protocol=5)

    def load_replay_state(self, blob: bytes | None) -> None:
        if blob is None:
            return
        rb = self.model.replay_buffer
        assert rb is not None
        state = pickle.loads(blob)
        n = int(state["n"])
        for key, saved in state["arrays"].items():
            target = getattr(rb, key)
            if isinstance(saved, dict):
                for k, v in saved.items():
                    target[k][:n] = v
            else:
                target[:n] = saved
        rb.pos, rb.full = int(state["pos"]), bool(state["full"])

    def _clock(self) -> dict[str, int]:
        return {"since_train": self._since_train, "episode_num": int(self.model._episode_num)}

    def _set_clock(self, clock: Any) -> None:
        self._since_train = int(clock.get("since_train", 0))
        self.model._episode_num = int(clock.get("episode_num", 0))

    def _learn(self, steps: int, callback: BaseCallback) -> None:
        m = self.model
        target, cb = m._setup_learn(steps, callback, reset_num_timesteps=False)
        m._total_timesteps = self.planned_steps  # progress (schedules) over the member's whole run
        cb.on_training_start(locals(), globals())
        assert m.env is not None and m.replay_buffer is not None
        n_envs = m.env.num_envs
        while m.num_timesteps < target:
            freq = int(m.train_freq.frequency)  # type: ignore[union-attr]
            if self._since_train >= freq:  # an explore shortened train_freq below what is collected
                self._update()
                continue
            chunk = min(freq - self._since_train, -(-(target - m.num_timesteps) // n_envs))
            rollout = m.collect_rollouts(m.env, callback=cb, train_freq=TrainFreq(chunk, TrainFrequencyUnit.STEP),
                                         replay_buffer=m.replay_buffer, action_noise=m.action_noise,
                                         learning_starts=m.learning_starts, log_interval=None)
            if not rollout.continue_training:
                break
            self._since_train += chunk
            if self._since_train >= freq:
                self._update()
        cb.on_training_end()

    def _update(self) -> None:
        """One round of gradient steps after ``train_freq`` VecEnv steps (SB3's rule: only once more
        than ``learning_starts`` env steps were taken)."""
        m = self.model
        collected = self._since_train * m.n_envs
        self._since_train = 0
        if m.num_timesteps > 0 and m.num_timesteps > m.learning_starts:
            gradient_steps = m.gradient_steps if m.gradient_steps >= 0 else collected
            if gradient_steps > 0:
                m.train(batch_size=m.batch_size, gradient_steps=gradient_steps)
