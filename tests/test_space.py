"""The search space (evo.core.space): bounds, sampling, PBT's explore step and YAML overrides.

Pure logic: no MPI, no stable-baselines3. Randomised checks are seeded loops over many rngs.
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from evo.core.algos import algo_spec
from evo.core.space import (
    ExploreSettings,
    Param,
    Space,
    check_batch_size,
    default_space,
    explore,
    load_space,
    space_from_mapping,
)
from evo.errors import ConfigError

STANDARD_BATCH_SIZES = (32, 64, 128, 256, 512, 1024)


# -- helpers --------------------------------------------------------------------------------------
def with_explore(space: Space, factors: tuple[float, ...] = (0.8, 1.2), resample: float = 0.25) -> Space:
    return replace(space, explore_settings=ExploreSettings(perturb_factors=factors, resample_probability=resample))


def assert_valid_value(p: Param, value: Any) -> None:
    """``value`` is a legal value of ``p``: within bounds, right Python type, one of the choices."""
    if p.kind == "categorical":
        assert p.choices is not None
        assert value in p.choices, (p.name, value)
        return
    assert p.low is not None and p.high is not None
    assert not isinstance(value, bool), (p.name, value)
    assert math.isfinite(value), (p.name, value)
    assert p.low <= value <= p.high, (p.name, value, p.low, p.high)
    if p.kind == "int":
        assert type(value) is int, (p.name, value, type(value))
    else:
        assert type(value) is float, (p.name, value, type(value))


def assert_valid_hparams(space: Space, hp: dict[str, Any]) -> None:
    assert set(hp) == set(space.names)
    for name, p in space.params.items():
        assert_valid_value(p, hp[name])
    for name, value in space.constants.items():
        assert hp[name] == value


def write(tmp_path: Path, text: str, name: str = "hp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_one_line_config_error(exc: pytest.ExceptionInfo[ConfigError], *needles: str) -> None:
    msg = str(exc.value)
    assert msg, "empty error message"
    assert "\n" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)


# -- the default space ----------------------------------------------------------------------------
def test_default_space_is_valid_and_searchable() -> None:
    space = default_space()
    space.validate()
    assert set(space.params) <= set(algo_spec("ppo").live)
    assert space.constants == {}
    for p in space.params.values():
        assert not p.fixed, p.name


@pytest.mark.parametrize(
    "rollout", [1, 16, 32, 48, 64, 96, 100, 128, 200, 256, 384, 768, 1000, 1024, 1536, 2048, 4096, 8192, 12288]
)
def test_default_space_batch_sizes_divide_the_rollout(rollout: int) -> None:
    space = default_space(rollout)
    space.validate()
    p = space.params["batch_size"]
    assert p.kind == "categorical" and p.choices
    for b in p.choices:
        assert rollout % b == 0 and b <= rollout, (rollout, b)
    # every standard size that divides the rollout is still offered
    expected = {b for b in STANDARD_BATCH_SIZES if rollout % b == 0}
    if expected:
        assert set(p.choices) == expected
    else:  # nothing standard divides it: the only offer is the whole rollout as one batch
        assert p.choices == (rollout,)
    init = p.init if isinstance(p.init, tuple) else (p.init,)
    assert init and set(init) <= set(p.choices)
    check_batch_size(space, rollout)  # does not raise
    rng = np.random.default_rng(rollout)
    for _ in range(50):
        hp = space.sample(rng)
        assert rollout % hp["batch_size"] == 0
        hp, _ = space.explore(hp, rng)
        assert rollout % hp["batch_size"] == 0


def test_default_space_without_rollout_offers_all_standard_sizes() -> None:
    assert default_space().params["batch_size"].choices == STANDARD_BATCH_SIZES


# -- sample -----------------------------------------------------------------------------------------
def test_sample_is_within_the_initial_range() -> None:
    space = default_space()
    for seed in range(300):
        hp = space.sample(np.random.default_rng(seed))
        assert_valid_hparams(space, hp)
        for name, p in space.params.items():
            if p.kind == "categorical":
                init = p.init if isinstance(p.init, tuple) else (p.init,)
                assert hp[name] in init, (name, hp[name])
            else:
                lo, hi = p.init_range()
                assert lo <= hp[name] <= hi, (name, hp[name], lo, hi)


def test_sample_hits_every_initial_int_and_choice_and_nothing_else() -> None:
    space = default_space()
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(2000)]
    lo, hi = space.params["n_epochs"].init_range()
    assert {hp["n_epochs"] for hp in samples} == set(range(int(lo), int(hi) + 1))
    assert {hp["batch_size"] for hp in samples} == set(space.params["batch_size"].init) == {64, 128, 256}


def test_sample_without_init_uses_full_bounds() -> None:
    p = Param("clip_range", low=0.05, high=0.5)
    rng = np.random.default_rng(1)
    values = [p.sample(rng) for _ in range(2000)]
    assert all(0.05 <= v <= 0.5 for v in values)
    assert min(values) < 0.07 and max(values) > 0.48


def test_sample_not_initial_uses_full_bounds() -> None:
    p = Param("clip_range", low=0.05, high=0.5, init=(0.2, 0.25))
    rng = np.random.default_rng(2)
    initial = [p.sample(rng) for _ in range(500)]
    assert all(0.2 <= v <= 0.25 for v in initial)
    full = [p.sample(rng, initial=False) for _ in range(2000)]
    assert all(0.05 <= v <= 0.5 for v in full)
    assert sum(v < 0.2 or v > 0.25 for v in full) > 1000


def test_sample_with_a_single_initial_value_starts_there() -> None:
    p = Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=5e-4)
    for seed in range(20):
        assert p.sample(np.random.default_rng(seed)) == 5e-4
    assert not p.fixed  # a fixed start is not a fixed parameter


def test_log_scale_sampling_is_log_uniform() -> None:
    p = default_space().params["learning_rate"]
    lo, hi = p.init_range()
    rng = np.random.default_rng(123)
    values = [p.sample(rng) for _ in range(4000)]
    geometric_mean = math.sqrt(lo * hi)
    arithmetic_mean = (lo + hi) / 2
    med = statistics.median(values)
    # the median of a log-uniform sample sits at the geometric mean, far from the arithmetic mean
    assert abs(math.log(med / geometric_mean)) < 0.1, (med, geometric_mean)
    assert med < arithmetic_mean * 0.75
    # each decade-half holds about half of the samples
    logs = [math.log10(v) for v in values]
    assert abs(statistics.fmean(logs) - math.log10(geometric_mean)) < 0.03
    below = sum(v < geometric_mean for v in values) / len(values)
    assert 0.45 < below < 0.55


def test_linear_scale_sampling_is_uniform() -> None:
    p = default_space().params["clip_range"]
    lo, hi = p.init_range()
    rng = np.random.default_rng(7)
    values = [p.sample(rng) for _ in range(4000)]
    assert abs(statistics.median(values) - (lo + hi) / 2) < 0.05 * (hi - lo)


def test_one_minus_sampling_is_log_uniform_in_one_minus_x() -> None:
    p = default_space().params["gamma"]
    lo, hi = p.init_range()  # (0.95, 0.999) -> 1 - x in (0.001, 0.05)
    rng = np.random.default_rng(11)
    values = [p.sample(rng) for _ in range(4000)]
    assert all(lo <= v <= hi for v in values)
    med = statistics.median(1 - v for v in values)
    expected = math.sqrt((1 - lo) * (1 - hi))
    assert abs(math.log(med / expected)) < 0.1, (med, expected)


def test_space_sample_includes_constants_and_is_deterministic() -> None:
    space = space_from_mapping({"clip_range": 0.2, "max_grad_norm": 0.5}, default_space())
    a = space.sample(np.random.default_rng(5))
    b = space.sample(np.random.default_rng(5))
    assert a == b
    assert a["clip_range"] == 0.2 and a["max_grad_norm"] == 0.5
    assert_valid_hparams(space, a)


# -- explore: bounds and types --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("factors", "resample"),
    [((0.8, 1.2), 0.25), ((0.8, 1.2), 0.0), ((0.8, 1.2), 1.0), ((0.1, 10.0), 0.0), ((0.5, 3.0), 0.5)],
)
def test_explore_stays_within_bounds(factors: tuple[float, ...], resample: float) -> None:
    for rollout in (None, 512):
        space = with_explore(default_space(rollout), factors, resample)
        for seed in range(150):
            rng = np.random.default_rng(seed)
            hp = space.sample(rng)
            for _ in range(6):  # repeated explores walk towards (and get clamped at) the bounds
                hp, _ = explore(hp, space, rng)
                assert_valid_hparams(space, hp)


def test_explore_clamps_at_the_bounds() -> None:
    space = with_explore(default_space(), factors=(1.2,), resample=0.0)
    top = {n: (p.high if p.kind != "categorical" else p.choices[-1]) for n, p in space.params.items()}
    top["n_epochs"] = int(top["n_epochs"])
    new, _ = explore(top, space, np.random.default_rng(0))
    p = space.params
    assert new["learning_rate"] == p["learning_rate"].high
    assert new["clip_range"] == p["clip_range"].high
    assert new["n_epochs"] == 20 and type(new["n_epochs"]) is int
    assert new["batch_size"] == 1024
    # in one_minus space a factor 1.2 widens 1 - x, so gamma moves down from its upper bound
    assert new["gamma"] == pytest.approx(1 - (1 - 0.9999) * 1.2)

    space = with_explore(default_space(), factors=(0.8,), resample=0.0)
    new, _ = explore(top, space, np.random.default_rng(0))
    assert new["gamma"] == p["gamma"].high  # 1 - 0.0001 * 0.8 > 0.9999: clamped
    assert new["gae_lambda"] == p["gae_lambda"].high


def test_int_params_stay_python_ints() -> None:
    p = Param("n_epochs", kind="int", low=1, high=100, init=(3, 10))
    assert type(p.perturb(10, 1.2)) is int and p.perturb(10, 1.2) == 12
    assert type(p.perturb(10, 0.8)) is int and p.perturb(10, 0.8) == 8
    assert p.perturb(100, 1.2) == 100 and p.perturb(1, 0.5) == 1
    rng = np.random.default_rng(3)
    for _ in range(200):
        assert type(p.sample(rng)) is int
        assert type(p.sample(rng, initial=False)) is int
    space = with_explore(Space(params={"n_epochs": p}), resample=0.5)
    hp = {"n_epochs": 7}
    for _ in range(100):
        hp, changes = explore(hp, space, rng)
        assert type(hp["n_epochs"]) is int
        assert type(changes["n_epochs"]["new"]) is int


def test_int_perturb_rounds_to_nearest() -> None:
    p = Param("n", kind="int", low=0, high=1000)
    assert p.perturb(9, 1.2) == 11  # 10.8
    assert p.perturb(9, 0.8) == 7  # 7.2


# -- explore: perturbation arithmetic -------------------------------------------------------------
def test_one_minus_perturbation_works_in_one_minus_x_space() -> None:
    gamma = default_space().params["gamma"]
    assert gamma.perturb(0.99, 1.2) == pytest.approx(1 - 0.01 * 1.2)  # 0.988
    assert gamma.perturb(0.99, 0.8) == pytest.approx(1 - 0.01 * 0.8)  # 0.992
    # not the linear perturbation
    assert gamma.perturb(0.99, 0.8) != pytest.approx(0.99 * 0.8)
    lam = default_space().params["gae_lambda"]
    assert lam.perturb(0.95, 1.2) == pytest.approx(0.94)
    assert lam.perturb(0.95, 0.8) == pytest.approx(0.96)


def test_log_and_linear_perturbation_multiply() -> None:
    space = default_space()
    assert space.params["learning_rate"].perturb(1e-3, 1.2) == pytest.approx(1.2e-3)
    assert space.params["learning_rate"].perturb(1e-3, 0.8) == pytest.approx(8e-4)
    assert space.params["ent_coef"].perturb(1e-3, 0.8) == pytest.approx(8e-4)
    assert space.params["clip_range"].perturb(0.2, 1.2) == pytest.approx(0.24)
    assert space.params["vf_coef"].perturb(0.5, 0.8) == pytest.approx(0.4)


def test_explore_applies_the_drawn_factor_in_each_scale() -> None:
    space = with_explore(default_space(), factors=(1.2,), resample=0.0)
    hp = {"learning_rate": 1e-3, "clip_range": 0.2, "ent_coef": 1e-3, "vf_coef": 0.5, "gamma": 0.99,
          "gae_lambda": 0.95, "n_epochs": 5, "batch_size": 128}
    new, changes = explore(hp, space, np.random.default_rng(0))
    assert new["learning_rate"] == pytest.approx(1.2e-3)
    assert new["clip_range"] == pytest.approx(0.24)
    assert new["ent_coef"] == pytest.approx(1.2e-3)
    assert new["vf_coef"] == pytest.approx(0.6)
    assert new["gamma"] == pytest.approx(0.988)
    assert new["gae_lambda"] == pytest.approx(0.94)
    assert new["n_epochs"] == 6
    assert new["batch_size"] == 256
    assert {c["op"] for c in changes.values()} == {"x1.2"}

    space = with_explore(default_space(), factors=(0.8,), resample=0.0)
    new, changes = explore(hp, space, np.random.default_rng(0))
    assert new["learning_rate"] == pytest.approx(8e-4)
    assert new["gamma"] == pytest.approx(0.992)
    assert new["gae_lambda"] == pytest.approx(0.96)
    assert new["n_epochs"] == 4
    assert new["batch_size"] == 64
    assert {c["op"] for c in changes.values()} == {"x0.8"}


def test_categorical_perturb_moves_to_a_neighbour() -> None:
    p = Param("batch_size", kind="categorical", choices=(32, 64, 128, 256))
    assert p.perturb(64, 0.8) == 32
    assert p.perturb(64, 1.2) == 128
    assert p.perturb(32, 0.8) == 32  # stays at the ends
    assert p.perturb(256, 1.2) == 256
    # any factor moves one step only
    assert p.perturb(64, 100.0) == 128
    assert p.perturb(128, 0.01) == 64


def test_categorical_explore_stays_in_choices_and_moves_one_step() -> None:
    choices = (16, 32, 64, 128, 256, 512)
    p = Param("batch_size", kind="categorical", choices=choices)
    space = with_explore(Space(params={"batch_size": p}), factors=(0.5, 2.0), resample=0.0)
    rng = np.random.default_rng(9)
    hp = {"batch_size": 64}
    moved = set()
    for _ in range(500):
        new, changes = explore(hp, space, rng)
        i, j = choices.index(hp["batch_size"]), choices.index(new["batch_size"])
        op = changes["batch_size"]["op"]
        assert op in ("x0.5", "x2")
        expected = max(i - 1, 0) if op == "x0.5" else min(i + 1, len(choices) - 1)
        assert j == expected, (hp, new, op)
        moved.add(j - i)
        hp = new
    assert moved == {-1, 0, 1}  # it does move both ways, and gets stuck at the ends


def test_categorical_resample_draws_from_all_choices() -> None:
    space = with_explore(default_space(), resample=1.0)
    rng = np.random.default_rng(4)
    seen = set()
    for _ in range(500):
        new, _ = explore({**space.sample(rng), "batch_size": 64}, space, rng)
        seen.add(new["batch_size"])
    assert seen == set(STANDARD_BATCH_SIZES)  # not just the initial subset


# -- explore: resample probability and the changes report -----------------------------------------
def test_resample_probability_zero_never_resamples() -> None:
    space = with_explore(default_space(), resample=0.0)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        _, changes = explore(space.sample(rng), space, rng)
        assert all(c["op"] in ("x0.8", "x1.2") for c in changes.values()), changes


def test_resample_probability_one_always_resamples_from_full_bounds() -> None:
    space = with_explore(default_space(), resample=1.0)
    outside_init = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        new, changes = explore(space.sample(rng), space, rng)
        assert set(changes) == set(space.params)
        assert all(c["op"] == "resample" for c in changes.values()), changes
        lo, hi = space.params["learning_rate"].init_range()
        outside_init += not lo <= new["learning_rate"] <= hi
    p = space.params["learning_rate"]
    assert p.low is not None and p.high is not None
    share = 1 - math.log(hi / lo) / math.log(p.high / p.low)  # of the log-range outside the initial range
    assert share > 0.2
    assert abs(outside_init - 200 * share) < 5 * math.sqrt(200 * share * (1 - share))


def test_resample_probability_is_respected_on_average() -> None:
    space = with_explore(default_space(), resample=0.25)
    ops = []
    for seed in range(500):
        rng = np.random.default_rng(seed)
        _, changes = explore(space.sample(rng), space, rng)
        ops += [c["op"] for c in changes.values()]
    frac = ops.count("resample") / len(ops)
    assert abs(frac - 0.25) < 0.04, frac
    # both perturbation factors are used about equally often
    assert abs(ops.count("x0.8") - ops.count("x1.2")) < 0.1 * len(ops)


def test_changes_report_old_new_and_op() -> None:
    space = with_explore(default_space(), factors=(0.5, 0.8, 1.25, 2.0), resample=0.3)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        hp = space.sample(rng)
        new, changes = explore(hp, space, rng)
        assert set(changes) == {n for n, p in space.params.items() if not p.fixed}
        for name, ch in changes.items():
            assert set(ch) == {"old", "new", "op"}
            assert ch["old"] == hp[name]
            assert ch["new"] == new[name]
            if ch["op"] != "resample":
                assert ch["op"].startswith("x")
                factor = float(ch["op"][1:])
                assert factor in (0.5, 0.8, 1.25, 2.0)
                assert ch["new"] == space.params[name].perturb(hp[name], factor)


def test_explore_does_not_mutate_its_input() -> None:
    space = space_from_mapping({"max_grad_norm": 0.5}, default_space())
    for seed in range(50):
        rng = np.random.default_rng(seed)
        hp = space.sample(rng)
        snapshot = copy.deepcopy(hp)
        new, _ = explore(hp, space, rng)
        assert hp == snapshot
        assert new is not hp
        new["learning_rate"] = -1.0  # the result is a fresh dict
        assert hp == snapshot


def test_explore_keeps_keys_it_does_not_search() -> None:
    space = default_space()
    hp = {**space.sample(np.random.default_rng(0)), "policy_kwargs": "untouched", "max_grad_norm": 0.7}
    new, changes = explore(hp, space, np.random.default_rng(1))
    assert new["policy_kwargs"] == "untouched" and new["max_grad_norm"] == 0.7
    assert "policy_kwargs" not in changes and "max_grad_norm" not in changes


def test_space_explore_method_matches_function() -> None:
    space = default_space()
    hp = space.sample(np.random.default_rng(0))
    assert space.explore(hp, np.random.default_rng(42)) == explore(hp, space, np.random.default_rng(42))


# -- explore: fixed parameters ---------------------------------------------------------------------
def test_fixed_params_never_change() -> None:
    params = {
        "learning_rate": Param("learning_rate", scale="log", low=3e-4, high=3e-4),
        "n_epochs": Param("n_epochs", kind="int", low=4, high=4),
        "batch_size": Param("batch_size", kind="categorical", choices=(128,)),
        "clip_range": Param("clip_range", low=0.1, high=0.3),
    }
    for resample in (0.0, 0.5, 1.0):
        space = Space(params=params, constants={"gamma": 0.97},
                      explore_settings=ExploreSettings(perturb_factors=(0.5, 2.0), resample_probability=resample))
        space.validate()
        assert [n for n, p in space.params.items() if p.fixed] == ["learning_rate", "n_epochs", "batch_size"]
        for seed in range(100):
            rng = np.random.default_rng(seed)
            hp = space.sample(rng)
            assert (hp["learning_rate"], hp["n_epochs"], hp["batch_size"], hp["gamma"]) == (3e-4, 4, 128, 0.97)
            for _ in range(3):
                hp, changes = explore(hp, space, rng)
                assert set(changes) == {"clip_range"}
                assert (hp["learning_rate"], hp["n_epochs"], hp["batch_size"], hp["gamma"]) == (3e-4, 4, 128, 0.97)


def test_constants_from_a_mapping_never_change() -> None:
    space = with_explore(space_from_mapping({"gamma": 0.97, "batch_size": 256}, default_space()), resample=1.0)
    assert "gamma" not in space.params and "batch_size" not in space.params
    for seed in range(50):
        rng = np.random.default_rng(seed)
        hp, changes = explore(space.sample(rng), space, rng)
        assert hp["gamma"] == 0.97 and hp["batch_size"] == 256
        assert "gamma" not in changes and "batch_size" not in changes


# -- explore: determinism ------------------------------------------------------------------------
def test_explore_is_deterministic_per_seed() -> None:
    space = default_space()
    hp = space.sample(np.random.default_rng(0))
    for seed in range(30):
        a = explore(hp, space, np.random.default_rng(seed))
        b = explore(hp, space, np.random.default_rng(seed))
        assert a == b


def test_explore_differs_between_seeds() -> None:
    space = default_space()
    hp = space.sample(np.random.default_rng(0))
    outcomes = {tuple(sorted(explore(hp, space, np.random.default_rng(seed))[0].items())) for seed in range(60)}
    # 8 parameters, each resampled (continuous) or perturbed by one of two factors: collisions are rare
    assert len(outcomes) >= 55


def test_explore_rng_stream_does_not_depend_on_the_branch() -> None:
    base = default_space()
    hp = base.sample(np.random.default_rng(0))
    for seed in range(40):
        perturb_only = explore(hp, with_explore(base, resample=0.0), np.random.default_rng(seed))[1]
        low = explore(hp, with_explore(base, resample=0.3), np.random.default_rng(seed))[1]
        high = explore(hp, with_explore(base, resample=0.6), np.random.default_rng(seed))[1]
        for name in perturb_only:
            # the same uniform draw decides the branch: resampled at p=0.3 -> resampled at p=0.6
            if low[name]["op"] == "resample":
                assert high[name]["op"] == "resample", (seed, name)
            # the same factor draw decides the perturbation
            if high[name]["op"] != "resample":
                assert high[name]["op"] == perturb_only[name]["op"], (seed, name)


# -- mappings and YAML files -----------------------------------------------------------------------
def test_load_space_without_a_file_is_the_default() -> None:
    assert load_space(None) == default_space()
    assert load_space(None, rollout_size=256) == default_space(256)


def test_empty_file_is_the_default(tmp_path: Path) -> None:
    assert load_space(write(tmp_path, "")) == default_space()
    assert load_space(write(tmp_path, "# only a comment\n"), rollout_size=512) == default_space(512)


def test_override_bounds_from_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "learning_rate:\n  low: 0.0001\n  high: 0.001\nclip_range: {low: 0.15, high: 0.25}\n")
    space = load_space(path)
    lr = space.params["learning_rate"]
    assert (lr.low, lr.high, lr.scale, lr.init) == (1e-4, 1e-3, "log", None)
    clip = space.params["clip_range"]
    assert (clip.low, clip.high) == (0.15, 0.25)
    # untouched parameters keep their defaults
    assert space.params["gamma"] == default_space().params["gamma"]
    for seed in range(100):
        hp = space.sample(np.random.default_rng(seed))
        assert 1e-4 <= hp["learning_rate"] <= 1e-3 and 0.15 <= hp["clip_range"] <= 0.25


def test_exponent_without_a_dot_is_a_number(tmp_path: Path) -> None:
    text = "learning_rate: {low: 1e-5, high: 1e-3, init: [1e-4, 5e-4]}\nent_coef: 1e-3\n"
    # the reason this needs handling: PyYAML (YAML 1.1) reads 1e-5 as a string
    raw = yaml.safe_load(text)
    assert isinstance(raw["learning_rate"]["low"], str) and isinstance(raw["ent_coef"], str)
    space = load_space(write(tmp_path, text))
    lr = space.params["learning_rate"]
    assert (lr.low, lr.high, lr.init) == (1e-5, 1e-3, (1e-4, 5e-4))
    assert isinstance(lr.low, float)
    assert space.constants["ent_coef"] == 1e-3 and isinstance(space.constants["ent_coef"], float)
    assert "ent_coef" not in space.params


def test_scalar_fixes_a_value(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, "clip_range: 0.2\nn_epochs: 4\nmax_grad_norm: 0.5\n"))
    assert space.constants == {"clip_range": 0.2, "n_epochs": 4, "max_grad_norm": 0.5}
    assert not {"clip_range", "n_epochs", "max_grad_norm"} & set(space.params)
    hp = space.sample(np.random.default_rng(0))
    assert hp["clip_range"] == 0.2 and hp["n_epochs"] == 4 and hp["max_grad_norm"] == 0.5
    assert set(space.names) == set(default_space().params) | {"max_grad_norm"}


def test_mapping_after_scalar_turns_a_constant_back_into_a_param() -> None:
    fixed = space_from_mapping({"clip_range": 0.2}, default_space())
    searched = space_from_mapping({"clip_range": {"low": 0.1, "high": 0.3}}, fixed)
    assert "clip_range" not in searched.constants
    assert (searched.params["clip_range"].low, searched.params["clip_range"].high) == (0.1, 0.3)


def test_init_override_keeps_bounds() -> None:
    space = space_from_mapping({"learning_rate": {"init": 5e-4}, "clip_range": {"init": [0.2, 0.21]}},
                               default_space())
    lr = space.params["learning_rate"]
    assert (lr.low, lr.high, lr.init) == (1e-5, 1e-2, 5e-4)
    for seed in range(50):
        hp = space.sample(np.random.default_rng(seed))
        assert hp["learning_rate"] == 5e-4 and 0.2 <= hp["clip_range"] <= 0.21


def test_choices_override() -> None:
    space = space_from_mapping({"batch_size": {"choices": [64, 128]}}, default_space())
    p = space.params["batch_size"]
    assert p.kind == "categorical" and p.choices == (64, 128) and p.init is None
    assert {space.sample(np.random.default_rng(s))["batch_size"] for s in range(100)} == {64, 128}
    space = space_from_mapping({"batch_size": {"choices": [64, 128, 256], "init": [128]}}, default_space())
    assert {space.sample(np.random.default_rng(s))["batch_size"] for s in range(50)} == {128}


def test_new_searchable_param_and_type_override() -> None:
    space = space_from_mapping({"max_grad_norm": {"low": 0.3, "high": 2, "scale": "log"},
                                "n_epochs": {"type": "int", "low": 2, "high": 4}}, default_space())
    p = space.params["max_grad_norm"]
    assert (p.kind, p.scale, p.low, p.high) == ("float", "log", 0.3, 2.0)
    for seed in range(100):
        hp = space.sample(np.random.default_rng(seed))
        assert 0.3 <= hp["max_grad_norm"] <= 2.0
        assert hp["n_epochs"] in (2, 3, 4) and type(hp["n_epochs"]) is int


def test_explore_settings_override(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, "explore:\n  perturb_factors: [0.5, 2]\n  resample_probability: 0\n"))
    assert space.explore_settings == ExploreSettings(perturb_factors=(0.5, 2.0), resample_probability=0.0)
    assert space.params == default_space().params
    for seed in range(50):
        rng = np.random.default_rng(seed)
        _, changes = explore(space.sample(rng), space, rng)
        assert {c["op"] for c in changes.values()} <= {"x0.5", "x2"}
    # only one of the two settings: the other keeps its default
    space = space_from_mapping({"explore": {"resample_probability": 1}}, default_space())
    assert space.explore_settings.perturb_factors == ExploreSettings().perturb_factors
    assert space.explore_settings.resample_probability == 1.0


def test_bad_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "learning_rate:\n  low: [1, 2\n  high: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_space(path)
    assert_one_line_config_error(exc, str(path), "YAML", "line")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_space(tmp_path / "nope.yaml")
    assert_one_line_config_error(exc, "nope.yaml")


@pytest.mark.parametrize("text", ["- learning_rate\n- gamma\n", "just a string\n", "42\n"])
def test_file_must_hold_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_space(write(tmp_path, text))
    assert_one_line_config_error(exc, "mapping")


# (mapping, words the one-line message must contain)
BAD_MAPPINGS: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    ({"learnin_rate": {"low": 1e-4}}, ("learnin_rate", "unknown")),
    ({"policy": 0.1}, ("policy",)),
    ({"clip_range": {"low": 0.5, "high": 0.1}}, ("clip_range", "inverted")),
    ({"clip_range": {"low": 0.6}}, ("clip_range", "inverted")),  # above the default high (0.5)
    ({"clip_range": {"init": 0.9}}, ("clip_range", "outside")),
    ({"clip_range": {"init": [0.01, 0.2]}}, ("clip_range", "outside")),
    ({"clip_range": {"init": [0.3, 0.2]}}, ("clip_range",)),
    ({"learning_rate": {"init": 1e-1}}, ("learning_rate", "outside")),
    ({"learning_rate": {"low": 0, "high": 0.1}}, ("learning_rate", "low 0 is outside its domain (0, inf)")),
    ({"learning_rate": {"low": -1e-3, "high": 0.1}}, ("learning_rate", "domain")),
    ({"clip_range": {"scale": "log", "low": 0.0}}, ("clip_range", "log")),
    ({"clip_range": {"lo": 0.1}}, ("clip_range", "lo")),
    ({"gamma": {"low": 0.9, "hi": 0.99}}, ("gamma", "hi")),
    ({"clip_range": {"low": "abc"}}, ("clip_range", "low")),
    ({"clip_range": {"high": None}}, ("clip_range", "high")),
    ({"clip_range": "abc"}, ("clip_range",)),
    ({"clip_range": None}, ("clip_range",)),
    ({"clip_range": {"high": float("inf")}}, ("clip_range", "finite")),
    ({"clip_range": {"low": float("nan")}}, ("clip_range",)),
    ({"clip_range": {"scale": "cubic"}}, ("clip_range", "scale")),
    ({"clip_range": {"type": "string"}}, ("clip_range", "kind")),
    ({"clip_range": {"init": [0.1, 0.2, 0.3]}}, ("clip_range", "init")),
    ({"gamma": {"high": 1.0}}, ("gamma", "one_minus")),
    ({"n_epochs": {"low": 1.5, "high": 5}}, ("n_epochs", "int")),
    ({"max_grad_norm": {}}, ("max_grad_norm", "low")),
    ({"batch_size": {"choices": 64}}, ("batch_size", "choices")),
    ({"batch_size": {"choices": []}}, ("batch_size", "choices")),
    ({"batch_size": {"init": [48]}}, ("batch_size", "48")),
    ({"batch_size": {"choices": [64, 128], "init": 256}}, ("batch_size", "256")),
    ({"explore": 3}, ("explore",)),
    ({"explore": None}, ("explore",)),
    ({"explore": {"factors": [0.8, 1.2]}}, ("explore",)),
    ({"explore": {"perturb_factors": 1.2}}, ("explore", "perturb_factors")),
    ({"explore": {"perturb_factors": []}}, ("explore", "perturb_factors")),
    ({"explore": {"perturb_factors": [0.8, 0]}}, ("explore", "perturb_factors")),
    ({"explore": {"perturb_factors": [-0.8, 1.2]}}, ("explore", "perturb_factors")),
    ({"explore": {"perturb_factors": [0.8, "big"]}}, ("explore", "perturb_factors")),
    ({"explore": {"perturb_factors": [0.8, float("inf")]}}, ("explore", "perturb_factors")),
    ({"explore": {"resample_probability": 1.5}}, ("explore", "resample_probability")),
    ({"explore": {"resample_probability": -0.1}}, ("explore", "resample_probability")),
    ({"explore": {"resample_probability": float("nan")}}, ("explore", "resample_probability")),
    ({"explore": {"resample_probability": "often"}}, ("explore", "resample_probability")),
]


@pytest.mark.parametrize(("mapping", "needles"), BAD_MAPPINGS, ids=[str(m) for m, _ in BAD_MAPPINGS])
def test_bad_mapping_is_a_one_line_config_error(mapping: dict[str, Any], needles: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as exc:
        space_from_mapping(mapping, default_space())
    assert_one_line_config_error(exc, *needles)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("learning_rate: {low: 0, high: 1e-2}\n", ("learning_rate",)),
        ("clip_range: {low: 0.5, high: 0.1}\n", ("clip_range", "inverted")),
        ("gamma: {init: 0.5}\n", ("gamma", "outside")),
        ("learnin_rate: 3e-4\n", ("learnin_rate",)),
        ("clip_range: {lo: 0.1}\n", ("clip_range", "lo")),
        ("explore: {resample_probability: 2}\n", ("explore",)),
    ],
)
def test_bad_yaml_file_is_a_one_line_config_error(tmp_path: Path, text: str, needles: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_space(write(tmp_path, text))
    assert_one_line_config_error(exc, *needles)


def test_new_bounds_reset_the_initial_range() -> None:
    # low above the default initial range (0.1, 0.3) but below high: initial values come from the new bounds
    space = space_from_mapping({"clip_range": {"low": 0.4}}, default_space())
    p = space.params["clip_range"]
    assert (p.low, p.high, p.init) == (0.4, 0.5, None)
    assert all(0.4 <= space.sample(np.random.default_rng(s))["clip_range"] <= 0.5 for s in range(50))


def test_space_from_mapping_does_not_mutate_the_base() -> None:
    base = default_space()
    snapshot = copy.deepcopy(base)
    space_from_mapping({"clip_range": 0.2, "gamma": {"low": 0.95}, "explore": {"resample_probability": 0}}, base)
    assert base == snapshot


def test_nan_initial_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match="clip_range"):
        space_from_mapping({"clip_range": {"init": "nan"}}, default_space())


def test_empty_categorical_init_is_rejected() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        space_from_mapping({"batch_size": {"init": []}}, default_space())


# -- batch size vs rollout ------------------------------------------------------------------------
def batch_space(*choices: Any) -> Space:
    return Space(params={"batch_size": Param("batch_size", kind="categorical", choices=tuple(choices))})


def test_check_batch_size_accepts_divisors() -> None:
    check_batch_size(default_space(), 2048)
    check_batch_size(batch_space(50, 100, 250, 1000), 1000)
    check_batch_size(batch_space(7), 7 * 13)
    check_batch_size(space_from_mapping({"batch_size": 100}, default_space()), 1000)
    check_batch_size(Space(params={}), 17)  # no batch size to check


@pytest.mark.parametrize(
    ("space", "rollout", "bad"),
    [
        (default_space(), 1000, "32"),
        (default_space(), 512, "1024"),  # larger than the rollout
        (batch_space(64, 100), 1024, "100"),
        (batch_space(0), 1024, "0"),
        (batch_space(-64), 1024, "-64"),
        (batch_space("64"), 1024, "64"),
        (space_from_mapping({"batch_size": 300}, default_space()), 1000, "300"),
    ],
)
def test_check_batch_size_rejects_non_divisors(space: Space, rollout: int, bad: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_batch_size(space, rollout)
    assert_one_line_config_error(exc, "batch_size", bad, str(rollout))


def test_check_batch_size_needs_categorical() -> None:
    space = Space(params={"batch_size": Param("batch_size", kind="int", low=32, high=256)})
    with pytest.raises(ConfigError) as exc:
        check_batch_size(space, 1024)
    assert_one_line_config_error(exc, "batch_size", "categorical")


@pytest.mark.parametrize("size", [64.5, True])
def test_check_batch_size_rejects_non_integral(size: Any) -> None:
    with pytest.raises(ConfigError):
        check_batch_size(batch_space(size), 2048)
