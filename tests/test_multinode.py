"""evo across nodes, on a cluster of network namespaces this module makes (tests/netns_cluster.py):
two "nodes" n1 and n2, each its own network stack and hostname, joined by veths to a bridge in a
third namespace, the head node, where mpiexec runs and launches Hydra's proxies on the nodes
through hpc/netns-rsh. The nodes share the filesystem, as cluster nodes share theirs.

* ranks really are on two nodes and talk over the veths (the bridge port counts the bytes);
* an exchange across nodes is bit-exact, for every transport, with one and several members per rank;
* every strategy and transport, sync and --async, several members per rank, runs to completion,
  with checkpoints and records from both nodes consistent;
* --resume on another node layout (2 nodes -> 1 node, same world size) completes the run;
* a lost node (every process of n2 killed) ends the job within 60 s, naming the lost host;
* a silent network (n2's switch port down, no process dies) is caught by evo's progress watchdog
  on every rank: one line naming the ranks it waits for, exit 76 (hpc/common.sh: requeue and resume),
  never a hang.

Needs root and the ``ip`` command (skipped elsewhere). Run: ``pytest tests/test_multinode.py -m multinode``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from conftest import MPI_SCRIPTS, ROOT, TINY, Completed, mpiexec_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netns_cluster import NetnsCluster, available
from slurm_cluster import SlurmUnavailable, ensure_installed, job_log
from slurm_cluster import wait_for_job as wait_job
from slurm_multinode import MultiNodeSlurm

pytestmark = [pytest.mark.multinode, pytest.mark.mpi]
TWO_NODES = (("n1", 2), ("n2", 2))
SMALL = [*TINY, "--no-tb-writer"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[NetnsCluster]:
    why = available()
    if why:
        pytest.skip(f"no simulated cluster here: {why}")
    if mpiexec_path() is None:
        pytest.skip("no mpiexec (pip install mpich)")
    with NetnsCluster(nodes=2) as c:
        print(f"\nnetns cluster {c.tag} up in {c.startup_seconds:.2f} s")
        yield c


@pytest.fixture(autouse=True)
def clean_nodes(cluster: NetnsCluster) -> Iterator[None]:
    """Every test starts and ends with the links up and no process left on the nodes."""
    yield
    for node in cluster.nodes:
        cluster.link(node.name, up=True)
        cluster.kill_node(node.name)


def launch(cluster: NetnsCluster, hosts: Sequence[tuple[str, int]], args: Sequence[str],
           env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """mpiexec on the head node, ``count`` ranks of ``python args...`` on each ``(node, count)``."""
    mpiexec = mpiexec_path()
    assert mpiexec is not None
    return subprocess.Popen([*cluster.mpiexec(mpiexec, hosts), sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cluster.env(env), cwd=ROOT,
                            start_new_session=True)


def finish(proc: subprocess.Popen[str], timeout: float, t0: float | None = None) -> Completed:
    """Collect a launched job; on timeout kill it (and its process group) and fail."""
    t0 = time.monotonic() if t0 is None else t0
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s (a hang)\n--- stdout\n{out[-3000:]}\n--- stderr\n{err[-4000:]}")
    return Completed(proc.returncode, out, err, time.monotonic() - t0)


def run(cluster: NetnsCluster, hosts: Sequence[tuple[str, int]], args: Sequence[str], timeout: float = 150,
        env: dict[str, str] | None = None) -> Completed:
    return finish(launch(cluster, hosts, args, env), timeout)


def bridge_bytes(cluster: NetnsCluster, node: str) -> int:
    """Bytes through node's switch port (both directions)."""
    out = subprocess.run(["ip", "-j", "-s", "-n", cluster.hub, "link", "show", cluster.node(node).veth],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    stats = json.loads(out)[0]["stats64"]
    return int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])


def tagged(stdout: str, tag: str) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1]) for line in stdout.splitlines() if line.startswith(tag + " ")]


# -- A: launching across the nodes ----------------------------------------------------------------
WHERE = """
import json, socket, sys
import numpy as np
from mpi4py import MPI
c = MPI.COMM_WORLD
node = c.Split_type(MPI.COMM_TYPE_SHARED, key=c.rank)
x = np.full(1 << 21, c.rank + 1, dtype=np.float32)  # 8 MiB
y = np.empty_like(x)
c.Allreduce(x, y)
ok = bool((y == sum(range(1, c.size + 1))).all())
line = json.dumps({"rank": c.rank, "host": socket.gethostname(), "proc": MPI.Get_processor_name(),
                   "local": node.size, "ok": ok})
sys.stdout.write("WHERE " + line + "\\n")  # one write: the ranks' lines arrive interleaved otherwise
sys.stdout.flush()
"""


