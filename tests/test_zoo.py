"""RL Zoo interoperability: the Zoo's hyperparameter files drive a baseline and a PBT start (evo.zoo), and
evo.export writes a winner that the Zoo's own ``rl_zoo3.enjoy`` plays (rl-zoo3 is a dev dependency)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import run_module

from evo.core.space import parse_space
from evo.errors import ConfigError
from evo.export import zoo_hyperparams
from evo.zoo import is_zoo, literal, load_zoo, normalize_flags, policy_kwargs


def zoo_file(algo: str) -> Path:
    """The Zoo's own ``hyperparams/<algo>.yml`` (found without importing rl_zoo3, which is slow)."""
    found = importlib.util.find_spec("rl_zoo3")
    if found is None or found.origin is None:
        pytest.fail("rl_zoo3 is not installed: pip install -e '.[dev]'")
    return Path(found.origin).parent / "hyperparams" / f"{algo}.yml"


# -- reading the Zoo's files ------------------------------------------------------------------------
def test_zoo_files_are_told_from_evo_files() -> None:
    assert is_zoo(yaml.safe_load(zoo_file("ppo").read_text()))
    space = {"learning_rate": {"low": 1e-5, "high": 1e-3}, "n_epochs": 4, "explore": {"perturb_factors": [0.8]}}
    assert not is_zoo(space)
    assert not is_zoo({"cartpole": {"n_envs": 8, "policy": "MlpPolicy", "learning_rate": 1e-3}})  # a --param-file
    assert not is_zoo(None) and not is_zoo({})


def test_the_zoos_ppo_cartpole_entry_as_an_evo_set() -> None:
    entry = load_zoo(zoo_file("ppo").read_text(), "CartPole-v1", "ppo")
    assert entry is not None and entry.env_id == "CartPole-v1" and entry.n_timesteps == 100_000
    # lin_0.001 and lin_0.2: their start values; n_envs / n_steps / policy are run settings
    assert entry.values == {
        "algo": "ppo", "n_envs": 8, "n_steps": 32, "policy": "MlpPolicy", "normalize_obs": False,
        "normalize_reward": False, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
        "ent_coef": 0.0, "learning_rate": 0.001, "clip_range": 0.2}


def test_defaults_of_the_zoo_and_off_policy_keys() -> None:
    text = zoo_file("td3").read_text()
    entry = load_zoo(text, "Pendulum-v1", "td3")
    assert entry is not None
    v = entry.values
    assert v["n_envs"] == 1 and "n_steps" not in v  # the Zoo's default n_envs; no rollout for off-policy
    assert v["action_noise_std"] == 0.1 and v["net_arch"] == [400, 300]  # noise_type normal; policy_kwargs
    assert "noise_type" not in v and "noise_std" not in v and "policy_kwargs" not in v
    a2c = load_zoo(zoo_file("a2c").read_text(), "CartPole-v1", "a2c")
    assert a2c is not None and a2c.values["n_steps"] == 5  # SB3's A2C default, as the Zoo trains it
    assert load_zoo("Pendulum-v1: {n_timesteps: 100, policy: MlpPolicy, train_freq: [4, step]}", "Pendulum-v1",
                    "sac").values["train_freq"] == 4  # type: ignore[union-attr]


def test_an_env_without_an_entry_names_the_entries() -> None:
    with pytest.raises(ConfigError, match=r"^ppo.yml: the RL Zoo file has no entry for --env-id Foo-v0 \(it has: ") \
            as e:
        load_zoo(zoo_file("ppo").read_text(), "Foo-v0", "ppo", "ppo.yml")
    assert "CartPole-v1" in str(e.value) and "Pendulum-v1" in str(e.value)


@pytest.mark.parametrize("value, flags", [
    (True, (True, True)), (False, (False, False)), ("{'norm_obs': True, 'norm_reward': False}", (True, False)),
    ("dict(norm_obs=False, norm_reward=True)", (False, True)), ({"norm_reward": False}, (True, False)),
])
def test_normalize_forms(value: object, flags: tuple[bool, bool]) -> None:
    assert normalize_flags(value) == flags


