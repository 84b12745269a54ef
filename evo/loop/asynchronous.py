"""The asynchronous schedule (``--async``): ``decide`` runs for each member when it publishes.

Each member runs through its own intervals (``--steps-per-generation`` env steps each) on its own
clock; a rank hosting several members trains them in turn. An interval is the member step of
:mod:`evo.loop.step`::

    train -> evaluate (eval set k) -> publish (snapshot on the rank's hub; "ready" to rank 0)
      -> decide (rank 0's coordinator, :mod:`evo.loop.coordinator`) -> [a donor] fetch its
      snapshot -> explore (coordinator) -> apply -> checkpoint -> record ("done" to rank 0)

Nobody waits at a barrier while training: snapshots are served by each rank's
:class:`~evo.comm.AsyncHub` service thread, and rank 0's hub thread runs the coordinator.
Records, checkpoints (one layout, :mod:`evo.loop.checkpoints`) and printed lines are the
synchronous schedule's; ``summary.json`` adds ``async`` (intervals, copies, waiting).
``--resume`` continues every member from its own newest intact checkpoint; up to one interval
per member (the one in progress) is redone.

Test hooks: ``EVO_SLOW=MEMBER:SECONDS`` (a slow member), ``EVO_CHECK_COPIES=1`` (lineage lines
carry the SHA-256 of the published, received and unpacked snapshot), ``EVO_FAULT`` as in sync.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import evo.loop.checkpoints as ckpt
import evo.loop.rows as rec
import evo.loop.step as step
from evo import comm as comm_mod
from evo.config import PBTConfig
from evo.errors import ConfigError
from evo.loop.context import Run, Slot
from evo.loop.coordinator import Board, Coordinator, Entry
from evo.loop.finish import EXIT_PREEMPTED, finish, print_stopped
from evo.loop.start import ResumePlan, start
from evo.loop.sync import entry
from evo.loop.watchdog import start as start_watchdog
from evo.loop.watchdog import tick as tick_watchdog
from evo.records import read_csv


@dataclass
class MemberState:
    slot: Slot
    next: int
    """The next interval to run."""
    checkpointed: int | None = None
    """Completed intervals in this member's newest checkpoint."""


@dataclass
class AsyncRun:
    r: Run
    hub: Any
    states: list[MemberState]
    buf: np.ndarray
    slow: dict[int, float] = field(default_factory=dict)
    check_copies: bool = False
    stop_seen: bool = False


def _slow_hook() -> dict[int, float]:
    """Test hook: ``EVO_SLOW=MEMBER:SECONDS[,MEMBER:SECONDS]`` sleeps after each of the member's trainings."""
    out = {}
    for part in filter(None, os.environ.get("EVO_SLOW", "").split(",")):
        member, seconds = part.split(":")
        out[int(member)] = float(seconds)
    return out


def _sha(buf: np.ndarray) -> str:
    return hashlib.sha256(buf.tobytes()).hexdigest()


