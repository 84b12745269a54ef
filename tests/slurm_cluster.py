"""A real single-node Slurm cluster on this host, for testing the batch scripts in ``hpc/``.

:class:`SlurmCluster` starts a private ``munged`` (own key, socket and log in a temporary
folder), then ``slurmctld -D`` and ``slurmd -D`` with a ``slurm.conf`` written into that folder
(no accounting, ``proctrack/linuxproc``, ``task/none``, ports picked free at start), and stops
all of them again. Nothing outside the temporary folder is touched, except that
:func:`ensure_installed` may ``apt-get install`` Debian's Slurm packages when they are missing
and we are root.

Every daemon, and every process a job runs, carries ``SLURM_CONF=<our slurm.conf>`` in its
environment; :meth:`SlurmCluster.stop` uses that to find and kill stragglers (job steps whose
``slurmstepd`` outlived ``slurmd``), so it never touches a process it did not start.

Every subprocess call has a timeout and every polling loop a deadline.

Known facts of Slurm 22.05 (Debian 12) this module relies on:

* more tasks than the node's CPUs stay pending forever, so the node declares ``cpus`` CPUs
  (default 8) and ``SlurmdParameters=config_overrides`` lets slurmd accept that;
* a requeued job may start only ``cred_expire + 1`` seconds after it ended
  (``AuthInfo=...,cred_expire=10`` here instead of 120 s), and ``KillWait`` (30 s by default,
  5 s here) bounds how long a signalled step may linger;
* ``scancel -s SIG`` signals job steps only; ``scancel -b -s SIG`` reaches the batch script;
* ``JobRequeue=0`` here, so requeueing works only for jobs that ask ``--requeue`` (as the
  scripts in ``hpc/`` do).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

APT_PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "squeue", "srun")
CMD_TIMEOUT = 30.0
"""Seconds any single Slurm client command may take."""

FINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "TIMEOUT",
})  # fmt: skip


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be brought up on this host (the reason is the message)."""


class SlurmError(RuntimeError):
    """A Slurm command failed or a wait ran out of time."""


# -- installation -------------------------------------------------------------------------------
def missing_binaries() -> list[str]:
    return [b for b in BINARIES if _which(b) is None]


def _which(name: str) -> str | None:
    # munged and the daemons live in /usr/sbin, which a non-login PATH may lack.
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/bin"
    return shutil.which(name, path=path)


def ensure_installed(timeout: float = 600.0) -> None:
    """Make sure the Slurm and MUNGE binaries exist; install them with apt-get if we may.

    Raises :class:`SlurmUnavailable` when they are missing and cannot be installed here.
    """
    missing = missing_binaries()
    if not missing:
        return
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise SlurmUnavailable(f"Slurm binaries missing ({', '.join(missing)}) and not root to install them")
    apt = shutil.which("apt-get")
    if apt is None:
        raise SlurmUnavailable(f"Slurm binaries missing ({', '.join(missing)}) and no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    deadline = time.monotonic() + timeout
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES]):
        left = deadline - time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"{' '.join(cmd)} timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise SlurmUnavailable(f"{' '.join(cmd)} failed ({proc.returncode}): {' | '.join(tail)}")
    missing = missing_binaries()
    if missing:
        raise SlurmUnavailable(f"still missing after apt-get install: {', '.join(missing)}")


# -- helpers ------------------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _node_hardware() -> dict[str, str]:
    """``slurmd -C`` as a dict (NodeName, CPUs, RealMemory, ...)."""
    slurmd = _which("slurmd")
    assert slurmd is not None
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=CMD_TIMEOUT).stdout
    first = out.splitlines()[0] if out else ""
    return dict(kv.split("=", 1) for kv in first.split() if "=" in kv)


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol -o show job`` output (one line of ``Key=Value``) as a dict.

    Values may contain spaces (``Command=script arg``); a value runs up to the next `` Key=``.
    """
    out: dict[str, str] = {}
    matches = list(re.finditer(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=", text))
    for i, m in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        out[m.group(1)] = text[m.end():end].strip()
    return out


def _pids_with_env(marker: bytes) -> list[int]:
    """Processes whose environment contains ``marker`` (e.g. ``b"SLURM_CONF=/tmp/x/slurm.conf"``)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if marker + b"\0" in env or env.endswith(marker):
            found.append(int(entry))
    return found


