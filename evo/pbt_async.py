"""Asynchronous PBT (``--async``) for evo.truncation and evo.wta: no generation barrier.

Each member runs through its own *intervals* (``--steps-per-generation`` env steps each), on its
own schedule; a rank that hosts several members trains them in turn::

    train -> evaluate -> publish (meta, snapshot) -> report "ready" to the coordinator (rank 0)
      -> [told to copy] fetch the donor's published snapshot -> unpack -> explore from its hparams
      -> report "done" (the members.csv row, the lineage line) -> checkpoint (its own files)

Nobody waits for anybody at a barrier while training: snapshots are served by each rank's
:class:`~evo.comm.AsyncHub` service thread, and the coordinator's :class:`Coordinator` answers
reports from the hub's thread on rank 0 (under the hub's lock).

Decisions (``Coordinator``, from a scoreboard of each member's latest report):

* **Experience rule** (DexPBT, Petrenko et al. 2023): a member only copies a donor that has
  trained at least as many env steps as itself (``env_steps`` are a member's own clock; a copy
  does not move them). A slow member can catch up by copying a faster one; a fast member is
  never set back to a less trained policy.
* **truncation**: once every member has reported at least once, a member whose latest score is
  in the bottom ``truncation_size(n, quantile)`` copies a donor drawn from the top quantile
  among the members that pass the experience rule (rng ``(seed, SELECT, interval, member)``).
* **wta**: once every member has reported, a member that is not the best copies the best, if
  the best passes the experience rule.
* A member with a non-finite score ranks last and receives as soon as any finite member passes
  the experience rule (the top quantile's / the best one first, else the best such member).
* A member's final interval ends without an exploit (nothing would train on the copy).

Records (rank 0, written by the coordinator as reports arrive):

* ``members.csv``: the sync columns; ``generation`` is the member's interval index, rows appear
  in the order members finish intervals. ``time_select_s`` is the "ready" report's round trip,
  ``time_exchange_s`` the fetch + unpack + explore of a copy.
* ``lineage.jsonl``: one line per copy, with the donor's interval and env steps as published
  with the snapshot that was copied (``donor_env_steps >= receiver_env_steps`` always).
* ``generations.csv``: one row per *round* ``g``, written when the last member finished its
  interval ``g`` (scores are each member's interval-``g`` score; ``wall_s`` is when the round
  completed; ``n_exploits`` counts copies made at the end of interval ``g``).
* ``summary.json`` (the sync keys) plus ``async``: intervals per member, copies, when each
  member finished, and the ranks' time in report / fetch / finish waits (``idle_share``).
* No ``checkpoints.jsonl``: each checkpoint's manifest holds its member's latest score.

Test hooks: ``EVO_SLOW=MEMBER:SECONDS`` (a slow member), ``EVO_CHECK_COPIES=1`` (lineage lines
carry the SHA-256 of the published, received and unpacked snapshot), ``EVO_FAULT`` as in sync.

Checkpoints are per member: ``checkpoints/member_XXX/int_NNNNNN/`` (the member's files, written
atomically, then its ``manifest.json``), the two newest kept. ``--resume`` continues every member
from its own newest complete checkpoint; up to one interval per member (the one in progress) is
redone.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evo import checkpoint as ckpt
from evo import comm as comm_mod
from evo.config import PBTConfig
from evo.core import seeds
from evo.core.selection import rank_members, truncation_size
from evo.core.space import HParams, explore
from evo.errors import CheckpointError, ConfigError
from evo.member import Member
from evo.pbt import (
    EXIT_PREEMPTED,
    GENERATION_COLUMNS,
    MEMBER_COLUMNS_HEAD,
    MEMBER_COLUMNS_TAIL,
    Outcome,
    Population,
    Run,
    Slot,
    _check_resume_settings,
    _close,
    _finish,
    _generation_row,
    _inject_fault,
    _log_member_tb,
    _member_row,
    _nan_none,
    _note_resume,
    _prepare_run_dir,
    evaluate_phase,
    resolve_run,
    save_new_config,
)
from evo.records import JsonlWriter, TableWriter, TensorBoard, atomic_write_text, write_json
from evo.stop import STOP

KEEP = 2
"""Complete checkpoints kept per member."""


# -- decisions (pure) ---------------------------------------------------------------------------
def choose_donor(strategy: str, member: int, scores: Mapping[int, float], env_steps: Mapping[int, int],
                 n: int, quantile: float, rng: np.random.Generator) -> int | None:
    """The donor ``member`` copies now, or ``None``: see the module docstring for the rules.

    ``scores``/``env_steps``: each member's latest reported selection score and env steps (the
    members that have reported so far; ``member`` among them); ``n``: the population size.
    """
    if member not in scores or len(scores) < 2:
        return None
    mine = scores[member]
    failed = not math.isfinite(mine)
    if not failed and len(scores) < n:
        return None  # exploitation starts once every member has a score
    ids = sorted(scores)
    order = [ids[j] for j in rank_members([scores[i] for i in ids])]

    def ok(i: int) -> bool:
        return i != member and math.isfinite(scores[i]) and env_steps[i] >= env_steps[member]

    eligible = [i for i in order if ok(i)]
    if strategy == "wta":
        best = order[0]
        if best == member:
            return None
        if ok(best):
            return best
        return eligible[0] if failed and eligible else None
    if strategy != "truncation":
        raise ConfigError(f"strategy {strategy} has no asynchronous form")
    k = truncation_size(len(ids), quantile)
    if not failed and (k == 0 or member not in order[len(order) - k:]):
        return None
    top = [i for i in order[:k] if ok(i)]
    if not top and failed:
        top = eligible[:1]
    if not top:
        return None
    return top[int(rng.integers(len(top)))]


def selection_rng(seed: int, interval: int, member: int) -> np.random.Generator:
    """The donor draw for ``member``'s report of ``interval`` (its own stream: the sync selection
    streams are ``(seed, SELECT, generation)``)."""
    return seeds.rng(seed, seeds.SELECT, interval, member)


# -- the coordinator (rank 0; runs under the hub's lock) ----------------------------------------
@dataclass
class Entry:
    """The coordinator's latest report of one member."""

    score: float
    test_score: float | None
    selection: float
    env_steps: int
    interval: int
    hparams: HParams


