"""A real multi-node Slurm cluster on this host: one slurmd per network namespace.

:class:`MultiNodeSlurm` is :class:`slurm_cluster.SlurmCluster` placed on a
:class:`netns_cluster.NetnsCluster`: slurmctld runs on the head node (the hub namespace, address
``<subnet>.1``), one ``slurmd -N nX`` in each node's namespace (``NodeName=nX NodeAddr=<its veth
address>``), munged beside them in this namespace (its socket is a file, which every namespace
sees). Client commands (sbatch, scontrol, ...) run on the head node. Jobs run inside the node
namespaces, so srun and Hydra's proxies cross the veths. ``SlurmdTimeout`` is short (10 s) so a
lost node is declared DOWN quickly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from netns_cluster import NetnsCluster, mpi_env
from slurm_cluster import SlurmCluster


class MultiNodeSlurm(SlurmCluster):
    """Slurm across the nodes of ``net`` (started and stopped by the caller)."""

    def __init__(self, net: NetnsCluster, root: Path | None = None, cpus: int = 4, slurmd_timeout: int = 10) -> None:
        super().__init__(root=root, cpus=cpus, cluster_name="evomulti")
        self.net = net
        self.slurmd_timeout = slurmd_timeout

    def start(self, timeout: float = 60.0) -> None:
        for name, _ in self.node_addrs():
            (self.root / "spool" / f"slurmd-{name}").mkdir(parents=True, exist_ok=True)
        super().start(timeout)

    def node_addrs(self) -> list[tuple[str, str]]:
        return [(n.name, n.addr) for n in self.net.nodes]

    def ctld_host(self) -> str:
        return f"head({self.net.hub_addr})"

    def on(self, where: str | None) -> list[str]:
        return self.net.exec_prefix("head" if where is None else where)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Clients' and jobs' environment: also MPICH over the veths (see netns_cluster.mpi_env)."""
        return super().env({**mpi_env(), **(extra or {})})
