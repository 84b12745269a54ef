"""``report.json``: the numbers of the tables at full precision, each score labelled with the statistic it
is (``"statistic": "iqm"`` or ``"median"``, ...) and its 95 % CI, or ``"ci": null`` with the reason."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from evo.errors import EvoError
from evo.report.compare import AcrossTasks, TaskReport
from evo.report.runs import Run, hparam_schedule, winner_ancestry
from evo.report.stats import MIN_RUNS_FOR_CI, SMALL_N_REASON, Interval, MethodStats, enough_runs

POINT_ESTIMATE = f"point estimate: fewer than {MIN_RUNS_FOR_CI} runs on one side, so no confidence interval"
"""Why a probability of improvement has no CI."""


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


def interval_data(iv: Interval | None) -> dict[str, Any] | None:
    """``{"statistic": ..., "value": ..., "ci": [low, high] or null}``."""
    if iv is None:
        return None
    ci = [iv.low, iv.high] if iv.has_ci else None
    return _jsonable({"statistic": iv.statistic, "value": iv.value, "ci": ci})


def stats_data(st: MethodStats | None) -> dict[str, Any]:
    """A method's statistics: its headline (``statistic``, ``value``, ``ci``) then every number by name.
    Below MIN_RUNS_FOR_CI runs the headline is the median, there is no ``iqm`` and ``note`` says why."""
    if st is None:
        return {"statistic": None, "value": None, "ci": None, "note": "no finite score"}
    out = {**(interval_data(st.headline) or {}), "note": None if st.iqm is not None else SMALL_N_REASON}
    if st.iqm is not None:
        out["iqm"] = interval_data(st.iqm)
    return {**out, "median": interval_data(st.median), "mean": interval_data(st.mean),
            "min": _jsonable(st.low), "max": _jsonable(st.high)}


def improvement_data(method: str, baseline: str, iv: Interval | None, n: int, baseline_n: int) -> dict[str, Any]:
    """P(``method`` > ``baseline``) with both run counts; a point estimate without a CI below MIN_RUNS_FOR_CI."""
    note = None if enough_runs(n, baseline_n) or iv is None else POINT_ESTIMATE
    return {"method": method, "baseline": baseline, "n": n, "baseline_n": baseline_n,
            **(interval_data(iv) or {"statistic": None, "value": None, "ci": None}), "note": note}


def task_data(tr: TaskReport) -> dict[str, Any]:
    """One task's comparison for ``report.json``."""
    methods = []
    for e in tr.entries:
        methods.append({"label": e.label, "method": e.method.label, "kind": e.method.kind, "variant": e.variant,
                        "compute_matched": e.compute_matched, "members_per_run": e.sizes,
                        "selected_on": e.selected_on or None, "unused_seeds": e.unused,
                        "n": e.n, "failed": e.failed, "missing": e.missing, "samples": _jsonable(e.samples),
                        "runs": [str(r.path) for r in e.method.runs_on(tr.task)], **stats_data(tr.stats.get(e.label))})
    n = {e.label: e.n for e in tr.entries}
    improvement = [{**improvement_data(a, b, iv, n[a], n[b]), "compute_matched": tr.entry(a).matches(tr.entry(b))}
                   for (a, b), iv in tr.improvement.items()]
    return {"task": tr.task, "budget": _jsonable(tr.budget), "reference": _jsonable(tr.reference),
            "methods": methods, "improvement": improvement, "too_few_seeds": _jsonable(tr.too_few)}


def _across_data(across: AcrossTasks) -> dict[str, Any]:
    n = {k: int(v.shape[0]) for k, v in across.scores.items()}
    return {"why_not": across.why_not, "scores": {k: v.tolist() for k, v in across.scores.items()},
            "stats": {k: stats_data(st) for k, st in across.stats.items()},
            "improvement": [improvement_data(a, b, iv, n[a], n[b]) for (a, b), iv in across.improvement.items()]}


def report_data(runs: Sequence[Run], stats: list[dict[str, Any]], tasks: Sequence[TaskReport],
                across: AcrossTasks | None, reps: int, seed: int) -> dict[str, Any]:
    """Everything ``report.json`` holds, JSON-ready."""
    return _jsonable({
        "budget_env_steps_per_member": tasks[0].budget.steps, "runs": stats,
        "tasks": [task_data(tr) for tr in tasks],
        "across_tasks": None if across is None else _across_data(across),
        "bootstrap": {"reps": reps, "seed": seed, "method": "percentile", "confidence": 0.95,
                      "min_runs": MIN_RUNS_FOR_CI},
        "schedules": {r.label: {"ancestry": winner_ancestry(r), "schedule": hparam_schedule(r)}
                      for r in runs if r.kind == "pbt" and _has_winner(r)}})


def _has_winner(run: Run) -> bool:
    try:
        winner_ancestry(run)
    except EvoError:
        return False
    return True