class Coordinator:
    """``decide(report) -> reply`` of the hub on rank 0: a scoreboard, donor choices, and every
    shared record (members.csv, lineage.jsonl, generations.csv, population TensorBoard).

    Reports: ``ready`` (score after an interval; reply ``{"donor", "stop"}``), ``done`` (the
    interval's row and, after a copy, its lineage line), ``stop`` (a stop signal on some rank).
    Every reply carries ``stop`` once any rank reported one."""

    def __init__(self, r: Run, board: dict[int, Entry], rounds: dict[int, dict[int, dict[str, Any]]],
                 next_round: int) -> None:
        self.r = r
        self.board = board
        self.rounds = rounds
        self.next_round = next_round
        self.stopping = False
        self.exploits = 0
        self.done_s: dict[int, float] = {}
        self.intervals: dict[int, int] = {i: e.interval + 1 for i, e in board.items()}

    def __call__(self, report: dict[str, Any]) -> dict[str, Any]:
        kind = report.get("kind")
        if kind == "ready":
            return {"donor": self._ready(report), "stop": self.stopping}
        if kind == "done":
            self._done(report)
        elif kind == "stop":
            self.stopping = True
        else:
            raise ValueError(f"unknown report kind {kind!r}")
        return {"stop": self.stopping}

    def _ready(self, rep: Mapping[str, Any]) -> int | None:
        cfg = self.r.cfg
        m, k = int(rep["member"]), int(rep["interval"])
        score, test = float(rep["score"]), rep.get("test_score")
        sel = (math.nan if test is None else float(test)) if cfg.select_on == "test" else score
        self.board[m] = Entry(score, test, sel, int(rep["env_steps"]), k, dict(rep["hparams"]))
        if self.stopping or not cfg.exchange or k >= cfg.generations - 1:
            return None
        return choose_donor(cfg.strategy, m, {i: e.selection for i, e in self.board.items()},
                            {i: e.env_steps for i, e in self.board.items()}, self.r.n, cfg.quantile,
                            selection_rng(cfg.seed, k, m))

    def _done(self, rep: Mapping[str, Any]) -> None:
        w = self.r.writers
        row = dict(rep["row"])
        m, k = int(row["member"]), int(row["generation"])
        row["total_env_steps"] = sum(e.env_steps for e in self.board.values())
        w["members"].write([row])
        if rep.get("lineage") is not None:
            w["lineage"].write([rep["lineage"]])
            self.exploits += 1
        self.intervals[m] = k + 1
        if k + 1 >= self.r.cfg.generations:
            self.done_s[m] = time.perf_counter() - self.r.t_run0
        self.rounds.setdefault(k, {})[m] = row
        self._complete_rounds()

    def _complete_rounds(self) -> None:
        r = self.r
        while len(self.rounds.get(self.next_round, {})) == r.n:
            g = self.next_round
            rows = [self.rounds[g][i] for i in range(r.n)]
            pop = _population(rows, r.cfg.select_on)
            total = sum(int(x["env_steps"]) for x in rows)
            gen_row = _generation_row(r, g, pop, rows, total)
            gen_row["n_exploits"] = sum(1 for x in rows if int(x["copied_from"]) >= 0)
            r.writers["generations"].write([gen_row])
            r.pop_tb.scalars({
                "population/best_score": gen_row["best_score"], "population/mean_score": gen_row["mean_score"],
                "population/worst_score": gen_row["worst_score"],
                "population/best_test_score": gen_row["best_test_score"],
                "population/n_exploits": gen_row["n_exploits"], "population/total_env_steps": total,
            }, step=int(rows[0]["env_steps"]))
            if r.cfg.verbose:
                _print_round(r, gen_row)
            del self.rounds[g]
            self.next_round = g + 1

    def population(self) -> Population:
        """Every member's latest score and the hyperparameters it trained its last interval with."""
        n = self.r.n
        e = [self.board.get(i) for i in range(n)]
        return Population([x.score if x else math.nan for x in e], [x.test_score if x else None for x in e],
                          [x.selection if x else math.nan for x in e], [dict(x.hparams) if x else {} for x in e])


