"""A simulated multi-node cluster on this host: Linux network namespaces joined by veth pairs.

Layout (``tag`` is unique per cluster: ``evo<pid>x<k>``)::

    namespace <tag>-hub   bridge br0, address <subnet>.1     the head node: mpiexec (or slurmctld) runs here
      veth n1 ---------- eth0 in namespace <tag>-n1, address <subnet>.11, hostname n1
      veth n2 ---------- eth0 in namespace <tag>-n2, address <subnet>.12, hostname n2
      ...

Every address lives on an interface inside a namespace this module created; nothing is routed
out, and the root namespace gets no interface or address. The nodes share the filesystem (and so
the run directory), as the nodes of a cluster share theirs. Processes are started on a node with
:meth:`NetnsCluster.popen` / :meth:`NetnsCluster.exec_prefix` (``nsenter --net`` + ``unshare
--mount --uts``: each node also has its own hostname and /etc/hosts naming head, n1, n2, ...,
from ``/etc/netns/<ns>/hosts``, removed again by :meth:`stop`), and Hydra launches its proxies through
``hpc/netns-rsh`` (``mpiexec -launcher rsh -launcher-exec hpc/netns-rsh``), which reads the map
of host -> namespace written by :meth:`NetnsCluster.start` (``EVO_NETNS_MAP``).

:meth:`NetnsCluster.stop` kills every process in the namespaces and deletes them (the veths and
the bridge go with them); it is idempotent, never raises, and also runs at interpreter exit.
:func:`sweep_stale` removes namespaces left by an earlier test process that died (their tag
names a pid that no longer exists).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slurm_cluster import _alive

ROOT = Path(__file__).resolve().parents[1]
NETNS_RSH = ROOT / "hpc" / "netns-rsh"
SUBNET = "10.213.77"
"""Private /24 used only on the veths and bridge inside this module's namespaces."""
CMD_TIMEOUT = 20.0
_counter = itertools.count()


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``, no kernel support)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=CMD_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def available() -> str | None:
    """None if this host can make the cluster, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"no {tool!r} command"
    name = f"evo{os.getpid()}probe"
    proc = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if proc.returncode != 0:
        return f"cannot create a network namespace: {proc.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


def _netns_names() -> list[str]:
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _kill_netns_processes(ns: str, deadline: float) -> None:
    """SIGKILL every process in namespace ``ns`` until none is left (bounded by ``deadline``)."""
    while time.monotonic() < deadline:
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def sweep_stale() -> list[str]:
    """Delete namespaces of earlier clusters whose creating process is gone. Returns their names."""
    removed = []
    for ns in _netns_names():
        m = re.fullmatch(r"evo(\d+)x\d+-(hub|n\d+)", ns)
        if m and not _alive(int(m.group(1))):
            _kill_netns_processes(ns, time.monotonic() + 5)
            _ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
            removed.append(ns)
    return removed


@dataclass(frozen=True)
class Node:
    name: str
    """Hostname inside the node (n1, n2, ...), also its name in Slurm."""
    netns: str
    addr: str
    veth: str
    """The veth end on the hub's bridge (the node's "switch port")."""


class NetnsCluster:
    """``nodes`` namespaces on one bridge. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    def __init__(self, nodes: int = 2, subnet: str = SUBNET) -> None:
        if not 1 <= nodes <= 9:
            raise ValueError("1 to 9 nodes")
        self.tag = f"evo{os.getpid()}x{next(_counter)}"
        self.subnet = subnet
        self.hub = f"{self.tag}-hub"
        self.hub_addr = f"{subnet}.1"
        self.nodes = [Node(f"n{i}", f"{self.tag}-n{i}", f"{subnet}.{10 + i}", f"n{i}") for i in range(1, nodes + 1)]
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.map_file = self.dir / "hosts.map"
        self._made: list[str] = []
        self.startup_seconds: float | None = None

    # lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> NetnsCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        atexit.register(self.stop)
        sweep_stale()
        self._add_netns(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{self.hub_addr}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for node in self.nodes:
            self._add_netns(node.netns)
            # the pair is made in the hub; its other end moves into the node as eth0
            _ip("-n", self.hub, "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
            _ip("-n", self.hub, "link", "set", node.veth, "master", "br0")
            _ip("-n", self.hub, "link", "set", node.veth, "up")
            _ip("-n", node.netns, "addr", "add", f"{node.addr}/24", "dev", "eth0")
            _ip("-n", node.netns, "link", "set", "eth0", "up")
        lines = [f"{self.hub_addr} {self.hub} head"]
        lines += [f"{n.addr} {n.netns} {n.name}" for n in self.nodes]
        self.map_file.write_text("\n".join(lines) + "\n")
        # Per-namespace /etc/hosts: `ip netns exec NS` bind-mounts /etc/netns/NS/hosts over /etc/hosts,
        # so every node resolves head, n1, n2, ... (Hydra and Slurm look hosts up by name).
        hosts = "".join(f"{a} {h}\n" for a, h in [("127.0.0.1", "localhost"), (self.hub_addr, "head"),
                                                   *((n.addr, n.name) for n in self.nodes)])
        for ns in self._made:
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)
        self.startup_seconds = time.monotonic() - t0

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def stop(self, timeout: float = 30.0) -> None:
        """Kill every process in the namespaces, delete them (veths and bridge go with them)."""
        deadline = time.monotonic() + timeout
        for ns in reversed(self._made):
            with contextlib.suppress(Exception):
                _kill_netns_processes(ns, deadline)
            with contextlib.suppress(Exception):
                _ip("netns", "del", ns, check=False)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        self._made.clear()
        with contextlib.suppress(OSError):
            Path("/etc/netns").rmdir()  # only if no other cluster's (or anybody's) files are left there
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.stop)

    # running things on nodes --------------------------------------------------------------------
    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def exec_prefix(self, where: str) -> list[str]:
        """Command prefix that runs on node ``where`` (``head`` = the hub) with that hostname and
        /etc/hosts. Unlike ``ip netns exec`` it keeps this host's /sys (slurmd needs its cgroups)."""
        ns = self.hub if where == "head" else self.node(where).netns
        return ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--mount", "--uts", "sh", "-c",
                'mount --bind "$1" /etc/hosts && hostname "$0" && shift && exec "$@"', where,
                str(Path("/etc/netns") / ns / "hosts")]

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for processes on the cluster (netns-rsh reads ``EVO_NETNS_MAP``)."""
        return {**os.environ, "EVO_NETNS_MAP": str(self.map_file), "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1", **mpi_env(), **(extra or {})}

    def popen(self, where: str, cmd: Sequence[str], env: Mapping[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.exec_prefix(where), *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env(env), cwd=cwd or ROOT, start_new_session=True)

    def mpiexec(self, mpiexec: str, hosts: Sequence[tuple[str, int]]) -> list[str]:
        """An mpiexec prefix run on the head node that places ``count`` ranks on each ``(node, count)``."""
        spec = ",".join(f"{self.node(h).addr}:{c}" for h, c in hosts)
        return [*self.exec_prefix("head"), mpiexec, "-launcher", "rsh", "-launcher-exec", str(NETNS_RSH),
                "-localhost", self.hub_addr, "-hosts", spec, "-n", str(sum(c for _, c in hosts))]

    # faults -------------------------------------------------------------------------------------
    def kill_node(self, name: str) -> list[int]:
        """SIGKILL every process of node ``name`` (as if it lost power; its link stays up). Returns the pids."""
        ns = self.node(name).netns
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split() if p.isdigit()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def link(self, name: str, up: bool) -> None:
        """Take node ``name``'s switch port down (or up again): its processes live on, but hear nothing."""
        _ip("-n", self.hub, "link", "set", self.node(name).veth, "up" if up else "down")

    def processes(self, name: str) -> list[int]:
        return [int(p) for p in _ip("netns", "pids", self.node(name).netns, check=False).stdout.split()
                if p.isdigit()]


