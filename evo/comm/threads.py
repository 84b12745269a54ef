"""Per-rank thread counts for torch: each rank gets its share of its node's cores."""

from __future__ import annotations

import os

from mpi4py import MPI

from evo.comm.mpi import local_size


def set_threads(comm: MPI.Comm, threads: int = 0) -> int:
    """Give each rank its share of this node's cores for torch (at least one thread)."""
    import torch

    if threads <= 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // max(1, local_size(comm)))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (a second run in the same process)
        pass
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads
