"""One population member (kept for ``from evo.member import Member``).

``Member(cfg, hparams, index=i)`` builds the learner for ``cfg.algo`` (PPO, A2C, SAC, TD3 or DQN):
see :mod:`evo.learners` for the interface and the adapters.
"""

from __future__ import annotations

from evo.learners import PPO_DEFAULTS, Learner, TrainStats
from evo.learners.base import _GenerationCallback

Member = Learner
"""The learner factory and base class: ``Member(cfg, hparams, index=i)`` is the adapter for ``cfg.algo``."""

FLOAT_HPARAMS = ("learning_rate", "clip_range", "ent_coef", "vf_coef", "gamma", "gae_lambda", "max_grad_norm")
INT_HPARAMS = ("n_epochs", "batch_size")

__all__ = ["FLOAT_HPARAMS", "INT_HPARAMS", "PPO_DEFAULTS", "Member", "TrainStats", "_GenerationCallback"]
