"""PBT's exploit step (evo.core.selection) and the pure decision function evo.core.decide.decide.

No MPI: plans are pure functions of the scores and a seeded rng. The oracles below restate the
documented rules independently of the implementation.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from evo.core.decide import Decision, decide
from evo.core.rules import get_rule
from evo.core.selection import (
    Transfer,
    best_member,
    explore_rng,
    plan_truncation,
    plan_wta,
    rank_members,
    selection_rng,
    truncation_size,
    validate_quantile,
)
from evo.core.space import default_space, explore
from evo.errors import ConfigError

NAN, INF = math.nan, math.inf


# -- oracles --------------------------------------------------------------------------------------
def oracle_rank(scores: list[float]) -> list[int]:
    """Best first; among equal finite scores the lower index first; non-finite last, by index."""
    n = len(scores)
    finite = [i for i in range(n) if math.isfinite(scores[i])]
    # selection sort on the spec, deliberately not the implementation's key
    out: list[int] = []
    while finite:
        best = finite[0]
        for i in finite[1:]:
            if scores[i] > scores[best]:
                best = i
        out.append(best)
        finite.remove(best)
    return out + [i for i in range(n) if not math.isfinite(scores[i])]


def oracle_k(n: int, q: float) -> int:
    """ceil(n*q) in exact arithmetic (q given as a decimal), at most n // 2."""
    return min(math.ceil(Fraction(n) * Fraction(str(q))), n // 2)


def random_scores(rng: np.random.Generator, n: int, ties: bool, failures: float) -> list[float]:
    if ties:
        scores = [float(s) for s in rng.integers(0, 4, size=n)]
    else:
        scores = [float(s) for s in rng.normal(size=n)]
    for i in range(n):
        if rng.random() < failures:
            scores[i] = [NAN, INF, -INF][int(rng.integers(3))]
    return scores


def pairs(transfers: list[Transfer]) -> list[tuple[int, int]]:
    return [(t.receiver, t.donor) for t in transfers]


# -- rank_members -----------------------------------------------------------------------------------
def test_rank_members_small_examples() -> None:
    assert rank_members([1.0, 3.0, 2.0]) == [1, 2, 0]
    assert rank_members([-1.0, -3.0, -2.0]) == [0, 2, 1]
    assert rank_members([5.0, 5.0, 5.0]) == [0, 1, 2]
    assert rank_members([2.0, 7.0, 2.0, 7.0]) == [1, 3, 0, 2]
    assert rank_members([NAN, 1.0, INF, 0.0, -INF]) == [1, 3, 0, 2, 4]
    assert rank_members([]) == []
    assert rank_members([NAN]) == [0]


def test_rank_members_non_finite_last_even_plus_infinity() -> None:
    scores = [INF, -1e300, NAN, 1e300, -INF]
    order = rank_members(scores)
    assert order[:2] == [3, 1]
    assert set(order[2:]) == {0, 2, 4}


def test_rank_members_matches_the_rule_on_random_scores() -> None:
    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(1, 30))
        scores = random_scores(rng, n, ties=trial % 2 == 0, failures=0.15)
        before = list(scores)
        order = rank_members(scores)
        assert order == oracle_rank(scores), scores
        assert sorted(order) == list(range(n))
        assert rank_members(scores) == order  # deterministic
        assert [str(s) for s in scores] == [str(s) for s in before]  # not mutated (str: NaN != NaN)
        assert best_member(scores) == order[0]


def test_rank_members_accepts_tuples_and_numpy() -> None:
    scores = (0.5, NAN, 2.0, 2.0)
    assert rank_members(scores) == rank_members(list(scores)) == rank_members(np.array(scores)) == [2, 3, 0, 1]


# -- winner takes all -------------------------------------------------------------------------------
def test_wta_small_examples() -> None:
    assert pairs(plan_wta([1.0, 3.0, 2.0])) == [(0, 1), (2, 1)]
    assert pairs(plan_wta([5.0, 7.0, 7.0, 1.0])) == [(0, 1), (2, 1), (3, 1)]  # tie: lowest index wins
    assert pairs(plan_wta([NAN, 1.0, 2.0])) == [(0, 2), (1, 2)]  # NaN never wins
    assert pairs(plan_wta([INF, 1.0])) == [(0, 1)]  # +inf is a failure, not a winner
    assert pairs(plan_wta([-INF, -5.0])) == [(0, 1)]


