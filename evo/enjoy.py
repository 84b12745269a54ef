"""Watch a trained agent play: ``python -m evo.enjoy RUN_DIR`` (the RL Zoo's ``enjoy``).

Loads a model from a run directory (``<log-dir>/<exp-name>``) and plays it on the run's env in
one process (no MPI), printing one line per episode and a mean; ``--gif`` / ``--mp4`` record it.

Which model:

* default: ``best_model.zip``, the run's final best member;
* ``--member K``: member K of the newest complete checkpoint (``checkpoints/gen_NNNNNN/member_KKK.zip``,
  complete = it has a ``manifest.json``); in a baseline run, seed K's final model
  ``models/final_member_KKK.zip`` if there is one;
* ``--generation G --member K``: member K of the checkpoint after generation G (only the two
  newest checkpoints are kept).

The env (its ProcGen level options, or its ``--env-kwargs`` and ``--wrapper`` chain, whose module must be
importable here as in training), the seed, the evaluation mode (deterministic or sampled
actions) and the algorithm (``config.algo``, default PPO) come from the run's ``config.json``.
A ``VecNormalize`` statistics file next to the model (same stem + ``.vecnormalize.pkl``) is
loaded frozen, with raw rewards, so the printed returns are the env's own.

Where recordings go: ``--gif`` alone writes ``RUN_DIR/winner.gif`` (``member_KKK.gif``,
``member_KKK_gen_G.gif`` for ``--member K [--generation G]``), which ``evo.report RUN_DIR`` shows; a bare
file name (``--gif best.gif``) also goes into the run directory; a path with a folder in it (``./x.gif``,
``out/x.gif``, ``/tmp/x.gif``) is used as given. ``--mp4`` likewise (``winner.mp4``).

Frames and the GIF / MP4 files: see :mod:`evo.recorder`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo.errors import ConfigError, EvoError
from evo.recorder import VIDEO_HINT, Recorder

PROG = "python -m evo.enjoy"
DESCRIPTION = "Play a trained agent from an evo run directory, and optionally record it as a GIF or MP4."

VECNORMALIZE_SUFFIX = ".vecnormalize.pkl"


# -- command line -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run to play (<log-dir>/<exp-name>)")
    p.add_argument("--member", type=int, default=None,
                   help="play member K from the newest complete checkpoint (baseline runs: seed K's final model) "
                        "instead of best_model.zip")
    p.add_argument("--generation", type=int, default=None,
                   help="with --member: take the member from the checkpoint after generation G")
    p.add_argument("--episodes", type=int, default=3, help="episodes to play (default: 3)")
    p.add_argument("--seed", type=int, default=None, help="env and action seed (default: the run's seed)")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=None,
                   help="pick the most likely action (default: the run's evaluation mode)")
    p.add_argument("--test-levels", action="store_true",
                   help="ProcGen: play held-out levels (outside the run's training levels)")
    where = ("alone: RUN_DIR/winner.{0} for the best model (where evo.report finds it), RUN_DIR/member_KKK.{0} "
             "with --member; a bare file name also goes into RUN_DIR; a path with a folder (./x.{0}, out/x.{0}) is "
             "used as given")
    p.add_argument("--gif", metavar="FILE", nargs="?", const="", default=None,
                   help="record the frames as an animated GIF; " + where.format("gif"))
    p.add_argument("--mp4", metavar="FILE", nargs="?", const="", default=None,
                   help=f"record the frames as an MP4 ({VIDEO_HINT}); " + where.format("mp4"))
    p.add_argument("--fps", type=float, default=30.0, help="frames per second of the recording (default: 30)")
    p.add_argument("--scale", type=int, default=None,
                   help="integer upscaling of the frames (default: 4 for ProcGen's 64x64 frames, else 1)")
    p.add_argument("--max-frames", type=int, default=3000,
                   help="record at most this many frames (default: 3000); play continues unrecorded")
    p.add_argument("--device", default="cpu", help="torch device of the model (default: cpu)")

    def error(message: str) -> Any:
        raise ConfigError(message)

    p.error = error  # type: ignore[method-assign]
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.member is not None and args.member < 0:
        raise ConfigError(f"--member must be >= 0, got {args.member}")
    if args.generation is not None:
        if args.member is None:
            raise ConfigError("--generation needs --member K (which member of that checkpoint to play)")
        if args.generation < 0:
            raise ConfigError(f"--generation must be >= 0, got {args.generation}")
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    if args.scale is not None and args.scale < 1:
        raise ConfigError(f"--scale must be an integer >= 1, got {args.scale}")
    if args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")


def default_stem(member: int | None, generation: int | None) -> str:
    """The recording's name without suffix: ``winner`` (the best model), ``member_KKK`` or ``member_KKK_gen_G``."""
    if member is None:
        return "winner"
    return f"member_{member:03d}" + (f"_gen_{generation}" if generation is not None else "")