def _population(rows: Sequence[Mapping[str, Any]], select_on: str) -> Population:
    scores = [float(x["score"]) for x in rows]
    tests = [None if x.get("test_score") is None else float(x["test_score"]) for x in rows]
    sel = [(math.nan if t is None else t) for t in tests] if select_on == "test" else list(scores)
    return Population(scores, tests, sel, [])


def _print_round(r: Run, g: Mapping[str, Any]) -> None:
    def f(v: Any) -> str:
        return "nan" if v is None else f"{v:.2f}"

    print(f"round {g['generation'] + 1:>3}/{r.cfg.generations} | best {f(g['best_score'])} "
          f"mean {f(g['mean_score'])} worst {f(g['worst_score'])} | steps/member {g['env_steps']} | "
          f"wall {g['wall_s']:.1f}s | exploits {g['n_exploits']}", flush=True)


# -- one member's interval (on its own rank) ----------------------------------------------------
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
    t0 = time.perf_counter()
    m.reseed(k)
    hp_used = dict(m.hparams)
    stats = m.train(cfg.steps_per_generation, should_stop=r.stop)
    _inject_fault(m, m.index, k)
    if m.index in a.slow:
        time.sleep(a.slow[m.index])
    if stats.stopped or r.stop.requested:
        return False
    o = Outcome(st.slot, stats, hp_used)
    evaluate_phase(r, k, [o])
    meta: dict[str, Any] = {"member": m.index, "interval": k, "env_steps": m.num_timesteps, "score": o.score,
            "test_score": o.test_score, "hparams": dict(m.hparams)}
    if a.check_copies:  # test hook: record what exactly was published
        packed = m.pack()
        meta["sha256"] = _sha(packed)
        hub.publish(m.index, meta, lambda buf: np.copyto(buf, packed))
    else:
        hub.publish(m.index, meta, m.pack)
    t_sel = time.perf_counter()
    reply = hub.report({"kind": "ready", "member": m.index, "interval": k, "score": o.score,
                        "test_score": o.test_score, "env_steps": m.num_timesteps, "hparams": hp_used})
    t_ex = time.perf_counter()
    lineage: dict[str, Any] | None = None
    donor = reply.get("donor")
    if donor is not None:
        got, snap = hub.fetch(int(donor), out=a.buf)
        before = dict(m.hparams)
        m.unpack(snap)
        new, changes = explore(got["hparams"], r.space, seeds.explore_rng(cfg.seed, k, m.index))
        m.apply_hparams(new)
        lineage = {"generation": k, "receiver": m.index, "donor": int(donor), "receiver_score": o.score,
                   "donor_score": got["score"], "donor_interval": got["interval"],
                   "donor_env_steps": got["env_steps"], "receiver_env_steps": m.num_timesteps,
                   "hparams_before": before, "donor_hparams": got["hparams"], "hparams_after": new,
                   "changes": changes}
        if a.check_copies:
            lineage["snapshot_sha256"] = got.get("sha256")
            lineage["received_sha256"] = _sha(snap)
            lineage["unpacked_sha256"] = _sha(m.pack())
    t_end = time.perf_counter()
    row = _member_row(r, k, o, -1 if donor is None else int(donor),
                      {"select": t_ex - t_sel, "exchange": t_end - t_ex, "generation": t_end - t0})
    _log_member_tb(st.slot.tb, m, stats, row, hp_used)
    done = hub.report({"kind": "done", "row": row, "lineage": lineage})
    st.next = k + 1
    if cfg.checkpoint_every and (st.next % cfg.checkpoint_every == 0 or st.next == cfg.generations):
        write_member_checkpoint(r, m, st.next, {"score": o.score, "test_score": o.test_score,
                                                "env_steps": m.num_timesteps, "interval": k, "hparams": hp_used})
        st.checkpointed = st.next
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


