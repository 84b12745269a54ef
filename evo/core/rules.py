"""Selection rules and presets: who copies whom, independent of how the bytes move.

A :class:`Rule` turns a vector of scores (all measured on the same evaluation episodes) into an
exploit plan of :class:`~evo.core.selection.Transfer` s. Both schedules call the same rule: the
synchronous one on the whole population once every member has published, the asynchronous one
on the members that have a score on the publishing member's evaluation set (and keeps only that
member's transfer).

Adding a rule is one file plus a registration::

    from evo.core.rules import Rule, register_rule

    @register_rule
    class Tournament(Rule):
        name = "tournament"
        description = "each member copies the better of two random members"
        def plan(self, scores, quantile, rng): ...

then ``python -m evo.pbt --rule tournament`` (after importing the module, e.g. from a launcher
script or ``EVO_PLUGINS=mypkg.rules``).

A *preset* names a rule and its default transport: ``evo.wta`` (wta + broadcast),
``evo.truncation`` (truncation + point to point), ``evo.truncation_collective`` (truncation +
sub-communicators). ``--rule`` and ``--transport`` override either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evo.core.selection import Transfer, plan_truncation, plan_wta
from evo.errors import ConfigError


class Rule:
    """A selection rule: a pure function of the scores (and a seeded rng)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_transport: ClassVar[str] = "p2p"
    """The transport used when ``--transport`` is not given and the preset names none."""

    def plan(self, scores: Sequence[float], quantile: float, rng: np.random.Generator) -> list[Transfer]:
        """Transfers ``(receiver, donor)``: each member at most once as receiver, never both."""
        raise NotImplementedError


RULES: dict[str, Rule] = {}


def register_rule(cls: type[Rule]) -> type[Rule]:
    """Register a rule class under its ``name`` (usable as a class decorator)."""
    if not cls.name:
        raise ValueError(f"rule {cls.__name__} has no name")
    if cls.name in RULES and type(RULES[cls.name]) is not cls:
        raise ValueError(f"a rule named {cls.name!r} is already registered")
    RULES[cls.name] = cls()
    return cls


def get_rule(name: str) -> Rule:
    try:
        return RULES[name]
    except KeyError:
        raise ConfigError(f"unknown --rule {name!r} (known: {', '.join(sorted(RULES))})") from None


@register_rule
class WinnerTakesAll(Rule):
    name = "wta"
    description = "every member but the best copies the best"
    default_transport = "broadcast"

    def plan(self, scores: Sequence[float], quantile: float, rng: np.random.Generator) -> list[Transfer]:
        return plan_wta(scores)


@register_rule
class Truncation(Rule):
    name = "truncation"
    description = "the bottom quantile copies members drawn from the top quantile"
    default_transport = "p2p"

    def plan(self, scores: Sequence[float], quantile: float, rng: np.random.Generator) -> list[Transfer]:
        return plan_truncation(scores, quantile, rng)


@dataclass(frozen=True)
class Preset:
    """What an entry point means: a rule and its default transport."""

    rule: str
    transport: str


PRESETS: dict[str, Preset] = {
    "wta": Preset("wta", "broadcast"),
    "truncation": Preset("truncation", "p2p"),
    "truncation_collective": Preset("truncation", "subcomm"),
    "pbt": Preset("truncation", ""),  # the generic entry point: transport from the rule
}
"""Entry point (``--strategy``) -> rule and transport. ``baseline`` has neither."""
