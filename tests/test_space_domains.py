"""Search spaces against each hyperparameter's domain (evo.core.domains), for every algorithm: bounds,
initial values, choices and fixed values outside the domain are one ConfigError line naming the
parameter, the value and the domain; explore and PB2 never leave a domain."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ROOT, TINY, mpiexec_path, run_cmd

from evo.core.algos import algo_spec
from evo.core.domains import DISCOUNT, NON_NEGATIVE, POSITIVE, Domain
from evo.core.params import ExploreSettings, Param, Space, explore
from evo.core.pb2 import Observation, pb2_explore
from evo.core.space import default_space, parse_space
from evo.errors import ConfigError

ALGOS = ("ppo", "a2c", "sac", "td3", "dqn")
ROLLOUT = 256

# (algo, --hyperparams text, the parameter, what the one line must also say)
BAD: list[tuple[str, str, str, str]] = [
    ("ppo", "clip_range: {low: -1, high: 0.3}\n", "clip_range", "clip_range low -1 is outside its domain [0, inf)"),
    ("ppo", "n_epochs: 0\n", "n_epochs", "n_epochs 0 is outside its domain integers in [1, inf)"),
    ("ppo", "n_epochs: {low: 0, high: 5}\n", "n_epochs", "low 0 is outside its domain integers in [1, inf)"),
    ("ppo", "n_epochs: 2.5\n", "n_epochs", "2.5 is outside its domain integers in [1, inf)"),
    ("ppo", "n_epochs: {type: float, low: 1, high: 5}\n", "n_epochs", "type must be int or categorical"),
    ("ppo", "gamma: 1.5\n", "gamma", "gamma 1.5 is outside its domain (0, 1]"),
    ("ppo", "gae_lambda: 0\n", "gae_lambda", "gae_lambda 0 is outside its domain (0, 1]"),
    ("ppo", "learning_rate: 0\n", "learning_rate", "learning_rate 0 is outside its domain (0, inf)"),
    ("ppo", "batch_size: {low: 32, high: 64}\n", "batch_size", "must divide the rollout n_steps * n_envs = 256"),
    ("ppo", "batch_size: {choices: [64, 0]}\n", "batch_size", "batch_size 0 is outside its domain integers in"),
    ("ppo", "batch_size: {choices: [64, 100]}\n", "batch_size", "does not divide the rollout"),
    ("ppo", "clip_range: {choices: [0.1, -0.2]}\n", "clip_range", "clip_range -0.2 is outside its domain [0, inf)"),
    ("ppo", "vf_coef: {low: -0.5, high: 1}\n", "vf_coef", "vf_coef low -0.5 is outside its domain [0, inf)"),
    ("ppo", "max_grad_norm: 0\n", "max_grad_norm", "max_grad_norm 0 is outside its domain (0, inf)"),
    ("ppo", "sde_sample_freq: 0\n", "sde_sample_freq", "0 is outside its domain -1 or integers in [1, inf)"),
    ("ppo", "use_sde: 3\n", "use_sde", "use_sde 3 is outside its domain true or false"),
    ("ppo", "clip_range: abc\n", "clip_range", "clip_range 'abc' is outside its domain [0, inf)"),
    ("a2c", "ent_coef: -0.01\n", "ent_coef", "ent_coef -0.01 is outside its domain [0, inf)"),
    ("a2c", "rms_prop_eps: 0\n", "rms_prop_eps", "rms_prop_eps 0 is outside its domain (0, inf)"),
    ("a2c", "gae_lambda: {low: 0.0, high: 0.5}\n", "gae_lambda", "gae_lambda low 0 is outside its domain (0, 1]"),
    ("a2c", "gamma: {init: 1.2}\n", "gamma", "outside bounds"),
    ("a2c", "use_rms_prop: 2\n", "use_rms_prop", "use_rms_prop 2 is outside its domain true or false"),
    ("sac", "tau: 0\n", "tau", "tau 0 is outside its domain (0, 1]"),
    ("sac", "tau: {low: 0.01, high: 2}\n", "tau", "tau high 2 is outside its domain (0, 1]"),
    ("sac", "ent_coef: -0.1\n", "ent_coef", "ent_coef -0.1 is outside its domain 'auto' or 'auto_<x>' (x > 0)"),
    ("sac", "ent_coef: auto_-1\n", "ent_coef", "ent_coef 'auto_-1' is outside its domain"),
    ("sac", "gradient_steps: 0\n", "gradient_steps", "gradient_steps 0 is outside its domain -1 or integers"),
    ("sac", "learning_starts: -5\n", "learning_starts", "-5 is outside its domain integers in [0, inf)"),
    ("sac", "target_entropy: high\n", "target_entropy", "'high' is outside its domain 'auto' or (-inf, inf)"),
    ("td3", "policy_delay: 0\n", "policy_delay", "policy_delay 0 is outside its domain integers in [1, inf)"),
    ("td3", "target_policy_noise: {low: -0.1, high: 0.3}\n", "target_policy_noise", "low -0.1 is outside"),
    ("td3", "gradient_steps: {low: -1, high: 8}\n", "gradient_steps",
     "low -1 is outside its domain integers in [1, inf) (-1 only as a fixed value or a choice)"),
    ("td3", "buffer_size: 0\n", "buffer_size", "buffer_size 0 is outside its domain integers in [1, inf)"),
    ("td3", "net_arch: [64, 0]\n", "net_arch", "a non-empty list of positive layer sizes"),
    ("td3", "action_noise_std: {choices: [0.1, -1]}\n", "action_noise_std", "-1 is outside its domain [0, inf)"),
    ("dqn", "exploration_fraction: 0\n", "exploration_fraction", "0 is outside its domain (0, 1]"),
    ("dqn", "exploration_final_eps: 1.5\n", "exploration_final_eps", "1.5 is outside its domain [0, 1]"),
    ("dqn", "exploration_initial_eps: {low: 0.5, high: 1.2}\n", "exploration_initial_eps",
     "high 1.2 is outside its domain [0, 1]"),
    ("dqn", "target_update_interval: {low: 0, high: 100, type: int}\n", "target_update_interval",
     "low 0 is outside its domain integers in [1, inf)"),
    ("dqn", "train_freq: {choices: [4, 0]}\n", "train_freq", "train_freq 0 is outside its domain"),
    ("dqn", "batch_size: {low: 16.5, high: 64}\n", "batch_size", "low 16.5 is outside its domain integers in"),
    ("dqn", "max_grad_norm: {low: 0, high: 10}\n", "max_grad_norm", "low 0 is outside its domain (0, inf)"),
]


@pytest.mark.parametrize(("algo", "text", "name", "needle"), BAD, ids=[f"{a}-{t.strip()}" for a, t, _, _ in BAD])
def test_a_space_outside_the_domain_is_one_line_naming_the_parameter(algo: str, text: str, name: str,
                                                                     needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_space(text, ROLLOUT, "bad.yaml", algo)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("--hyperparams: "), msg
    assert name in msg and needle in msg, msg


def test_the_bad_files_cover_every_algorithm() -> None:
    assert len(BAD) >= 20 and {a for a, *_ in BAD} == set(ALGOS)


@pytest.mark.parametrize(("algo", "text"), [
    ("ppo", "gamma: 1.0\ngae_lambda: 1\nent_coef: 0\nclip_range: {low: 0, high: 0.3}\n"),
    ("ppo", "sde_sample_freq: -1\nuse_sde: true\nn_epochs: {low: 1, high: 1}\n"),
    ("a2c", "ent_coef: 0\nrms_prop_eps: 1.0e-8\ngae_lambda: {low: 0.5, high: 0.99}\n"),
    ("sac", "gradient_steps: -1\nent_coef: auto_0.1\ntarget_entropy: -3\ntau: 1\n"),
    ("sac", "gradient_steps: {choices: [-1, 1, 4]}\nent_coef: {choices: [auto, 0.0, 0.1]}\n"),
    ("td3", "target_policy_noise: 0\nlearning_starts: 0\npolicy_delay: {low: 1, high: 8, type: int}\n"),
    ("dqn", "exploration_fraction: 1\nexploration_final_eps: 0\nexploration_initial_eps: 1\ntau: 1\n"),
])
def test_the_edges_of_each_domain_are_accepted(algo: str, text: str) -> None:
    space = parse_space(text, ROLLOUT, "ok.yaml", algo)
    hp = space.sample(np.random.default_rng(0))
    for name, value in hp.items():
        assert space.domains[name].coerce(name, value) == value


def test_an_off_policy_batch_size_range_is_honoured() -> None:
    # it used to keep the default choices silently: low/high now make it a range of whole numbers
    space = parse_space("batch_size: {low: 32, high: 64}\n", ROLLOUT, "hp.yaml", "sac")
    p = space.params["batch_size"]
    assert (p.kind, p.low, p.high, p.choices) == ("int", 32, 64, None)
    rng = np.random.default_rng(1)
    hp = space.sample(rng)
    seen = set()
    for _ in range(300):
        hp, _ = explore(hp, space, rng)
        assert isinstance(hp["batch_size"], int) and 32 <= hp["batch_size"] <= 64
        seen.add(hp["batch_size"])
    assert len(seen) > 10


def test_a_ppo_batch_size_range_is_rejected_even_without_a_rollout() -> None:
    with pytest.raises(ConfigError, match=r"batch_size 32\.\.64: for --algo ppo a batch size must divide the rollout"):
        parse_space("batch_size: {low: 32, high: 64}\n", None, "hp.yaml", "ppo")


# -- explore and PB2 never leave the domain ---------------------------------------------------------
def random_space(algo: str, rng: np.random.Generator) -> Space:
    """Random bounds inside the domain of each numeric live hyperparameter of ``algo`` (some at its
    very edges), random scales, and hard explore settings."""
    spec = algo_spec(algo)
    params = []
    for name in spec.live:
        d = spec.domains[name]
        if not d.numeric or rng.random() < 0.2:
            continue
        lo = d.low if math.isfinite(d.low) else -5.0
        hi = d.high if math.isfinite(d.high) else lo + 10.0 ** rng.uniform(0, 4)
        if d.low_open:
            lo = math.nextafter(lo, math.inf)
        if d.high_open:
            hi = math.nextafter(hi, -math.inf)
        a, b = sorted(rng.uniform(lo, hi, 2)) if rng.random() < 0.5 else (lo, hi)
        if d.kind == "int":
            a, b = math.ceil(a), max(math.floor(b), math.ceil(a))
        scale = "log" if a > 0 and rng.random() < 0.4 else "one_minus" if b < 1 and rng.random() < 0.4 else "linear"
        params.append(Param(name, kind="int" if d.kind == "int" else "float", scale=scale, low=a, high=b))
    factors = tuple(float(f) for f in rng.choice([0.01, 0.5, 0.8, 1.2, 2.0, 100.0], size=3))
    space = Space(params={p.name: p for p in params}, domains=dict(spec.domains),
                  explore_settings=ExploreSettings(perturb_factors=factors, resample_probability=float(rng.random())))
    space.validate()
    return space


def assert_in_domain(space: Space, hp: dict[str, Any]) -> None:
    for name, value in hp.items():
        d = space.domains[name]
        assert d.coerce(name, value) == value, (name, value)
        if d.numeric and not isinstance(value, str):
            assert d.in_interval(float(value)) or value in d.extra, (name, value, str(d))


@pytest.mark.parametrize("algo", ALGOS)
def test_explore_never_leaves_the_domain(algo: str) -> None:
    spaces = [default_space(ROLLOUT, algo)] + [random_space(algo, np.random.default_rng([7, case]))
                                               for case in range(40)]
    for case, space in enumerate(spaces):
        rng = np.random.default_rng([algo.encode()[0], case])
        hp = space.sample(rng)
        assert_in_domain(space, hp)
        for _ in range(100):
            hp, _ = explore(hp, space, rng)
            assert_in_domain(space, hp)


def test_explore_clips_to_the_domain_even_where_the_bounds_reach_past_it() -> None:
    # a space built in code (not validated): its bounds leave the domain, explore still does not
    space = Space(params={"clip_range": Param("clip_range", low=-1.0, high=1.0),
                          "gamma": Param("gamma", low=0.5, high=1.5),
                          "learning_rate": Param("learning_rate", low=-1.0, high=1.0)},
                  domains={"clip_range": NON_NEGATIVE, "gamma": DISCOUNT, "learning_rate": POSITIVE},
                  explore_settings=ExploreSettings(perturb_factors=(0.5, 3.0), resample_probability=0.5))
    rng = np.random.default_rng(0)
    hp = {"clip_range": 0.0, "gamma": 1.0, "learning_rate": 1e-3}
    low_edge = high_edge = 0
    for _ in range(500):
        hp, _ = explore(hp, space, rng)
        assert hp["clip_range"] >= 0 and 0 < hp["gamma"] <= 1 and hp["learning_rate"] > 0, hp
        low_edge += hp["clip_range"] == 0.0
        high_edge += hp["gamma"] == 1.0
    assert low_edge > 0 and high_edge > 0  # the clip really happened


@pytest.mark.parametrize("algo", ALGOS)
def test_pb2_never_leaves_the_domain(algo: str) -> None:
    for case in range(3):
        r = np.random.default_rng([11, case])
        space = default_space(ROLLOUT, algo) if case == 0 else random_space(algo, r)
        history = []
        for i in range(1, 4):
            for m in range(4):
                hp = {n: p.sample(r, initial=False) for n, p in space.params.items()}
                history.append(Observation(i * 256.0, hp, float(r.normal()), m))
        donor = space.sample(r)
        new, changes = pb2_explore(donor, space, r, history, 3 * 256.0)
        assert_in_domain(space, new)
        assert any(c["op"] == "pb2" for c in changes.values()) or not space.params


def test_domain_clip_and_text() -> None:
    assert DISCOUNT.clip(0.0) > 0 and DISCOUNT.in_interval(DISCOUNT.clip(-3.0)) and DISCOUNT.clip(7.0) == 1.0
    assert POSITIVE.clip(-1.0) > 0 and NON_NEGATIVE.clip(-1.0) == 0.0
    assert str(DISCOUNT) == "(0, 1]" and str(algo_spec("td3").domains["gradient_steps"]) == \
        "-1 or integers in [1, inf)"
    assert not NON_NEGATIVE.in_interval(math.inf) and not NON_NEGATIVE.in_interval(math.nan)
    assert Domain("int", 1).coerce("n", "64") == 64 and Domain("int", 1).coerce("n", 2.0) == 2
    assert algo_spec("ppo").domains["net_arch"].coerce("net_arch", "[64, 64]") == [64, 64]  # as a CSV writes it


# -- registration path: pure callers see the built-in algorithms, evo.report never imports torch -----
def test_pure_modules_find_the_algorithms_without_importing_torch_first() -> None:
    code = ("import sys\n"
            "import evo.core.space, evo.core.pb2, evo.hparam_sets\n"
            "assert 'torch' not in sys.modules and 'stable_baselines3' not in sys.modules\n"
            "space = evo.core.space.default_space(256, 'dqn')\n"  # the first lookup loads the adapters
            "assert 'target_update_interval' in space.params\n"
            "import evo.learners\n"
            "assert evo.learners.LEARNERS['dqn'].spec is evo.core.algos.algo_spec('dqn')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def test_report_does_not_import_torch() -> None:
    code = ("import runpy, sys\n"
            "sys.argv = ['evo.report', '--help']\n"
            "try:\n    runpy.run_module('evo.report', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'evo.learners' not in sys.modules, 'torch imported'\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


# -- end to end: every rank exits 2 before training, with the one line ------------------------------
@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_a_bad_space_stops_every_rank_before_training(tmp_path: Path) -> None:
    mpiexec = mpiexec_path()
    if mpiexec is None:
        pytest.skip("no mpiexec")
    bad = tmp_path / "bad.yaml"
    bad.write_text("clip_range: {low: -1, high: 0.3}\n")
    # each rank runs the entry point's main() in-process and leaves its own exit code in a file
    wrapper = ("import os, sys\n"
               "from evo.truncation import main\n"
               "out = sys.argv.pop(1)\n"
               "try:\n    code = main(sys.argv[1:])\n"
               "except SystemExit as exc:\n    code = exc.code if isinstance(exc.code, int) else 1\n"
               "with open(os.path.join(out, 'rc.' + os.environ['PMI_RANK']), 'w') as fh:\n    fh.write(str(code))\n"
               "sys.exit(code)\n")
    res = run_cmd([mpiexec, "-n", "2", sys.executable, "-c", wrapper, str(tmp_path), *TINY, "--hyperparams", str(bad),
                   "--log-dir", str(tmp_path / "logs"), "--exp-name", "x", "--generations", "1"], timeout=100)
    assert res.returncode == 2, res.stderr[-3000:]
    assert {p.name: p.read_text() for p in tmp_path.glob("rc.*")} == {"rc.0": "2", "rc.1": "2"}
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == ["python -m evo.truncation: error: --hyperparams: clip_range low -1 is outside its domain "
                     "[0, inf)"], res.stderr[-3000:]
    assert "Traceback" not in res.stderr and not (tmp_path / "logs" / "x").exists()  # nothing trained or written
