"""What env to build: :class:`EnvSpec` and the checks that need nothing but the spec itself.

An env is named three ways:

* a Gymnasium id (``CartPole-v1``), looked up in Gymnasium's registry;
* ``package.module:Name-v0`` (Gymnasium's ``module:id`` convention): ``package.module`` is imported
  first and registers ``Name-v0`` (``gymnasium.register``) when imported;
* a ProcGen game (``bigfish``, ``procgen-bigfish-v0``), built by :mod:`evo.envs.procgen`.

Gymnasium envs take keyword arguments (``env_kwargs``, passed to ``gymnasium.make``) and a chain of
wrappers, each an import path plus keyword arguments, applied in order (the first one wraps the
env itself). Both use the RL Zoo's forms, so one hyperparameter file serves both tools:
``env_kwargs: {size: 5}`` and ``env_wrapper: [pkg.mod.Wrapper, {pkg.mod.Other: {k: 1}}]``.

:func:`check_env` imports no user code: it is the same on every rank, so a bad spec is rejected
the same way everywhere. Importing the module and building an env is :mod:`evo.envs.build`'s.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evo.errors import ConfigError

PROCGEN_GAMES = (
    "bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
    "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot",
)  # fmt: skip
DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
RESERVED_KWARGS = ("render_mode",)
"""Env keyword arguments evo sets itself: every env renders ``rgb_array`` frames (as SB3 makes
them), so ``python -m evo.enjoy --gif`` can record any run."""


def procgen_game(env_id: str) -> str | None:
    """The ProcGen game named by ``env_id`` (``bigfish``, ``procgen-bigfish-v0``...), else None."""
    name = env_id.lower()
    for prefix in ("procgen:", "procgen-"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.endswith("-v0"):
        name = name[:-3]
    return name if name in PROCGEN_GAMES else None


@dataclass(frozen=True)
class WrapperSpec:
    """One Gymnasium wrapper: ``path`` (``pkg.mod:Class`` or ``pkg.mod.Class``) called as ``Class(env, **kwargs)``."""

    path: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        args = " ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.path} {args}".strip()


@dataclass(frozen=True)
class EnvSpec:
    """What to build: an env id, the ProcGen level options (ignored for Gymnasium ids), and the
    Gymnasium env's keyword arguments and wrappers."""

    env_id: str
    num_levels: int = 0
    start_level: int = 0
    distribution_mode: str = "easy"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    wrappers: tuple[WrapperSpec, ...] = ()

    @property
    def is_procgen(self) -> bool:
        return procgen_game(self.env_id) is not None

    @property
    def module(self) -> str | None:
        """The module named before ``:`` in ``env_id`` (``None`` for a plain id)."""
        return split_env_id(self.env_id)[0]

    @property
    def name(self) -> str:
        """The registered id (``env_id`` without its module)."""
        return split_env_id(self.env_id)[1]

    @property
    def plain(self) -> bool:
        """A registered id built as registered: no module to import, no kwargs, no wrappers."""
        return self.module is None and not self.env_kwargs and not self.wrappers

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> EnvSpec:
        """The spec of a run's config (a :class:`~evo.config.CommonConfig`'s fields or its
        ``config.json``; keys it lacks take the command line's defaults)."""
        return cls(
            str(cfg["env_id"]),
            int(cfg.get("num_levels", 0)),
            int(cfg.get("start_level", 0)),
            str(cfg.get("distribution_mode", "easy")),
            env_kwargs(cfg.get("env_kwargs")),
            wrappers(cfg.get("env_wrapper")),
        )