# -- per-member checkpoints ---------------------------------------------------------------------
def member_dir(run_dir: Path, member: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"member_{member:03d}"


def write_member_checkpoint(r: Run, member: Member, completed: int, entry: Mapping[str, Any]) -> Path:
    """The member's files (atomically), then its manifest; keeps the ``KEEP`` newest complete ones."""
    root = member_dir(r.cfg.run_dir, member.index)
    directory = root / f"int_{completed:06d}"
    ckpt.write_member(directory, member)
    files = {}
    for kind, path in ckpt.member_files(directory, member.index).items():
        if path.exists():
            files[f"{member.index}:{kind}"] = {"name": path.name, "bytes": path.stat().st_size}
        elif kind in ckpt.REQUIRED:
            raise CheckpointError(f"checkpoint {directory} lacks {path.name} before its manifest")
    write_json(directory / ckpt.MANIFEST, {
        "format": ckpt.FORMAT_VERSION, "generation": completed, "world_size": r.comm.Get_size(),
        "num_agents": r.n, "member": member.index, "meta": dict(r.expected), "files": files,
        "async": {**dict(entry), "score": _nan_none(entry["score"]), "test_score": _nan_none(entry["test_score"]),
                  "wall_s": time.perf_counter() - r.t_run0},
    })
    complete = sorted(d for d in root.iterdir() if d.is_dir() and (d / ckpt.MANIFEST).exists())
    for d in sorted(d for d in root.iterdir() if d.is_dir()):
        if d not in complete[-KEEP:] and d.name < complete[-1].name:
            shutil.rmtree(d, ignore_errors=True)
    return directory


def latest_member_checkpoint(run_dir: Path, member: int) -> Path | None:
    root = member_dir(run_dir, member)
    if not root.exists():
        return None
    for d in sorted((d for d in root.iterdir() if d.is_dir() and d.name.startswith("int_")), reverse=True):
        if (d / ckpt.MANIFEST).exists():
            return d
    return None


@dataclass
class ResumePlan:
    dirs: dict[int, str]
    """member -> its newest complete checkpoint"""
    starts: list[int]
    """member -> its first interval to run"""
    entries: dict[int, dict[str, Any]]
    wall_s: float


def _prepare_resume(cfg: PBTConfig, expected: Mapping[str, Any], settings: Mapping[str, Any]) -> ResumePlan:
    """(rank 0) Find every member's newest complete checkpoint and check it against this run."""
    run_dir = cfg.run_dir
    if not run_dir.exists():
        raise ConfigError(f"--resume: run directory {run_dir} does not exist")
    assert cfg.num_agents is not None
    dirs, entries, starts = {}, {}, [0] * cfg.num_agents
    for i in range(cfg.num_agents):
        d = latest_member_checkpoint(run_dir, i)
        if d is None:
            continue
        manifest = ckpt.read_manifest(d)
        ckpt.check_compatible(manifest, expected)
        dirs[i], entries[i], starts[i] = str(d), dict(manifest.get("async") or {}), int(manifest["generation"])
    if not dirs:
        raise CheckpointError(f"--resume: no complete checkpoint in {run_dir / 'checkpoints'} "
                              f"(an --async run keeps one per member in checkpoints/member_XXX/)")
    _check_resume_settings(run_dir / "config.json", settings, min(starts))
    wall = max(float(e.get("wall_s", 0.0)) for e in entries.values())
    return ResumePlan(dirs, starts, entries, wall)


def _rewrite(path: Path, keep: Any) -> int:
    """Keep the lines of a CSV / JSONL record for which ``keep(record)`` is true (atomically);
    torn or unreadable lines are dropped. Returns how many were unreadable."""
    if not path.exists():
        return 0
    text = path.read_text()
    lines = text.split("\n")
    bad = int(lines[-1] != "")
    lines = lines[:-1]
    if path.suffix == ".csv":
        reader = csv.reader(lines)
        fields = next(reader, None) or []
        kept = []
        for values in reader:
            try:
                if len(values) != len(fields):
                    raise ValueError
                row = dict(zip(fields, values, strict=True))
                if keep(row):
                    kept.append(row)
            except (ValueError, KeyError):
                bad += 1
        out = io.StringIO()
        if fields:
            w = csv.DictWriter(out, fieldnames=fields)
            w.writeheader()
            w.writerows(kept)
        atomic_write_text(path, out.getvalue())
    else:
        kept_lines = []
        for line in lines:
            if not line.strip():
                continue
            try:
                if keep(json.loads(line)):
                    kept_lines.append(line)
            except (ValueError, KeyError, TypeError):
                bad += 1
        atomic_write_text(path, "".join(line + "\n" for line in kept_lines))
    return bad


def truncate_async_records(run_dir: Path, starts: Sequence[int]) -> tuple[list[str], list[dict[str, str]], int]:
    """(rank 0, resume) Drop each member's records of the intervals it will redo, and the rounds
    not every member has kept. Returns (notes, kept members.csv rows of unfinished rounds, the
    first unfinished round)."""
    first = min(starts)
    notes = []
    for name, keep in (
        ("members.csv", lambda x: int(x["generation"]) < starts[int(x["member"])]),
        ("lineage.jsonl", lambda x: int(x["generation"]) < starts[int(x["receiver"])]),
        ("generations.csv", lambda x: int(x["generation"]) < first),
    ):
        bad = _rewrite(run_dir / name, keep)
        if bad:
            notes.append(f"dropped {bad} incomplete line(s) of {name} (a kill mid-write)")
    rows = []
    if (run_dir / "members.csv").exists():
        with open(run_dir / "members.csv", newline="") as fh:
            rows = [x for x in csv.DictReader(fh) if int(x["generation"]) >= first]
    return notes, rows, first


def _row_from_csv(x: Mapping[str, str]) -> dict[str, Any]:
    def num(v: str | None) -> float | None:
        return float(v) if v else None

    score = num(x["score"])
    return {**x, "generation": int(x["generation"]), "member": int(x["member"]),
            "score": math.nan if score is None else score, "test_score": num(x.get("test_score")),
            "env_steps": int(x["env_steps"]), "copied_from": int(x["copied_from"]),
            "time_exchange_s": num(x["time_exchange_s"]) or 0.0,
            "time_generation_s": num(x["time_generation_s"]) or 0.0}


# -- the driver ---------------------------------------------------------------------------------
def run_async(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Run (or resume) an asynchronous PBT job on ``comm``. Returns the process exit code."""
    if schedule:
        raise ConfigError("--async runs take no hyperparameter schedule")
    r, plan, fresh_here = _start_async(cfg, comm)
    rank = r.rank
    fresh = _gather_ids(r, fresh_here)
    starts = plan.starts if plan else [0] * r.n
    coord = None
    if rank == 0:
        board: dict[int, Entry] = {}
        rounds: dict[int, dict[int, dict[str, Any]]] = {}
        next_round = 0
        if plan is not None:
            board = {i: _entry(e, cfg.select_on) for i, e in plan.entries.items()}
            notes, rows, next_round = truncate_async_records(cfg.run_dir, starts)
            for x in rows:
                rounds.setdefault(int(x["generation"]), {})[int(x["member"])] = _row_from_csv(x)
            _note_resume(cfg, min(starts), fresh, notes)
            print(f"evo: note: asynchronous resume: every member continues from its own newest checkpoint "
                  f"(next intervals {starts}); up to one interval per member (the one in progress) is redone",
                  file=sys.stderr, flush=True)
        _open_writers_async(r, plan)
        coord = Coordinator(r, board, rounds, next_round)
        if plan is not None:  # copies before the resume (the kept lineage lines)
            coord.exploits = len((cfg.run_dir / "lineage.jsonl").read_text().splitlines()) \
                if (cfg.run_dir / "lineage.jsonl").exists() else 0
    states = [MemberState(s, starts[s.index], starts[s.index] if plan and s.index in plan.dirs else None)
              for s in r.slots]
    flat = r.slots[0].member.flat_size
    t_loop = time.perf_counter()
    stopped = False
    with comm_mod.AsyncHub(comm, flat, [s.index for s in r.slots], decide=coord) as hub:
        a = AsyncRun(r, hub, states, np.empty(flat, dtype=np.float32), _slow_hook(),
                     bool(os.environ.get("EVO_CHECK_COPIES")))
        if plan is not None:  # resumed members serve their checkpointed state until their next publish
            for st in states:
                if st.slot.index in plan.dirs:
                    e, m = plan.entries[st.slot.index], st.slot.member
                    hub.publish(m.index, {"member": m.index, "interval": int(e.get("interval", st.next - 1)),
                                          "env_steps": m.num_timesteps, "resumed": True,
                                          "score": math.nan if e.get("score") is None else e["score"],
                                          "test_score": e.get("test_score"), "hparams": dict(m.hparams)}, m.pack)
        comm.Barrier()  # every resumed snapshot is published before anybody can be told to fetch it
        try:
            stopped = _loop(a)
        finally:
            for s in r.slots:
                s.tb.flush()
    wall_loop = time.perf_counter() - t_loop
    stats = comm.gather({**hub.stats(), "wall_s": wall_loop}, root=0)
    stopped = comm_mod.agree(comm, stopped)
    checkpointed = comm.gather([(st.slot.index, st.checkpointed) for st in states], root=0)
    r.pop_tb.flush()
    if not stopped:
        assert coord is not None or rank != 0
        _finish(r, coord.population() if coord is not None else None, time.perf_counter() - r.t_run0)
        if rank == 0:
            assert coord is not None
            _add_async_summary(r, coord, stats)
    elif rank == 0:
        last = dict(x for part in checkpointed for x in part)
        stands = ", ".join(f"{i}: {'none' if last[i] is None else last[i]}" for i in sorted(last))
        print(f"evo: stop signal received; every member stopped within one env step and its interval in "
              f"progress is dropped. Intervals completed in each member's newest checkpoint ({stands}); resume "
              f"with --resume. Exit code {EXIT_PREEMPTED}.", file=sys.stderr, flush=True)
    _close(r)
    return EXIT_PREEMPTED if stopped else 0


def _entry(e: Mapping[str, Any], select_on: str) -> Entry:
    score = math.nan if e.get("score") is None else float(e["score"])
    test = None if e.get("test_score") is None else float(e["test_score"])
    sel = (math.nan if test is None else test) if select_on == "test" else score
    return Entry(score, test, sel, int(e.get("env_steps", 0)), int(e.get("interval", -1)), dict(e.get("hparams", {})))


def _gather_ids(r: Run, mine: Sequence[int]) -> list[int]:
    """(collective) Rank 0 gets the union of every rank's ``mine``."""
    parts = r.comm.gather(list(mine), root=0)
    return sorted(i for part in parts for i in part) if r.rank == 0 else []


def _add_async_summary(r: Run, coord: Coordinator, stats: Sequence[Mapping[str, float]]) -> None:
    """summary.json: the async run's intervals, copies, per-member finish times and waiting."""
    path = r.cfg.run_dir / "summary.json"
    data = json.loads(path.read_text())
    waits = {k: sum(float(s[k]) for s in stats) for k in ("report_s", "fetch_s", "finish_wait_s")}
    wall = sum(float(s["wall_s"]) for s in stats)
    data["async"] = {
        "intervals": [coord.intervals.get(i, 0) for i in range(r.n)],
        "exploits": coord.exploits,
        "member_done_s": [coord.done_s.get(i) for i in range(r.n)],
        "wait_s": waits, "rank_wall_s": [float(s["wall_s"]) for s in stats],
        "idle_share": sum(waits.values()) / wall if wall > 0 else None,
        "idle_share_note": "time ranks spent in report, fetch and finish waits / their time in the async loop",
        "fetches": int(sum(float(s["fetches"]) for s in stats)),
        "bytes_sent": int(sum(float(s["bytes_sent"]) for s in stats)),
    }
    write_json(path, data)


def _open_writers_async(r: Run, plan: ResumePlan | None) -> None:
    cfg, run_dir = r.cfg, r.cfg.run_dir
    hp_cols = [f"hp_{k}" for k in r.slots[0].member.hparams]
    r.writers = {
        "members": TableWriter(run_dir / "members.csv", MEMBER_COLUMNS_HEAD + hp_cols + MEMBER_COLUMNS_TAIL),
        "generations": TableWriter(run_dir / "generations.csv", GENERATION_COLUMNS),
        "lineage": JsonlWriter(run_dir / "lineage.jsonl"),
    }
    if cfg.verbose:
        world = r.comm.Get_size()
        per = f" ({r.n / world:.3g} per rank on {world} ranks)" if r.n > world else ""
        resumed = f", resumed (next intervals {plan.starts})" if plan is not None else ""
        print(f"evo PBT/{cfg.strategy} --async: {r.n} member(s){per} on {cfg.env_id}, {cfg.generations} intervals "
              f"x {cfg.steps_per_generation} steps per member, no generation barrier -> {run_dir}{resumed}",
              flush=True)


def _start_async(cfg: PBTConfig, comm: Any) -> tuple[Run, ResumePlan | None, list[int]]:
    """Validate against the world, prepare or check the run dir, build (or load) this rank's members."""
    rank, world = comm.Get_rank(), comm.Get_size()
    space, threads, expected, settings = resolve_run(cfg, comm)
    assert cfg.num_agents is not None
    expected["async"] = True

    def prepare() -> ResumePlan | None:
        if cfg.resume:
            return _prepare_resume(cfg, expected, settings)
        _prepare_run_dir(cfg, expected, settings)
        return None

    plan = comm_mod.root_decides(comm, prepare)
    ids = comm_mod.local_members(cfg.num_agents, rank, world)
    local = comm_mod.local_rank(comm)  # collective: before any rank can fail alone
    members = comm_mod.on_every_rank(
        comm, lambda: [Member(cfg, space.sample(seeds.init_rng(cfg.seed, i)), index=i, local_rank=local)
                       for i in ids])
    fresh: list[int] = []
    if plan is not None:
        dirs = plan.dirs

        def load() -> list[int]:
            return [m.index for m in members
                    if m.index in dirs and not ckpt.load_member(Path(dirs[m.index]), m)["env_restored"]]

        fresh = comm_mod.on_every_rank(comm, load)
    elif rank == 0:
        save_new_config(cfg, world, threads, settings, members[0], **{"async": True})
    comm.Barrier()
    r = Run(cfg, comm, space, [], STOP.install(), None, None, expected)
    resumed = plan.dirs if plan is not None else {}
    r.slots = [Slot(m, TensorBoard(cfg.run_dir / "tb" / f"member_{m.index:03d}" if cfg.tb_writer else None,
                                   purge_step=m.num_timesteps if m.index in resumed else None)) for m in members]
    if rank == 0 and cfg.tb_writer and r.n > 1:
        purge = (min(plan.starts) + 1) * cfg.steps_per_generation if plan is not None else None
        r.pop_tb = TensorBoard(cfg.run_dir / "tb" / "population", purge_step=purge)
    r.t_run0 = time.perf_counter() - (plan.wall_s if plan is not None else 0.0)
    return r, plan, fresh


__all__ = ["Coordinator", "choose_donor", "run_async", "selection_rng"]
