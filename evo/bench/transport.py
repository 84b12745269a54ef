"""``transport``: the loop's exchange phases on synthetic members, against world size, for each
state size x rule x transport (a registered synchronous transport, or ``hub`` for the asynchronous
schedule). One ``mpiexec`` launch per world size runs :func:`evo.bench.phases.transport_worker`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import mpi_module, pyplot, table, write_outputs
from evo.bench.transport_rows import TRANSPORT_COLUMNS, TRANSPORT_NOTES

SMOKE: dict[str, Any] = {"ranks": [2], "mb": [0.01, 0.05], "generations": 3, "interval_s": 0.02}
"""``--smoke``: tiny and quick (flags given win)."""
DEFAULTS: dict[str, Any] = {"ranks": [8, 16, 32, 64, 128], "mb": [0.1, 7.5], "generations": 4, "interval_s": 0.5}
DEFAULT_RULES = ("wta", "truncation")


def transport_names() -> list[str]:
    """Every registered transport, then ``hub`` (the asynchronous schedule's)."""
    from evo.comm import TRANSPORTS

    return [*sorted(TRANSPORTS), "hub"]


def sweep_config(ns: argparse.Namespace) -> tuple[list[int], dict[str, Any]]:
    """(world sizes, the worker's config) of ``ns``: given flags, else ``--smoke``'s, else the defaults."""
    base = SMOKE if ns.smoke else DEFAULTS
    pick = {k: getattr(ns, k) if getattr(ns, k) is not None else v for k, v in base.items()}
    cfg = {"mb": pick["mb"], "rules": ns.rules or list(DEFAULT_RULES), "transports": ns.transports or transport_names(),
           "generations": pick["generations"], "interval_s": pick["interval_s"], "spread": ns.spread,
           "jitter": ns.jitter, "quantile": ns.quantile, "seed": ns.seed, "exchange": not ns.no_exchange}
    return list(pick["ranks"]), cfg


def cmd_transport(ns: argparse.Namespace) -> None:
    ranks, cfg = sweep_config(ns)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="evo-bench-") as tmpdir:
        for n in ranks:
            print(f"  transport on {n} rank(s) ...", file=sys.stderr, flush=True)
            result, workdir = Path(tmpdir) / f"transport-{n}.json", Path(tmpdir) / f"runs-{n}"
            rc, _out, err, secs = mpi_module(n, "evo.bench", ["_transport_worker", "--config", json.dumps(cfg),
                                                              "--result", str(result), "--workdir", str(workdir)],
                                             ns.timeout)
            if rc != 0 or not result.exists():
                what = "timed out (deadlock?)" if rc == -9 else f"failed (exit {rc})"
                print(f"evo.bench transport: {n} ranks {what} after {secs:.0f}s:\n{err[-2000:]}", file=sys.stderr,
                      flush=True)
                failed.append(f"{n} ranks: {what}")
                continue
            rows += json.loads(result.read_text())
    order = {t: i for i, t in enumerate(cfg["transports"])}
    rows.sort(key=lambda r: (r["mb"], r["rule"], order[r["transport"]], r["ranks"]))
    print(f"\ntransport: synthetic members, {cfg['generations']} generations of {cfg['interval_s']} s "
          f"(spread {cfg['spread']}, jitter {cfg['jitter']}), quantile {cfg['quantile']}, "
          f"{'with' if cfg['exchange'] else 'without'} exchange, on {os.cpu_count()} cores")
    print(table(rows, TRANSPORT_COLUMNS))
    print(f"note: {TRANSPORT_NOTES}")
    bad = sum(int(r["bad_copies"]) for r in rows)
    if bad:
        print(f"WARNING: {bad} copies did not bring the donor's state", file=sys.stderr)
    out = Path(ns.out)
    write_outputs(out, "transport", rows, TRANSPORT_COLUMNS, {**cfg, "ranks": ranks, "failed": failed,
                                                               "cores": os.cpu_count(), "notes": TRANSPORT_NOTES})
    if rows:
        plot(rows, out / "transport.png")
    if failed or bad:
        raise SystemExit(f"evo.bench transport: {'; '.join(failed) or f'{bad} bad copies'}")


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel row per state size: exchange ms, idle %, bytes in and control bytes in against ranks."""
    plt = pyplot()
    if plt is None:
        return
    sizes = sorted({r["mb"] for r in rows})
    metrics = [("exchange_ms_median", "exchange ms / generation (median)"), ("idle_pct", "idle % of wall time"),
               ("bytes_in_max", "bytes in / rank / generation (max)"),
               ("ctrl_bytes_in_median", "control bytes in / rank / generation (median)")]
    ranks = sorted({r["ranks"] for r in rows})
    fig, axes = plt.subplots(len(sizes), len(metrics), figsize=(5 * len(metrics), 3.6 * len(sizes)), squeeze=False)
    for i, mb in enumerate(sizes):
        for j, (key, label) in enumerate(metrics):
            ax = axes[i][j]
            for rule, transport in sorted({(r["rule"], r["transport"]) for r in rows}):
                rs = sorted((r for r in rows if r["mb"] == mb and (r["rule"], r["transport"]) == (rule, transport)),
                            key=lambda r: r["ranks"])
                if rs:
                    ax.plot([r["ranks"] for r in rs], [r.get(key, math.nan) for r in rs],
                            "o-" if transport == "hub" else "x--", label=f"{rule}/{transport}")
            ax.set(xlabel="ranks", ylabel=label, title=f"{mb} MB state")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ranks, [str(r) for r in ranks])
            ax.minorticks_off()
            if "bytes_in" in key:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")
