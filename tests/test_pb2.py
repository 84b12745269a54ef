"""PB2's explore step (evo.core.pb2): pure and seeded, within bounds, batch-aware, falls back safely, and
finds a good region faster than PBT's random perturbation on a toy problem.

Pure logic: no MPI, no RL. Randomised checks are seeded loops over many rngs.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

import evo.core.pb2 as pb2
from evo.core.pb2 import Observation, TimeVaryingSE, pb2_explore
from evo.core.space import Param, Space, default_space, explore

STEP = 2048.0  # env steps per interval in the synthetic histories


# -- helpers --------------------------------------------------------------------------------------
def rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


def history_for(space: Space, members: int, intervals: int, seed: int,
                score: Any = None, t0: float = 0.0, noise: float = 0.05) -> list[Observation]:
    """``intervals`` rounds of ``members`` observations, hyperparameters drawn from the full bounds;
    deltas are ``score(hparams)`` plus Gaussian noise, or pure noise without a ``score``."""
    r = rng(seed, 99)
    out = []
    for i in range(1, intervals + 1):
        for m in range(members):
            hp = {n: p.sample(r, initial=False) for n, p in space.params.items()} | dict(space.constants)
            delta = float(r.normal()) if score is None else float(score(hp)) + noise * float(r.normal())
            out.append(Observation(t0 + i * STEP, hp, delta, m))
    return out


def unit(p: Param, value: float) -> float:
    assert p.low is not None and p.high is not None
    if p.scale == "log":
        return (math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
    if p.scale == "one_minus":
        return (math.log(1 - value) - math.log(1 - p.low)) / (math.log(1 - p.high) - math.log(1 - p.low))
    return (value - p.low) / (p.high - p.low)


def assert_valid(space: Space, donor: dict[str, Any], new: dict[str, Any], changes: dict[str, Any]) -> None:
    assert set(new) == set(donor)
    for name, p in space.params.items():
        value = new[name]
        if p.fixed:
            assert value == donor[name] and name not in changes
            continue
        assert changes[name]["old"] == donor[name] and changes[name]["new"] == value
        if p.kind == "categorical":
            assert value in (p.choices or ())
        else:
            assert p.low is not None and p.high is not None
            assert p.low <= value <= p.high
            if p.kind == "int":
                assert isinstance(value, int)
    for name, value in space.constants.items():
        assert new[name] == value and name not in changes


def space_2d() -> Space:
    return Space(params={"lr": Param("lr", scale="log", low=1e-5, high=1e-1, init=(1e-5, 1e-4)),
                         "mom": Param("mom", low=0.0, high=1.0, init=(0.0, 0.25))})


# -- purity, determinism, bounds --------------------------------------------------------------------
def test_same_inputs_same_output_and_inputs_untouched() -> None:
    space = default_space()
    history = history_for(space, members=4, intervals=3, seed=0)
    donor = space.sample(rng(1))
    pending = [space.sample(rng(2))]
    snapshot = copy.deepcopy((donor, history, pending))
    a = pb2_explore(donor, space, rng(3), history, 3 * STEP, pending)
    b = pb2_explore(donor, space, rng(3), history, 3 * STEP, pending)
    assert a == b
    assert (donor, history, pending) == snapshot
    assert all(c["op"] == "pb2" for n, c in a[1].items() if n != "batch_size")
    assert_valid(space, donor, *a)


def _random_space(r: np.random.Generator) -> Space:
    pool = [
        Param("learning_rate", scale="log", low=1e-5, high=1e-2),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999),
        Param("clip_range", low=0.05, high=0.5),
        Param("n_epochs", kind="int", low=1, high=20),
        Param("n_steps", kind="int", scale="log", low=8, high=1024),
        Param("batch_size", kind="categorical", choices=(32, 64, 128, 256)),
        Param("vf_coef", low=0.5, high=0.5),  # fixed
        Param("net", kind="categorical", choices=("small",)),  # fixed categorical
    ]
    chosen = [p for p in pool if r.random() < 0.6] or [pool[0]]
    return Space(params={p.name: p for p in chosen}, constants={"max_grad_norm": 0.5})


def test_bounds_kinds_and_changes_over_many_random_cases() -> None:
    used_gp = 0
    for case in range(40):
        r = rng(case, 7)
        space = _random_space(r)
        intervals = int(r.integers(0, 6))
        history = history_for(space, members=int(r.integers(2, 6)), intervals=intervals, seed=case)
        spoilt = [math.nan, math.inf, -math.inf]
        history = [Observation(o.t, o.hparams, spoilt[int(r.integers(3))] if r.random() < 0.1 else o.delta, o.member)
                   for o in history]
        donor = space.sample(r)
        pending = [space.sample(r) for _ in range(int(r.integers(0, 3)))]
        new, changes = pb2_explore(donor, space, rng(case, 8), history, intervals * STEP, pending)
        assert_valid(space, donor, new, changes)
        used_gp += any(c["op"] == "pb2" for c in changes.values())
        for name, c in changes.items():
            if space.params[name].kind == "categorical" and not c["op"].startswith("fallback:"):
                assert c["op"] != "pb2"  # categoricals always take the ordinary PBT rule
    assert used_gp >= 10  # the GP path, not only the fallback, was exercised


def test_values_at_the_extremes_of_log_and_one_minus_params_stay_in_bounds() -> None:
    space = Space(params={"lr": Param("lr", scale="log", low=1e-6, high=1.0),
                          "gamma": Param("gamma", scale="one_minus", low=0.5, high=0.999999),
                          "k": Param("k", kind="int", low=1, high=3)})
    # Deltas grow towards the upper corner: the UCB maximiser sits on the bounds.
    history = history_for(space, 4, 4, seed=5, score=lambda hp: sum(unit(p, hp[n]) for n, p in space.params.items()))
    corner = 0
    for s in range(5):
        donor = space.sample(rng(s))
        new, changes = pb2_explore(donor, space, rng(s, 1), history, 4 * STEP)
        assert all(c["op"] == "pb2" for c in changes.values())
        assert_valid(space, donor, new, changes)
        corner += new["k"] == 3 and new["lr"] == pytest.approx(1.0) and new["gamma"] == pytest.approx(0.999999)
    assert corner >= 3


def test_follows_the_signal() -> None:
    """With a clear trend in (nearly noise-free) data, the choice lands where the deltas are high."""
    space = Space(params={"lr": Param("lr", scale="log", low=1e-5, high=0.1)})
    p_lr = space.params["lr"]
    for seed in range(3):
        history = history_for(space, 4, 3, seed=seed, noise=0.005, score=lambda hp: -(unit(p_lr, hp["lr"]) - 0.3) ** 2)
        new, _ = pb2_explore(space.sample(rng(seed)), space, rng(seed, 1), history, 3 * STEP)
        assert abs(unit(p_lr, new["lr"]) - 0.3) < 0.1, new


# -- batch ----------------------------------------------------------------------------------------
def test_pending_configurations_push_the_choice_away() -> None:
    space = space_2d()
    p_lr = space.params["lr"]

    def z(hp: dict[str, Any]) -> np.ndarray:
        return np.array([unit(p_lr, hp["lr"]), hp["mom"]])

    moved = []
    for seed in range(4):
        history = history_for(space, 4, 3, seed=seed)
        donor = space.sample(rng(seed))
        first, _ = pb2_explore(donor, space, rng(seed, 1), history, 3 * STEP)
        again, _ = pb2_explore(donor, space, rng(seed, 2), history, 3 * STEP)
        second, _ = pb2_explore(donor, space, rng(seed, 2), history, 3 * STEP, pending=[first])
        # Without pending, the same model picks (nearly) the same point from another rng;
        # with the first choice pending, the second receiver goes elsewhere.
        assert np.linalg.norm(z(again) - z(first)) < 0.05
        moved.append(float(np.linalg.norm(z(second) - z(first))))
    assert min(moved) > 0.1, moved


# -- fallback and robustness ----------------------------------------------------------------------
def _with_fallback_ops(result: tuple[dict[str, Any], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    new, changes = result
    return new, {n: {**c, "op": "fallback:" + c["op"]} for n, c in changes.items()}


@pytest.mark.parametrize("case", ["empty", "one interval", "three points", "no variation in x",
                                  "no variation in deltas", "all deltas nan", "only ancient data"])
def test_too_little_usable_history_falls_back_to_explore(case: str) -> None:
    space = default_space()
    donor = space.sample(rng(0))
    two = history_for(space, 4, 2, seed=1)
    history = {
        "empty": [],
        "one interval": history_for(space, 4, 1, seed=1),
        "three points": two[:1] + two[-2:],
        "no variation in x": [Observation(o.t, donor, o.delta, o.member) for o in two],
        "no variation in deltas": [Observation(o.t, o.hparams, 1.5, o.member) for o in two],
        "all deltas nan": [Observation(o.t, o.hparams, math.nan, o.member) for o in two],
        "only ancient data": two,
    }[case]
    t = 100 * STEP if case == "only ancient data" else 2 * STEP
    got = pb2_explore(donor, space, rng(4), history, t)
    assert got == _with_fallback_ops(explore(donor, space, rng(4)))
    assert all(c["op"].startswith("fallback:") for c in got[1].values())


def test_a_failing_gp_fit_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(pb2, "_fit", broken)
    space = default_space()
    donor = space.sample(rng(0))
    new, changes = pb2_explore(donor, space, rng(1), history_for(space, 4, 3, seed=2), 3 * STEP)
    assert all(c["op"].startswith("fallback:") for c in changes.values())
    assert_valid(space, donor, new, changes)


def test_non_finite_deltas_and_old_data_are_ignored() -> None:
    space = default_space()
    donor = space.sample(rng(0))
    history = history_for(space, 4, 3, seed=1, t0=10 * STEP)
    noisy = history + [Observation(12 * STEP, space.sample(rng(5)), d, 9) for d in (math.nan, math.inf, -math.inf)]
    # Intervals from long ago (outside the window) with extreme deltas do not change the choice.
    ancient = [Observation(o.t - 10 * STEP, o.hparams, 1e6 * (o.member + 1), o.member) for o in history]
    base = pb2_explore(donor, space, rng(2), history, 13 * STEP)
    assert base[1]["learning_rate"]["op"] == "pb2"
    assert pb2_explore(donor, space, rng(2), noisy, 13 * STEP) == base
    assert pb2_explore(donor, space, rng(2), ancient + history, 13 * STEP) == base


def test_only_categoricals_to_explore_uses_the_ordinary_rule() -> None:
    space = Space(params={"batch_size": Param("batch_size", kind="categorical", choices=(32, 64, 128)),
                          "lr": Param("lr", low=0.1, high=0.1)})
    donor = {"batch_size": 64, "lr": 0.1}
    history = history_for(space, 4, 3, seed=0)
    assert pb2_explore(donor, space, rng(1), history, 3 * STEP) == explore(donor, space, rng(1))


def test_time_varying_kernel_matches_its_formula_and_gradient() -> None:
    k = TimeVaryingSE(length_scale=0.4, epsilon=0.2)
    a, b = np.array([[0.0, 0.1, 0.2]]), np.array([[-3.0, 0.4, 0.6]])
    expected = math.exp(-(0.3**2 + 0.4**2) / (2 * 0.4**2)) * 0.8 ** (3 / 2)
    assert k(a, b)[0, 0] == pytest.approx(expected)
    X = np.hstack([rng(0).integers(-3, 1, (6, 1)).astype(float), rng(1).random((6, 2))])
    full = ConstantKernel(1.3) * k + WhiteKernel(0.1)
    _, grad = full(X, eval_gradient=True)
    theta = full.theta
    numeric = []
    for i in range(len(theta)):
        e = np.zeros_like(theta)
        e[i] = 1e-6
        numeric.append((full.clone_with_theta(theta + e)(X) - full.clone_with_theta(theta - e)(X)) / 2e-6)
    np.testing.assert_allclose(np.stack(numeric, axis=2), grad, atol=1e-7)


# -- PB2 versus random perturbation on a toy PBT loop ----------------------------------------------
# Protocol, fixed before looking at results: 4 members, 2 hyperparameters (lr on a log scale in
# [1e-5, 1e-1], mom linear in [0, 1]); every member starts in the corner lr < 1e-4, mom < 0.25. Each
# interval a member's score grows by f(hparams) + N(0, 0.05), with f a Gaussian bump of width 0.3 in
# the unit box, peaked at (0.75, 0.75) (lr = 1e-2, mom = 0.75): f < 0.04 anywhere in the initial
# corner. After every interval the worst member copies the best member's score and explores from
# its hyperparameters. 16 intervals; 20 seeds per method (the same initial members and noise per
# seed); PB2's final best score must beat PBT's (x0.8 / x1.2 or resample) in a one-sided
# Mann-Whitney U test at p < 0.01. (The defaults of evo.core.pb2 were chosen on seeds 1000-1029, not
# these.)
TOY_MEMBERS, TOY_INTERVALS, TOY_SEEDS, TOY_NOISE = 4, 16, 20, 0.05


def _toy_score(hp: dict[str, Any]) -> float:
    z = np.array([(math.log10(hp["lr"]) + 5) / 4, hp["mom"]])
    return float(np.exp(-np.sum((z - 0.75) ** 2) / (2 * 0.3**2)))


def _toy_pbt(method: str, seed: int) -> float:
    space = space_2d()
    init, noise = rng(seed, 0), rng(seed, 1)
    hps = [space.sample(init) for _ in range(TOY_MEMBERS)]
    scores = np.zeros(TOY_MEMBERS)
    history: list[Observation] = []
    for it in range(1, TOY_INTERVALS + 1):
        for m in range(TOY_MEMBERS):
            delta = _toy_score(hps[m]) + TOY_NOISE * float(noise.normal())
            scores[m] += delta
            history.append(Observation(float(it), dict(hps[m]), delta, m))
        order = np.argsort(scores, kind="stable")
        worst, best = int(order[0]), int(order[-1])
        scores[worst] = scores[best]
        r = rng(seed, 2, it)
        if method == "pbt":
            hps[worst], _ = explore(hps[best], space, r)
        else:
            hps[worst], _ = pb2_explore(hps[best], space, r, history, float(it))
    return float(scores.max())


def test_pb2_finds_the_good_region_faster_than_random_perturbation() -> None:
    start = time.perf_counter()
    finals = {m: [_toy_pbt(m, s) for s in range(TOY_SEEDS)] for m in ("pbt", "pb2")}
    p = float(mannwhitneyu(finals["pb2"], finals["pbt"], alternative="greater").pvalue)
    summary = (f"mean final best score: pb2 {np.mean(finals['pb2']):.2f}, pbt {np.mean(finals['pbt']):.2f}; "
               f"one-sided Mann-Whitney p = {p:.2g} ({time.perf_counter() - start:.1f} s)")
    print(summary)
    assert p < 0.01, summary
