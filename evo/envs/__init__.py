"""Environment factory: Gymnasium ids, your own env as ``package.module:Name-v0`` with kwargs and
wrappers, and the 16 ProcGen games, as stable-baselines3 VecEnvs.

Knows nothing of MPI or PBT. ``make_vec_env(spec, n_envs, seed)`` is the only entry point the
rest of evo uses to build envs. Two checks: ``check_env(spec)`` validates a spec cheaply and
imports no user code, so every rank rejects a bad ``--env-id`` with the same one-line error;
``verify_env(cfg)`` imports the env's module and wrappers, builds one env (kwargs and wrappers
applied) and checks the policy and algorithm against its spaces: every rank makes it before training.
"""

from __future__ import annotations

import functools
import pickle
from typing import Any

from stable_baselines3.common.vec_env import VecEnv

from evo.envs.build import env_spaces, import_object, make_gym_env, verify_env
from evo.envs.spec import (
    DISTRIBUTION_MODES,
    ENV_FILE_KEYS,
    PROCGEN_GAMES,
    EnvSpec,
    WrapperSpec,
    check_env,
    collect_flag,
    env_kwargs,
    env_settings_from_yaml,
    merge_env_settings,
    parse_key_values,
    procgen_game,
    split_env_id,
    split_env_settings,
    wrappers,
    wrappers_value,
)

__all__ = [
    "DISTRIBUTION_MODES", "ENV_FILE_KEYS", "PROCGEN_GAMES", "EnvSpec", "WrapperSpec", "check_env", "collect_flag",
    "env_kwargs", "env_settings_from_yaml", "env_snapshot", "env_spaces", "import_object", "make_gym_env",
    "make_vec_env", "merge_env_settings", "parse_key_values", "procgen_game", "restore_env_snapshot", "split_env_id",
    "split_env_settings", "verify_env", "wrappers", "wrappers_value",
]


def make_vec_env(spec: EnvSpec, n_envs: int, seed: int, *, test_levels: bool = False) -> VecEnv:
    """Build ``n_envs`` copies of ``spec`` as one VecEnv that reports episodes like VecMonitor.

    Gymnasium envs: a ``DummyVecEnv`` of :func:`~evo.envs.build.make_gym_env` envs (kwargs and
    wrappers applied), each inside SB3's ``Monitor``, so scores are the returns of the wrapped env.
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

    return sb3_make_vec_env(functools.partial(make_gym_env, spec), n_envs=n_envs, seed=seed,
                            vec_env_cls=DummyVecEnv)


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
