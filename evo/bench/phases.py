"""The transport benchmark's worker (under ``mpiexec -n N``): the loop's own phases on synthetic
members (:class:`~evo.bench.synthetic.SyntheticMember`, one per rank).

* sync (a registered transport): each generation is the body of
  :func:`evo.loop.sync.run_sync` — :func:`evo.loop.step.train`, :func:`~evo.loop.step.evaluate`,
  :func:`evo.loop.sync.publish_and_decide` (scores to rank 0, :func:`evo.core.decide.decide`, each
  rank's part of the plan scattered), :func:`evo.loop.sync.copy_and_apply` (the transport moves the
  flat states), :func:`evo.loop.sync.record`.
* async (``hub``): :func:`evo.loop.asynchronous.run_interval` per interval, with rank 0's
  :class:`evo.loop.coordinator.Coordinator` behind an :class:`evo.comm.AsyncHub`.

The loop writes its usual records (members.csv, generations.csv, lineage.jsonl) to a scratch run
directory; the row of a configuration is read from them (:mod:`evo.bench.transport_rows`) plus what
each rank measured: wall and training time, control bytes, and every state its member unpacked.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evo.bench.synthetic import MeteredComm, SyntheticMember, durations

STEPS_PER_GENERATION = 1
"""Env steps a synthetic member counts per generation (only the async donor rule compares them)."""


@dataclass(frozen=True)
class Spec:
    """One configuration of the sweep."""

    mb: float
    rule: str
    transport: str
    generations: int
    interval_s: float
    spread: float
    jitter: float
    quantile: float
    seed: int
    exchange: bool = True

    @property
    def mode(self) -> str:
        return "async" if self.transport == "hub" else "sync"

    @property
    def size(self) -> int:
        """float32 elements of the flat state."""
        return max(2, int(round(self.mb * 1e6 / 4)))

    @property
    def name(self) -> str:
        return f"{self.mode}-{self.rule}-{self.transport}-{self.mb:g}MB"


def make_run(comm: Any, spec: Spec, workdir: Path, seconds: np.ndarray) -> Any:
    """A :class:`evo.loop.context.Run` on ``comm`` (metered) with this rank's synthetic member, and
    (rank 0) the loop's record writers in ``workdir/spec.name``."""
    import evo.loop.rows as rec
    from evo.config import PBTConfig
    from evo.core import seeds
    from evo.core.space import default_space
    from evo.loop.context import Run, Slot
    from evo.records import TensorBoard
    from evo.stop import StopFlag

    rank, n = comm.Get_rank(), comm.Get_size()
    cfg = PBTConfig(strategy="pbt", rule=spec.rule, transport=spec.transport, async_mode=spec.mode == "async",
                    num_agents=n, generations=spec.generations, steps_per_generation=STEPS_PER_GENERATION,
                    quantile=spec.quantile, seed=spec.seed, exchange=spec.exchange, eval_episodes=1,
                    eval_deterministic=True, tb_writer=False, checkpoint_every=0, verbose=0, log_dir=str(workdir),
                    exp_name=spec.name)
    space = default_space(None, cfg.algo)
    gain = 1.0 + 0.5 * np.random.default_rng([spec.seed, 13, rank]).standard_normal()
    member = SyntheticMember(rank, spec.size, space.sample(seeds.init_rng(spec.seed, rank)), seconds[rank], gain)
    # the member is a stand-in with the part of the Learner interface the phases use
    r = Run(cfg, MeteredComm(comm), space, [Slot(member, TensorBoard(None))], StopFlag(), {})  # type: ignore[arg-type]
    if rank == 0:
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        rec.open_writers(r)
    r.t_run0 = time.perf_counter()
    return r


def run_sync(r: Any, comm: Any, spec: Spec) -> float:
    """Every generation of the synchronous schedule, as :func:`evo.loop.sync.run_sync` runs it
    (without stop checks and checkpoints). Returns this rank's wall seconds."""
    import evo.loop.sync as sync
    from evo.comm import make_transport

    if r.exchanging:
        r.transport = make_transport(spec.transport, comm, spec.size)
    comm.Barrier()
    t_start = time.perf_counter()
    for gen in range(spec.generations):
        sync.run_generation(r, gen)
        r.comm.settle()
    wall = time.perf_counter() - t_start
    r.transport = None
    return wall


