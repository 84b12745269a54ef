"""Under mpiexec, every registered transport moves any selection rule's plan bit-exactly: real PPO
members (one per rank) with evo's decide, and synthetic states with several members per rank
(local copies included)."""

from __future__ import annotations

import json

import pytest
from conftest import MPI_SCRIPTS, run_mpi

from evo.comm import TRANSPORTS

pytestmark = pytest.mark.mpi
EVERY_TRANSPORT = sorted(TRANSPORTS)


def _info(stdout: str, tag: str) -> dict:
    line = next((ln for ln in stdout.splitlines() if ln.startswith(tag + " ")), None)
    assert line is not None, f"no {tag} line in:\n{stdout[-3000:]}"
    return json.loads(line.split(" ", 1)[1])


def test_the_three_transports_are_registered() -> None:
    assert {"broadcast", "p2p", "subcomm"} <= set(TRANSPORTS)


@pytest.mark.timeout(200)
@pytest.mark.parametrize("rule", ["wta", "truncation"])
@pytest.mark.parametrize("transport", EVERY_TRANSPORT)
def test_learners_exchange_bit_exactly(rule: str, transport: str) -> None:
    res = run_mpi(4, str(MPI_SCRIPTS / "exchange_check.py"), rule, transport, timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    info = _info(res.stdout, "EXCHANGE-OK")
    assert info["n"] == 4 and info["plan"] and info["transport"] == transport


@pytest.mark.timeout(200)
@pytest.mark.parametrize(("rule", "transport"), [("wta", "broadcast"), *(("truncation", t) for t in EVERY_TRANSPORT)])
def test_failed_member_is_replaced(rule: str, transport: str) -> None:
    """A member with a NaN score never donates and always receives."""
    res = run_mpi(5, str(MPI_SCRIPTS / "exchange_check.py"), rule, transport, "nan", timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    info = _info(res.stdout, "EXCHANGE-OK")
    receivers = [r for r, _ in info["plan"]]
    donors = [d for _, d in info["plan"]]
    assert 1 in receivers and 1 not in donors


@pytest.mark.timeout(200)
@pytest.mark.parametrize(("ranks", "members"), [(2, 4), (3, 6), (2, 5), (3, 7)])
@pytest.mark.parametrize("transport", EVERY_TRANSPORT)
def test_several_members_per_rank_move_bit_exactly(transport: str, ranks: int, members: int) -> None:
    """wta, truncation (with and without failed members), random donor groups and the empty plan,
    with local copies between members of one rank."""
    res = run_mpi(ranks, str(MPI_SCRIPTS / "members_exchange_check.py"), transport, str(members), timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    info = _info(res.stdout, "MEMBERS-EXCHANGE-OK")
    assert (info["transport"], info["n"], info["world"]) == (transport, members, ranks)
