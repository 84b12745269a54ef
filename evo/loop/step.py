"""The member step, written once for both schedules.

One generation (sync) or interval (async) of one member::

    train -> evaluate (paired: generation g's episodes are eval set g) -> publish -> decide
      -> copy (transport or hub) -> apply (weights + explored hparams) -> record -> checkpoint

The schedules (:mod:`evo.loop.sync`, :mod:`evo.loop.asynchronous`) only decide *when* ``decide``
runs and how the bytes move; the phases a member goes through are the functions here.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from evo.core import seeds
from evo.errors import EvoError
from evo.loop.context import Outcome, Run, Slot

if TYPE_CHECKING:
    from evo.learners import Learner


MAX_FAILURES = 3
"""A member failing this many generations (intervals) in a row ends the run: something is wrong
beyond one unlucky member (its env, the search space)."""


class MemberFailedError(EvoError):
    """A member failed :data:`MAX_FAILURES` generations in a row."""

    exit_code = 1


def train(r: Run, slot: Slot, gen: int) -> Outcome:
    """Train ``slot``'s member ``steps_per_generation`` env steps of generation ``gen``.

    ``stats.stopped`` is set if a stop signal cut it short (the generation is then dropped)."""
    t0 = time.perf_counter()
    m = slot.member
    if slot.broken_envs:  # it failed last time: fresh training envs (the copy it may have taken stays)
        from evo.learners.rebuild import rebuild_training_envs

        slot.rebuilds += 1
        rebuild_training_envs(m, slot.rebuilds)
        slot.broken_envs = False
    m.reseed(gen)
    if r.schedule:
        m.apply_hparams(r.schedule[min(gen, len(r.schedule) - 1)])
    hp_used = dict(m.hparams)
    failure = ""
    try:
        stats = m.train(r.cfg.steps_per_generation, should_stop=r.stop)
    except Exception as exc:  # the member's env or learner failed: the member fails alone
        from evo.learners import TrainStats

        stats, failure = TrainStats(seconds=time.perf_counter() - t0), f"training: {_one_line(exc)}"
        m.failed = not m.weights_finite()  # its envs broke; its weights may still be fine
    inject_fault(m, m.index, gen)
    return Outcome(slot, gen, stats, hp_used, t0=t0, failure=failure)


class _Skip(Exception):
    pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def evaluate(r: Run, o: Outcome) -> None:
    """Score the member on the evaluation episodes of its generation (eval set ``o.generation``):
    paired by default, so every member's score on one set comes from the same episodes."""
    cfg = r.cfg
    t0 = time.perf_counter()
    m, gen = o.slot.member, o.generation
    o.eval_set = gen
    try:
        if o.failure:  # its training failed: no score this generation (it ranks last)
            raise _Skip
        o.score = m.evaluate(cfg.eval_episodes, cfg.deterministic_eval,
                             seeds.eval_seed(cfg.seed, gen, m.index, paired=cfg.paired_eval))
        if cfg.eval_test_levels:
            test_seed = seeds.eval_seed(cfg.seed, gen, m.index, paired=cfg.paired_eval, test_levels=True)
            o.test_score = m.evaluate(cfg.eval_episodes, cfg.deterministic_eval, test_seed, test_levels=True)
    except Exception as exc:  # the evaluation env failed (or the policy gave invalid actions)
        o.score, o.test_score = math.nan, (math.nan if cfg.eval_test_levels else None)
        o.failure = o.failure or f"evaluation: {_one_line(exc)}"
    if not math.isfinite(o.score) and not o.failure:
        o.failure = "non-finite weights or losses" if m.failed else "non-finite score"
    o.eval_s = time.perf_counter() - t0
    o.slot.failures = o.slot.failures + 1 if o.failure else 0
    o.slot.broken_envs = o.slot.broken_envs or bool(o.failure)  # fresh envs before it trains again
    if o.slot.failures >= MAX_FAILURES:
        raise MemberFailedError(f"member {m.index} failed {o.slot.failures} generations in a row (last: {o.failure}); "
                                f"the run stops, its checkpoints stand")


def final_evaluate(r: Run, member: Learner) -> float:
    """The member on fresh episodes that no selection ever saw (the same for every member)."""
    cfg = r.cfg
    t0 = time.perf_counter()
    score = member.evaluate(cfg.eval_episodes, cfg.deterministic_eval, seeds.final_eval_seed())
    r.timeline.add("final_eval", time.perf_counter() - t0)
    return score


def apply_copy(slot: Slot, state: np.ndarray, hparams: Mapping[str, Any]) -> None:
    """The receiver takes the donor's flat state (weights, optimizer, normalisation) and its own
    explored hyperparameters (a member that failed gets fresh envs when it next trains)."""
    member = slot.member
    member.unpack(state)
    member.apply_hparams(dict(hparams))


def is_last(r: Run, gen: int) -> bool:
    """The run's last generation ends with its evaluation: no exploit or explore after it."""
    return gen + 1 >= r.cfg.generations


def inject_fault(member: Learner, rank: int, generation: int) -> None:
    """Test hook: ``EVO_FAULT=KIND:RANK:GENERATION`` makes one rank fail on purpose after training.

    ``raise`` raises an exception (the job must abort, not hang); ``nan`` poisons the member's
    weights (it must be marked failed, rank last and be replaced); ``exit`` ends the process.
    """
    spec = os.environ.get("EVO_FAULT")
    if not spec or spec.startswith("manifest:"):
        return
    kind, r, g = spec.split(":")
    if int(r) != rank or int(g) != generation:
        return
    if kind == "raise":
        raise RuntimeError(f"injected fault on rank {rank} in generation {generation}")
    if kind == "nan":
        buf = member.pack()
        buf[: member.num_params] = np.nan
        member.unpack(buf)
    elif kind == "exit":
        os._exit(9)


__all__ = ["apply_copy", "evaluate", "final_evaluate", "inject_fault", "is_last", "train"]
