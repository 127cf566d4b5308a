"""SB3's logger for a run, also for a run that continues from a checkpoint.

A continued run writes to the same progress.csv and TensorBoard run as before, with
what was logged after the checkpoint cut away, so that no step is logged twice and none
is missing; the values recorded but not yet dumped at the checkpoint are put back.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat, configure
from torch.utils.tensorboard import SummaryWriter

from rlaux.files import cut_csv_after
from rlaux.run_folder import EPISODE_STEPS_HEADER


class PurgingTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard writer, continuing a run: events at or after ``purge_step`` in earlier
    files are discarded by TensorBoard (a ``SessionLog.START`` at that step), so the steps that
    were logged after the checkpoint and are now logged again appear once."""

    def __init__(self, folder: str, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


def continued_csv(path: Path, step: int) -> CSVOutputFormat:
    """SB3's CSV writer appending to ``path``, first cut to the rows logged at or before ``step``."""
    header = cut_csv_after(path, step, "time/total_timesteps")
    fmt = CSVOutputFormat.__new__(CSVOutputFormat)
    fmt.file = open(path, "r+")  # noqa: SIM115 - owned by the logger, closed by it
    fmt.file.seek(0, os.SEEK_END)
    fmt.keys = header
    fmt.separator, fmt.quotechar = ",", '"'
    return fmt


def make_logger(run_dir: Path, *, verbose: int, tensorboard_dir: Path, resume_step: int | None = None) -> Logger:
    """stdout (when ``verbose``), ``run_dir/progress.csv`` and TensorBoard in ``tensorboard_dir``;
    ``resume_step``: continue them from that step instead of starting anew."""
    logger = configure(str(run_dir), ["stdout"] if verbose else [])
    if resume_step is None:
        logger.output_formats.append(CSVOutputFormat(str(run_dir / "progress.csv")))
    else:
        logger.output_formats.append(continued_csv(run_dir / "progress.csv", resume_step))
    tensorboard_dir.mkdir(parents=True, exist_ok=True)
    purge_step = None if resume_step is None else resume_step + 1
    logger.output_formats.append(PurgingTensorBoard(str(tensorboard_dir), purge_step))
    return logger


class EpisodeStepLog(BaseCallback):
    """Appends a row ``step,rank,r,l`` to ``path`` (a run's ``episode_steps.csv``) for each training episode that
    ends: ``step`` is ``num_timesteps`` after the vec-env step that ended it, ``r`` and ``l`` are the Monitor's
    (``info["episode"]``), so the rows are the Monitor files' episodes, each placed on SB3's step axis."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._file: Any = None

    def _on_training_start(self) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._file = open(self.path, "a")  # noqa: SIM115 - open for the whole of training, closed at its end
        if new:
            self._file.write(EPISODE_STEPS_HEADER + "\n")
            self._file.flush()

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        ended = [(rank, infos[rank]["episode"]) for rank in np.flatnonzero(self.locals["dones"])
                 if "episode" in infos[rank]]  # a done without "episode": an Atari life lost, not a game
        if ended:
            rows = [f"{self.num_timesteps},{rank},{episode['r']},{episode['l']}\n" for rank, episode in ended]
            self._file.write("".join(rows))
            self._file.flush()
        return True

    def _on_training_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def logger_pending(logger: Logger) -> dict[str, Any]:
    """The values recorded but not yet dumped (numbers only), JSON friendly."""
    values, counts, excluded, dtypes = {}, {}, {}, {}
    for key, value in logger.name_to_value.items():
        if isinstance(value, (bool, int, float, np.integer, np.floating)):
            values[key] = float(value) if not isinstance(value, (bool, int, np.integer)) else int(value)
            if isinstance(value, np.generic):  # e.g. float32: written to csv with its own repr
                dtypes[key] = value.dtype.name
            counts[key] = int(logger.name_to_count.get(key, 0))
            ex = logger.name_to_excluded.get(key)
            excluded[key] = list(ex) if ex is not None else None
    return {"values": values, "counts": counts, "excluded": excluded, "dtypes": dtypes}


def restore_logger_pending(logger: Logger, pending: Mapping[str, Any]) -> None:
    """Record again what :func:`logger_pending` returned."""
    dtypes = pending.get("dtypes", {})
    for key, value in pending.get("values", {}).items():
        logger.name_to_value[key] = np.dtype(dtypes[key]).type(value) if key in dtypes else value
        logger.name_to_count[key] = pending["counts"].get(key, 0)
        ex = pending["excluded"].get(key)
        logger.name_to_excluded[key] = tuple(ex) if ex is not None else None


__all__ = ["EpisodeStepLog", "PurgingTensorBoard", "continued_csv", "logger_pending", "make_logger",
           "restore_logger_pending"]
