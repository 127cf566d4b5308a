"""Tracking a run with Weights & Biases (``train_agent.py --track``), as rl-zoo3's ``--track`` does.

``wandb.init(..., sync_tensorboard=True)`` before SB3's TensorBoard writer is made: W&B then
syncs every scalar the run logs to TensorBoard (SB3's ``train/*``, ``rollout/*`` and rlaux's
``aux/<task>/*``), so rlaux logs nothing to W&B itself. The W&B run is named after the run
folder, its config is the run's ``config.json`` (plus the command line, as rl-zoo3 adds), and
it is finished when training ends, also on an interrupt, an error or ``SystemExit`` (with that
exit code). ``<run>/wandb_run.json`` records which W&B run tracks the run folder, so that
``--resume`` with ``--track`` continues the same W&B run.

Differences from rl-zoo3: ``monitor_gym`` is off. W&B's gym monitor patches gymnasium's
``RecordVideo.close`` with code that reads attributes gymnasium >= 1.0 no longer has
(``AttributeError: 'RecordVideo' object has no attribute 'enabled'``, wandb issues #9947 and
#10339), which would break ``evaluate --video`` in a tracked process; rlaux records no video
while training anyway. W&B's own settings (``WANDB_MODE=offline``, ``WANDB_DIR``, ``WANDB_API_KEY``,
...) apply as usual.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import stable_baselines3 as sb3

from rlaux.errors import ConfigError, import_optional
from rlaux.files import atomic_write_bytes
from rlaux.run.config import ResolvedRun
from rlaux.run_folder import RunRecord

#: The file in a run folder that names the W&B run tracking it.
WANDB_RUN_FILE = "wandb_run.json"


@dataclass(frozen=True)
class Tracking:
    """Where to track a run on W&B (rl-zoo3's ``--wandb-project-name``, ``--wandb-entity``, ...)."""

    project: str = "sb3"
    entity: str | None = None
    group: str | None = None
    tags: Sequence[str] = field(default_factory=tuple)


def require_wandb() -> ModuleType:
    """The ``wandb`` module, or a ConfigError naming the extra that installs it (``rlaux[wandb]``)."""
    return import_optional("wandb", "--track")


def _flat(record: RunRecord) -> dict[str, Any]:
    """W&B's config: the run's values in one level (the resolved over the request), the request kept under its key,
    so that W&B's filters read ``aux_label``, ``algo``, ``seed`` directly; the code it ran under ``code``."""
    return {**record.request, **record.resolved, "request": dict(record.request), "code": dict(record.code)}


def _previous_run_id(run: ResolvedRun, tracking: Tracking) -> str | None:
    """The id of the W&B run that tracked this run folder before, in the same project and entity."""
    try:
        previous = json.loads((run.run_dir / WANDB_RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(previous, dict) or previous.get("project") != tracking.project \
            or previous.get("entity") != tracking.entity:
        return None
    return previous.get("id")


def _exit_code(err: BaseException) -> int:
    if isinstance(err, SystemExit):
        return err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    return 130 if isinstance(err, KeyboardInterrupt) else 1


@contextmanager
def tracked(run: ResolvedRun, tracking: Tracking | None) -> Iterator[Any]:
    """A W&B run around training ``run`` (nothing when ``tracking`` is None); yields the W&B run.

    Enter it before the run's TensorBoard writer is made: W&B syncs the writers made after ``init``.
    """
    if tracking is None:
        yield None
        return
    wandb = require_wandb()
    previous = _previous_run_id(run, tracking)
    try:
        wandb_run = wandb.init(
            name=run.run_dir.name,
            project=tracking.project,
            entity=tracking.entity,
            group=tracking.group,
            tags=[*tracking.tags, f"v{sb3.__version__}"],
            config={**_flat(run.record()), "command": " ".join(sys.orig_argv)},
            sync_tensorboard=True,  # SB3's and rlaux's TensorBoard scalars
            monitor_gym=False,  # see the module docstring
            save_code=True,
            **({"id": previous, "resume": "allow"} if previous else {}),
        )
    except Exception as err:  # noqa: BLE001 - no API key, no network, a bad entity: one line
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"--track: W&B did not start ({type(err).__name__}: {first}); log in with `wandb login`, "
                          "or track offline with WANDB_MODE=offline") from None
    record = {"id": wandb_run.id, "project": tracking.project, "entity": tracking.entity,
              "name": wandb_run.name, "url": wandb_run.url, "mode": str(wandb_run.settings.mode)}
    atomic_write_bytes(run.run_dir / WANDB_RUN_FILE, (json.dumps(record, indent=2) + "\n").encode())
    exit_code = 0
    try:
        yield wandb_run
    except BaseException as err:
        exit_code = _exit_code(err)
        raise
    finally:
        wandb_run.finish(exit_code=exit_code)


__all__ = ["WANDB_RUN_FILE", "Tracking", "require_wandb", "tracked"]
