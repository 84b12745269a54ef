"""The synchronous schedule: ``decide`` runs once every member of a generation has published.

One generation, on every rank at once, over the members each rank hosts (member m on rank
m % world)::

    train + evaluate (each local member: evo.loop.step) -> publish: gather (score, eval set,
      hparams) to rank 0 -> decide (rank 0: the rule + explore, evo.core.decide) -> each rank gets
      only its part of the plan -> copy (the transport; local copies within a rank) -> apply
      -> record (rows to rank 0; TensorBoard per member) -> checkpoint

The last generation ends with its evaluation (and the final evaluation on unseen episodes): no
exploit or explore after it. The baseline runner uses the same schedule with strategy
``"baseline"``: no selection, no exchange, so its members are independent seeds.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import evo.loop.checkpoints as ckpt
import evo.loop.rows as rec
import evo.loop.step as step
from evo import comm as comm_mod
from evo.config import PBTConfig
from evo.core.cost import cost_limit
from evo.core.decide import Decision, decide, next_start_scores, pb2_observations
from evo.core.selection import Transfer
from evo.errors import CheckpointError
from evo.loop.context import Outcome, Population, Run
from evo.loop.finish import EXIT_PREEMPTED, finish, print_stopped
from evo.loop.start import start
from evo.loop.watchdog import start as start_watchdog


def publish_and_decide(r: Run, gen: int, outcomes: list[Outcome]) -> tuple[Population | None, Any]:
    """Scores and hparams go to rank 0 only; rank 0 decides (rule + explore) and sends each rank
    only its part of the plan. Returns (rank 0: the population view, else None; this rank's
    ``(RankPlan, decisions for its receivers)``)."""
    cfg = r.cfg
    statuses = r.comm.gather([(o.slot.index, o.score, o.test_score, o.hp_used) for o in outcomes], root=0)
    pop, payloads = None, None
    if r.rank == 0:
        flat = sorted((s for part in statuses for s in part), key=lambda s: s[0])
        scores, tests = [s[1] for s in flat], [s[2] for s in flat]
        sel = [(t if t is not None else float("nan")) for t in tests] if cfg.select_on == "test" else list(scores)
        pop = Population(scores, tests, sel, [s[3] for s in flat])
        if cfg.explore == "pb2":
            r.pb2_history += pb2_observations(gen, sel, pop.hparams, r.pb2_start)
        if r.exchanging and not step.is_last(r, gen):
            pop.decisions = decide(r.rule, gen, sel, pop.hparams, r.space, cfg.quantile, cfg.seed,
                                   cfg.explore, r.pb2_history, limit=cost_limit(cfg))
        r.pb2_start = next_start_scores(sel, pop.decisions)
        if r.transport is not None:
            payloads = rank_payloads(r.transport, pop.decisions, r.comm.Get_size())
    return pop, (r.comm.scatter(payloads, root=0) if r.transport is not None else None)


def rank_payloads(transport: Any, decisions: Sequence[Decision], world: int) -> list[tuple[Any, list[Decision]]]:
    """(rank 0) What each rank needs of a plan: its transport part and its receivers' decisions."""
    plans = transport.split([Transfer(d.receiver, d.donor) for d in decisions], world)
    return [(plans[k], [d for d in decisions if comm_mod.owner_of(d.receiver, world) == k]) for k in range(world)]


def copy_and_apply(r: Run, mine: Any) -> dict[int, int]:
    """Move weights + optimizer state along this rank's part of the plan; receivers take their
    explored hyperparameters. Returns receiver -> donor."""
    if r.transport is None:  # no early return on an empty share: a collective round needs every rank
        return {}
    plan, decisions = mine
    received = r.transport.move_members(plan, lambda m, buf: r.slot(m).member.pack(buf))
    for d in decisions:
        step.apply_copy(r.slot(d.receiver), received[d.receiver], d.hparams_after)
    return {d.receiver: d.donor for d in decisions}


def record(r: Run, gen: int, outcomes: list[Outcome], pop: Population | None, donors: dict[int, int],
           timing: Mapping[str, float]) -> None:
    """members.csv / generations.csv / lineage on rank 0, TensorBoard per member."""
    rows = []
    for o in outcomes:
        row = rec.member_row(r, o, donors.get(o.slot.index, -1), timing)
        rec.log_member_tb(r, o.slot.tb, o, row)
        rows.append(row)
    gathered = r.comm.gather(rows, root=0)
    if r.rank != 0:
        return
    assert pop is not None
    all_rows = sorted((row for part in gathered for row in part), key=lambda x: int(x["member"]))
    total = sum(int(x["env_steps"]) for x in all_rows)
    for x in all_rows:
        x["total_env_steps"] = total
    r.writers["members"].write(all_rows)
    r.writers["lineage"].write(lineage_line(d, all_rows) for d in pop.decisions)
    rec.write_generation(r, rec.generation_row(r, gen, pop, all_rows, len(pop.decisions)))


