"""Search-space model: one hyperparameter (:class:`Param`), a space of them (:class:`Space`) and PBT's
explore step.

Pure logic: no MPI, no stable-baselines3. Everything random takes an explicit
``numpy.random.Generator`` so that every decision can be replayed.

Scales
------
``linear``     perturb ``x -> x * f``
``log``        perturb ``x -> x * f`` and sample log-uniformly
``one_minus``  perturb in ``1 - x`` space: ``x -> 1 - (1 - x) * f`` (discount factors, GAE lambda)
Kinds
-----
``float``, ``int`` (rounded after perturbing) and ``categorical`` (perturbing moves to a
neighbouring choice, as Ray Tune does).

A space may carry the :class:`~evo.core.domains.Domain` of each name (what the algorithm accepts at
all): its bounds, initial values, choices and fixed values must lie inside it (:meth:`Space.validate`),
and explore clips to it as well as to the bounds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evo.core.domains import Domain
from evo.errors import ConfigError

HParams = dict[str, Any]
SCALES = ("linear", "log", "one_minus")
KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One hyperparameter: where it may go (bounds) and where it starts (init)."""

    name: str
    kind: str = "float"
    scale: str = "linear"
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    init: tuple[float, float] | tuple[Any, ...] | float | int | None = None
    """``(lo, hi)`` range to sample from, a single fixed start value, or (categorical) a subset
    of ``choices``. ``None`` samples from the full bounds."""

    def validate(self) -> None:
        n = self.name
        if self.kind not in KINDS:
            raise ConfigError(f"{n}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.scale not in SCALES:
            raise ConfigError(f"{n}: scale must be one of {SCALES}, got {self.scale!r}")
        if self.kind == "categorical":
            if not self.choices:
                raise ConfigError(f"{n}: categorical needs a non-empty 'choices' list")
            if self.init is not None:
                init = self.init if isinstance(self.init, (list, tuple)) else (self.init,)
                if not init:
                    raise ConfigError(f"{n}: init must name at least one of the choices")
                bad = [c for c in init if c not in self.choices]
                if bad:
                    raise ConfigError(f"{n}: initial value(s) {bad} not in choices {list(self.choices)}")
            return
        if self.low is None or self.high is None:
            raise ConfigError(f"{n}: needs 'low' and 'high' bounds")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(f"{n}: bounds must be finite")
        if self.low > self.high:
            raise ConfigError(f"{n}: inverted bounds low={self.low} > high={self.high}")
        if self.scale == "log" and self.low <= 0:
            raise ConfigError(f"{n}: log scale needs low > 0, got {self.low}")
        if self.scale == "one_minus" and self.high >= 1:
            raise ConfigError(f"{n}: one_minus scale needs high < 1, got {self.high}")
        if self.kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ConfigError(f"{n}: int bounds must be whole numbers")
        lo, hi = self.init_range()
        if not (self.low <= lo <= hi <= self.high):  # also rejects NaN
            raise ConfigError(f"{n}: initial value/range {self.init} outside bounds [{self.low}, {self.high}]")

    @property
    def fixed(self) -> bool:
        """A parameter whose bounds pin it to one value is never explored."""
        if self.kind == "categorical":
            return self.choices is not None and len(self.choices) == 1
        return self.low == self.high

    def init_range(self) -> tuple[float, float]:
        assert self.low is not None and self.high is not None
        if self.init is None:
            return float(self.low), float(self.high)
        if isinstance(self.init, (list, tuple)):
            if len(self.init) != 2:
                raise ConfigError(f"{self.name}: init must be a value or [low, high]")
            return float(self.init[0]), float(self.init[1])
        return float(self.init), float(self.init)

    # -- sampling -------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, initial: bool = True) -> Any:
        """Draw a value: from the initial distribution, or (``initial=False``) the full bounds."""
        if self.kind == "categorical":
            assert self.choices is not None
            pool: Sequence[Any] = self.choices
            if initial and self.init is not None:
                pool = self.init if isinstance(self.init, (list, tuple)) else (self.init,)
            return pool[int(rng.integers(len(pool)))]
        assert self.low is not None and self.high is not None
        lo, hi = self.init_range() if initial else (float(self.low), float(self.high))
        if lo == hi:
            value = lo
        elif self.scale == "log":
            value = float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        elif self.scale == "one_minus":
            value = 1.0 - float(math.exp(rng.uniform(math.log(1 - hi), math.log(1 - lo))))
        else:
            value = float(rng.uniform(lo, hi))
        return self.clip(value)

    def clip(self, value: Any) -> Any:
        """Clamp into bounds; ints stay ints, categoricals must be a choice."""
        if self.kind == "categorical":
            assert self.choices is not None
            if value not in self.choices:
                raise ConfigError(f"{self.name}: {value!r} not in {list(self.choices)}")
            return value
        assert self.low is not None and self.high is not None
        value = min(max(float(value), float(self.low)), float(self.high))
        if self.kind == "int":
            return int(round(value))
        return value

    def perturb(self, value: Any, factor: float) -> Any:
        """Move ``value`` by ``factor`` in this parameter's scale, then clamp."""
        if self.kind == "categorical":
            assert self.choices is not None
            idx = list(self.choices).index(value)
            step = -1 if factor < 1 else 1
            return self.choices[min(max(idx + step, 0), len(self.choices) - 1)]
        if self.scale == "one_minus":
            new = 1.0 - (1.0 - float(value)) * factor
        else:
            new = float(value) * factor
        if self.kind == "int" and factor != 1 and round(new) == value:
            new = value + (1 if factor > 1 else -1)  # small ints (1, 2) would never move otherwise
        return self.clip(new)


@dataclass(frozen=True)
class ExploreSettings:
    """How losers explore after copying a winner (PBT's ``explore`` step)."""

    perturb_factors: tuple[float, ...] = (0.8, 1.2)
    resample_probability: float = 0.25

    def validate(self) -> None:
        if not self.perturb_factors or any(f <= 0 or not math.isfinite(f) for f in self.perturb_factors):
            raise ConfigError("explore.perturb_factors must be a non-empty list of positive numbers")
        if not 0.0 <= self.resample_probability <= 1.0:
            raise ConfigError("explore.resample_probability must be in [0, 1]")


@dataclass(frozen=True)
class Space:
    """A set of :class:`Param` plus fixed (never explored) values, explore settings and the domain of
    each name (those without one are limited by their bounds only)."""

    params: Mapping[str, Param]
    constants: Mapping[str, Any] = field(default_factory=dict)
    explore_settings: ExploreSettings = ExploreSettings()
    domains: Mapping[str, Domain] = field(default_factory=dict)

    def validate(self) -> None:
        """A one-line :class:`ConfigError` for a parameter outside its domain (bounds, choices, fixed
        values), with bad bounds, or bad explore settings."""
        for p in self.params.values():
            domain = self.domains.get(p.name)
            if domain is not None:
                _check_domain(p, domain)
            p.validate()
        for name, value in self.constants.items():
            if name in self.domains:
                self.domains[name].coerce(name, value)
        self.explore_settings.validate()

    def clip(self, name: str, value: Any) -> Any:
        """``value`` of parameter ``name`` clamped into its bounds and its domain."""
        p = self.params[name]
        value = p.clip(value)
        domain = self.domains.get(name)
        if domain is not None and domain.numeric and p.kind != "categorical":
            inside = domain.clip(value)
            value = int(round(inside)) if p.kind == "int" else inside
        return value

    @property
    def names(self) -> list[str]:
        return [*self.params, *self.constants]

    def sample(self, rng: np.random.Generator) -> HParams:
        """Initial hyperparameters for a new member (parameters in declaration order)."""
        hp: HParams = {name: p.sample(rng, initial=True) for name, p in self.params.items()}
        hp.update(self.constants)
        return hp

    def explore(self, hparams: Mapping[str, Any], rng: np.random.Generator) -> tuple[HParams, dict[str, Any]]:
        """PBT explore: perturb or resample every searchable hyperparameter.

        Returns ``(new_hparams, changes)`` where ``changes[name] = {"old", "new", "op"}`` and ``op``
        is ``"resample"`` or ``"x<factor>"``. ``hparams`` is not modified.
        """
        return explore(hparams, self, rng)


def explore(
    hparams: Mapping[str, Any], space: Space, rng: np.random.Generator
) -> tuple[HParams, dict[str, Any]]:
    """Pure PBT explore step: ``(config, space, rng) -> (new config, what changed)``."""
    settings = space.explore_settings
    new: HParams = dict(hparams)
    changes: dict[str, Any] = {}
    for name, p in space.params.items():
        if p.fixed:
            continue
        old = hparams[name]
        # Draw both numbers for every parameter so the rng stream does not depend on the branch.
        u = float(rng.random())
        factor = float(settings.perturb_factors[int(rng.integers(len(settings.perturb_factors)))])
        resampled = p.sample(rng, initial=False)
        if u < settings.resample_probability:
            value, op = resampled, "resample"
        else:
            value, op = p.perturb(old, factor), f"x{factor:g}"
        value = space.clip(name, value)  # never outside the domain, whatever the bounds say
        new[name] = value
        changes[name] = {"old": old, "new": value, "op": op}
    return new, changes


def _check_domain(p: Param, domain: Domain) -> None:
    """``p``'s choices, or its bounds (a search range: the interval part of the domain), in ``domain``."""
    if p.kind == "categorical":
        for choice in p.choices or ():
            domain.coerce(p.name, choice)
        return
    if domain.kind == "int" and p.kind == "float":
        raise ConfigError(f"{p.name} takes {domain}: type must be int or categorical, not float")
    for key in ("low", "high"):
        value = getattr(p, key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            domain.check_bound(p.name, key, float(value))