def _stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL (bounded)."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)


# -- the cluster --------------------------------------------------------------------------------
class SlurmCluster:
    """A single-node Slurm cluster in ``root`` (a fresh temporary folder by default).

    Use as a context manager, or call :meth:`start` / :meth:`stop` (``stop`` is idempotent and
    safe after a failed ``start``).
    """

    def __init__(self, root: Path | None = None, cpus: int = 8, cred_expire: int = 10, kill_wait: int = 5,
                 cluster_name: str = "evotest") -> None:
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="evo-slurm-"))
        self.cpus = cpus
        self.cred_expire = cred_expire
        self.kill_wait = kill_wait
        self.cluster_name = cluster_name
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "etc" / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.startup_seconds: float | None = None
        self.slurmd_timeout = 30
        self._logs: dict[str, Path] = {}

    # environment for clients and jobs -------------------------------------------------------
    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for Slurm client commands (jobs inherit it through ``sbatch``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
        env["SLURM_CONF"] = str(self.conf)
        path = env.get("PATH", "/usr/bin:/bin")
        for extra_dir in ("/usr/sbin", "/sbin"):
            if extra_dir not in path.split(os.pathsep):
                path += os.pathsep + extra_dir
        env["PATH"] = path
        env.update(extra or {})
        return env

    # lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        ensure_installed()
        t0 = time.monotonic()
        atexit.register(self.stop)  # last resort if the caller never gets to stop()
        deadline = t0 + timeout
        for sub in ("etc", "munge", "state", "spool", "log", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        self._start_munge(deadline)
        hw = _node_hardware()
        memory = hw.get("RealMemory", "1000")
        ctld_port, slurmd_port = _free_ports(2)
        self.conf.write_text(self._slurm_conf(memory, ctld_port, slurmd_port))
        self._spawn("slurmctld", [*self.on(None), _req("slurmctld"), "-D", "-f", str(self.conf)])
        self._wait(lambda: self._scontrol_ok(["ping"]), deadline, "slurmctld to answer ping")
        for name, _ in self.node_addrs():
            self._spawn(self._slurmd_key(name),
                        [*self.on(name), _req("slurmd"), "-D", "-f", str(self.conf), "-N", name])
        names = ",".join(n for n, _ in self.node_addrs())
        self._wait(self._node_idle, deadline, f"node(s) {names} to become idle")
        self.startup_seconds = time.monotonic() - t0

    # where the daemons run (tests/slurm_multinode.py puts them in network namespaces) ----------
    def node_addrs(self) -> list[tuple[str, str]]:
        """(NodeName, NodeAddr) of every node of the cluster."""
        return [(self.node, "127.0.0.1")]

    def ctld_host(self) -> str:
        """slurm.conf's SlurmctldHost."""
        return f"{self.node}(127.0.0.1)"

    def on(self, where: str | None) -> list[str]:
        """Command prefix that runs a daemon or client on node ``where`` (None: the controller's host)."""
        return []

    def _slurmd_key(self, name: str) -> str:
        return "slurmd" if len(self.node_addrs()) == 1 else f"slurmd-{name}"

    def stop(self, timeout: float = 60.0) -> None:
        """Cancel every job, wait for them to drain, stop slurmd, slurmctld and munged.

        Bounded by ``timeout`` (plus a few seconds of SIGKILL fallbacks); never raises.
        """
        deadline = time.monotonic() + timeout
        if self.procs.get("slurmctld") is not None and self.procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run(["scancel", "--full", "--quiet", "--user", "root"], check=False, timeout=10)
                for job in self.job_ids():
                    self.run(["scancel", "--full", "--quiet", job], check=False, timeout=10)
            # let slurmd finish the job steps (KillWait) so no slurmstepd is orphaned
            with contextlib.suppress(Exception):
                self._wait(lambda: not self.job_ids(), min(deadline, time.monotonic() + 2 * self.kill_wait + 15),
                           "jobs to drain")
        for key in [k for k in self.procs if k.startswith("slurmd")]:
            _stop_process(self.procs.get(key))
        self._kill_stragglers(deadline)
        _stop_process(self.procs.get("slurmctld"))
        _stop_process(self.procs.get("munged"))
        self.procs.clear()
        self._kill_stragglers(deadline)
        atexit.unregister(self.stop)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_stragglers(self, deadline: float) -> None:
        """Kill leftover processes of this cluster (job steps, slurmstepd) that carry our SLURM_CONF."""
        if not self.conf.exists():
            return
        marker = f"SLURM_CONF={self.conf}".encode()
        # Daemons still running (and their helpers, e.g. slurmctld's slurmscriptd) are stopped by
        # _stop_process in order; killing slurmscriptd under a live slurmctld makes it hang.
        own = {p.pid for p in self.procs.values() if p.poll() is None}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = [p for p in _pids_with_env(marker) if not _descends_from(p, own)]
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            end = min(deadline, time.monotonic() + 5.0)
            while time.monotonic() < end and any(_alive(p) for p in pids):
                time.sleep(0.1)

    # daemons ------------------------------------------------------------------------------------
    def _start_munge(self, deadline: float) -> None:
        mdir = self.munge_socket.parent
        os.chmod(mdir, 0o755)  # munged insists its socket folder is not writable by others
        key = mdir / "munge.key"
        with open(key, "wb") as fh:
            fh.write(os.urandom(1024))
        os.chmod(key, 0o400)
        self._spawn("munged", [
            _req("munged"), "--foreground", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
            f"--pid-file={mdir / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={mdir / 'munged.seed'}", "--num-threads=2",
        ])
        self._wait(self.munge_socket.exists, deadline, "munged socket")

    def _spawn(self, name: str, cmd: Sequence[str]) -> None:
        log = self.root / "log" / f"{name}.stdout"
        self._logs[name] = log
        with open(log, "ab") as out:
            self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                                env=self.env(), start_new_session=True)

    def _slurm_conf(self, memory: str, ctld_port: int, slurmd_port: int) -> str:
        r = self.root
        per_node = "" if len(self.node_addrs()) == 1 else "-%n"  # one spool, pid and log file per slurmd
        return "\n".join([
            f"ClusterName={self.cluster_name}",
            f"SlurmctldHost={self.ctld_host()}",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool' / 'slurmd'}{per_node}",
            f"SlurmctldPidFile={r / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'run' / 'slurmd'}{per_node}.pid",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd'}{per_node}.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MailProg=/bin/true",
            "SchedulerType=sched/backfill",
            # start jobs (and requeued jobs whose BeginTime passed) within a second or two
            "SchedulerParameters=sched_interval=1,bf_interval=1",
            "ReturnToService=2",
            "JobRequeue=0",
            f"KillWait={self.kill_wait}",
            "MinJobAge=600",
            "InactiveLimit=0",
            f"SlurmdTimeout={self.slurmd_timeout}",
            "SlurmdParameters=config_overrides",
            *(f"NodeName={name} NodeAddr={addr} CPUs={self.cpus} RealMemory={memory} State=UNKNOWN"
              for name, addr in self.node_addrs()),
            f"PartitionName=debug Nodes={','.join(n for n, _ in self.node_addrs())} Default=YES MaxTime=INFINITE "
            "State=UP OverSubscribe=NO",
            "",
        ])

    # client commands ----------------------------------------------------------------------------
    def run(self, cmd: Sequence[str], check: bool = True, timeout: float = CMD_TIMEOUT,
            env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        full = [*self.on(None), _req(cmd[0]), *cmd[1:]]
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=self.env(env), cwd=cwd,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{' '.join(cmd)} timed out after {timeout} s") from None
        if check and proc.returncode != 0:
            detail = proc.stderr.strip() or proc.stdout.strip()
            raise SlurmError(f"{' '.join(cmd)} failed ({proc.returncode}): {detail}")
        return proc

    def _scontrol_ok(self, args: Sequence[str]) -> bool:
        try:
            return self.run(["scontrol", *args], check=False, timeout=5).returncode == 0
        except SlurmError:
            return False

    def _node_idle(self) -> bool:
        """Every node of the cluster is IDLE."""
        try:
            out = self.run(["scontrol", "-o", "show", "node"], check=False, timeout=5).stdout
        except SlurmError:
            return False
        states = {d.get("NodeName"): d.get("State", "") for d in map(parse_scontrol, out.splitlines()) if d}
        return all(states.get(name, "").startswith("IDLE") for name, _ in self.node_addrs())

    def sbatch(self, script: Path | str, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
               script_args: Sequence[str] = (), cwd: Path | None = None) -> str:
        """Submit ``script``; returns the job id (``<id>`` or, for arrays, the array's job id)."""
        out = self.run(["sbatch", "--parsable", *args, str(script), *script_args], env=env, cwd=cwd).stdout
        return out.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of one job (for an array, its first task) as a dict; ``{}`` if unknown."""
        proc = self.run(["scontrol", "-o", "show", "job", job_id], check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return {}
        return parse_scontrol(proc.stdout.strip().splitlines()[0])

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """Every record of ``job_id`` (one per array task)."""
        proc = self.run(["scontrol", "-o", "show", "job", job_id], check=False)
        if proc.returncode != 0:
            return []
        return [parse_scontrol(line) for line in proc.stdout.splitlines() if line.strip()]

    def job_ids(self) -> list[str]:
        proc = self.run(["squeue", "-h", "-o", "%i"], check=False, timeout=10)
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    def state(self, job_id: str) -> str:
        return self.job(job_id).get("JobState", "")

    def wait_for(self, job_id: str, states: Iterable[str] = FINAL_STATES, timeout: float = 120.0,
                 poll: float = 0.25) -> dict[str, str]:
        """Poll until every record of ``job_id`` is in one of ``states``; return the (first) record."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        last: list[dict[str, str]] = []
        while True:
            last = self.jobs(job_id)
            if last and all(r.get("JobState") in wanted for r in last):
                return last[0]
            if time.monotonic() > deadline:
                seen = [(r.get("JobId"), r.get("JobState"), r.get("Reason")) for r in last]
                raise SlurmError(f"job {job_id} not in {sorted(wanted)} after {timeout:.0f} s: {seen}")
            time.sleep(poll)

    def log_tail(self, name: str = "slurmctld", lines: int = 30) -> str:
        """The end of a daemon log (for failure messages)."""
        path = self.root / "log" / f"{name}.log"
        if not path.exists():
            path = self._logs.get(name, path)
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # waiting ------------------------------------------------------------------------------------
    def _wait(self, predicate: object, deadline: float, what: str, poll: float = 0.1) -> None:
        assert callable(predicate)
        while not predicate():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SlurmError(f"{name} exited with {proc.returncode} while waiting for {what}:\n"
                                     f"{self.log_tail(name)}\n{self.log_tail(name + '.stdout')}")
            if time.monotonic() > deadline:
                raise SlurmError(f"timed out waiting for {what}")
            time.sleep(poll)


def _req(name: str) -> str:
    path = _which(name)
    if path is None:
        raise SlurmUnavailable(f"{name} not found")
    return path


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _descends_from(pid: int, ancestors: set[int]) -> bool:
    for _ in range(64):
        if pid in ancestors:
            return True
        if pid <= 1:
            return False
        pid = _ppid(pid)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def job_log(path: Path) -> str:
    """A batch job's output file, or a placeholder while it does not exist yet."""
    return path.read_text(errors="replace") if path.exists() else "(no job output)"


def wait_for_job(slurm: SlurmCluster, job: str, log: Path, timeout: float) -> dict[str, str]:
    """The finished job's record; a test failure with the job's output and slurmctld's log if it does not end."""
    import pytest

    try:
        return slurm.wait_for(job, timeout=timeout)
    except SlurmError as exc:
        pytest.fail(f"{exc}\n--- job output\n{job_log(log)[-4000:]}\n--- slurmctld\n{slurm.log_tail()}")
