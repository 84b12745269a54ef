"""At scale, without launching ranks: plans and message counts for 1024 and 4096 members."""

from __future__ import annotations

import numpy as np
import pytest

from evo.core.selection import (
    Transfer,
    donor_groups,
    message_counts,
    plan_truncation,
    plan_wta,
    selection_rng,
    truncation_size,
)


@pytest.mark.parametrize("n", [1024, 4096])
@pytest.mark.parametrize("quantile", [0.25, 0.5, 0.1])
def test_point_to_point_bounds(n: int, quantile: float) -> None:
    scores = np.random.default_rng(n).normal(size=n).tolist()
    plan = plan_truncation(scores, quantile, selection_rng(0, 3))
    counts = message_counts(plan)
    k = truncation_size(n, quantile)
    assert counts.total == k
    assert counts.max_received == 1  # nobody receives more than one weight payload
    assert counts.max_sent == 1  # donors drawn without replacement: one payload each


@pytest.mark.parametrize("n", [1024, 4096])
def test_point_to_point_bound_with_failed_members(n: int) -> None:
    scores = np.random.default_rng(1).normal(size=n)
    k = truncation_size(n, 0.25)
    scores[: k + 10] = np.nan  # more failures than the bottom quantile: 10 donors must send twice
    plan = plan_truncation(scores.tolist(), 0.25, selection_rng(0, 0))
    counts = message_counts(plan)
    assert counts.max_received == 1
    assert counts.max_sent == 2  # documented bound: ceil(receivers / k)
    assert counts.total == k + 10


@pytest.mark.parametrize("n", [1024, 4096])
def test_collective_groups_never_gather_all_weights(n: int) -> None:
    scores = np.random.default_rng(2).normal(size=n).tolist()
    plan = plan_truncation(scores, 0.25, selection_rng(1, 1))
    groups = donor_groups(plan)
    members = [m for d, rs in groups.items() for m in (d, *rs)]
    assert len(members) == len(set(members))  # each rank in at most one sub-communicator
    # a sub-communicator broadcasts one donor's state: no rank receives more than one state,
    # and the largest group is the donor plus its receivers, not the world
    assert max(len(rs) for rs in groups.values()) == 1
    assert max(1 + len(rs) for rs in groups.values()) == 2 < n


def test_wta_is_one_broadcast() -> None:
    plan = plan_wta(np.random.default_rng(3).normal(size=4096).tolist())
    groups = donor_groups(plan)
    assert len(groups) == 1 and len(next(iter(groups.values()))) == 4095


def test_donor_groups_reject_overlapping_plans() -> None:
    with pytest.raises(ValueError):
        donor_groups([Transfer(1, 0), Transfer(0, 2)])
    with pytest.raises(ValueError):
        donor_groups([Transfer(1, 0), Transfer(1, 2)])
