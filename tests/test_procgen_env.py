"""The ProcGen VecEnv adapter (evo.envs.procgen) and the policy registry (evo.policies)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import ActorCriticCnnPolicy
from stable_baselines3.common.vec_env import VecEnv, VecTransposeImage
from torch import nn

from evo.envs import PROCGEN_GAMES, EnvSpec, check_env, make_vec_env
from evo.envs.procgen import (
    INT32_MAX,
    MODE_GAMES,
    ProcgenVecEnv,
    check_procgen_options,
    held_out_levels,
    make_procgen_vec_env,
)
from evo.errors import ConfigError
from evo.policies import POLICY_NAMES, ImpalaCNN, init_conv_xavier, resolve_policy


def _env(game: str = "bigfish", n: int = 2, seed: int = 0, **kw: object) -> ProcgenVecEnv:
    opts: dict = {"num_levels": 0, "start_level": 0, "distribution_mode": "easy", **kw}
    env = make_procgen_vec_env(game, n, seed=seed, **opts)
    assert isinstance(env, ProcgenVecEnv)
    return env


def _rollout(env: VecEnv, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    obs = [env.reset()]
    rews, dones = [], []
    for a in actions:
        o, r, d, _ = env.step(a)
        obs.append(o)
        rews.append(r)
        dones.append(d)
    return np.stack(obs), np.stack(rews), np.stack(dones)


# -- VecEnv contract ----------------------------------------------------------------------------


def test_spaces_reset_and_step_follow_the_vecenv_contract() -> None:
    env = _env(n=3)
    assert isinstance(env, VecEnv) and env.num_envs == 3
    assert env.observation_space == spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == spaces.Discrete(15)
    obs = env.reset()
    assert isinstance(obs, np.ndarray) and obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
    assert all(env.observation_space.contains(o) for o in obs)
    assert obs.std() > 0  # a rendered frame, not a blank buffer
    for _ in range(5):
        obs, rewards, dones, infos = env.step(np.array([env.action_space.sample() for _ in range(3)]))
        assert obs.shape == (3, 64, 64, 3) and obs.dtype == np.uint8
        assert rewards.shape == (3,) and rewards.dtype == np.float32
        assert dones.shape == (3,) and dones.dtype == np.bool_
        assert isinstance(infos, list) and len(infos) == 3 and all(isinstance(i, dict) for i in infos)
    with pytest.raises(ValueError):
        env.step(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError):
        env.step(np.full(3, 15))
    env.close()


def test_attribute_methods_render_and_monitor_flag() -> None:
    env = _env(n=2)
    env.reset()
    assert env.env_is_wrapped(Monitor) == [True, True]
    assert env.env_is_wrapped(VecTransposeImage) == [False, False]
    assert env.get_attr("game") == ["bigfish", "bigfish"]
    assert env.get_attr("distribution_mode", indices=1) == ["easy"]
    assert env.has_attr("game") and not env.has_attr("no_such_attribute")
    env.set_attr("custom", 5)
    assert env.get_attr("custom") == [5, 5]
    with pytest.raises(NotImplementedError):
        env.set_attr("custom", 6, indices=[0])
    seeds = env.env_method("level_seeds")
    assert len(seeds) == 2 and seeds[0].shape == (2,)
    assert env.render().shape == (128, 64, 3)  # 2 frames, tiled 2x1
    env.close()


@pytest.mark.parametrize("game", ["chaser", "fruitbot"])
def test_episode_infos_match_the_engine(game: str) -> None:
    """infos['episode'] holds the engine's own return and length; compare with a raw engine."""
    import procgen

    n, seed = 4, 7
    env = _env(game, n=n, seed=seed)
    raw = procgen.ProcgenGym3Env(
        num=n, env_name=game, num_levels=0, start_level=0, distribution_mode="easy", rand_seed=seed, num_threads=0
    )
    prev = env.reset()
    assert np.array_equal(prev, raw.observe()[1]["rgb"])
    ret, length = np.zeros(n), np.zeros(n, dtype=int)
    rng = np.random.default_rng(0)
    finished = []
    for _ in range(700):
        actions = rng.integers(0, 15, n)
        obs, rewards, dones, infos = env.step(actions)
        raw.act(actions.astype(np.int32))
        raw_rew, raw_ob, raw_first = raw.observe()
        assert np.array_equal(obs, raw_ob["rgb"]) and np.array_equal(rewards, raw_rew)
        assert np.array_equal(dones, raw_first)
        ret += raw_rew
        length += 1
        raw_info = raw.get_info()
        for i in range(n):
            if not raw_first[i]:
                assert infos[i] == {}
                continue
            info = infos[i]
            assert info["episode"]["r"] == pytest.approx(ret[i], rel=1e-12, abs=1e-9)
            assert isinstance(info["episode"]["r"], float)
            assert info["episode"]["l"] == length[i] and isinstance(info["episode"]["l"], int)
            assert info["episode"]["t"] >= 0
            assert info["TimeLimit.truncated"] is False
            # the last frame of the finished episode the agent saw (see the module docstring)
            assert np.array_equal(info["terminal_observation"], prev[i])
            assert info["level_seed"] == raw_info[i]["prev_level_seed"]
            finished.append(ret[i])
            ret[i], length[i] = 0, 0
        prev = obs
    assert len(finished) >= 8
    assert any(r != 0 for r in finished)
    env.close()
    raw.close()


