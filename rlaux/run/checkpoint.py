"""Checkpoints that let a run continue exactly where it stopped.

Layout, under the run folder::

    checkpoints/
        ckpt-000000004096-000002/     one folder per checkpoint: ckpt-<num_timesteps>-<sequence>
            model.zip                 SB3 model file: policy + optimizer state dicts, the counters
                                      SB3 keeps (num_timesteps, _last_obs, ep_info_buffer, ...),
                                      the model's ``iterations`` and its ``env_state`` (see
                                      ``rlaux.run.env_state``); the only pickled file
            state.json                format version, step, spaces, RNG states, counters, the pending
                                      logger values, Monitor row counts, and the size and sha256 of
                                      every other file (a truncated file is detected)
            tasks.pt                  each task's extra state (``AuxTask.state_dict``), tensors only,
                                      read with ``torch.load(weights_only=True)``
            rollout.pt                what the next rollout continues from beyond SB3's ``_last_obs``
                                      (``rollout_state()``: the LSTM states of ppo_lstm, which
                                      sb3-contrib leaves out of its model file), tensors only; only
                                      for models that have such state
            replay.npz                the auxiliary replay (only with ``--save-replay``), numpy arrays
                                      only, read with ``np.load(allow_pickle=False)``
        .tmp-...                      a checkpoint being written (removed on the next save)

When: only at the end of a rollout + train iteration (:class:`PeriodicCheckpoint` acts on
``on_rollout_start`` of the next iteration; a stop requested by a signal is taken there too),
so that a resumed run starts a fresh rollout from exactly the state an uninterrupted run
had at that point.

Atomicity: a checkpoint is written into a temporary folder, every file is fsynced, the
folder is fsynced, renamed to its final name, and the parent folder fsynced. A kill at any
moment leaves either the old set of checkpoints or the old set plus the new one; old ones
are pruned (keeping the newest ``keep``) only after the new one is in place.

Env state: captured for a ``DummyVecEnv`` only. Where it cannot be restored, the resumed
run resets its envs with seed ``seed + num_timesteps`` (new episodes, not a replay of the
first ones) and says so.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from rlaux import __version__
from rlaux.algorithms import ALGORITHMS, AuxAlgorithmMixin
from rlaux.errors import ConfigError
from rlaux.files import fsync_dir, fsync_file, sha256_of
from rlaux.run.env_state import capture_env_state, monitor_rows, restore_env_state, rng_state, set_rng_state
from rlaux.run.logs import logger_pending, restore_logger_pending
from rlaux.run_folder import CHECKPOINTS, RunFolder

FORMAT = "rlaux-checkpoint"
#: 2: the model's iteration count and env state are its public ``iterations`` and ``env_state``.
FORMAT_VERSION = 2


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: truncated, another format version, another env."""


