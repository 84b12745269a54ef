"""Domains: every value a hyperparameter can take at all, whatever a search space says.

A search space (bounds, initial values, fixed values, choices) must lie inside the domain of each of
its hyperparameters (:meth:`evo.core.params.Space.validate`); explore clips to it as well as to the
space's bounds, and PB2 stays within the bounds, which lie inside it. Each algorithm
declares the domain of each of its names (:class:`evo.core.algos.AlgoSpec`); the values follow
stable-baselines3's own constraints (a discount in (0, 1], at least one epoch, a positive learning
rate...). Pure: no SB3.

Kinds: ``real`` (a number in an interval), ``int`` (a whole number in an interval), ``bool`` and
``layers`` (a list of positive layer sizes). ``extra`` holds values outside the interval that are valid
too (``-1``: "as many gradient steps as env steps"; ``"auto"``), usable as a fixed value or a choice
but never as a bound of a search range.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from evo.errors import ConfigError

DOMAIN_KINDS = ("real", "int", "bool", "layers")


def show(value: Any) -> str:
    """A value as an error line shows it: ``-1`` not ``-1.0``, strings quoted."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _bound(x: float) -> str:
    return "inf" if x == math.inf else "-inf" if x == -math.inf else show(float(x))


@dataclass(frozen=True)
class Domain:
    """The values a hyperparameter can take: an interval (ends open or closed) of its kind, plus
    ``extra`` values; ``auto_prefix`` also allows ``"auto_<x>"`` with ``x > 0`` (SAC's ``ent_coef``)."""

    kind: str = "real"
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    extra: tuple[Any, ...] = ()
    auto_prefix: bool = False

    def __post_init__(self) -> None:
        if self.kind not in DOMAIN_KINDS:
            raise ValueError(f"domain kind must be one of {DOMAIN_KINDS}, got {self.kind!r}")

    @property
    def numeric(self) -> bool:
        return self.kind in ("real", "int")

    # -- membership -----------------------------------------------------------------------------
    def in_interval(self, x: float) -> bool:
        """``x`` lies in the interval part (NaN and infinities never do)."""
        if not math.isfinite(x):
            return False
        above = x > self.low if self.low_open else x >= self.low
        below = x < self.high if self.high_open else x <= self.high
        return bool(above and below) and (self.kind != "int" or float(x).is_integer())

    def interval(self) -> str:
        """The interval part, e.g. ``(0, 1]``, ``[0, inf)``, ``integers in [1, inf)``."""
        left = "(" if self.low_open or self.low == -math.inf else "["
        right = ")" if self.high_open or self.high == math.inf else "]"
        text = f"{left}{_bound(self.low)}, {_bound(self.high)}{right}"
        return f"integers in {text}" if self.kind == "int" else text

    def __str__(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "layers":
            return "a non-empty list of positive layer sizes"
        words = [show(e) for e in self.extra] + (["'auto_<x>' (x > 0)"] if self.auto_prefix else [])
        return " or ".join([*words, self.interval()])

    # -- checking values --------------------------------------------------------------------------
    def coerce(self, name: str, value: Any) -> Any:
        """``value`` as this domain's type (``float``, ``int``, ``bool``, ``list[int]`` or an extra word),
        or a one-line :class:`ConfigError` naming ``name``, the value and the domain. Text as a CSV
        writes it (``"True"``, ``"[64, 64]"``) is read back."""
        if self.kind == "bool":
            if isinstance(value, str) and value in ("True", "False"):
                value = value == "True"
            if not isinstance(value, bool):
                raise ConfigError(f"{name} {show(value)} is outside its domain {self}")
            return value
        if self.kind == "layers":
            layers = _json(value) if isinstance(value, str) else value
            if not isinstance(layers, (list, tuple)) or not layers or \
                    not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in layers):
                raise ConfigError(f"{name} {show(value)} is outside its domain {self}")
            return [int(v) for v in layers]
        if isinstance(value, str) and self._word(value):
            return value
        number = _number(value)  # PyYAML reads 1e-5 (no dot) as a string: the number the user meant
        if number is None or not self.in_interval(number):
            if number is not None and number in [e for e in self.extra if not isinstance(e, str)]:
                return int(number) if self.kind == "int" else number
            raise ConfigError(f"{name} {show(value)} is outside its domain {self}")
        return int(number) if self.kind == "int" else number

    def check_bound(self, name: str, key: str, number: float) -> None:
        """A bound or initial value of a search range must lie in the interval (not an extra value)."""
        if not self.numeric:
            raise ConfigError(f"{name} takes one value or a list of choices ({self}), not a search range")
        if not self.in_interval(number):
            only = f" ({', '.join(show(e) for e in self.extra)} only as a fixed value or a choice)" \
                if self.extra else ""
            raise ConfigError(f"{name} {key} {show(number)} is outside its domain {self.interval()}{only}")

    def clip(self, x: float) -> float:
        """``x`` moved into the interval (an open end: the nearest float inside it)."""
        lo = math.nextafter(self.low, math.inf) if self.low_open else self.low
        hi = math.nextafter(self.high, -math.inf) if self.high_open else self.high
        return min(max(float(x), lo), hi)

    def _word(self, text: str) -> bool:
        if text in self.extra:
            return True
        if self.auto_prefix and text.startswith("auto_"):
            start = _number(text[5:])
            return start is not None and math.isfinite(start) and start > 0
        return False


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def real(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False, high_open: bool = False,
         extra: tuple[Any, ...] = (), auto_prefix: bool = False) -> Domain:
    return Domain("real", float(low), float(high), low_open, high_open, extra, auto_prefix)


def integer(low: float = -math.inf, high: float = math.inf, *, extra: tuple[Any, ...] = ()) -> Domain:
    return Domain("int", float(low), float(high), extra=extra)


ANY_REAL = real()
POSITIVE = real(0, low_open=True)
NON_NEGATIVE = real(0)
DISCOUNT = real(0, 1, low_open=True)
"""(0, 1]: discount factors, GAE's lambda, Polyak's tau, DQN's exploration fraction."""
PROBABILITY = real(0, 1)
COUNT = integer(1)
"""Whole numbers >= 1: epochs, batch sizes, intervals, buffer sizes."""
STEPS = integer(0)
FLAG = Domain("bool")
LAYERS = Domain("layers")
