"""Run under mpiexec: one transport moves plans of every shape bit-exactly, with several members per
rank (member m on rank m % world). Shapes: winner takes all (one donor to everyone), truncation (one
to one; with failed members, one donor to several), random disjoint donor groups (many donors, each
to one or more receivers), and the empty plan. Rank 0 splits each plan with the transport's own
``split`` and scatters the parts. Every rank checks that it got exactly its receivers, each equal to
its donor bit for bit (any float32 pattern: NaN payloads, -0.0), and that ``pack`` ran only for its
own donors, once each. Rank 0 checks that the plans covered local copies, a donor with receivers on
several ranks, a donor with a local and a remote receiver, and several crossing groups in one plan.
Usage: members_exchange_check.py TRANSPORT N"""

import json
import sys

import numpy as np
from mpi4py import MPI

from evo.comm import local_members, make_transport, owner_of, scatter_decisions
from evo.core.selection import Transfer, plan_truncation, plan_wta

comm = MPI.COMM_WORLD
rank, world = comm.Get_rank(), comm.Get_size()
name, n = sys.argv[1], int(sys.argv[2])
size = 1000
mine = local_members(n, rank, world)
transport = make_transport(name, comm, size)


def state(trial: int, member: int) -> np.ndarray:
    return np.random.default_rng([trial, member]).integers(0, 2**32, size=size, dtype=np.uint32).view(np.float32)


def random_groups(rng: np.random.Generator) -> list[Transfer]:
    """A few donors, each member else receiving from a random one of them (or not at all)."""
    order = [int(m) for m in rng.permutation(n)]
    k = int(rng.integers(1, max(2, n // 2) + 1))
    donors, others = order[:k], order[k:]
    return sorted(Transfer(r, donors[int(rng.integers(k))]) for r in others if rng.random() < 0.85)


def plans(trial: int) -> list[tuple[str, list[Transfer]]]:
    rng = np.random.default_rng([trial, 99])
    scores = [float(s) for s in rng.standard_normal(n)]
    if trial % 2:  # failed members: truncation reuses donors
        for m in rng.choice(n, size=max(1, n // 3), replace=False):
            scores[int(m)] = float("nan")
    return [("wta", plan_wta(scores)), ("truncation", plan_truncation(scores, 0.5, np.random.default_rng(trial))),
            ("groups", random_groups(rng)), ("empty", [])]


seen = {"local_copy": 0, "donor_to_several_ranks": 0, "local_and_remote": 0, "several_crossing_groups": 0}
counts: dict[str, int] = {}
for trial in range(8):
    states = {m: state(trial, m) for m in range(n)}
    for shape, transfers in plans(trial):
        counts[shape] = counts.get(shape, 0) + len(transfers)
        parts = type(transport).split(transfers, world) if rank == 0 else None
        my_plan = scatter_decisions(comm, parts)
        packed: list[int] = []

        def pack(m: int, buf: np.ndarray, states: dict = states, packed: list = packed) -> None:
            packed.append(m)
            np.copyto(buf, states[m])

        got = transport.move_members(my_plan, pack)
        expected = {t.receiver: t.donor for t in transfers if owner_of(t.receiver, world) == rank}
        assert set(got) == set(expected), (name, shape, trial, rank, sorted(got), sorted(expected))
        for receiver, donor in expected.items():
            assert np.array_equal(got[receiver].view(np.uint32), states[donor].view(np.uint32)), \
                (name, shape, trial, receiver, donor)
        local_donors = {t.donor for t in transfers if owner_of(t.donor, world) == rank}
        assert sorted(packed) == sorted(local_donors), (name, shape, trial, rank, packed, local_donors)

        groups: dict[int, list[int]] = {}
        for t in transfers:
            groups.setdefault(t.donor, []).append(t.receiver)
        crossing = 0
        for d, rs in groups.items():
            ranks = {owner_of(r, world) for r in rs}
            here = owner_of(d, world)
            seen["local_copy"] += here in ranks
            seen["donor_to_several_ranks"] += len(ranks) > 1
            seen["local_and_remote"] += here in ranks and len(ranks) > 1
            crossing += bool(ranks - {here})
        seen["several_crossing_groups"] += crossing > 1

everyone = comm.gather(True, root=0)
if rank == 0:
    assert all(everyone)
    missing = [k for k, v in seen.items() if not v]
    assert not missing, f"the plans never covered {missing}: {seen}"
    assert all(counts[s] for s in ("wta", "truncation", "groups")), counts
    print("MEMBERS-EXCHANGE-OK " + json.dumps({"transport": name, "n": n, "world": world, "seen": seen}), flush=True)