def output_path(run_dir: Path, value: str | None, stem: str, suffix: str) -> Path | None:
    """Where ``--gif``/``--mp4 value`` writes: None if not asked; ``run_dir/<stem><suffix>`` for the bare
    flag; ``run_dir/value`` for a bare file name; ``value`` itself if it names a folder too."""
    if value is None:
        return None
    if value == "":
        return run_dir / f"{stem}{suffix}"
    return run_dir / value if Path(value).name == value else Path(value)


def recording_paths(args: argparse.Namespace, run_dir: Path) -> tuple[Path | None, Path | None]:
    """The GIF and MP4 targets; a :class:`ConfigError` if one is a folder or both are the same file."""
    stem = default_stem(args.member, args.generation)
    gif, mp4 = output_path(run_dir, args.gif, stem, ".gif"), output_path(run_dir, args.mp4, stem, ".mp4")
    for flag, path in (("--gif", gif), ("--mp4", mp4)):
        if path is not None and path.is_dir():
            raise ConfigError(f"{flag} {path} is a folder: name a file")
    if gif is not None and mp4 is not None and gif.resolve() == mp4.resolve():
        raise ConfigError("--gif and --mp4 name the same file")
    return gif, mp4


# -- the run directory ------------------------------------------------------------------------------
def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The run's whole ``config.json``; a :class:`ConfigError` if ``run_dir`` is not a run."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ConfigError(f"no such run directory: {path}")
    config_path = path / "config.json"
    if not config_path.is_file():
        inner = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
        hint = f"; it contains run directories: {', '.join(inner[:5])}{', ...' if len(inner) > 5 else ''}" \
            if inner else ""
        raise ConfigError(f"{path} is not an evo run directory (no config.json){hint}")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{config_path} is unreadable: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "env_id" not in meta["config"]:
        raise ConfigError(f"{config_path} has no config.env_id: not an evo run's config")
    return meta


def complete_checkpoints(run_dir: Path, member: int) -> dict[int, Path]:
    """Generation -> folder of every checkpoint with member ``member``'s manifest."""
    from evo.loop.checkpoints import member_manifest

    root = run_dir / "checkpoints"
    found: dict[int, Path] = {}
    if root.is_dir():
        for d in root.iterdir():
            if (d.is_dir() and d.name.startswith("gen_") and d.name[4:].isdigit()
                    and member_manifest(d, member).is_file()):
                found[int(d.name[4:])] = d
    return found


def _final_models(run_dir: Path) -> list[int]:
    models = run_dir / "models"
    if not models.is_dir():
        return []
    out = []
    for p in models.glob("final_member_*.zip"):
        stem = p.stem[len("final_member_"):]
        if stem.isdigit():
            out.append(int(stem))
    return sorted(out)