# -- seeding ------------------------------------------------------------------------------------


def test_same_seed_same_stream_other_seed_differs() -> None:
    actions = np.random.default_rng(1).integers(0, 15, (300, 2))
    a = _rollout(_env("bigfish", seed=3), actions)
    b = _rollout(_env("bigfish", seed=3), actions)
    c = _rollout(_env("bigfish", seed=4), actions)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert a[2].any()  # episodes ended, so the stream covers auto-resets too


def test_seed_then_reset_is_reproducible_and_plain_resets_are_deterministic() -> None:
    actions = np.random.default_rng(2).integers(0, 15, (50, 2))
    env = _env(seed=0)
    assert env.seed(11) == [11, 11]
    first = _rollout(env, actions)
    env.seed(11)
    again = _rollout(env, actions)
    for x, y in zip(first, again, strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(first[0], _rollout(_env(seed=0), actions)[0])
    # a reset without a new seed starts new levels, reproducibly from the last seed
    env.seed(11)
    _rollout(env, actions)
    after = _rollout(env, actions)
    assert not np.array_equal(after[0], first[0])
    other = _env(seed=0)
    other.seed(11)
    _rollout(other, actions)
    assert np.array_equal(_rollout(other, actions)[0], after[0])


# -- every game, names and modes ----------------------------------------------------------------


@pytest.mark.parametrize("game", PROCGEN_GAMES)
def test_every_game_builds_through_make_vec_env(game: str) -> None:
    env = make_vec_env(EnvSpec(game), n_envs=2, seed=0)
    assert isinstance(env, ProcgenVecEnv)
    obs = env.reset()
    obs, rewards, _, infos = env.step(np.array([0, 1]))
    assert obs.shape == (2, 64, 64, 3) and rewards.shape == (2,) and len(infos) == 2
    env.close()


def test_bad_game_or_mode_is_a_one_line_config_error() -> None:
    for env_id in ("procgen-bigfsh", "procgen:notagame-v0"):
        with pytest.raises(ConfigError) as err:
            check_env(EnvSpec(env_id))
        msg = str(err.value)
        assert "\n" not in msg and all(g in msg for g in PROCGEN_GAMES)
    with pytest.raises(ConfigError, match="bigfish"):
        check_env(EnvSpec("bigfsh"))  # neither Gymnasium nor ProcGen: suggests the close name
    with pytest.raises(ConfigError, match="distribution-mode") as err:
        check_env(EnvSpec("bigfish", distribution_mode="nightmare"))
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="valid games"):
        make_procgen_vec_env("bigfsh", 2, seed=0, num_levels=0, start_level=0, distribution_mode="easy")


