"""Environment factory: Gymnasium ids and the 16 ProcGen games, as stable-baselines3 VecEnvs.

Knows nothing of MPI or PBT. ``make_vec_env(spec, n_envs, seed)`` is the only entry point the
rest of evo uses; ``check_env(spec)`` validates a spec cheaply (no env is built) so every rank
can reject a bad ``--env-id`` with the same one-line error.
"""

from __future__ import annotations

import difflib
import pickle
from dataclasses import dataclass
from typing import Any

from stable_baselines3.common.vec_env import VecEnv

from evo.errors import ConfigError

PROCGEN_GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip
DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")


@dataclass(frozen=True)
class EnvSpec:
    """What to build: an env id plus the ProcGen level options (ignored for Gymnasium ids)."""

    env_id: str
    num_levels: int = 0
    start_level: int = 0
    distribution_mode: str = "easy"

    @property
    def is_procgen(self) -> bool:
        return procgen_game(self.env_id) is not None


def procgen_game(env_id: str) -> str | None:
    """The ProcGen game named by ``env_id`` (``bigfish``, ``procgen-bigfish-v0``...), else None."""
    name = env_id.lower()
    for prefix in ("procgen:", "procgen-"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.endswith("-v0"):
        name = name[:-3]
    return name if name in PROCGEN_GAMES else None


def check_env(spec: EnvSpec) -> None:
    """Raise :class:`ConfigError` (one line) if ``spec`` cannot be built."""
    if spec.is_procgen:
        if spec.num_levels < 0 or spec.start_level < 0:
            raise ConfigError("--num-levels and --start-level must be >= 0")
        from evo.envs.procgen import check_procgen_options

        game = procgen_game(spec.env_id)
        assert game is not None
        check_procgen_options(game, spec.distribution_mode, spec.num_levels, spec.start_level)
        return
    import gymnasium as gym

    if spec.env_id.lower().startswith("procgen"):
        raise ConfigError(f"unknown ProcGen game {spec.env_id!r}; valid games: {', '.join(PROCGEN_GAMES)}")
    try:
        gym.spec(spec.env_id)
    except Exception:
        close = difflib.get_close_matches(spec.env_id.lower(), PROCGEN_GAMES, n=1)
        close += difflib.get_close_matches(spec.env_id, list(gym.registry), n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown env id {spec.env_id!r}: not a registered Gymnasium id nor a ProcGen game "
            f"({', '.join(PROCGEN_GAMES)}).{hint}"
        ) from None


def make_vec_env(spec: EnvSpec, n_envs: int, seed: int, *, test_levels: bool = False) -> VecEnv:
    """Build ``n_envs`` copies of ``spec`` as one VecEnv that reports episodes like VecMonitor.

    ``test_levels=True`` (ProcGen only) builds the held-out levels: levels outside the training
    range ``[start_level, start_level + num_levels)``.
    """
    check_env(spec)
    if spec.is_procgen:
        from evo.envs.procgen import make_procgen_vec_env

        game = procgen_game(spec.env_id)
        assert game is not None
        return make_procgen_vec_env(
            game,
            n_envs,
            seed=seed,
            num_levels=spec.num_levels,
            start_level=spec.start_level,
            distribution_mode=spec.distribution_mode,
            test_levels=test_levels,
        )
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    return sb3_make_vec_env(spec.env_id, n_envs=n_envs, seed=seed, vec_env_cls=DummyVecEnv)


# -- snapshots: continuing episodes across a checkpoint -------------------------------------------
_DUMMY_FIELDS = ("envs", "buf_obs", "buf_dones", "buf_rews", "buf_infos", "reset_infos", "_seeds", "_options")


def env_snapshot(venv: VecEnv) -> bytes | None:
    """Everything needed to continue ``venv``'s episodes exactly where they are, or ``None``.

    ProcGen: the gym3 engine's ``get_state`` (levels, RNGs, in-progress episodes). Gymnasium
    envs in a ``DummyVecEnv``: the envs themselves, pickled with their wrappers (``Monitor``'s
    in-progress episode return and length included) and the VecEnv's buffers. ``None`` when the
    env cannot be pickled (a resume then starts fresh episodes and says so).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv

    from evo.envs.procgen import ProcgenVecEnv

    try:
        if isinstance(venv, ProcgenVecEnv):
            return pickle.dumps({"kind": "procgen", "state": venv.get_snapshot()})
        if isinstance(venv, DummyVecEnv):
            return pickle.dumps({"kind": "dummy", "state": {k: getattr(venv, k) for k in _DUMMY_FIELDS}})
    except Exception:  # an env holding a handle, a lambda, a native object...: not snapshotable
        return None
    return None


def restore_env_snapshot(venv: VecEnv, blob: bytes) -> None:
    """Put ``venv`` back into the state :func:`env_snapshot` captured (same env and n_envs)."""
    from evo.envs.procgen import ProcgenVecEnv

    snap: dict[str, Any] = pickle.loads(blob)
    if snap["kind"] == "procgen" and isinstance(venv, ProcgenVecEnv):
        venv.set_snapshot(snap["state"])
        return
    if snap["kind"] == "dummy" and hasattr(venv, "envs"):
        state = snap["state"]
        if len(state["envs"]) != venv.num_envs:
            raise ValueError(f"env snapshot has {len(state['envs'])} envs, this VecEnv {venv.num_envs}")
        for env in venv.envs:
            env.close()
        for key, value in state.items():
            setattr(venv, key, value)
        return
    raise ValueError(f"env snapshot of kind {snap['kind']!r} does not fit a {type(venv).__name__}")
