"""A real TensorBoard server over a PBT run and a baseline run serves evo's runs and tags.

Starts ``python -m tensorboard.main`` on a free loopback port, polls its HTTP API until every
expected run and tag is loaded (bounded), checks runs, tags, a scalar series against the CSV
records and the HParams plugin, and always kills the server.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report import make_tiny_runs

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

HOST = "127.0.0.1"
MEMBER_TAGS = {"charts/episodic_return", "charts/episodic_length", "pbt/score", "pbt/copied_from",
               "charts/env_steps_per_s", "hparams/learning_rate", "hparams/batch_size", "losses/value_loss",
               "time/train_s"}
POPULATION_TAGS = {"population/best_score", "population/mean_score", "population/worst_score",
                   "population/n_exploits", "population/total_env_steps", "time/exchange_ms_max"}
PBT_ONLY = {"pbt/copied_from", "population/n_exploits", "time/exchange_ms_max", "time/select_s", "time/exchange_s"}
"""Tags a baseline run does not carry: nothing is selected or exchanged there."""
EXPECTED_RUNS = {**{f"pbt/tb/member_{i:03d}": MEMBER_TAGS for i in range(4)},
                 **{f"base/tb/member_{i:03d}": MEMBER_TAGS - PBT_ONLY for i in range(2)},
                 "pbt/tb/population": POPULATION_TAGS, "base/tb/population": POPULATION_TAGS - PBT_ONLY}
# Never go through a proxy: the server is on loopback.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def get(base: str, path: str, data: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(base + path, data=body,
                                 headers={"Content-Type": "application/json"} if body else {})
    with OPENER.open(req, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_runs(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(base URL, scalar tags by run)`` of a TensorBoard that has loaded every expected run."""
    log = tmp_path_factory.mktemp("tensorboard") / "server.log"
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "no_proxy": HOST, "NO_PROXY": HOST}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(runs), "--host", HOST, "--port", str(port),
             "--load_fast", "false", "--reload_interval", "1"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 90
        tags: dict[str, Any] = {}
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                tags = get(base, "/data/plugin/scalars/tags", timeout=5)
                if all(run in tags and want <= set(tags[run]) for run, want in EXPECTED_RUNS.items()):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tensorboard did not serve every run and tag within 90 s; got {sorted(tags)}\n"
                            f"{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield base, tags
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass


@pytest.mark.timeout(400)
def test_runs_and_tags_are_served(server: tuple[str, dict[str, Any]]) -> None:
    base, tags = server
    runs = set(get(base, "/data/runs"))
    assert set(EXPECTED_RUNS) <= runs, sorted(runs)
    for run, want in EXPECTED_RUNS.items():
        assert want <= set(tags[run]), (run, sorted(want - set(tags[run])))
    # CartPole has no held-out levels: no test-score series is written
    assert "pbt/test_score" not in tags["pbt/tb/member_000"]
    for run in ("base/tb/member_000", "base/tb/member_001", "base/tb/population"):
        assert not PBT_ONLY & set(tags[run]), (run, sorted(PBT_ONLY & set(tags[run])))


@pytest.mark.timeout(400)
def test_population_series_equals_generations_csv(server: tuple[str, dict[str, Any]], runs: Path) -> None:
    base, _ = server
    query = urllib.parse.urlencode({"run": "pbt/tb/population", "tag": "population/best_score"})
    series = get(base, f"/data/plugin/scalars/scalars?{query}")
    with open(runs / "pbt" / "generations.csv", newline="") as fh:
        gens = list(csv.DictReader(fh))
    # x-axis: the member's own env steps; values are stored as float32
    assert [int(step) for _, step, _ in series] == [int(g["env_steps"]) for g in gens]
    assert [v for _, _, v in series] == pytest.approx([float(g["best_score"]) for g in gens], rel=1e-6)


@pytest.mark.timeout(400)
def test_hparams_dashboard_lists_hyperparameters(server: tuple[str, dict[str, Any]]) -> None:
    base, _ = server
    deadline = time.monotonic() + 30
    while True:
        experiment = get(base, "/data/plugin/hparams/experiment", data={"experimentName": ""})
        names = {h["name"] for h in experiment.get("hparamInfos", [])}
        metrics = {m["name"]["tag"] for m in experiment.get("metricInfos", [])}
        if {"learning_rate", "batch_size", "n_epochs"} <= names and "hparams/final_score" in metrics:
            break
        assert time.monotonic() < deadline, (sorted(names), sorted(metrics))
        time.sleep(0.5)
