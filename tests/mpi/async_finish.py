"""Run under mpiexec: finish() with ranks finishing at different times. Rank r works r * STEP_S
seconds, fetches member (r + 1) % n (the last rank fetches member 0, whose rank has long called
finish() and must still serve it), then finishes. Also: the hub as a context manager, finish()
twice, fetch after finish raises. Prints FINISH-OK {...}. Usage: async_finish.py [STEP_S]"""

import json
import sys
import time

from mpi4py import MPI

from evo.comm import AsyncHub

step = float(sys.argv[1]) if len(sys.argv) > 1 else 0.3
world = MPI.COMM_WORLD
rank, n = world.Get_rank(), world.Get_size()
size = 1000
# CLOCK_MONOTONIC is one clock for every process of a node: the times below compare across ranks
with AsyncHub(world, size, [rank]) as hub:
    hub.publish(rank, {"member": rank}, lambda buf: buf.fill(rank))
    world.Barrier()  # everyone has published
    time.sleep(rank * step)
    donor = (rank + 1) % n
    meta, snap = hub.fetch(donor)
    assert meta == {"member": donor} and (snap == donor).all(), (meta, snap[:3])
    t_called = time.monotonic()
    hub.finish()
    t_done = time.monotonic()
    hub.finish()  # idempotent; the context manager calls it a third time
    try:
        hub.report({"member": rank})
        raise AssertionError("report after finish should raise")
    except RuntimeError:
        pass
t_all = world.gather((t_called, t_done), root=0)
if rank == 0:
    t0 = min(c for c, _ in t_all)
    called = [c - t0 for c, _ in t_all]
    done = [d - t0 for _, d in t_all]
    # nobody leaves finish() before the last rank has called it
    assert min(done) >= max(called), (called, done)
    print("FINISH-OK " + json.dumps({"n": n, "called_s": [round(c, 2) for c in called],
                                     "done_s": [round(d, 2) for d in done]}), flush=True)
