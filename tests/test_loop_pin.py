"""A fixed-seed synchronous run writes the same records as the pinned ones.

The pinned files (tests/data/pin_truncation_s3/) were first written by the loop before its rewrite
into evo/loop/ (the rewritten loop reproduced them exactly, but for the last generation's exploit,
which the old loop made although nothing trained on it), and regenerated once since, when batched
evaluation changed the episodes a score is measured on (see the folder's README). Everything that
selection and training compute must stay identical: every member's score, env steps and
hyperparameters per generation, and every exploit (receiver, donor, compared scores, explored
hyperparameters).

The run searches the default PPO space of its time (old_ppo_space.yaml; the default has changed since)
with the default cost cap (--max-cost-ratio 2.5), which none of its explores reached: a cap that
binds nowhere changes nothing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import run_mpi

PIN = Path(__file__).parent / "data" / "pin_truncation_s3"
ARGS = ["--env-id", "CartPole-v1", "--n-envs", "2", "--n-steps", "128", "--steps-per-generation", "256",
        "--eval-episodes", "2", "--generations", "4", "--num-agents", "4", "--seed", "3", "--no-tb-writer",
        "--hyperparams", str(PIN / "old_ppo_space.yaml")]
LINEAGE_KEYS = ("generation", "receiver", "donor", "receiver_score", "donor_score", "hparams_before",
                "donor_hparams", "hparams_after", "changes")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_fixed_seed_records_are_pinned(tmp_path: Path) -> None:
    res = run_mpi(2, "evo.truncation", *ARGS, "--log-dir", str(tmp_path), "--exp-name", "t", timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    old, new = _rows(PIN / "members.csv"), _rows(tmp_path / "t" / "members.csv")
    last = max(int(x["generation"]) for x in old)
    assert len(old) == len(new)
    columns = ["generation", "member", "score", "test_score", "env_steps", "episodes", "mean_episodic_return",
               *(c for c in old[0] if c.startswith("hp_"))]
    for a, b in zip(old, new, strict=True):
        assert {c: a[c] for c in columns} == {c: b[c] for c in columns}
        if int(a["generation"]) < last:
            assert a["copied_from"] == b["copied_from"]
        else:
            assert b["copied_from"] == "-1"  # no exploit after the last generation
        assert b["eval_set"] == b["generation"]
    old_lin = [x for x in _lines(PIN / "lineage.jsonl") if x["generation"] < last]
    new_lin = _lines(tmp_path / "t" / "lineage.jsonl")
    assert old_lin, "the pinned run must have exploits to compare"
    assert [{k: x[k] for k in LINEAGE_KEYS} for x in old_lin] == [{k: x[k] for k in LINEAGE_KEYS} for x in new_lin]
    assert all(x["receiver_eval_set"] == x["donor_eval_set"] == x["generation"] for x in new_lin)
