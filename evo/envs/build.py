"""Building one Gymnasium env from an :class:`~evo.envs.spec.EnvSpec`: import the module that
registers it, ``gymnasium.make`` it with its kwargs, apply the wrappers.

Every failure is a one-line :class:`ConfigError` naming what to fix (a module that cannot be
imported says on which host, since a package installed on some nodes only is the usual cause).
:func:`env_spaces` builds one env and reads its spaces; :func:`verify_env` is the check every
rank makes before training.
"""

from __future__ import annotations

import difflib
import importlib
import socket
from typing import Any

from evo.envs.spec import EnvSpec, split_env_id, split_import_path
from evo.errors import ConfigError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def import_module(module: str, what: str) -> Any:
    """Import ``module`` (named by ``what``); a one-line :class:`ConfigError` naming the host if it fails."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ModuleNotFoundError, or any error raised while the module runs
        raise ConfigError(f"cannot import {module!r} ({what}) on host {socket.gethostname()}: {_first_line(exc)}; "
                          f"is its folder on PYTHONPATH (or the package installed) on every node?") from None


def import_object(path: str, what: str = "--wrapper") -> Any:
    """The object an import path names (``pkg.mod:Class``, ``pkg.mod:Outer.Inner`` or ``pkg.mod.Class``)."""
    module, attr = split_import_path(path, what)
    obj = import_module(module, f"{what} {path}")
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what} {path}: {module} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{what} {path}: {attr} is not callable (expected a gymnasium.Wrapper class)")
    return obj


def _origin(entry_point: Any) -> str:
    """The module an env's entry point lives in."""
    if isinstance(entry_point, str):
        return entry_point.split(":")[0]
    return str(getattr(entry_point, "__module__", ""))


def _registered(spec: EnvSpec) -> None:
    """Import ``spec``'s module (if any) and check that the id is registered."""
    import gymnasium as gym

    module, name = split_env_id(spec.env_id)
    if module is not None:
        import_module(module, f"named by --env-id {spec.env_id}")
    if name in gym.registry:
        return
    if module is not None:
        top = module.split(".")[0]
        ours = sorted(k for k, s in gym.registry.items() if _origin(s.entry_point).split(".")[0] == top)
        found = f"it registers {', '.join(ours)}" if ours else "it registers no env"
        raise ConfigError(f"--env-id {spec.env_id}: importing {module} did not register {name!r} ({found}); "
                          f"call gymnasium.register(id={name!r}, entry_point=...) in {module}")
    close = difflib.get_close_matches(name, list(gym.registry), n=2)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown env id {name!r}.{hint}")


def make_gym_env(spec: EnvSpec) -> Any:
    """One env of ``spec``: ``gymnasium.make(id, render_mode="rgb_array", **env_kwargs)`` (as SB3's
    ``make_vec_env`` makes it; without ``render_mode`` for an env that does not take one), then the
    wrappers in order. Picklable as ``functools.partial(make_gym_env, spec)``."""
    import gymnasium as gym

    _registered(spec)
    name = spec.name
    kwargs = dict(spec.env_kwargs)
    given = f" with --env-kwargs {' '.join(f'{k}={v!r}' for k, v in kwargs.items())}" if kwargs else ""
    try:
        try:
            env = gym.make(name, render_mode="rgb_array", **kwargs)
        except TypeError as exc:
            if "render_mode" not in str(exc):
                raise
            env = gym.make(name, **kwargs)
    except Exception as exc:
        raise ConfigError(f"cannot make {name}{given}: {_first_line(exc)}") from None
    for w in spec.wrappers:
        wrapper = import_object(w.path)
        try:
            wrapped = wrapper(env, **dict(w.kwargs))
        except Exception as exc:
            env.close()
            raise ConfigError(f"--wrapper {w.describe()}: {_first_line(exc)}") from None
        if not isinstance(wrapped, gym.Env):
            env.close()
            raise ConfigError(f"--wrapper {w.path} returned a {type(wrapped).__name__}, not a gymnasium.Env")
        env = wrapped
    return env


def env_spaces(spec: EnvSpec) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of one env of ``spec``, kwargs and wrappers applied
    (ProcGen: its fixed spaces, without starting the engine). One-line :class:`ConfigError` if the
    env cannot be built here."""
    from evo.envs.spec import check_env

    check_env(spec)
    if spec.is_procgen:
        import numpy as np
        from gymnasium import spaces

        from evo.envs.procgen import N_ACTIONS, OBS_SHAPE

        return spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8), spaces.Discrete(N_ACTIONS)
    env = make_gym_env(spec)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def verify_env(cfg: Any) -> None:
    """The checks of a run's env that import the user's code and build one env (kwargs and wrappers
    applied): its module and wrappers import, ``cfg.policy`` can read its observations, ``cfg.algo``
    can drive its actions. ``cfg``: a :class:`~evo.config.CommonConfig`.

    Call it on every rank before training (``evo.comm.on_every_rank(comm, lambda: verify_env(cfg))``):
    an env that builds on some ranks only then ends the job everywhere with one line.
    """
    from evo.core.algos import algo_spec
    from evo.policies import resolve_policy

    obs, act = env_spaces(cfg.env_spec())
    resolve_policy(cfg.policy, obs, cfg.algo)
    allowed = algo_spec(cfg.algo).action_spaces
    if type(act).__name__ not in allowed:
        raise ConfigError(f"--algo {cfg.algo} needs one of {', '.join(allowed)} action spaces, "
                          f"but {cfg.env_id} (kwargs and wrappers applied) has {act}")
