"""Methods: runs grouped by the settings that change results, with readable labels.

Runs whose ``config`` is the same up to seed, names, paths, logging, length and other settings that
do not change results (:data:`NON_RESULT_KEYS`) form one method (or the runs given the same
``LABEL=``). A baseline directory launched with ``mpiexec -n K`` holds K independent seeds: each is
one run of its method. A PBT directory is one run of its method whatever its population size.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evo.errors import ConfigError
from evo.report.fmt import short
from evo.report.runs import Run

NON_RESULT_KEYS = frozenset({
    "seed", "exp_name", "log_dir", "resume", "overwrite", "verbose", "threads", "tb_writer", "checkpoint_every",
    "generations", "num_timesteps", "save_every", "hyperparams", "param_file", "eval_test_levels",
})  # fmt: skip
"""``config`` keys that do not make a different method (``hyperparams`` is a path: the resolved
search space in ``config.json`` counts instead)."""
SEED_KEYS = frozenset({"num_agents", "eval_every", "steps_per_generation"})
"""Also ignored for baselines and replays: how many seeds a directory holds and how often they were
evaluated (for PBT they are the population size and the exploit interval, and do count)."""
TASK_KEYS = ("env_id", "num_levels", "start_level", "distribution_mode", "env_kwargs", "env_wrapper")
"""What makes a task: runs on different tasks can be runs of one method."""


def method_settings(run: Run) -> dict[str, Any]:
    """The settings that define a run's method: its ``config`` without :data:`NON_RESULT_KEYS`
    (and :data:`SEED_KEYS` for baselines and replays) or the task, plus a PBT run's search space."""
    drop = set(NON_RESULT_KEYS) | set(TASK_KEYS)
    if run.kind != "pbt":
        drop |= SEED_KEYS
    if run.kind == "replay":
        drop.add("set_hparams")  # the first entry of the replayed schedule, which differs per source run
    out = {k: v for k, v in run.config.items() if k not in drop}
    if run.kind == "pbt":
        out["search_space"] = run.meta.get("search_space")
    out["kind"] = run.kind
    return out


@dataclass
class Method:
    """Runs of one method (one algorithm with one set of settings), on one or more tasks."""

    label: str
    kind: str
    """``pbt``, ``baseline`` or ``replay``."""
    runs: list[Run]
    explicit: bool = False
    """The label came from ``LABEL=RUN`` on the command line."""

    @property
    def is_baseline(self) -> bool:
        return self.kind == "baseline"

    def runs_on(self, task: str) -> list[Run]:
        return [r for r in self.runs if r.task == task]


def parse_run_arg(text: str) -> tuple[str | None, str]:
    """``"LABEL=PATH"`` -> ``(LABEL, PATH)``; a plain path (even one containing ``=``) -> ``(None, PATH)``."""
    label, sep, path = text.partition("=")
    if not sep or not label or not path or Path(text).exists():
        return None, text
    return label, path


def _base_label(run: Run) -> tuple[str, list[str]]:
    if run.kind == "pbt":
        return run.strategy, []
    if run.kind == "replay":
        return "replay", []
    return "baseline", [str(run.config.get("param_name", "?"))]


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _differences(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """Flattened keys whose values differ between ``settings``."""
    flat = [_flatten(s) for s in settings]
    keys = sorted({k for f in flat for k in f})
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]


def _label_with(name: str, qualifiers: Sequence[str]) -> str:
    return f"{name} ({', '.join(qualifiers)})" if qualifiers else name


def _auto_labels(methods: Sequence[Method], taken: set[str]) -> None:
    """Label methods by strategy (``truncation``, ``baseline (cartpole)``), adding the settings that
    tell apart methods that would otherwise share a label."""
    by_base: dict[str, list[Method]] = {}
    for m in methods:
        by_base.setdefault(_label_with(*_base_label(m.runs[0])), []).append(m)
    for group in by_base.values():
        settings = [method_settings(m.runs[0]) for m in group]
        diff = _differences(settings) if len(group) > 1 else []
        for m, s in zip(group, settings, strict=True):
            name, quals = _base_label(m.runs[0])
            flat = _flatten(s)
            shown = [f"{k.removeprefix('search_space.params.')}={short(flat.get(k))}" for k in diff[:3]]
            m.label = _label_with(name, [*quals, *shown, *(["…"] if len(diff) > 3 else [])])
    seen = set(taken)
    for m in methods:
        label, i = m.label, 2
        while label in seen:
            label, i = f"{m.label} #{i}", i + 1
        m.label = label
        seen.add(label)


def group_methods(runs: Sequence[Run], labels: Sequence[str | None] | None = None) -> list[Method]:
    """Group runs into methods: by explicit label where given, else by :func:`method_settings`."""
    labels = list(labels) if labels is not None else [None] * len(runs)
    seen: dict[Path, str] = {}
    for run in runs:
        where = run.path.resolve()
        if where in seen:
            raise ConfigError(f"run directory {run.path} is given twice (each run must count once)")
        seen[where] = run.label
    groups: dict[tuple[str, str], list[Run]] = {}
    for run, label in zip(runs, labels, strict=True):
        key = ("label", label) if label else ("auto", json.dumps(method_settings(run), sort_keys=True, default=str))
        groups.setdefault(key, []).append(run)
    methods = []
    for (how, name), members in groups.items():
        kinds = sorted({r.kind for r in members})
        if len(kinds) > 1:
            raise ConfigError(f"method {name!r} mixes {' and '.join(kinds)} runs; give them different labels")
        methods.append(Method(label=name if how == "label" else "", kind=kinds[0], runs=members,
                              explicit=how == "label"))
    _auto_labels([m for m in methods if not m.explicit], {m.label for m in methods if m.explicit})
    return methods
