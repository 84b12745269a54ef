"""Population members: one adapter per stable-baselines3 algorithm behind one interface.

``Learner(cfg, hparams, index=i)`` (the loop spells it ``evo.member.Member``) returns the adapter for
``cfg.algo``. Adding an algorithm (an sb3-contrib one, say) is one module here with a
:class:`~evo.learners.base.Learner` subclass (on- or off-policy base), registered in ``LEARNERS``,
plus its names and default space in :mod:`evo.core.space`.
"""

from __future__ import annotations

from evo.errors import ConfigError
from evo.learners.a2c import A2CLearner
from evo.learners.base import ExtraField, Learner, TrainStats, planned_env_steps
from evo.learners.device import check_device_spec, resolve_device
from evo.learners.dqn import DQNLearner
from evo.learners.offpolicy import OffPolicyLearner
from evo.learners.onpolicy import OnPolicyLearner
from evo.learners.ppo import PPO_DEFAULTS, PPOLearner
from evo.learners.sac import SACLearner
from evo.learners.td3 import TD3Learner

LEARNERS: dict[str, type[Learner]] = {
    cls.algo: cls for cls in (PPOLearner, A2CLearner, SACLearner, TD3Learner, DQNLearner)
}


def learner_class(algo: str) -> type[Learner]:
    try:
        return LEARNERS[algo]
    except KeyError:
        raise ConfigError(f"unknown --algo {algo!r} (known: {', '.join(LEARNERS)})") from None


__all__ = ["LEARNERS", "PPO_DEFAULTS", "A2CLearner", "DQNLearner", "ExtraField", "Learner", "OffPolicyLearner",
           "OnPolicyLearner", "PPOLearner", "SACLearner", "TD3Learner", "TrainStats", "check_device_spec",
           "learner_class", "planned_env_steps", "resolve_device"]
