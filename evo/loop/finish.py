"""The end of a run, the same for both schedules: the best member's model, HParams entries,
the final evaluation on unseen episodes and ``summary.json``."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from evo.core.selection import best_member
from evo.loop.context import Population, Run
from evo.loop.rows import nan_none
from evo.loop.step import final_evaluate
from evo.loop.timing import TIMING_NOTE
from evo.records import write_json

EXIT_PREEMPTED = 75
"""Exit code after a stop signal (SIGTERM/SIGUSR1): checkpointed, resume with ``--resume``
(75 is EX_TEMPFAIL: "try again later")."""
EXIT_STALLED = 76
"""Exit code of a rank whose progress watchdog fired (no generation or interval completed in time:
a silent network or a lost node; :mod:`evo.loop.watchdog`): requeue and resume, like 75."""


def finish(r: Run, pop: Population | None, wall: float, extra: Mapping[str, Any] | None = None) -> None:
    """(collective) Save the best member's model, write HParams and a summary.

    "Best" ranks on the score selection uses (``--select-on``) at the last generation. The last
    generation ends with its evaluation (no exploit or explore after it), so each member's
    HParams entry pairs its final score with the hyperparameters that produced it, on every rank.
    The final evaluation scores every member on fresh episodes that no selection ever saw: the
    selected member's last score is biased upwards (it won on those very episodes); this is not.
    """
    cfg, comm = r.cfg, r.comm
    best = -1
    if r.rank == 0 and pop is not None and pop.selection and not all(math.isnan(s) for s in pop.selection):
        best = best_member(pop.selection)
    best, scores, tests = comm.bcast((best, pop.scores if pop else [], pop.tests if pop else []), root=0)
    finals = []
    for s in r.slots:
        m = s.member
        if m.index not in r.final_eval:  # resumed after the final checkpoint: the members as they are now
            r.final_eval[m.index] = final_evaluate(r, m)
        if m.index == best:
            m.save_model(cfg.run_dir / "best_model.zip")
        if r.baseline:
            m.save_model(cfg.run_dir / "models" / f"final_member_{m.index:03d}.zip")
        metrics = {"hparams/final_score": scores[m.index] if scores else math.nan}
        if tests and tests[m.index] is not None:
            metrics["hparams/final_test_score"] = float(tests[m.index])
        s.tb.hparams(m.hparams, metrics, run_name=".")
        finals.append((m.index, r.final_eval[m.index]))
    r.timeline.mark("end")
    gathered = comm.gather((finals, r.timeline.summary()), root=0)
    if r.rank != 0:
        return
    final = [v for _, v in sorted(x for part, _ in gathered for x in part)]
    timing = [t for _, t in gathered]
    from evo.core.seeds import final_eval_seed

    write_json(cfg.run_dir / "summary.json", {
        "generations": cfg.generations, "world_size": comm.Get_size(), "num_agents": r.n, "best_member": best,
        "select_on": getattr(cfg, "select_on", "train"),
        "best_score": scores[best] if best >= 0 else None,
        "best_test_score": nan_none(tests[best]) if best >= 0 and tests and tests[best] is not None else None,
        "final_scores": [nan_none(s) for s in scores], "final_test_scores": [nan_none(t) for t in tests],
        "env_steps_per_member": r.slots[0].member.num_timesteps,
        "final_eval": {"scores": [nan_none(v) for v in final], "episodes": cfg.eval_episodes,
                       "seed": final_eval_seed(), "paired": True,
                       "note": "fresh episodes never used for selection (the same episodes for every member), "
                               "after the last generation (which ends with its evaluation: no exploit after it)"},
        "wall_s": wall, "strategy": cfg.strategy, **(dict(extra) if extra else {}),
        "timing": {"ranks": timing, "outside_loop_s_max": max(t["outside_loop_s"] for t in timing),
                   "note": TIMING_NOTE},
    })
    if cfg.verbose and best >= 0:
        print(f"done: best member {best} score {scores[best]:.2f} (on unseen episodes: {final[best]:.2f}); "
              f"outputs in {cfg.run_dir}", flush=True)


def print_stopped(where: str) -> None:
    """(rank 0) The one line after a stop signal, with advice that works."""
    print(f"evo: stop signal received; {where}; resume with --resume. Exit code {EXIT_PREEMPTED}.",
          file=sys.stderr, flush=True)
