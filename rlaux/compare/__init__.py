"""Compare sample efficiency of variants: read runs, aggregate with rliable, plot, report, sweep.

Submodules: :mod:`~rlaux.compare.runs` (a run as compare reads it), :mod:`~rlaux.compare.results`
(run folders -> learning curves), :mod:`~rlaux.compare.plain_logs` (a study's episodes.csv.gz, other
tools' logs through manifest.csv), :mod:`~rlaux.compare.stats` (IQM, bootstrap CIs, normalisation,
sample efficiency, the threshold ladder), :mod:`~rlaux.compare.significance` (exact p-values, Holm),
:mod:`~rlaux.compare.claims` (comparisons and verdicts, what a report may claim),
:mod:`~rlaux.compare.markdown` (number and table formats),
:mod:`~rlaux.compare.plots` (PNG figures), :mod:`~rlaux.compare.report` (Markdown report),
:mod:`~rlaux.compare.sweep` (run a grid of trainings), :mod:`~rlaux.compare.study` (plan a
study, run its sweep with progress lines, report and summarise; what ``train_agent.py
compare`` calls). Names below are imported lazily so
that ``import rlaux.compare`` stays cheap (rliable and matplotlib load on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_report": "rlaux.compare.report",
    "load_runs": "rlaux.compare.results",
    "curves_frame": "rlaux.compare.results",
    "write_curves_csv": "rlaux.compare.results",
    "write_episodes": "rlaux.compare.plain_logs",
    "comparisons": "rlaux.compare.claims",
    "verdict_lines": "rlaux.compare.claims",
    "run_sweep": "rlaux.compare.sweep",
    "SweepGrid": "rlaux.compare.sweep",
    "SweepJob": "rlaux.compare.sweep",
    "build_train_command": "rlaux.compare.sweep",
    "plan_study": "rlaux.compare.study",
    "run_study": "rlaux.compare.study",
    "rebuild_report": "rlaux.compare.study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlaux.compare' has no attribute {name!r}")
