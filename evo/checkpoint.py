"""Checkpoints of a whole population, written in two phases.

Phase 1: every rank writes its member (SB3 zip with weights + optimizer, a JSON of counters and
hyperparameters, a file of its RNG states), each file atomically (temp file, fsync, rename).
Phase 2: after a barrier, rank 0 writes ``manifest.json`` listing every file with its size.
A checkpoint counts only once its manifest exists, so a crash mid-write leaves the previous one
as the newest complete checkpoint.

Layout: ``<run>/checkpoints/gen_000004/{member_000.zip, member_000.json, member_000.rng,
population.json, manifest.json}`` where 4 is the number of completed generations.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evo.errors import CheckpointError
from evo.records import atomic_replace, write_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
KEEP = 2


def gen_dir(run_dir: Path, generation: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"gen_{generation:06d}"


REQUIRED = ("zip", "json", "rng")
"""Files every member checkpoint has; ``env`` (the training envs' state) exists where the env
could be snapshotted."""


def member_files(directory: Path, index: int) -> dict[str, Path]:
    stem = f"member_{index:03d}"
    return {"zip": directory / f"{stem}.zip", "json": directory / f"{stem}.json", "rng": directory / f"{stem}.rng",
            "env": directory / f"{stem}.env", "replay": directory / f"{stem}.replay"}


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


def write_member(directory: Path, member: Any) -> tuple[int, float]:
    """Phase 1 for one member. Returns (bytes written, seconds)."""
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
    size = sum(p.stat().st_size for p in files.values() if p.exists())
    return size, time.perf_counter() - t0


def write_manifest(directory: Path, generation: int, world_size: int, meta: Mapping[str, Any],
                   population: Mapping[str, Any], n_members: int | None = None) -> None:
    """Phase 2 (rank 0, after every member is written): population state, then the manifest.

    ``n_members``: the population size (default: one member per rank)."""
    write_json(directory / "population.json", population)
    files = {}
    for i in range(world_size if n_members is None else n_members):
        for kind, path in member_files(directory, i).items():
            if kind not in REQUIRED and not path.exists():
                continue
            if not path.exists():
                raise CheckpointError(f"checkpoint {directory} lacks {path.name} before its manifest")
            files[f"{i}:{kind}"] = {"name": path.name, "bytes": path.stat().st_size}
    manifest = {"format": FORMAT_VERSION, "generation": generation, "world_size": world_size,
                "num_agents": world_size if n_members is None else n_members,
                "meta": dict(meta), "files": files}
    write_json(directory / MANIFEST, manifest)


def prune(run_dir: Path, keep: int = KEEP) -> None:
    """Delete all but the ``keep`` newest complete checkpoints (and any incomplete older ones)."""
    root = Path(run_dir) / "checkpoints"
    if not root.exists():
        return
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("gen_"))
    complete = [d for d in dirs if (d / MANIFEST).exists()]
    keep_set = set(complete[-keep:])
    newest = complete[-1] if complete else None
    for d in dirs:
        if d in keep_set:
            continue
        if newest is not None and d.name > newest.name:
            continue  # a newer checkpoint still being written
        shutil.rmtree(d, ignore_errors=True)


def find_latest(run_dir: Path) -> Path:
    """The newest checkpoint with a manifest; a clear error if there is none."""
    root = Path(run_dir) / "checkpoints"
    dirs = sorted((d for d in root.iterdir() if d.is_dir() and d.name.startswith("gen_")), reverse=True) \
        if root.exists() else []
    for d in dirs:
        if (d / MANIFEST).exists():
            return d
    raise CheckpointError(f"--resume: no complete checkpoint in {root}")


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and verify a manifest: every listed file exists with the recorded size."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        generation = int(manifest["generation"])
        world_size = int(manifest["world_size"])
        files = manifest["files"]
        meta = manifest["meta"]
        if manifest.get("format") != FORMAT_VERSION or not isinstance(files, dict) or not isinstance(meta, dict):
            raise ValueError("unknown format")
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
    manifest["generation"], manifest["world_size"] = generation, world_size
    return manifest


def check_compatible(manifest: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """A resume must keep population size, env and strategy: name the first mismatch."""
    meta = manifest["meta"]
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
