"""Start or resume a run, the same way for both schedules: validate against the world, lock and
prepare the run directory (or check it on ``--resume``), build this rank's members and load them
from their checkpoints."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import evo.loop.checkpoints as ckpt
from evo import comm as comm_mod
from evo.config import PBTConfig
from evo.core import seeds
from evo.core.space import Space, parse_space, read_space_file
from evo.envs import env_settings_from_yaml
from evo.errors import CheckpointError, ConfigError, everywhere
from evo.loop.context import Run, Slot
from evo.loop.resume import check_resume_settings, note_resume
from evo.loop.timing import Timeline
from evo.records import TensorBoard
from evo.stop import STOP


@dataclass
class ResumePlan:
    """Where each member continues from (sync: one generation for all; async: each its own)."""

    dirs: dict[int, str]
    """member -> its checkpoint folder"""
    starts: list[int]
    """member -> its first generation (interval) to run"""
    entries: dict[int, dict[str, Any]]
    """member -> its manifest's entry (latest score, eval set, hyperparameters, env steps)"""
    wall_s: float
    notes: list[str] = field(default_factory=list)
    horizon_env_steps: int = 0
    """The run's schedule horizon as first planned (config.json)."""
    extended: bool = False
    """The run had finished its planned generations and this resume adds more: its last generation
    ended without the exploit that is now due (the sync schedule makes it before going on)."""

    @property
    def start(self) -> int:
        return min(self.starts)


def everywhere_errors(fn: Any) -> Any:
    with everywhere():
        return fn()


def space_for(cfg: PBTConfig, text: str | None) -> Space:
    """The search space: defaults overridden by ``text`` (``--hyperparams``, read on rank 0)."""
    if cfg.strategy == "baseline":
        return Space(params={}, constants=dict(getattr(cfg, "set_hparams", None) or {}))
    return parse_space(text, cfg.rollout_size, str(cfg.hyperparams), cfg.algo, cfg.env_id)


def _space_dict(space: Space) -> dict[str, Any]:
    return json.loads(json.dumps({"params": {k: asdict(v) for k, v in space.params.items()},
                                  "constants": dict(space.constants),
                                  "explore": asdict(space.explore_settings)}, default=str))


def resolve_run(cfg: PBTConfig, comm: Any) -> tuple[Space, int, dict[str, Any], dict[str, Any]]:
    """Validate against the world (the same on every rank), set threads, and describe the run:
    ``(space, threads, expected checkpoint meta, settings compared on resume)``."""
    world = comm.Get_size()
    space_text = comm_mod.root_decides(comm, lambda: read_space_file(cfg.hyperparams))

    def check() -> Space:
        if cfg.num_agents is None:
            cfg.num_agents = world
        elif cfg.num_agents < world:
            raise ConfigError(
                f"--num-agents {cfg.num_agents} is smaller than the MPI world size {world}: every rank needs at "
                f"least one member (launch with mpiexec -n {cfg.num_agents} or fewer)")
        cfg.check_seed(cfg.num_agents)  # validate() knew the population only if --num-agents was given
        if cfg.strategy != "baseline" and cfg.num_agents < 2:
            raise ConfigError("a PBT population needs at least 2 members: launch with mpiexec -n N, or host N "
                              "members in this process with --num-agents N")
        if cfg.exp_name is None:
            cfg.exp_name = cfg.default_exp_name()
        if cfg.strategy != "baseline":  # a baseline's set brought its env settings already
            cfg.apply_env_settings(env_settings_from_yaml(space_text))
        return space_for(cfg, space_text)

    space = everywhere_errors(check)  # argv, the world size and broadcast file contents
    threads = comm_mod.set_threads(comm, cfg.threads)
    expected = {"world_size": world, "num_agents": cfg.num_agents, "env_id": cfg.env_id, "strategy": cfg.strategy,
                "n_envs": cfg.n_envs, "n_steps": cfg.n_steps, "policy": cfg.policy,
                "steps_per_generation": cfg.steps_per_generation, "algo": cfg.algo,
                "async": bool(getattr(cfg, "async_mode", False))}
    settings = {**cfg.to_dict(), "search_space": _space_dict(space), "world_size": world}
    return space, threads, expected, settings


