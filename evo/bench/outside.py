"""``outside``: where a whole run's wall time goes, inside and outside the generation loop, for one
or more evo installations side by side (before / after a change), interleaved round by round.

Each round launches ``mpiexec -n RANKS PYTHON -m evo.ENTRY ARGS`` once per installation (its own
``mpiexec``, next to its Python) and times the whole command, from the launcher's start to its exit.
The loop's wall time is the last ``wall_s`` of ``generations.csv``, which every version writes, so
``outside = command - loop`` is measured the same way for any version. Member time by phase is summed
over ``members.csv`` (train, evaluate, select, exchange); ``checkpoint`` is the checkpoints' time on the
critical path (sync: the slowest member's per generation, from ``checkpoints.jsonl``; async: the busiest
rank's). Where
``summary.json`` has ``timing`` (:mod:`evo.loop.timing`), the row splits the outside time too:
``to_start`` (interpreter, imports, checks), ``start`` (members built, config, random-policy
reference), ``finish``, and ``exit`` (the command's end after the slowest rank's last mark: process
teardown and the launcher).

Ratios are per round (installation / the first one), then their median: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.bench.common import num, ratio, run_cmd, table, write_outputs
from evo.records import read_csv, read_jsonl

DEFAULT_ARGS = ["--env-id", "CartPole-v1", "--generations", "5"]
PHASES = ["train_s", "eval_s", "select_s", "exchange_s", "checkpoint_s"]
COLUMNS = ["install", "round", "command_s", "loop_s", "outside_s", "to_start_s", "start_s", "reference_s",
           "finish_s", "exit_s", *PHASES, "eval_share"]
SUMMARY = ["install", "rounds", "command_s", "loop_s", "outside_s", "to_start_s", "start_s", "exit_s", "eval_share",
           "command_ratio", "outside_ratio"]


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("outside", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                        help="a whole run's wall time in and outside the loop, installations side by side")
    sp.add_argument("--out", default="bench_out", help="output folder (CSV, JSON)")
    sp.add_argument("--timeout", type=float, default=900, help="seconds per launched job")
    sp.add_argument("--python", action="append", default=None, metavar="LABEL=PYTHON",
                    help="an installation to time (repeat; the first is the reference of the ratios); "
                         "default: this Python")
    sp.add_argument("--ranks", type=int, default=4)
    sp.add_argument("--rounds", type=int, default=3)
    sp.add_argument("--entry", default="truncation", help="entry point: evo.ENTRY")
    sp.add_argument("run_args", nargs=argparse.REMAINDER,
                    help=f"after --: the run's flags (default: {' '.join(DEFAULT_ARGS)})")


def installs(specs: Sequence[str] | None) -> list[tuple[str, Path]]:
    """``LABEL=PYTHON`` pairs (a bare path is labelled by its position)."""
    import sys

    out: list[tuple[str, Path]] = []
    for i, spec in enumerate(specs or [f"this={sys.executable}"]):
        label, _, given = spec.partition("=") if "=" in spec else ("", "", spec)
        out.append((label or f"python{i}", Path(given).absolute()))  # not resolved: a venv's python is a link
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"evo.bench outside: labels must differ: {labels}")
    for label, python in out:
        if not (python.parent / "mpiexec").exists():
            raise SystemExit(f"evo.bench outside: no mpiexec next to {python} ({label})")
    return out


def measure(run_dir: Path, command_s: float) -> dict[str, Any]:
    """One row from a finished run directory and the command's wall time."""
    gens = read_csv(run_dir / "generations.csv")
    members = read_csv(run_dir / "members.csv")
    loop = num(gens[-1]["wall_s"])
    row: dict[str, Any] = {"command_s": command_s, "loop_s": loop, "outside_s": command_s - loop}
    for phase, column in (("train_s", "time_train_s"), ("eval_s", "time_eval_s"), ("select_s", "time_select_s"),
                          ("exchange_s", "time_exchange_s")):
        row[phase] = sum(num(m.get(column)) or 0.0 for m in members)
    summary = json.loads((run_dir / "summary.json").read_text())
    ranks = summary.get("timing", {}).get("ranks")
    if (run_dir / "checkpoints.jsonl").exists():  # sync, any version: the slowest member's, per generation
        row["checkpoint_s"] = sum(float(c.get("seconds_max", 0.0)) for c in read_jsonl(run_dir / "checkpoints.jsonl"))
    elif ranks:  # async: the busiest rank's
        row["checkpoint_s"] = max(float(t.get("checkpoint_s", 0.0)) for t in ranks)
    if ranks:
        for key in ("to_start_s", "start_s", "finish_s"):
            row[key] = max(float(t[key]) for t in ranks)
        row["reference_s"] = max(float(t.get("reference_s", 0.0)) for t in ranks)
        row["exit_s"] = command_s - max(float(t["total_s"]) for t in ranks)
    spent = sum(row.get(p, 0.0) or 0.0 for p in PHASES)
    row["eval_share"] = row["eval_s"] / spent if spent else None
    return row


