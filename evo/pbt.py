"""The generation loop: wires config, member, selection, explore, transport and records.

One generation, on every rank at once, over the members each rank hosts (member m on rank m % world),
as named phases that :mod:`evo.pbt_async` reuses per member::

    train_phase -> evaluate_phase -> select_phase: gather (score, hparams) to rank 0, which decides
      (select + explore, PBT's perturbation or PB2) and scatters each rank only its part of the plan
      -> exchange_phase: move weights + optimizer (local copies within a rank), receivers apply hparams
      -> record_phase: rows to rank 0 (CSV, lineage) ; TensorBoard per member -> checkpoint_phase

The baseline runner uses the same loop with strategy ``"baseline"``: no selection, no exchange,
so its members are independent seeds and their curves are directly comparable.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evo import checkpoint as ckpt
from evo import comm as comm_mod
from evo.cli import everywhere
from evo.config import CommonConfig, PBTConfig
from evo.core import seeds
from evo.core.selection import Transfer, best_member, plan
from evo.core.space import HParams, Space, check_batch_size, explore, parse_space, read_space_file
from evo.errors import ConfigError
from evo.member import Member, TrainStats
from evo.records import JsonlWriter, TableWriter, TensorBoard, dumps_line, truncate_records, write_json
from evo.stop import STOP, StopFlag

if TYPE_CHECKING:  # PB2 needs scikit-learn: imported only when --explore pb2 is used
    from evo.core.pb2 import Observation

EXIT_PREEMPTED = 75
"""Exit code after a stop signal (SIGTERM/SIGUSR1): checkpointed, resume with ``--resume``
(75 is EX_TEMPFAIL: "try again later")."""


# -- decisions (pure) ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """One exploit + explore: ``receiver`` copies ``donor`` and explores from its hparams."""

    generation: int
    receiver: int
    donor: int
    receiver_score: float
    donor_score: float
    hparams_before: HParams
    donor_hparams: HParams
    hparams_after: HParams
    changes: dict[str, Any] = field(default_factory=dict)


def decide(strategy: str, generation: int, scores: Sequence[float], hparams: Sequence[Mapping[str, Any]],
           space: Space, quantile: float, seed: int, method: str = "perturb",
           history: Sequence[Observation] = ()) -> list[Decision]:
    """Select who copies whom, and explore every receiver's new hyperparameters.

    A pure function of its arguments: the selection rng is derived from ``(seed, generation)``
    and each receiver's explore rng from ``(seed, generation, receiver)``. ``method`` ``pb2``
    explores with PB2's GP bandit fitted on ``history`` (receivers in order, each one's choice
    pending for the next), ``perturb`` with PBT's random perturbation.
    """
    transfers = plan(strategy, scores, quantile, seeds.selection_rng(seed, generation))
    out: list[Decision] = []
    for t in transfers:
        rng = seeds.explore_rng(seed, generation, t.receiver)
        if method == "pb2":
            from evo.core.pb2 import pb2_explore

            pending = [d.hparams_after for d in out]
            new, changes = pb2_explore(hparams[t.donor], space, rng, history, float(generation), pending)
        else:
            new, changes = explore(hparams[t.donor], space, rng)
        out.append(Decision(generation, t.receiver, t.donor, float(scores[t.receiver]), float(scores[t.donor]),
                            dict(hparams[t.receiver]), dict(hparams[t.donor]), new, changes))
    return out


# -- run directory ----------------------------------------------------------------------------
def _space_dict(space: Space) -> dict[str, Any]:
    return json.loads(json.dumps({"params": {k: asdict(v) for k, v in space.params.items()},
                                  "constants": dict(space.constants),
                                  "explore": asdict(space.explore_settings)}, default=str))


def _prepare_run_dir(cfg: CommonConfig, expected: Mapping[str, Any],
                     settings: Mapping[str, Any]) -> tuple[str | None, int]:
    """(rank 0) Create, clear or check the run directory; on resume, find the checkpoint and
    refuse any setting that would change the results (named, with old and new values).

    Returns ``(checkpoint dir or None, first generation to run)``.
    """
    run_dir = cfg.run_dir
    if cfg.resume:
        if not run_dir.exists():
            raise ConfigError(f"--resume: run directory {run_dir} does not exist")
        directory = ckpt.find_latest(run_dir)
        manifest = ckpt.read_manifest(directory)
        ckpt.check_compatible(manifest, expected)
        _check_resume_settings(run_dir / "config.json", settings, int(manifest["generation"]))
        return str(directory), int(manifest["generation"])
    try:
        if run_dir.exists() and any(run_dir.iterdir()):
            if not cfg.overwrite:
                raise ConfigError(
                    f"run directory {run_dir} already exists: use --resume to continue it, "
                    f"--overwrite to start again, or another --exp-name"
                )
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write log dir {run_dir}: {exc.strerror or exc}") from None
    return None, 0


def _check_resume_settings(path: Path, settings: Mapping[str, Any], generation: int) -> None:
    """Compare ``settings`` with the run's config.json; refuse changes that affect results, record
    the accepted ones (config.json then describes the run as it goes on, with a list of resumes)."""
    from evo.config import NOT_COMPARED, RESUME_MAY_CHANGE, describe_changes, resume_changes

    try:
        saved_file = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: cannot read {path}: {type(exc).__name__}") from None
    saved = {**saved_file.get("config", {}), "search_space": saved_file.get("search_space"),
             "world_size": saved_file.get("world_size")}
    refused, accepted = resume_changes(saved, dict(settings))
    if refused:
        raise ConfigError(f"--resume would change settings that affect the results: {describe_changes(refused)} "
                          f"(only {', '.join(sorted(RESUME_MAY_CHANGE - NOT_COMPARED))} may change; "
                          f"start a new run with another --exp-name instead)")
    for key, (_old, new) in accepted.items():
        saved_file["config"][key] = new
    saved_file.setdefault("resumes", []).append({
        "at_generation": generation, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": accepted})
    write_json(path, saved_file)


def _note_resume(cfg: CommonConfig, generation: int, reset: Sequence[int], notes: Sequence[str]) -> None:
    """(rank 0, after every member loaded) Say in one line each what a resume could not keep."""
    for note in notes:
        print(f"evo: note: {note}", file=sys.stderr, flush=True)
    if not reset:
        return
    print(f"evo: note: the training envs of member(s) {reset} could not be checkpointed; they start fresh "
          f"episodes at generation {generation}", file=sys.stderr, flush=True)
    path = cfg.run_dir / "config.json"
    data = json.loads(path.read_text())
    if data.get("resumes"):
        data["resumes"][-1]["envs_reset"] = reset
    write_json(path, data)


def _versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3
    import torch

    import evo

    return {"evo": evo.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__}


# -- the loop -----------------------------------------------------------------------------------
MEMBER_COLUMNS_HEAD = ["generation", "member", "score", "test_score", "failed", "env_steps", "total_env_steps",
                       "copied_from", "episodes", "mean_episodic_return"]
MEMBER_COLUMNS_TAIL = ["time_train_s", "time_rollout_s", "time_learn_s", "time_eval_s", "time_select_s",
                       "time_exchange_s", "time_generation_s", "env_steps_per_s"]
GENERATION_COLUMNS = ["generation", "env_steps", "total_env_steps", "best_score", "mean_score", "worst_score",
                      "best_member", "best_member_score", "best_member_test_score", "best_test_score",
                      "mean_test_score", "worst_test_score", "n_exploits",
                      "n_failed", "wall_s", "exchange_ms_max", "generation_s_max"]


def _stats(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None, None, None
    return max(finite), float(np.mean(finite)), min(finite)


# -- one rank's share of the population --------------------------------------------------------
@dataclass
class Slot:
    """One member hosted on this rank, with its TensorBoard writer."""

    member: Member
    tb: TensorBoard

    @property
    def index(self) -> int:
        return self.member.index


@dataclass
class Outcome:
    """What one member did in one generation (train + evaluate)."""

    slot: Slot
    stats: TrainStats
    hp_used: HParams
    score: float = math.nan
    test_score: float | None = None
    eval_s: float = 0.0


@dataclass
class Population:
    """Rank 0's view of one generation: every member's scores and hyperparameters, by member id."""

    scores: list[float]
    tests: list[float | None]
    selection: list[float]
    hparams: list[HParams]
    decisions: list[Decision] = field(default_factory=list)


@dataclass
class Run:
    """Everything the phases share on one rank."""

    cfg: PBTConfig
    comm: Any
    space: Space
    slots: list[Slot]
    stop: StopFlag
    transport: comm_mod.Transport | None
    schedule: Sequence[Mapping[str, Any]] | None
    expected: dict[str, Any]
    writers: dict[str, Any] = field(default_factory=dict)
    pop_tb: TensorBoard = field(default_factory=lambda: TensorBoard(None))
    t_run0: float = 0.0
    gen_seconds: list[float] = field(default_factory=list)
    pb2_history: list[Observation] = field(default_factory=list)
    """(rank 0, ``--explore pb2``) every member's change in score per generation, for PB2's GP."""
    pb2_start: dict[int, float] = field(default_factory=dict)
    final_eval: dict[int, float] = field(default_factory=dict)
    """This rank's members scored on unseen episodes, before the last exploit."""

    @property
    def rank(self) -> int:
        return int(self.comm.Get_rank())

    @property
    def n(self) -> int:
        assert self.cfg.num_agents is not None
        return int(self.cfg.num_agents)

    @property
    def baseline(self) -> bool:
        return self.cfg.strategy == "baseline"

    def slot(self, index: int) -> Slot:
        return next(s for s in self.slots if s.index == index)


