"""What a ``--resume`` may change, and the checks and notes of a resume (rank 0)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evo.config import CommonConfig
from evo.errors import ConfigError
from evo.records import write_json

RESUME_MAY_CHANGE = frozenset({
    "generations", "num_timesteps", "checkpoint_every", "save_every", "verbose", "threads", "tb_writer",
    "resume", "overwrite", "log_dir", "exp_name", "watchdog_s",
})
"""Settings a ``--resume`` may change: they decide how long and how loudly a run goes, not what it
computes. ``hyperparams`` and ``param_file`` are paths: their *contents* (``search_space``,
``set_hparams``) are compared instead."""
COMPARED_BY_CONTENT = frozenset({"hyperparams", "param_file"})
NOT_COMPARED = frozenset({"resume", "overwrite", "log_dir", "exp_name", "horizon_env_steps"})
"""Where and how the run was started, not what it computes (a moved run dir still resumes)."""


def resume_changes(saved: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Compare a run's saved settings with a resume's: ``(refused, accepted)`` changes, each
    ``{name: [old, new]}``. ``saved``/``new`` are flat dicts (the config plus ``search_space`` and
    ``world_size``). A setting the saved run does not know (an older evo) is not compared."""
    refused: dict[str, Any] = {}
    accepted: dict[str, Any] = {}
    for key, value in new.items():
        if key in COMPARED_BY_CONTENT or key in NOT_COMPARED or key not in saved:
            continue
        old = saved[key]
        if _canonical(old) == _canonical(value):
            continue
        (accepted if key in RESUME_MAY_CHANGE else refused)[key] = [old, value]
    return refused, accepted


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def describe_changes(changes: dict[str, Any]) -> str:
    """``seed 0 -> 7, quantile 0.25 -> 0.5`` (search spaces are summarised, not dumped)."""
    parts = []
    for key, (old, new) in changes.items():
        if isinstance(old, dict) or isinstance(new, dict):
            parts.append(f"{key} (contents differ)")
        else:
            parts.append(f"{key} {old!r} -> {new!r}")
    return ", ".join(parts)


def check_resume_settings(path: Path, settings: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """Compare ``settings`` with the run's config.json; refuse changes that affect results, record
    the accepted ones (config.json then describes the run as it goes on, with a list of resumes).
    Returns the accepted changes, ``{name: [old, new]}``."""
    try:
        saved_file = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: cannot read {path}: {type(exc).__name__}") from None
    saved = {**saved_file.get("config", {}), "search_space": saved_file.get("search_space"),
             "world_size": saved_file.get("world_size")}
    refused, accepted = resume_changes(saved, dict(settings))
    if refused:
        raise ConfigError(f"--resume would change settings that affect the results: {describe_changes(refused)} "
                          f"(only {', '.join(sorted(RESUME_MAY_CHANGE - NOT_COMPARED))} may change; "
                          f"start a new run with another --exp-name instead)")
    for key, (_old, new) in accepted.items():
        saved_file["config"][key] = new
    saved_file.setdefault("resumes", []).append({
        "at_generation": generation, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": accepted})
    write_json(path, saved_file)
    return accepted


def note_resume(cfg: CommonConfig, generation: int, reset: Sequence[int], notes: Sequence[str]) -> None:
    """(rank 0, after every member loaded) Say in one line each what a resume could not keep."""
    for note in notes:
        print(f"evo: note: {note}", file=sys.stderr, flush=True)
    if not reset:
        return
    print(f"evo: note: the training envs of member(s) {list(reset)} could not be checkpointed; they start fresh "
          f"episodes at generation {generation}", file=sys.stderr, flush=True)
    path = cfg.run_dir / "config.json"
    data = json.loads(path.read_text())
    if data.get("resumes"):
        data["resumes"][-1]["envs_reset"] = list(reset)
    write_json(path, data)
