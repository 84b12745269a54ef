"""TensorBoard's HParams entries of a real 2-rank run (two members per rank) match members.csv.

Every rank writes, for each member it hosts, one HParams session: the member's final score with the
hyperparameters it trained its last generation with (evo/loop/finish.py). This test reads them back from
``tb/member_XXX`` with TensorBoard's own event reader and HParams protos (no evo code) and compares each
with the member's last row of members.csv: every ``hp_*`` column and the score.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY, run_mpi

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

MEMBERS, RANKS, GENERATIONS = 4, 2, 3


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    logs = tmp_path_factory.mktemp("hparams")
    res = run_mpi(RANKS, "evo.truncation", *TINY, "--num-agents", str(MEMBERS), "--generations", str(GENERATIONS),
                  "--log-dir", str(logs), "--exp-name", "run", "--checkpoint-every", "0", timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    return logs / "run"


def hparams_sessions(member_dir: Path) -> list[tuple[dict[str, Any], dict[str, float]]]:
    """Every HParams session in a member's event files: (hyperparameters, metrics written with it)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    sessions = []
    for path in sorted(member_dir.glob("**/events.out.tfevents.*")):
        hps: dict[str, Any] | None = None
        metrics: dict[str, float] = {}
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                plugin = v.metadata.plugin_data
                if plugin.plugin_name == metadata.PLUGIN_NAME and v.tag == metadata.SESSION_START_INFO_TAG:
                    info = metadata.parse_session_start_info_plugin_data(plugin.content)
                    hps = {k: getattr(x, x.WhichOneof("kind")) for k, x in info.hparams.items()}
                elif v.tag.startswith("hparams/final_"):
                    value = tensor_util.make_ndarray(v.tensor).item() if v.HasField("tensor") else v.simple_value
                    metrics[v.tag] = float(value)
        if hps is not None:
            sessions.append((hps, metrics))
    return sessions


def csv_value(text: str) -> Any:
    """A members.csv cell as the HParams proto holds it: a number (as a float), a bool, or text."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


def test_every_member_hparams_entry_matches_its_last_members_csv_row(run_dir: Path) -> None:
    with open(run_dir / "members.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    last = {}
    for r in rows:  # rows are appended generation by generation: the last one per member wins
        last[int(r["member"])] = r
    assert sorted(last) == list(range(MEMBERS))
    assert {int(r["generation"]) for r in last.values()} == {GENERATIONS - 1}
    seen = []
    for member, row in sorted(last.items()):
        sessions = hparams_sessions(run_dir / "tb" / f"member_{member:03d}")
        assert len(sessions) == 1, f"member {member}: {len(sessions)} HParams sessions"
        hps, metrics = sessions[0]
        want = {k[3:]: csv_value(v) for k, v in row.items() if k.startswith("hp_")}
        assert want, "members.csv has no hp_* column"
        assert set(hps) == set(want), (member, sorted(hps), sorted(want))
        for name, value in want.items():
            got = hps[name]
            if isinstance(value, float) and not isinstance(got, bool):
                assert float(got) == value, (member, name, got, value)  # doubles, both exact
            else:
                assert got == value, (member, name, got, value)
        score = float(row["score"])
        final = metrics.get("hparams/final_score")
        assert final is not None, (member, metrics)
        # TensorBoard keeps scalars as float32
        assert (math.isnan(final) and math.isnan(score)) or final == pytest.approx(score, rel=1e-6, abs=1e-6), \
            (member, final, score)
        seen.append(tuple(sorted(want.items())))
    assert len(set(seen)) > 1, "every member ended with the same hyperparameters: the test could not tell them apart"
