"""Population members: one adapter per stable-baselines3 algorithm behind one interface.

``make_learner(cfg, hparams, index=i)`` builds the adapter registered for ``cfg.algo``.

Adding an algorithm (an sb3-contrib one, say) is one module here: an :class:`~evo.core.algos.AlgoSpec`
(names, domains, SB3's defaults, default search space, named sets), a
:class:`~evo.learners.base.Learner` subclass (on- or off-policy base) with ``spec``, ``sb3_class``,
``_build`` and ``_apply``/``live_hparams`` for its own hyperparameters, and the line
``register(MyLearner)``; plus its import below, so that it registers with the built-in ones.
"""

from __future__ import annotations

# Each module registers its algorithm on import; this order is the order --algo lists them in.
from evo.learners import ppo, a2c, sac, td3, dqn  # noqa: F401  # isort: skip
from evo.learners.a2c import A2CLearner
from evo.learners.base import Learner
from evo.learners.device import check_device_spec, resolve_device
from evo.learners.dqn import DQNLearner
from evo.learners.flat import ExtraField
from evo.learners.offpolicy import OffPolicyLearner
from evo.learners.onpolicy import OnPolicyLearner
from evo.learners.ppo import PPOLearner
from evo.learners.registry import LEARNERS, learner_class, make_learner, register, unregister
from evo.learners.sac import SACLearner
from evo.learners.td3 import TD3Learner
from evo.learners.training import TrainStats, planned_env_steps

__all__ = ["LEARNERS", "A2CLearner", "DQNLearner", "ExtraField", "Learner", "OffPolicyLearner", "OnPolicyLearner",
           "PPOLearner", "SACLearner", "TD3Learner", "TrainStats", "check_device_spec", "learner_class",
           "make_learner", "planned_env_steps", "register", "resolve_device", "unregister"]
