"""``micro``: the flat state (weights + optimizer moments, float32) of real networks — its size,
pack / unpack time, and moving it with MPI (Bcast, Sendrecv) against a local ``np.copyto``."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import mpi_module, ratio, table, write_outputs

MICRO_NETS = [("cartpole_mlp", "CartPole-v1", "MlpPolicy"), ("nature_cnn", "bigfish", "CnnPolicy"),
              ("impala_cnn", "bigfish", "impala")]
MICRO_COLUMNS = ["network", "params", "flat_mb", "pack_ms", "unpack_ms", "copyto_ms", "bcast_ms",
                 "sendrecv_ms", "bcast_gb_s", "copyto_gb_s"]


def _median_ms(times: Sequence[float]) -> float:
    return 1000 * statistics.median(times) if times else math.nan


def time_moves(member: Any, comm: Any, repeats: int) -> dict[str, list[float]]:
    """Seconds of each move per repeat (the first repeat, warm-up, included): pack, unpack, a local
    copy, a Bcast from rank 0 and a Sendrecv between ranks 0 and 1 (max over ranks)."""
    import numpy as np
    from mpi4py import MPI

    rank, size = comm.Get_rank(), comm.Get_size()
    src = member.pack()
    buf, dst = np.empty_like(src), np.empty_like(src)
    t: dict[str, list[float]] = {"pack": [], "unpack": [], "copyto": [], "bcast": [], "sendrecv": []}
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        member.pack(buf)
        t["pack"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        member.unpack(buf)
        t["unpack"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.copyto(dst, src)
        t["copyto"].append(time.perf_counter() - t0)
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Bcast([buf if rank == 0 else dst, MPI.FLOAT], root=0)
        t["bcast"].append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        if size > 1:
            peer = 1 - rank if rank < 2 else MPI.PROC_NULL
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Sendrecv([src, MPI.FLOAT], dest=peer, sendtag=5, recvbuf=[dst, MPI.FLOAT], source=peer, recvtag=5)
            t["sendrecv"].append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
    return t


def micro_worker(ns: argparse.Namespace) -> int:
    """(under ``mpiexec -n N``) Build each network as a real learner, time its flat-state moves."""
    import torch
    from mpi4py import MPI

    from evo.config import PBTConfig
    from evo.learners import make_learner

    torch.set_num_threads(1)
    comm = MPI.COMM_WORLD
    results = []
    for label, env_id, policy in MICRO_NETS:
        if ns.nets and label not in ns.nets:
            continue
        cfg = PBTConfig(env_id=env_id, n_envs=1, n_steps=64, eval_episodes=1, policy=policy, tb_writer=False)
        member = make_learner(cfg, {}, index=comm.Get_rank())
        t = time_moves(member, comm, ns.repeats)
        member.close()
        if comm.Get_rank() == 0:
            mb = member.flat_size * 4 / 1e6
            row: dict[str, Any] = {"network": label, "params": member.num_params, "flat_mb": mb,
                                   "ranks": comm.Get_size(), **{f"{k}_ms": _median_ms(v[1:]) for k, v in t.items()}}
            row["bcast_gb_s"] = ratio(mb, row["bcast_ms"])  # MB / ms = GB / s
            row["copyto_gb_s"] = ratio(mb, row["copyto_ms"])
            results.append(row)
    if comm.Get_rank() == 0:
        Path(ns.result).write_text(json.dumps(results))
    return 0


def cmd_micro(ns: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        result = Path(tmpdir) / "micro.json"
        args = ["_micro_worker", "--repeats", str(ns.repeats), "--result", str(result)]
        if ns.nets:
            args += ["--nets", *ns.nets]
        rc, _out, err, _ = mpi_module(ns.ranks, "evo.bench", args, ns.timeout)
        if rc != 0 or not result.exists():
            raise SystemExit(f"evo.bench micro: worker failed (exit {rc}):\n{err[-3000:]}")
        rows = json.loads(result.read_text())
    print(f"\nmicro: flat state (weights + optimizer moments, float32), median of {ns.repeats} repeats after 1 "
          f"warm-up; MPI times under mpiexec -n {ns.ranks} on one node (max over ranks)")
    print(table(rows, MICRO_COLUMNS))
    write_outputs(Path(ns.out), "micro", rows, MICRO_COLUMNS,
                  {"repeats": ns.repeats, "ranks": ns.ranks, "obs": "ProcGen 64x64x3 for the CNNs"})
