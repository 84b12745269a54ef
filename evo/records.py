"""What a run leaves behind: config, CSV / JSONL records, lineage and TensorBoard events.

Knows nothing of MPI: the PBT loop gathers rows to rank 0, which alone writes the shared
records; every member writes its own TensorBoard folder.

Layout of ``<log-dir>/<exp-name>/``::

    config.json          resolved configuration (+ search space, world size, versions)
    members.csv          one row per generation and member: score, env steps, hparams, timings
    generations.csv      one row per generation: best / mean / worst score, wall time, exchange
    lineage.jsonl        one JSON line per exploit: generation, receiver, donor, hparams before/after
    checkpoints/         see evo.loop.checkpoints
    best_model.zip       the final best member, loadable with ``stable_baselines3.PPO.load``
    tb/member_000/ ...   TensorBoard events per member; tb/population/ for population summaries
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
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

    def replace_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rewrite the whole file with ``rows`` (atomically), then go on appending to it."""
        self._fh.close()
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in self.columns})
        atomic_write_text(self.path, out.getvalue())
        self._fh = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._fh, fieldnames=self.columns, extrasaction="ignore")

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


RECORD_FILES = ("members.csv", "generations.csv", "lineage.jsonl", "checkpoints.jsonl")
"""The append-only records a resume truncates."""

Keep = Callable[[dict[str, Any]], bool]


def _parse_line(line: str, fields: list[str] | None) -> dict[str, Any]:
    """One CSV row (``fields``: the header) or JSON line as a dict; ValueError if it is damaged."""
    if fields is None:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    values = next(csv.reader([line]))
    if len(values) != len(fields):
        raise ValueError(f"{len(values)} fields, the header has {len(fields)}")
    return dict(zip(fields, values, strict=True))


def _truncate_file(path: Path, keep: Keep) -> tuple[int, int]:
    """Keep the records of ``path`` for which ``keep(record)`` is true, atomically. A last line
    without its newline (torn by a kill mid-append) is dropped; any other line that does not parse
    (or that ``keep`` cannot judge) is appended to ``<path>.damaged``. Returns (torn, damaged)."""
    lines = path.read_text().split("\n")
    torn = int(lines.pop() != "")
    fields: list[str] | None = None
    out: list[str] = []
    if path.suffix == ".csv":
        if not lines:  # not even a complete header: TableWriter writes a new one into an empty file
            atomic_write_text(path, "")
            return torn, 0
        fields = next(csv.reader([lines[0]]))
        out.append(lines.pop(0))
    damaged = []
    for line in lines:
        if not line.strip():
            continue
        try:
            if keep(_parse_line(line, fields)):
                out.append(line)
        except (ValueError, LookupError, TypeError):
            damaged.append(line)
    if damaged:  # first set aside, then rewrite: a crash in between loses no line
        with open(path.with_name(path.name + ".damaged"), "a") as fh:
            fh.write("".join(line + "\n" for line in damaged))
            fh.flush()
            os.fsync(fh.fileno())
    atomic_write_text(path, "".join(line + "\n" for line in out))
    return torn, len(damaged)


def truncate_records(run_dir: Path, keep_below: int | None = None,
                     keep: Mapping[str, Keep] | None = None) -> list[str]:
    """(resume) Drop the records of work to be redone from the files of :data:`RECORD_FILES`.

    A file's rule is ``keep[name]`` (a predicate on the parsed record: a CSV row of strings or a
    JSON object) if given, else "generation < ``keep_below``"; a file with neither is left alone.
    A torn last line is dropped as a kill mid-write; a damaged line elsewhere is no kill's doing
    and is kept aside in ``<name>.damaged``. Returns one note per file where either happened.
    """
    notes: list[str] = []
    for name in RECORD_FILES:
        path = run_dir / name
        rule = (keep or {}).get(name)
        if rule is None and keep_below is not None:
            rule = _generation_below(keep_below)
        if rule is None or not path.exists():
            continue
        torn, damaged = _truncate_file(path, rule)
        if torn:
            notes.append(f"dropped {torn} incomplete line(s) of {name} (a kill mid-write)")
        if damaged:
            notes.append(f"{damaged} damaged line(s) in the middle of {name} (not a kill mid-write) were kept "
                         f"in {name}.damaged")
    return notes


def _generation_below(limit: int) -> Keep:
    return lambda record: int(record["generation"]) < limit


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
