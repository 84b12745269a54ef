"""Run under mpiexec: no barrier between intervals. Member 0 (on rank 0, the coordinator) is slow:
each of its intervals is SLOW_S of pure numpy computing (no MPI). The other members train for a
short sleep. Every member, after each interval, publishes (meta, snapshot), reports to rank 0 and
copies a donor if told to (truncation against the latest reported scores), until BUDGET_S is
over; then finish() (so ranks finish at different times). Checks that the fast members complete
many more intervals than the slow one, and that every copy brought the donor's published state.
Prints NO-BARRIER {...}. Usage: async_no_barrier.py [BUDGET_S] [SLOW_S] [FAST_S]"""

import json
import math
import sys
import time

import numpy as np
from mpi4py import MPI

from evo.comm import AsyncHub

budget = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
slow_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
fast_s = float(sys.argv[3]) if len(sys.argv) > 3 else 0.02
size = 25_000  # 0.1 MB, the CartPole MLP
world = MPI.COMM_WORLD
rank, n = world.Get_rank(), world.Get_size()

latest: dict[int, float] = {}
rng = np.random.default_rng(5)


def decide(report: dict) -> dict:
    """Truncation against the latest scores: the bottom quarter copies a random top-quarter member."""
    latest[report["member"]] = report["score"]
    k = max(1, math.ceil(0.25 * n)) if len(latest) >= 2 else 0
    order = sorted(latest, key=lambda m: (-latest[m], m))
    if k and report["member"] in order[-k:] and len(order) > k:
        top = [m for m in order[:k] if m != report["member"]]
        return {"donor": int(rng.choice(top)), "stop": False}
    return {"donor": None, "stop": False}


hub = AsyncHub(world, size, [rank], decide=decide)
state = np.full(size, float(rank), dtype=np.float32)  # state[0] is the member's "quality"
world.Barrier()
t_start = time.perf_counter()
intervals = copies = 0
bad: list[str] = []
x = np.ones(64)
while time.perf_counter() - t_start < budget:
    if rank == 0:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < slow_s:
            x = np.sqrt(x * 1.0000001 + 1e-9)
    else:
        time.sleep(fast_s)
    state += 1.0  # training improves the member
    intervals += 1
    hub.publish(rank, {"member": rank, "interval": intervals, "quality": float(state[0])},
                lambda buf, s=state: np.copyto(buf, s))
    reply = hub.report({"member": rank, "interval": intervals, "score": float(state[0])})
    if reply["donor"] is not None:
        meta, snap = hub.fetch(reply["donor"])
        if not (snap == meta["quality"]).all() or meta["member"] != reply["donor"]:
            bad.append(f"member {rank} copied {meta} but got {snap[:3]}")
        state[:] = snap
        copies += 1
t_end = time.perf_counter() - t_start
hub.finish()
st = hub.stats()
results = world.gather({"rank": rank, "intervals": intervals, "copies": copies, "bad": bad, "end_s": t_end,
                        "finish_wait_s": st["finish_wait_s"], "report_max_ms": 1000 * st["report_max_s"]}, root=0)
if rank == 0:
    errs = [b for r in results for b in r["bad"]]
    assert not errs, errs[:3]
    slow = results[0]["intervals"]
    fast = [r["intervals"] for r in results[1:]]
    summary = {"n": n, "slow_intervals": slow, "fast_intervals_min": min(fast), "fast_intervals_max": max(fast),
               "copies": sum(r["copies"] for r in results),
               "end_s": [round(r["end_s"], 2) for r in results],
               "finish_wait_s": [round(r["finish_wait_s"], 2) for r in results],
               "report_ms_max": max(r["report_max_ms"] for r in results[1:])}
    print("NO-BARRIER " + json.dumps(summary), flush=True)
    assert min(fast) >= 4 * slow, summary
