"""PB2's history rebuilt from the records, so a resumed run explores as an uninterrupted one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evo.core.decide import Decision, observation

if TYPE_CHECKING:
    from evo.core.pb2 import Observation


def parse_number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def pb2_history_from_records(run_dir: Path, keep_below: int,
                             column: str = "score") -> tuple[list[Observation], dict[int, float]]:
    """PB2's observations (and each member's next start score) from members.csv and
    lineage.jsonl, generation by generation, members in order."""
    from evo.records import read_csv, read_jsonl

    table = [x for x in read_csv(run_dir / "members.csv") if int(x["generation"]) < keep_below]
    lineage = read_jsonl(run_dir / "lineage.jsonl") if (run_dir / "lineage.jsonl").exists() else []
    history: list[Observation] = []
    start: dict[int, float] = {}
    for g in sorted({int(x["generation"]) for x in table}):
        rows = sorted((x for x in table if int(x["generation"]) == g), key=lambda x: int(x["member"]))
        scores = [float(x[column]) if x[column] not in ("", "nan") else math.nan for x in rows]
        for x, score in zip(rows, scores, strict=True):
            hps = {k[3:]: parse_number(v) for k, v in x.items() if k.startswith("hp_")}
            o = observation(g, int(x["member"]), hps, score, start)
            if o is not None:
                history.append(o)
        decisions = [Decision(g, int(d["receiver"]), int(d["donor"]), math.nan, float(d["donor_score"]),
                              {}, {}, {}) for d in lineage if int(d["generation"]) == g]
        start.update({int(x["member"]): s for x, s in zip(rows, scores, strict=True)})
        start.update({d.receiver: d.donor_score for d in decisions})
    return history, start
