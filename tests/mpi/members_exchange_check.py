"""Several members per rank: random plans for every strategy move member states bit-exactly,
with local copies between members of one rank. Usage: members_exchange_check.py STRATEGY N"""

import sys

import numpy as np
from mpi4py import MPI

from evo.comm import local_members, make_transport, owner_of, split_plan
from evo.core.selection import plan

comm = MPI.COMM_WORLD
rank, world = comm.Get_rank(), comm.Get_size()
strategy, n = sys.argv[1], int(sys.argv[2])
size = 1000
mine = local_members(n, rank, world)
transport = make_transport(strategy, comm, size)
for trial in range(6):
    states = {m: np.random.default_rng([trial, m]).standard_normal(size).astype(np.float32) for m in range(n)}
    scores = list(np.random.default_rng([trial, 99]).standard_normal(n))
    transfers = plan(strategy, scores, 0.4, np.random.default_rng(trial))
    plans = split_plan(strategy, transfers, world) if rank == 0 else None
    my_plan = comm.scatter(plans, root=0)
    got = transport.move_members(my_plan, lambda m, buf, states=states: np.copyto(buf, states[m]))
    expected = {t.receiver: t.donor for t in transfers if owner_of(t.receiver, world) == rank}
    assert set(got) == set(expected), (rank, sorted(got), sorted(expected))
    for receiver, donor in expected.items():
        assert np.array_equal(got[receiver].view(np.uint32), states[donor].view(np.uint32)), (receiver, donor)
    assert all(m in mine for m in got)
ok = comm.gather(True, root=0)
if rank == 0:
    print("MEMBERS-EXCHANGE-OK", strategy, n, world, flush=True)