# -- phases ---------------------------------------------------------------------------------------
def train_phase(r: Run, gen: int) -> list[Outcome] | None:
    """Every local member trains ``steps_per_generation`` env steps in turn. ``None`` if a stop
    signal arrived on any rank: the generation is dropped and the last checkpoint stands."""
    out = []
    for slot in r.slots:
        m = slot.member
        m.reseed(gen)
        if r.schedule:
            m.apply_hparams(r.schedule[min(gen, len(r.schedule) - 1)])
        hp_used = dict(m.hparams)
        stats = m.train(r.cfg.steps_per_generation, should_stop=r.stop)
        _inject_fault(m, m.index, gen)
        out.append(Outcome(slot, stats, hp_used))
    if comm_mod.agree(r.comm, any(o.stats.stopped for o in out) or r.stop.requested):
        return None
    return out


def evaluate_phase(r: Run, gen: int, outcomes: list[Outcome]) -> None:
    """Score every local member on this generation's evaluation episodes (paired by default: the
    same episodes for every member, so selection compares policies, not luck of the draw)."""
    cfg = r.cfg
    for o in outcomes:
        t0 = time.perf_counter()
        m = o.slot.member
        o.score = m.evaluate(cfg.eval_episodes, cfg.deterministic_eval,
                             seeds.eval_seed(cfg.seed, gen, m.index, paired=cfg.paired_eval))
        if cfg.eval_test_levels:
            test_seed = seeds.eval_seed(cfg.seed, gen, m.index, paired=cfg.paired_eval, test_levels=True)
            o.test_score = m.evaluate(cfg.eval_episodes, cfg.deterministic_eval, test_seed, test_levels=True)
        o.eval_s = time.perf_counter() - t0