def summarize(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """Per installation: medians over rounds, and the median of per-round ratios to the first."""
    out = []
    first = labels[0]
    by = {(r["install"], r["round"]): r for r in rows}
    rounds = sorted({r["round"] for r in rows})
    for label in labels:
        mine = [r for r in rows if r["install"] == label]
        s: dict[str, Any] = {"install": label, "rounds": len(mine)}
        for key in ("command_s", "loop_s", "outside_s", "to_start_s", "start_s", "exit_s", "eval_share"):
            vals = [float(r[key]) for r in mine if r.get(key) is not None]
            s[key] = statistics.median(vals) if vals else None
        for key in ("command_s", "outside_s"):
            pairs = [ratio(by[(label, k)][key], by[(first, k)][key]) for k in rounds
                     if (label, k) in by and (first, k) in by]
            s[key.replace("_s", "_ratio")] = statistics.median(pairs) if pairs else None
        out.append(s)
    return out


def cmd_outside(ns: argparse.Namespace) -> int:
    labels = installs(ns.python)
    run_args = [a for a in ns.run_args if a != "--"] or DEFAULT_ARGS
    out = Path(ns.out)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="evo-outside-") as tmp:
        for k in range(ns.rounds):
            for label, python in labels:
                name = f"{label}-r{k}"
                args = [str(python.parent / "mpiexec"), "-n", str(ns.ranks), str(python), "-m", f"evo.{ns.entry}",
                        *run_args, "--log-dir", tmp, "--exp-name", name, "--overwrite", "--verbose", "0"]
                # run from the scratch folder: `python -m` would import the evo of the current folder
                rc, _out, err, seconds = run_cmd(args, ns.timeout, cwd=tmp)
                if rc != 0:
                    raise SystemExit(f"evo.bench outside: {label} round {k} failed (exit {rc}): "
                                     f"{err.strip().splitlines()[-1] if err.strip() else ''}")
                row = {"install": label, "round": k, **measure(Path(tmp) / name, seconds)}
                rows.append(row)
                print(f"round {k} {label}: command {seconds:.2f}s, loop {row['loop_s']:.2f}s, "
                      f"outside {row['outside_s']:.2f}s", flush=True)
    summary = summarize(rows, [label for label, _ in labels])
    print(table(rows, COLUMNS))
    print()
    print(table(summary, SUMMARY))
    write_outputs(out, "outside", rows, COLUMNS, {"ranks": ns.ranks, "entry": ns.entry, "run_args": run_args,
                                                  "installs": {label: str(p) for label, p in labels},
                                                  "summary": summary})
    for s in summary[1:]:
        print(f"{s['install']} / {summary[0]['install']}: whole command {s['command_ratio']:.3f}x, "
              f"outside the loop {s['outside_ratio']:.3f}x (medians of per-round ratios)")
    return 0


__all__ = ["add_parser", "cmd_outside", "measure", "summarize"]