@pytest.mark.timeout(120)
def test_ranks_span_the_nodes_and_talk_over_the_veths(cluster: NetnsCluster) -> None:
    before = bridge_bytes(cluster, "n2")
    res = run(cluster, TWO_NODES, ["-c", WHERE], timeout=90)
    assert res.returncode == 0, res.stderr[-3000:]
    where = {w["rank"]: w for w in tagged(res.stdout, "WHERE")}
    assert {r: w["host"] for r, w in where.items()} == {0: "n1", 1: "n1", 2: "n2", 3: "n2"}
    assert all(w["local"] == 2 and w["ok"] for w in where.values()), where
    moved = bridge_bytes(cluster, "n2") - before
    assert moved > 8 << 20, f"only {moved} bytes crossed n2's link: the ranks did not talk over the network"
    print(f"\n4 ranks on 2 nodes: {moved / 2**20:.1f} MiB through n2's port for an 8 MiB allreduce "
          f"({res.seconds:.1f} s)")


@pytest.mark.timeout(200)
@pytest.mark.parametrize("transport", ["broadcast", "p2p", "subcomm"])
def test_exchange_across_nodes_is_bit_exact(cluster: NetnsCluster, transport: str) -> None:
    """Real PPO members, one per rank (truncation: copies between nodes), then synthetic states with
    several members per rank (7 members on 4 ranks: local and cross-node copies in one plan)."""
    res = run(cluster, TWO_NODES, ["-m", "mpi4py", str(MPI_SCRIPTS / "exchange_check.py"), "truncation", transport])
    assert res.returncode == 0, res.stderr[-3000:]
    info = tagged(res.stdout, "EXCHANGE-OK")
    assert info and info[0]["n"] == 4 and info[0]["plan"], res.stdout[-2000:]
    assert any((r < 2) != (d < 2) for r, d in info[0]["plan"]), f"no copy crossed the nodes: {info[0]['plan']}"
    res = run(cluster, TWO_NODES, ["-m", "mpi4py", str(MPI_SCRIPTS / "members_exchange_check.py"), transport, "7"])
    assert res.returncode == 0, res.stderr[-3000:]
    info = tagged(res.stdout, "MEMBERS-EXCHANGE-OK")
    assert info and (info[0]["transport"], info[0]["n"], info[0]["world"]) == (transport, 7, 4)


# -- A: whole runs across the nodes ---------------------------------------------------------------
def members_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "members.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def check_complete(run_dir: Path, members: int, generations: int, world: int) -> None:
    """Every (generation, member) row once, the last checkpoint complete, the summary written."""
    pairs = sorted((int(r["generation"]), int(r["member"])) for r in members_rows(run_dir))
    assert pairs == [(g, m) for g in range(generations) for m in range(members)], pairs
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["generations"] == generations and summary["world_size"] == world
    last = run_dir / "checkpoints" / f"gen_{generations:06d}"
    for m in range(members):
        manifest = json.loads((last / f"member_{m:03d}.manifest.json").read_text())
        assert manifest["generation"] == generations, manifest


def hosts_of(run_dir: Path) -> dict[int, str]:
    """rank -> host, from the watchdog's heartbeat files (each written by its rank on its node)."""
    return {int(p.stem.split("_")[1]): json.loads(p.read_text())["host"]
            for p in (run_dir / ".watchdog").glob("rank_*.json")}


RUNS = [("wta", ""), ("truncation", ""), ("truncation_collective", ""), ("truncation", "--async")]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("strategy", "mode"), RUNS, ids=[f"{s}{m.replace('--', '-')}" for s, m in RUNS])
def test_pbt_runs_across_nodes(cluster: NetnsCluster, tmp_path: Path, strategy: str, mode: str) -> None:
    """6 members on 4 ranks (ranks 0 and 1 on n1 host two each), 2 generations."""
    gens = 2
    res = run(cluster, TWO_NODES, ["-m", f"evo.{strategy}", *SMALL, "--generations", str(gens), "--num-agents", "6",
                                   "--log-dir", str(tmp_path), "--exp-name", "x", *mode.split()], timeout=240)
    assert res.returncode == 0, res.stderr[-4000:]
    run_dir = tmp_path / "x"
    check_complete(run_dir, 6, gens, 4)
    assert hosts_of(run_dir) == {0: "n1", 1: "n1", 2: "n2", 3: "n2"}
    if not mode:
        manifest = json.loads((run_dir / "checkpoints" / f"gen_{gens:06d}" / "manifest.json").read_text())
        assert manifest["world_size"] == 4
        lineage = [json.loads(x) for x in (run_dir / "lineage.jsonl").read_text().splitlines()]
        assert lineage, "no exploit happened"
    print(f"\n{strategy} {mode}: 6 members on 2 nodes, {gens} generations in {res.seconds:.1f} s")


