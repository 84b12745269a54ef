"""The asynchronous schedule's ``decide``: rank 0's coordinator, answering members as they publish.

Every member's score is tagged with its evaluation set (interval ``k``'s episodes are set ``k``,
the same episodes for every member, as in the synchronous schedule). **Scores are compared only
within one set**: when member ``m`` reports, the coordinator takes the newest set ``K`` that every
member has been scored on (the population clock: the slowest member's latest interval) and runs
the selection rule on the whole population's set-``K`` scores — the plan the synchronous
schedule would make for generation ``K`` (rng ``(seed, SELECT, K)``). ``m`` acts on that plan
once (at its first report after set ``K`` is complete): if it is a receiver, it copies its donor's
latest published snapshot, provided the donor has trained at least as many env steps as ``m``
(DexPBT's experience rule: a fast member is never set back to a less trained policy).

A member whose latest score is not finite (it failed) does not wait for a new complete set: it
copies the best member of the newest complete set at once, whatever that member's env steps
(its NaN is not compared with anything).

Explore runs here too (``explore`` reports, after the receiver fetched the donor's snapshot, from
the hyperparameters published with it), so PB2's history lives in one place. Rank 0 writes every
shared record as reports arrive: members.csv, lineage.jsonl, generations.csv (a round ``g`` when
every member finished interval ``g``), the population's TensorBoard.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import evo.loop.checkpoints as ckpt
import evo.loop.rows as rec
from evo.core.cost import cost_limit
from evo.core.decide import explore_from, observation
from evo.core.rules import get_rule
from evo.core.seeds import selection_rng
from evo.loop.context import Population, Run


@dataclass
class Entry:
    """One member's report of one interval."""

    score: float
    test_score: float | None
    selection: float
    env_steps: int
    interval: int
    eval_set: int
    hparams: dict[str, Any]


@dataclass
class Board:
    """Every member's scores by evaluation set, and its latest report."""

    n: int
    by_set: dict[int, dict[int, Entry]] = field(default_factory=dict)
    latest: dict[int, Entry] = field(default_factory=dict)
    acted: dict[int, int] = field(default_factory=dict)
    """member -> the newest complete set it has acted on"""

    def add(self, member: int, e: Entry) -> None:
        self.by_set.setdefault(e.eval_set, {})[member] = e
        self.latest[member] = e

    def complete_set(self) -> int | None:
        """The newest evaluation set every member has a score on."""
        if len(self.latest) < self.n:
            return None
        k = min(e.eval_set for e in self.latest.values())
        while k >= 0 and len(self.by_set.get(k, {})) < self.n:
            k -= 1
        return k if k >= 0 else None

    def forget_before(self, k: int) -> None:
        for s in [s for s in self.by_set if s < k]:
            del self.by_set[s]


