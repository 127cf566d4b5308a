"""A run as ``rlaux.compare`` reads it, whatever it was read from (a run folder, a study's episodes table,
another tool's log): its key, budget and episodes."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: :attr:`Run.step_axis` values.
ENV_STEP_AXIS = "env"
FINISHED_STEPS_AXIS = "finished"

#: Joins an algorithm to a variant's label where runs of several algorithms are compared: ``ppo_lstm:none``.
ALGO_SEPARATOR = ":"


def with_algorithm(algo: str, label: str) -> str:
    """``"<algo>:<label>"``: a variant's name in a comparison of several algorithms."""
    return f"{algo or 'unknown'}{ALGO_SEPARATOR}{label}"


def split_algorithm(label: str) -> tuple[str | None, str]:
    """``"ppo_lstm:none"`` -> ``("ppo_lstm", "none")``; a label without an algorithm -> ``(None, label)``.

    Only a leading word counts as the algorithm: a weighting's colons (``reward_pred@linear:1:0``) do not."""
    algo, sep, rest = label.partition(ALGO_SEPARATOR)
    if sep and re.fullmatch(r"\w+", algo):
        return algo, rest
    return None, label


@dataclass
class Run:
    """One training run: its key, its budget and its raw episodes (end step, return)."""

    run_dir: Path
    env: str
    family: str
    game: str | None
    variant: str
    seed: int
    budget: int
    episode_steps: np.ndarray
    episode_returns: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)
    finished: bool = True
    eval_steps: np.ndarray | None = None
    eval_returns: np.ndarray | None = None
    eval_warning: str | None = None
    algo: str = ""  #: the config's ``algo`` ("" if it names none)
    #: From the run's progress.csv, where it has one: wall seconds (``time/time_elapsed``) and optimizer steps
    #: (``train/n_updates``) at its last logged row; None where not logged (plain logs, other tools).
    wall_seconds: float | None = None
    optimizer_steps: int | None = None
    #: The code it trained with (:func:`rlaux.provenance.code_label`, e.g. ``4d027d3``); None where not recorded.
    code: str | None = None
    #: What :attr:`episode_steps` measures: :data:`ENV_STEP_AXIS`, the env step at which each episode ended (a run's
    #: ``episode_steps.csv``, other tools' step columns), or :data:`FINISHED_STEPS_AXIS`, the summed lengths of the
    #: episodes finished so far (SB3's ``ts2xy`` over Monitor files: rlaux runs and tables from before
    #: ``episode_steps.csv``), which trails the env step by the steps of the episodes still running.
    step_axis: str = ENV_STEP_AXIS

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.env, self.variant, self.seed)


@dataclass
class LoadedRuns:
    """Runs that could be read, and one line per run folder that was left out."""

    runs: list[Run]
    warnings: list[str]


def short_dir(run_dir: str | os.PathLike, parts: int = 3) -> str:
    """A folder as reports name it: its last ``parts`` path parts, so that no machine's absolute path
    lands in a committed report."""
    return ".../" + Path(*Path(run_dir).parts[-parts:]).as_posix()



__all__ = ["ALGO_SEPARATOR", "ENV_STEP_AXIS", "FINISHED_STEPS_AXIS", "LoadedRuns", "Run", "short_dir", "split_algorithm",
           "with_algorithm"]
