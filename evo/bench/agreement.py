"""``agreement``: paired vs unpaired evaluation of a trained run.

Every member of the run's newest checkpoint is loaded and the population is evaluated twice,
independently, many times over: how often do two evaluations agree on who is in the bottom
quantile (whom truncation replaces), with paired episodes (one seed set per evaluation, shared by
every member) and unpaired (a seed set per member)?"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import table, write_outputs
from evo.errors import ConfigError

AGREEMENT_COLUMNS = ["mode", "members", "bottom_k", "episodes", "trials", "mean_overlap", "same_bottom_set"]


def bottom_agreement(first: Sequence[float], second: Sequence[float], k: int) -> float:
    """Share of the bottom-``k`` members of ``first`` that are also in the bottom ``k`` of ``second``."""
    from evo.core.selection import rank_members

    a, b = set(rank_members(first)[-k:]), set(rank_members(second)[-k:])
    return len(a & b) / k


def load_population(run: Path) -> tuple[Any, list[Any], dict[str, Any]]:
    """(config, every member loaded from its newest checkpoint, config.json) of a finished run."""
    import evo.loop.checkpoints as ckpt
    from evo.config import PBTConfig
    from evo.learners import make_learner

    try:
        saved = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{run} is not an evo run directory (no readable config.json)") from None
    cfg = PBTConfig(**{k: v for k, v in saved["config"].items() if k in PBTConfig.__dataclass_fields__})
    n = int(cfg.num_agents or saved["world_size"])
    members = []
    for i in range(n):
        directory = ckpt.member_latest(run, i)
        if directory is None:
            raise ConfigError(f"{run}: member {i} has no checkpoint")
        entry = ckpt.read_member_manifest(directory, i).get("entry") or {}
        m = make_learner(cfg, entry.get("hparams") or {}, index=i)
        ckpt.load_member(directory, m)
        members.append(m)
    return cfg, members, saved


def cmd_agreement(ns: argparse.Namespace) -> None:
    from evo.core import seeds
    from evo.core.selection import truncation_size

    run = Path(ns.run)
    cfg, members, saved = load_population(run)
    n = len(members)
    k = truncation_size(n, ns.quantile)
    det = bool(saved.get("deterministic_eval", True))
    out: list[dict[str, Any]] = []
    for mode in ("paired", "unpaired"):
        agree, exact = [], 0
        for trial in range(ns.trials):
            evals = []
            for rep in range(2):
                key = 1000 + 2 * trial + rep  # evaluation "generations" no run ever used
                evals.append([m.evaluate(ns.episodes, det, seeds.eval_seed(cfg.seed, key, m.index,
                                                                           paired=mode == "paired"))
                              for m in members])
            share = bottom_agreement(evals[0], evals[1], k)
            agree.append(share)
            exact += int(share == 1.0)
        out.append({"mode": mode, "members": n, "bottom_k": k, "episodes": ns.episodes, "trials": ns.trials,
                    "mean_overlap": sum(agree) / len(agree), "same_bottom_set": exact / ns.trials})
    for m in members:
        m.close()
    print(f"bottom-quantile agreement between two independent evaluations of {run}")
    print(table(out, AGREEMENT_COLUMNS))
    write_outputs(Path(ns.out), "agreement", out, AGREEMENT_COLUMNS, {"run": str(run), "deterministic_eval": det})