def test_literals_are_read_never_evaluated(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    with pytest.raises(ConfigError, match="cannot be read"):
        literal(f"__import__('os').system('touch {target}')", "policy_kwargs")
    assert not target.exists()
    with pytest.raises(ConfigError, match="norm_obs and norm_reward only, not gamma"):
        normalize_flags("{'gamma': 0.9}")


def test_policy_kwargs() -> None:
    assert policy_kwargs("dict(net_arch=[64, 64])", "dqn") == {"net_arch": [64, 64]}
    assert policy_kwargs("dict(log_std_init=-2, ortho_init=False)", "a2c") == {"log_std_init": -2, "ortho_init": False}
    assert policy_kwargs("dict(net_arch=dict(pi=[256, 256], vf=[256, 256]))", "ppo") == {"net_arch": [256, 256]}
    assert policy_kwargs({"net_arch": {"pi": [64], "qf": [64]}}, "sac") == {"net_arch": [64]}
    with pytest.raises(ConfigError, match=r"^policy_kwargs activation_fn=nn.ReLU: evo builds --algo ppo policies "
                                          r"with net_arch, ortho_init, log_std_init only$"):
        policy_kwargs("dict(activation_fn=nn.ReLU, net_arch=[64])", "ppo")
    with pytest.raises(ConfigError, match="same layers"):
        policy_kwargs("dict(net_arch=dict(pi=[64], vf=[128]))", "ppo")


@pytest.mark.parametrize("entry, message", [
    ("frame_stack: 4", "frame_stack is not supported"),
    ("noise_type: ornstein-uhlenbeck\n  noise_std: 0.5", "evo's action noise is Gaussian"),
    ("train_freq: [1, episode]", "not per episode"),
    ("learning_rate: exp_0.1", "linear schedule lin_<start> expected"),
    ("policy: my.module.Policy", "not a custom class"),
])
def test_what_evo_cannot_do_is_one_line(entry: str, message: str) -> None:
    text = f"Pendulum-v1:\n  n_timesteps: 1000\n  policy: MlpPolicy\n  {entry}\n"
    with pytest.raises(ConfigError, match=f"^zoo.yml: RL Zoo entry Pendulum-v1: .*{re.escape(message)}"):
        load_zoo(text, "Pendulum-v1", "td3", "zoo.yml")


# -- as a population's start ------------------------------------------------------------------------
def test_a_population_starts_around_the_zoos_values() -> None:
    space = parse_space(zoo_file("ppo").read_text(), 256, "ppo.yml", "ppo", "CartPole-v1")
    p = space.params
    assert p["learning_rate"].init == (0.0008, 0.0012)  # lin_0.001: one explore step (x0.8, x1.2) either side
    assert p["clip_range"].init == (0.16, 0.24)
    assert p["gamma"].init == (0.976, 0.984)  # 1 - (1 - 0.98) * f
    assert p["n_epochs"].init == (16, 20)  # 20 * 1.2 clipped to the bound
    assert p["batch_size"].init == (128, 256) and 256 in (p["batch_size"].choices or ())
    assert p["vf_coef"].init == (0.4, 0.6)  # not in the entry: SB3's default 0.5, as the Zoo trains
    assert "ent_coef" not in p and space.constants["ent_coef"] == 0.0  # 0 on a log scale: fixed at it
    with pytest.raises(ConfigError, match="needs --env-id"):
        parse_space(zoo_file("ppo").read_text(), 256, "ppo.yml", "ppo")


def test_bounds_widen_to_hold_a_value_and_other_keys_are_fixed() -> None:
    text = ("MountainCarContinuous-v0: {n_timesteps: 1000, policy: MlpPolicy, n_steps: 8, batch_size: 8, "
            "learning_rate: 0.05, use_sde: true, policy_kwargs: 'dict(log_std_init=-3.29, ortho_init=False)'}")
    space = parse_space(text, 8, "z.yml", "ppo", "MountainCarContinuous-v0")
    lr = space.params["learning_rate"]
    assert (lr.low, lr.high, lr.init) == (1e-5, 0.05, (0.04, 0.05))
    assert space.constants["use_sde"] is True and space.constants["log_std_init"] == -3.29
    assert space.constants["ortho_init"] is False


def test_off_policy_updates_become_the_searched_replay_ratio() -> None:
    space = parse_space(zoo_file("dqn").read_text(), None, "dqn.yml", "dqn", "CartPole-v1")
    if "replay_ratio" not in space.params:
        pytest.skip("the default DQN space does not search a replay ratio")
    # the Zoo's 128 gradient steps every 256 env steps: 0.5 updates per env step, train_freq its period
    assert space.params["replay_ratio"].init == (0.4, 0.6)
    assert space.constants["train_freq"] == 256 and "gradient_steps" not in space.constants


def test_run_settings_of_an_entry_yield_to_the_command_line() -> None:
    from evo.config import PBTConfig
    from evo.zoo import apply_zoo_run

    cfg = PBTConfig(env_id="CartPole-v1", n_envs=3)
    entry = load_zoo(zoo_file("ppo").read_text(), "CartPole-v1", "ppo")
    assert entry is not None
    apply_zoo_run(cfg, entry, explicit={"n_envs"})
    assert (cfg.n_envs, cfg.n_steps, cfg.policy, cfg.normalize_obs) == (3, 32, "MlpPolicy", False)


# -- writing a member back in the Zoo's form ------------------------------------------------------------
def test_a_member_reads_back_from_its_zoo_config() -> None:
    cfg = {"algo": "td3", "n_envs": 2, "n_steps": 256, "normalize_obs": True, "normalize_reward": False,
           "env_kwargs": {"g": 9.0}, "env_wrapper": [{"evo_reach.wrappers:StepPenalty": {"penalty": 0.05}}]}
    hp = {"learning_rate": 0.0007, "gamma": 0.98, "batch_size": 128, "tau": 0.01, "train_freq": 2,
          "gradient_steps": 3, "learning_starts": 50, "policy_delay": 2, "target_policy_noise": 0.2,
          "target_noise_clip": 0.5, "action_noise_std": 0.15, "net_arch": [64, 64], "buffer_size": 5000}
    config = zoo_hyperparams(cfg, hp, "MlpPolicy", 4096)
    assert config["normalize"] == "{'norm_obs': True, 'norm_reward': False}"
    assert config["env_wrapper"] == [{"evo_reach.wrappers.StepPenalty": {"penalty": 0.05}}]  # the Zoo's dotted path
    assert (config["noise_type"], config["noise_std"], config["policy_kwargs"]) == \
        ("normal", 0.15, "dict(net_arch=[64, 64])")
    entry = load_zoo(yaml.safe_dump({"Pendulum-v1": config}), "Pendulum-v1", "td3")
    assert entry is not None and entry.n_timesteps == 4096
    back = {k: v for k, v in entry.values.items()
            if k not in ("algo", "n_envs", "policy", "normalize_obs", "normalize_reward", "env_kwargs", "env_wrapper")}
    assert back == hp
    assert (entry.values["n_envs"], entry.values["normalize_obs"], entry.values["normalize_reward"]) == (2, True, False)


# -- end to end ----------------------------------------------------------------------------------------
def zoo_enjoy(zoo: Path, algo: str, env: str, steps: int) -> str:
    """``python -m rl_zoo3.enjoy`` on ``zoo`` (offline: the folder is not rl-trained-agents, so no hub)."""
    out = run_module("rl_zoo3.enjoy", "--algo", algo, "--env", env, "-f", str(zoo), "--no-render", "-n", str(steps),
                     "--seed", "0", timeout=300, env={"HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def episode_returns(text: str, pattern: str) -> list[float]:
    return [float(x) for x in re.findall(pattern, text)]


@pytest.mark.slow
def test_a_pbt_start_from_the_zoos_file_exported_and_played_by_the_zoo(tmp_path: Path) -> None:
    """PPO on CartPole-v1 from the Zoo's own ppo.yml: its run settings and a space around its values; the
    winner, exported, plays in rl_zoo3.enjoy exactly as in evo.enjoy (same model, same episodes)."""
    out = run_module("evo.wta", "--num-agents", "2", "--hyperparams", str(zoo_file("ppo")), "--env-id", "CartPole-v1",
                     "--steps-per-generation", "256", "--eval-episodes", "2", "--generations", "2", "--threads", "1",
                     "--log-dir", str(tmp_path), "--exp-name", "pbt", timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "pbt"
    meta = json.loads((run / "config.json").read_text())
    cfg, space = meta["config"], meta["search_space"]
    assert (cfg["n_envs"], cfg["n_steps"], cfg["policy"]) == (8, 32, "MlpPolicy")  # the Zoo's run settings
    assert space["params"]["learning_rate"]["init"] == [0.0008, 0.0012] and space["constants"]["ent_coef"] == 0.0

    zoo = tmp_path / "zoo"
    out = run_module("evo.export", str(run), "--zoo", str(zoo), timeout=200)
    assert out.returncode == 0, out.stderr
    folder = zoo / "ppo" / "CartPole-v1_1"
    assert (folder / "CartPole-v1.zip").read_bytes() == (run / "best_model.zip").read_bytes()
    config = yaml.safe_load((folder / "CartPole-v1" / "config.yml").read_text())
    best = json.loads((run / "summary.json").read_text())["best_member"]
    rows = [r for r in (run / "members.csv").read_text().splitlines()[1:] if r.split(",")[1] == str(best)]
    assert rows and config["n_envs"] == 8 and config["n_timesteps"] == 512 and config["normalize"] is False
    assert "rl_zoo3.enjoy --algo ppo --env CartPole-v1" in out.stdout

    played = zoo_enjoy(zoo, "ppo", "CartPole-v1", 1200)
    zoo_returns = episode_returns(played, r"Episode Reward: ([-\d.]+)")
    ours = run_module("evo.enjoy", str(run), "--episodes", "2", "--seed", "0", "--deterministic", timeout=200)
    assert ours.returncode == 0, ours.stderr
    returns = episode_returns(ours.stdout, r"return ([-\d.]+),")
    assert len(returns) == 2 and zoo_returns[:2] == returns


@pytest.mark.slow
def test_a_baseline_from_a_zoo_file_off_policy_with_vecnormalize(tmp_path: Path) -> None:
    """SAC on Pendulum-v1 from a Zoo file (normalize obs, lin_ schedule, policy_kwargs): exported with its
    VecNormalize statistics, rl_zoo3.enjoy loads them and plays what evo.enjoy plays."""
    hp = tmp_path / "sac.yml"
    hp.write_text("Pendulum-v1:\n  n_timesteps: 400\n  policy: 'MlpPolicy'\n  learning_rate: lin_1e-3\n"
                  "  normalize: \"{'norm_obs': True, 'norm_reward': False}\"\n  learning_starts: 100\n"
                  "  batch_size: 64\n  train_freq: 10\n  policy_kwargs: \"dict(net_arch=[32, 32])\"\n")
    out = run_module("evo.baseline", "--algo", "sac", "--env-id", "Pendulum-v1", "--hyperparams", str(hp),
                     "--eval-every", "200", "--eval-episodes", "1", "--threads", "1", "--log-dir", str(tmp_path),
                     "--exp-name", "base", timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "base"
    cfg = json.loads((run / "config.json").read_text())["config"]
    assert (cfg["num_timesteps"], cfg["n_envs"], cfg["normalize_obs"], cfg["normalize_reward"]) == (400, 1, True, False)
    assert cfg["set_hparams"]["learning_rate"] == 0.001 and cfg["set_hparams"]["net_arch"] == [32, 32]
    assert cfg["set_hparams"]["train_freq"] == 10

    zoo = tmp_path / "zoo"
    assert run_module("evo.export", str(run), "--zoo", str(zoo), timeout=200).returncode == 0
    params = zoo / "sac" / "Pendulum-v1_1" / "Pendulum-v1"
    assert (params / "vecnormalize.pkl").read_bytes() == (run / "best_model.vecnormalize.pkl").read_bytes()
    played = zoo_enjoy(zoo, "sac", "Pendulum-v1", 200)
    assert "Loading running average" in played
    ours = run_module("evo.enjoy", str(run), "--episodes", "1", "--seed", "0", "--deterministic", timeout=200)
    assert ours.returncode == 0, ours.stderr
    returns = episode_returns(ours.stdout, r"return ([-\d.]+),")
    assert len(returns) == 1 and episode_returns(played, r"Episode Reward: ([-\d.]+)") == returns


def test_bad_zoo_input_is_one_line_before_training(tmp_path: Path) -> None:
    out = run_module("evo.wta", "--num-agents", "2", "--hyperparams", str(zoo_file("ppo")), "--env-id", "Foo-v0",
                     "--log-dir", str(tmp_path), timeout=120)
    assert out.returncode == 2 and "no entry for --env-id Foo-v0" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    plain = tmp_path / "space.yml"
    plain.write_text("learning_rate: {low: 1.0e-5, high: 1.0e-3}\n")
    out = run_module("evo.baseline", "--hyperparams", str(plain), "--log-dir", str(tmp_path), timeout=120)
    assert out.returncode == 2 and "is not an RL Zoo hyperparameter file" in out.stderr