def run_interval(a: AsyncRun, st: MemberState) -> bool:
    """One interval of one member. False if a stop signal cut it short (the interval is dropped),
    or the coordinator's reply says the job is stopping (the interval is recorded)."""
    r, cfg, hub = a.r, a.r.cfg, a.hub
    m, k = st.slot.member, st.next
    o = step.train(r, st.slot, k)
    if m.index in a.slow:
        time.sleep(a.slow[m.index])
    if o.stats.stopped or r.stop.requested:
        return False
    step.evaluate(r, o)
    if step.is_last(r, k):
        r.final_eval[m.index] = step.final_evaluate(r, m)
    meta: dict[str, Any] = {"member": m.index, "interval": k, "env_steps": m.num_timesteps, "score": o.score,
                            "test_score": o.test_score, "eval_set": o.eval_set, "hparams": dict(m.hparams),
                            "selection": o.selection(cfg.select_on)}
    if a.check_copies:  # test hook: record what exactly was published
        packed = m.pack()
        meta["sha256"] = _sha(packed)
        hub.publish(m.index, meta, lambda buf: np.copyto(buf, packed))
    else:
        hub.publish(m.index, meta, m.pack)
    t_sel = time.perf_counter()
    reply = hub.report({"kind": "ready", "member": m.index, "interval": k, "score": o.score,
                        "test_score": o.test_score, "eval_set": o.eval_set, "env_steps": m.num_timesteps,
                        "hparams": o.hp_used})
    t_ex = time.perf_counter()
    lineage: dict[str, Any] | None = None
    donor = reply.get("donor")
    if donor is not None:
        got, snap = hub.fetch(int(donor), out=a.buf)
        ex = hub.report({"kind": "explore", "member": m.index, "interval": k, "donor": int(donor),
                         "donor_hparams": got["hparams"], "donor_selection": got.get("selection", got["score"])})
        before = dict(m.hparams)
        step.apply_copy(st.slot, snap, ex["hparams"])
        lineage = {"generation": k, "receiver": m.index, "donor": int(donor), "receiver_score": reply["receiver_score"],
                   "donor_score": reply["donor_score"], "hparams_before": before, "donor_hparams": got["hparams"],
                   "hparams_after": ex["hparams"], "changes": ex["changes"],
                   "receiver_eval_set": reply["receiver_eval_set"], "donor_eval_set": reply["eval_set"],
                   "donor_snapshot_score": got["score"],
                   "donor_interval": got["interval"], "donor_env_steps": got["env_steps"],
                   "receiver_env_steps": m.num_timesteps}
        if a.check_copies:
            lineage["snapshot_sha256"] = got.get("sha256")
            lineage["received_sha256"] = _sha(snap)
            lineage["unpacked_sha256"] = _sha(m.pack())
    t_end = time.perf_counter()
    row = rec.member_row(r, o, -1 if donor is None else int(donor),
                         {"select": t_ex - t_sel, "exchange": t_end - t_ex, "generation": t_end - o.t0})
    rec.log_member_tb(r, st.slot.tb, o, row)
    st.next = k + 1
    checkpointed = None
    if cfg.checkpoint_every and (st.next % cfg.checkpoint_every == 0 or st.next == cfg.generations):
        _, seconds = ckpt.write_member(ckpt.gen_dir(cfg.run_dir, st.next), m, st.next, r.expected,
                                       entry(o, time.perf_counter() - r.t_run0))
        r.timeline.add("checkpoint", seconds)
        st.checkpointed = checkpointed = st.next
    done = hub.report({"kind": "done", "row": row, "lineage": lineage, "checkpointed": checkpointed})
    tick_watchdog(min(s.next for s in a.states))
    if done.get("stop") or reply.get("stop"):
        a.stop_seen = True
        return False
    return True


def _loop(a: AsyncRun) -> bool:
    """This rank's members, in turn, each through its intervals. True if it stopped early."""
    cfg = a.r.cfg
    while True:
        active = [s for s in a.states if s.next < cfg.generations]
        if not active:
            return False
        for st in active:
            if a.r.stop.requested or not run_interval(a, st):
                if not a.stop_seen:  # a signal here: tell the coordinator, so every rank stops
                    a.hub.report({"kind": "stop", "member": st.slot.index})
                return True


def _coordinator(r: Run, plan: ResumePlan | None) -> Coordinator:
    """(rank 0) The coordinator, with what the records kept of a resumed run."""
    board, rounds, next_round = Board(r.n), {}, 0  # type: ignore[var-annotated]
    if plan is not None:
        rows = read_csv(r.cfg.run_dir / "members.csv") if (r.cfg.run_dir / "members.csv").exists() else []
        done = {int(x["generation"]) for x in read_csv(r.cfg.run_dir / "generations.csv")} \
            if (r.cfg.run_dir / "generations.csv").exists() else set()
        next_round = max(done) + 1 if done else 0
        for x in rows:
            parsed = _row_from_csv(x)
            score, test = parsed["score"], parsed["test_score"]
            sel = (math.nan if test is None else test) if r.cfg.select_on == "test" else score
            hps = {k[3:]: v for k, v in x.items() if k.startswith("hp_")}
            eval_set = int(x.get("eval_set") or parsed["generation"])
            board.add(parsed["member"], Entry(score, test, sel, parsed["env_steps"], parsed["generation"], eval_set,
                                              hps))
            r.pb2_start[parsed["member"]] = sel
            if parsed["generation"] >= next_round:
                rounds.setdefault(parsed["generation"], {})[parsed["member"]] = parsed
        k = board.complete_set()
        if k is not None and not plan.extended:  # decided before the stop; an extended run's last set was not
            board.acted = {i: k for i in range(r.n)}
        if r.cfg.explore == "pb2":
            from evo.loop.history import pb2_history_from_records

            column = "test_score" if r.cfg.select_on == "test" else "score"
            r.pb2_history, _ = pb2_history_from_records(r.cfg.run_dir, max(plan.starts), column)
    coord = Coordinator(r, board, rounds, next_round)
    if plan is not None and (r.cfg.run_dir / "lineage.jsonl").exists():  # copies before the resume
        coord.exploits = len((r.cfg.run_dir / "lineage.jsonl").read_text().splitlines())
    return coord