# -- the run directory (rank 0) -----------------------------------------------------------------
def prepare_run_dir(r_cfg: PBTConfig, expected: Mapping[str, Any], settings: Mapping[str, Any],
                    lock: Any) -> ResumePlan | None:
    """(rank 0) Lock the run directory, then create, clear or check it. On ``--resume``, find
    every member's checkpoint and refuse any setting that would change the results."""
    cfg, run_dir = r_cfg, r_cfg.run_dir
    if cfg.resume and not run_dir.exists():
        raise ConfigError(f"--resume: run directory {run_dir} does not exist")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write log dir {run_dir}: {exc.strerror or exc}") from None
    note = lock.acquire()
    if note:
        print(f"evo: note: {note}", file=sys.stderr, flush=True)
    if cfg.resume:
        if ckpt.has_checkpoint(run_dir):
            return _resume_plan(cfg, expected, settings)
        print(f"evo: note: {run_dir} has no checkpoint yet (stopped before the first one): starting afresh",
              file=sys.stderr, flush=True)
    elif any(p.name != lock.path.name for p in run_dir.iterdir()) and not cfg.overwrite:
        raise ConfigError(f"run directory {run_dir} already exists: use --resume to continue it, "
                          f"--overwrite to start again, or another --exp-name")
    try:
        for p in run_dir.iterdir():
            if p.name != lock.path.name:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write log dir {run_dir}: {exc.strerror or exc}") from None
    return None


def _resume_plan(cfg: PBTConfig, expected: Mapping[str, Any], settings: Mapping[str, Any]) -> ResumePlan:
    assert cfg.num_agents is not None
    run_dir, n, notes = cfg.run_dir, cfg.num_agents, []  # type: ignore[var-annotated]
    if cfg.async_mode:
        found = {i: ckpt.member_latest(run_dir, i, notes) for i in range(n)}
        dirs = {i: str(d) for i, d in found.items() if d is not None}
        if not dirs:
            raise CheckpointError(f"--resume: no intact checkpoint in {run_dir / 'checkpoints'}")
        manifests = {i: ckpt.read_member_manifest(Path(d), i) for i, d in dirs.items()}
    else:
        directory = ckpt.find_latest(run_dir, notes)
        manifest = ckpt.read_manifest(directory)
        manifests = dict(enumerate(manifest["members"]))
        dirs = {i: str(directory) for i in range(n)}
        for g, d in ckpt._gen_dirs(run_dir):  # partial generations after it: redone from here
            if g > manifest["generation"]:
                shutil.rmtree(d, ignore_errors=True)
    for m in manifests.values():
        ckpt.check_compatible(m["meta"], expected)
    starts = [int(manifests[i]["generation"]) if i in manifests else 0 for i in range(n)]
    entries = {i: dict(m.get("entry") or {}) for i, m in manifests.items()}
    done = max(starts)
    if cfg.generations < done:
        raise ConfigError(f"--resume: --generations {cfg.generations} is fewer than the {done} generations this run "
                          f"has already completed (give --generations {done} or more)")
    accepted = check_resume_settings(run_dir / "config.json", settings, min(starts))
    old_plan = accepted.get("generations", [None])[0]
    wall = max(float(e.get("wall_s", 0.0)) for e in entries.values()) if entries else 0.0
    saved = json.loads((run_dir / "config.json").read_text()).get("config", {})
    return ResumePlan(dirs, starts, entries, wall, notes, horizon_env_steps=int(saved.get("horizon_env_steps") or 0),
                      extended=old_plan is not None and min(starts) >= old_plan)


def _versions() -> dict[str, str]:
    import gymnasium
    import stable_baselines3
    import torch

    import evo

    return {"evo": evo.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__, "gymnasium": gymnasium.__version__,
            "numpy": np.__version__}


def save_new_config(cfg: PBTConfig, world: int, threads: int, settings: Mapping[str, Any], first: Any,
                    timeline: Timeline | None = None) -> None:
    """(rank 0, a new run) config.json: the resolved settings and what a reader needs to trust them."""
    from evo.cmdline import save_config
    from evo.reference import random_policy_score

    assert cfg.num_agents is not None
    episodes = max(10, cfg.eval_episodes)
    extra: dict[str, Any] = {"async": True} if cfg.async_mode else {}
    t0 = time.perf_counter()
    reference = random_policy_score(cfg.to_dict(), episodes, cfg.seed)
    if timeline is not None:
        timeline.add("reference", time.perf_counter() - t0)
    save_config(cfg, cfg.run_dir / "config.json", {
        "world_size": world, "members_per_rank": [len(comm_mod.local_members(cfg.num_agents, k, world))
                                                  for k in range(world)],
        "threads_per_rank": threads, "versions": _versions(), "deterministic_eval": cfg.deterministic_eval,
        "rollout_size": cfg.rollout_size, "search_space": settings["search_space"],
        "initial_hparams_rank0": dict(first.hparams), "env_state_checkpointed": first.env_state() is not None,
        "resumes": [], **extra,
        # the mean return of a uniformly random policy on generation 0's evaluation episodes: the
        # reference that tells at once whether anything learned (at least 10 episodes)
        "random_policy": {"score": reference, "episodes": episodes},
    })