def test_modes_a_game_lacks_are_config_errors_not_crashes() -> None:
    import procgen.env

    assert set(MODE_GAMES["exploration"]) == set(procgen.env.EXPLORATION_LEVEL_SEEDS)
    # the engine aborts the process on these (C++ fassert), so they must be caught first
    for mode in ("extreme", "memory", "exploration"):
        with pytest.raises(ConfigError, match=mode):
            make_procgen_vec_env("bigfish", 2, seed=0, num_levels=0, start_level=0, distribution_mode=mode)
    for mode, game in (("extreme", "chaser"), ("memory", "maze"), ("exploration", "coinrun")):
        env = make_procgen_vec_env(game, 2, seed=0, num_levels=10, start_level=0, distribution_mode=mode)
        env.reset()
        env.step(np.array([1, 2]))
        env.close()


# -- held-out levels ----------------------------------------------------------------------------


def _level_seeds_seen(env: ProcgenVecEnv, steps: int) -> set[int]:
    env.reset()
    seen = {int(s) for s in env.level_seeds()}
    rng = np.random.default_rng(0)
    for _ in range(steps):
        _, _, dones, infos = env.step(rng.integers(0, 15, env.num_envs))
        seen |= {infos[i]["level_seed"] for i in np.flatnonzero(dones)}
        seen |= {int(s) for s in env.level_seeds()}
    return seen


def test_test_levels_are_outside_the_training_range() -> None:
    spec = EnvSpec("bigfish", num_levels=50, start_level=100)
    train = make_vec_env(spec, n_envs=8, seed=0)
    test = make_vec_env(spec, n_envs=8, seed=0, test_levels=True)
    assert isinstance(train, ProcgenVecEnv) and isinstance(test, ProcgenVecEnv)
    train_seeds = _level_seeds_seen(train, 300)
    test_seeds = _level_seeds_seen(test, 300)
    assert train_seeds <= set(range(100, 150))
    assert len(test_seeds) > 8  # episodes ended, new levels were drawn
    assert all(s >= 150 or s < 100 for s in test_seeds)
    # the engine's own report agrees with level_seeds()
    assert [int(i["level_seed"]) for i in test._engine.get_info()] == list(test.level_seeds())
    train.close()
    test.close()


def test_held_out_range_scheme_and_unlimited_levels_error() -> None:
    assert held_out_levels(200, 0) == (200, INT32_MAX - 200)
    assert held_out_levels(10, INT32_MAX - 10) == (0, INT32_MAX - 10)  # nothing above: use below
    with pytest.raises(ConfigError):
        held_out_levels(INT32_MAX, 0)
    with pytest.raises(ConfigError, match="num-levels") as err:
        make_vec_env(EnvSpec("bigfish", num_levels=0), n_envs=2, seed=0, test_levels=True)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        check_procgen_options("bigfish", "easy", 10, INT32_MAX - 5)


# -- policies -----------------------------------------------------------------------------------


def test_resolve_policy_names() -> None:
    assert resolve_policy("auto", False) == ("MlpPolicy", {})
    assert resolve_policy("auto", True) == ("CnnPolicy", {})
    assert resolve_policy("mlppolicy", True) == ("MlpPolicy", {})
    assert resolve_policy("CnnPolicy", True) == ("CnnPolicy", {})
    cls, kwargs = resolve_policy("impala", True)
    assert cls is ActorCriticCnnPolicy and kwargs["features_extractor_class"] is ImpalaCNN
    with pytest.raises(ConfigError) as err:
        resolve_policy("transformer", True)
    assert all(n in str(err.value) for n in POLICY_NAMES)
    with pytest.raises(ConfigError, match="image"):
        resolve_policy("impala", False)


