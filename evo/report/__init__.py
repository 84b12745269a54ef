"""Plots, statistics and a Markdown/HTML summary from evo's own records (no TensorBoard needed).

``python -m evo.report RUN [RUN ...] --out DIR`` answers "did PBT beat the baseline?" (given one). A ``RUN``
is a run directory (see :mod:`evo.records` for its layout) or ``LABEL=RUN_DIR`` to name its method.
It writes into ``DIR``:

``summary.md``            per method: runs (n), members per run, median with the range of the run scores, mean,
                          and with 5 or more runs the IQM with a stratified-bootstrap 95 % CI; per baseline also
                          its compute-matched row, the best of N seeds (N: the PBT population size); the
                          probability of improvement over each baseline row (a CI only with 5 or more runs on
                          both sides; marked where not compute-matched); all at one env-step budget per member;
                          the random-policy reference; notes; then a table per run. Without a baseline (or
                          without PBT) the section is "Scores at the budget" and says what it shows
``index.html``            the same tables with every plot (and the winner's GIF), one self-contained page
``scores.png``            score vs env steps per member: per PBT run its best and mean member, per
                          baseline (or replay) run the mean over seeds with a min-max band
``profile.png``           each method's run scores at the budget (IQM and CI, or the median below 5 runs)
                          and its score distribution
``hparams_<run>.png``     per PBT run: the hyperparameters the final winner's ancestors trained
                          with, generation by generation (the schedule :mod:`evo.replay` follows)
``lineage_<run>.png``     per PBT run: who copied whom, with the final winner's ancestry
``report.json``           the numbers of the tables at full precision, each labelled with its statistic

The package, by concern: :mod:`~evo.report.runs` (reading a run directory, the winner's ancestry and
schedule, one run's numbers), :mod:`~evo.report.methods` (runs grouped into methods),
:mod:`~evo.report.samples` (the budget and one score per run), :mod:`~evo.report.matched` (a
baseline's best of N seeds, the compute-matched row), :mod:`~evo.report.stats` (rliable, and
the small-sample rule), :mod:`~evo.report.compare` (one task, several tasks, the random-policy
reference), :mod:`~evo.report.summary` / :mod:`~evo.report.per_run` / :mod:`~evo.report.blocks`
(the document and its Markdown, HTML and text renderings), :mod:`~evo.report.report_json`,
:mod:`~evo.report.figures` / :mod:`~evo.report.pbt_figures`, :mod:`~evo.report.make` (the whole
report) and :mod:`~evo.report.cli`. The pure parts (loading, grouping, budget, statistics, ancestry,
schedule) need neither matplotlib nor MPI, so replay and tests use them directly; nothing here
imports torch or stable-baselines3.
"""

from evo.report.cli import build_parser, main
from evo.report.compare import (
    AcrossTasks,
    Reference,
    TaskReport,
    compare_across,
    compare_task,
    normalised_matrices,
    stored_reference,
    task_reference,
)
from evo.report.make import load_methods, make_report
from evo.report.methods import Method, group_methods, method_settings, parse_run_arg
from evo.report.runs import (
    Run,
    cumulative_wall,
    exploit_edges,
    hparam_schedule,
    load_run,
    run_stats,
    task_name,
    winner_ancestry,
)
from evo.report.samples import Budget, Entry, Sample, build_entries, choose_budget, run_samples
from evo.report.stats import (
    MIN_RUNS_FOR_CI,
    Interval,
    MethodStats,
    aggregate_stats,
    improvement_probability,
    score_profiles,
)

__all__ = [
    "MIN_RUNS_FOR_CI", "AcrossTasks", "Budget", "Entry", "Interval", "Method", "MethodStats", "Reference", "Run",
    "Sample", "TaskReport", "aggregate_stats", "build_entries", "build_parser", "choose_budget", "compare_across",
    "compare_task", "cumulative_wall", "exploit_edges", "group_methods", "hparam_schedule", "improvement_probability",
    "load_methods", "load_run", "main", "make_report", "method_settings", "normalised_matrices", "parse_run_arg",
    "run_samples", "run_stats", "score_profiles", "stored_reference", "task_name", "task_reference",
    "winner_ancestry",
]