def lineage_line(d: Decision, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One exploit, replayable: the decision plus the evaluation sets and env steps compared."""
    by = {int(x["member"]): x for x in rows}
    return {**asdict(d), "receiver_eval_set": by[d.receiver]["eval_set"], "donor_eval_set": by[d.donor]["eval_set"],
            "donor_interval": d.generation, "donor_env_steps": by[d.donor]["env_steps"],
            "receiver_env_steps": by[d.receiver]["env_steps"]}


def checkpoint(r: Run, gen: int, outcomes: list[Outcome], pop: Population | None) -> float:
    """Every member's checkpoint after ``gen + 1`` generations, then (rank 0) the generation's
    manifest (see :mod:`evo.loop.checkpoints`)."""
    cfg = r.cfg
    directory = ckpt.gen_dir(cfg.run_dir, gen + 1)
    wall = time.perf_counter() - r.t_run0
    written = [ckpt.write_member(directory, o.slot.member, gen + 1, r.expected, entry(o, wall)) for o in outcomes]
    sizes = r.comm.gather(written, root=0)
    if r.rank == 0:
        assert sizes is not None and pop is not None
        flat = [x for part in sizes for x in part]
        if os.environ.get("EVO_FAULT") == f"manifest:0:{gen}":  # test hook: rank 0 alone fails
            raise CheckpointError(f"injected fault: cannot write the manifest of {directory}")
        ckpt.write_manifest(directory, gen + 1, r.comm.Get_size(), r.expected,
                            {"generation": gen + 1, "scores": [rec.nan_none(v) for v in pop.scores],
                             "test_scores": [rec.nan_none(v) for v in pop.tests],
                             "selection_scores": [rec.nan_none(v) for v in pop.selection], "wall_s": wall},
                            n_members=r.n)
        ckpt.prune(cfg.run_dir, r.n)
        r.writers["checkpoints"].write([{
            "generation": gen, "completed_generations": gen + 1, "bytes_total": sum(b for b, _ in flat),
            "bytes_per_member": flat[0][0], "seconds_max": max(t for _, t in flat)}])
    seconds = sum(t for _, t in written)
    r.timeline.add("checkpoint", seconds)
    for s in r.slots:
        s.tb.scalars({"time/checkpoint_s": seconds / max(1, len(r.slots))}, step=s.member.num_timesteps)
    return seconds


def entry(o: Outcome, wall_s: float) -> dict[str, Any]:
    """What a member's checkpoint manifest says of its latest generation."""
    return {"score": rec.nan_none(o.score), "test_score": rec.nan_none(o.test_score), "eval_set": o.eval_set,
            "env_steps": o.slot.member.num_timesteps, "interval": o.generation, "hparams": dict(o.hp_used),
            "wall_s": wall_s}


def _save_periodic_models(r: Run, gen: int) -> None:
    save_every = getattr(r.cfg, "save_every", 0)
    if r.baseline and save_every and (gen + 1) % save_every == 0 and gen + 1 < r.cfg.generations:
        for s in r.slots:
            m = s.member
            m.save_model(r.cfg.run_dir / "models" / f"member_{m.index:03d}_steps_{m.num_timesteps}.zip")


def _population_from_checkpoint(directory: Path) -> Population:
    import json
    import math

    population = json.loads((directory / "population.json").read_text())
    scores = [math.nan if v is None else float(v) for v in population["scores"]]
    tests = list(population.get("test_scores") or [None] * len(scores))
    sel = [math.nan if v is None else float(v) for v in population.get("selection_scores", scores)]
    return Population(scores, tests, sel, [])


def run_generation(r: Run, gen: int) -> tuple[list[Outcome], Population | None] | None:
    """(collective) One generation of every local member: train, evaluate (and the final
    evaluation after the last generation), publish, decide, copy, apply, record. ``None`` if a stop
    signal arrived on any rank during training: the generation is dropped."""
    outcomes = [step.train(r, s, gen) for s in r.slots]
    if comm_mod.agree(r.comm, any(o.stats.stopped for o in outcomes) or r.stop.requested):
        return None
    for o in outcomes:
        step.evaluate(r, o)
        if step.is_last(r, gen):
            r.final_eval[o.slot.index] = step.final_evaluate(r, o.slot.member)
    t_sel = time.perf_counter()
    pop, mine = publish_and_decide(r, gen, outcomes)
    t_ex = time.perf_counter()
    donors = copy_and_apply(r, mine)
    t_end = time.perf_counter()
    t0 = min(o.t0 for o in outcomes)
    r.gen_seconds.append(t_end - t0)
    record(r, gen, outcomes, pop, donors, {"select": t_ex - t_sel, "exchange": t_end - t_ex, "generation": t_end - t0})
    return outcomes, pop


def catch_up(r: Run, gen: int, plan: Any) -> None:
    """(collective) A finished run extended with more generations: make the exploit that its last
    generation ``gen`` skipped because the run was ending, from the scores in the checkpoint, so the
    extended run equals one that was planned this long (records amended to match)."""
    from evo.records import read_csv

    payloads, pop = None, None
    if r.rank == 0:
        pop = _population_from_checkpoint(ckpt.gen_dir(r.cfg.run_dir, gen + 1))
        pop.hparams = [dict(plan.entries[i].get("hparams", {})) for i in range(r.n)]
        rows = [{"member": i, "eval_set": plan.entries[i].get("eval_set", gen),
                 "env_steps": plan.entries[i]["env_steps"]} for i in range(r.n)]
        if r.exchanging:
            pop.decisions = decide(r.rule, gen, pop.selection, pop.hparams, r.space, r.cfg.quantile, r.cfg.seed,
                                   r.cfg.explore, r.pb2_history, limit=cost_limit(r.cfg))
        r.pb2_start = next_start_scores(pop.selection, pop.decisions)
        payloads = rank_payloads(r.transport, pop.decisions, r.comm.Get_size()) if r.transport is not None else None
        donors = {d.receiver: d.donor for d in pop.decisions}
        w = r.writers
        w["members"].replace_rows({**x, "copied_from": donors.get(int(x["member"]), x["copied_from"])}
                                  if int(x["generation"]) == gen else x for x in read_csv(w["members"].path))
        w["generations"].replace_rows({**x, "n_exploits": len(pop.decisions)} if int(x["generation"]) == gen else x
                                      for x in read_csv(w["generations"].path))
        r.writers["lineage"].write(lineage_line(d, rows) for d in pop.decisions)
        print(f"evo: note: the run had ended after generation {gen + 1}, without an exploit; made it now "
              f"({len(pop.decisions)} cop{'y' if len(pop.decisions) == 1 else 'ies'})", file=sys.stderr, flush=True)
    mine = r.comm.scatter(payloads, root=0) if r.transport is not None else None
    copy_and_apply(r, mine)


def run_sync(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Run (or resume) a synchronous PBT or baseline job on ``comm``. Returns the exit code."""
    r, plan = start(cfg, comm, schedule)
    start_gen = plan.start if plan is not None else 0
    if r.exchanging:
        r.transport = comm_mod.make_transport(r.transport_name, comm, r.slots[0].member.flat_size)
    if r.rank == 0 and plan is not None and cfg.explore == "pb2":
        from evo.loop.history import pb2_history_from_records

        column = "test_score" if cfg.select_on == "test" else "score"
        r.pb2_history, r.pb2_start = pb2_history_from_records(cfg.run_dir, start_gen, column)
    if plan is not None and plan.extended:
        catch_up(r, start_gen - 1, plan)
    exit_code, gen, last = 0, start_gen, None
    last_checkpoint = start_gen if plan is not None else None
    dog = start_watchdog(cfg.run_dir, comm, cfg.watchdog_s)
    try:
        for gen in range(start_gen, cfg.generations):
            if comm_mod.agree(comm, r.stop.requested):
                exit_code = EXIT_PREEMPTED
                break
            done = run_generation(r, gen)
            if done is None:
                exit_code = EXIT_PREEMPTED  # this generation is dropped; the last checkpoint stands
                break
            outcomes, pop = done
            last = pop
            _save_periodic_models(r, gen)
            if cfg.checkpoint_every and ((gen + 1) % cfg.checkpoint_every == 0 or gen + 1 == cfg.generations):
                checkpoint(r, gen, outcomes, pop)
                last_checkpoint = gen + 1
            dog.tick()
        else:
            gen = cfg.generations
    finally:
        dog.stop()
        for s in r.slots:
            s.tb.flush()
        r.pop_tb.flush()
    r.timeline.mark("loop_end")
    if exit_code == 0:
        if last is None and r.rank == 0 and plan is not None:  # resumed after the final checkpoint
            last = _population_from_checkpoint(ckpt.gen_dir(cfg.run_dir, start_gen))
        finish(r, last, time.perf_counter() - r.t_run0)
    elif r.rank == 0:
        stands = (f"the checkpoint after generation {last_checkpoint} stands" if last_checkpoint
                  else "no checkpoint was written yet, so --resume starts afresh")
        print_stopped(f"stopped within one env step, in generation {gen + 1} of {cfg.generations}, which is "
                      f"dropped ({stands})")
    rec.close(r)
    return exit_code