@pytest.mark.parametrize("scores", [[], [1.0], [NAN], [NAN, NAN], [NAN, INF, -INF], [INF, INF, INF]])
def test_wta_empty_plans(scores: list[float]) -> None:
    assert plan_wta(scores) == []


@pytest.mark.parametrize("n", [2, 3, 5, 7, 8, 9, 31, 64])
def test_wta_everyone_but_the_best_receives_from_the_best(n: int) -> None:
    rng = np.random.default_rng(n)
    for trial in range(50):
        scores = random_scores(rng, n, ties=trial % 2 == 0, failures=0.2)
        transfers = plan_wta(scores)
        if not any(math.isfinite(s) for s in scores):
            assert transfers == []
            continue
        best = oracle_rank(scores)[0]
        assert math.isfinite(scores[best])
        assert sorted(t.receiver for t in transfers) == [i for i in range(n) if i != best]
        assert {t.donor for t in transfers} == {best}
        # the best is the lowest index among the members with the top finite score
        top = max(s for s in scores if math.isfinite(s))
        assert best == min(i for i, s in enumerate(scores) if s == top)
        assert plan_wta(scores) == transfers


# -- quantile ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "q", "k"),
    [
        (1, 0.25, 0), (1, 0.5, 0), (2, 0.25, 1), (2, 0.5, 1), (3, 0.25, 1), (3, 0.5, 1),
        (4, 0.25, 1), (5, 0.25, 2), (5, 0.5, 2), (7, 0.25, 2), (7, 0.3, 3), (7, 0.5, 3),
        (8, 0.5, 4), (9, 0.45, 4), (10, 0.2, 2), (10, 0.25, 3), (10, 0.3, 3), (10, 0.01, 1),
        (100, 0.1, 10), (101, 0.1, 11), (1024, 0.25, 256), (4096, 0.125, 512), (4097, 0.5, 2048),
    ],
)
def test_truncation_size_table(n: int, q: float, k: int) -> None:
    assert truncation_size(n, q) == k


def test_truncation_size_matches_exact_ceil_for_binary_fractions() -> None:
    # quantiles that are exact in binary: no floating point rounding is involved
    for q in (0.5, 0.25, 0.125, 0.375, 0.0625, 0.3125, 2**-10):
        for n in range(0, 3000):
            assert truncation_size(n, q) == oracle_k(n, q), (n, q)


def test_truncation_size_is_exact_for_decimal_quantiles() -> None:
    for qi in range(1, 51):
        q = qi / 100
        for n in (100, 200, 700, 1000, 1100):
            assert truncation_size(n, q) == oracle_k(n, q), (n, q)


@pytest.mark.parametrize("q", [0.0, -0.0, -0.1, -1.0, 0.5000001, 0.51, 0.75, 1.0, 2.0, NAN, INF, -INF])
def test_validate_quantile_rejects(q: float) -> None:
    with pytest.raises(ConfigError) as exc:
        validate_quantile(q)
    assert "quantile" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ConfigError):
        truncation_size(10, q)
    with pytest.raises(ConfigError):
        plan_truncation([1.0, 2.0, 3.0, 4.0], q, np.random.default_rng(0))


@pytest.mark.parametrize("q", [1e-9, 0.01, 0.1, 0.25, 0.3, 0.49, 0.5])
def test_validate_quantile_accepts(q: float) -> None:
    validate_quantile(q)