# -- members ---------------------------------------------------------------------------------------
def start(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None = None
          ) -> tuple[Run, ResumePlan | None]:
    """Validate, prepare or check the run dir, build (or load) this rank's members."""
    from evo.envs import verify_env
    from evo.learners import make_learner
    from evo.loop.lock import RunLock

    timeline = Timeline()
    timeline.mark("start")
    rank, world = comm.Get_rank(), comm.Get_size()
    space, threads, expected, settings = resolve_run(cfg, comm)
    assert cfg.num_agents is not None
    lock = RunLock(cfg.run_dir) if rank == 0 else None

    def prepare() -> ResumePlan | None:
        try:
            return prepare_run_dir(cfg, expected, settings, lock)
        except BaseException:
            lock.release()  # type: ignore[union-attr]
            raise

    plan = comm_mod.root_decides(comm, prepare)
    from evo.learners import planned_env_steps

    cfg.horizon_env_steps = (plan.horizon_env_steps if plan is not None else 0) or planned_env_steps(cfg)
    ids = comm_mod.local_members(cfg.num_agents, rank, world)
    local = comm_mod.local_rank(comm)  # collective: before any rank can fail alone
    comm_mod.on_every_rank(comm, lambda: verify_env(cfg))  # the env imports and builds on every rank
    members = comm_mod.on_every_rank(
        comm, lambda: [make_learner(cfg, space.sample(seeds.init_rng(cfg.seed, i)), index=i, local_rank=local)
                       for i in ids])
    if plan is not None:
        dirs = plan.dirs

        def load() -> list[int]:
            return [m.index for m in members
                    if m.index in dirs and not ckpt.load_member(Path(dirs[m.index]), m)["env_restored"]]

        fresh = comm.gather(comm_mod.on_every_rank(comm, load), root=0)
        if rank == 0:  # only now that every member loaded: drop records of generations to be redone
            _truncate(cfg, plan, sorted(i for part in fresh for i in part))
    elif rank == 0:
        save_new_config(cfg, world, threads, settings, members[0], timeline)
    comm.Barrier()
    r = Run(cfg, comm, space, [], STOP.install(), expected, schedule, lock=lock, timeline=timeline)
    resumed = plan.dirs if plan is not None else {}
    r.slots = [Slot(m, TensorBoard(cfg.run_dir / "tb" / f"member_{m.index:03d}" if cfg.tb_writer else None,
                                   purge_step=m.num_timesteps if m.index in resumed else None)) for m in members]
    if rank == 0:
        from evo.loop.rows import open_writers, print_start

        open_writers(r)
        if cfg.tb_writer and r.n > 1:
            purge = (plan.start + 1) * cfg.steps_per_generation if plan is not None else None
            r.pop_tb = TensorBoard(cfg.run_dir / "tb" / "population", purge_step=purge)
        where = ""
        if plan is not None:
            where = f", resumed (next intervals {plan.starts})" if cfg.async_mode else \
                f", resumed at generation {plan.start}"
        print_start(r, threads, where)
    r.t_run0 = time.perf_counter() - (plan.wall_s if plan is not None else 0.0)  # wall time continues
    timeline.mark("loop")
    return r, plan


def _truncate(cfg: PBTConfig, plan: ResumePlan, fresh: Sequence[int]) -> None:
    """(rank 0, resume) Drop each member's records of the generations it will redo, and the
    generation rows not every member has kept."""
    from evo.records import truncate_records

    starts, first = plan.starts, plan.start
    notes = list(plan.notes) + truncate_records(cfg.run_dir, keep={
        "members.csv": lambda x: int(x["generation"]) < starts[int(x["member"])],
        "lineage.jsonl": lambda x: int(x["generation"]) < starts[int(x["receiver"])],
        "generations.csv": lambda x: int(x["generation"]) < first,
        "checkpoints.jsonl": lambda x: int(x["generation"]) < first,
    })
    if cfg.async_mode:
        notes.append(f"asynchronous resume: every member continues from its own newest checkpoint (next intervals "
                     f"{list(starts)}); up to one interval per member (the one in progress) is redone")
    note_resume(cfg, first, fresh, notes)
