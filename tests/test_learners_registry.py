"""Adding an algorithm is one module and one registration line: this file is that module for a toy
algorithm (PPO under another name, with a restricted search space, its own domain and named set), and
everything that takes ``--algo`` then knows it: config validation, the search-space parser, the named
sets, the factory, enjoy's model loader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from evo.config import CommonConfig, PBTConfig
from evo.core.algos import AlgoSpec, algo_names, algo_spec
from evo.core.domains import real
from evo.core.params import Param
from evo.core.space import default_space, generation_unit, parse_space
from evo.errors import ConfigError
from evo.hparam_sets import default_set_name, get_set, split_set
from evo.learners import LEARNERS, Learner, make_learner, register, unregister
from evo.learners.ppo import SPEC as PPO_SPEC
from evo.learners.ppo import PPOLearner

torch.set_num_threads(1)

# -- the whole "new algorithm" -----------------------------------------------------------------------
TOY_SPEC: AlgoSpec = replace(
    PPO_SPEC,
    name="toyppo",
    action_spaces=("Discrete",),
    domains={**PPO_SPEC.domains, "clip_range": real(0.1, 0.3)},  # a narrower domain than PPO's
    space=(Param("learning_rate", scale="log", low=1e-4, high=1e-3),
           Param("n_epochs", kind="int", low=1, high=3, init=2)),
    sets={"toy-cartpole": {"n_envs": 2, "n_steps": 32, "batch_size": 32, "n_epochs": 2, "policy": "MlpPolicy"}},
    auto_sets={}, procgen_set=None, default_set="toy-cartpole",
)


class ToyPPOLearner(PPOLearner):
    spec: ClassVar[AlgoSpec] = TOY_SPEC


@pytest.fixture
def toy() -> Iterator[type[Learner]]:
    register(ToyPPOLearner)  # the one registration line
    yield ToyPPOLearner
    unregister("toyppo")


# -- what it gets --------------------------------------------------------------------------------------
def cfg(env_id: str = "CartPole-v1") -> PBTConfig:
    return PBTConfig(algo="toyppo", env_id=env_id, n_envs=2, n_steps=32, steps_per_generation=64, eval_episodes=2)


def test_the_factory_builds_and_trains_the_new_algorithm(toy: type[Learner]) -> None:
    c = cfg()
    c.validate()  # --algo, its action space and the generation unit
    space = parse_space(None, c.rollout_size, "--hyperparams", "toyppo")
    assert list(space.params) == ["learning_rate", "n_epochs"]
    hp = space.sample(np.random.default_rng(0))
    m = make_learner(c, {**hp, "net_arch": [8], "batch_size": 32}, index=1)
    assert type(m) is toy and m.algo == "toyppo" and isinstance(m.model, PPO)
    assert m.live_hparams()["n_epochs"] == 2 and m.live_hparams()["learning_rate"] == pytest.approx(hp["learning_rate"])
    before = m.pack().copy()
    stats = m.train(64)
    assert m.num_timesteps == 64 and stats.losses and not m.failed
    assert not np.array_equal(before, m.pack())  # it really learned
    assert np.isfinite(m.evaluate(2, True, seed=3))
    m.close()


def test_every_algo_aware_part_knows_it(toy: type[Learner]) -> None:
    assert "toyppo" in algo_names() and LEARNERS["toyppo"] is toy and algo_spec("toyppo") is TOY_SPEC
    assert generation_unit("toyppo", 32, 2) == 64
    assert default_space(64, "toyppo").domains["clip_range"] == real(0.1, 0.3)
    with pytest.raises(ConfigError, match=r"--hyperparams: clip_range 0\.5 is outside its domain \[0\.1, 0\.3\]"):
        parse_space("clip_range: 0.5\n", 64, "hp.yaml", "toyppo")
    with pytest.raises(ConfigError, match="--algo toyppo needs a discrete"):
        cfg("Pendulum-v1").validate()
    assert default_set_name("toyppo", "CartPole-v1", False) == "toy-cartpole"
    hp, run = split_set(get_set("toy-cartpole"), 64, "toyppo")
    assert hp == {"batch_size": 32, "n_epochs": 2} and run["algo"] == "toyppo"
    from evo.enjoy import algo_class

    assert algo_class({"algo": "toyppo"}) is PPO


def test_registration_is_checked_and_undone() -> None:
    with pytest.raises(ConfigError, match="unknown --algo 'toyppo'"):
        CommonConfig(algo="toyppo").validate()
    register(ToyPPOLearner)
    try:
        register(ToyPPOLearner)  # the same class again is fine
        with pytest.raises(ValueError, match="already registered"):
            register(type("Other", (PPOLearner,), {"spec": TOY_SPEC}))
        with pytest.raises(ValueError, match="no domain"):
            replace(TOY_SPEC, domains={})
    finally:
        unregister("toyppo")
    with pytest.raises(ConfigError, match="unknown --algo 'toyppo'"):
        make_learner(cfg(), {})
    with pytest.raises(TypeError, match="make_learner"):  # the base class is no factory (any more)
        Learner(cfg(), {})