# -- truncation -------------------------------------------------------------------------------------
def check_truncation_plan(scores: list[float], q: float, transfers: list[Transfer]) -> None:
    """Every documented property of a truncation plan, against the oracles."""
    n = len(scores)
    failed = {i for i, s in enumerate(scores) if not math.isfinite(s)}
    if n < 2 or len(failed) == n:
        assert transfers == []
        return
    k = oracle_k(n, q)
    order = oracle_rank(scores)
    top = {i for i in order[:k] if i not in failed}
    bottom = set(order[n - k:]) if k else set()
    receivers = [t.receiver for t in transfers]
    donors = [t.donor for t in transfers]
    expected_receivers = (bottom | failed) - top
    if not top:
        assert transfers == []
        return
    assert set(receivers) == expected_receivers
    assert len(receivers) == len(set(receivers)), "a member receives twice"
    assert set(donors) <= top, "donor outside the top quantile"
    assert not set(receivers) & set(donors), "a member is both receiver and donor"
    assert all(t.receiver != t.donor for t in transfers)
    for t in transfers:  # a receiver never copies a worse member
        if math.isfinite(scores[t.receiver]):
            assert scores[t.donor] >= scores[t.receiver]
    counts = Counter(donors)
    if len(receivers) <= len(top):
        assert max(counts.values()) == 1, "donor reused while an unused one was available"
    else:
        # the first len(top) draws are without replacement, so every donor sends at least once
        assert set(counts) == top, "with more receivers than donors, every donor sends"


@pytest.mark.parametrize("q", [0.01, 0.1, 0.25, 0.3, 0.5])
def test_truncation_plan_properties_on_random_scores(q: float) -> None:
    rng = np.random.default_rng(int(q * 1000))
    for n in [*range(0, 13), 15, 31, 64, 65]:
        for trial in range(12):
            scores = random_scores(rng, n, ties=trial % 3 == 0, failures=[0.0, 0.1, 0.5][trial % 3])
            transfers = plan_truncation(scores, q, np.random.default_rng(trial))
            check_truncation_plan(scores, q, transfers)


def test_truncation_without_failures_receivers_are_exactly_the_bottom_k() -> None:
    rng = np.random.default_rng(5)
    for n in (2, 3, 4, 5, 6, 7, 10, 33, 100):
        for q in (0.1, 0.25, 0.5):
            scores = [float(s) for s in rng.permutation(n)]  # distinct: the bottom k is unambiguous
            transfers = plan_truncation(scores, q, np.random.default_rng(n))
            k = oracle_k(n, q)
            worst_first = sorted(range(n), key=lambda i: scores[i])
            assert {t.receiver for t in transfers} == set(worst_first[:k])
            assert {t.donor for t in transfers} == set(worst_first[n - k:])  # each top member donates once
            assert len(transfers) == k


def test_truncation_small_examples() -> None:
    rng = np.random.default_rng(0)
    assert plan_truncation([], 0.25, rng) == []
    assert plan_truncation([1.0], 0.5, rng) == []
    assert pairs(plan_truncation([1.0, 2.0], 0.25, rng)) == [(0, 1)]  # n=2, q=0.25: k=1
    assert pairs(plan_truncation([2.0, 1.0], 0.25, rng)) == [(1, 0)]
    assert pairs(plan_truncation([NAN, 1.0], 0.25, rng)) == [(0, 1)]
    assert pairs(plan_truncation([3.0, 1.0, 2.0], 0.5, rng)) == [(1, 0)]  # n=3: k=1, the middle stays
    assert pairs(plan_truncation([5.0, 1.0, 4.0, 2.0, 3.0], 0.25, rng)) in (
        [(1, 0), (3, 2)], [(1, 2), (3, 0)])  # n=5, q=0.25: k=2


