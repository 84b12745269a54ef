"""One row of the transport benchmark, from the loop's records of a configuration and what each
rank measured (pure: no MPI)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import num, ratio
from evo.bench.synthetic import bad_copies
from evo.records import read_csv, read_jsonl

TRANSPORT_COLUMNS = ["mb", "mode", "rule", "transport", "exchange", "ranks", "select_ms_median",
                     "exchange_ms_median", "exchange_ms_max", "idle_pct", "drain_pct", "makespan_s",
                     "intervals_per_s", "copies", "copies_per_gen", "flat_bytes", "weights_bytes",
                     "ctrl_bytes_in_median", "ctrl_bytes_in_max", "bytes_in_max", "msgs_in_mean", "service_cpu_pct",
                     "bad_copies", "seconds"]
TRANSPORT_NOTES = (
    "synthetic members (one per rank): a float32 state of MB megabytes (flat_bytes), 'training' = a sleep of "
    "interval_s x a per-member slowness (lognormal, sigma=spread) x a per-interval jitter (lognormal, "
    "sigma=jitter), seeded; the same durations for every configuration. Everything else is the loop's own code: "
    "sync = evo.loop.step train/evaluate, evo.loop.sync publish_and_decide (the rule + explore on rank 0, each "
    "rank's part of the plan scattered), copy_and_apply through the named transport, record; async (transport "
    "hub) = evo.loop.asynchronous.run_interval with rank 0's Coordinator behind an AsyncHub. The last generation "
    "ends with its evaluation (no exchange). select_ms / exchange_ms: the loop's own time_select_s / "
    "time_exchange_s (sync select includes waiting for the slowest member; async exchange = fetch + explore + "
    "apply); exchange_ms per generation is generations.csv's exchange_ms_max (max over members), median / max "
    "over the generations that exchanged, after the first if there are several. copies: lineage lines the "
    "loop wrote; weights_bytes: bytes of the states the receivers unpacked, all ranks, whole run (= copies x "
    "flat_bytes when every copy arrived once); bad_copies: copies whose unpacked state is not the donor's "
    "published one (or arrived without a lineage line, or twice). idle_pct: time not training / wall time up "
    "to each rank's last interval, all ranks. drain_pct: async ranks waiting in the hub's finish() for the "
    "slowest member. intervals_per_s: sum over ranks of generations / that rank's wall time. makespan_s: the "
    "slowest rank's wall time. ctrl bytes: pickled control messages (scores, plans, rows; async: reports, "
    "metas) received per rank per generation; bytes_in_max adds the weights (relaying inside an MPI Bcast is "
    "not counted); the async ctrl max is rank 0, the coordinator. service_cpu_pct: CPU of each rank's hub "
    "service thread / its wall time, mean over ranks.")


def exchange_generations(gens: Sequence[Mapping[str, str]], generations: int) -> list[Mapping[str, str]]:
    """The generations that exchanged (every one but the last), after the first if there are several."""
    deciding = [g for g in gens if int(g["generation"]) < generations - 1]
    return deciding[1:] if len(deciding) > 1 else deciding


def transport_row(spec: Any, n: int, run_dir: Path, ranks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The row of one configuration (``spec``: :class:`evo.bench.phases.Spec`) on ``n`` ranks."""
    gens = sorted(read_csv(run_dir / "generations.csv"), key=lambda g: int(g["generation"]))
    members = read_csv(run_dir / "members.csv")
    lineage = read_jsonl(run_dir / "lineage.jsonl") if (run_dir / "lineage.jsonl").exists() else []
    g_count = spec.generations
    kept = exchange_generations(gens, g_count)
    kept_ids = {int(g["generation"]) for g in kept}
    ex_ms = [num(g["exchange_ms_max"]) for g in kept]
    sel_ms = [1000 * num(m["time_select_s"]) for m in members if int(m["generation"]) in kept_ids]
    wall = sum(float(r["wall_s"]) for r in ranks)
    train = sum(float(r["train_s"]) for r in ranks)
    drain = sum(float(r["drain_s"]) for r in ranks)
    ctrl = [float(r["ctrl_in"]) / g_count for r in ranks]
    total = [(float(r["ctrl_in"]) + float(r["weights_in"])) / g_count for r in ranks]
    cpu = [float(r["service_cpu"]) for r in ranks if r.get("service_cpu") is not None]
    deciding = sum(1 for g in gens if int(g["generation"]) < g_count - 1)
    received = [tuple(x) for r in ranks for x in r["received"]]
    return {
        "mb": spec.mb, "mode": spec.mode, "rule": spec.rule, "transport": spec.transport, "exchange": spec.exchange,
        "ranks": n, "generations": len(gens),
        "select_ms_median": statistics.median(sel_ms) if sel_ms else math.nan,
        "exchange_ms_median": statistics.median(ex_ms) if ex_ms else math.nan,
        "exchange_ms_max": max(ex_ms) if ex_ms else math.nan,
        "idle_pct": 100 * ratio(wall - train, wall), "drain_pct": 100 * ratio(drain, wall + drain),
        "makespan_s": max(float(r["wall_s"]) for r in ranks),
        "intervals_per_s": sum(g_count / float(r["wall_s"]) for r in ranks if float(r["wall_s"]) > 0),
        "copies": len(lineage), "copies_per_gen": ratio(len(lineage), deciding) if deciding else 0.0,
        "flat_bytes": spec.size * 4, "weights_bytes": sum(int(r["weights_in"]) for r in ranks),
        "ctrl_bytes_in_median": statistics.median(ctrl), "ctrl_bytes_in_max": max(ctrl), "bytes_in_max": max(total),
        "msgs_in_mean": statistics.fmean(float(r["msgs_in"]) / g_count for r in ranks),
        "service_cpu_pct": 100 * statistics.fmean(cpu) if cpu else math.nan,
        "bad_copies": bad_copies(lineage, received),
    }
