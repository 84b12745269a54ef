"""Checkpoints: one layout for both schedules, one manifest per member.

``<run>/checkpoints/gen_000004/`` holds what members wrote after completing 4 generations
(intervals): ``member_000.{zip,json,rng[,env,replay]}`` (SB3 zip with weights + optimizer, a JSON
of counters and hyperparameters, the RNG states, the training envs' and the replay buffer's
state where there is one), each file atomic (temp file, fsync, rename), then the member's own
``member_000.manifest.json`` listing its files with their sizes and the member's latest score
(its evaluation set, hyperparameters, env steps). A member checkpoint counts only once its
manifest exists and every listed file has the listed size.

The synchronous schedule writes every member's checkpoint of a generation, then (rank 0, after
a gather) ``population.json`` and ``manifest.json``: the generation is complete. ``--resume``
takes the newest complete and intact generation. The asynchronous schedule writes member
checkpoints as members finish intervals; ``--resume`` takes each member's newest intact one.
Either way a damaged newest checkpoint is skipped with a note and moved aside
(``gen_000004.damaged`` / ``member_000.manifest.json.damaged``), never deleted.

:func:`prune` deletes a generation folder once every member has :data:`KEEP` complete
checkpoints newer than it.
"""

from __future__ import annotations

import json
import pickle
import random
import re
import shutil
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evo.errors import CheckpointError
from evo.records import atomic_replace, write_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
KEEP = 2
_GEN = re.compile(r"^gen_(\d{6,})$")


def gen_dir(run_dir: Path, generation: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"gen_{generation:06d}"


REQUIRED = ("zip", "json", "rng")
"""Files every member checkpoint has; ``env`` (the training envs' state) and ``replay`` exist
where the env could be snapshotted / the algorithm has a replay buffer."""


def member_files(directory: Path, index: int) -> dict[str, Path]:
    stem = f"member_{index:03d}"
    return {"zip": directory / f"{stem}.zip", "json": directory / f"{stem}.json", "rng": directory / f"{stem}.rng",
            "env": directory / f"{stem}.env", "replay": directory / f"{stem}.replay"}


def member_manifest(directory: Path, index: int) -> Path:
    return Path(directory) / f"member_{index:03d}.{MANIFEST}"


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    atomic_replace(tmp, path)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def write_member(directory: Path, member: Any, generation: int, meta: Mapping[str, Any],
                 entry: Mapping[str, Any]) -> tuple[int, float]:
    """One member's checkpoint after ``generation`` completed generations: its files, then its
    manifest (``meta``: what a resume must match; ``entry``: its latest score, eval set,
    hyperparameters, env steps). Returns (bytes written, seconds)."""
    t0 = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    files = member_files(directory, member.index)
    member.save_model(files["zip"])
    env = member.env_state()
    if env is not None:
        _write_bytes(files["env"], env)
    replay = member.replay_state()
    if replay is not None:
        _write_bytes(files["replay"], replay)
    write_json(files["json"], {**member.state_dict(), "env_snapshot": env is not None})
    _write_bytes(files["rng"], pickle.dumps(rng_state()))
    listed: dict[str, dict[str, Any]] = {kind: {"name": p.name, "bytes": p.stat().st_size}
                                         for kind, p in files.items() if p.exists()}
    write_json(member_manifest(directory, member.index), {
        "format": FORMAT_VERSION, "member": member.index, "generation": generation, "meta": dict(meta),
        "files": listed, "entry": dict(entry)})
    return sum(int(f["bytes"]) for f in listed.values()), time.perf_counter() - t0


def write_manifest(directory: Path, generation: int, world_size: int, meta: Mapping[str, Any],
                   population: Mapping[str, Any], n_members: int) -> None:
    """(rank 0, sync, after every member's checkpoint) ``population.json``, then ``manifest.json``:
    the generation is complete."""
    for i in range(n_members):
        if not member_manifest(directory, i).exists():
            raise CheckpointError(f"checkpoint {directory} lacks member {i}'s manifest before its own")
    write_json(directory / "population.json", population)
    write_json(directory / MANIFEST, {"format": FORMAT_VERSION, "generation": generation, "world_size": world_size,
                                      "num_agents": n_members, "meta": dict(meta)})


def read_member_manifest(directory: Path, index: int) -> dict[str, Any]:
    """A member's manifest, verified: every listed file exists with the listed size."""
    path = member_manifest(directory, index)
    try:
        manifest = json.loads(path.read_text())
        files, meta = manifest["files"], manifest["meta"]
        manifest["generation"] = int(manifest["generation"])
        if manifest.get("format") != FORMAT_VERSION or not isinstance(files, dict) or not isinstance(meta, dict):
            raise ValueError("unknown format")
        missing = [k for k in REQUIRED if k not in files]
        if missing:
            raise ValueError(f"no {missing[0]} file listed")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {directory}: member {index} has no manifest") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"corrupt checkpoint manifest {path}: {type(exc).__name__}") from None
    for entry in files.values():
        f = directory / entry["name"]
        if not f.exists():
            raise CheckpointError(f"corrupt checkpoint {directory}: {f.name} is missing")
        if f.stat().st_size != int(entry["bytes"]):
            raise CheckpointError(
                f"corrupt checkpoint {directory}: {f.name} has {f.stat().st_size} bytes, manifest says {entry['bytes']}"
            )
    _check_zip(directory / files["zip"]["name"])
    return manifest


def _check_zip(path: Path) -> None:
    """Every member of the model zip reads back with its CRC (a damaged file of the right size)."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(f"corrupt checkpoint {path.parent}: {path.name} is not a readable zip "
                              f"({type(exc).__name__})") from None
    if bad is not None:
        raise CheckpointError(f"corrupt checkpoint {path.parent}: {path.name} fails its CRC check ({bad})")


def read_manifest(directory: Path) -> dict[str, Any]:
    """A complete generation's manifest, with every member's checkpoint verified."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        generation, n = int(manifest["generation"]), int(manifest["num_agents"])
        if manifest.get("format") != FORMAT_VERSION or not isinstance(manifest["meta"], dict):
            raise ValueError("unknown format")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"corrupt checkpoint manifest {path}: {type(exc).__name__}") from None
    manifest["members"] = [read_member_manifest(directory, i) for i in range(n)]
    manifest["generation"] = generation
    return manifest


