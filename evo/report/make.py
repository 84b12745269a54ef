"""The whole report: load the runs, compare their methods per task (and over all tasks), and write the
plots, ``summary.md``, ``index.html`` and ``report.json``."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evo.errors import ConfigError
from evo.records import write_json
from evo.report.blocks import Heading, Image, render_html, render_markdown
from evo.report.compare import TaskReport, compare_across, compare_task, task_reference
from evo.report.figures import plot_profile, plot_scores
from evo.report.fmt import safe_name
from evo.report.methods import Method, group_methods, parse_run_arg
from evo.report.pbt_figures import plot_pbt_runs
from evo.report.report_json import report_data
from evo.report.runs import Run, load_run, run_stats
from evo.report.summary import report_blocks, text_summary


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
            found.append((run.path / "winner.gif", f"winner_{safe_name(run.label)}.gif",
                          f"{run.label}: the final winner playing"))
    out = []
    for src, name, caption in found:
        if src.resolve() != (out_dir / name).resolve():
            shutil.copyfile(src, out_dir / name)
        out.append((name, caption))
    return out


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
    """Every figure into ``out_dir``: title -> its files."""
    plots = {"score vs env steps": ["scores.png"], "run scores and score distributions": ["profile.png"]}
    plot_scores(runs, tasks, out_dir / "scores.png")
    plot_profile(tasks, out_dir / "profile.png", reps, seed)
    plot_pbt_runs(runs, out_dir, plots)
    return plots


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
