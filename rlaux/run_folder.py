"""The run folder: one module knows its layout, and every reader (training, resume, evaluation, the Hub,
compare) goes through it.

    RUN/
      config.json               {"format": 2, "request": the user's flags as given,
                                  "resolved": every value the run used (env spec, algo, aux settings, ...)}
      monitor/<rank>.monitor.csv  SB3 Monitor files (training episodes)
      episode_steps.csv         the env step at which each training episode ended (see below)
      progress.csv              SB3's CSV log (with TensorBoard under tensorboard_log)
      checkpoints/ckpt-<step>-<n>/  model.zip, state.json, ... (rlaux.run.checkpoint)
      evaluations.npz           SB3's EvalCallback (--eval-freq)
      final_model.zip · best_model.zip · interrupted_model.zip
      evaluation.json · videos/ rlaux evaluate's output
      attempt-<k>/              what an earlier attempt wrote (--resume RUN --restart)

``episode_steps.csv`` (``step,rank,r,l``, one row per finished training episode, in the order they ended)
places each episode at SB3's ``num_timesteps`` after the vec-env step that ended it: the env step a
learning curve needs. Monitor files cannot say it (they hold lengths and wall times; summing the lengths of
finished episodes, SB3's ``ts2xy``, leaves out the steps of every episode still running then), and their
lengths can count steps that are not the agent's (Atari's reset steps). Runs of rlaux before this file
have Monitor files only.

``config.json`` of format 1 (rlaux before the request and the resolved values were kept apart: one flat
object, the user's flags perhaps under ``request``) is read too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlaux.errors import ConfigError
from rlaux.files import atomic_write_bytes, cut_csv_after

CONFIG_FILE = "config.json"
CONFIG_FORMAT = 2
CHECKPOINTS = "checkpoints"
EPISODE_STEPS_FILE = "episode_steps.csv"
EPISODE_STEPS_HEADER = "step,rank,r,l"
_CHECKPOINT_NAME = re.compile(r"^ckpt-(\d{12})-(\d{6})$")
#: The saved models of a run, by the name ``evaluate --model`` gives them.
MODEL_FILES = {"best": "best_model.zip", "final": "final_model.zip", "interrupted": "interrupted_model.zip"}


@dataclass(frozen=True)
class RunRecord:
    """A run's ``config.json``: what the user asked for (``request``), what the run used (``resolved``) and the
    code it ran (``code``: :func:`rlaux.provenance.code_version`; empty in runs written before rlaux kept it)."""

    request: Mapping[str, Any] = field(default_factory=dict)
    resolved: Mapping[str, Any] = field(default_factory=dict)
    code: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A resolved value, else the user's (``env``, ``game`` and ``seed`` are the user's)."""
        if key in self.resolved:
            return self.resolved[key]
        return self.request.get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return key in self.resolved or key in self.request

    def to_json(self) -> dict[str, Any]:
        code = {"code": dict(self.code)} if self.code else {}
        return {"format": CONFIG_FORMAT, "request": dict(self.request), "resolved": dict(self.resolved), **code}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Format 2, or format 1 (flat: resolved values over the flags; the flags alone under ``request``)."""
        if data.get("format") == CONFIG_FORMAT:
            request, resolved = data.get("request"), data.get("resolved")
            if not isinstance(request, Mapping) or not isinstance(resolved, Mapping):
                raise ValueError("config.json of format 2 needs 'request' and 'resolved' objects")
            code = data.get("code")
            return cls(dict(request), dict(resolved), dict(code) if isinstance(code, Mapping) else {})
        flat = {k: v for k, v in data.items() if k != "request"}
        request = data["request"] if isinstance(data.get("request"), Mapping) else flat
        return cls(dict(request), flat)


_MISSING = object()


class RunFolder:
    """The paths of one run folder, and its ``config.json`` read and written."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    config_file = property(lambda self: self.path / CONFIG_FILE)
    monitor_dir = property(lambda self: self.path / "monitor")
    episode_steps_csv = property(lambda self: self.path / EPISODE_STEPS_FILE)
    progress_csv = property(lambda self: self.path / "progress.csv")
    checkpoints_dir = property(lambda self: self.path / CHECKPOINTS)
    evaluations = property(lambda self: self.path / "evaluations.npz")
    evaluation_json = property(lambda self: self.path / "evaluation.json")
    videos_dir = property(lambda self: self.path / "videos")

    def model_file(self, which: str) -> Path:
        """``best``, ``final`` or ``interrupted`` (:data:`MODEL_FILES`)."""
        return self.path / MODEL_FILES[which]

    @property
    def finished(self) -> bool:
        """Whether training ended normally (the final model is written last)."""
        return self.model_file("final").is_file()

    def is_run(self) -> bool:
        return self.config_file.is_file()

    def checkpoint_dirs(self) -> list[Path]:
        """Finished checkpoint folders, oldest first."""
        root = self.checkpoints_dir
        if not root.is_dir():
            return []
        return sorted(p for p in root.iterdir() if p.is_dir() and _CHECKPOINT_NAME.match(p.name))

    def attempts(self) -> list[Path]:
        """Folders of earlier attempts (``attempt-<k>``), oldest first."""
        return sorted((p for p in self.path.glob("attempt-*") if p.is_dir()), key=lambda p: int(p.name[8:] or 0))

    def read(self) -> RunRecord:
        """The run's config.json; a missing or foreign file is a one-line ConfigError naming it."""
        path = self.config_file
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{self.path} is not a run folder: it has no {CONFIG_FILE}") from None
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: unreadable ({type(err).__name__}: {err})") from None
        try:
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return RunRecord.from_json(data)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{path}: not a {CONFIG_FILE} written by rlaux ({err})") from None

    def write(self, record: RunRecord) -> None:
        """Write config.json atomically (the folder is made if needed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.config_file, (json.dumps(record.to_json(), indent=2, default=str) + "\n").encode())

    @classmethod
    def of_model(cls, model_path: str | os.PathLike) -> RunFolder | None:
        """The run folder a model file lies in (``RUN/x.zip`` or ``RUN/checkpoints/<ckpt>/model.zip``), if any."""
        model_path = Path(model_path)
        candidates = [model_path.parent]
        if len(model_path.parents) > 2 and model_path.parents[1].name == CHECKPOINTS:
            candidates.append(model_path.parents[2])
        return next((cls(folder) for folder in candidates if cls(folder).is_run()), None)

    @classmethod
    def find(cls, roots: Iterable[str | os.PathLike]) -> list[RunFolder]:
        """Every run folder under ``roots`` (recursively, roots included), sorted by resolved path."""
        found: set[Path] = set()
        for root in roots:
            root = Path(root)
            if not root.exists():
                raise ConfigError(f"results folder {str(root)!r} does not exist")
            if (root / CONFIG_FILE).is_file():
                found.add(root.resolve())
            for config in root.rglob(CONFIG_FILE):
                found.add(config.parent.resolve())
        return [cls(p) for p in sorted(found)]


def _complete_rows(path: Path) -> list[str]:
    """The complete data lines of an ``episode_steps.csv`` (a last line without its newline, from a run that was cut
    off while writing it, is not a row)."""
    lines = path.read_text().split("\n")[:-1]
    if not lines or lines[0] != EPISODE_STEPS_HEADER:
        raise ValueError(f"{path.name}: first line is not {EPISODE_STEPS_HEADER!r}")
    return lines[1:]


def read_episode_steps(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(step, rank, r)`` of every finished episode in ``episode_steps.csv``, ordered by step then rank:
    ``int64 [n]``, ``int64 [n]``, ``float64 [n]``. ValueError naming what is wrong."""
    rows = _complete_rows(Path(path))
    try:
        table = np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2).reshape(-1, 4)
    except ValueError as error:
        raise ValueError(f"{Path(path).name}: a row is not four numbers ({error})") from None
    steps, ranks = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    order = np.lexsort((ranks, steps))
    return steps[order], ranks[order], table[order, 2]


def rewind_episode_steps(path: str | os.PathLike, step: int) -> None:
    """Keep the episodes that ended by ``step`` (a checkpoint's), before a resumed run appends anew."""
    if Path(path).is_file():
        cut_csv_after(Path(path), step, "step")


__all__ = [
    "CHECKPOINTS",
    "CONFIG_FILE",
    "CONFIG_FORMAT",
    "EPISODE_STEPS_FILE",
    "EPISODE_STEPS_HEADER",
    "MODEL_FILES",
    "RunFolder",
    "RunRecord",
    "read_episode_steps",
    "rewind_episode_steps",
]