def run_async(r: Any, comm: Any, spec: Spec) -> tuple[float, dict[str, float]]:
    """Every interval of every member through :func:`evo.loop.asynchronous.run_interval`, rank 0's
    coordinator deciding behind the hub. Returns (this rank's wall seconds until its last interval
    ended, the hub's counters after ``finish``)."""
    from evo.comm import AsyncHub
    from evo.loop.asynchronous import AsyncRun, MemberState, run_interval
    from evo.loop.coordinator import Board, Coordinator

    coord = Coordinator(r, Board(r.n), {}, 0) if r.rank == 0 else None
    states = [MemberState(s, 0) for s in r.slots]
    with AsyncHub(comm, spec.size, [s.index for s in r.slots], decide=coord) as hub:
        a = AsyncRun(r, hub, states, np.empty(spec.size, dtype=np.float32))
        comm.Barrier()
        t_start = time.perf_counter()
        for _ in range(spec.generations):
            for st in states:
                run_interval(a, st)
        wall = time.perf_counter() - t_start
    return wall, hub.stats()


def measure(comm: Any, spec: Spec, workdir: Path, seconds: np.ndarray) -> dict[str, Any]:
    """Run one configuration; this rank's measurements."""
    import evo.loop.rows as rec

    r = make_run(comm, spec, workdir, seconds)
    member: SyntheticMember = r.slots[0].member
    out: dict[str, Any] = {"rank": r.rank, "drain_s": 0.0, "service_cpu": None}
    if spec.mode == "sync":
        out["wall_s"] = run_sync(r, comm, spec)
        out["ctrl_in"], out["msgs_in"] = r.comm.bytes_in, r.comm.msgs_in + len(member.received)
    else:
        out["wall_s"], st = run_async(r, comm, spec)
        remote = (st["fetches"] - st["local_fetches"]) * spec.size * 4  # snapshots in bytes_recv
        out["ctrl_in"], out["msgs_in"] = st["bytes_recv"] - remote, st["msgs_recv"]
        out["drain_s"] = st["finish_wait_s"]
        out["service_cpu"] = st["service_cpu_s"] / st["service_wall_s"] if st["service_wall_s"] > 0 else None
    out.update(train_s=member.train_s, weights_in=member.bytes_in,
               received=[(member.index, g, v, whole) for g, v, whole in member.received])
    rec.close(r)
    return out


def transport_worker(ns: argparse.Namespace) -> int:
    """(under ``mpiexec -n N``) Every (size, rule, transport) of the config on this world size;
    rank 0 writes the rows to ``--result``."""
    from mpi4py import MPI

    from evo.bench.transport_rows import transport_row

    comm = MPI.COMM_WORLD
    cfg = json.loads(ns.config)
    seconds = durations(comm.Get_size(), cfg["generations"], cfg["seed"], cfg["interval_s"], cfg["spread"],
                        cfg["jitter"])
    rows = []
    for mb in cfg["mb"]:
        for rule in cfg["rules"]:
            for transport in cfg["transports"]:
                spec = Spec(mb, rule, transport, cfg["generations"], cfg["interval_s"], cfg["spread"], cfg["jitter"],
                            cfg["quantile"], cfg["seed"], cfg["exchange"])
                t0 = time.perf_counter()
                ranks = comm.gather(measure(comm, spec, Path(ns.workdir), seconds), root=0)
                gc.collect()
                if ranks is not None:
                    row = {**transport_row(spec, comm.Get_size(), Path(ns.workdir) / spec.name, ranks),
                           "seconds": time.perf_counter() - t0}
                    rows.append(row)
                    print(f"  {row['ranks']} ranks {mb} MB {spec.mode} {rule}/{transport}: exchange "
                          f"{row['exchange_ms_median']:.2f} ms, idle {row['idle_pct']:.1f}%, {row['copies']} copies",
                          file=sys.stderr, flush=True)
    if comm.Get_rank() == 0:
        Path(ns.result).write_text(json.dumps(rows))
    return 0
