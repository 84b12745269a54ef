"""The generation loop: wires config, member, selection, explore, transport and records.

One generation, on every rank at once::

    train -> evaluate -> allgather (score, hparams) -> rank 0: decide (select + explore) -> bcast plan
      -> move weights + optimizer along the plan -> receivers apply explored hparams
      -> gather rows to rank 0 (records, lineage) ; TensorBoard per member ; checkpoint

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
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from evo import checkpoint as ckpt
from evo import comm as comm_mod
from evo import seeds
from evo.cli import everywhere
from evo.config import CommonConfig, PBTConfig
from evo.errors import ConfigError
from evo.member import Member
from evo.records import JsonlWriter, TableWriter, TensorBoard, dumps_line, truncate_records, write_json
from evo.selection import Transfer, best_member, plan
from evo.space import HParams, Space, check_batch_size, explore, parse_space, read_space_file
from evo.stop import STOP, StopFlag

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
           space: Space, quantile: float, seed: int) -> list[Decision]:
    """Select who copies whom, and explore every receiver's new hyperparameters.

    A pure function of its arguments: the selection rng is derived from ``(seed, generation)``
    and each receiver's explore rng from ``(seed, generation, receiver)``.
    """
    transfers = plan(strategy, scores, quantile, seeds.selection_rng(seed, generation))
    out = []
    for t in transfers:
        new, changes = explore(hparams[t.donor], space, seeds.explore_rng(seed, generation, t.receiver))
        out.append(Decision(generation, t.receiver, t.donor, float(scores[t.receiver]), float(scores[t.donor]),
                            dict(hparams[t.receiver]), dict(hparams[t.donor]), new, changes))
    return out


def exchange(transport: comm_mod.Transport, member: Member, decisions: Sequence[Decision]) -> Decision | None:
    """Move weights + optimizer state along ``decisions``; receivers then take their explored
    hyperparameters. Returns this rank's decision if it received, else ``None``."""
    if not decisions:
        return None
    received = transport.move([Transfer(d.receiver, d.donor) for d in decisions], member.pack)
    if received is None:
        return None
    mine = next(d for d in decisions if d.receiver == transport.rank)
    member.unpack(received)
    member.apply_hparams(mine.hparams_after)
    return mine


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


def _note_resume(cfg: CommonConfig, generation: int, fresh_envs: Sequence[bool], notes: Sequence[str]) -> None:
    """(rank 0, after every member loaded) Say in one line each what a resume could not keep."""
    for note in notes:
        print(f"evo: note: {note}", file=sys.stderr, flush=True)
    reset = [i for i, fresh in enumerate(fresh_envs) if fresh]
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


