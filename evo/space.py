"""Hyperparameter search space: bounds, scales, sampling and PBT's explore step.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

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
            raise ConfigError(f"hyperparameter {n!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.scale not in SCALES:
            raise ConfigError(f"hyperparameter {n!r}: scale must be one of {SCALES}, got {self.scale!r}")
        if self.kind == "categorical":
            if not self.choices:
                raise ConfigError(f"hyperparameter {n!r}: categorical needs a non-empty 'choices' list")
            if self.init is not None:
                init = self.init if isinstance(self.init, (list, tuple)) else (self.init,)
                if not init:
                    raise ConfigError(f"hyperparameter {n!r}: init must name at least one of the choices")
                bad = [c for c in init if c not in self.choices]
                if bad:
                    raise ConfigError(f"hyperparameter {n!r}: initial value(s) {bad} not in choices")
            return
        if self.low is None or self.high is None:
            raise ConfigError(f"hyperparameter {n!r}: needs 'low' and 'high' bounds")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ConfigError(f"hyperparameter {n!r}: bounds must be finite")
        if self.low > self.high:
            raise ConfigError(f"hyperparameter {n!r}: inverted bounds low={self.low} > high={self.high}")
        if self.scale == "log" and self.low <= 0:
            raise ConfigError(f"hyperparameter {n!r}: log scale needs low > 0, got {self.low}")
        if self.scale == "one_minus" and self.high >= 1:
            raise ConfigError(f"hyperparameter {n!r}: one_minus scale needs high < 1, got {self.high}")
        if self.kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ConfigError(f"hyperparameter {n!r}: int bounds must be whole numbers")
        lo, hi = self.init_range()
        if not (self.low <= lo <= hi <= self.high):  # also rejects NaN
            raise ConfigError(
                f"hyperparameter {n!r}: initial value/range {self.init} outside bounds [{self.low}, {self.high}]"
            )

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
                raise ConfigError(f"hyperparameter {self.name!r}: init must be a value or [low, high]")
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
                raise ConfigError(f"hyperparameter {self.name!r}: {value!r} not in {list(self.choices)}")
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
    """A set of :class:`Param` plus fixed (never explored) values and explore settings."""

    params: Mapping[str, Param]
    constants: Mapping[str, Any] = field(default_factory=dict)
    explore_settings: ExploreSettings = ExploreSettings()

    def validate(self) -> None:
        for p in self.params.values():
            p.validate()
        self.explore_settings.validate()

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
        new[name] = value
        changes[name] = {"old": old, "new": value, "op": op}
    return new, changes


# -- defaults and YAML ---------------------------------------------------------------------------
def default_space(rollout_size: int | None = None) -> Space:
    """The default PPO search space (bounds, then the initial range in ``init``)."""
    batch_choices: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    if rollout_size is not None:
        batch_choices = tuple(b for b in batch_choices if rollout_size % b == 0 and b <= rollout_size)
        if not batch_choices:
            batch_choices = (rollout_size,)
    mid = [b for b in batch_choices if 64 <= b <= 256] or list(batch_choices)
    params = [
        Param("learning_rate", scale="log", low=1e-5, high=1e-2, init=(1e-4, 1e-3)),
        Param("clip_range", low=0.05, high=0.5, init=(0.1, 0.3)),
        Param("ent_coef", scale="log", low=1e-6, high=0.1, init=(1e-4, 1e-2)),
        Param("vf_coef", low=0.1, high=1.0, init=(0.25, 0.75)),
        Param("gamma", scale="one_minus", low=0.9, high=0.9999, init=(0.95, 0.999)),
        Param("gae_lambda", scale="one_minus", low=0.8, high=0.99, init=(0.9, 0.98)),
        Param("n_epochs", kind="int", low=1, high=20, init=(3, 10)),
        Param("batch_size", kind="categorical", choices=batch_choices, init=tuple(mid)),
    ]
    return Space(params={p.name: p for p in params})


SEARCHABLE = ("learning_rate", "clip_range", "ent_coef", "vf_coef", "gamma", "gae_lambda", "n_epochs",
              "batch_size", "max_grad_norm")
"""Hyperparameters evo knows how to apply to a live PPO model."""

_PARAM_KEYS = {"low", "high", "scale", "type", "kind", "init", "choices"}


def _num(name: str, key: str, value: Any) -> float:
    # PyYAML reads 1e-5 (no dot) as a string; accept it as the number the user meant.
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"hyperparameter {name!r}: {key} must be a number, got {value!r}") from None
    return out


def space_from_mapping(data: Mapping[str, Any], base: Space) -> Space:
    """Override ``base`` with a mapping as read from a ``--hyperparams`` YAML file.

    Each key is a hyperparameter name; its value is either a scalar (fix it, never explored),
    or a mapping with any of ``low``, ``high``, ``scale``, ``type``, ``init``, ``choices`` that
    override the default for that parameter. The key ``explore`` may hold
    ``perturb_factors`` and ``resample_probability``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError("hyperparameter file must hold a mapping of name -> settings")
    params = dict(base.params)
    constants = dict(base.constants)
    settings = base.explore_settings
    for name, spec in data.items():
        if name == "explore":
            if not isinstance(spec, Mapping) or set(spec) - {"perturb_factors", "resample_probability"}:
                raise ConfigError("'explore' takes only perturb_factors and resample_probability")
            factors = spec.get("perturb_factors", settings.perturb_factors)
            if not isinstance(factors, (list, tuple)):
                raise ConfigError("explore.perturb_factors must be a list of numbers")
            settings = ExploreSettings(
                perturb_factors=tuple(_num("explore", "perturb_factors", f) for f in factors),
                resample_probability=_num("explore", "resample_probability",
                                          spec.get("resample_probability", settings.resample_probability)),
            )
            continue
        if name not in SEARCHABLE:
            raise ConfigError(f"unknown hyperparameter {name!r} (known: {', '.join(SEARCHABLE)})")
        if not isinstance(spec, Mapping):
            params.pop(name, None)
            value = spec if isinstance(spec, (int, float)) and not isinstance(spec, bool) else None
            if value is None:
                try:
                    value = _num(name, "value", spec)
                except ConfigError:
                    raise ConfigError(f"hyperparameter {name!r}: expected a number or a mapping") from None
            constants[name] = value
            continue
        unknown = set(spec) - _PARAM_KEYS
        if unknown:
            raise ConfigError(f"hyperparameter {name!r}: unknown setting(s) {sorted(unknown)}")
        old = params.get(name) or Param(name)
        constants.pop(name, None)
        kw: dict[str, Any] = {}
        if "type" in spec or "kind" in spec:
            kw["kind"] = str(spec.get("type", spec.get("kind")))
        if "scale" in spec:
            kw["scale"] = str(spec["scale"])
        for key in ("low", "high"):
            if key in spec:
                kw[key] = _num(name, key, spec[key])
        if "choices" in spec:
            if not isinstance(spec["choices"], (list, tuple)):
                raise ConfigError(f"hyperparameter {name!r}: choices must be a list")
            kw["choices"] = tuple(spec["choices"])
            kw.setdefault("kind", "categorical")
            kw.setdefault("init", None)
        if "init" in spec:
            init = spec["init"]
            kind = kw.get("kind", old.kind)
            if kind == "categorical":
                kw["init"] = tuple(init) if isinstance(init, (list, tuple)) else init
            elif isinstance(init, (list, tuple)):
                kw["init"] = tuple(_num(name, "init", v) for v in init)
            else:
                kw["init"] = _num(name, "init", init)
        elif "low" in kw or "high" in kw:
            kw["init"] = None  # new bounds without init: sample initial values from the bounds
        params[name] = replace(old, **kw)
    space = Space(params=params, constants=constants, explore_settings=settings)
    space.validate()
    return space


