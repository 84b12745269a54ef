"""The algorithm registry: what evo's pure side knows of each learner, as plain data.

Each adapter module in :mod:`evo.learners` declares one :class:`AlgoSpec` (names, domains, SB3's
defaults, the default search space, named sets) next to its learner class and registers both with
one line (:func:`evo.learners.registry.register`). Config validation, the search-space parser and the
named sets read the specs from here without importing stable-baselines3 themselves.

The built-in adapters register when :mod:`evo.learners` is imported. A lookup here imports that
package once if it has not been imported yet (:data:`BUILTIN_ADAPTERS`, by name: the registry does
not depend on it), so pure callers (``--algo`` validation, ``default_space()``) see every built-in
algorithm; code that never asks for an algorithm (``evo.report``) never imports torch.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evo.core.domains import Domain
from evo.core.params import Param
from evo.errors import ConfigError

BUILTIN_ADAPTERS = "evo.learners"
"""The package whose import registers the built-in algorithms (PPO, A2C, SAC, TD3, DQN)."""


@dataclass(frozen=True)
class AlgoSpec:
    """One algorithm, as the pure side of evo sees it."""

    name: str
    """The value of ``--algo``."""
    on_policy: bool
    """Trains on whole rollouts of ``n_steps * n_envs`` env steps (else: any multiple of ``n_envs``)."""
    action_spaces: tuple[str, ...]
    """Gymnasium action-space classes it can drive (as stable-baselines3 declares them)."""
    live: tuple[str, ...]
    """Hyperparameters a live model takes from its next ``train()`` on: searchable, moved by an exploit."""
    settings: tuple[str, ...]
    """Fixed when the model is built (network shape, buffer size...): one value per run, never explored."""
    domains: Mapping[str, Domain]
    """Every value each name (live or setting) may take."""
    defaults: Mapping[str, Any]
    """SB3's constructor default of every live hyperparameter."""
    setting_defaults: Mapping[str, Any] = field(default_factory=dict)
    """SB3's value of the settings the adapter passes on explicitly."""
    space: tuple[Param, ...] = ()
    """The default search space (bounds, then the initial range in ``init``), in sampling order."""
    rollout_batches: bool = False
    """``batch_size`` must divide the rollout (PPO's minibatches); sets may say ``n_minibatches``."""
    sets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Named sets (``--param-name``): hyperparameters, settings and run keys (``n_envs``...)."""
    auto_sets: Mapping[str, str] = field(default_factory=dict)
    """env id -> the set ``--param-name auto`` picks for it."""
    procgen_set: str | None = None
    """The set ``--param-name auto`` picks for a ProcGen game (else ``default_set``)."""
    default_set: str | None = None
    """The set ``--param-name auto`` picks otherwise."""

    def __post_init__(self) -> None:
        names = (*self.live, *self.settings)
        problems = [
            f"names in both live and settings: {sorted(set(self.live) & set(self.settings))}"
            if set(self.live) & set(self.settings) else "",
            f"no domain for {sorted(set(names) - set(self.domains))}" if set(names) - set(self.domains) else "",
            f"domains for unknown names {sorted(set(self.domains) - set(names))}"
            if set(self.domains) - set(names) else "",
            f"defaults must cover exactly the live names (differ in {sorted(set(self.defaults) ^ set(self.live))})"
            if set(self.defaults) != set(self.live) else "",
            f"setting defaults for unknown settings {sorted(set(self.setting_defaults) - set(self.settings))}"
            if set(self.setting_defaults) - set(self.settings) else "",
            f"default space searches non-live names {[p.name for p in self.space if p.name not in self.live]}"
            if any(p.name not in self.live for p in self.space) else "",
            f"auto sets name unknown sets {sorted(set(self._auto()) - set(self.sets))}"
            if set(self._auto()) - set(self.sets) else "",
        ]
        bad = [p for p in problems if p]
        if bad:
            raise ValueError(f"AlgoSpec {self.name!r}: {'; '.join(bad)}")

    def _auto(self) -> list[str]:
        return [*self.auto_sets.values(), *(s for s in (self.procgen_set, self.default_set) if s)]

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.live, *self.settings)


_SPECS: dict[str, AlgoSpec] = {}
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first: the adapters' own lookups while they import must not recurse
        importlib.import_module(BUILTIN_ADAPTERS)


def register_algo(spec: AlgoSpec) -> AlgoSpec:
    """Add ``spec`` (an adapter module calls this through :func:`evo.learners.registry.register`)."""
    old = _SPECS.get(spec.name)
    if old is not None and old != spec:
        raise ValueError(f"--algo {spec.name!r} is already registered with another spec")
    _SPECS[spec.name] = spec
    return spec


def unregister_algo(name: str) -> None:
    """Remove an algorithm (tests register toy ones)."""
    _SPECS.pop(name, None)


def algo_names() -> tuple[str, ...]:
    """Every registered ``--algo``, in registration order."""
    _load_builtins()
    return tuple(_SPECS)


def algo_spec(algo: str) -> AlgoSpec:
    """The spec of ``algo``, or a one-line :class:`ConfigError` naming the known ones."""
    if algo not in _SPECS:
        _load_builtins()
    try:
        return _SPECS[algo]
    except KeyError:
        raise ConfigError(f"unknown --algo {algo!r} (known: {', '.join(_SPECS)})") from None


def check_algo(algo: str) -> str:
    algo_spec(algo)
    return algo


def known_names(algo: str) -> tuple[str, ...]:
    """Every hyperparameter or setting a member of ``algo`` accepts."""
    return algo_spec(algo).names


def generation_unit(algo: str, n_steps: int, n_envs: int) -> int:
    """Env steps a generation must be a multiple of: one rollout (``n_steps * n_envs``) for on-policy
    algorithms, one step of every env (``n_envs``) for off-policy ones."""
    return n_steps * n_envs if algo_spec(algo).on_policy else n_envs


def coerce_value(algo: str, name: str, value: Any) -> Any:
    """``value`` as the type ``name`` takes for ``algo``; a one-line :class:`ConfigError` if it does not
    belong to the algorithm or lies outside its domain."""
    spec = algo_spec(algo)
    if name not in spec.domains:
        raise ConfigError(f"hyperparameter {name!r} does not belong to --algo {algo} "
                          f"(known: {', '.join(spec.names)})")
    return spec.domains[name].coerce(name, value)