def mpi_env() -> dict[str, str]:
    """MPICH settings for the simulated nodes. pip's MPICH talks between nodes through UCX, and UCX
    sees that every namespace is on one machine and would use shared memory between the "nodes"
    (measured: an 8 MiB allreduce moved 17 KB over the veths). TCP on eth0 only makes inter-node
    traffic cross the veths as on a real cluster; ranks of one node still use MPICH's shared memory."""
    return {"UCX_TLS": "tcp,self", "UCX_NET_DEVICES": "eth0"}


# -- the transport benchmark across the simulated nodes (hpc/README.md, "Scaling on paper") -------
def bench_transport(ranks: Sequence[int], mb: Sequence[float], transports: Sequence[str], rules: Sequence[str],
                    generations: int = 6, interval_s: float = 0.05, timeout: float = 600) -> list[dict[str, object]]:
    """``evo.bench``'s transport worker on a 2-node cluster, ranks split evenly between the nodes.
    Returns its rows (one per world size x state size x rule x transport)."""
    import json
    import sys

    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    cfg = {"mb": list(mb), "rules": list(rules), "transports": list(transports), "generations": generations,
           "interval_s": interval_s, "spread": 0.0, "jitter": 0.0, "quantile": 0.25, "seed": 0, "exchange": True}
    rows: list[dict[str, object]] = []
    with NetnsCluster(nodes=2) as c:
        for n in ranks:
            result, work = c.dir / f"transport-{n}.json", c.dir / f"runs-{n}"
            hosts = [("n1", n - n // 2), ("n2", n // 2)]
            cmd = [*c.mpiexec(mpiexec, hosts), sys.executable, "-m", "evo.bench", "_transport_worker", "--config",
                   json.dumps(cfg), "--result", str(result), "--workdir", str(work)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=c.env(), cwd=ROOT, timeout=timeout)
            if proc.returncode != 0 or not result.exists():
                raise RuntimeError(f"{n} ranks failed ({proc.returncode}): {proc.stderr[-2000:]}")
            rows += json.loads(result.read_text())
    return rows


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import csv
    import sys

    p = argparse.ArgumentParser(description="evo.bench transport across a 2-node namespace cluster (root)")
    p.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--mb", type=float, nargs="+", default=[0.1, 1.0, 8.0])
    p.add_argument("--transports", nargs="+", default=["broadcast", "p2p", "subcomm", "hub"])
    p.add_argument("--rules", nargs="+", default=["wta", "truncation"])
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--out", default="-", help="CSV file (default: stdout)")
    ns = p.parse_args(argv)
    rows = bench_transport(ns.ranks, ns.mb, ns.transports, ns.rules, ns.generations)
    keys = ["ranks", "mb", "rule", "transport", "exchange_ms_median", "exchange_ms_max", "select_ms_median",
            "copies_per_gen", "flat_bytes", "bytes_in_max", "ctrl_bytes_in_max"]
    out = sys.stdout if ns.out == "-" else open(ns.out, "w", newline="")
    w = csv.DictWriter(out, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)


if __name__ == "__main__":
    _main()