# --------------------------------------------------------------------------- save


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoint folders of a run, oldest first (``rlaux.run_folder.RunFolder.checkpoint_dirs``)."""
    return RunFolder(run_dir).checkpoint_dirs()


def _spaces(model: Any) -> dict[str, str]:
    return {"observation_space": repr(model.observation_space), "action_space": repr(model.action_space)}


def save_checkpoint(
    model: AuxAlgorithmMixin,
    run_dir: Path,
    *,
    keep: int = 3,
    save_replay: bool = False,
    reason: str = "periodic",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint of ``model`` under ``run_dir/checkpoints`` atomically; prune to ``keep``."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a kill during an earlier save
        shutil.rmtree(stale, ignore_errors=True)
    existing = checkpoint_dirs(run_dir)
    seq = int(existing[-1].name.rsplit("-", 1)[1]) + 1 if existing else 0  # ckpt-<step>-<seq>
    name = f"ckpt-{int(model.num_timesteps):012d}-{seq:06d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()

    model.env_state = capture_env_state(model.env) if model.env is not None else None
    env_state_saved = model.env_state is not None
    try:
        model.save(tmp / "model.zip", include=["env_state"])
    finally:
        model.env_state = None

    th.save({task.name: task.state_dict() for task in model.aux_tasks}, tmp / "tasks.pt")
    rollout = model.rollout_state()
    if rollout:
        th.save(rollout, tmp / "rollout.pt")
    replay = model.aux_replay
    if save_replay and replay is not None:
        with open(tmp / "replay.npz", "wb") as f:
            np.savez(f, **replay.arrays())
    guard = model.update_guard
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rlaux_version": __version__,
        "algo": model.algo_name,
        "num_timesteps": int(model.num_timesteps),
        "reason": reason,
        "n_envs": int(model.n_envs),
        "spaces": _spaces(model),
        "env_state_saved": env_state_saved,
        "rng": rng_state(),
        "replay_rng": None if replay is None else replay.rng.bit_generator.state,
        "replay_saved": bool(save_replay and replay is not None),
        "skipped_updates": None if guard is None else guard.state(),
        "iterations": int(model.iterations),
        "logger_pending": logger_pending(model.logger) if getattr(model, "_logger", None) is not None else {},
        "monitor_rows": monitor_rows(Path(run_dir) / "monitor"),
        **dict(extra or {}),
    }
    files = {}
    for path in sorted(tmp.iterdir()):
        fsync_file(path)
        files[path.name] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    state["files"] = files
    with open(tmp / "state.json", "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    final = root / name
    os.replace(tmp, final)
    fsync_dir(root)
    prune(run_dir, keep)
    return final


def prune(run_dir: Path, keep: int) -> None:
    """Remove all but the newest ``keep`` checkpoints (0: keep all)."""
    if keep <= 0:
        return
    for old in checkpoint_dirs(run_dir)[:-keep]:
        trash = old.with_name(f".tmp-trash-{old.name}")
        os.replace(old, trash)  # atomic: the folder is either whole or gone from the list
        shutil.rmtree(trash, ignore_errors=True)
    fsync_dir(Path(run_dir) / CHECKPOINTS)


# --------------------------------------------------------------------------- read


def read_state(path: Path) -> dict[str, Any]:
    """Check a checkpoint folder (format, version, every file whole) and return its state.json."""
    path = Path(path)
    state_file = path / "state.json"
    if not state_file.is_file():
        raise CheckpointError(f"checkpoint {path}: no state.json (not a checkpoint, or written only in part)")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {state_file}: unreadable or truncated JSON ({err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {state_file}: not an rlaux checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {state_file}: format version {state.get('format_version')} (written by rlaux "
            f"{state.get('rlaux_version')}), this rlaux reads version {FORMAT_VERSION}"
        )
    for name, meta in state.get("files", {}).items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint {file}: missing")
        size = file.stat().st_size
        if size != meta["size"]:
            raise CheckpointError(f"checkpoint {file}: truncated or changed ({size} bytes, expected {meta['size']})")
        if sha256_of(file) != meta["sha256"]:
            raise CheckpointError(f"checkpoint {file}: corrupt (sha256 differs from the one recorded)")
    if "model.zip" not in state.get("files", {}):
        raise CheckpointError(f"checkpoint {path}: state.json lists no model.zip")
    return state


def latest_checkpoint(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint of a run that passes ``read_state``; older ones are tried when it does not."""
    candidates = checkpoint_dirs(run_dir)
    if not candidates:
        raise CheckpointError(f"{Path(run_dir) / CHECKPOINTS}: no checkpoint to resume from")
    errors = []
    for path in reversed(candidates):
        try:
            return path, read_state(path)
        except CheckpointError as err:
            errors.append(str(err))
            print(f"warning: skipping {err}", file=sys.stderr)
    raise CheckpointError(f"no valid checkpoint in {Path(run_dir) / CHECKPOINTS}: {errors[0]}")


