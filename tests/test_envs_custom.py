"""Your own environment: ``--env-id package.module:Name-v0``, ``--env-kwargs``, ``--wrapper``, and the
policy an observation space needs.

The env is the example shipped in ``examples/custom_env`` (package ``evo_reach``: a 1-D reach task
``Reach-v0``, its Dict-observation twin ``DictReach-v0`` and a ``StepPenalty`` reward wrapper).
Unit tests put that folder on ``sys.path``; the end-to-end tests pass it as ``PYTHONPATH`` to
``mpiexec`` (training), ``python -m evo.enjoy`` and ``python -m evo.report``, as the README shows.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from conftest import ROOT, mpiexec_path, run_cmd, run_module, run_mpi
from gymnasium import spaces

from evo.cmdline import build_parser, parse
from evo.config import BaselineConfig, PBTConfig
from evo.envs import (
    EnvSpec,
    check_env,
    env_settings_from_yaml,
    env_snapshot,
    env_spaces,
    make_vec_env,
    merge_env_settings,
    parse_key_values,
    restore_env_snapshot,
    split_env_settings,
    verify_env,
    wrappers,
    wrappers_value,
)
from evo.errors import ConfigError
from evo.policies import resolve_policy

EXAMPLES = ROOT / "examples" / "custom_env"
REACH = "evo_reach.envs:Reach-v0"
DICT_REACH = "evo_reach.envs:DictReach-v0"
PENALTY = "evo_reach.wrappers:StepPenalty"


@pytest.fixture(autouse=True)
def examples_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


def one_line_error(fn: object, *needles: str) -> str:
    with pytest.raises(ConfigError) as err:
        fn()  # type: ignore[operator]
    msg = str(err.value)
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def pbt(*argv: str) -> PBTConfig:
    return parse(PBTConfig, list(argv), "evo", "", strategy="truncation")


# -- parsing: --env-kwargs, --wrapper, the hyperparameter file ----------------------------------------
def test_key_values_are_typed_by_yaml() -> None:
    got = parse_key_values(["size=5", "noise=0.1", "on=true", "name=foo", "none=null", "xs=[1, 2]", "empty=",
                            "eq=a=b", "rate=1e-3"])
    assert got == {"size": 5, "noise": 0.1, "on": True, "name": "foo", "none": None, "xs": [1, 2], "empty": "",
                   "eq": "a=b", "rate": 0.001}  # YAML 1.1 reads 1e-3 (no dot) as a string: taken as the number
    assert type(got["size"]) is int and type(got["noise"]) is float
    one_line_error(lambda: parse_key_values(["size"]), "KEY=VALUE", "'size'")
    one_line_error(lambda: parse_key_values(["1size=3"]), "not a keyword argument name")
    one_line_error(lambda: parse_key_values(["render_mode=human"]), "render_mode is set by evo")
    one_line_error(lambda: parse_key_values(["day=2020-01-01"]), "day=")  # a date: config.json could not hold it
    one_line_error(lambda: parse_key_values(["x=[1"]), "cannot read the value")


def test_command_line_env_kwargs_merge_and_wrappers_keep_their_order() -> None:
    cfg = pbt("--env-id", REACH, "--env-kwargs", "size=5", "max_steps=12", "--wrapper", PENALTY, "penalty=0.5",
              "--env-kwargs", "size=6", "--wrapper", "gymnasium.wrappers.TimeLimit", "max_episode_steps=8")
    assert cfg.env_kwargs == {"size": 6, "max_steps": 12}  # a later use wins key by key
    assert cfg.env_wrapper == [{PENALTY: {"penalty": 0.5}}, {"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 8}}]
    spec = cfg.env_spec()
    assert spec.module == "evo_reach.envs" and spec.name == "Reach-v0" and not spec.plain
    assert [w.path for w in spec.wrappers] == [PENALTY, "gymnasium.wrappers.TimeLimit"]
    assert pbt().env_kwargs == {} and pbt().env_wrapper == [] and pbt().env_spec().plain  # defaults: nothing
    assert pbt().env_kwargs is not PBTConfig().env_kwargs  # no default shared between configs
    text = build_parser(PBTConfig, "evo", "").format_help()
    assert "--env-kwargs KEY=VALUE [KEY=VALUE ...]" in text and "--wrapper PATH [KEY=VALUE ...]" in text
    one_line_error(lambda: pbt("--wrapper", "StepPenalty"), "--wrapper 'StepPenalty'", "package.module.Class")
    one_line_error(lambda: pbt("--env-kwargs", "size"), "--env-kwargs", "KEY=VALUE")
    one_line_error(lambda: pbt("--wrapper"), "--wrapper")


def test_config_round_trips_through_config_json() -> None:
    cfg = pbt("--env-id", REACH, "--env-kwargs", "size=5", "xs=[1, 2]", "--wrapper", PENALTY, "penalty=0.25")
    saved = json.loads(json.dumps(cfg.to_dict(), sort_keys=True, default=str))  # as save_config writes it
    assert EnvSpec.from_config(saved) == cfg.env_spec()
    assert saved["env_kwargs"] == {"size": 5, "xs": [1, 2]} and saved["env_wrapper"] == [{PENALTY: {"penalty": 0.25}}]
    old = {k: v for k, v in saved.items() if k not in ("env_kwargs", "env_wrapper")}  # a run of an older evo
    assert EnvSpec.from_config(old) == EnvSpec(REACH)


def test_wrappers_take_every_rl_zoo_form() -> None:
    a = "gymnasium.wrappers.FlattenObservation"
    assert wrappers(None) == () and wrappers([]) == ()
    assert wrappers(a) == wrappers([a]) == wrappers({a: None}) == wrappers([{a: {}}])
    chain = wrappers([a, {PENALTY: {"penalty": 0.1}}])
    assert wrappers_value(chain) == [{a: {}}, {PENALTY: {"penalty": 0.1}}]
    assert wrappers(wrappers_value(chain)) == chain  # the canonical form reads back as itself
    one_line_error(lambda: wrappers([{a: {}, PENALTY: {}}]), "expected an import path")
    one_line_error(lambda: wrappers([{PENALTY: [1]}]), "mapping")
    one_line_error(lambda: wrappers("no_module"), "import path")


def test_hyperparameter_file_settings_yield_to_the_command_line() -> None:
    env, rest = split_env_settings({"env_kwargs": {"size": 7, "max_steps": 9}, "env_wrapper": PENALTY,
                                    "learning_rate": 1e-3})
    assert rest == {"learning_rate": 1e-3} and set(env) == {"env_kwargs", "env_wrapper"}
    kwargs, chain = merge_env_settings({"size": 5}, [], env)
    assert kwargs == {"size": 5, "max_steps": 9} and chain == [{PENALTY: {}}]
    _, chain = merge_env_settings({}, [{"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 3}}], env)
    assert chain == [{"gymnasium.wrappers.TimeLimit": {"max_episode_steps": 3}}]  # the command line's replace
    cfg = pbt("--env-id", REACH, "--env-kwargs", "size=5")
    cfg.apply_env_settings(env)
    assert cfg.env_kwargs == {"size": 5, "max_steps": 9} and cfg.env_wrapper == [{PENALTY: {}}]
    one_line_error(lambda: cfg.apply_env_settings({"env_kwargs": [1]}), "hyperparameter file: env_kwargs")
    one_line_error(lambda: pbt("--env-id", "bigfish").apply_env_settings(env), "ProcGen")
    text = f"learning_rate: {{low: 1.0e-4, high: 1.0e-3}}\nenv_kwargs: {{size: 6}}\nenv_wrapper: {PENALTY}\n"
    assert env_settings_from_yaml(text) == {"env_kwargs": {"size": 6}, "env_wrapper": PENALTY}
    assert env_settings_from_yaml(None) == {} and env_settings_from_yaml("a: [") == {}  # YAML errors: the parser's


def test_baseline_param_file_set_carries_env_settings(tmp_path: Path) -> None:
    sets = tmp_path / "sets.yaml"
    sets.write_text(f"reach:\n  n_envs: 2\n  n_steps: 64\n  learning_rate: 0.001\n"
                    f"  env_kwargs: {{size: 5}}\n  env_wrapper:\n    - {PENALTY}: {{penalty: 0.2}}\n")
    argv = ["--env-id", REACH, "--param-file", str(sets), "--param-name", "reach", "--env-kwargs", "max_steps=6"]
    cfg = parse(BaselineConfig, argv, "evo", "")
    cfg.resolve({"env_id", "param_file", "param_name", "env_kwargs"}, sets.read_text())
    assert cfg.env_kwargs == {"size": 5, "max_steps": 6} and cfg.env_wrapper == [{PENALTY: {"penalty": 0.2}}]
    assert cfg.set_hparams is not None and cfg.set_hparams["learning_rate"] == 0.001 and cfg.n_envs == 2


# -- building: module import, kwargs, wrappers ----------------------------------------------------
def test_check_env_imports_no_user_code() -> None:
    check_env(EnvSpec("no_such_package_xyz.envs:Thing-v0"))  # the form is fine: importing is for later
    assert "no_such_package_xyz" not in sys.modules
    one_line_error(lambda: check_env(EnvSpec("bad module:Thing-v0")), "package.module:Name-v0")
    one_line_error(lambda: check_env(EnvSpec("mod:")), "package.module:Name-v0")
    one_line_error(lambda: check_env(EnvSpec("Reach-v9")), "package.module:Reach-v9")
    one_line_error(lambda: check_env(EnvSpec("bigfish", env_kwargs={"a": 1})), "Gymnasium envs", "ProcGen")


def test_vec_env_applies_kwargs_then_wrappers_inside_the_monitor() -> None:
    spec = EnvSpec(REACH, env_kwargs={"size": 5}, wrappers=wrappers([{PENALTY: {"penalty": 0.5}}]))
    venv: Any = make_vec_env(spec, 2, seed=0)
    try:
        env = venv.envs[0]
        assert type(env).__name__ == "Monitor" and type(env.env).__name__ == "StepPenalty"
        assert env.unwrapped.size == 5 and env.unwrapped.max_steps == 10 and env.env.penalty == 0.5
        venv.reset()
        assert env.render_mode == "rgb_array" and venv.get_images()[0].shape == (16, 80, 3)  # 5 cells of 16 px
        episodes: list[dict[str, float]] = []
        while len(episodes) < 6:
            _, rewards, dones, infos = venv.step(np.array([1, 0]))
            assert set(np.round(rewards, 6)) <= {-0.5, 0.5}  # 0 or 1, less the penalty
            episodes += [info["episode"] for info, done in zip(infos, dones, strict=True) if done]
        for ep in episodes:  # the score is the wrapped env's return: 1{goal} - 0.5 per step
            reached = ep["l"] < 10 or ep["r"] > -0.5 * 10
            assert ep["r"] == pytest.approx(float(reached) - 0.5 * ep["l"])
    finally:
        venv.close()


def test_snapshot_of_a_wrapped_custom_env_continues_its_episodes() -> None:
    spec = EnvSpec(REACH, env_kwargs={"size": 7}, wrappers=wrappers(PENALTY))
    a: Any = make_vec_env(spec, 2, seed=3)
    b: Any = make_vec_env(spec, 2, seed=4)
    a.reset()
    b.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        a.step(rng.integers(0, 2, 2))
    blob = env_snapshot(a)
    assert blob is not None
    restore_env_snapshot(b, blob)
    for _ in range(30):
        act = rng.integers(0, 2, 2)
        oa, ra, da, ia = a.step(act)
        ob, rb, db, ib = b.step(act)
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb) and np.array_equal(da, db)
        assert [i.get("episode", {}).get("r") for i in ia] == [i.get("episode", {}).get("r") for i in ib]
    a.close()
    b.close()


def test_build_errors_are_one_line_and_say_what_to_fix() -> None:
    host = socket.gethostname()
    one_line_error(lambda: env_spaces(EnvSpec("no_such_package_xyz.envs:Thing-v0")),
                   "cannot import 'no_such_package_xyz.envs'", f"on host {host}", "PYTHONPATH")
    one_line_error(lambda: env_spaces(EnvSpec("evo_reach.envs:Nope-v0")),
                   "did not register 'Nope-v0'", "DictReach-v0, Reach-v0", "gymnasium.register")
    one_line_error(lambda: env_spaces(EnvSpec(REACH, env_kwargs={"sise": 3})),
                   "cannot make Reach-v0 with --env-kwargs sise=3", "TypeError", "sise")
    one_line_error(lambda: env_spaces(EnvSpec(REACH, env_kwargs={"size": 1})), "ValueError: size must be >= 2")
    one_line_error(lambda: env_spaces(EnvSpec(REACH, wrappers=wrappers("evo_reach.wrappers.Nope"))),
                   "evo_reach.wrappers has no attribute 'Nope'")
    one_line_error(lambda: env_spaces(EnvSpec(REACH, wrappers=wrappers({PENALTY: {"scale": 2}}))),
                   f"--wrapper {PENALTY} scale=2", "TypeError")
    one_line_error(lambda: env_spaces(EnvSpec(REACH, wrappers=wrappers("evo_reach.envs.CELL"))), "not callable")


def test_env_spaces_see_the_wrappers() -> None:
    obs, act = env_spaces(EnvSpec(DICT_REACH, env_kwargs={"size": 4}))
    assert isinstance(obs, spaces.Dict) and set(obs.spaces) == {"position", "goal"} and act == spaces.Discrete(2)
    flat, _ = env_spaces(EnvSpec(DICT_REACH, wrappers=wrappers("gymnasium.wrappers.FlattenObservation")))
    assert isinstance(flat, spaces.Box) and flat.shape == (2,)
    obs, act = env_spaces(EnvSpec("bigfish"))  # ProcGen: known without starting the engine
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and act == spaces.Discrete(15)


# -- policies: what each observation space needs ----------------------------------------------------
def test_auto_policy_follows_the_observation_space() -> None:
    box = spaces.Box(-1, 1, (3,))
    image = spaces.Box(0, 255, (32, 32, 3), dtype=np.uint8)
    dict_space = spaces.Dict({"a": box, "b": spaces.Discrete(3)})
    assert resolve_policy("auto", box) == ("MlpPolicy", {})
    assert resolve_policy("auto", image) == ("CnnPolicy", {})
    assert resolve_policy("auto", dict_space) == ("MultiInputPolicy", {})
    assert resolve_policy("multiinputpolicy", dict_space) == ("MultiInputPolicy", {})
    assert resolve_policy("MlpPolicy", image) == ("MlpPolicy", {})  # SB3 flattens images for an MLP
    for name in ("MlpPolicy", "CnnPolicy", "impala"):
        one_line_error(lambda n=name: resolve_policy(n, dict_space), "Dict observations",
                       "--policy MultiInputPolicy")
    one_line_error(lambda: resolve_policy("MultiInputPolicy", box), "--policy auto (MlpPolicy here)")
    one_line_error(lambda: resolve_policy("CnnPolicy", box), "image observations", "MlpPolicy")
    one_line_error(lambda: resolve_policy("auto", spaces.Tuple((box, box))), "Tuple", "FlattenObservation")
    one_line_error(lambda: resolve_policy("auto", spaces.Dict({"inner": dict_space})), "'inner'", "FlattenObservation")
    one_line_error(lambda: resolve_policy("auto", spaces.Text(5)), "Text", "write a wrapper")


def test_multi_input_policy_trains_on_the_dict_env() -> None:
    from stable_baselines3 import PPO

    venv = make_vec_env(EnvSpec(DICT_REACH, env_kwargs={"size": 4}), 2, seed=0)
    policy, kwargs = resolve_policy("auto", venv.observation_space)
    model = PPO(policy, venv, policy_kwargs=kwargs, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    assert model.num_timesteps == 64 and type(model.policy).__name__ == "MultiInputActorCriticPolicy"
    venv.close()


def test_verify_env_checks_the_built_env() -> None:
    verify_env(pbt("--env-id", DICT_REACH, "--env-kwargs", "size=4"))
    verify_env(pbt("--env-id", DICT_REACH, "--policy", "MlpPolicy", "--wrapper",
                   "gymnasium.wrappers.FlattenObservation"))  # the wrapper makes it a Box
    one_line_error(lambda: verify_env(pbt("--env-id", DICT_REACH, "--policy", "MlpPolicy")), "MultiInputPolicy")
    one_line_error(lambda: verify_env(pbt("--env-id", REACH, "--algo", "sac")), "--algo sac", "Discrete(2)")
    one_line_error(lambda: verify_env(pbt("--env-id", "no_such_package_xyz.envs:Thing-v0")), "cannot import")


# -- end to end: train, evaluate, enjoy, report -------------------------------------------------------
EPISODE = re.compile(r"^episode \d+/\d+: return (-?[0-9.]+), length (\d+)$", re.M)


def returns_fit(ret: float, length: int, penalty: float, size: int) -> bool:
    """A Reach episode under StepPenalty: 1 for the goal (which ends it before 2 * size steps, or on
    the last one) less ``penalty`` per step."""
    goal = (1.0,) if length < 2 * size else (0.0, 1.0)
    return 1 <= length <= 2 * size and any(abs(ret - (g - penalty * length)) < 0.01 for g in goal)
ENV = {"PYTHONPATH": str(EXAMPLES)}
TRAIN = ["--n-envs", "2", "--n-steps", "64", "--steps-per-generation", "512", "--generations", "3",
         "--eval-episodes", "4", "--no-tb-writer"]


def _train_enjoy_report(run: Path, env_args: list[str], penalty: float, size: int) -> str:
    r = run_mpi(2, "evo.truncation", *env_args, *TRAIN, "--log-dir", str(run.parent), "--exp-name", run.name,
                timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.loads((run / "config.json").read_text())["config"]
    assert saved["env_kwargs"]["size"] == size
    gif = run / "play.gif"
    e = run_module("evo.enjoy", str(run), "--episodes", "2", "--gif", str(gif), timeout=120, env=ENV)
    assert e.returncode == 0, e.stderr
    eps = [(float(m[1]), int(m[2])) for m in EPISODE.finditer(e.stdout)]
    assert len(eps) == 2, e.stdout
    for ret, length in eps:  # the wrapper's penalty, on episodes of the kwargs' size (cut at 2 * size steps)
        assert returns_fit(ret, length, penalty, size), (ret, length)
    assert f"frames of 16x{16 * size}" in e.stdout  # enjoy built the env with the run's kwargs
    out = run.parent / f"{run.name}-report"
    rep = run_module("evo.report", str(run), "--out", str(out), "--random-episodes", "6", timeout=180, env=ENV)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (out / "summary.md").is_file()
    floor = re.search(r"^random policy \(reference\).*?(-?\d+\.\d+) \(mean of 6 episodes\)", rep.stdout, re.M)
    assert floor is not None, rep.stdout  # measured now, in this process: it built the run's env
    assert float(floor[1]) <= 1.0 - penalty  # every episode pays the wrapper's penalty at least once
    return rep.stdout


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(720)
def test_custom_env_with_kwargs_and_wrapper_end_to_end(tmp_path: Path) -> None:
    out = _train_enjoy_report(tmp_path / "reach", ["--env-id", REACH, "--env-kwargs", "size=5", "--wrapper", PENALTY,
                                                   "penalty=0.05"], 0.05, 5)
    assert "Reach-v0" in out


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(720)
def test_dict_observation_env_end_to_end(tmp_path: Path) -> None:
    run = tmp_path / "dict"
    _train_enjoy_report(run, ["--env-id", DICT_REACH, "--env-kwargs", "size=4", "--wrapper", PENALTY, "penalty=0.1"],
                        0.1, 4)
    from stable_baselines3 import PPO

    model = PPO.load(run / "best_model.zip", device="cpu")
    assert type(model.policy).__name__ == "MultiInputActorCriticPolicy"  # auto picked MultiInputPolicy


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.timeout(600)
def test_baseline_takes_env_settings_from_its_param_file(tmp_path: Path) -> None:
    sets = tmp_path / "sets.yaml"
    sets.write_text(f"reach:\n  n_envs: 2\n  n_steps: 64\n  env_kwargs: {{size: 5}}\n"
                    f"  env_wrapper:\n    - {PENALTY}: {{penalty: 0.05}}\n")
    r = run_mpi(1, "evo.baseline", "--env-id", REACH, "--param-file", str(sets), "--param-name", "reach",
                "--num-timesteps", "1024", "--eval-every", "512", "--eval-episodes", "4", "--log-dir", str(tmp_path),
                "--exp-name", "base", "--no-tb-writer", timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = json.loads((tmp_path / "base" / "config.json").read_text())["config"]
    assert saved["env_kwargs"] == {"size": 5} and saved["env_wrapper"] == [{PENALTY: {"penalty": 0.05}}]
    e = run_module("evo.enjoy", str(tmp_path / "base"), "--episodes", "2", timeout=120, env=ENV)
    assert e.returncode == 0, e.stderr
    eps = [(float(m[1]), int(m[2])) for m in EPISODE.finditer(e.stdout)]
    assert len(eps) == 2 and all(returns_fit(ret, n, 0.05, 5) for ret, n in eps), e.stdout


@pytest.mark.mpi
@pytest.mark.timeout(240)
def test_module_importable_on_some_ranks_only_ends_the_job_with_one_line(tmp_path: Path) -> None:
    """Rank 0 finds evo_reach, rank 1 does not (its PYTHONPATH lacks the folder): every rank stops
    within seconds, with one line that names the module and the host."""
    mpiexec = mpiexec_path()
    if mpiexec is None:
        pytest.skip("no mpiexec")
    args = ["-m", "evo.truncation", "--env-id", REACH, *TRAIN, "--log-dir", str(tmp_path), "--exp-name", "partial"]
    cmd = [mpiexec, "-n", "1", "-env", "PYTHONPATH", str(EXAMPLES), sys.executable, *args,
           ":", "-n", "1", "-env", "PYTHONPATH", str(tmp_path), sys.executable, *args]
    r = run_cmd(cmd, timeout=200)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert lines and all("cannot import 'evo_reach.envs'" in ln and socket.gethostname() in ln for ln in lines), \
        r.stderr[-3000:]
    assert r.seconds < 120, r.seconds
    assert not (tmp_path / "partial" / "best_model.zip").exists()


def test_examples_readme_command_is_the_one_tested() -> None:
    """The README's example runs the env, kwargs and wrapper tested here."""
    readme = (ROOT / "README.md").read_text()
    assert f"--env-id {REACH} --env-kwargs size=5 --wrapper {PENALTY} penalty=0.05" in readme
    assert "PYTHONPATH=examples/custom_env" in readme


def test_example_env_is_a_valid_gymnasium_env() -> None:
    import evo_reach.envs  # noqa: F401  (registers the ids)
    from gymnasium.utils.env_checker import check_env as gym_check

    for env_id in ("Reach-v0", "DictReach-v0"):
        env = gym.make(env_id, size=6, render_mode="rgb_array").unwrapped
        gym_check(env, skip_render_check=False)
        env.close()
    assert subprocess.run([sys.executable, "-c", "import evo_reach"], capture_output=True,
                          env={"PYTHONPATH": str(EXAMPLES)}).returncode == 0