@pytest.mark.timeout(300)
def test_resume_on_another_node_layout(cluster: NetnsCluster, tmp_path: Path) -> None:
    """2 generations on two nodes, then --resume with a third generation on one node (same world size)."""
    common = ["-m", "evo.truncation", *SMALL, "--num-agents", "4", "--log-dir", str(tmp_path), "--exp-name", "x"]
    res = run(cluster, TWO_NODES, [*common, "--generations", "2"], timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    res = run(cluster, [("n1", 4)], [*common, "--generations", "3", "--resume"], timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resumed at generation 2" in res.stdout + res.stderr, res.stdout[-2000:]
    check_complete(tmp_path / "x", 4, 3, 4)
    assert set(hosts_of(tmp_path / "x").values()) == {"n1"}


# -- C: a lost node, a silent network ------------------------------------------------------------
def wait_for(path: Path, proc: subprocess.Popen[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the job ended ({proc.returncode}) before {path.name}\n{out[-2000:]}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"no {path} after {seconds} s\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.1)


RESUMABLE_GENS = 8


def long_run(tmp_path: Path, *extra: str) -> list[str]:
    return ["-m", "evo.truncation", *SMALL, "--generations", str(RESUMABLE_GENS), "--log-dir", str(tmp_path),
            "--exp-name", "x", *extra]


def resume_on_n1(cluster: NetnsCluster, tmp_path: Path) -> None:
    """The interrupted run resumes from its last complete checkpoint on the surviving node and
    finishes with every (generation, member) row once, as an uninterrupted run."""
    res = run(cluster, [("n1", 4)], [*long_run(tmp_path), "--resume"], timeout=200)
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r"resumed at generation (\d+)", res.stdout + res.stderr)
    assert m and 1 <= int(m.group(1)) < RESUMABLE_GENS, res.stdout[-2000:]
    check_complete(tmp_path / "x", 4, RESUMABLE_GENS, 4)


@pytest.mark.timeout(400)
def test_lost_node_ends_the_job_and_names_it(cluster: NetnsCluster, tmp_path: Path) -> None:
    proc = launch(cluster, TWO_NODES, long_run(tmp_path))
    wait_for(tmp_path / "x" / "checkpoints" / "gen_000001" / "manifest.json", proc, 120)
    t0 = time.monotonic()
    killed = cluster.kill_node("n2")
    res = finish(proc, 90, t0)
    assert killed and res.returncode != 0
    assert res.seconds < 60, f"the job took {res.seconds:.0f} s to end"
    text = res.stdout + res.stderr
    named = [line for line in text.splitlines() if "lost" in line and " n2 " in line]
    assert len(named) == 1, f"not one line naming the lost node\n{text[-4000:]}"
    deadline = time.monotonic() + 10  # and nothing is left running on the surviving node
    while cluster.processes("n1") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not cluster.processes("n1"), "processes left on n1 after the job ended"
    print(f"\nnode n2 lost ({len(killed)} processes killed): job ended in {res.seconds:.1f} s, exit "
          f"{res.returncode}:\n  {named[0]}")
    resume_on_n1(cluster, tmp_path)


WRAPPED = """
source "$EVO_HOME/hpc/common.sh"
EVO_RUN_DIR=$1
shift
evo_run_preemptible "$@"
echo "EVO_RC=$EVO_RC"
"""


@pytest.mark.timeout(400)
def test_silent_network_is_caught_by_the_watchdog(cluster: NetnsCluster, tmp_path: Path) -> None:
    """n2's switch port goes down mid-run; nothing dies. Every rank's watchdog (--watchdog-s 8) names
    the ranks it waits for and exits 76; hpc/common.sh's launcher loop ends mpiexec if it cannot."""
    limit, grace = 15, 10
    mpiexec = mpiexec_path()
    assert mpiexec is not None
    cmd = [*cluster.mpiexec(mpiexec, TWO_NODES), sys.executable, *long_run(tmp_path, "--watchdog-s", str(limit))]
    proc = subprocess.Popen(["bash", "-c", WRAPPED, "wrapped", str(tmp_path / "x"), *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
                            env=cluster.env({"EVO_HOME": str(ROOT), "EVO_STALL_GRACE": str(grace)}))
    wait_for(tmp_path / "x" / "checkpoints" / "gen_000001" / "manifest.json", proc, 120)
    t0 = time.monotonic()
    cluster.link("n2", up=False)
    res = finish(proc, 120, t0)
    text = res.stdout + res.stderr
    assert "EVO_RC=76" in res.stdout, text[-4000:]
    assert res.seconds < limit + grace + 30, f"the job took {res.seconds:.0f} s to end\n{text[-3000:]}"
    lines = [line for line in text.splitlines() if line.startswith("evo: watchdog: ")]
    assert lines, text[-4000:]
    assert all(re.search(r"rank [01] on n1: .*waiting for ranks 2, 3 on n2 \(unreachable\)", x) for x in lines), lines
    assert (tmp_path / "x" / ".watchdog" / "stalled").exists()
    script = [line.split("] ", 1)[1] for line in res.stdout.splitlines() if line.startswith("[evo-hpc")]
    print(f"\nn2's link down: job ended in {res.seconds:.1f} s (watchdog {limit} s), {len(lines)} line(s):\n  "
          f"{lines[0]}\nhpc/common.sh: " + " | ".join(script))
    cluster.link("n2", up=True)
    cluster.kill_node("n2")  # what is left there (its ranks' own watchdogs ended them; the proxy may linger)
    resume_on_n1(cluster, tmp_path)


# -- D: Slurm across the nodes --------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm() -> Iterator[MultiNodeSlurm]:
    """Slurm on three nodes of their own (a job takes two; after losing one, the requeued job
    runs on the other two)."""
    why = available()
    if why:
        pytest.skip(f"no simulated cluster here: {why}")
    try:
        ensure_installed(timeout=300)
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm on this host: {exc}")
    with NetnsCluster(nodes=3) as net, MultiNodeSlurm(net) as cluster:
        print(f"\nslurm on {len(net.nodes)} namespace nodes up in {cluster.startup_seconds:.1f} s")
        yield cluster


def submit_and_wait_for_a_checkpoint(slurm: MultiNodeSlurm, tmp_path: Path, log: Path, run_dir: Path,
                                     env: dict[str, str]) -> str:
    """Submit hpc/pbt.sbatch on 2 nodes x 2 tasks and wait for its first complete checkpoint."""
    job = slurm.sbatch(ROOT / "hpc" / "pbt.sbatch", ["--chdir", str(tmp_path), "--output", str(log), "--nodes", "2",
                                                      "--ntasks", "4", "--ntasks-per-node", "2"], env=env)
    deadline = time.monotonic() + 120
    while not (run_dir / "checkpoints" / "gen_000001" / "manifest.json").exists():
        if time.monotonic() > deadline or slurm.state(job) not in ("PENDING", "RUNNING", "CONFIGURING"):
            pytest.fail(f"no first checkpoint ({slurm.state(job)})\n{job_log(log)[-3000:]}")
        time.sleep(0.1)
    return job


def sbatch_env(log_dir: Path, **extra: str) -> dict[str, str]:
    env = {"EVO_HOME": str(ROOT), "EVO_LOG_DIR": str(log_dir), "OMP_NUM_THREADS": "1", "EVO_VENV": sys.prefix}
    return {**env, **extra}


SLURM_ARGS = "--env-id CartPole-v1 --steps-per-generation 256 --n-envs 2 --n-steps 128 --eval-episodes 2 --no-tb-writer"


@pytest.mark.slurm
@pytest.mark.timeout(300)
@pytest.mark.parametrize("launcher", ["mpiexec", "srun"])
def test_slurm_pbt_on_two_nodes(slurm: MultiNodeSlurm, tmp_path: Path, launcher: str) -> None:
    """hpc/pbt.sbatch with --nodes=2: 4 ranks, 2 on each node, to completion."""
    log = tmp_path / "job.out"
    env = sbatch_env(tmp_path / "logs", EVO_STRATEGY="truncation", EVO_LAUNCHER=launcher, EVO_EXP_NAME="x",
                     EVO_ARGS=f"{SLURM_ARGS} --generations 2")
    job = slurm.sbatch(ROOT / "hpc" / "pbt.sbatch", ["--chdir", str(tmp_path), "--output", str(log), "--nodes", "2",
                                                      "--ntasks", "4", "--ntasks-per-node", "2"], env=env)
    info = wait_job(slurm, job, log, 240)
    text = job_log(log)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", text[-4000:]
    run_dir = tmp_path / "logs" / "x"
    check_complete(run_dir, 4, 2, 4)
    hosts = hosts_of(run_dir)
    assert hosts[0] == hosts[1] != hosts[2] == hosts[3], hosts
    print(f"\n{launcher}: ranks on {hosts}")


@pytest.mark.slurm
@pytest.mark.timeout(400)
def test_slurm_lost_node_requeues_and_resumes(slurm: MultiNodeSlurm, tmp_path: Path) -> None:
    """Kill every process of the job's second node mid-run: the job ends within 60 s with a line
    naming the lost node and its ranks, is requeued, and resumes on the two healthy nodes."""
    gens = RESUMABLE_GENS
    log = tmp_path / "job.out"
    run_dir = tmp_path / "logs" / "x"
    env = sbatch_env(tmp_path / "logs", EVO_STRATEGY="truncation", EVO_LAUNCHER="mpiexec", EVO_EXP_NAME="x",
                     EVO_ARGS=f"{SLURM_ARGS} --generations {gens}")
    job = submit_and_wait_for_a_checkpoint(slurm, tmp_path, log, run_dir, env)
    victim = hosts_of(run_dir)[3]
    t0 = time.monotonic()
    slurm.net.kill_node(victim)
    while "requeueing job" not in job_log(log) and time.monotonic() - t0 < 90:
        time.sleep(0.2)
    ended = time.monotonic() - t0
    info = wait_job(slurm, job, log, 240)
    text = job_log(log)
    first, _, second = text.partition("restart=1]")
    lost = [x for x in first.splitlines() if f"lost node {victim}" in x]
    assert len(lost) == 1 and "ranks 2, 3" in lost[0], first[-4000:]
    assert ended < 60, f"the first allocation took {ended:.0f} s to end after the node was lost\n{first[-3000:]}"
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", text[-4000:]
    assert "resuming from it" in second and "run complete" in second, text[-4000:]
    check_complete(run_dir, 4, gens, 4)
    assert victim not in hosts_of(run_dir).values()
    print(f"\nnode {victim} lost: first allocation ended in {ended:.1f} s:\n  {lost[0]}")


@pytest.mark.slurm
@pytest.mark.timeout(400)
def test_slurm_silent_network_requeues_and_resumes(slurm: MultiNodeSlurm, tmp_path: Path) -> None:
    """Take the job's second node's link down mid-run (nothing dies): evo's watchdog ends the first
    allocation (exit 76, naming the ranks it waits for), the script requeues it, and the next
    allocation resumes and completes."""
    gens, limit = RESUMABLE_GENS, 15
    log = tmp_path / "job.out"
    run_dir = tmp_path / "logs" / "x"
    env = sbatch_env(tmp_path / "logs", EVO_STRATEGY="truncation", EVO_LAUNCHER="mpiexec", EVO_EXP_NAME="x",
                     EVO_STALL_GRACE="10", EVO_ARGS=f"{SLURM_ARGS} --generations {gens} --watchdog-s {limit}")
    job = submit_and_wait_for_a_checkpoint(slurm, tmp_path, log, run_dir, env)
    victim = hosts_of(run_dir)[3]
    t0 = time.monotonic()
    slurm.net.link(victim, up=False)
    try:
        while "requeueing job" not in job_log(log) and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        ended = time.monotonic() - t0
    finally:
        slurm.net.link(victim, up=True)
    info = wait_job(slurm, job, log, 240)
    text = job_log(log)
    first, _, second = text.partition("restart=1]")
    lines = [x for x in first.splitlines() if x.startswith("evo: watchdog: ")]
    assert lines and all(f"waiting for ranks 2, 3 on {victim} (unreachable)" in x for x in lines), first[-4000:]
    assert "evo stalled (exit 76" in first, first[-4000:]
    assert ended < limit + 60, f"the first allocation took {ended:.0f} s to end\n{first[-3000:]}"
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", text[-4000:]
    assert "resuming from it" in second and "run complete" in second, text[-4000:]
    check_complete(run_dir, 4, gens, 4)
    print(f"\n{victim}'s link down: first allocation ended in {ended:.1f} s (watchdog {limit} s):\n  {lines[0]}")