# -- parsing: env ids, import paths, kwargs, wrappers ----------------------------------------------
def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``("pkg.mod", "Name-v0")`` for ``pkg.mod:Name-v0``; ``(None, env_id)`` for a plain id."""
    if ":" not in env_id or procgen_game(env_id) is not None:
        return None, env_id
    module, _, name = env_id.partition(":")
    if not _dotted(module) or not name or ":" in name:
        raise ConfigError(f"--env-id {env_id!r}: expected a Gymnasium id or package.module:Name-v0 "
                          f"(a module that registers Name-v0 when imported)")
    return module, name


def split_import_path(path: str, what: str = "--wrapper") -> tuple[str, str]:
    """``(module, attribute)`` of ``pkg.mod:Class`` / ``pkg.mod:Outer.Inner`` / ``pkg.mod.Class``."""
    if ":" in path:
        module, _, attr = path.partition(":")
    else:
        module, _, attr = path.rpartition(".")
    if not _dotted(module) or not _dotted(attr):
        raise ConfigError(f"{what} {path!r}: expected an import path like package.module.Class "
                          f"or package.module:Class")
    return module, attr


def _json_like(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_json_like(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False


def env_kwargs(value: Any, what: str = "--env-kwargs") -> dict[str, Any]:
    """Keyword arguments as a plain dict (``None`` -> ``{}``); a one-line :class:`ConfigError` if
    ``value`` is not a mapping of identifiers to numbers, strings, booleans, null, lists or mappings
    (what a run's ``config.json`` can hold)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping of name -> value, got {value!r}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigError(f"{what}: {key!r} is not a keyword argument name")
        if key in RESERVED_KWARGS:
            raise ConfigError(f"{what}: {key} is set by evo (every env renders rgb_array frames, so "
                              f"evo.enjoy can record it)")
        if not _json_like(v):
            raise ConfigError(f"{what}: {key}={v!r} is not a number, string, boolean, null, list or mapping")
        out[key] = v
    return out


def wrappers(value: Any, what: str = "--wrapper") -> tuple[WrapperSpec, ...]:
    """Wrappers from any of the RL Zoo's ``env_wrapper`` forms: ``None``, ``"pkg.mod.Class"``,
    ``{"pkg.mod.Class": {kwargs} or None}``, or a list of those (applied in order)."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            path, kwargs = item, None
        elif isinstance(item, Mapping) and len(item) == 1:
            (path, kwargs), = item.items()
        else:
            raise ConfigError(f"{what}: expected an import path or {{path: {{kwargs}}}}, got {item!r}")
        if not isinstance(path, str):
            raise ConfigError(f"{what}: expected an import path, got {path!r}")
        split_import_path(path, what)
        out.append(WrapperSpec(path, env_kwargs(kwargs, f"{what} {path}")))
    return tuple(out)


def wrappers_value(specs: tuple[WrapperSpec, ...]) -> list[dict[str, dict[str, Any]]]:
    """The canonical, JSON-ready form of a wrapper chain: ``[{path: {kwargs}}, ...]``."""
    return [{w.path: dict(w.kwargs)} for w in specs]


# -- the check every rank makes alike -------------------------------------------------------------
def check_env(spec: EnvSpec) -> None:
    """Raise :class:`ConfigError` (one line) if ``spec`` cannot name an env. Imports no user code:
    a ``module:id`` is only checked for its form (the module is imported when the env is built)."""
    if spec.is_procgen:
        if spec.env_kwargs or spec.wrappers:
            raise ConfigError("--env-kwargs and --wrapper are for Gymnasium envs; a ProcGen game takes "
                              "--num-levels, --start-level and --distribution-mode")
        if spec.num_levels < 0 or spec.start_level < 0:
            raise ConfigError("--num-levels and --start-level must be >= 0")
        from evo.envs.procgen import check_procgen_options

        game = procgen_game(spec.env_id)
        assert game is not None
        check_procgen_options(game, spec.distribution_mode, spec.num_levels, spec.start_level)
        return
    if spec.env_id.lower().startswith("procgen"):
        raise ConfigError(f"unknown ProcGen game {spec.env_id!r}; valid games: {', '.join(PROCGEN_GAMES)}")
    module, name = split_env_id(spec.env_id)
    if module is not None:
        return
    import gymnasium as gym

    try:
        gym.spec(name)
    except Exception:
        close = difflib.get_close_matches(name.lower(), PROCGEN_GAMES, n=1)
        close += difflib.get_close_matches(name, list(gym.registry), n=2)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown env id {name!r}: not a registered Gymnasium id nor a ProcGen game; your own env: "
            f"--env-id package.module:{name} (a module that registers it when imported).{hint}"
        ) from None


def parse_key_values(tokens: list[str] | tuple[str, ...], what: str = "--env-kwargs") -> dict[str, Any]:
    """``["size=5", "name=foo", "noise=[0.1, 0.2]"]`` -> ``{"size": 5, "name": "foo", "noise": [0.1, 0.2]}``:
    each value typed by YAML (``5`` an int, ``0.1`` a float, ``true`` a bool, ``null`` None, else a string)."""
    import yaml

    out: dict[str, Any] = {}
    for token in tokens:
        key, eq, text = token.partition("=")
        if not eq:
            raise ConfigError(f"{what}: expected KEY=VALUE, got {token!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"{what}: cannot read the value of {token!r} (YAML)") from None
        # PyYAML (YAML 1.1) reads 1e-3, without a dot, as a string: take it as the number meant
        out[key] = float(value) if isinstance(value, str) and _SCIENTIFIC.fullmatch(value) else value
    return env_kwargs(out, what)


# -- the command line and the hyperparameter file ---------------------------------------------------
ENV_FILE_KEYS = ("env_kwargs", "env_wrapper")
"""Keys of a hyperparameter file (``--hyperparams``, a ``--param-file`` set) that configure the env,
not the algorithm (the RL Zoo's names and forms)."""


def collect_flag(dest: str, before: Any, tokens: list[str]) -> Any:
    """One more use of ``--env-kwargs K=V ...`` (merged into ``before``, a dict) or ``--wrapper PATH
    [K=V ...]`` (appended to ``before``, a list, as ``{PATH: {K: V}}``)."""
    if dest == "env_kwargs":
        return {**(before or {}), **parse_key_values(tokens)}
    path, *pairs = tokens
    item = {path: parse_key_values(pairs, f"--wrapper {path}")}
    wrappers(item)  # check the path's form now, against the flag
    return [*(before or []), item]


def split_env_settings(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(env settings, the rest)`` of a hyperparameter file's mapping: give the first to
    :meth:`evo.config.CommonConfig.apply_env_settings`, the rest to the hyperparameter parser."""
    env = {k: v for k, v in data.items() if k in ENV_FILE_KEYS}
    return env, {k: v for k, v in data.items() if k not in ENV_FILE_KEYS}


def merge_env_settings(cli_kwargs: Any, cli_wrappers: Any,
                       settings: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, dict[str, Any]]]]:
    """``(env_kwargs, env_wrapper)`` from the command line's and a hyperparameter file's: the command
    line's kwargs win key by key; its wrappers, if any, replace the file's."""
    kwargs = {**env_kwargs(settings.get("env_kwargs"), "hyperparameter file: env_kwargs"), **env_kwargs(cli_kwargs)}
    chain = wrappers(cli_wrappers) or wrappers(settings.get("env_wrapper"), "hyperparameter file: env_wrapper")
    return kwargs, wrappers_value(chain)


def env_settings_from_yaml(text: str | None) -> dict[str, Any]:
    """The ``env_kwargs`` / ``env_wrapper`` entries of a hyperparameter file's YAML ``text`` (``{}`` if
    none; YAML errors are left to the hyperparameter parser, which reports them with the file's name)."""
    import yaml

    if text is None:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return split_env_settings(data)[0] if isinstance(data, Mapping) else {}
