"""evo.bench transport: the loop's own exchange phases on synthetic members.

Unit tests of the copy check and the synthetic member; then the smoke sweep under mpiexec, whose
rows must agree with the plans the rules make (copies), with the bytes that arrived (copies x the
flat state), and with the configurations asked for; and runs that cannot exchange report none."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests.conftest import mpiexec_path, run_module


def _read(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _line(receiver, generation, donor_score, **extra):
    return {"receiver": receiver, "generation": generation, "donor_score": donor_score, **extra}


def test_bad_copies_accepts_exactly_the_donor_states() -> None:
    from evo.bench.synthetic import bad_copies

    lineage = [_line(1, 0, 2.5), _line(2, 0, 2.5), _line(1, 1, 4.0)]
    good = [(1, 0, 2.5, True), (2, 0, 2.5, True), (1, 1, 4.0, True)]
    assert bad_copies(lineage, good) == 0
    assert bad_copies(lineage, [(1, 0, 2.5, True), (2, 0, 3.0, True), (1, 1, 4.0, True)]) == 1  # not the donor's
    assert bad_copies(lineage, [(1, 0, 2.5, True), (2, 0, 2.5, False), (1, 1, 4.0, True)]) == 1  # partial state
    assert bad_copies(lineage, good[:2]) == 1  # a planned copy never arrived
    assert bad_copies(lineage[:2], good) == 1  # a state arrived that no plan sent
    assert bad_copies(lineage, [*good, (1, 1, 4.0, True)]) == 1  # unpacked twice
    # async: the donor may have published a newer snapshot than the one compared; that one is copied
    newer = [_line(1, 0, 2.5, donor_snapshot_score=3.5)]
    assert bad_copies(newer, [(1, 0, 3.5, True)]) == 0
    assert bad_copies(newer, [(1, 0, 2.5, True)]) == 1


def test_synthetic_member_records_what_it_unpacks() -> None:
    from evo.bench.synthetic import SyntheticMember

    donor = SyntheticMember(0, 1000, {"learning_rate": 1e-3}, [0.0, 0.0], gain=1.5)
    receiver = SyntheticMember(1, 1000, {"learning_rate": 2e-3}, [0.0, 0.0], gain=0.5)
    for m in (donor, receiver):
        m.reseed(1)
        stats = m.train(7)
        assert stats.seconds >= 0 and m.num_timesteps == 7
    assert donor.evaluate(1, True, 0) == 1.5 and receiver.evaluate(1, True, 0) == 0.5
    buf = np.empty(donor.flat_size, dtype=np.float32)
    donor.pack(buf)
    receiver.unpack(buf)
    assert receiver.evaluate(1, True, 0) == 1.5 and np.array_equal(receiver.pack(), donor.pack())
    assert receiver.received == [(1, 1.5, True)] and receiver.bytes_in == 4000 and donor.bytes_in == 0
    buf[500:] = 9.0  # half of another state: not whole
    receiver.unpack(buf)
    assert receiver.received[-1] == (1, 1.5, False) and receiver.bytes_in == 8000


def _planned_copies(rule: str, n: int, quantile: float = 0.25) -> int:
    from evo.core.selection import truncation_size

    return n - 1 if rule == "wta" else truncation_size(n, quantile)


@pytest.mark.mpi
@pytest.mark.timeout(400)
def test_transport_smoke_rows_match_plans_and_bytes(tmp_path) -> None:
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    r = run_module("evo.bench", "transport", "--smoke", "--ranks", "2", "3", "--out", str(tmp_path), "--timeout",
                   "180", timeout=390)
    assert r.returncode == 0, r.stderr[-3000:]
    for col in ("transport", "exchange_ms_median", "idle_pct", "copies", "weights_bytes"):
        assert col in r.stdout
    rows = _read(tmp_path / "transport.csv")
    data = json.loads((tmp_path / "transport.json").read_text())
    transports = data["transports"]
    assert set(transports) >= {"broadcast", "p2p", "subcomm", "hub"} and not data["failed"]
    expected = [(mb, rule, t, n) for mb in ("0.01", "0.05") for rule in ("truncation", "wta") for t in transports
                for n in ("2", "3")]
    assert [(row["mb"], row["rule"], row["transport"], row["ranks"]) for row in rows] == expected
    exchanging_gens = 3 - 1  # the last generation ends with its evaluation
    for row in rows:
        n, copies, flat = int(row["ranks"]), int(row["copies"]), int(row["flat_bytes"])
        assert flat == 4 * round(float(row["mb"]) * 1e6 / 4)
        assert int(row["weights_bytes"]) == copies * flat  # every planned copy arrived, once, whole
        assert int(row["bad_copies"]) == 0
        planned = _planned_copies(row["rule"], n) * exchanging_gens
        if row["mode"] == "sync":  # the plan of every generation is carried out
            assert copies == planned, row
            assert float(row["copies_per_gen"]) == pytest.approx(copies / exchanging_gens)
            assert float(row["exchange_ms_median"]) > 0
        else:  # async: a member acts on each complete evaluation set at most once, if its donor is ahead
            assert row["transport"] == "hub" and copies <= planned, row
            assert float(row["service_cpu_pct"]) < 50
        assert 0 <= float(row["idle_pct"]) < 100 and float(row["ctrl_bytes_in_median"]) > 0
        # the busiest rank in its busiest generation received at least the average share of the weights
        assert float(row["bytes_in_max"]) >= flat * copies / (n * 3)
    assert (tmp_path / "transport.png").stat().st_size > 10_000


@pytest.mark.mpi
@pytest.mark.timeout(240)
@pytest.mark.parametrize("flags", [["--no-exchange"], ["--generations", "1"]], ids=["no-exchange", "one-generation"])
def test_transport_without_exchange_moves_nothing(tmp_path, flags) -> None:
    if mpiexec_path() is None:
        pytest.skip("no mpiexec")
    r = run_module("evo.bench", "transport", "--smoke", "--ranks", "3", "--mb", "0.01", "--rules", "wta", *flags,
                   "--out", str(tmp_path), "--timeout", "150", timeout=230)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _read(tmp_path / "transport.csv")
    assert len(rows) == len(json.loads((tmp_path / "transport.json").read_text())["transports"]) >= 4
    for row in rows:
        assert int(row["copies"]) == 0 and int(row["weights_bytes"]) == 0, row
        assert float(row["copies_per_gen"]) == 0 and int(row["bad_copies"]) == 0