def run(cfg: PBTConfig, comm: Any, schedule: Sequence[Mapping[str, Any]] | None = None) -> int:
    """Run (or resume) a PBT or baseline job on ``comm``. Returns the process exit code.

    ``schedule`` (baseline only, used by replay): hyperparameters to apply at the start of each
    generation, ``schedule[g]`` for generation ``g`` (the last entry holds for later ones).
    """
    rank, world = comm.Get_rank(), comm.Get_size()
    baseline = cfg.strategy == "baseline"
    space_text = comm_mod.root_decides(comm, lambda: read_space_file(cfg.hyperparams))
    with everywhere():  # argv, the world size and broadcast file contents: the same on every rank
        if cfg.num_agents is None:
            cfg.num_agents = world
        elif cfg.num_agents != world:
            raise ConfigError(
                f"--num-agents {cfg.num_agents} does not match the MPI world size {world} "
                f"(launch with mpiexec -n {cfg.num_agents}, or drop --num-agents)"
            )
        if cfg.exp_name is None:
            cfg.exp_name = cfg.default_exp_name()
        space = _space_for(cfg, space_text)
    threads = comm_mod.set_threads(comm, cfg.threads)
    expected = {"world_size": world, "env_id": cfg.env_id, "strategy": cfg.strategy, "n_envs": cfg.n_envs,
                "n_steps": cfg.n_steps, "policy": cfg.policy, "steps_per_generation": cfg.steps_per_generation}
    settings = {**cfg.to_dict(), "search_space": _space_dict(space), "world_size": world}
    resume_dir, start_gen = comm_mod.root_decides(comm, lambda: _prepare_run_dir(cfg, expected, settings))
    run_dir = cfg.run_dir

    init_hp = space.sample(seeds.init_rng(cfg.seed, rank))
    member = comm_mod.on_every_rank(comm, lambda: Member(cfg, init_hp, index=rank))
    if resume_dir is not None:
        loaded = comm_mod.on_every_rank(comm, lambda: ckpt.load_member(Path(resume_dir), member))
        fresh_envs = comm.gather(not loaded["env_restored"], root=0)
        if rank == 0:  # only now that every member loaded: drop records of generations to be redone
            assert fresh_envs is not None
            _note_resume(cfg, start_gen, fresh_envs, truncate_records(run_dir, start_gen))
    elif rank == 0:
        from evo.config import save_config

        save_config(cfg, run_dir / "config.json", {
            "world_size": world, "threads_per_rank": threads, "versions": _versions(),
            "deterministic_eval": cfg.deterministic_eval, "rollout_size": cfg.rollout_size,
            "search_space": settings["search_space"], "initial_hparams_rank0": init_hp,
            "env_state_checkpointed": member.env_state() is not None, "resumes": [],
        })
    comm.Barrier()

    stop = STOP.install()  # idempotent: keeps a signal that arrived during start-up
    transport = None if baseline else comm_mod.make_transport(cfg.strategy, comm, member.flat_size)
    tb = TensorBoard(run_dir / "tb" / f"member_{rank:03d}" if cfg.tb_writer else None,
                     purge_step=member.num_timesteps if resume_dir is not None else None)
    pop_tb = TensorBoard(run_dir / "tb" / "population" if cfg.tb_writer and rank == 0 and world > 1 else None,
                         purge_step=member.num_timesteps if resume_dir is not None else None)
    members_csv = generations_csv = lineage = ckpt_log = None
    if rank == 0:
        hp_cols = [f"hp_{k}" for k in member.hparams]
        members_csv = TableWriter(run_dir / "members.csv", MEMBER_COLUMNS_HEAD + hp_cols + MEMBER_COLUMNS_TAIL)
        generations_csv = TableWriter(run_dir / "generations.csv", GENERATION_COLUMNS)
        lineage = JsonlWriter(run_dir / "lineage.jsonl")
        ckpt_log = JsonlWriter(run_dir / "checkpoints.jsonl")
        if cfg.verbose:
            what = "baseline" if baseline else f"PBT/{cfg.strategy}"
            resumed = f", resumed at generation {start_gen}" if resume_dir else ""
            print(f"evo {what}: {world} member(s) on {cfg.env_id}, {cfg.generations} generations x "
                  f"{cfg.steps_per_generation} steps, {threads} torch thread(s)/rank -> {run_dir}{resumed}",
                  flush=True)

    exit_code = 0
    t_run0 = time.perf_counter()
    if resume_dir is not None:  # wall time continues across resumes
        t_run0 -= comm_mod.root_decides(comm, lambda: float(json.loads(
            (Path(resume_dir) / "population.json").read_text()).get("wall_s", 0.0)))
    last_scores: list[float] = []
    last_test: list[float | None] = []
    last_sel: list[float] = []
    last_hp: HParams | None = None
    last_checkpoint = start_gen if resume_dir is not None else None
    gen = start_gen
    try:
        for gen in range(start_gen, cfg.generations):
            if comm_mod.agree(comm, stop.requested):
                exit_code = EXIT_PREEMPTED
                break
            t_gen0 = time.perf_counter()
            member.reseed(gen)
            if schedule:
                member.apply_hparams(schedule[min(gen, len(schedule) - 1)])
            hp_used = dict(member.hparams)
            stats = member.train(cfg.steps_per_generation, should_stop=stop)
            _inject_fault(member, rank, gen)
            if comm_mod.agree(comm, stats.stopped or stop.requested):
                exit_code = EXIT_PREEMPTED  # this generation is dropped; the last checkpoint stands
                break
            t_eval0 = time.perf_counter()
            eval_seed = seeds.eval_seed(cfg.seed, gen, rank, paired=cfg.paired_eval)
            score = member.evaluate(cfg.eval_episodes, cfg.deterministic_eval, eval_seed)
            test_score = None
            if cfg.eval_test_levels:
                test_seed = seeds.eval_seed(cfg.seed, gen, rank, paired=cfg.paired_eval, test_levels=True)
                test_score = member.evaluate(cfg.eval_episodes, cfg.deterministic_eval, test_seed, test_levels=True)
            eval_s = time.perf_counter() - t_eval0

            t_sel0 = time.perf_counter()
            statuses = comm.allgather((score, test_score, hp_used))
            scores = [s[0] for s in statuses]
            tests = [s[1] for s in statuses]
            sel = [(t if t is not None else math.nan) for t in tests] if cfg.select_on == "test" else scores
            decisions: list[Decision] = []
            if not baseline and cfg.exchange and world > 1:
                all_hp = [s[2] for s in statuses]
                decisions = comm_mod.root_decides(comm, partial(
                    decide, cfg.strategy, gen, sel, all_hp, space, cfg.quantile, cfg.seed))
            select_s = time.perf_counter() - t_sel0

            t_ex0 = time.perf_counter()
            if transport is not None:
                exchange(transport, member, decisions)
            exchange_s = time.perf_counter() - t_ex0
            gen_s = time.perf_counter() - t_gen0

            donor = {d.receiver: d.donor for d in decisions}.get(rank, -1)
            returns = [r for _, r, _ in stats.episodes]
            row: dict[str, Any] = {
                "generation": gen, "member": rank, "score": score, "test_score": test_score,
                "failed": int(not math.isfinite(score)), "env_steps": member.num_timesteps,
                "copied_from": donor, "episodes": len(returns),
                "mean_episodic_return": float(np.mean(returns)) if returns else None,
                **{f"hp_{k}": v for k, v in hp_used.items()},
                "time_train_s": stats.seconds, "time_rollout_s": stats.rollout_seconds,
                "time_learn_s": stats.learn_seconds, "time_eval_s": eval_s, "time_select_s": select_s,
                "time_exchange_s": exchange_s, "time_generation_s": gen_s,
                "env_steps_per_s": cfg.steps_per_generation / stats.seconds if stats.seconds > 0 else None,
            }
            rows = comm.gather(row, root=0)
            _log_member_tb(tb, member, stats, row, hp_used)
            last_scores, last_test, last_sel, last_hp = scores, tests, list(sel), hp_used
            if rank == 0:
                assert rows is not None and members_csv and generations_csv and lineage
                total = sum(int(r["env_steps"]) for r in rows)
                for r in rows:
                    r["total_env_steps"] = total
                members_csv.write(rows)
                best, mean, worst = _stats(scores)
                tbest, tmean, tworst = _stats([t for t in tests if t is not None])
                chosen = best_member(sel) if not all(math.isnan(s) for s in sel) else -1
                gen_row = {
                    "generation": gen, "env_steps": member.num_timesteps, "total_env_steps": total,
                    "best_score": best, "mean_score": mean, "worst_score": worst, "best_member": chosen,
                    "best_member_score": scores[chosen] if chosen >= 0 else None,
                    "best_member_test_score": tests[chosen] if chosen >= 0 else None,
                    "best_test_score": tbest, "mean_test_score": tmean, "worst_test_score": tworst,
                    "n_exploits": len(decisions), "n_failed": sum(1 for s in scores if not math.isfinite(s)),
                    "wall_s": time.perf_counter() - t_run0,
                    "exchange_ms_max": 1000 * max(float(r["time_exchange_s"]) for r in rows),
                    "generation_s_max": max(float(r["time_generation_s"]) for r in rows),
                }
                generations_csv.write([gen_row])
                lineage.write(asdict(d) for d in decisions)
                pop_tb.scalars({
                    "population/best_score": best, "population/mean_score": mean, "population/worst_score": worst,
                    "population/best_test_score": tbest, "population/mean_test_score": tmean,
                    "population/worst_test_score": tworst, "population/n_exploits": len(decisions),
                    "population/total_env_steps": total, "time/exchange_ms_max": gen_row["exchange_ms_max"],
                }, step=member.num_timesteps)
                if cfg.verbose:
                    _print_generation(cfg, gen_row, rows)

            save_every = getattr(cfg, "save_every", 0)
            if baseline and save_every and (gen + 1) % save_every == 0 and gen + 1 < cfg.generations:
                member.save_model(run_dir / "models" / f"member_{rank:03d}_steps_{member.num_timesteps}.zip")
            if cfg.checkpoint_every and ((gen + 1) % cfg.checkpoint_every == 0 or gen + 1 == cfg.generations):
                ckpt_s = _checkpoint(cfg, comm, member, gen + 1, expected, scores, tests, sel,
                                     time.perf_counter() - t_run0, ckpt_log)
                last_checkpoint = gen + 1
                tb.scalars({"time/checkpoint_s": ckpt_s}, step=member.num_timesteps)
        else:
            gen = cfg.generations
    finally:
        tb.flush()
        pop_tb.flush()

    if exit_code == 0 and start_gen >= cfg.generations and resume_dir is not None:
        # resumed after the final checkpoint (e.g. killed before the final files were written)
        population = comm_mod.root_decides(comm, lambda: json.loads((Path(resume_dir) / "population.json").read_text()))
        last_scores = [math.nan if v is None else float(v) for v in population["scores"]]
        last_test = list(population.get("test_scores") or [None] * world)
        last_sel = [math.nan if v is None else float(v) for v in population.get("selection_scores", last_scores)]
    if exit_code == 0:
        _finish(cfg, comm, member, tb, last_scores, last_test, last_sel, last_hp, time.perf_counter() - t_run0)
    if exit_code == EXIT_PREEMPTED and rank == 0:
        stands = (f"the checkpoint after generation {last_checkpoint} stands; resume with --resume"
                  if last_checkpoint else "no checkpoint was written yet; a rerun starts over")
        print(f"evo: stop signal received; stopped within one env step, in generation {gen + 1} of "
              f"{cfg.generations}, which is dropped ({stands}). Exit code {EXIT_PREEMPTED}.",
              file=sys.stderr, flush=True)
    for w in (members_csv, generations_csv, lineage, ckpt_log):
        if w is not None:
            w.close()
    tb.close()
    pop_tb.close()
    member.close()
    return exit_code


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
    space = parse_space(text, cfg.rollout_size, str(cfg.hyperparams))
    check_batch_size(space, cfg.rollout_size)
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
        **{f"hparams/{k}": v for k, v in hp.items()},
        **{f"time/{k[5:]}": row[k] for k in MEMBER_COLUMNS_TAIL if k.startswith("time_")},
    }
    tb.scalars(values, step=step)


