"""Reading a run directory's records (see :mod:`evo.records` for its layout), the final winner's
ancestry and schedule, and one run's numbers at a budget (the per-run table).

Ancestry: the final winner is generation ``G-1``'s ``best_member`` (the member selection ranks
first). Walking back, if the ancestor ``a[g+1]`` received weights in generation ``g``'s exploit
(a ``lineage.jsonl`` entry with that generation and receiver), then ``a[g]`` is its donor,
otherwise ``a[g] = a[g+1]``. Its schedule is the ``hp_*`` columns of ``members.csv`` at
``(g, a[g])``: the hyperparameters that trained the winner's weights in generation ``g``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evo.errors import ConfigError
from evo.records import read_csv, read_jsonl

PROG = "python -m evo.report"
"""How the report's errors and warnings begin."""

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


def task_name(cfg: Mapping[str, Any]) -> str:
    """A short name of a run's env: ``CartPole-v1``, ``bigfish (easy, 200 levels from 0)``."""
    env = str(cfg.get("env_id", "?"))
    from evo.envs import procgen_game

    if procgen_game(env) is None:
        return env
    levels = int(cfg.get("num_levels", 0) or 0)
    where = f", {levels} levels from {cfg.get('start_level', 0)}" if levels else ", all levels"
    return f"{env} ({cfg.get('distribution_mode', 'easy')}{where})"


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


# -- one run's numbers at a budget (pure) ---------------------------------------------------
def finite(values: Sequence[Any]) -> list[float]:
    """The finite numbers among ``values`` (None and NaN dropped), as floats."""
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
    scores = finite([r["score"] for r in rows])
    tests = finite([r.get("test_score") for r in rows])
    per_gen_best = {}
    for r in within:
        s = finite([m["score"] for m in run.rows_at(r["generation"])])
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