def final_eval_phase(r: Run) -> None:
    """Score every member on fresh episodes that no selection ever saw (the same for all members).
    Runs before the final generation's exchange, so each member is still itself; it only reads."""
    cfg = r.cfg
    final_seed = seeds.final_eval_seed(cfg.seed)
    r.final_eval = {s.index: s.member.evaluate(cfg.eval_episodes, cfg.deterministic_eval, final_seed)
                    for s in r.slots}


def select_phase(r: Run, gen: int, outcomes: list[Outcome]) -> tuple[Population | None, Any]:
    """Scores and hparams go to rank 0 only; rank 0 decides (select + explore) and sends each rank
    only its own part of the plan. Returns (rank 0: the population view, else None; this rank's
    ``(RankPlan, decisions for its receivers)``)."""
    cfg = r.cfg
    statuses = r.comm.gather([(o.slot.index, o.score, o.test_score, o.hp_used) for o in outcomes], root=0)
    pop, payloads = None, None
    if r.rank == 0:
        flat = sorted((s for part in statuses for s in part), key=lambda s: s[0])
        scores, tests = [s[1] for s in flat], [s[2] for s in flat]
        sel = [(t if t is not None else math.nan) for t in tests] if cfg.select_on == "test" else list(scores)
        pop = Population(scores, tests, sel, [s[3] for s in flat])
        method = getattr(cfg, "explore", "perturb")
        if method == "pb2":
            r.pb2_history += pb2_observations(gen, sel, pop.hparams, r.pb2_start)
        if not r.baseline and cfg.exchange and r.n > 1:
            pop.decisions = decide(cfg.strategy, gen, sel, pop.hparams, r.space, cfg.quantile, cfg.seed,
                                   method, r.pb2_history)
        r.pb2_start = next_start_scores(sel, pop.decisions)
        payloads = rank_payloads(cfg.strategy, pop.decisions, r.comm.Get_size())
    return pop, r.comm.scatter(payloads, root=0)


def rank_payloads(strategy: str, decisions: Sequence[Decision], world: int) -> list[tuple[Any, list[Decision]]]:
    """(rank 0) What each rank needs of a plan: its transport part and its receivers' decisions."""
    plans = comm_mod.split_plan(strategy, [Transfer(d.receiver, d.donor) for d in decisions], world)
    return [(plans[k], [d for d in decisions if comm_mod.owner_of(d.receiver, world) == k]) for k in range(world)]


def pb2_observations(generation: int, scores: Sequence[float], hparams: Sequence[Mapping[str, Any]],
                     start: Mapping[int, float]) -> list[Observation]:
    """PB2's data from one generation: each member's change in score over it, with the hparams it
    trained with. A member that copied a donor at the last exploit starts from the donor's score."""
    from evo.core.pb2 import Observation

    return [Observation(float(generation), dict(hparams[m]), float(scores[m]) - start[m], m)
            for m in range(len(scores)) if m in start and math.isfinite(scores[m]) and math.isfinite(start[m])]


def next_start_scores(scores: Sequence[float], decisions: Sequence[Decision]) -> dict[int, float]:
    """Where each member's next interval starts from: its own score, or its donor's after a copy."""
    start = dict(enumerate(float(s) for s in scores))
    start.update({d.receiver: d.donor_score for d in decisions})
    return start


