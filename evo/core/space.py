"""Search spaces of the registered algorithms: the default space of each, and ``--hyperparams`` files.

Pure logic: no MPI, no stable-baselines3. The model (:class:`Param`, :class:`Space`, :func:`explore`)
lives in :mod:`evo.core.params`, the algorithms' names, domains and default spaces in their adapters
(:mod:`evo.core.algos` reads them); both are re-exported here.

Every search space is checked against the domain of each hyperparameter (:mod:`evo.core.domains`):
bounds, initial values, choices and fixed values. A violation is one :class:`ConfigError` line naming
the parameter, the value and the domain, e.g. ``--hyperparams: clip_range low -1 is outside its domain
[0, inf)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from evo.core.algos import (
    AlgoSpec,
    algo_spec,
    check_algo,
    coerce_value,
    generation_unit,
    known_names,
)
from evo.core.cost import NO_REPLAY_RATIO, REPLAY_RATIO
from evo.core.domains import show
from evo.core.params import ExploreSettings, HParams, Param, Space, explore
from evo.errors import ConfigError

__all__ = ["AlgoSpec", "ExploreSettings", "HParams", "Param", "Space", "check_algo", "check_batch_size",
           "coerce_value", "default_space", "explore", "generation_unit", "known_names", "load_space",
           "parse_space", "read_space_file", "space_from_mapping"]

PREFIX = "--hyperparams: "


def default_space(rollout_size: int | None = None, algo: str = "ppo") -> Space:
    """The default search space of ``algo`` (its adapter's ``AlgoSpec.space``) with the domain of
    each of its names. For an algorithm whose batches divide the rollout (PPO), only the batch sizes that
    divide ``rollout_size`` (and are no larger) stay choices (the rollout itself if none does)."""
    spec = algo_spec(algo)
    params = list(spec.space)
    if spec.rollout_batches and rollout_size is not None:
        params = [_fit_batches(p, rollout_size) if p.name == "batch_size" else p for p in params]
    return Space(params={p.name: p for p in params}, domains=dict(spec.domains))


def _fit_batches(p: Param, rollout_size: int) -> Param:
    if p.kind != "categorical" or not p.choices:
        return p
    choices = tuple(b for b in p.choices if rollout_size % b == 0 and b <= rollout_size) or (rollout_size,)
    init = p.init if isinstance(p.init, tuple) else p.choices
    return replace(p, choices=choices, init=tuple(b for b in init if b in choices) or choices)


# -- --hyperparams files ---------------------------------------------------------------------------
_PARAM_KEYS = {"low", "high", "scale", "type", "kind", "init", "choices"}


def _num(name: str, key: str, value: Any) -> float:
    # PyYAML reads 1e-5 (no dot) as a string; accept it as the number the user meant.
    if isinstance(value, bool):
        raise ConfigError(f"{name}: {key} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {key} must be a number, got {value!r}") from None


ENV_SETTINGS = ("env_kwargs", "env_wrapper")
"""Keys of a ``--hyperparams`` file that configure the env, not the search space."""


def space_from_mapping(data: Mapping[str, Any], base: Space, algo: str = "ppo",
                       rollout_size: int | None = None) -> Space:
    """Override ``base`` with a mapping as read from a ``--hyperparams`` YAML file.

    Each key is a hyperparameter name of ``algo``; its value is either a scalar (fix it, never
    explored; settings such as ``net_arch`` or ``buffer_size`` only take this form), or a mapping
    with any of ``low``, ``high``, ``scale``, ``type``, ``init``, ``choices`` that override the
    default for that parameter (``low``/``high`` alone turn a list of choices into a range of the
    domain's kind). The key ``explore`` may hold ``perturb_factors`` and ``resample_probability``.
    Everything is checked against the domains; with ``rollout_size``, PPO's batch sizes must divide it.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{PREFIX}the file must hold a mapping of name -> settings")
    spec = algo_spec(algo)
    params = dict(base.params)
    constants = dict(base.constants)
    settings = base.explore_settings
    try:
        for name, entry in data.items():
            if name == "explore":
                settings = _explore_settings(entry, settings)
            elif name in ENV_SETTINGS:
                continue  # the env's settings (evo.envs reads them from the same file)
            elif name not in spec.domains:
                raise ConfigError(f"unknown hyperparameter {name!r} for --algo {algo} "
                                  f"(known: {', '.join(spec.names)})")
            elif not isinstance(entry, Mapping):
                params.pop(name, None)
                constants[name] = coerce_value(algo, name, entry)
            elif name in spec.settings:
                raise ConfigError(f"{name!r} is fixed when the model is built: give one value, not a search range")
            else:
                constants.pop(name, None)
                params[name] = _override(spec, name, entry, params.get(name))
        _replay_ratio_or_steps(data, params, constants)
        space = Space(params=params, constants=constants, explore_settings=settings,
                      domains=dict(spec.domains))
        space.validate()
        check_batch_size(space, rollout_size, algo)
    except ConfigError as exc:
        raise ConfigError(f"{PREFIX}{exc}") from None
    return space


def _replay_ratio_or_steps(data: Mapping[str, Any], params: dict[str, Param], constants: dict[str, Any]) -> None:
    """A file that names ``gradient_steps`` (and not ``replay_ratio``) searches or fixes SB3's own pair:
    the replay ratio of the default space (which would derive gradient_steps) is turned off."""
    if "gradient_steps" in data and REPLAY_RATIO not in data and REPLAY_RATIO in params:
        del params[REPLAY_RATIO]
        constants[REPLAY_RATIO] = NO_REPLAY_RATIO
    elif "gradient_steps" in data and _gives_ratio(data.get(REPLAY_RATIO)):
        raise ConfigError(f"gradient_steps is derived from {REPLAY_RATIO} (updates per env step): give one of "
                          f"them, or '{REPLAY_RATIO}: {NO_REPLAY_RATIO}' to search gradient_steps")


def _gives_ratio(value: Any) -> bool:
    """A number or a search range (not "none")."""
    return isinstance(value, Mapping) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _explore_settings(entry: Any, settings: ExploreSettings) -> ExploreSettings:
    if not isinstance(entry, Mapping) or set(entry) - {"perturb_factors", "resample_probability"}:
        raise ConfigError("'explore' takes only perturb_factors and resample_probability")
    factors = entry.get("perturb_factors", settings.perturb_factors)
    if not isinstance(factors, (list, tuple)):
        raise ConfigError("explore.perturb_factors must be a list of numbers")
    return ExploreSettings(
        perturb_factors=tuple(_num("explore", "perturb_factors", f) for f in factors),
        resample_probability=_num("explore", "resample_probability",
                                  entry.get("resample_probability", settings.resample_probability)),
    )


def _override(spec: AlgoSpec, name: str, entry: Mapping[str, Any], old: Param | None) -> Param:
    """``old`` (the default of ``name``, if any) with the keys of one file entry applied."""
    unknown = set(entry) - _PARAM_KEYS
    if unknown:
        raise ConfigError(f"{name}: unknown setting(s) {sorted(unknown)}")
    domain = spec.domains[name]
    if old is None:
        old = Param(name, kind="int" if domain.kind == "int" else "float")
    kw: dict[str, Any] = {}
    if "type" in entry or "kind" in entry:
        kw["kind"] = str(entry.get("type", entry.get("kind")))
    if "scale" in entry:
        kw["scale"] = str(entry["scale"])
    for key in ("low", "high"):
        if key in entry:
            kw[key] = _num(name, key, entry[key])
    if "choices" in entry:
        if not isinstance(entry["choices"], (list, tuple)):
            raise ConfigError(f"{name}: choices must be a list")
        kw["choices"] = tuple(coerce_value(spec.name, name, c) for c in entry["choices"])
        kw.setdefault("kind", "categorical")
        kw.setdefault("init", None)
    elif old.kind == "categorical" and "kind" not in kw and ("low" in kw or "high" in kw):
        kw["kind"] = "int" if domain.kind == "int" else "float"  # a range instead of the default choices
    kind = kw.get("kind", old.kind)
    if kind != "categorical":
        kw["choices"] = None
    if "init" in entry:
        init = entry["init"]
        if kind == "categorical":
            kw["init"] = tuple(coerce_value(spec.name, name, c) for c in init) if isinstance(init, (list, tuple)) \
                else coerce_value(spec.name, name, init)
        elif isinstance(init, (list, tuple)):
            kw["init"] = tuple(_num(name, "init", v) for v in init)
        else:
            kw["init"] = _num(name, "init", init)
    elif "low" in kw or "high" in kw:
        kw["init"] = None  # new bounds without init: sample initial values from the bounds
    return replace(old, **kw)


def read_space_file(path: str | Path | None) -> str | None:
    """The text of a ``--hyperparams`` file (``None`` for no file). Read it on one rank and
    broadcast it, so a file only some ranks can see fails the whole job the same way."""
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read hyperparameter file {str(path)!r}: {exc.strerror}") from None


def parse_space(text: str | None, rollout_size: int | None = None, where: str = "--hyperparams",
                algo: str = "ppo", env_id: str | None = None) -> Space:
    """Default space of ``algo``, overridden by the YAML ``text`` of a ``--hyperparams`` file if given
    (an RL Zoo file: its entry for ``env_id`` is the population's start, see :mod:`evo.zoo`)."""
    import yaml

    base = default_space(rollout_size, algo)
    if text is None:
        base.validate()
        return base
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"hyperparameter file {where!r} is not valid YAML{at}") from None
    from evo.zoo import as_space_mapping

    return space_from_mapping(as_space_mapping(data or {}, base, algo, env_id, where), base, algo, rollout_size)


def load_space(path: str | Path | None, rollout_size: int | None = None, algo: str = "ppo") -> Space:
    """Default space, overridden by the YAML file at ``path`` if given (single process)."""
    return parse_space(read_space_file(path), rollout_size, str(path), algo)


def check_batch_size(space: Space, rollout_size: int | None, algo: str = "ppo") -> None:
    """Every batch size a member can take must be a whole number > 0; for an algorithm whose batches
    divide the rollout (PPO) it must be one value or a list of choices, each dividing ``rollout_size``
    (``n_steps * n_envs``; not checked when ``None``). Off-policy algorithms sample batches from their
    replay buffer: any range will do. A2C trains on the whole rollout at once and has no batch size."""
    rollout_batches = algo_spec(algo).rollout_batches
    sizes: list[Any] = []
    if "batch_size" in space.params:
        p = space.params["batch_size"]
        if p.kind == "categorical":
            sizes = list(p.choices or ())
        elif rollout_batches:
            divide = f" n_steps * n_envs = {rollout_size}" if rollout_size is not None else ""
            raise ConfigError(f"batch_size {show(p.low)}..{show(p.high)}: for --algo {algo} a batch size must "
                              f"divide the rollout{divide}: give a list of choices (categorical) or one value, "
                              f"not a range")
        else:
            sizes = [p.low, p.high]
    elif "batch_size" in space.constants:
        sizes = [space.constants["batch_size"]]
    divides = rollout_batches and rollout_size is not None
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, (int, float)) or s != int(s) or s <= 0
           or (divides and rollout_size % int(s) != 0)]  # type: ignore[operator]
    if bad and divides:
        raise ConfigError(f"batch_size {bad} does not divide the rollout size n_steps * n_envs = {rollout_size}")
    if bad:
        raise ConfigError(f"batch_size {bad} must be whole numbers > 0")
