"""--algo / --normalize-* / --device in config validation, per-algorithm search spaces and named sets:
bad combinations are one-line errors every rank raises the same way (no env is trained here)."""

from __future__ import annotations

import numpy as np
import pytest

from evo.config import BaselineConfig, CommonConfig, PBTConfig
from evo.core.algos import algo_names, algo_spec
from evo.core.space import (
    check_batch_size,
    coerce_value,
    default_space,
    generation_unit,
    parse_space,
)
from evo.errors import ConfigError
from evo.hparam_sets import RUN_KEYS, default_set_name, load_sets, split_set

ALGOS = ("ppo", "a2c", "sac", "td3", "dqn")


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("algo,env,ok", [
    ("sac", "CartPole-v1", False), ("td3", "CartPole-v1", False), ("dqn", "Pendulum-v1", False),
    ("sac", "bigfish", False), ("td3", "coinrun", False),
    ("sac", "Pendulum-v1", True), ("td3", "Pendulum-v1", True), ("dqn", "CartPole-v1", True),
    ("dqn", "bigfish", True), ("a2c", "Pendulum-v1", True), ("a2c", "CartPole-v1", True), ("ppo", "Pendulum-v1", True),
])
def test_algorithm_must_fit_the_action_space(algo: str, env: str, ok: bool) -> None:
    cfg = PBTConfig(env_id=env, algo=algo, n_envs=1, n_steps=8, steps_per_generation=8)
    if ok:
        cfg.validate()
        return
    with pytest.raises(ConfigError) as exc:
        cfg.validate()
    msg = one_line(exc)
    assert f"--algo {algo} needs" in msg and env in msg
    assert ("Discrete" in msg) if algo in ("sac", "td3") else ("Box" in msg)


def test_bad_algo_device_and_normalisation_are_one_line_errors() -> None:
    with pytest.raises(ConfigError) as exc:
        CommonConfig(algo="ddpg").validate()
    assert "unknown --algo 'ddpg'" in one_line(exc) and "td3" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        CommonConfig(device="gpu0").validate()
    assert "--device" in one_line(exc)
    with pytest.raises(ConfigError) as exc:
        CommonConfig(env_id="bigfish", normalize_obs=True).validate()
    assert "--normalize-obs" in one_line(exc)
    CommonConfig(env_id="bigfish", normalize_reward=True, device="auto").validate()


def test_new_flags_reach_the_command_line() -> None:
    from evo.cmdline import parse

    cfg = parse(PBTConfig, ["--algo", "sac", "--env-id", "Pendulum-v1", "--normalize-obs", "--no-normalize-reward",
                            "--device", "cuda:1"], "evo", "")
    assert (cfg.algo, cfg.normalize_obs, cfg.normalize_reward, cfg.device) == ("sac", True, False, "cuda:1")
    assert PBTConfig().algo == "ppo" and PBTConfig().device == "cpu" and not PBTConfig().normalize_reward


@pytest.mark.parametrize("algo", ALGOS)
def test_default_spaces_hold_only_the_algorithms_own_hyperparameters(algo: str) -> None:
    space = default_space(256, algo)
    space.validate()
    assert set(space.names) <= set(algo_spec(algo).live)
    hp = space.sample(np.random.default_rng(0))
    for name, value in hp.items():
        assert coerce_value(algo, name, value) == value
    new, _ = space.explore(hp, np.random.default_rng(1))
    assert set(new) == set(hp)
    check_batch_size(space, 256, algo)


def test_a_hyperparameter_of_another_algorithm_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_space("clip_range: {low: 0.1, high: 0.3}\n", 256, "hp.yaml", "sac")
    assert "unknown hyperparameter 'clip_range' for --algo sac" in one_line(exc)
    with pytest.raises(ConfigError) as exc:
        parse_space("exploration_final_eps: 0.1\n", 256, "hp.yaml", "td3")
    assert "--algo td3" in one_line(exc)
    with pytest.raises(ConfigError, match="fixed when the model is built"):
        parse_space("net_arch: {low: 1, high: 2}\n", 256, "hp.yaml", "dqn")


