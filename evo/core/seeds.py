"""Random streams, one per purpose, each with its own tag (pure; no MPI, no SB3).

Every random decision evo makes comes from ``numpy.random.SeedSequence([seed, TAG, ...])`` with a
distinct ``TAG`` per purpose, so two purposes can never share a stream by accident (before, the
generation-2 selection generator ``[seed, 2, 0]`` was rank 0's initial-hyperparameter generator).

=================  ======================================  =============================================
purpose            key                                     used for
=================  ======================================  =============================================
``INIT``           ``(seed, INIT, member)``                a member's initial hyperparameters
``SELECT``         ``(seed, SELECT, generation)``          who copies whom
``EXPLORE``        ``(seed, EXPLORE, generation, member)`` a receiver's new hyperparameters
``TRAIN``          ``(seed, TRAIN, member, generation)``   torch / numpy / python before a generation
``EVAL``           ``(seed, EVAL, generation[, member])``  evaluation episodes (paired: no member)
``EVAL_TEST``      ``(seed, EVAL_TEST, generation[, m])``  held-out-level evaluation episodes
``ENV``            ``(seed, ENV, member, which)``          building a member's envs
``REFERENCE``      ``(seed, REFERENCE)``                   the random-policy reference's actions
``FINAL``          ``(FINAL,)``                            the final evaluation on unseen episodes (shared
                                                          by every run, whatever its seed)
=================  ======================================  =============================================

Inside one evaluation set with seed ``s`` (:mod:`evo.learners.evaluation`), episode ``j`` starts
from ``[s, 0, j]`` and draws its actions from ``[s, 1, j]`` (these cannot meet the streams above,
whose tags are >= 101); the random-policy reference's episode ``j`` uses ``(seed, REFERENCE, j)``.
"""

from __future__ import annotations

import numpy as np

INIT, SELECT, EXPLORE, TRAIN, EVAL, EVAL_TEST, ENV, REFERENCE, FINAL = 101, 102, 103, 104, 105, 106, 107, 108, 109


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from a tuple of non-negative ints (base seed, purpose tag, ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def rng(*parts: int) -> np.random.Generator:
    """A numpy generator for the stream ``parts`` (base seed, purpose tag, ...)."""
    return np.random.default_rng([int(p) for p in parts])


def init_rng(seed: int, member: int) -> np.random.Generator:
    return rng(seed, INIT, member)


def selection_rng(seed: int, generation: int) -> np.random.Generator:
    return rng(seed, SELECT, generation)


def explore_rng(seed: int, generation: int, member: int) -> np.random.Generator:
    return rng(seed, EXPLORE, generation, member)


def train_seed(seed: int, member: int, generation: int) -> int:
    return derive_seed(seed, TRAIN, member, generation)


def eval_seed(seed: int, generation: int, member: int, *, paired: bool = True, test_levels: bool = False) -> int:
    """Seed of one evaluation. Paired (common random numbers): every member of a generation gets
    the same episodes (the same start states, the same ProcGen levels); unpaired: its own."""
    tag = EVAL_TEST if test_levels else EVAL
    return derive_seed(seed, tag, generation) if paired else derive_seed(seed, tag, generation, member)


def env_seed(seed: int, member: int, which: int = 0) -> int:
    """Seed a member's env ``which`` (0 training, 1 evaluation, 2 held-out levels) is built with."""
    return derive_seed(seed, ENV, member, which)


def final_eval_seed() -> int:
    """Episodes of the final evaluation: the same for every member of every run (whatever its
    ``--seed``, so PBT runs and baselines on a task are scored on one shared set), used by no
    selection (selection's sets come from ``(seed, EVAL, generation)``)."""
    return derive_seed(FINAL)


def legacy_final_eval_seed(seed: int) -> int:
    """The final evaluation's seed of runs made before it was shared by all runs (for reports of
    old run directories whose summary.json does not record it)."""
    return derive_seed(seed, FINAL)
