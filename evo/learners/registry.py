"""The learner registry and factory: ``--algo`` -> the adapter class that trains it.

An adapter module ends with one line, ``register(MyLearner)``: that adds the class here and its
:class:`~evo.core.algos.AlgoSpec` (``MyLearner.spec``) to the pure registry of :mod:`evo.core.algos`,
where config validation and the search-space parser read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from evo.core.algos import register_algo, unregister_algo
from evo.errors import ConfigError
from evo.learners.base import Learner

LEARNERS: dict[str, type[Learner]] = {}
"""Every registered adapter class, by ``--algo`` name (read it; :func:`register` writes it)."""

L = TypeVar("L", bound=type[Learner])


def register(cls: L) -> L:
    """Register an adapter class under ``cls.spec.name`` (its spec goes to :mod:`evo.core.algos`)."""
    name = cls.spec.name
    old = LEARNERS.get(name)
    if old is not None and old is not cls:
        raise ValueError(f"--algo {name!r} is already registered to {old.__name__}")
    register_algo(cls.spec)
    LEARNERS[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove an algorithm from both registries (tests register toy ones)."""
    LEARNERS.pop(name, None)
    unregister_algo(name)


def learner_class(algo: str) -> type[Learner]:
    """The adapter class of ``algo``, or a one-line :class:`ConfigError` naming the known ones."""
    try:
        return LEARNERS[algo]
    except KeyError:
        raise ConfigError(f"unknown --algo {algo!r} (known: {', '.join(LEARNERS)})") from None


def make_learner(cfg: Any, hparams: Mapping[str, Any], index: int = 0, local_rank: int | None = None) -> Learner:
    """Build member ``index`` of the population: the adapter of ``cfg.algo`` with ``hparams`` (the
    rest SB3's defaults) on the device ``cfg.device`` resolves to for ``local_rank`` (default: ``index``)."""
    return learner_class(str(getattr(cfg, "algo", "ppo")))(cfg, hparams, index=index, local_rank=local_rank)
