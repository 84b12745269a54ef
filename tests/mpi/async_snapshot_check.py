"""Run under mpiexec: AsyncHub snapshots are bit-identical to what the donor published, also while
the donor republishes in a tight loop (no torn reads: each version fills its buffer with one
value, and the meta's version must match it), for local and remote fetches, from several threads
of one rank; plus scatter_decisions. Two members per rank (member m on rank m % n).
Usage: async_snapshot_check.py [FLOATS] [FETCHES]"""

import json
import sys
import threading
import time

import numpy as np
from mpi4py import MPI

from evo.comm import AsyncHub, scatter_decisions

size = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
fetches = int(sys.argv[2]) if len(sys.argv) > 2 else 40
world = MPI.COMM_WORLD
rank, n = world.Get_rank(), world.Get_size()
mine = [rank, rank + n]
hub = AsyncHub(world, size, mine)


def random_bits(member: int) -> np.ndarray:
    """Every float32 bit pattern is possible, NaN payloads and -0.0 included: any conversion shows."""
    return np.random.default_rng([7, member]).integers(0, 2**32, size=size, dtype=np.uint32).view(np.float32)


# -- before anything is published, a fetch says so -------------------------------------------
if rank == 0:
    try:
        hub.fetch(1)
        raise AssertionError("fetch of an unpublished member should raise")
    except LookupError:
        pass
world.Barrier()

# -- phase 1: a published snapshot arrives bit-identical (local and remote) ------------------
for m in mine:
    hub.publish(m, {"member": m, "version": -1}, lambda buf, m=m: np.copyto(buf, random_bits(m)))
world.Barrier()
for m in range(2 * n):
    meta, got = hub.fetch(m)
    assert meta == {"member": m, "version": -1}, meta
    assert np.array_equal(got.view(np.uint32), random_bits(m).view(np.uint32)), f"member {m} differs"
world.Barrier()

# -- phase 2: the donor republishes in a tight loop while others fetch -----------------------
publishers = sorted({0, n - 1}) if n >= 3 else [0, 1]
publishing = rank in publishers
seen: dict[int, list[int]] = {}
errors: list[str] = []


def check(meta: dict, buf: np.ndarray, donor: int) -> None:
    bits = buf.view(np.uint32)
    if not (bits == bits[0]).all():
        errors.append(f"torn read of member {donor}: {np.unique(buf)[:5]}")
    if float(buf[0]) != float(meta["version"]) or meta["member"] != donor:
        errors.append(f"meta {meta} does not match values {buf[0]} of member {donor}")
    history = seen.setdefault(donor, [])
    if history and meta["version"] < history[-1]:
        errors.append(f"member {donor} went back from version {history[-1]} to {meta['version']}")
    history.append(meta["version"])


def fetch_many(donors: list[int], count: int) -> None:
    out = np.empty(size, dtype=np.float32)
    for i in range(count):
        donor = donors[i % len(donors)]
        meta, buf = hub.fetch(donor, out=out)
        if meta["version"] >= 0:
            check(meta, buf, donor)


publish_ms: list[float] = []
if publishing:
    # a helper thread on this rank fetches too: locally (this rank's member) and remotely
    other = next(p for p in publishers if p != rank)
    helper = threading.Thread(target=fetch_many, args=([rank, other], fetches))
    helper.start()
    version = 0
    done: MPI.Request | None = None
    while True:
        if done is None and not helper.is_alive():
            done = world.Ibarrier()
        if done is not None and done.Test():
            break
        t0 = time.perf_counter()
        hub.publish(rank, {"member": rank, "version": version}, lambda buf, v=version: buf.fill(v))
        publish_ms.append(1000 * (time.perf_counter() - t0))
        version += 1
    helper.join()
else:
    fetch_many(publishers, fetches)
    done = world.Ibarrier()
    while not done.Test():
        time.sleep(0.001)

# -- scatter_decisions: each rank gets only its own item -------------------------------------
item = scatter_decisions(world, [{"rank": r, "plan": list(range(r))} for r in range(n)] if rank == 0 else None)
assert item == {"rank": rank, "plan": list(range(rank))}, item
try:
    scatter_decisions(world, [1] * (n + 1) if rank == 0 else None)
    raise AssertionError("a wrong number of items should raise on every rank")
except ValueError as exc:
    assert "one item per rank" in str(exc)

stats = hub.stats()
hub.finish()
hub.finish()  # idempotent
try:
    hub.fetch(0)
    raise AssertionError("fetch after finish should raise")
except RuntimeError:
    pass

result = {"rank": rank, "errors": errors, "versions_seen": {d: len(set(v)) for d, v in seen.items()},
          "fetches": sum(len(v) for v in seen.values()), "publishes": len(publish_ms),
          "publish_ms_max": max(publish_ms, default=0.0), "buffers": None,
          "bytes_recv": stats["bytes_recv"], "publish_wait_s": stats["publish_wait_s"]}
results = world.gather(result, root=0)
if rank == 0:
    bad = [e for r in results for e in r["errors"]]
    assert not bad, bad[:5]
    assert sum(r["fetches"] for r in results) > 0
    many = sum(c for r in results for c in r["versions_seen"].values())
    pubs = sum(r["publishes"] for r in results)
    print("SNAPSHOT-OK " + json.dumps({"n": n, "floats": size, "publishes": pubs, "distinct_versions_fetched": many,
                                       "publish_ms_max": max(r["publish_ms_max"] for r in results),
                                       "publish_wait_s": sum(r["publish_wait_s"] for r in results)}), flush=True)