def _gen_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return []
    found = ((_GEN.match(d.name), d) for d in root.iterdir() if d.is_dir())
    return sorted((int(m.group(1)), d) for m, d in found if m)


def _move_aside(path: Path) -> Path:
    target = path.with_name(path.name + ".damaged")
    k = 1
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.damaged{k}")
    path.rename(target)
    return target


def find_latest(run_dir: Path, notes: list[str] | None = None) -> Path:
    """(sync) The newest complete and intact generation. A damaged newer one is skipped: moved
    aside (``gen_N.damaged``) with a line in ``notes``. A clear error if there is none."""
    for _, d in reversed(_gen_dirs(run_dir)):
        if not (d / MANIFEST).exists():
            continue
        try:
            read_manifest(d)
        except CheckpointError as exc:
            aside = _move_aside(d)
            if notes is not None:
                notes.append(f"skipped the damaged checkpoint {d.name} ({exc}); moved it to {aside.name}")
            continue
        return d
    raise CheckpointError(f"--resume: no complete checkpoint in {Path(run_dir) / 'checkpoints'}")


def member_latest(run_dir: Path, index: int, notes: list[str] | None = None) -> Path | None:
    """(async) Member ``index``'s newest intact checkpoint folder, or None. A damaged newer one
    is skipped: its manifest moved aside, with a line in ``notes``."""
    for _, d in reversed(_gen_dirs(run_dir)):
        if not member_manifest(d, index).exists():
            continue
        try:
            read_member_manifest(d, index)
        except CheckpointError as exc:
            aside = _move_aside(member_manifest(d, index))
            if notes is not None:
                notes.append(f"skipped member {index}'s damaged checkpoint in {d.name} ({exc}); moved its manifest "
                             f"to {aside.name}")
            continue
        return d
    return None


def has_checkpoint(run_dir: Path) -> bool:
    """Whether the run has any member checkpoint to resume from (either schedule)."""
    return any(any(d.glob(f"member_*.{MANIFEST}")) for _, d in _gen_dirs(run_dir))


def prune(run_dir: Path, n_members: int, keep: int = KEEP) -> None:
    """(rank 0) Delete each generation folder that every member has ``keep`` complete checkpoints
    newer than (so nobody writes there any more, and a damaged newest still has a fallback)."""
    dirs = _gen_dirs(run_dir)
    have: dict[int, list[int]] = {i: [g for g, d in dirs if member_manifest(d, i).exists()] for i in range(n_members)}
    for g, d in dirs:
        if all(sum(1 for h in have[i] if h > g) >= keep for i in range(n_members)):
            shutil.rmtree(d, ignore_errors=True)


def check_compatible(meta: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """A resume must keep population size, env and strategy: name the first mismatch."""
    for key, value in expected.items():
        if key in meta and meta[key] != value:
            raise CheckpointError(f"--resume: checkpoint has {key}={meta[key]!r} but this run has {key}={value!r}")


def load_member(directory: Path, member: Any) -> dict[str, Any]:
    """Restore one member (weights, optimizer, counters, hparams, RNG states and, where the
    checkpoint has it, the training envs' state) from a checkpoint.

    The returned meta has ``env_restored``: False means the envs start fresh episodes."""
    files = member_files(directory, member.index)
    try:
        meta = json.loads(files["json"].read_text())
        with open(files["rng"], "rb") as fh:
            state = pickle.load(fh)
        env = files["env"].read_bytes() if files["env"].exists() else None
        replay = files["replay"].read_bytes() if files["replay"].exists() else None
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        raise CheckpointError(f"corrupt member checkpoint in {directory}: {type(exc).__name__}") from None
    member.load_model_state(files["zip"], meta)
    try:
        member.load_env_state(env)
    except Exception as exc:
        raise CheckpointError(f"cannot restore the env state in {files['env']}: {type(exc).__name__}: {exc}") from None
    try:
        member.load_replay_state(replay)
    except Exception as exc:
        raise CheckpointError(f"cannot restore the replay buffer in {files['replay']}: {type(exc).__name__}: "
                              f"{exc}") from None
    set_rng_state(state)
    return {**meta, "env_restored": env is not None}