def _row_from_csv(x: Mapping[str, str]) -> dict[str, Any]:
    def num(v: str | None) -> float | None:
        return float(v) if v else None

    score = num(x["score"])
    return {**x, "generation": int(x["generation"]), "member": int(x["member"]),
            "score": math.nan if score is None else score, "test_score": num(x.get("test_score")),
            "env_steps": int(x["env_steps"]), "copied_from": int(x["copied_from"]),
            "time_exchange_s": num(x["time_exchange_s"]) or 0.0,
            "time_generation_s": num(x["time_generation_s"]) or 0.0}


def run_async(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Run (or resume) an asynchronous PBT job on ``comm``. Returns the process exit code."""
    if schedule:
        raise ConfigError("--async runs take no hyperparameter schedule")
    r, plan = start(cfg, comm)
    starts = plan.starts if plan is not None else [0] * r.n
    coord = _coordinator(r, plan) if r.rank == 0 else None
    states = [MemberState(s, starts[s.index], starts[s.index] if plan and s.index in plan.dirs else None)
              for s in r.slots]
    flat = r.slots[0].member.flat_size
    t_loop = time.perf_counter()
    stopped = False
    dog = start_watchdog(cfg.run_dir, comm, cfg.watchdog_s, what="interval")
    with comm_mod.AsyncHub(comm, flat, [s.index for s in r.slots], decide=coord) as hub:
        a = AsyncRun(r, hub, states, np.empty(flat, dtype=np.float32), _slow_hook(),
                     bool(os.environ.get("EVO_CHECK_COPIES")))
        if plan is not None:  # resumed members serve their checkpointed state until their next publish
            for st in states:
                e, m = plan.entries.get(st.slot.index), st.slot.member
                if e is not None:
                    hub.publish(m.index, {"member": m.index, "interval": int(e.get("interval", st.next - 1)),
                                          "env_steps": m.num_timesteps, "resumed": True,
                                          "score": math.nan if e.get("score") is None else e["score"],
                                          "test_score": e.get("test_score"), "eval_set": e.get("eval_set"),
                                          "hparams": dict(m.hparams)}, m.pack)
        comm.Barrier()  # every resumed snapshot is published before anybody can be told to fetch it
        try:
            stopped = _loop(a)
        finally:
            dog.stop()
            for s in r.slots:
                s.tb.flush()
    wall_loop = time.perf_counter() - t_loop
    r.timeline.mark("loop_end")
    stats = comm.gather({**hub.stats(), "wall_s": wall_loop}, root=0)
    stopped = comm_mod.agree(comm, stopped)
    checkpointed = comm.gather([(st.slot.index, st.checkpointed) for st in states], root=0)
    r.pop_tb.flush()
    if not stopped:
        extra = _async_summary(r, coord, stats) if coord is not None else None
        finish(r, coord.population() if coord is not None else None, time.perf_counter() - r.t_run0, extra)
    elif r.rank == 0:
        last = dict(x for part in checkpointed for x in part)
        stands = ", ".join(f"{i}: {'none' if last[i] is None else last[i]}" for i in sorted(last))
        print_stopped(f"every member stopped within one env step and its interval in progress is dropped; "
                      f"intervals completed in each member's newest checkpoint: {stands}")
    rec.close(r)
    return EXIT_PREEMPTED if stopped else 0


def _async_summary(r: Run, coord: Coordinator, stats: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """summary.json's ``async``: intervals, copies, per-member finish times and waiting."""
    waits = {k: sum(float(s[k]) for s in stats) for k in ("report_s", "fetch_s", "finish_wait_s")}
    wall = sum(float(s["wall_s"]) for s in stats)
    return {"async": {
        "intervals": [coord.intervals.get(i, 0) for i in range(r.n)],
        "exploits": coord.exploits,
        "member_done_s": [coord.done_s.get(i) for i in range(r.n)],
        "wait_s": waits, "rank_wall_s": [float(s["wall_s"]) for s in stats],
        "idle_share": sum(waits.values()) / wall if wall > 0 else None,
        "idle_share_note": "time ranks spent in report, fetch and finish waits / their time in the async loop",
        "fetches": int(sum(float(s["fetches"]) for s in stats)),
        "bytes_sent": int(sum(float(s["bytes_sent"]) for s in stats)),
        "pairing": "scores compared only on one evaluation set: the newest set every member has been scored on",
    }}


__all__ = ["Coordinator", "run_async"]