def pb2_history_from_records(run_dir: Path, keep_below: int,
                             column: str = "score") -> tuple[list[Observation], dict[int, float]]:
    """Rebuild PB2's history (and the next start scores) from members.csv and lineage.jsonl, so a
    resumed run explores exactly as an uninterrupted one."""
    from evo.records import read_csv, read_jsonl

    table = [x for x in read_csv(run_dir / "members.csv") if int(x["generation"]) < keep_below]
    lineage = read_jsonl(run_dir / "lineage.jsonl") if (run_dir / "lineage.jsonl").exists() else []
    history: list[Observation] = []
    start: dict[int, float] = {}
    for g in sorted({int(x["generation"]) for x in table}):
        rows = sorted((x for x in table if int(x["generation"]) == g), key=lambda x: int(x["member"]))
        scores = [float(x[column]) if x[column] not in ("", "nan") else math.nan for x in rows]
        hps = [{k[3:]: _parse_number(v) for k, v in x.items() if k.startswith("hp_")} for x in rows]
        history += pb2_observations(g, scores, hps, start)
        decisions = [Decision(g, int(d["receiver"]), int(d["donor"]), math.nan, float(d["donor_score"]),
                              {}, {}, {}) for d in lineage if int(d["generation"]) == g]
        start = next_start_scores(scores, decisions)
    return history, start


def _parse_number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def exchange_phase(r: Run, mine: Any) -> dict[int, int]:
    """Move weights + optimizer state along this rank's part of the plan (local copies between
    members of one rank); receivers take their explored hyperparameters. Returns receiver -> donor."""
    plan, decisions = mine
    if r.transport is None:  # no early return on an empty share: a collective round needs every rank
        return {}
    received = r.transport.move_members(plan, lambda m, buf: r.slot(m).member.pack(buf))
    for d in decisions:
        member = r.slot(d.receiver).member
        member.unpack(received[d.receiver])
        member.apply_hparams(d.hparams_after)
    return {d.receiver: d.donor for d in decisions}


def record_phase(r: Run, gen: int, outcomes: list[Outcome], pop: Population | None, donors: dict[int, int],
                 timing: Mapping[str, float]) -> None:
    """members.csv / generations.csv / lineage on rank 0, TensorBoard per member."""
    rows = []
    for o in outcomes:
        row = _member_row(r, gen, o, donors.get(o.slot.index, -1), timing)
        _log_member_tb(o.slot.tb, o.slot.member, o.stats, row, o.hp_used)
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
    gen_row = _generation_row(r, gen, pop, all_rows, total)
    r.writers["generations"].write([gen_row])
    r.writers["lineage"].write(asdict(d) for d in pop.decisions)
    r.pop_tb.scalars({
        "population/best_score": gen_row["best_score"], "population/mean_score": gen_row["mean_score"],
        "population/worst_score": gen_row["worst_score"], "population/best_test_score": gen_row["best_test_score"],
        "population/mean_test_score": gen_row["mean_test_score"],
        "population/worst_test_score": gen_row["worst_test_score"], "population/n_exploits": len(pop.decisions),
        "population/total_env_steps": total, "time/exchange_ms_max": gen_row["exchange_ms_max"],
    }, step=int(all_rows[0]["env_steps"]))
    if r.cfg.verbose:
        _print_generation(r, gen_row)


def checkpoint_phase(r: Run, gen: int, pop: Population | None) -> float:
    """Two-phase checkpoint after ``gen + 1`` completed generations (see :mod:`evo.checkpoint`)."""
    cfg = r.cfg
    directory = ckpt.gen_dir(cfg.run_dir, gen + 1)
    written = [ckpt.write_member(directory, s.member) for s in r.slots]
    sizes = r.comm.gather(written, root=0)
    if r.rank == 0:
        assert sizes is not None and pop is not None
        flat = [x for part in sizes for x in part]
        if os.environ.get("EVO_FAULT") == f"manifest:0:{gen}":  # test hook: rank 0 alone fails
            raise ckpt.CheckpointError(f"injected fault: cannot write the manifest of {directory}")
        ckpt.write_manifest(directory, gen + 1, r.comm.Get_size(), r.expected,
                            {"generation": gen + 1, "scores": [_nan_none(v) for v in pop.scores],
                             "test_scores": [_nan_none(v) for v in pop.tests],
                             "selection_scores": [_nan_none(v) for v in pop.selection],
                             "wall_s": time.perf_counter() - r.t_run0}, n_members=r.n)
        ckpt.prune(cfg.run_dir)
        r.writers["checkpoints"].write([{
            "generation": gen, "completed_generations": gen + 1, "bytes_total": sum(b for b, _ in flat),
            "bytes_per_member": flat[0][0], "seconds_max": max(t for _, t in flat)}])
    seconds = sum(t for _, t in written)
    for s in r.slots:
        s.tb.scalars({"time/checkpoint_s": seconds / max(1, len(r.slots))}, step=s.member.num_timesteps)
    return seconds


