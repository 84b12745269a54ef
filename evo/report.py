"""Plots, statistics and a Markdown/HTML summary from evo's own records (no TensorBoard needed).

``python -m evo.report RUN [RUN ...] --out DIR`` answers "did PBT beat the baseline?". A ``RUN``
is a run directory (see :mod:`evo.records` for its layout) or ``LABEL=RUN_DIR`` to name its method.
It writes into ``DIR``:

``summary.md``            per method: runs (n), IQM with a stratified-bootstrap 95 % CI, median, mean and
                          the probability of improvement over each baseline, all at one env-step budget per
                          member; the random-policy reference; notes; then a table per run
``index.html``            the same tables with every plot (and the winner's GIF), one self-contained page
``scores.png``            score vs env steps per member: per PBT run its best and mean member, per
                          baseline (or replay) run the mean over seeds with a min-max band
``profile.png``           each method's run scores at the budget (IQM and CI) and its score distribution
``hparams_<run>.png``     per PBT run: the hyperparameters the final winner's ancestors trained
                          with, generation by generation (the schedule :mod:`evo.replay` follows)
``lineage_<run>.png``     per PBT run: who copied whom, with the final winner's ancestry
``report.json``           the numbers of the tables at full precision

**Methods and runs.** Runs whose ``config`` is the same up to seed, names, paths, logging, length
and other settings that do not change results (:data:`NON_RESULT_KEYS`) form one method (or the
runs given the same ``LABEL=``). A baseline directory launched with ``mpiexec -n K`` holds K
independent seeds: each is one run of its method. A PBT directory is one run of its method
whatever its population size; its score is that of the member selection ranked first
(``best_member`` in ``generations.csv``), and a second row (``..., all members``) gives the
population's mean, so the selection effect is visible.

**Budget.** Methods are compared at one env-step count per member B: by default the largest one at
which every run was evaluated (``--budget`` picks another). If some run has no evaluation at B
the summary says so, lists the nearest points, and does not call the comparison equal.

**Statistics** come from rliable (:func:`aggregate_stats`, :func:`improvement_probability`,
:func:`score_profiles`) on ``(num_runs, num_tasks)`` score arrays, one task per env; the
bootstrap is seeded (``--bootstrap-seed``) so the report is reproducible.

The pure parts (:func:`load_run`, :func:`group_methods`, :func:`choose_budget`,
:func:`build_entries`, :func:`aggregate_stats`, :func:`winner_ancestry`, :func:`hparam_schedule`,
:func:`budget_table`) need neither matplotlib nor MPI, so replay and tests use them directly.

Ancestry: the final winner is generation ``G-1``'s ``best_member`` (the member selection ranks
first). Walking back, if the ancestor ``a[g+1]`` received weights in generation ``g``'s exploit
(a ``lineage.jsonl`` entry with that generation and receiver), then ``a[g]`` is its donor,
otherwise ``a[g] = a[g+1]``. Its schedule is the ``hp_*`` columns of ``members.csv`` at
``(g, a[g])``: the hyperparameters that trained the winner's weights in generation ``g``.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import math
import re
import shutil
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evo.errors import ConfigError, EvoError
from evo.records import read_csv, read_jsonl, write_json

PROG = "python -m evo.report"

INT_COLUMNS = {"generation", "member", "failed", "env_steps", "total_env_steps", "copied_from", "episodes",
               "best_member", "n_exploits", "n_failed"}


# -- reading records ------------------------------------------------------------------------------
def _parse_value(column: str, text: str) -> Any:
    """A CSV cell as evo wrote it: '' is None, ints stay ints, floats round-trip exactly."""
    if text == "":
        return None
    if column in INT_COLUMNS:
        return int(text)
    if column.startswith("hp_"):
        try:
            return int(text)
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse_rows(rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    return [{k: _parse_value(k, v if v is not None else "") for k, v in r.items() if k is not None} for r in rows]


@dataclass
class Run:
    """One run directory's records, parsed."""

    path: Path
    meta: dict[str, Any]
    """The whole ``config.json`` (``meta["config"]`` is the resolved configuration)."""
    members: list[dict[str, Any]]
    """``members.csv`` rows, sorted by (generation, member)."""
    generations: list[dict[str, Any]]
    """``generations.csv`` rows, sorted by generation."""
    lineage: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None
    """``replay_schedule.json`` if this run is a replay."""
    label: str = ""

    def __post_init__(self) -> None:
        self._by_gen: dict[int, list[dict[str, Any]]] = {}
        self._by_key: dict[tuple[int, int], dict[str, Any]] = {}
        for r in self.members:
            self._by_gen.setdefault(r["generation"], []).append(r)
            self._by_key[(r["generation"], r["member"])] = r
        self._gen_rows = {r["generation"]: r for r in self.generations}
        self._gen_at: dict[int, int] = {}
        for r in self.members:  # members train in lockstep: one env-step count per generation
            if r.get("env_steps") is not None:
                self._gen_at.setdefault(int(r["env_steps"]), r["generation"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("config", {}))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def strategy(self) -> str:
        return str(self.config.get("strategy", "?"))

    @property
    def kind(self) -> str:
        """``pbt``, ``baseline`` or ``replay``."""
        if self.strategy != "baseline":
            return "pbt"
        return "replay" if self.replay is not None else "baseline"

    @property
    def description(self) -> str:
        if self.kind == "pbt":
            cfg = self.config
            how = [self.strategy]
            if cfg.get("async_mode"):
                how.append("async")
            if cfg.get("exchange", True) is False:
                how.append("no exchange: random search")
            elif cfg.get("explore", "perturb") != "perturb":
                how.append(f"explore {cfg['explore']}")
            return f"PBT ({', '.join(how)})"
        if self.kind == "replay":
            return "replay of a PBT schedule"
        return f"baseline ({self.config.get('param_name', '?')} set)"

    @property
    def n_members(self) -> int:
        return len({r["member"] for r in self.members})

    @property
    def members_text(self) -> str:
        n = self.n_members
        if self.kind == "pbt":
            return f"{n} member{'s' if n != 1 else ''}"
        return f"{n} seed{'s' if n != 1 else ''}"

    @property
    def generation_ids(self) -> list[int]:
        return sorted({r["generation"] for r in self.members})

    def rows_at(self, generation: int) -> list[dict[str, Any]]:
        return self._by_gen.get(generation, [])

    def row(self, generation: int, member: int) -> dict[str, Any]:
        try:
            return self._by_key[(generation, member)]
        except KeyError:
            raise ConfigError(f"{self.path}: members.csv has no row for generation {generation}, "
                              f"member {member}") from None

    def generation_row(self, generation: int) -> dict[str, Any] | None:
        return self._gen_rows.get(generation)

    @property
    def evaluation_points(self) -> list[int]:
        """The env steps per member at which the run was evaluated (``members.csv``), ascending."""
        return sorted(self._gen_at)

    def generation_at(self, env_steps: int) -> int:
        """The generation evaluated at ``env_steps`` env steps per member."""
        try:
            return self._gen_at[env_steps]
        except KeyError:
            raise ConfigError(f"{self.path}: no evaluation at {env_steps} env steps per member") from None

    @property
    def task(self) -> str:
        """The env the run trained on (see :func:`task_name`)."""
        return task_name(self.config)

    @property
    def hp_names(self) -> list[str]:
        if not self.members:
            return []
        return [k[3:] for k in self.members[0] if k.startswith("hp_")]

    @property
    def searched(self) -> dict[str, dict[str, Any]]:
        """Searched (explorable) hyperparameters of a PBT run: name -> its ``Param`` as recorded."""
        params = (self.meta.get("search_space") or {}).get("params") or {}
        out = {}
        for name, p in params.items():
            fixed = (len(p.get("choices") or ()) == 1) if p.get("kind") == "categorical" \
                else p.get("low") == p.get("high")
            if not fixed:
                out[name] = p
        return out

    @property
    def has_test(self) -> bool:
        return any(r.get("test_score") is not None for r in self.members)

    @property
    def select_on(self) -> str:
        return str(self.config.get("select_on", "train"))


def _not_a_run(path: Path, why: str) -> ConfigError:
    hint = ""
    if path.is_dir():
        inner = sorted(p.name for p in path.iterdir() if (p / "config.json").is_file())
        if inner:
            shown = ", ".join(inner[:5]) + (", ..." if len(inner) > 5 else "")
            hint = f"; it contains run directories: {shown}"
    return ConfigError(f"{path} is not an evo run directory ({why}){hint}")


def load_run(path: str | Path) -> Run:
    """Read a run directory. Raises :class:`~evo.errors.ConfigError` if it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise _not_a_run(p, "no such directory")
    config_path = p / "config.json"
    if not config_path.is_file():
        raise _not_a_run(p, "no config.json")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise _not_a_run(p, f"config.json is unreadable: {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "strategy" not in meta["config"]:
        raise _not_a_run(p, "config.json has no config.strategy")
    if not (p / "members.csv").is_file() or not (p / "generations.csv").is_file():
        raise _not_a_run(p, "no members.csv / generations.csv")
    try:
        members = _parse_rows(read_csv(p / "members.csv"))
        generations = _parse_rows(read_csv(p / "generations.csv"))
        lineage = read_jsonl(p / "lineage.jsonl") if (p / "lineage.jsonl").is_file() else []
        summary = json.loads((p / "summary.json").read_text()) if (p / "summary.json").is_file() else None
        replay = json.loads((p / "replay_schedule.json").read_text()) \
            if (p / "replay_schedule.json").is_file() else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{p}: cannot read its records: {exc}") from None
    if not members or not generations:
        raise ConfigError(f"{p}: the run has no completed generation yet")
    # Keep the last row of any (generation, member) pair and only generations present in both files.
    dedup = {(r["generation"], r["member"]): r for r in members}
    gens = {r["generation"]: r for r in generations}
    common = set(gens) & {g for g, _ in dedup}
    members = [dedup[k] for k in sorted(dedup) if k[0] in common]
    generations = [gens[g] for g in sorted(common)]
    return Run(path=p, meta=meta, members=members, generations=generations, lineage=lineage,
               summary=summary, replay=replay, label=p.name)


# -- ancestry and schedule (pure) -----------------------------------------------------------
def winner_ancestry(run: Run) -> list[tuple[int, int]]:
    """``[(generation, member), ...]`` for every generation, ending at the final winner.

    The winner is the last generation's ``best_member`` in ``generations.csv`` (ranked on the
    score PBT selects on); earlier ancestors follow ``lineage.jsonl`` back through exploits.
    """
    gens = run.generation_ids
    last = gens[-1]
    grow = run.generation_row(last)
    winner = int(grow["best_member"]) if grow is not None and grow.get("best_member") is not None else -1
    if winner < 0:
        raise ConfigError(f"{run.path}: no winner in generation {last} (every member failed)")
    donor_of = {(int(e["generation"]), int(e["receiver"])): int(e["donor"]) for e in run.lineage}
    ancestry = [(last, winner)]
    member = winner
    for g in reversed(gens[:-1]):
        member = donor_of.get((g, member), member)
        ancestry.append((g, member))
    ancestry.reverse()
    return ancestry


def hparam_schedule(run: Run) -> list[dict[str, Any]]:
    """The hyperparameters each of the final winner's ancestors trained with, one dict per
    generation (from ``members.csv``'s ``hp_*`` columns, values exactly as recorded)."""
    names = run.hp_names
    return [{n: run.row(g, m)[f"hp_{n}"] for n in names} for g, m in winner_ancestry(run)]


def exploit_edges(run: Run) -> list[tuple[int, int, int]]:
    """``(generation, donor, receiver)`` of every exploit."""
    return sorted((int(e["generation"]), int(e["donor"]), int(e["receiver"])) for e in run.lineage)


# -- equal-budget comparison (pure) ---------------------------------------------------------
def _finite(values: Sequence[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def cumulative_wall(run: Run) -> dict[int, float]:
    """Wall seconds since the start of the run, per generation.

    ``generations.csv``'s ``wall_s`` restarts from zero when a run is resumed; a drop is taken
    as a restart and the clock is continued from the last value before it.
    """
    out: dict[int, float] = {}
    offset = 0.0
    prev: float | None = None
    for r in run.generations:
        w = float(r["wall_s"])
        if prev is not None and w < prev:
            offset += prev
        out[r["generation"]] = offset + w
        prev = w
    return out


def run_stats(run: Run, budget: int) -> dict[str, Any]:
    """One run's numbers at the last generation evaluated within ``budget`` env steps per member."""
    within = [r for r in run.generations if r["env_steps"] <= budget]
    base = {"run": run.label, "path": str(run.path), "kind": run.kind, "description": run.description,
            "members": run.n_members, "members_text": run.members_text}
    if not within:
        return {**base, "generation": None, "env_steps": None}
    g = within[-1]["generation"]
    rows = run.rows_at(g)
    scores = _finite([r["score"] for r in rows])
    tests = _finite([r.get("test_score") for r in rows])
    per_gen_best = {}
    for r in within:
        s = _finite([m["score"] for m in run.rows_at(r["generation"])])
        if s:
            per_gen_best[r["generation"]] = max(s)
    best_gen = max(per_gen_best, key=lambda k: (per_gen_best[k], -k)) if per_gen_best else None
    best_row = run.generation_row(best_gen) if best_gen is not None else None
    wall = cumulative_wall(run)[g]
    total = int(within[-1]["total_env_steps"])
    return {
        **base,
        "generation": g,
        "env_steps": int(within[-1]["env_steps"]),
        "total_env_steps": total,
        "final_best": max(scores) if scores else None,
        "final_mean": sum(scores) / len(scores) if scores else None,
        "final_min": min(scores) if scores else None,
        "final_max": max(scores) if scores else None,
        "best_ever": per_gen_best[best_gen] if best_gen is not None else None,
        "best_ever_generation": best_gen,
        "best_ever_env_steps": best_row["env_steps"] if best_row is not None else None,
        "test_best": max(tests) if tests else None,
        "test_mean": sum(tests) / len(tests) if tests else None,
        "wall_s": wall,
        "env_steps_per_s": total / wall if wall > 0 else None,
        "failed": sum(1 for r in rows if r.get("failed")),
    }


def equal_budget(runs: Sequence[Run]) -> int:
    """The largest env-step count per member that every run reached (and evaluated at)."""
    return min(max(r["env_steps"] for r in run.generations) for run in runs)


def budget_table(runs: Sequence[Run]) -> tuple[int, list[dict[str, Any]]]:
    """``(budget, one stats dict per run)`` with every run cut at the same env steps per member."""
    budget = equal_budget(runs)
    return budget, [run_stats(run, budget) for run in runs]


# -- methods: runs grouped by their settings (pure) -----------------------------------------------
NON_RESULT_KEYS = frozenset({
    "seed", "exp_name", "log_dir", "resume", "overwrite", "verbose", "threads", "tb_writer", "checkpoint_every",
    "generations", "num_timesteps", "save_every", "hyperparams", "param_file", "eval_test_levels",
})  # fmt: skip
"""``config`` keys that do not make a different method (``hyperparams`` is a path: the resolved
search space in ``config.json`` counts instead)."""
SEED_KEYS = frozenset({"num_agents", "eval_every", "steps_per_generation"})
"""Also ignored for baselines and replays: how many seeds a directory holds and how often they were
evaluated (for PBT they are the population size and the exploit interval, and do count)."""
TASK_KEYS = ("env_id", "num_levels", "start_level", "distribution_mode")
"""What makes a task: runs on different tasks can be runs of one method."""


def task_name(cfg: Mapping[str, Any]) -> str:
    """A short name of a run's env: ``CartPole-v1``, ``bigfish (easy, 200 levels from 0)``."""
    env = str(cfg.get("env_id", "?"))
    from evo.envs import procgen_game

    if procgen_game(env) is None:
        return env
    levels = int(cfg.get("num_levels", 0) or 0)
    where = f", {levels} levels from {cfg.get('start_level', 0)}" if levels else ", all levels"
    return f"{env} ({cfg.get('distribution_mode', 'easy')}{where})"


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
            shown = [f"{k.removeprefix('search_space.params.')}={_short(flat.get(k))}" for k in diff[:3]]
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


# -- the budget: one env-step count per member (pure) --------------------------------------------
@dataclass
class Budget:
    """The env steps per member at which methods are compared."""

    steps: int
    equal: bool
    """Every run was evaluated at exactly ``steps`` env steps per member."""
    requested: bool = False
    """``steps`` came from ``--budget``."""
    missing: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    """Runs without an evaluation at ``steps``: their nearest evaluation points (below, above)."""
    reason: str = ""


def nearest_points(run: Run, steps: int) -> tuple[int | None, int | None]:
    """The run's evaluation points nearest to ``steps``: the largest at or below, the smallest above."""
    below = [p for p in run.evaluation_points if p <= steps]
    above = [p for p in run.evaluation_points if p > steps]
    return (below[-1] if below else None, above[0] if above else None)


def choose_budget(runs: Sequence[Run], requested: int | None = None) -> Budget:
    """``requested`` if given, else the largest env-step count that is an evaluation point of every
    run; if there is none, the largest count every run reached, marked as not equal."""
    common = set.intersection(*(set(r.evaluation_points) for r in runs))
    if requested is not None:
        steps, reason = int(requested), f"--budget {requested} is not an evaluation point of every run"
    elif common:
        return Budget(steps=max(common), equal=True)
    else:
        steps = min(r.evaluation_points[-1] for r in runs)
        reason = "no env-step count per member is an evaluation point of every run"
    missing = {r.label: nearest_points(r, steps) for r in runs if steps not in r.evaluation_points}
    return Budget(steps=steps, equal=not missing, requested=requested is not None, missing=missing,
                  reason=reason if missing else "")


def steps_for(run: Run, budget: Budget) -> int | None:
    """The evaluation point used for ``run``: the budget itself, else the nearest one below it (a run
    never gets more env steps than the budget); None if the run has none at or below it."""
    return budget.steps if budget.steps in run.evaluation_points else nearest_points(run, budget.steps)[0]


# -- one score per run at the budget (pure) ---------------------------------------------------------
@dataclass
class Sample:
    """One run's score at the budget."""

    run: str
    score: float
    """NaN if the run (or seed) failed."""
    env_steps: int
    source: str
    """``final_eval`` (fresh episodes after training, summary.json) or ``eval`` (the run's evaluation)."""
    episodes: int | None = None
    """Evaluation episodes behind the score (per member)."""


@dataclass
class Entry:
    """One table row: a method's runs on one task (or, for PBT, its population means)."""

    label: str
    method: Method
    variant: str
    """``selected`` (PBT: the member selection ranked first), ``population`` (PBT: the mean of all
    members) or ``seeds`` (baseline, replay: every seed)."""
    task: str
    samples: list[Sample]
    missing: list[str] = field(default_factory=list)
    """Runs left out: no evaluation at or below the budget."""

    @property
    def scores(self) -> np.ndarray:
        """Finite scores as rliable's ``(num_runs, num_tasks=1)`` array."""
        return np.array([[s.score] for s in self.samples if math.isfinite(s.score)], dtype=np.float64).reshape(-1, 1)

    @property
    def n(self) -> int:
        return int(self.scores.shape[0])

    @property
    def failed(self) -> int:
        return sum(1 for s in self.samples if not math.isfinite(s.score))

    @property
    def is_baseline(self) -> bool:
        return self.method.is_baseline


def final_eval_scores(run: Run, steps: int) -> tuple[list[float], int | None] | None:
    """``summary.json``'s ``final_eval`` per-member scores and episodes, if the run ended at ``steps``."""
    summary = run.summary or {}
    fe = summary.get("final_eval")
    if not isinstance(fe, Mapping) or not isinstance(fe.get("scores"), list) or not run.evaluation_points:
        return None
    end = summary.get("env_steps_per_member", run.evaluation_points[-1])
    if steps != run.evaluation_points[-1] or end is None or int(end) != steps or len(fe["scores"]) != run.n_members:
        return None
    episodes = fe.get("episodes")
    return [_as_float(v) for v in fe["scores"]], int(episodes) if episodes is not None else None


def _as_float(v: Any) -> float:
    return math.nan if v is None else float(v)


def run_samples(run: Run, variant: str, steps: int, use_final_eval: bool = True) -> list[Sample]:
    """A run's scores at the evaluation point ``steps``: per seed, its selected member, or its mean.

    ``final_eval`` (fresh episodes) replaces the last evaluation for seeds and for the selected member,
    never for the population mean: PBT's final evaluation runs after the last exploit, when the
    members that lost already hold copies of the winners (and a mean over all members has no
    selection bias to remove)."""
    g = run.generation_at(steps)
    members = [int(r["member"]) for r in run.rows_at(g)]
    final = final_eval_scores(run, steps) if use_final_eval and variant != "population" else None
    source = "final_eval" if final is not None else "eval"
    episodes = final[1] if final is not None else run.config.get("eval_episodes")

    def score(m: int) -> float:
        return final[0][m] if final is not None else _as_float(run.row(g, m)["score"])

    if variant == "seeds":
        return [Sample(f"{run.label}/{m}" if len(members) > 1 else run.label, score(m), steps, source, episodes)
                for m in members]
    if variant == "selected":
        grow = run.generation_row(g) or {}
        best = int(grow["best_member"]) if grow.get("best_member") is not None else -1
        return [Sample(run.label, score(best) if best >= 0 else math.nan, steps, source, episodes)]
    vals = _finite([score(m) for m in members])
    return [Sample(run.label, float(np.mean(vals)) if vals else math.nan, steps, source, episodes)]


def build_entries(methods: Sequence[Method], task: str, budget: Budget, use_final_eval: bool = True) -> list[Entry]:
    """The rows of one task's table: per PBT method its selected member and its population mean, per
    baseline or replay method every seed."""
    entries = []
    for m in methods:
        runs = m.runs_on(task)
        if not runs:
            continue
        for variant in (("selected", "population") if m.kind == "pbt" else ("seeds",)):
            samples: list[Sample] = []
            missing = []
            for run in runs:
                steps = steps_for(run, budget)
                if steps is None:
                    missing.append(run.label)
                else:
                    samples += run_samples(run, variant, steps, use_final_eval)
            label = f"{m.label}, all members" if variant == "population" else m.label
            entries.append(Entry(label, m, variant, task, samples, missing))
    return entries


# -- statistics (pure; rliable) -------------------------------------------------------------------
@dataclass
class Interval:
    """A point estimate with its 95 % confidence interval (None where there is none)."""

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def has_ci(self) -> bool:
        return self.low is not None and self.high is not None


@dataclass
class MethodStats:
    n: int
    iqm: Interval
    median: Interval
    mean: Interval


def _rliable() -> tuple[Any, Any]:
    try:
        from rliable import library, metrics
    except Exception as exc:  # rliable 1.2 imports arch, and arch 7 does not import under pandas 3
        raise EvoError(f"cannot import rliable ({type(exc).__name__}: {exc}); with rliable 1.2 this is arch 7 "
                       f"under pandas 3: pip install 'pandas<3'") from None
    return library, metrics


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """rliable's bootstrap draws from numpy's global generator: seed it, and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _aggregates(scores: np.ndarray) -> np.ndarray:
    _, metrics = _rliable()
    return np.array([metrics.aggregate_iqm(scores), np.median(scores), metrics.aggregate_mean(scores)])


def aggregate_stats(scores: np.ndarray, reps: int = 2000, seed: int = 0) -> MethodStats | None:
    """IQM, median and mean of a ``(num_runs, num_tasks)`` array with stratified-bootstrap 95 % CIs
    (percentile method, ``reps`` resamples, seeded); no CI with one run; None with no run."""
    if scores.size == 0:
        return None
    point = _aggregates(scores)
    if scores.shape[0] < 2:
        return MethodStats(int(scores.shape[0]), *(Interval(float(v)) for v in point))
    library, _ = _rliable()
    with seeded_numpy(seed):
        _, cis = library.get_interval_estimates({"m": scores}, _aggregates, reps=reps)
    lo, hi = np.asarray(cis["m"])
    return MethodStats(int(scores.shape[0]), *(Interval(float(v), float(a), float(b))
                                               for v, a, b in zip(point, lo, hi, strict=True)))


def improvement_probability(x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0) -> Interval | None:
    """P(X > Y): the probability that a run of X scores higher than a run of Y (ties count half),
    with a stratified-bootstrap 95 % CI resampling both independently; no CI unless both have 2+ runs."""
    if x.size == 0 or y.size == 0:
        return None
    library, metrics = _rliable()
    p = float(metrics.probability_of_improvement(x, y))
    if x.shape[0] < 2 or y.shape[0] < 2:
        return Interval(p)
    with seeded_numpy(seed):
        _, cis = library.get_interval_estimates({"p": [x, y]}, metrics.probability_of_improvement, reps=reps)
    lo, hi = np.ravel(cis["p"])
    return Interval(p, float(lo), float(hi))


def score_profiles(scores: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = 2000,
                   seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per method: the fraction of its runs scoring above each threshold in ``taus`` (rliable's score
    distribution) and its ``(2, len(taus))`` bootstrap CI."""
    library, _ = _rliable()
    out = {}
    for label, s in scores.items():
        if s.size == 0:
            continue
        with seeded_numpy(seed):
            prof, cis = library.create_performance_profile({label: s}, taus, reps=reps)
        out[label] = (np.asarray(prof[label]), np.asarray(cis[label]))
    return out


# -- the random-policy reference ----------------------------------------------------------------------
@dataclass
class Reference:
    """What uniformly random actions score on a task's evaluation env."""

    score: float
    episodes: int
    source: str


def stored_reference(runs: Sequence[Run]) -> Reference | None:
    """The ``random_policy`` entries of the runs' ``config.json``; distinct measurements (other seeds,
    other episode counts) are pooled, weighted by their episodes."""
    found: dict[str, tuple[float, int]] = {}
    for run in runs:
        rp = run.meta.get("random_policy")
        if isinstance(rp, Mapping) and rp.get("score") is not None and rp.get("episodes"):
            score, episodes = float(rp["score"]), int(rp["episodes"])
            found[repr((score, episodes))] = (score, episodes)  # one measurement, however many runs repeat it
    if not found:
        return None
    total = sum(e for _, e in found.values())
    mean = sum(s * e for s, e in found.values()) / total
    return Reference(mean, total, f"stored in config.json ({len(found)} distinct measurement(s))")


def task_reference(runs: Sequence[Run], episodes: int | None = None) -> Reference | None:
    """The stored reference, else :func:`evo.reference.random_policy_score` on the first run's config
    (``episodes`` or its ``eval_episodes``, its seed). None (with a warning) if the env cannot be built."""
    if episodes is None:
        stored = stored_reference(runs)
        if stored is not None:
            return stored
    from evo.reference import random_policy_score

    cfg = runs[0].config
    n = int(episodes or cfg.get("eval_episodes") or 10)
    try:
        score = random_policy_score(cfg, n, int(cfg.get("seed", 0)))
    except Exception as exc:  # e.g. ProcGen missing on this machine: the report goes on without it
        print(f"{PROG}: warning: no random-policy reference for {runs[0].task}: {exc}", file=sys.stderr)
        return None
    return Reference(score, n, f"computed now from {runs[0].label}'s config.json")


# -- one task's comparison ------------------------------------------------------------------------
@dataclass
class TaskReport:
    task: str
    runs: list[Run]
    budget: Budget
    entries: list[Entry]
    stats: dict[str, MethodStats | None]
    improvement: dict[tuple[str, str], Interval | None]
    """``(entry label, baseline label)`` -> P(entry > baseline)."""
    reference: Reference | None

    @property
    def baselines(self) -> list[Entry]:
        return [e for e in self.entries if e.is_baseline]


def compare_task(methods: Sequence[Method], task: str, requested: int | None = None, reps: int = 2000,
                 seed: int = 0, reference: Reference | None = None, use_final_eval: bool = True) -> TaskReport:
    """Budget, rows, statistics and P(improvement) of every non-baseline row over every baseline."""
    runs = [r for m in methods for r in m.runs_on(task)]
    budget = choose_budget(runs, requested)
    entries = build_entries(methods, task, budget, use_final_eval)
    stats = {e.label: aggregate_stats(e.scores, reps, seed) for e in entries}
    improvement = {(e.label, b.label): improvement_probability(e.scores, b.scores, reps, seed)
                   for e in entries if not e.is_baseline for b in entries if b.is_baseline}
    return TaskReport(task, runs, budget, entries, stats, improvement, reference)


# -- several tasks: normalised scores (pure) ------------------------------------------------------
def normalised_matrices(tasks: Sequence[TaskReport]) -> tuple[dict[str, np.ndarray], str]:
    """Per row present on every task: rliable's ``(num_runs, num_tasks)`` array of its scores normalised
    per task, 0 = the random policy and 1 = the best run of any method on that task; ``num_runs`` is the
    row's smallest run count over the tasks (its first runs on each). ``({}, why)`` if not possible."""
    scales = []
    for tr in tasks:
        finite = [float(v) for e in tr.entries for v in e.scores[:, 0]]
        if tr.reference is None or not finite or max(finite) <= tr.reference.score:
            return {}, f"{tr.task} has no random-policy reference or no run scoring above it"
        scales.append((tr.reference.score, max(finite)))
    out = {}
    for e in tasks[0].entries:
        rows = [next((x for x in tr.entries if x.label == e.label), None) for tr in tasks]
        cols = [r.scores[:, 0] for r in rows if r is not None]
        n = min(len(c) for c in cols)
        if len(cols) == len(tasks) and n > 0:
            out[e.label] = np.stack([(c[:n] - lo) / (hi - lo) for c, (lo, hi) in zip(cols, scales, strict=True)], 1)
    return out, "" if out else "no method has runs on every task"


@dataclass
class AcrossTasks:
    """Methods compared over several tasks at once, on normalised scores."""

    scores: dict[str, np.ndarray]
    baselines: list[str]
    stats: dict[str, MethodStats | None]
    improvement: dict[tuple[str, str], Interval | None]
    why_not: str = ""


def compare_across(tasks: Sequence[TaskReport], reps: int = 2000, seed: int = 0) -> AcrossTasks:
    scores, why = normalised_matrices(tasks)
    bases = [e.label for e in tasks[0].entries if e.is_baseline and e.label in scores]
    stats = {k: aggregate_stats(v, reps, seed) for k, v in scores.items()}
    improvement = {(k, b): improvement_probability(v, scores[b], reps, seed)
                   for k, v in scores.items() if k not in bases for b in bases}
    return AcrossTasks(scores, bases, stats, improvement, why)


# -- formatting ----------------------------------------------------------------------------------
def fmt_score(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def fmt_seconds(v: float | None) -> str:
    return "—" if v is None else f"{v:.1f}"


def fmt_rate(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def fmt_interval(iv: Interval | None, digits: int = 2) -> str:
    """``12.34 [10.00, 15.00]``; without a CI, says why instead of printing a fake one."""
    if iv is None:
        return "—"
    if not iv.has_ci:
        return f"{iv.value:.{digits}f} (no CI: n = 1)"
    return f"{iv.value:.{digits}f} [{iv.low:.{digits}f}, {iv.high:.{digits}f}]"


TABLE_COLUMNS = ["run", "kind", "members", "env steps / member", "final best", "final mean", "final min–max",
                 "best so far (env steps)", "held-out best", "held-out mean", "wall time (s)", "env steps/s"]


def table_row(s: dict[str, Any]) -> list[str]:
    """The Markdown cells of one :func:`run_stats` dict, in :data:`TABLE_COLUMNS` order."""
    if s.get("generation") is None:
        return [s["run"], s["description"], s["members_text"], "not evaluated within the budget",
                *(["—"] * (len(TABLE_COLUMNS) - 4))]
    best_so_far = fmt_score(s["best_ever"])
    if s["best_ever_env_steps"] is not None:
        best_so_far += f" ({s['best_ever_env_steps']})"
    return [
        s["run"], s["description"], s["members_text"], str(s["env_steps"]),
        fmt_score(s["final_best"]), fmt_score(s["final_mean"]),
        f"{fmt_score(s['final_min'])}–{fmt_score(s['final_max'])}",
        best_so_far, fmt_score(s["test_best"]), fmt_score(s["test_mean"]),
        fmt_seconds(s["wall_s"]), fmt_rate(s["env_steps_per_s"]),
    ]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- document blocks: rendered as Markdown, HTML and plain text ------------------------------------
@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    right: int = 1
    """Columns from this index on are right-aligned."""


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Image:
    file: str
    alt: str


Block = Heading | Para | Table | Bullets | Image


def render_markdown(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            lines.append(b.text)
        elif isinstance(b, Table):
            lines.append("| " + " | ".join(_md_escape(c) for c in b.header) + " |")
            lines.append("|" + "|".join(["---"] * b.right + ["---:"] * (len(b.header) - b.right)) + "|")
            lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in b.rows]
        elif isinstance(b, Bullets):
            lines += [f"- {item}" for item in b.items]
        else:
            lines.append(f"![{b.alt}]({b.file})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _inline_html(text: str) -> str:
    """Escape, then the two Markdown marks the summary uses: ``**bold**`` and ``code``."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<em>\1</em>", out)


HTML_STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f3f3f3}td.r{text-align:right}img{max-width:100%;border:1px solid #eee}
figure{margin:1.5em 0}figcaption{color:#555;font-size:0.9em}code{background:#f5f5f5;padding:0 3px}"""


def _html_block(b: Block) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        return f"<p>{_inline_html(b.text)}</p>"
    if isinstance(b, Table):
        head = "".join(f"<th>{_inline_html(c)}</th>" for c in b.header)
        cls = [' class="r"' if i >= b.right else "" for i in range(len(b.header))]
        body = "".join("<tr>" + "".join(f"<td{k}>{_inline_html(c)}</td>" for k, c in zip(cls, row, strict=True))
                       + "</tr>" for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>"
    src = html.escape(b.file, quote=True)
    return (f'<figure><a href="{src}"><img src="{src}" alt="{html.escape(b.alt, quote=True)}"></a>'
            f"<figcaption>{_inline_html(b.alt)}</figcaption></figure>")


def render_html(blocks: Sequence[Block], title: str = "evo report") -> str:
    """One page that opens from disk: inline CSS, images by relative path, no external URL."""
    body = "\n".join(_html_block(b) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def render_text_table(t: Table) -> str:
    """A table as aligned plain text (for stdout)."""
    widths = [max(len(r[i]) for r in [t.header, *t.rows]) for i in range(len(t.header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i >= t.right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(t.header), "  ".join("-" * w for w in widths), *(line(r) for r in t.rows)])


# -- the summary ----------------------------------------------------------------------------------
def _runs_cell(e: Entry) -> str:
    extra = []
    if e.failed:
        extra.append(f"{e.failed} failed, left out")
    if e.missing:
        extra.append(f"{len(e.missing)} not evaluated by the budget, left out")
    return f"{e.n}" + (f" ({'; '.join(extra)})" if extra else "")


def _steps_cell(e: Entry) -> str:
    steps = sorted({s.env_steps for s in e.samples})
    if not steps:
        return "—"
    return str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]} (differs)"


def method_table(tr: TaskReport) -> Table:
    """The per-method table of one task: n, env steps, IQM [CI], median, mean, P(improvement)."""
    bases = tr.baselines
    header = ["method", "runs (n)", "env steps per member", "IQM [95% CI]", "median", "mean",
              *[f"P(improvement over {b.label}) [95% CI]" for b in bases]]
    rows = []
    for e in tr.entries:
        st = tr.stats.get(e.label)
        cells = [e.label, _runs_cell(e), _steps_cell(e), fmt_interval(st.iqm) if st else "no finite score",
                 fmt_score(st.median.value) if st else "—", fmt_score(st.mean.value) if st else "—"]
        cells += ["—" if e.is_baseline else fmt_interval(tr.improvement.get((e.label, b.label))) for b in bases]
        rows.append(cells)
    if tr.reference is not None:
        ref = tr.reference
        rows.append(["random policy (reference)", "—", "—", f"{ref.score:.2f} (mean of {ref.episodes} episodes)",
                     "—", fmt_score(ref.score), *(["—"] * len(bases))])
    return Table(header, rows, right=1)


def budget_text(tr: TaskReport) -> str:
    b = tr.budget
    if b.equal:
        how = "chosen with --budget" if b.requested else "the largest env-step count at which every run was evaluated"
        return f"Methods compared at an equal budget of **{b.steps} env steps per member**: {how}."
    lacking = "; ".join(f"`{run}` (nearest evaluations: {_opt(lo)} below, {_opt(hi)} above)"
                        for run, (lo, hi) in b.missing.items())
    return (f"**Budgets differ: this is not a comparison at one budget.** {b.reason[0].upper()}{b.reason[1:]}. "
            f"Target: {b.steps} env steps per member. Runs without an evaluation at {b.steps}: {lacking}. "
            f"Their scores come from their last evaluation below {b.steps} (the *env steps per member* column "
            f"shows which); a run with none is left out.")


def _opt(v: int | None) -> str:
    return "none" if v is None else str(v)


def _episodes(samples: Sequence[Sample]) -> str:
    return "/".join(str(e) for e in sorted({s.episodes for s in samples if s.episodes is not None})) or "?"


def source_note(e: Entry) -> str:
    """Which score a row uses, and whether it is optimistic."""
    fresh = [s for s in e.samples if s.source == "final_eval"]
    stale = [s for s in e.samples if s.source != "final_eval"]
    what = {"selected": "the selected member's score", "population": "the mean over all members",
            "seeds": "each seed's score"}[e.variant]
    parts = []
    if fresh:
        unseen = ", not the episodes selection used" if e.variant == "selected" else ""
        parts.append(f"{len(fresh)} of {len(e.samples)} from fresh episodes after training (summary.json "
                     f"`final_eval`, {_episodes(fresh)} episodes each){unseen}")
    if stale:
        caveat = (": the same episodes the member was selected on, so **optimistic** (the best of several noisy "
                  "scores)" if e.variant == "selected" else "")
        parts.append(f"{len(stale)} of {len(e.samples)} from the evaluation at the budget ({_episodes(stale)} "
                     f"episodes){caveat}")
    return f"`{e.label}`: {what}; " + "; ".join(parts) + "."


def task_notes(tr: TaskReport, reps: int, seed: int) -> list[str]:
    notes = [source_note(e) for e in tr.entries if e.samples]
    notes.append("*runs (n)*: independent runs. A PBT run directory is one run whatever its population size; a "
                 "baseline directory launched with `mpiexec -n K` holds K seeds, each one run.")
    if any(e.variant == "population" for e in tr.entries):
        notes.append("*…, all members*: the mean score of all members of each PBT run, without picking the best; "
                     "its gap to the row above is the selection effect. It always comes from the members' own "
                     "evaluation: a run's `final_eval` is taken after its last exploit, when the losers already "
                     "hold copies of the winners.")
    notes.append(f"*IQM*: interquartile mean of the run scores (the mean of the middle 50 %; rliable), robust to "
                 f"one outlier run. *[95% CI]*: stratified bootstrap over runs, percentile method, {reps} "
                 f"resamples, seed {seed}. *median*, *mean*: of the run scores.")
    if tr.baselines:
        notes.append("*P(improvement over B)*: the probability that a run of the row's method scores higher than a "
                     "run of B (ties count half; rliable); 0.5 means no difference. Its CI resamples both methods' "
                     "runs independently.")
    else:
        notes.append("No baseline run among the inputs, so no probability of improvement.")
    ones = [e.label for e in tr.entries if e.n == 1]
    if ones:
        notes.append(f"n = 1 for {', '.join(f'`{x}`' for x in ones)}: one run says nothing about the spread "
                     f"between runs, so no confidence interval is shown. Run more seeds before drawing conclusions.")
    few = [e.label for e in tr.entries if 1 < e.n < 5]
    if few:
        notes.append(f"n < 5 for {', '.join(f'`{x}`' for x in few)}: bootstrap intervals from so few runs are "
                     f"too narrow; treat them as rough.")
    if tr.reference is not None:
        notes.append(f"*random policy*: the mean return of uniformly random actions over {tr.reference.episodes} "
                     f"episodes of the evaluation env (evo.reference; {tr.reference.source}). Scores near it mean "
                     f"nothing was learned.")
    else:
        notes.append("*random policy*: not available (the env could not be built here).")
    return notes


def comparison_blocks(tr: TaskReport, reps: int, seed: int, several: bool) -> list[Block]:
    title = "Did PBT beat the baseline?" + (f" {tr.task}" if several else "")
    return [Heading(2, title), Para(budget_text(tr)), method_table(tr), Bullets(task_notes(tr, reps, seed))]


def across_blocks(ac: AcrossTasks, tasks: Sequence[TaskReport]) -> list[Block]:
    head: list[Block] = [Heading(2, f"All {len(tasks)} tasks together")]
    if not ac.scores:
        return [*head, Para(f"No comparison over all tasks: {ac.why_not}.")]
    header = ["method", "runs per task (n)", "IQM [95% CI]", "median", "mean",
              *[f"P(improvement over {b}) [95% CI]" for b in ac.baselines]]
    rows = []
    for label, m in ac.scores.items():
        st = ac.stats.get(label)
        rows.append([label, str(m.shape[0]), fmt_interval(st.iqm) if st else "—",
                     fmt_score(st.median.value) if st else "—", fmt_score(st.mean.value) if st else "—",
                     *["—" if label in ac.baselines else fmt_interval(ac.improvement.get((label, b)))
                       for b in ac.baselines]])
    note = (f"Scores normalised per task: 0 = the random policy, 1 = the best run of any method on that task at "
            f"its budget; tasks: {', '.join(tr.task for tr in tasks)}. rliable's statistics run over the "
            f"(runs × tasks) array, resampling runs within each task; a method with fewer runs on some task uses "
            f"that many (its first runs) on every task.")
    return [*head, Table(header, rows), Bullets([note])]


def per_run_blocks(runs: Sequence[Run], stats: Sequence[dict[str, Any]]) -> list[Block]:
    notes = [
        "*final best / mean / min–max*: over the run's members (PBT) or seeds (baseline, replay) at its last "
        "evaluation at or below the budget; a score is the mean return of the evaluation episodes. The best of N "
        "noisy evaluations is biased upwards: compare PBT's *final best* with a baseline's *final best* (its best "
        "seed) as well as with its mean.",
        "*best so far*: the highest member score at any evaluation up to the budget, with its env steps per member.",
        "*held-out*: score on levels outside the training levels (ProcGen with --eval-test-levels); — if not "
        "evaluated.",
        "*wall time*: seconds from the start of the run's generation loop to the end of that evaluation's "
        "generation (continued across resumes); *env steps/s*: env steps of all members together divided by that "
        "wall time (training, evaluation and exchange included).",
    ]
    return [Heading(2, "Per run"), Table(TABLE_COLUMNS, [table_row(s) for s in stats], right=3), Bullets(notes),
            Heading(2, "Runs"), *[b for run, s in zip(runs, stats, strict=True) for b in run_blocks(run, s)]]


def run_blocks(run: Run, s: Mapping[str, Any]) -> list[Block]:
    cfg = run.config
    items = [f"`{run.path}`: {run.description}, {run.members_text}, {cfg.get('env_id')}, "
             f"{len(run.generation_ids)} generation(s) of {cfg.get('steps_per_generation')} env steps per member "
             f"(n_envs {cfg.get('n_envs')}, n_steps {cfg.get('n_steps')}), seed {cfg.get('seed')}"]
    last = run.generations[-1]
    wall = cumulative_wall(run)[last["generation"]]
    items.append(f"at its end ({last['env_steps']} env steps per member): best {fmt_score(last['best_score'])}, "
                 f"mean {fmt_score(last['mean_score'])}, wall {fmt_seconds(wall)} s")
    if run.kind == "pbt":
        try:
            ancestry = winner_ancestry(run)
            schedule = hparam_schedule(run)
        except EvoError as exc:
            items.append(f"winner: {exc}")
        else:
            path = " → ".join(str(m) for _, m in ancestry)
            items.append(f"exploits: {len(run.lineage)}; selection on the {run.select_on} score; final winner: "
                         f"member {ancestry[-1][1]}, ancestry by generation: {path}")
            items.append("the winner's last hyperparameters: "
                         + ", ".join(f"{k}={_short(v)}" for k, v in schedule[-1].items()))
    if run.kind == "replay" and run.replay is not None:
        items.append(f"replays the schedule of `{run.replay.get('source_run')}` (winner member "
                     f"{run.replay.get('winner')})")
    if s.get("failed"):
        items.append(f"{s['failed']} member(s) failed (non-finite score) at the budget evaluation")
    return [Heading(3, run.label), Bullets(items)]


def report_blocks(tasks: Sequence[TaskReport], runs: Sequence[Run], stats: Sequence[dict[str, Any]],
                  plots: Mapping[str, Sequence[str]], reps: int, seed: int,
                  across: AcrossTasks | None = None) -> list[Block]:
    """The whole summary (``summary.md`` and ``index.html`` differ only in rendering)."""
    blocks: list[Block] = [Heading(1, "evo report")]
    for tr in tasks:
        blocks += comparison_blocks(tr, reps, seed, several=len(tasks) > 1)
    if across is not None:
        blocks += across_blocks(across, tasks)
    blocks += per_run_blocks(runs, stats)
    blocks.append(Heading(2, "Plots"))
    blocks += [Image(f, title) for title, files in plots.items() for f in files]
    return blocks


# -- plots ---------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _run_curve(run: Run, column: str) -> tuple[list[int], list[float], list[float], list[float], list[float]]:
    """Per evaluation: env steps, best, mean, min and max of the members' ``column``."""
    xs, best, mean, lo, hi = [], [], [], [], []
    for g in run.generation_ids:
        vals = _finite([r.get(column) for r in run.rows_at(g)])
        if vals:
            xs.append(int(run.rows_at(g)[0]["env_steps"]))
            best.append(max(vals))
            mean.append(sum(vals) / len(vals))
            lo.append(min(vals))
            hi.append(max(vals))
    return xs, best, mean, lo, hi


def _plot_method(ax: Any, method: Method, runs: Sequence[Run], column: str, color: str) -> None:
    """One method's runs in one colour, one legend entry per line style. A PBT run is drawn as its
    best member (solid) and its population mean (dashed), a baseline or replay run as its mean over
    seeds with a min–max band; a method of several runs draws every run, thinner."""
    several = len(runs) > 1
    of_runs = f", {len(runs)} runs" if several else ""
    for k, run in enumerate(runs):
        xs, best, mean, lo, hi = _run_curve(run, column)
        if not xs:
            continue
        first = k == 0
        width = 1.0 if several else 1.5
        if run.kind == "pbt":
            n = run.n_members
            ax.plot(xs, best, "-o", color=color, ms=3, lw=width,
                    label=f"{method.label}: best of {n}{of_runs}" if first else None)
            ax.plot(xs, mean, "--", color=color, lw=width, label=f"{method.label}: mean of {n}" if first else None)
            continue
        n = run.n_members
        band = f" (band: min–max of {n} seeds)" if n > 1 else " (1 seed)"
        ax.plot(xs, mean, "-s", color=color, ms=3, lw=width, label=f"{method.label}: mean{band}" if first else None)
        if n > 1:
            ax.fill_between(xs, lo, hi, color=color, alpha=0.2 if not several else 0.1, linewidth=0)


def _budget_line(ax: Any, budget: Budget) -> None:
    what = "equal budget" if budget.equal else "comparison budget (runs differ)"
    ax.axvline(budget.steps, color="0.4", linestyle=":", linewidth=1, label=f"{what}: {budget.steps} steps")


def _reference_line(ax: Any, ref: Reference | None, horizontal: bool = True) -> None:
    if ref is None:
        return
    line = ax.axhline if horizontal else ax.axvline
    line(ref.score, color="k", linestyle="-.", linewidth=1, label=f"random policy: {ref.score:.2f}")


def plot_scores(runs: Sequence[Run], tasks: Sequence[TaskReport], out: Path) -> None:
    """Score vs env steps per member for every run, one row per task (held-out levels in a second
    column), with the comparison budget and the random-policy reference."""
    plt = _pyplot()
    has_test = any(r.has_test for r in runs)
    panels = [("score", "training levels" if has_test else "evaluation")]
    if has_test:
        panels.append(("test_score", "held-out levels"))
    fig, axes = plt.subplots(len(tasks), len(panels), figsize=(10.5 * len(panels), 5 * len(tasks)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, tr in zip(axes, tasks, strict=True):
        for ax, (column, where) in zip(row, panels, strict=True):
            methods = list({id(e.method): e.method for e in tr.entries}.values())
            for i, method in enumerate(methods):
                _plot_method(ax, method, method.runs_on(tr.task), column, colors[i % len(colors)])
            _budget_line(ax, tr.budget)
            if column == "score":
                _reference_line(ax, tr.reference)
            ax.set_xlabel("env steps per member")
            ax.set_ylabel("score (mean evaluation return)")
            ax.set_title(f"{tr.task}: score on {where} vs env steps per member")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _plot_run_scores(ax: Any, tr: TaskReport, colors: Sequence[str]) -> None:
    """Each row's run scores (dots) with its IQM and 95 % CI."""
    for i, e in enumerate(tr.entries):
        s = e.scores[:, 0]
        jitter = np.linspace(-0.15, 0.15, len(s)) if len(s) > 1 else np.zeros(len(s))
        ax.scatter(i + jitter, s, color=colors[i % len(colors)], alpha=0.6, s=22, zorder=3)
        st = tr.stats.get(e.label)
        if st is None:
            continue
        iqm = st.iqm
        err = None if not iqm.has_ci else [[iqm.value - float(iqm.low or 0.0)], [float(iqm.high or 0.0) - iqm.value]]
        ax.errorbar([i + 0.3], [iqm.value], yerr=err, fmt="D", color="k", ms=5, capsize=4, zorder=4,
                    label="IQM [95% CI]" if i == 0 else None)
    _reference_line(ax, tr.reference)
    names = [textwrap.fill(e.label, 11, break_long_words=False) for e in tr.entries]
    ax.set_xticks(range(len(tr.entries)), [f"{name}\n(n={e.n})" for name, e in zip(names, tr.entries, strict=True)],
                  fontsize=8)
    ax.set_ylabel(f"score at {tr.budget.steps} env steps per member")
    ax.set_title(f"{tr.task}: one dot per run")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="best")


def _plot_profiles(ax: Any, tr: TaskReport, reps: int, seed: int, colors: Sequence[str]) -> None:
    """rliable's score distributions: the fraction of runs above each score, with CI bands (n > 1)."""
    vals = [float(v) for e in tr.entries for v in e.scores[:, 0]]
    if tr.reference is not None:
        vals.append(tr.reference.score)
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    taus = np.linspace(lo - pad, hi + pad, 101)
    profiles = score_profiles({e.label: e.scores for e in tr.entries}, taus, reps, seed)
    for i, e in enumerate(tr.entries):
        if e.label not in profiles:
            continue
        prof, ci = profiles[e.label]
        ax.plot(taus, prof, color=colors[i % len(colors)], label=f"{e.label} (n={e.n})")
        if e.n > 1:
            ax.fill_between(taus, ci[0], ci[1], color=colors[i % len(colors)], alpha=0.15, linewidth=0)
    _reference_line(ax, tr.reference, horizontal=False)
    ax.set_xlabel(f"score τ at {tr.budget.steps} env steps per member")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{tr.task}: score distribution (bands: 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_profile(tasks: Sequence[TaskReport], out: Path, reps: int = 2000, seed: int = 0) -> None:
    """Per task: the run scores of every method with IQM and CI, and their score distributions."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(tasks), 2, figsize=(15, 5.5 * len(tasks)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (left, right), tr in zip(axes, tasks, strict=True):
        _plot_run_scores(left, tr, colors)
        _plot_profiles(right, tr, reps, seed, colors)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_schedule(run: Run, out: Path) -> None:
    """The winner's hyperparameters by generation, over the population's range."""
    plt = _pyplot()
    ancestry = winner_ancestry(run)
    schedule = hparam_schedule(run)
    searched = run.searched
    names = [n for n in run.hp_names if n in searched] or \
        [n for n in run.hp_names if len({s[n] for s in schedule}) > 1] or run.hp_names
    gens = [g for g, _ in ancestry]
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows + 0.8), squeeze=False)
    received = {(int(e["generation"]), int(e["receiver"])) for e in run.lineage}
    explored = [gens[i + 1] for i in range(len(gens) - 1) if (gens[i], ancestry[i + 1][1]) in received]
    for k, name in enumerate(names):
        ax = axes[k // ncols][k % ncols]
        xs = [*gens, gens[-1] + 1]
        ys = [s[name] for s in schedule]
        lo = [min(r[f"hp_{name}"] for r in run.rows_at(g)) for g in gens]
        hi = [max(r[f"hp_{name}"] for r in run.rows_at(g)) for g in gens]
        ax.fill_between(xs, [*lo, lo[-1]], [*hi, hi[-1]], step="post", color="0.85", linewidth=0,
                        label="population min–max")
        ax.step(xs, [*ys, ys[-1]], where="post", color="C3", linewidth=2, label="winner's ancestry")
        for x in explored:
            ax.axvline(x, color="C1", linestyle=":", linewidth=1)
        p = searched.get(name, {})
        if p.get("scale") == "log" and min(min(lo), min(ys)) > 0:
            ax.set_yscale("log")
        scale = p.get("scale", "fixed" if name not in searched else "linear")
        ax.set_title(f"{name} ({scale})", fontsize=10)
        ax.set_xlabel("generation")
        ax.set_xlim(gens[0], gens[-1] + 1)
        step = max(1, len(gens) // 8)
        ax.set_xticks([g + 0.5 for g in gens[::step]], [str(g) for g in gens[::step]])
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
    for k in range(len(names), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    spg = run.config.get("steps_per_generation")
    fig.suptitle(f"{run.label}: hyperparameters of the final winner (member {ancestry[-1][1]}) and its ancestors\n"
                 f"per generation of {spg} env steps per member; dotted: the ancestor explored new values "
                 f"after copying a better member ({len(explored)} time(s))", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_lineage(run: Run, out: Path) -> None:
    """Generations on x, members on y; who copied whom; the final winner's ancestry in red."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    ancestry = winner_ancestry(run)
    gens = run.generation_ids
    n = run.n_members
    edges = exploit_edges(run)
    received = {(g, r) for g, _, r in edges}
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 0.6 * len(gens) + 4)), min(14.0, max(4.0, 0.45 * n + 2.5))))
    for g in gens[:-1]:
        for m in range(n):
            if (g, m) not in received:
                ax.plot([g, g + 1], [m, m], color="0.6", linewidth=1, zorder=1)
    for g, d, r in edges:
        if g + 1 > gens[-1]:
            continue  # the last generation's exploit trains no further generation
        ax.annotate("", xy=(g + 1, r), xytext=(g, d), zorder=2,
                    arrowprops={"arrowstyle": "->", "color": "C1", "lw": 1.2, "shrinkA": 4, "shrinkB": 4})
    ax.plot([g for g, _ in ancestry], [m for _, m in ancestry], color="C3", linewidth=3, alpha=0.8, zorder=3)
    xs, ys, cs = [], [], []
    for row in run.members:
        xs.append(row["generation"])
        ys.append(row["member"])
        cs.append(row["score"] if row["score"] is not None and math.isfinite(row["score"]) else float("nan"))
    sc = ax.scatter(xs, ys, c=cs, cmap="viridis", s=40, zorder=4, edgecolors="k", linewidths=0.4)
    fig.colorbar(sc, ax=ax, label="score at that generation", pad=0.02, fraction=0.04)
    ax.scatter([ancestry[-1][0]], [ancestry[-1][1]], marker="*", s=260, color="C3", zorder=5,
               edgecolors="k", linewidths=0.6)
    ax.set_xlabel(f"generation ({run.config.get('steps_per_generation')} env steps per member each)")
    ax.set_ylabel("member (MPI rank)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
    if n <= 16:
        ax.set_yticks(range(n))
    else:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=16, integer=True))
    ax.set_ylim(-0.6, n - 0.4)
    ax.invert_yaxis()
    hidden = sum(1 for g, _, _ in edges if g >= gens[-1])
    note = (f"\n({hidden} exploit(s) after the last evaluation not drawn: no generation trained after them)"
            if hidden else "")
    ax.set_title(f"{run.label}: lineage, {run.strategy}, {len(edges)} exploits{note}", fontsize=10)
    handles = [Line2D([], [], color="0.6", label="member keeps its weights"),
               Line2D([], [], color="C1", marker=">", label="exploit: donor → receiver (copies weights)"),
               Line2D([], [], color="C3", linewidth=3, label="final winner's ancestry"),
               Line2D([], [], color="C3", marker="*", linestyle="", markersize=12, label="final winner")]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.15), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# -- command line ----------------------------------------------------------------------------------
def _unique_labels(runs: Sequence[Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        seen[run.name] = seen.get(run.name, 0) + 1
    for run in runs:
        run.label = run.name if seen[run.name] == 1 else f"{run.path.parent.name}/{run.name}"


def _tasks_of(runs: Sequence[Run]) -> list[str]:
    return list(dict.fromkeys(r.task for r in runs))


def copy_gifs(runs: Sequence[Run], gif: str | Path | None, out_dir: Path) -> list[tuple[str, str]]:
    """Copy ``--gif`` (as ``winner.gif``) and every run's ``winner.gif`` into ``out_dir``: ``(file, caption)``."""
    found: list[tuple[Path, str, str]] = []
    if gif is not None:
        found.append((Path(gif), "winner.gif", f"the winner playing ({Path(gif).name})"))
    for run in runs:
        if (run.path / "winner.gif").is_file():
            found.append((run.path / "winner.gif", f"winner_{_safe(run.label)}.gif",
                          f"{run.label}: the final winner playing"))
    out = []
    for src, name, caption in found:
        if src.resolve() != (out_dir / name).resolve():
            shutil.copyfile(src, out_dir / name)
        out.append((name, caption))
    return out


def _jsonable(v: Any) -> Any:
    """Dataclasses, tuples and NaN made JSON-ready (NaN -> null)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "__dataclass_fields__"):
        return {k: _jsonable(getattr(v, k)) for k in v.__dataclass_fields__ if k != "method"}
    return v


def task_data(tr: TaskReport) -> dict[str, Any]:
    """One task's comparison for ``report.json``."""
    methods = []
    for e in tr.entries:
        st = tr.stats.get(e.label)
        methods.append({"label": e.label, "method": e.method.label, "kind": e.method.kind, "variant": e.variant,
                        "n": e.n, "failed": e.failed, "missing": e.missing, "samples": _jsonable(e.samples),
                        "runs": [str(r.path) for r in e.method.runs_on(tr.task)], **(_jsonable(st) or {})})
    improvement = [{"method": a, "baseline": b, **(_jsonable(iv) or {})} for (a, b), iv in tr.improvement.items()]
    return {"task": tr.task, "budget": _jsonable(tr.budget), "reference": _jsonable(tr.reference),
            "methods": methods, "improvement": improvement}


def text_summary(tasks: Sequence[TaskReport]) -> str:
    """The method tables for stdout."""
    parts = []
    for tr in tasks:
        budget = re.sub(r"\*\*|`", "", budget_text(tr))
        parts.append(f"{tr.task}: {budget}\n{render_text_table(method_table(tr))}")
    return "\n\n".join(parts)


def _plot_pbt_runs(runs: Sequence[Run], out_dir: Path, plots: dict[str, list[str]]) -> None:
    for run in runs:
        if run.kind != "pbt":
            continue
        try:
            winner_ancestry(run)
        except EvoError as exc:
            print(f"{PROG}: warning: {exc}; no schedule or lineage plot", file=sys.stderr)
            continue
        tag = _safe(run.label)
        plot_schedule(run, out_dir / f"hparams_{tag}.png")
        plot_lineage(run, out_dir / f"lineage_{tag}.png")
        plots.setdefault("winner's hyperparameter schedule", []).append(f"hparams_{tag}.png")
        plots.setdefault("lineage", []).append(f"lineage_{tag}.png")


def load_methods(paths: Sequence[str | Path]) -> tuple[list[Run], list[Method]]:
    """Load run arguments (``DIR`` or ``LABEL=DIR``) and group them into methods."""
    parsed = [parse_run_arg(str(p)) for p in paths]
    runs = [load_run(p) for _, p in parsed]
    _unique_labels(runs)
    return runs, group_methods(runs, [label for label, _ in parsed])


def _make_out_dir(out: str | Path) -> Path:
    out_dir = Path(out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out_dir}: {exc.strerror or exc}") from None
    return out_dir


def write_plots(runs: Sequence[Run], tasks: Sequence[TaskReport], out_dir: Path, reps: int,
                seed: int) -> dict[str, list[str]]:
    plots = {"score vs env steps": ["scores.png"], "run scores and score distributions": ["profile.png"]}
    plot_scores(runs, tasks, out_dir / "scores.png")
    plot_profile(tasks, out_dir / "profile.png", reps, seed)
    _plot_pbt_runs(runs, out_dir, plots)
    return plots


def report_data(runs: Sequence[Run], stats: list[dict[str, Any]], tasks: Sequence[TaskReport],
                across: AcrossTasks | None, reps: int, seed: int) -> dict[str, Any]:
    """Everything ``report.json`` holds, JSON-ready."""
    return _jsonable({
        "budget_env_steps_per_member": tasks[0].budget.steps, "runs": stats,
        "tasks": [task_data(tr) for tr in tasks],
        "across_tasks": None if across is None else {
            "why_not": across.why_not, "scores": {k: v.tolist() for k, v in across.scores.items()},
            "stats": across.stats,
            "improvement": [{"method": a, "baseline": b, **(_jsonable(iv) or {})}
                            for (a, b), iv in across.improvement.items()]},
        "bootstrap": {"reps": reps, "seed": seed, "method": "percentile", "confidence": 0.95},
        "schedules": {r.label: {"ancestry": winner_ancestry(r), "schedule": hparam_schedule(r)}
                      for r in runs if r.kind == "pbt" and _has_winner(r)}})


def make_report(paths: Sequence[str | Path], out: str | Path, budget: int | None = None, reps: int = 2000,
                seed: int = 0, gif: str | Path | None = None, random_episodes: int | None = None) -> dict[str, Any]:
    """Load ``paths`` (run directories or ``LABEL=DIR``), compare their methods and write the plots,
    ``summary.md``, ``index.html`` and ``report.json`` to ``out``. Returns report.json's data plus
    ``text``, the method tables for stdout."""
    if gif is not None and not Path(gif).is_file():
        raise ConfigError(f"--gif {gif}: no such file")
    runs, methods = load_methods(paths)
    tasks = [compare_task(methods, task, budget, reps, seed,
                          task_reference([r for r in runs if r.task == task], random_episodes))
             for task in _tasks_of(runs)]
    across = compare_across(tasks, reps, seed) if len(tasks) > 1 else None
    out_dir = _make_out_dir(out)
    budgets = {tr.task: tr.budget.steps for tr in tasks}
    stats = [run_stats(run, budgets[run.task]) for run in runs]
    blocks = report_blocks(tasks, runs, stats, write_plots(runs, tasks, out_dir, reps, seed), reps, seed, across)
    gifs = copy_gifs(runs, gif, out_dir)
    if gifs:
        at = next(i for i, b in enumerate(blocks) if isinstance(b, Heading) and b.text == "Per run")
        blocks[at:at] = [Heading(2, "The winner"), *(Image(name, caption) for name, caption in gifs)]
    (out_dir / "summary.md").write_text(render_markdown(blocks))
    (out_dir / "index.html").write_text(render_html(blocks))
    data = report_data(runs, stats, tasks, across, reps, seed)
    write_json(out_dir / "report.json", data)
    return {**data, "text": text_summary(tasks)}


def _has_winner(run: Run) -> bool:
    try:
        winner_ancestry(run)
    except EvoError:
        return False
    return True


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Did PBT beat the baseline? Compares methods (groups of evo runs: PBT, baseline, "
                               "replay) at one env-step budget per member: IQM with bootstrap CIs, probability of "
                               "improvement, the random-policy reference, plots, summary.md and index.html.")
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run directory (<log-dir>/<exp-name>), or LABEL=DIR to set its method's label "
                             "(runs with the same label form one method)")
    parser.add_argument("--out", default="report", help="output directory (created if missing)")
    parser.add_argument("--budget", type=_positive, default=None,
                        help="env steps per member to compare at (default: the largest one at which every run "
                             "was evaluated)")
    parser.add_argument("--reps", type=_positive, default=2000, help="bootstrap resamples for the CIs")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap (reproducible CIs)")
    parser.add_argument("--gif", default=None, help="a GIF of the winner playing, shown in index.html "
                                                    "(runs' own winner.gif files are shown too)")
    parser.add_argument("--random-episodes", type=_positive, default=None,
                        help="measure the random-policy reference now with this many episodes (default: the one "
                             "stored in config.json, else the runs' eval_episodes)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        data = make_report(args.runs, args.out, budget=args.budget, reps=args.reps, seed=args.bootstrap_seed,
                           gif=args.gif, random_episodes=args.random_episodes)
    except EvoError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(data["text"])
    print(f"\nreport written to {args.out} (summary.md, index.html, scores.png, profile.png, ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
