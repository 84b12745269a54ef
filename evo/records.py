"""What a run leaves behind: config, CSV / JSONL records, lineage and TensorBoard events.

Knows nothing of MPI: the PBT loop gathers rows to rank 0, which alone writes the shared
records; every member writes its own TensorBoard folder.

Layout of ``<log-dir>/<exp-name>/``::

    config.json          resolved configuration (+ search space, world size, versions)
    members.csv          one row per generation and member: score, env steps, hparams, timings
    generations.csv      one row per generation: best / mean / worst score, wall time, exchange
    lineage.jsonl        one JSON line per exploit: generation, receiver, donor, hparams before/after
    checkpoints/         see evo.checkpoint
    best_model.zip       the final best member, loadable with ``stable_baselines3.PPO.load``
    tb/member_000/ ...   TensorBoard events per member; tb/population/ for population summaries
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


# -- atomic files ---------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_replace(tmp: Path, path: Path) -> None:
    """fsync ``tmp`` and rename it over ``path`` (readers see the old or the new file, never half)."""
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    atomic_replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def _clean(value: Any) -> Any:
    """JSON has no NaN: write non-finite floats as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps_line(record: Mapping[str, Any]) -> str:
    return json.dumps(_clean(record), sort_keys=True, default=_json_default)


# -- CSV / JSONL records ----------------------------------------------------------------------
class TableWriter:
    """Append-only CSV with a fixed header, flushed and fsynced after every batch of rows."""

    def __init__(self, path: Path, columns: Sequence[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")
        if new:
            self._writer.writeheader()
            self._sync()

    def write(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self._writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        self._sync()

    def _sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)  # shortest exact round-trip form
    if value is None:
        return ""
    return value


class JsonlWriter:
    """Append-only JSON lines, flushed and fsynced after every batch."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "a")

    def write(self, records: Iterable[Mapping[str, Any]]) -> None:
        for rec in records:
            self._fh.write(dumps_line(rec) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    with open(path) as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
    return out


def _complete_lines(path: Path) -> tuple[list[str], bool]:
    """The file's lines; drops a last line that has no newline (torn by a kill mid-append)."""
    text = path.read_text()
    lines = text.split("\n")
    torn = lines[-1] != ""
    return lines[:-1], torn


def truncate_records(run_dir: Path, keep_below: int) -> list[str]:
    """Drop record lines of generations >= ``keep_below`` (after a resume), atomically.

    A record that a kill cut short (a last line without its newline, or a line that does not
    parse) is dropped too, never an error. Returns one message per file where that happened.
    """
    notes: list[str] = []
    for name in ("members.csv", "generations.csv"):
        path = run_dir / name
        if not path.exists():
            continue
        lines, torn = _complete_lines(path)
        reader = csv.reader(lines)
        fields = next(reader, None) or []
        rows, bad = [], int(torn)
        for values in reader:
            try:
                if len(values) != len(fields):
                    raise ValueError
                row = dict(zip(fields, values, strict=True))
                if int(row["generation"]) < keep_below:
                    rows.append(row)
            except (ValueError, KeyError):
                bad += 1
        if fields:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
            atomic_write_text(path, buf.getvalue())
        if bad:
            notes.append(f"dropped {bad} incomplete line(s) of {name} (a kill mid-write)")
    for name in ("lineage.jsonl", "checkpoints.jsonl"):
        path = run_dir / name
        if not path.exists():
            continue
        lines, torn = _complete_lines(path)
        kept, bad = [], int(torn)
        for line in lines:
            if not line.strip():
                continue
            try:
                if json.loads(line)["generation"] < keep_below:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                bad += 1
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        if bad:
            notes.append(f"dropped {bad} incomplete line(s) of {name} (a kill mid-write)")
    return notes


# -- TensorBoard ------------------------------------------------------------------------------
class TensorBoard:
    """A thin SummaryWriter wrapper; ``None``-safe so callers need no ``if tb_writer`` checks."""

    def __init__(self, log_dir: Path | None, purge_step: int | None = None) -> None:
        self._w = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._w = SummaryWriter(str(log_dir), purge_step=purge_step, flush_secs=30)

    def scalars(self, values: Mapping[str, float | int | None], step: int) -> None:
        if self._w is None:
            return
        for tag, value in values.items():
            if value is None:
                continue
            self._w.add_scalar(tag, float(value), global_step=int(step))

    def hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float], run_name: str) -> None:
        """One entry in TensorBoard's HParams dashboard."""
        if self._w is None:
            return
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        finite = {k: (float(v) if v is not None and math.isfinite(v) else float("nan")) for k, v in metrics.items()}
        self._w.add_hparams(clean, finite, run_name=run_name, global_step=None)

    def flush(self) -> None:
        if self._w is not None:
            self._w.flush()

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None