class Coordinator:
    """``decide(report) -> reply`` of the hub on rank 0 (it runs under the hub's lock).

    Reports: ``ready`` (a member's score after an interval; reply ``{"donor", "eval_set", "stop"}``),
    ``explore`` (the receiver fetched its donor: reply the new hyperparameters), ``done`` (the
    interval's row and, after a copy, its lineage line; after a checkpoint, its generation),
    ``stop`` (a stop signal on some rank). Every reply carries ``stop`` once any rank sent one.
    """

    def __init__(self, r: Run, board: Board, rounds: dict[int, dict[int, dict[str, Any]]], next_round: int) -> None:
        self.r = r
        self.board = board
        self.rounds = rounds
        self.next_round = next_round
        self.stopping = False
        self.exploits = 0
        self.done_s: dict[int, float] = {}
        self.intervals: dict[int, int] = {i: e.interval + 1 for i, e in board.latest.items()}
        self._plans: dict[int, dict[int, int]] = {}
        self._ckpt_rows: dict[int, dict[int, dict[str, Any]]] = {}

    def __call__(self, report: dict[str, Any]) -> dict[str, Any]:
        kind = report.get("kind")
        if kind == "ready":
            return {**self._ready(report), "stop": self.stopping}
        if kind == "explore":
            return {**self._explore(report), "stop": self.stopping}
        if kind == "done":
            self._done(report)
        elif kind == "stop":
            self.stopping = True
        else:
            raise ValueError(f"unknown report kind {kind!r}")
        return {"stop": self.stopping}

    # -- decide ---------------------------------------------------------------------------------
    def _ready(self, rep: Mapping[str, Any]) -> dict[str, Any]:
        cfg, r = self.r.cfg, self.r
        m, k = int(rep["member"]), int(rep["interval"])
        score, test = float(rep["score"]), rep.get("test_score")
        sel = (math.nan if test is None else float(test)) if cfg.select_on == "test" else score
        start = {m: r.pb2_start[m]} if m in r.pb2_start else {}
        if cfg.explore == "pb2":
            obs = observation(k, m, rep["hparams"], sel, start)
            if obs is not None:
                r.pb2_history.append(obs)
        r.pb2_start[m] = sel
        self.board.add(m, Entry(score, test, sel, int(rep["env_steps"]), k, int(rep["eval_set"]), dict(rep["hparams"])))
        none: dict[str, Any] = {"donor": None, "eval_set": None}
        if self.stopping or not r.exchanging or k + 1 >= cfg.generations:
            return none
        donor, k_set = self.choose(m, math.isfinite(sel))
        if donor is None or k_set is None:
            return none
        compared = self.board.by_set[k_set]
        # a failed member's own (non-finite) latest score is why it copies; otherwise its set-K score
        mine = compared[m] if math.isfinite(sel) else self.board.latest[m]
        return {"donor": donor, "eval_set": k_set, "receiver_eval_set": mine.eval_set,
                "receiver_score": mine.score, "donor_score": compared[donor].score}

    def choose(self, m: int, finite: bool) -> tuple[int | None, int | None]:
        """Member ``m``'s donor (and the set the comparison was made on), or ``(None, None)``."""
        b = self.board
        k = b.complete_set()
        if k is None:
            return None, None
        plan = self._plan(k)
        mine = b.latest[m]
        if finite and b.acted.get(m, -1) >= k:
            return None, None
        b.acted[m] = k
        donor = plan.get(m)
        if donor is None and not finite:  # failed: copy the best of the newest complete set
            scores = {i: e.selection for i, e in b.by_set[k].items() if i != m and math.isfinite(e.selection)}
            donor = max(scores, key=lambda i: (scores[i], -i)) if scores else None
        if donor is None or (finite and b.latest[donor].env_steps < mine.env_steps):
            return None, None  # the experience rule (a failed member takes any finite donor)
        return donor, k

    def _plan(self, k: int) -> dict[int, int]:
        """Set ``k``'s exploit plan (receiver -> donor), made once."""
        if k not in self._plans:
            cfg = self.r.cfg
            entries = self.board.by_set[k]
            scores = [entries[i].selection for i in range(self.board.n)]
            transfers = get_rule(self.r.rule).plan(scores, cfg.quantile, selection_rng(cfg.seed, k))
            self._plans = {k: {t.receiver: t.donor for t in transfers}}  # older sets are never used again
            self.board.forget_before(k)
        return self._plans[k]

    def _explore(self, rep: Mapping[str, Any]) -> dict[str, Any]:
        cfg, r = self.r.cfg, self.r
        m, k = int(rep["member"]), int(rep["interval"])
        latest = self.board.latest  # every member's current hyperparameters
        population = [latest[i].hparams if i in latest else {} for i in range(self.board.n)]
        new, changes = explore_from(rep["donor_hparams"], r.space, cfg.seed, k, m, cfg.explore, r.pb2_history,
                                    limit=cost_limit(cfg), population=population)
        r.pb2_start[m] = float(rep["donor_selection"])
        return {"hparams": new, "changes": changes}

    # -- records -----------------------------------------------------------------------------------
    def _done(self, rep: Mapping[str, Any]) -> None:
        r = self.r
        row = dict(rep["row"])
        m, k = int(row["member"]), int(row["generation"])
        row["total_env_steps"] = sum(e.env_steps for e in self.board.latest.values())
        r.writers["members"].write([row])
        if rep.get("lineage") is not None:
            r.writers["lineage"].write([rep["lineage"]])
            self.exploits += 1
        self.intervals[m] = k + 1
        if k + 1 >= r.cfg.generations:
            self.done_s[m] = time.perf_counter() - r.t_run0
        if rep.get("checkpointed"):
            self._checkpointed(int(rep["checkpointed"]), m, row)
        self.rounds.setdefault(k, {})[m] = row
        while len(self.rounds.get(self.next_round, {})) == r.n:
            g = self.next_round
            rows = [self.rounds[g][i] for i in range(r.n)]
            pop = rec.population_of(rows, r.cfg.select_on)
            exploits = sum(1 for x in rows if int(x["copied_from"]) >= 0)
            r.gen_seconds.append(max(float(x["time_generation_s"] or 0.0) for x in rows))
            rec.write_generation(r, rec.generation_row(r, g, pop, rows, exploits))
            del self.rounds[g]
            self.next_round = g + 1

    def _checkpointed(self, g: int, m: int, row: Mapping[str, Any]) -> None:
        """Member ``m`` checkpointed after ``g`` intervals: once every member has, the folder gets its
        generation manifest (as in sync mode); then older folders are pruned."""
        rows = self._ckpt_rows.setdefault(g, {})
        rows[m] = dict(row)
        r = self.r
        if len(rows) == r.n:
            pop = rec.population_of([rows[i] for i in range(r.n)], r.cfg.select_on)
            ckpt.write_manifest(ckpt.gen_dir(r.cfg.run_dir, g), g, r.comm.Get_size(), r.expected,
                                {"generation": g, "scores": [rec.nan_none(v) for v in pop.scores],
                                 "test_scores": [rec.nan_none(v) for v in pop.tests],
                                 "selection_scores": [rec.nan_none(v) for v in pop.selection],
                                 "wall_s": time.perf_counter() - r.t_run0}, n_members=r.n)
            del self._ckpt_rows[g]
        ckpt.prune(r.cfg.run_dir, r.n)

    def population(self) -> Population:
        """Every member's latest score and the hyperparameters it trained its last interval with."""
        e = [self.board.latest.get(i) for i in range(self.r.n)]
        return Population([x.score if x else math.nan for x in e], [x.test_score if x else None for x in e],
                          [x.selection if x else math.nan for x in e], [dict(x.hparams) if x else {} for x in e])