def choose_model(run_dir: Path, meta: dict[str, Any], member: int | None, generation: int | None) -> tuple[Path, str]:
    """(model zip, what it is in words) for the requested member; a :class:`ConfigError` if absent."""
    cfg = meta["config"]
    baseline = cfg.get("strategy") == "baseline"
    finals = _final_models(run_dir) if baseline else []
    if member is None:
        best = run_dir / "best_model.zip"
        if best.is_file():
            return best, "best model"
        raise ConfigError(f"{run_dir} has no best_model.zip (the run has not finished?); "
                          f"play a member of its newest checkpoint with --member K")
    if generation is None and member in finals:
        return run_dir / "models" / f"final_member_{member:03d}.zip", f"final model of seed {member}"
    size = int(cfg.get("num_agents") or meta.get("world_size") or 0)
    if size and member >= size:
        raise ConfigError(f"--member {member} is out of range: the run has {size} member(s), 0 to {size - 1}")
    gens = complete_checkpoints(run_dir, member)
    if not gens:
        extra = f"; final models of seeds {', '.join(map(str, finals))} are in models/" if finals else ""
        raise ConfigError(f"{run_dir} has no checkpoint of member {member} "
                          f"(checkpoints/gen_*/member_{member:03d}.manifest.json){extra}")
    if generation is None:
        generation = max(gens)
    elif generation not in gens:
        raise ConfigError(f"no checkpoint of member {member} after generation {generation} in "
                          f"{run_dir / 'checkpoints'}; available: {', '.join(map(str, sorted(gens)))} "
                          f"(only the two newest are kept)")
    from evo.loop.checkpoints import read_member_manifest

    directory = gens[generation]
    read_member_manifest(directory, member)  # every file there, with its recorded size
    return directory / f"member_{member:03d}.zip", f"member {member} of generation {generation}"


def vecnormalize_file(model_path: Path) -> Path:
    """Where the ``VecNormalize`` statistics of ``model_path`` are kept, if it has any."""
    return model_path.with_name(model_path.stem + VECNORMALIZE_SUFFIX)


def algo_class(cfg: dict[str, Any]) -> Any:
    """The stable_baselines3 class of the run's algorithm (``config.algo``, default ``ppo``): the
    ``sb3_class`` of its registered learner."""
    from evo.learners import LEARNERS

    name = str(cfg.get("algo") or "ppo").lower()
    if name not in LEARNERS:
        raise ConfigError(f"the run's algorithm {name!r} is not one enjoy can load (known: {', '.join(LEARNERS)})")
    return LEARNERS[name].sb3_class


def default_deterministic(meta: dict[str, Any]) -> bool:
    """The run's resolved evaluation mode (``config.json``'s top-level ``deterministic_eval``)."""
    if "deterministic_eval" in meta:
        return bool(meta["deterministic_eval"])
    cfg = meta["config"]
    if cfg.get("eval_deterministic") is not None:
        return bool(cfg["eval_deterministic"])
    from evo.envs import procgen_game

    return procgen_game(str(cfg["env_id"])) is None


# -- playing ---------------------------------------------------------------------------------------
def make_env(cfg: dict[str, Any], seed: int, *, test_levels: bool) -> Any:
    """One env of the run's kind, as the run built it (kwargs and wrappers too), as a VecEnv.
    Gymnasium envs render ``rgb_array`` frames; ProcGen's frames are its observations."""
    from evo.envs import EnvSpec, make_vec_env

    spec = EnvSpec.from_config(cfg)
    if test_levels and not spec.is_procgen:
        raise ConfigError("--test-levels needs a ProcGen run (held-out levels are a ProcGen notion)")
    return make_vec_env(spec, 1, seed, test_levels=test_levels)


def grab_frame(venv: Any) -> Any:
    """The env's current screen; a :class:`ConfigError` if rendering needs a package that is missing."""
    from gymnasium.error import DependencyNotInstalled

    try:
        return venv.get_images()[0]
    except (ImportError, DependencyNotInstalled) as exc:
        raise ConfigError(f"cannot render the env: {exc}") from None