# -- the sync driver -------------------------------------------------------------------------------
def run(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Run (or resume) a PBT or baseline job on ``comm``. Returns the process exit code.

    ``schedule`` (baseline only, used by replay): hyperparameters to apply at the start of each
    generation, ``schedule[g]`` for generation ``g`` (the last entry holds for later ones).
    """
    if getattr(cfg, "async_mode", False):
        from evo.pbt_async import run_async

        return run_async(cfg, comm, schedule)
    r, resume_dir, start_gen = _start(cfg, comm, schedule)
    exit_code, gen, last = 0, start_gen, None
    last_checkpoint = start_gen if resume_dir is not None else None
    try:
        for gen in range(start_gen, cfg.generations):
            if comm_mod.agree(comm, r.stop.requested):
                exit_code = EXIT_PREEMPTED
                break
            t0 = time.perf_counter()
            outcomes = train_phase(r, gen)
            if outcomes is None:
                exit_code = EXIT_PREEMPTED  # this generation is dropped; the last checkpoint stands
                break
            evaluate_phase(r, gen, outcomes)
            if gen + 1 == cfg.generations:  # before the last exploit turns losers into copies of winners
                final_eval_phase(r)
            t_sel = time.perf_counter()
            pop, mine = select_phase(r, gen, outcomes)
            t_ex = time.perf_counter()
            donors = exchange_phase(r, mine)
            t_end = time.perf_counter()
            r.gen_seconds.append(t_end - t0)
            record_phase(r, gen, outcomes, pop, donors,
                         {"select": t_ex - t_sel, "exchange": t_end - t_ex, "generation": t_end - t0})
            last = pop
            _save_periodic_models(r, gen)
            if cfg.checkpoint_every and ((gen + 1) % cfg.checkpoint_every == 0 or gen + 1 == cfg.generations):
                checkpoint_phase(r, gen, pop)
                last_checkpoint = gen + 1
        else:
            gen = cfg.generations
    finally:
        for s in r.slots:
            s.tb.flush()
        r.pop_tb.flush()
    if exit_code == 0:
        if last is None and r.rank == 0 and resume_dir is not None:
            last = _population_from_checkpoint(Path(resume_dir))  # resumed after the final checkpoint
        _finish(r, last, time.perf_counter() - r.t_run0)
    if exit_code == EXIT_PREEMPTED and r.rank == 0:
        stands = (f"the checkpoint after generation {last_checkpoint} stands; resume with --resume"
                  if last_checkpoint else "no checkpoint was written yet; a rerun starts over")
        print(f"evo: stop signal received; stopped within one env step, in generation {gen + 1} of "
              f"{cfg.generations}, which is dropped ({stands}). Exit code {EXIT_PREEMPTED}.",
              file=sys.stderr, flush=True)
    _close(r)
    return exit_code


def resolve_run(cfg: PBTConfig, comm: Any) -> tuple[Space, int, dict[str, Any], dict[str, Any]]:
    """Validate against the world (the same on every rank), set threads, and describe the run:
    ``(space, threads, expected checkpoint meta, settings compared on resume)``."""
    world = comm.Get_size()
    space_text = comm_mod.root_decides(comm, lambda: read_space_file(cfg.hyperparams))
    with everywhere():  # argv, the world size and broadcast file contents: the same on every rank
        if cfg.num_agents is None:
            cfg.num_agents = world
        elif cfg.num_agents < world:
            raise ConfigError(
                f"--num-agents {cfg.num_agents} is smaller than the MPI world size {world}: every rank needs at "
                f"least one member (launch with mpiexec -n {cfg.num_agents} or fewer)"
            )
        if cfg.exp_name is None:
            cfg.exp_name = cfg.default_exp_name()
        space = _space_for(cfg, space_text)
    threads = comm_mod.set_threads(comm, cfg.threads)
    expected = {"world_size": world, "num_agents": cfg.num_agents, "env_id": cfg.env_id, "strategy": cfg.strategy,
                "n_envs": cfg.n_envs, "n_steps": cfg.n_steps, "policy": cfg.policy,
                "steps_per_generation": cfg.steps_per_generation, "algo": cfg.algo}
    settings = {**cfg.to_dict(), "search_space": _space_dict(space), "world_size": world}
    return space, threads, expected, settings


def _start(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None) -> tuple[Run, str | None, int]:
    """Validate against the world, prepare or check the run dir, build (or load) this rank's members."""
    rank, world = comm.Get_rank(), comm.Get_size()
    space, threads, expected, settings = resolve_run(cfg, comm)
    assert cfg.num_agents is not None
    resume_dir, start_gen = comm_mod.root_decides(comm, lambda: _prepare_run_dir(cfg, expected, settings))
    ids = comm_mod.local_members(cfg.num_agents, rank, world)
    local = comm_mod.local_rank(comm)  # collective: before any rank can fail alone
    members = comm_mod.on_every_rank(
        comm, lambda: [Member(cfg, space.sample(seeds.init_rng(cfg.seed, i)), index=i, local_rank=local)
                       for i in ids])
    if resume_dir is not None:
        loaded = comm_mod.on_every_rank(comm, lambda: [ckpt.load_member(Path(resume_dir), m) for m in members])
        fresh = comm.gather([m.index for m, meta in zip(members, loaded, strict=True) if not meta["env_restored"]])
        if rank == 0:  # only now that every member loaded: drop records of generations to be redone
            _note_resume(cfg, start_gen, sorted(i for part in fresh for i in part),
                         truncate_records(cfg.run_dir, start_gen))
    elif rank == 0:
        save_new_config(cfg, world, threads, settings, members[0])
    comm.Barrier()
    r = Run(cfg, comm, space, [], STOP.install(), None, schedule, expected)
    if not r.baseline:
        r.transport = comm_mod.make_transport(cfg.strategy, comm, members[0].flat_size)
    purge = (lambda m: m.num_timesteps) if resume_dir is not None else (lambda m: None)
    r.slots = [Slot(m, TensorBoard(cfg.run_dir / "tb" / f"member_{m.index:03d}" if cfg.tb_writer else None,
                                   purge_step=purge(m))) for m in members]
    if rank == 0:
        if resume_dir is not None and getattr(cfg, "explore", "perturb") == "pb2":
            column = "test_score" if cfg.select_on == "test" else "score"
            r.pb2_history, r.pb2_start = pb2_history_from_records(cfg.run_dir, start_gen, column)
        _open_writers(r, threads, start_gen, resume_dir is not None)
        if cfg.tb_writer and r.n > 1:
            r.pop_tb = TensorBoard(cfg.run_dir / "tb" / "population", purge_step=purge(members[0]))
    r.t_run0 = time.perf_counter()
    if resume_dir is not None:  # wall time continues across resumes
        r.t_run0 -= comm_mod.root_decides(comm, lambda: float(json.loads(
            (Path(resume_dir) / "population.json").read_text()).get("wall_s", 0.0)))
    return r, resume_dir, start_gen


def save_new_config(cfg: PBTConfig, world: int, threads: int, settings: Mapping[str, Any], first: Member,
                    **extra: Any) -> None:
    """(rank 0, a new run) config.json: the resolved settings and what a reader needs to trust them."""
    from evo.config import save_config

    assert cfg.num_agents is not None
    save_config(cfg, cfg.run_dir / "config.json", {
        "world_size": world, "members_per_rank": [len(comm_mod.local_members(cfg.num_agents, k, world))
                                                  for k in range(world)],
        "threads_per_rank": threads, "versions": _versions(), "deterministic_eval": cfg.deterministic_eval,
        "rollout_size": cfg.rollout_size, "search_space": settings["search_space"],
        "initial_hparams_rank0": dict(first.hparams), "env_state_checkpointed": first.env_state() is not None,
        "resumes": [], "random_policy": _random_policy(cfg), **extra,
    })


def _random_policy(cfg: PBTConfig) -> dict[str, Any]:
    """The mean return of a uniformly random policy on generation 0's evaluation episodes: the
    reference that tells at once whether anything learned (at least 10 episodes)."""
    from evo.reference import random_policy_score

    episodes = max(10, cfg.eval_episodes)
    return {"score": random_policy_score(cfg.to_dict(), episodes, cfg.seed), "episodes": episodes}


def _open_writers(r: Run, threads: int, start_gen: int, resumed: bool) -> None:
    cfg, run_dir = r.cfg, r.cfg.run_dir
    hp_cols = [f"hp_{k}" for k in r.slots[0].member.hparams]
    r.writers = {
        "members": TableWriter(run_dir / "members.csv", MEMBER_COLUMNS_HEAD + hp_cols + MEMBER_COLUMNS_TAIL),
        "generations": TableWriter(run_dir / "generations.csv", GENERATION_COLUMNS),
        "lineage": JsonlWriter(run_dir / "lineage.jsonl"), "checkpoints": JsonlWriter(run_dir / "checkpoints.jsonl"),
    }
    if cfg.verbose:
        world = r.comm.Get_size()
        what = "baseline" if r.baseline else f"PBT/{cfg.strategy}"
        per = f" ({r.n / world:.3g} per rank on {world} ranks)" if r.n > world else ""
        resumed_at = f", resumed at generation {start_gen}" if resumed else ""
        print(f"evo {what}: {r.n} member(s){per} on {cfg.env_id}, {cfg.generations} generations x "
              f"{cfg.steps_per_generation} steps, {threads} torch thread(s)/rank -> {run_dir}{resumed_at}", flush=True)
        if cfg.tb_writer:
            print(f"evo: TensorBoard logs in {run_dir / 'tb'}; view them with: tensorboard --logdir {run_dir / 'tb'}",
                  flush=True)


def _member_row(r: Run, gen: int, o: Outcome, donor: int, timing: Mapping[str, float]) -> dict[str, Any]:
    m, stats = o.slot.member, o.stats
    returns = [ret for _, ret, _ in stats.episodes]
    return {
        "generation": gen, "member": m.index, "score": o.score, "test_score": o.test_score,
        "failed": int(not math.isfinite(o.score)), "env_steps": m.num_timesteps, "copied_from": donor,
        "episodes": len(returns), "mean_episodic_return": float(np.mean(returns)) if returns else None,
        **{f"hp_{k}": v for k, v in o.hp_used.items()},
        "time_train_s": stats.seconds, "time_rollout_s": stats.rollout_seconds, "time_learn_s": stats.learn_seconds,
        "time_eval_s": o.eval_s, "time_select_s": timing["select"], "time_exchange_s": timing["exchange"],
        "time_generation_s": timing["generation"],
        "env_steps_per_s": r.cfg.steps_per_generation / stats.seconds if stats.seconds > 0 else None,
    }


def _generation_row(r: Run, gen: int, pop: Population, rows: Sequence[Mapping[str, Any]],
                    total: int) -> dict[str, Any]:
    best, mean, worst = _stats(pop.scores)
    tbest, tmean, tworst = _stats([t for t in pop.tests if t is not None])
    chosen = best_member(pop.selection) if not all(math.isnan(s) for s in pop.selection) else -1
    return {
        "generation": gen, "env_steps": int(rows[0]["env_steps"]), "total_env_steps": total,
        "best_score": best, "mean_score": mean, "worst_score": worst, "best_member": chosen,
        "best_member_score": pop.scores[chosen] if chosen >= 0 else None,
        "best_member_test_score": pop.tests[chosen] if chosen >= 0 else None,
        "best_test_score": tbest, "mean_test_score": tmean, "worst_test_score": tworst,
        "n_exploits": len(pop.decisions), "n_failed": sum(1 for s in pop.scores if not math.isfinite(s)),
        "wall_s": time.perf_counter() - r.t_run0,
        "exchange_ms_max": 1000 * max(float(x["time_exchange_s"]) for x in rows),
        "generation_s_max": max(float(x["time_generation_s"]) for x in rows),
    }


def _save_periodic_models(r: Run, gen: int) -> None:
    save_every = getattr(r.cfg, "save_every", 0)
    if r.baseline and save_every and (gen + 1) % save_every == 0 and gen + 1 < r.cfg.generations:
        for s in r.slots:
            m = s.member
            m.save_model(r.cfg.run_dir / "models" / f"member_{m.index:03d}_steps_{m.num_timesteps}.zip")


def _population_from_checkpoint(directory: Path) -> Population:
    population = json.loads((directory / "population.json").read_text())
    scores = [math.nan if v is None else float(v) for v in population["scores"]]
    tests = list(population.get("test_scores") or [None] * len(scores))
    sel = [math.nan if v is None else float(v) for v in population.get("selection_scores", scores)]
    return Population(scores, tests, sel, [])


def _close(r: Run) -> None:
    for w in r.writers.values():
        w.close()
    for s in r.slots:
        s.tb.close()
        s.member.close()
    r.pop_tb.close()


def _inject_fault(member: Member, rank: int, generation: int) -> None:
    """Test hook: ``EVO_FAULT=KIND:RANK:GENERATION`` makes one rank fail on purpose after training.

    ``raise`` raises an exception (the job must abort, not hang); ``nan`` poisons the member's
    weights (it must be marked failed, rank last and be replaced); ``exit`` ends the process.
    """
    spec = os.environ.get("EVO_FAULT")
    if not spec:
        return
    kind, r, g = spec.split(":")
    if int(r) != rank or int(g) != generation:
        return
    if kind == "raise":
        raise RuntimeError(f"injected fault on rank {rank} in generation {generation}")
    if kind == "nan":
        buf = member.pack()
        buf[: member.num_params] = np.nan
        member.unpack(buf)
    elif kind == "exit":
        os._exit(9)


def _space_for(cfg: PBTConfig, text: str | None) -> Space:
    """The search space: defaults overridden by ``text`` (``--hyperparams``, read on rank 0)."""
    if cfg.strategy == "baseline":
        return Space(params={}, constants=dict(getattr(cfg, "set_hparams", None) or {}))
    space = parse_space(text, cfg.rollout_size, str(cfg.hyperparams), cfg.algo)
    check_batch_size(space, cfg.rollout_size, cfg.algo)
    return space


def _log_member_tb(tb: TensorBoard, member: Member, stats: Any, row: Mapping[str, Any], hp: HParams) -> None:
    for step, ret, length in stats.episodes:
        tb.scalars({"charts/episodic_return": ret, "charts/episodic_length": length}, step=step)
    step = member.num_timesteps
    values: dict[str, Any] = {
        "pbt/score": row["score"] if math.isfinite(row["score"]) else None,
        "pbt/test_score": row["test_score"],
        "pbt/copied_from": row["copied_from"],
        "charts/env_steps_per_s": row["env_steps_per_s"],
        **{f"losses/{k}": v for k, v in stats.losses.items()},
        **{f"hparams/{k}": v for k, v in hp.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        **{f"time/{k[5:]}": row[k] for k in MEMBER_COLUMNS_TAIL if k.startswith("time_")},
    }
    tb.scalars(values, step=step)


def _print_generation(r: Run, g: Mapping[str, Any]) -> None:
    """One line per generation: scores, env steps, throughput and an ETA for the whole run."""
    def f(v: Any) -> str:
        return "nan" if v is None else f"{v:.2f}"

    cfg, done = r.cfg, g["generation"] + 1
    recent = r.gen_seconds[-5:]
    per_gen = sum(recent) / len(recent) if recent else 0.0
    rate = r.n * cfg.steps_per_generation / per_gen if per_gen > 0 else 0.0
    eta = per_gen * (cfg.generations - done)
    print(f"gen {done:>3}/{cfg.generations} | best {f(g['best_score'])} mean {f(g['mean_score'])} "
          f"worst {f(g['worst_score'])} | steps/member {g['env_steps']} | {rate:,.0f} env-steps/s | "
          f"wall {g['wall_s']:.1f}s ETA {_fmt_eta(eta)} | exchange {g['exchange_ms_max']:.1f} ms | "
          f"exploits {g['n_exploits']}", flush=True)


def _fmt_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _finish(r: Run, pop: Population | None, wall: float) -> None:
    """Save the best member's model, HParams entries, a final evaluation on unseen episodes, and
    a summary.

    "Best" ranks on the score selection uses (``--select-on``). The HParams entry pairs each
    member's final score with the hyperparameters it trained the final generation with (not
    the ones it explored to after the final exploit).
    """
    cfg, comm = r.cfg, r.comm
    best = -1
    if r.rank == 0 and pop is not None and pop.selection and not all(math.isnan(s) for s in pop.selection):
        best = best_member(pop.selection)
    best, scores, tests = comm.bcast((best, pop.scores if pop else [], pop.tests if pop else []), root=0)
    # Scores on fresh episodes that no selection ever saw: the selected member's last score is
    # biased upwards (it won on those very episodes); this one is not.
    final_seed = seeds.final_eval_seed(cfg.seed)
    if not r.final_eval:  # resumed after the final checkpoint: the members as they are now
        final_eval_phase(r)
    finals = []
    for s in r.slots:
        m = s.member
        if m.index == best:
            m.save_model(cfg.run_dir / "best_model.zip")
        if r.baseline:
            m.save_model(cfg.run_dir / "models" / f"final_member_{m.index:03d}.zip")
        metrics = {"hparams/final_score": scores[m.index] if scores else math.nan}
        if tests and tests[m.index] is not None:
            metrics["hparams/final_test_score"] = float(tests[m.index])
        hp = pop.hparams[m.index] if pop is not None and pop.hparams else m.hparams
        s.tb.hparams(hp if r.rank == 0 and pop is not None else m.hparams, metrics, run_name=".")
        finals.append((m.index, r.final_eval[m.index]))
    gathered = comm.gather(finals, root=0)
    if r.rank != 0:
        return
    final = [v for _, v in sorted(x for part in gathered for x in part)]
    write_json(cfg.run_dir / "summary.json", {
        "generations": cfg.generations, "world_size": comm.Get_size(), "num_agents": r.n, "best_member": best,
        "select_on": getattr(cfg, "select_on", "train"),
        "best_score": scores[best] if best >= 0 else None,
        "best_test_score": _nan_none(tests[best]) if best >= 0 and tests and tests[best] is not None else None,
        "final_scores": [_nan_none(s) for s in scores], "final_test_scores": [_nan_none(t) for t in tests],
        "env_steps_per_member": r.slots[0].member.num_timesteps,
        "final_eval": {"scores": [_nan_none(v) for v in final], "episodes": cfg.eval_episodes, "seed": final_seed,
                       "paired": True,
                       "note": "fresh episodes never used for selection (the same episodes for every member), "
                                    "before the last generation's exploit"},
        "wall_s": wall, "strategy": cfg.strategy,
    })
    if cfg.verbose and best >= 0:
        print(f"done: best member {best} score {scores[best]:.2f} (on unseen episodes: {final[best]:.2f}); "
              f"outputs in {cfg.run_dir}", flush=True)


def _nan_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


__all__ = ["EXIT_PREEMPTED", "Decision", "StopFlag", "decide", "dumps_line", "run"]
