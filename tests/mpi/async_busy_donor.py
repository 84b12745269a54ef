"""Run under mpiexec: a donor busy computing (a pure numpy loop, no MPI calls) still serves
fetches promptly, and rank 0 answers reports while its own member computes. Rank 0 publishes
member 0 and then computes for BUSY seconds; the other ranks fetch member 0 (and report) during
that time and measure the latency. Prints BUSY-DONOR {...} with latencies in ms and the service
threads' CPU share. Usage: async_busy_donor.py [MB] [BUSY_S] [FETCHES]"""

import json
import sys
import time

import numpy as np
from mpi4py import MPI

from evo.comm import AsyncHub

mb = float(sys.argv[1]) if len(sys.argv) > 1 else 7.5
busy_s = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
count = int(sys.argv[3]) if len(sys.argv) > 3 else 8
size = int(mb * 1e6 / 4)
world = MPI.COMM_WORLD
rank, n = world.Get_rank(), world.Get_size()
hub = AsyncHub(world, size, [rank], decide=lambda r: {"member": r["member"], "ok": True})
hub.publish(rank, {"member": rank, "value": 1000 + rank}, lambda buf: buf.fill(1000 + rank))
world.Barrier()
t_start = time.perf_counter()

fetch_ms: list[float] = []
report_ms: list[float] = []
if rank == 0:
    x = np.ones(256)
    iterations = 0
    while time.perf_counter() - t_start < busy_s:  # no MPI in here: only the service thread can answer
        x = np.sqrt(x * 1.0000001 + 1e-9)
        iterations += 1
else:
    time.sleep(0.2)
    out = np.empty(size, dtype=np.float32)
    # spread the fetches over the first 60% of the busy period
    gap = max(0.0, (0.6 * busy_s - 0.2) / count)
    for _ in range(count):
        t0 = time.perf_counter()
        meta, buf = hub.fetch(0, out=out)
        fetch_ms.append(1000 * (time.perf_counter() - t0))
        assert meta == {"member": 0, "value": 1000} and (buf == 1000).all(), meta
        t0 = time.perf_counter()
        reply = hub.report({"member": rank})
        report_ms.append(1000 * (time.perf_counter() - t0))
        assert reply == {"member": rank, "ok": True}, reply
        time.sleep(gap)
    assert time.perf_counter() - t_start < busy_s, "the fetches outlasted the donor's busy period (machine too slow?)"
hub.finish()
st = hub.stats()
cpu = st["service_cpu_s"] / st["service_wall_s"] if st["service_wall_s"] > 0 else 0.0
results = world.gather({"fetch_ms": fetch_ms, "report_ms": report_ms, "cpu_share": cpu,
                        "wakeups_per_s": st["service_wakeups"] / max(st["service_wall_s"], 1e-9)}, root=0)
if rank == 0:
    f = [v for r in results for v in r["fetch_ms"]]
    rep = [v for r in results for v in r["report_ms"]]
    shares = [r["cpu_share"] for r in results]
    print("BUSY-DONOR " + json.dumps({
        "n": n, "mb": mb, "busy_s": busy_s, "fetches": len(f),
        "fetch_ms_median": float(np.median(f)), "fetch_ms_max": max(f),
        "report_ms_median": float(np.median(rep)), "report_ms_max": max(rep),
        "idle_max_ms": 1000 * hub.idle_max_s,
        "service_cpu_pct_donor": 100 * shares[0], "service_cpu_pct_others_mean": 100 * float(np.mean(shares[1:])),
        "service_wakeups_per_s_mean": float(np.mean([r["wakeups_per_s"] for r in results]))}), flush=True)