@dataclass
class Tally:
    """What has been played so far (kept up to date, so an interrupted play still reports)."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    steps: int = 0


def play(model: Any, venv: Any, episodes: int, deterministic: bool, recorder: Recorder | None,
         emit: Callable[[str], None], tally: Tally) -> None:
    """Play ``episodes`` episodes on the 1-env ``venv``; record a frame before every action."""
    import numpy as np

    obs = venv.reset()
    state = None
    episode_start = np.ones((1,), dtype=bool)
    ep_return, ep_length = 0.0, 0
    while len(tally.returns) < episodes:
        if recorder is not None and not recorder.full:
            recorder.add(grab_frame(venv))
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
        obs, rewards, dones, _ = venv.step(action)
        ep_return += float(rewards[0])
        ep_length += 1
        tally.steps += 1
        episode_start = np.asarray(dones, dtype=bool)
        if dones[0]:
            tally.returns.append(ep_return)
            tally.lengths.append(ep_length)
            emit(f"episode {len(tally.returns)}/{episodes}: return {ep_return:.2f}, length {ep_length}")
            ep_return, ep_length = 0.0, 0


def enjoy(args: argparse.Namespace) -> int:
    check_args(args)
    run_dir = Path(args.run_dir)
    meta = read_run(run_dir)
    cfg = meta["config"]
    model_path, what = choose_model(run_dir, meta, args.member, args.generation)
    gif, mp4 = recording_paths(args, run_dir)
    cls = algo_class(cfg)
    seed = int(args.seed if args.seed is not None else cfg.get("seed", 0))
    deterministic = default_deterministic(meta) if args.deterministic is None else bool(args.deterministic)
    from evo.envs import procgen_game

    procgen = procgen_game(str(cfg["env_id"])) is not None
    recorder = None
    if gif is not None or mp4 is not None:
        scale = args.scale if args.scale is not None else (4 if procgen else 1)
        recorder = Recorder(gif, mp4, args.fps, scale, args.max_frames)

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame-rendered envs: no sound device, no warning
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    import numpy as np
    import torch
    from stable_baselines3.common.utils import set_random_seed
    from stable_baselines3.common.vec_env import VecNormalize

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one observation at a time: more threads only add overhead
    venv = None
    try:
        venv = make_env(cfg, seed, test_levels=args.test_levels)
        stats = vecnormalize_file(model_path)
        if stats.is_file():
            venv = VecNormalize.load(str(stats), venv)
            venv.training = False
            venv.norm_reward = False
        # Schedules are not needed to act; replacing them avoids unpickling closures of another Python.
        custom = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
        model = cls.load(str(model_path), device=args.device, custom_objects=custom)
        set_random_seed(seed)
        mode = "deterministic" if deterministic else "sampled"
        norm = f", VecNormalize statistics {stats.name}" if stats.is_file() else ""
        levels = ", held-out levels" if args.test_levels else ""
        print(f"{what} of {run_dir} ({model_path.name}): {cfg['env_id']}{levels}, {cls.__name__}, seed {seed}, "
              f"{mode} actions{norm}", flush=True)
        code = 0
        tally = Tally()
        try:
            play(model, venv, args.episodes, deterministic, recorder, lambda line: print(line, flush=True), tally)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted after {tally.steps} steps", file=sys.stderr, flush=True)
            code = 130
        if tally.returns:
            print(f"mean return {np.mean(tally.returns):.2f} +- {np.std(tally.returns):.2f} over "
                  f"{len(tally.returns)} episode(s), mean length {np.mean(tally.lengths):.1f}", flush=True)
        if recorder is not None:
            for line in recorder.finish(tally.steps):
                print(line, flush=True)
        return code
    except BaseException:
        if recorder is not None:
            recorder.discard()
        raise
    finally:
        if venv is not None:
            venv.close()
        torch.set_num_threads(threads)


def guard(body: Callable[[], int], prog: str = PROG) -> int:
    """Bad input: one line and its exit code (2). A crash: one line and 1 (``EVO_TRACEBACK=1``: traceback)."""
    try:
        return body()
    except EvoError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("EVO_TRACEBACK"):
            import traceback

            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else ""
        print(f"{prog}: error: {type(exc).__name__}: {msg} (set EVO_TRACEBACK=1 for the traceback)",
              file=sys.stderr, flush=True)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    return guard(lambda: enjoy(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
