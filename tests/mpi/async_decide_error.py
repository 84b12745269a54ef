"""Run under mpiexec: decide() raises on rank 0 while serving member 1's report. The service
thread must print one line and abort the job (no hang). Every rank keeps reporting until then."""

import time

from mpi4py import MPI

from evo.comm import AsyncHub

world = MPI.COMM_WORLD
rank = world.Get_rank()


def decide(report: dict) -> dict:
    if report["member"] == 1 and report["interval"] >= 3:
        raise ValueError("boom from decide")
    return {"donor": None}


hub = AsyncHub(world, 10, [rank], decide=decide)
world.Barrier()
t0 = time.perf_counter()
interval = 0
while time.perf_counter() - t0 < 30:
    time.sleep(0.02)
    interval += 1
    hub.report({"member": rank, "interval": interval})
hub.finish()
print("NOT-ABORTED", flush=True)
