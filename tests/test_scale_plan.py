"""Transports without launching ranks: the registry, each rank's part of a plan (also for 1024 and
4096 members), and the local copies every transport makes on a single rank (``COMM_SELF``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest
from mpi4py import MPI

from evo.comm import (
    TRANSPORTS,
    RankPlan,
    Transport,
    donor_groups,
    local_members,
    make_transport,
    owner_of,
    register_transport,
)
from evo.comm.subcomm import disjoint_rounds
from evo.comm.transport import crossing_groups, group_ranks
from evo.core.selection import Transfer, plan_truncation, plan_wta, selection_rng, truncation_size
from evo.errors import ConfigError

EVERY_TRANSPORT = sorted(TRANSPORTS)


def owners(transfer: Transfer, world: int) -> set[int]:
    return {owner_of(transfer.donor, world), owner_of(transfer.receiver, world)}


def check_parts(transfers: Sequence[Transfer], plans: Sequence[RankPlan], world: int) -> None:
    """Each rank gets exactly the transfers that touch its members, sorted; the rounds it joins agree."""
    assert len(plans) == world
    for r, p in enumerate(plans):
        assert list(p.transfers) == sorted(t for t in transfers if r in owners(t, world))
        assert {d for d, _ in p.round_of} <= {t.donor for t in p.transfers}
        assert all(0 <= rnd < p.rounds for _, rnd in p.round_of)
    assert len({(p.rounds, p.roots) for p in plans}) <= 1  # every rank joins the same collective steps


# -- the registry ---------------------------------------------------------------------------------
def test_registered_transports_describe_themselves() -> None:
    assert {"broadcast", "p2p", "subcomm"} <= set(TRANSPORTS)
    for name, cls in TRANSPORTS.items():
        assert cls.name == name and cls.description and isinstance(cls.collective, bool)
    assert TRANSPORTS["broadcast"].collective and TRANSPORTS["subcomm"].collective
    assert not TRANSPORTS["p2p"].collective  # only the ranks involved take part: usable without a barrier


def test_make_transport_names_the_known_ones() -> None:
    t = make_transport("p2p", MPI.COMM_SELF, 8)
    assert isinstance(t, TRANSPORTS["p2p"]) and t.size == 8
    with pytest.raises(ConfigError) as exc:
        make_transport("carrier-pigeon", MPI.COMM_SELF, 8)
    assert "carrier-pigeon" in str(exc.value) and all(n in str(exc.value) for n in EVERY_TRANSPORT)


def test_register_refuses_duplicates_and_non_transports() -> None:
    before = dict(TRANSPORTS)

    class Again(Transport):
        name = "p2p"
        description = "a second p2p"

    with pytest.raises(ValueError, match="already registered"):
        register_transport(Again)
    with pytest.raises(TypeError):
        register_transport(dict)  # type: ignore[arg-type]

    class Nameless(Transport):
        description = "no name"

    with pytest.raises(ValueError):
        register_transport(Nameless)
    assert before == TRANSPORTS


def test_a_new_transport_is_a_class_and_a_registration() -> None:
    class LocalOnly(Transport):
        name: ClassVar[str] = "test-local-only"
        description: ClassVar[str] = "moves nothing between ranks"

        def move_remote(self, plan: RankPlan, packed: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
            return {}

    assert register_transport(LocalOnly) is LocalOnly
    try:
        t = make_transport("test-local-only", MPI.COMM_SELF, 4)
        got = t.move_members(LocalOnly.split([Transfer(1, 0)], 1)[0], lambda m, buf: buf.fill(m + 7))
        assert list(got) == [1] and (got[1] == 7).all()
    finally:
        del TRANSPORTS["test-local-only"]


# -- each rank's part -----------------------------------------------------------------------------
@pytest.mark.parametrize("transport", EVERY_TRANSPORT)
def test_split_sends_each_rank_only_its_transfers(transport: str) -> None:
    transfers = [Transfer(5, 0), Transfer(6, 1), Transfer(4, 3)]
    plans = TRANSPORTS[transport].split(transfers, 3)
    check_parts(transfers, plans, 3)
    # rank 0 hosts 0, 3 and 6: every transfer touches it; rank 2 hosts 2 and 5: only 5 <- 0
    assert set(plans[0].transfers) == set(transfers) and plans[2].transfers == (Transfer(5, 0),)


@pytest.mark.parametrize("transport", EVERY_TRANSPORT)
def test_split_refuses_plans_that_are_not_disjoint_groups(transport: str) -> None:
    with pytest.raises(ValueError):
        TRANSPORTS[transport].split([Transfer(1, 0), Transfer(0, 2)], 2)  # 0 donates and receives
    with pytest.raises(ValueError):
        TRANSPORTS[transport].split([Transfer(1, 0), Transfer(1, 2)], 2)  # 1 receives twice


def test_donor_groups() -> None:
    assert donor_groups([Transfer(3, 2), Transfer(1, 0), Transfer(4, 0)]) == {0: [1, 4], 2: [3]}
    with pytest.raises(ValueError):
        donor_groups([Transfer(1, 0), Transfer(0, 2)])


def test_local_groups_need_no_collective_step() -> None:
    # 4 members on 2 ranks: 2 <- 0 stays on rank 0, 1 <- 3 on rank 1
    transfers = [Transfer(2, 0), Transfer(1, 3)]
    assert crossing_groups(transfers, 2) == {}
    for transport in ("broadcast", "subcomm"):
        plans = TRANSPORTS[transport].split(transfers, 2)
        check_parts(transfers, plans, 2)
        assert all(p.rounds == 0 and not p.round_of for p in plans)
    plans = TRANSPORTS["broadcast"].split([Transfer(2, 0), Transfer(1, 0)], 2)  # one group, one remote receiver
    assert [(p.rounds, p.roots, p.round_of) for p in plans] == [(1, (0,), ((0, 0),)), (1, (0,), ((0, 0),))]


def test_broadcast_rounds_are_the_crossing_groups_in_donor_order() -> None:
    # 7 members on 3 ranks: donors 4 (rank 1) and 0 (rank 0); 6 <- 0 is local, 2 <- 0 crosses
    transfers = [Transfer(3, 4), Transfer(1, 0), Transfer(2, 0), Transfer(5, 4), Transfer(6, 0)]
    plans = TRANSPORTS["broadcast"].split(transfers, 3)
    check_parts(transfers, plans, 3)
    assert plans[0].rounds == 2 and plans[0].roots == (0, 1)
    assert plans[2].round_of == ((0, 0), (4, 1))  # rank 2 hosts receivers 2 (of 0) and 5 (of 4)


def test_subcomm_rounds_keep_each_rank_in_one_group_per_round() -> None:
    # 7 members on 3 ranks: donors 0 (rank 0) and 4 (rank 1); receivers 3 (rank 0), 1 (rank 1), 2, 5 (rank 2)
    transfers = [Transfer(3, 4), Transfer(1, 0), Transfer(2, 0), Transfer(5, 4)]
    plans = TRANSPORTS["subcomm"].split(transfers, 3)
    check_parts(transfers, plans, 3)
    assert plans[0].rounds == 2 and plans[0].round_of == ((0, 0), (4, 1))
    one_per_rank = TRANSPORTS["subcomm"].split([Transfer(1, 0), Transfer(3, 2)], 4)
    assert [p.rounds for p in one_per_rank] == [1] * 4  # disjoint groups: a single Split


# -- at scale -------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1024, 4096])
@pytest.mark.parametrize("per_rank", [1, 4])
@pytest.mark.parametrize("transport", EVERY_TRANSPORT)
def test_truncation_parts_stay_small(transport: str, n: int, per_rank: int) -> None:
    """A rank's part grows with its own members, not with the population."""
    world = n // per_rank
    transfers = plan_truncation(np.random.default_rng(n).normal(size=n).tolist(), 0.25, selection_rng(0, 3))
    assert len(transfers) == truncation_size(n, 0.25)
    plans = TRANSPORTS[transport].split(transfers, world)
    check_parts(transfers, plans, world)
    assert max(len(p.transfers) for p in plans) <= per_rank  # each member in at most one transfer
    assert max(len(p.round_of) for p in plans) <= per_rank
    if transport == "subcomm":
        groups = crossing_groups(transfers, world)
        rounds = disjoint_rounds(groups, world)
        assert plans[0].rounds == len(rounds) <= 2 * per_rank - 1  # a group of 2 ranks meets <= 2(k-1) others
        for donors in rounds:  # no rank in two sub-communicators of one Split
            ranks = [r for d in donors for r in group_ranks(d, groups[d], world)]
            assert len(ranks) == len(set(ranks))
    if transport == "broadcast":
        assert plans[0].rounds == len(crossing_groups(transfers, world))