def load_checkpoint(
    path: Path,
    env: VecEnv,
    *,
    device: str = "auto",
    state: dict[str, Any] | None = None,
    logger: Logger | None = None,
) -> AuxAlgorithmMixin:
    """Rebuild the model of a checkpoint on ``env``, with everything a run needs to continue.

    Restores: model and optimizer, SB3's counters and the model's ``iterations``, task states, the
    rollout state (LSTM states),
    the replay (when saved), the env state (DummyVecEnv; else the envs are reset with seed
    ``seed + num_timesteps``), the update guard's count and, last of all, the RNG states.
    ``state``: the checkpoint's ``read_state``, if already read. ``logger``: given, the model
    logs to it and the values recorded but not dumped at the checkpoint are put back into it.
    """
    path = Path(path)
    state = read_state(path) if state is None else state
    algo = state.get("algo")
    if algo not in ALGORITHMS:
        raise CheckpointError(f"checkpoint {path}: algorithm {algo!r} is not one of {', '.join(ALGORITHMS)}")
    want = {"observation_space": repr(env.observation_space), "action_space": repr(env.action_space)}
    for key, value in want.items():
        if state["spaces"].get(key) != value:
            raise CheckpointError(
                f"checkpoint {path / 'model.zip'}: made for {key} {state['spaces'].get(key)}, but the env has {value}"
            )
    if state.get("n_envs") != env.num_envs:
        raise CheckpointError(f"checkpoint {path}: made with {state.get('n_envs')} envs, the env has {env.num_envs}")
    try:
        model = ALGORITHMS[algo].load(path / "model.zip", env=env, device=device, force_reset=False)
    except (ValueError, KeyError, OSError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint {path / 'model.zip'}: cannot be loaded ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from None
    try:
        tasks = th.load(path / "tasks.pt", weights_only=True) if (path / "tasks.pt").is_file() else {}
    except Exception as err:  # noqa: BLE001 - unpickling errors of all kinds
        first = str(err).splitlines()[0] if str(err) else ""
        raise CheckpointError(f"checkpoint {path / 'tasks.pt'}: cannot be read ({type(err).__name__}: {first})") from None
    for task in model.aux_tasks:
        if task.name in tasks:
            task.load_state_dict(tasks[task.name])
    if model.rollout_state():
        rollout_file = path / "rollout.pt"
        if "rollout.pt" not in state.get("files", {}):
            raise CheckpointError(f"checkpoint {path}: a {algo} model needs rollout.pt (its LSTM states), which is missing")
        try:
            model.load_rollout_state(th.load(rollout_file, weights_only=True))
        except Exception as err:  # noqa: BLE001 - unpickling and shape errors of all kinds
            first = str(err).splitlines()[0] if str(err) else ""
            raise CheckpointError(f"checkpoint {rollout_file}: cannot be used ({type(err).__name__}: {first})") from None

    env_state, model.env_state = model.env_state, None
    if not restore_env_state(env, env_state):
        seed = (model.seed or 0) + int(model.num_timesteps)
        print(f"note: the env state could not be restored ({'SubprocVecEnv' if env_state is None else 'structure differs'});"
              f" resuming with freshly reset envs, seed {seed}", file=sys.stderr)
        env.seed(seed)
        model._last_obs = None  # learn() resets the env
    if model.needs_replay:
        model.ensure_replay()
        replay_file = path / "replay.npz"
        if state.get("replay_saved") and replay_file.is_file():
            try:
                with np.load(replay_file, allow_pickle=False) as data:
                    model.aux_replay.load_arrays(dict(data))
            except (ValueError, OSError) as err:
                raise CheckpointError(f"checkpoint {replay_file}: {err}") from None
        if state.get("replay_rng") is not None:
            model.aux_replay.rng.bit_generator.state = state["replay_rng"]
    guard = model.update_guard
    if guard is not None and state.get("skipped_updates"):
        guard.load_state(state["skipped_updates"])
    if logger is not None:
        model.set_logger(logger)
        restore_logger_pending(logger, state.get("logger_pending", {}))
    set_rng_state(state["rng"])
    return model


# --------------------------------------------------------------------------- callback


class PeriodicCheckpoint(BaseCallback):
    """Checkpoints every ``save_freq`` env steps (0: only when :meth:`save` is called), at the end
    of a rollout + train iteration.

    It acts in ``on_rollout_start``: the previous iteration's ``train()`` has finished and
    the next rollout has not touched any state yet.
    """

    def __init__(self, run_dir: Path, save_freq: int, keep: int = 3, save_replay: bool = False,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.save_freq = save_freq
        self.keep = keep
        self.save_replay = save_replay
        self.extra = dict(extra or {})
        self.last_saved: int | None = None
        self.next_save: int | None = None

    def _on_training_start(self) -> None:
        steps = self.model.num_timesteps
        self.last_saved = steps
        self.next_save = (steps // self.save_freq + 1) * self.save_freq if self.save_freq else None

    def _on_rollout_start(self) -> None:
        if self.next_save is not None and self.model.num_timesteps >= self.next_save:
            self.save("periodic")

    def save(self, reason: str) -> Path:
        """A checkpoint now; ``reason`` goes into its state.json (periodic, signal, non_finite)."""
        path = save_checkpoint(self.model, self.run_dir, keep=self.keep, save_replay=self.save_replay,
                               reason=reason, extra=self.extra)
        steps = self.model.num_timesteps
        self.last_saved = steps
        if self.save_freq:
            self.next_save = (steps // self.save_freq + 1) * self.save_freq
        return path

    def _on_step(self) -> bool:
        return True


__all__ = [
    "CHECKPOINTS",
    "FORMAT_VERSION",
    "CheckpointError",
    "PeriodicCheckpoint",
    "checkpoint_dirs",
    "latest_checkpoint",
    "load_checkpoint",
    "prune",
    "read_state",
    "save_checkpoint",
]