def _check_xavier(conv: nn.Conv2d) -> None:
    w = conv.weight.detach()
    fan_in = w.shape[1] * w[0, 0].numel()
    fan_out = w.shape[0] * w[0, 0].numel()
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert w.abs().max().item() <= bound + 1e-7
    if w.numel() >= 2000:  # a uniform(-b, b) sample: std b/sqrt(3), fills the range
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        assert w.abs().max().item() > 0.95 * bound
    assert conv.bias is not None and bool((conv.bias == 0).all())


@pytest.mark.parametrize("name", ["CnnPolicy", "impala"])
def test_init_conv_xavier(name: str) -> None:
    env = _env(n=1)
    policy, kwargs = resolve_policy(name, True)
    model = PPO(policy, env, policy_kwargs=kwargs, n_steps=16, batch_size=16, seed=0, device="cpu")
    convs = [m for m in model.policy.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == (3 if name == "CnnPolicy" else 15)
    before = [c.weight.detach().clone() for c in convs]
    with th.no_grad():
        for c in convs:
            c.bias.fill_(1.0)
    # SB3's orthogonal init (gain sqrt 2) leaves weights outside the Xavier range
    assert any(b.abs().max().item() > math.sqrt(6.0 / (b[0].numel() + b.shape[0] * b[0, 0].numel())) for b in before)
    assert init_conv_xavier(model.policy) == len(convs)
    for c, b in zip(convs, before, strict=True):
        assert not th.equal(c.weight, b)
        _check_xavier(c)
    heads = model.policy.action_net.weight.detach().clone()
    assert init_conv_xavier(model.policy) == len(convs)  # safe to repeat; heads untouched
    assert th.equal(model.policy.action_net.weight, heads)
    assert init_conv_xavier(nn.Sequential(nn.Linear(4, 4))) == 0
    env.close()


def test_impala_cnn_output() -> None:
    extractor = ImpalaCNN(spaces.Box(0, 1, (3, 64, 64), np.float32))
    out = extractor(th.rand(5, 3, 64, 64))
    assert out.shape == (5, 256) and extractor.features_dim == 256
    assert bool((out >= 0).all())
    assert extractor.linear[0].in_features == 32 * 8 * 8
    with pytest.raises(ValueError, match="channel-first"):
        ImpalaCNN(spaces.Box(0, 255, (64, 64, 3), np.uint8))


# -- PPO end to end -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["CnnPolicy", "impala"])
def test_ppo_learns_and_evaluates_on_the_adapter(name: str) -> None:
    th.manual_seed(0)
    env = _env("bigfish", n=2, seed=0)
    policy, kwargs = resolve_policy(name, True)
    model = PPO(policy, env, policy_kwargs=kwargs, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    init_conv_xavier(model.policy)
    assert isinstance(model.get_env(), VecTransposeImage)  # SB3 made the HWC images CHW itself
    assert model.observation_space.shape == (3, 64, 64)
    model.learn(256)
    assert model.num_timesteps == 256

    eval_env = _env("bigfish", n=2, seed=123)
    sums = np.zeros(2)
    ended: list[float] = []

    def callback(local: dict, _globals: dict) -> None:
        i = local["i"]
        sums[i] += local["reward"]
        if local["done"]:
            ended.append(sums[i])
            sums[i] = 0.0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        returns, lengths = evaluate_policy(
            model, eval_env, n_eval_episodes=2, deterministic=False, return_episode_rewards=True, callback=callback
        )
    assert not [w for w in caught if "Monitor" in str(w.message)]
    assert len(returns) == 2 and len(lengths) == 2
    assert all(0 < ln <= 1000 for ln in lengths)
    assert sorted(returns) == pytest.approx(sorted(ended))
    env.close()
    eval_env.close()
