"""Extending evo: a selection rule and a transport registered from a file outside evo (toy_plugins.py)
drive a real run; --help lists the transports and rules as choices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_module, run_mpi
from stable_baselines3.common.save_util import load_from_zip_file

TESTS = Path(__file__).parent


def test_help_lists_transports_and_rules_as_choices() -> None:
    res = run_module("evo.truncation", "--help", timeout=60)
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "--transport {broadcast,p2p,subcomm,hub}" in text
    assert "--rule {truncation,wta}" in text


@pytest.mark.mpi
@pytest.mark.timeout(200)
def test_a_toy_rule_and_a_toy_transport_from_outside_evo(tmp_path: Path) -> None:
    env = {"EVO_PLUGINS": "toy_plugins", "PYTHONPATH": str(TESTS)}
    help_res = run_mpi(1, "evo.pbt", "--help", env=env, timeout=60)
    assert "allgather" in help_res.stdout and "last_copies_first" in help_res.stdout, help_res.stderr[-2000:]
    res = run_mpi(2, "evo.pbt", "--rule", "last_copies_first", "--transport", "allgather", *TINY,
                  "--generations", "3", "--num-agents", "4", "--log-dir", str(tmp_path), "--exp-name", "toy",
                  "--no-tb-writer", env=env, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rule last_copies_first, transport allgather" in res.stdout
    run = tmp_path / "toy"
    lines = [json.loads(x) for x in (run / "lineage.jsonl").read_text().splitlines()]
    # the rule's plan, every generation but the last (which ends with its evaluation)
    assert [(x["generation"], x["receiver"], x["donor"]) for x in lines] == [(0, 3, 0), (1, 3, 0)]
    # the checkpoint after generation 1 was written after its exchange: member 3 (rank 1) holds member 0's
    # (rank 0) weights and optimizer state, bit for bit, moved by the toy transport
    directory = run / "checkpoints" / "gen_000002"
    _, p0, _ = load_from_zip_file(directory / "member_000.zip")
    _, p3, _ = load_from_zip_file(directory / "member_003.zip")
    assert p0 is not None and p3 is not None
    for key in ("policy", "policy.optimizer"):
        a, b = p0[key], p3[key]
        if key == "policy":
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
        else:
            sa, sb = a["state"], b["state"]
            assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i] if torch.is_tensor(sa[i][k]))
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["rule"], config["transport"]) == ("last_copies_first", "allgather")