def test_off_policy_spaces_from_yaml() -> None:
    space = parse_space("""
ent_coef: {choices: [auto, 0.01, 0.1]}
target_entropy: -2
net_arch: [64, 64]
batch_size: {choices: [100, 300]}
train_freq: {low: 1, high: 8, scale: log, type: int}
""", 1, "hp.yaml", "sac")
    assert space.params["ent_coef"].choices == ("auto", 0.01, 0.1)
    assert space.constants == {"target_entropy": -2.0, "net_arch": [64, 64]}
    check_batch_size(space, 1, "sac")  # off-policy: any size, no divisibility
    with pytest.raises(ConfigError, match="does not divide"):
        check_batch_size(parse_space("batch_size: {choices: [100]}\n", 256, "x", "ppo"), 256, "ppo")
    with pytest.raises(ConfigError, match=r"batch_size 0\.5 is outside its domain integers in \[1, inf\)"):
        parse_space("batch_size: 0.5\n", 1, "x", "dqn")
    with pytest.raises(ConfigError, match="'auto'"):
        parse_space("ent_coef: automatic\n", 1, "x", "sac")
    with pytest.raises(ConfigError, match="net_arch"):
        parse_space("net_arch: 64\n", 1, "x", "td3")
    with pytest.raises(ConfigError, match="gradient_steps"):
        parse_space("gradient_steps: -2\n", 1, "x", "dqn")


def test_generation_unit() -> None:
    assert generation_unit("ppo", 128, 4) == 512 and generation_unit("a2c", 5, 8) == 40
    for algo in ("sac", "td3", "dqn"):
        assert generation_unit(algo, 128, 4) == 4
    assert {a for a in algo_names() if algo_spec(a).on_policy} == {"ppo", "a2c"}
    assert algo_names()[:5] == ALGOS  # registration order: the order --algo lists them in


def test_every_shipped_set_splits_for_its_algorithm() -> None:
    sets = load_sets()
    for name, values in sets.items():
        algo = values.get("algo", "ppo")
        rollout = int(values.get("n_steps", 256)) * int(values.get("n_envs", 4))
        hp, run = split_set(values, rollout, algo)
        assert set(run) <= set(RUN_KEYS) and set(hp) <= set(algo_spec(algo).names), name
    for algo in ALGOS:
        spec = algo_spec(algo)
        assert {sets[n]["algo"] for n in spec.sets} == {algo}
        for env, name in spec.auto_sets.items():
            assert default_set_name(algo, env, False) == name
    zoo = {n: s["algo"] for n, s in sets.items() if n.startswith("zoo-")}
    assert zoo == {"zoo-ppo-pendulum": "ppo", "zoo-a2c-cartpole": "a2c", "zoo-a2c-pendulum": "a2c",
                   "zoo-dqn-cartpole": "dqn", "zoo-sac-pendulum": "sac", "zoo-td3-pendulum": "td3"}
    assert default_set_name("ppo", "CartPole-v1", False) == "cartpole"
    assert sets["baseline"]["normalize_reward"] is True  # the Procgen paper normalises rewards
    assert default_set_name("ppo", "bigfish", True) == "baseline"
    assert default_set_name("ppo", "Pendulum-v1", False) == "baseline3"
    assert default_set_name("sac", "MountainCarContinuous-v0", False) == "sb3-sac"
    assert sets["zoo-dqn-cartpole"]["learning_rate"] == 2.3e-3 and sets["zoo-sac-pendulum"]["learning_rate"] == 1e-3


def test_a_set_for_another_algorithm_or_with_foreign_keys_is_rejected() -> None:
    sets = load_sets()
    with pytest.raises(ConfigError) as exc:
        split_set(sets["zoo-sac-pendulum"], 1, "td3")
    assert "is for --algo sac, not --algo td3" in one_line(exc)
    with pytest.raises(ConfigError) as exc:
        split_set({"algo": "dqn", "clip_range": 0.2}, 1, "dqn")
    assert "'clip_range' does not belong to --algo dqn" in one_line(exc)
    with pytest.raises(ConfigError, match="true or false"):
        split_set({"normalize_reward": "yes"}, 256, "ppo")


def test_baseline_config_still_resolves_ppo_sets() -> None:
    cfg = BaselineConfig(env_id="CartPole-v1")
    cfg.resolve(set())
    assert cfg.param_name == "cartpole" and cfg.set_hparams and cfg.set_hparams["batch_size"] == 256