def read_space_file(path: str | Path | None) -> str | None:
    """The text of a ``--hyperparams`` file (``None`` for no file). Read it on one rank and
    broadcast it, so a file only some ranks can see fails the whole job the same way."""
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read hyperparameter file {str(path)!r}: {exc.strerror}") from None


def parse_space(text: str | None, rollout_size: int | None = None, where: str = "--hyperparams") -> Space:
    """Default space, overridden by the YAML ``text`` of a ``--hyperparams`` file if given."""
    import yaml

    base = default_space(rollout_size)
    if text is None:
        base.validate()
        return base
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"hyperparameter file {where!r} is not valid YAML{at}") from None
    return space_from_mapping(data or {}, base)


def load_space(path: str | Path | None, rollout_size: int | None = None) -> Space:
    """Default space, overridden by the YAML file at ``path`` if given (single process)."""
    return parse_space(read_space_file(path), rollout_size, str(path))


def check_batch_size(space: Space, rollout_size: int) -> None:
    """Every batch size a member can take must divide the rollout (n_steps * n_envs)."""
    sizes: list[Any] = []
    if "batch_size" in space.params:
        p = space.params["batch_size"]
        if p.kind == "categorical":
            sizes = list(p.choices or ())
        else:
            raise ConfigError("batch_size must be categorical (a list of choices that divide the rollout)")
    elif "batch_size" in space.constants:
        sizes = [space.constants["batch_size"]]
    bad = [s for s in sizes if isinstance(s, bool) or not isinstance(s, (int, float)) or s != int(s) or s <= 0
           or rollout_size % int(s) != 0]
    if bad:
        raise ConfigError(
            f"batch_size {bad} does not divide the rollout size n_steps * n_envs = {rollout_size}"
        )