@pytest.mark.parametrize("n", [1024, 4096])
def test_wta_is_one_collective_step(n: int) -> None:
    transfers = plan_wta(np.random.default_rng(3).normal(size=n).tolist())
    best = transfers[0].donor
    for per_rank in (1, 4):
        world = n // per_rank
        for transport in ("broadcast", "subcomm"):
            plans = TRANSPORTS[transport].split(transfers, world)
            assert {p.rounds for p in plans} == {1}
            assert all(p.round_of == ((best, 0),) for p in plans)
        assert TRANSPORTS["broadcast"].split(transfers, world)[5].roots == (owner_of(best, world),)


# -- one rank: local copies only ------------------------------------------------------------------
@pytest.mark.parametrize("transport", EVERY_TRANSPORT)
def test_on_one_rank_every_transport_copies_locally(transport: str) -> None:
    n = 6
    states = {m: np.random.default_rng(m).standard_normal(16).astype(np.float32) for m in range(n)}
    t = make_transport(transport, MPI.COMM_SELF, 16)
    for transfers in ([Transfer(r, 2) for r in range(n) if r != 2], [Transfer(0, 4), Transfer(1, 5), Transfer(3, 5)],
                      []):
        packed: list[int] = []
        plan = type(t).split(transfers, 1)[0]
        assert plan.rounds == 0  # nothing crosses ranks
        got = t.move_members(plan, lambda m, buf, seen=packed: (seen.append(m), np.copyto(buf, states[m])))
        assert sorted(got) == sorted(x.receiver for x in transfers)
        assert sorted(packed) == sorted({x.donor for x in transfers})
        for x in transfers:
            assert np.array_equal(got[x.receiver], states[x.donor])
    assert local_members(n, 0, 1) == list(range(n))