@pytest.mark.parametrize("n", [3, 5, 7])
def test_truncation_odd_sizes_leave_the_middle_alone(n: int) -> None:
    scores = [float(i) for i in range(n)]  # member i has score i: 0 is the worst
    k = n // 2
    for seed in range(20):
        transfers = plan_truncation(scores, 0.5, np.random.default_rng(seed))
        assert sorted(t.receiver for t in transfers) == list(range(k))
        assert sorted(t.donor for t in transfers) == list(range(n - k, n))
        assert all(t.receiver != n // 2 and t.donor != n // 2 for t in transfers)


def test_truncation_ties_are_broken_by_index() -> None:
    transfers = plan_truncation([1.0] * 6, 0.5, np.random.default_rng(0))
    assert sorted(t.receiver for t in transfers) == [3, 4, 5]
    assert sorted(t.donor for t in transfers) == [0, 1, 2]
    # ties at the boundary: of the two 2.0s, index 1 is better than index 3
    transfers = plan_truncation([3.0, 2.0, 1.0, 2.0], 0.5, np.random.default_rng(0))
    assert sorted(t.receiver for t in transfers) == [2, 3]
    assert sorted(t.donor for t in transfers) == [0, 1]


def test_truncation_nan_members_always_receive() -> None:
    scores = [NAN, 5.0, 4.0, 3.0, 2.0, 1.0]  # k = 2: bottom is member 5 and the NaN
    for seed in range(10):
        transfers = plan_truncation(scores, 0.25, np.random.default_rng(seed))
        assert {t.receiver for t in transfers} == {0, 5}
        assert {t.donor for t in transfers} == {1, 2}
    # more failures than k: all of them receive, donors are reused, the middle is untouched
    scores = [NAN, INF, -INF, 1.0, 2.0, 3.0]
    for seed in range(10):
        transfers = plan_truncation(scores, 0.25, np.random.default_rng(seed))
        assert {t.receiver for t in transfers} == {0, 1, 2}
        assert {t.donor for t in transfers} == {4, 5}
    # fewer finite members than k: the single finite member gives to everyone
    transfers = plan_truncation([NAN, NAN, NAN, 1.0], 0.5, np.random.default_rng(0))
    assert pairs(transfers) == [(0, 3), (1, 3), (2, 3)]


@pytest.mark.parametrize("scores", [[NAN, NAN], [NAN] * 7, [INF, -INF, NAN], [INF] * 4])
def test_truncation_all_failed_is_empty(scores: list[float]) -> None:
    assert plan_truncation(scores, 0.5, np.random.default_rng(0)) == []


def test_truncation_same_seed_same_plan_and_seeds_matter() -> None:
    rng = np.random.default_rng(1)
    scores = [float(s) for s in rng.normal(size=40)]
    plans = set()
    for seed in range(30):
        a = plan_truncation(scores, 0.25, np.random.default_rng(seed))
        b = plan_truncation(scores, 0.25, np.random.default_rng(seed))
        assert a == b
        plans.add(tuple(a))
    assert len(plans) > 25  # 10 donors permuted over 10 receivers: 10! pairings
    assert plan_truncation(scores, 0.25, selection_rng(3, 7)) == plan_truncation(scores, 0.25, selection_rng(3, 7))


def test_rule_registry_dispatch() -> None:
    scores = [float(s) for s in np.random.default_rng(2).normal(size=12)]
    assert get_rule("wta").plan(scores, 0.25, np.random.default_rng(0)) == plan_wta(scores)
    assert get_rule("truncation").plan(scores, 0.25, np.random.default_rng(4)) == plan_truncation(
        scores, 0.25, np.random.default_rng(4))
    with pytest.raises(ConfigError) as exc:
        get_rule("tournament")
    assert "tournament" in str(exc.value) and "truncation" in str(exc.value)


def test_rngs_are_pure_functions_of_their_arguments() -> None:
    assert selection_rng(1, 2).random(4).tolist() == selection_rng(1, 2).random(4).tolist()
    assert explore_rng(1, 2, 3).random(4).tolist() == explore_rng(1, 2, 3).random(4).tolist()
    streams = {tuple(selection_rng(s, g).random(3)) for s in range(4) for g in range(4)}
    streams |= {tuple(explore_rng(s, g, r).random(3)) for s in range(4) for g in range(4) for r in range(4)}
    assert len(streams) == 16 + 64  # every (seed, generation[, receiver]) gets its own stream


# -- decide -----------------------------------------------------------------------------------------
SPACE = default_space(2048)


def population(n: int, seed: int = 0) -> tuple[list[float], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    scores = [float(s) for s in rng.normal(size=n)]
    hparams = [SPACE.sample(rng) for _ in range(n)]
    return scores, hparams


def comparable(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """Decisions as tuples with NaN replaced (NaN != NaN would defeat equality checks)."""
    def fix(x: Any) -> Any:
        return "nan" if isinstance(x, float) and math.isnan(x) else x
    return [(d.generation, d.receiver, d.donor, fix(d.receiver_score), fix(d.donor_score), d.hparams_before,
             d.donor_hparams, d.hparams_after, d.changes) for d in decisions]


@pytest.mark.parametrize("strategy", ["wta", "truncation"])
def test_decide_is_deterministic(strategy: str) -> None:
    scores, hparams = population(12)
    scores[3] = NAN
    a = decide(strategy, 5, scores, hparams, SPACE, 0.25, seed=42)
    b = decide(strategy, 5, copy.deepcopy(scores), copy.deepcopy(hparams), SPACE, 0.25, seed=42)
    assert a and comparable(a) == comparable(b)
    # another generation or seed changes the exploration (and, for truncation, the pairing)
    c = decide(strategy, 6, scores, hparams, SPACE, 0.25, seed=42)
    d = decide(strategy, 5, scores, hparams, SPACE, 0.25, seed=43)
    assert comparable(c) != comparable(a) and comparable(d) != comparable(a)


@pytest.mark.parametrize("strategy", ["wta", "truncation"])
@pytest.mark.parametrize("generation", [0, 1, 17])
def test_decide_follows_plan_and_explore(strategy: str, generation: int) -> None:
    seed, q = 7, 0.25
    scores, hparams = population(16, seed=generation)
    scores[0] = NAN
    decisions = decide(strategy, generation, scores, hparams, SPACE, q, seed)
    expected = get_rule(strategy).plan(scores, q, selection_rng(seed, generation))
    assert [(d.receiver, d.donor) for d in decisions] == pairs(expected)
    assert 0 in {d.receiver for d in decisions}  # the NaN member is replaced
    for d in decisions:
        assert d.generation == generation
        assert d.hparams_before == hparams[d.receiver]
        assert d.donor_hparams == hparams[d.donor]
        assert d.donor_hparams != d.hparams_before
        new, changes = explore(hparams[d.donor], SPACE, explore_rng(seed, generation, d.receiver))
        assert d.hparams_after == new
        assert d.changes == changes
        if d.receiver == 0:
            assert math.isnan(d.receiver_score)
        else:
            assert d.receiver_score == scores[d.receiver]
        assert d.donor_score == scores[d.donor]


def test_decide_explores_each_receiver_with_its_own_rng() -> None:
    # WTA: every receiver copies the same donor, yet ends up with different hyperparameters
    scores, hparams = population(10)
    decisions = decide("wta", 3, scores, hparams, SPACE, 0.25, seed=1)
    assert len(decisions) == 9
    afters = {tuple(sorted(d.hparams_after.items())) for d in decisions}
    assert len(afters) == 9


@pytest.mark.parametrize("strategy", ["wta", "truncation"])
def test_decide_does_not_mutate_inputs(strategy: str) -> None:
    scores, hparams = population(9)
    snapshot = (list(scores), copy.deepcopy(hparams))
    decisions = decide(strategy, 2, scores, hparams, SPACE, 0.5, seed=3)
    assert (scores, hparams) == snapshot
    # the decisions hold copies: changing them leaves the population alone
    for d in decisions:
        assert d.hparams_before is not hparams[d.receiver] and d.donor_hparams is not hparams[d.donor]
        d.hparams_before["learning_rate"] = -1.0
        d.donor_hparams["learning_rate"] = -1.0
        d.hparams_after["learning_rate"] = -1.0
    assert (scores, hparams) == snapshot
    # read-only inputs work: decide never writes to them
    frozen = [MappingProxyType(h) for h in copy.deepcopy(snapshot[1])]
    again = decide(strategy, 2, tuple(snapshot[0]), frozen, SPACE, 0.5, seed=3)
    assert [(d.receiver, d.donor, d.hparams_after) for d in again] == [
        (d.receiver, d.donor, explore(hparams[d.donor], SPACE, explore_rng(3, 2, d.receiver))[0]) for d in again]


@pytest.mark.parametrize("scores", [[1.0], [NAN, NAN, NAN]])
def test_decide_with_nothing_to_do(scores: list[float]) -> None:
    hparams = [SPACE.sample(np.random.default_rng(i)) for i in range(len(scores))]
    for strategy in ("wta", "truncation"):
        assert decide(strategy, 0, scores, hparams, SPACE, 0.25, seed=0) == []