def _print_generation(cfg: PBTConfig, g: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
    def f(v: Any) -> str:
        return "nan" if v is None else f"{v:.2f}"

    print(f"gen {g['generation'] + 1:>3}/{cfg.generations} | best {f(g['best_score'])} "
          f"mean {f(g['mean_score'])} worst {f(g['worst_score'])} | steps/member {g['env_steps']} | "
          f"wall {g['wall_s']:.1f}s | exchange {g['exchange_ms_max']:.1f} ms | exploits {g['n_exploits']}",
          flush=True)


def _checkpoint(cfg: CommonConfig, comm: Any, member: Member, generation: int, meta: Mapping[str, Any],
                scores: Sequence[float], tests: Sequence[float | None], selection: Sequence[float], wall: float,
                log: JsonlWriter | None) -> float:
    """Two-phase checkpoint of the population after ``generation`` completed generations.

    Returns this rank's seconds (its member's files; the per-generation maximum and sizes go to
    ``checkpoints.jsonl``)."""
    directory = ckpt.gen_dir(cfg.run_dir, generation)
    size, seconds = ckpt.write_member(directory, member)
    sizes = comm.gather((size, seconds), root=0)
    comm.Barrier()  # phase 1 done on every rank
    if comm.Get_rank() == 0:
        assert sizes is not None
        if os.environ.get("EVO_FAULT") == f"manifest:0:{generation - 1}":  # test hook: rank 0 alone fails
            raise ckpt.CheckpointError(f"injected fault: cannot write the manifest of {directory}")
        ckpt.write_manifest(directory, generation, comm.Get_size(), meta,
                            {"generation": generation, "scores": [_nan_none(v) for v in scores],
                             "test_scores": [_nan_none(v) for v in tests],
                             "selection_scores": [_nan_none(v) for v in selection], "wall_s": wall})
        ckpt.prune(cfg.run_dir)
        if log is not None:
            log.write([{"generation": generation - 1, "completed_generations": generation,
                        "bytes_total": sum(s for s, _ in sizes), "bytes_per_member": sizes[0][0],
                        "seconds_max": max(t for _, t in sizes)}])
    return seconds


def _finish(cfg: PBTConfig, comm: Any, member: Member, tb: TensorBoard, scores: Sequence[float],
            tests: Sequence[float | None], selection: Sequence[float], hparams: HParams | None, wall: float) -> None:
    """Save the best member's model, HParams entries and a summary.

    "Best" ranks on the score selection uses (``--select-on``). The HParams entry pairs each
    member's final score with the hyperparameters it trained the final generation with (not
    the ones it explored to after the final exploit).
    """
    rank = comm.Get_rank()
    if selection and not all(math.isnan(s) for s in selection):
        best = best_member(selection)
        if rank == best:
            member.save_model(cfg.run_dir / "best_model.zip")
    else:
        best = -1
    if cfg.strategy == "baseline":
        member.save_model(cfg.run_dir / "models" / f"final_member_{rank:03d}.zip")
    score = scores[rank] if scores else math.nan
    metrics = {"hparams/final_score": score}
    if tests and tests[rank] is not None:
        metrics["hparams/final_test_score"] = float(tests[rank])
    tb.hparams(hparams if hparams is not None else member.hparams, metrics, run_name=".")
    # Scores on fresh episodes that no selection ever saw: the selected member's last score is
    # biased upwards (it won on those very episodes); this one is not.
    final_seed = seeds.final_eval_seed(cfg.seed)
    final = comm.gather(member.evaluate(cfg.eval_episodes, cfg.deterministic_eval, final_seed), root=0)
    if rank == 0:
        assert final is not None
        write_json(cfg.run_dir / "summary.json", {
            "generations": cfg.generations, "world_size": comm.Get_size(), "best_member": best,
            "select_on": getattr(cfg, "select_on", "train"),
            "best_score": scores[best] if best >= 0 else None,
            "best_test_score": _nan_none(tests[best]) if best >= 0 and tests and tests[best] is not None else None,
            "final_scores": [_nan_none(s) for s in scores],
            "final_test_scores": [_nan_none(t) for t in tests], "env_steps_per_member": member.num_timesteps,
            "final_eval": {"scores": [_nan_none(v) for v in final], "episodes": cfg.eval_episodes,
                           "seed": final_seed, "paired": True,
                           "note": "fresh episodes never used for selection (same episodes for every member)"},
            "wall_s": wall, "strategy": cfg.strategy,
        })
        if cfg.verbose and best >= 0:
            print(f"done: best member {best} score {scores[best]:.2f}; outputs in {cfg.run_dir}", flush=True)


def _nan_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


__all__ = ["EXIT_PREEMPTED", "Decision", "StopFlag", "decide", "dumps_line", "run"]
