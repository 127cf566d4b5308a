"""Checkpoints that let a run continue exactly where it stopped.

Layout, under the run folder::

    checkpoints/
        ckpt-000000004096-000002/     one folder per checkpoint: ckpt-<num_timesteps>-<sequence>
            model.zip                 SB3 model file: policy + optimizer state dicts, the counters
                                      SB3 keeps (num_timesteps, _last_obs, ep_info_buffer, ...),
                                      and the env state (see below); the only pickled file
            state.json                format version, step, spaces, RNG states, counters, the pending
                                      logger values, Monitor row counts, and the size and sha256 of
                                      every other file (a truncated file is detected)
            tasks.pt                  each task's extra state (``AuxTask.state_dict``), tensors only,
                                      read with ``torch.load(weights_only=True)``
            replay.npz                the auxiliary replay (only with ``--save-replay``), numpy arrays
                                      only, read with ``np.load(allow_pickle=False)``
        .tmp-...                      a checkpoint being written (removed on the next save)

When: only at the end of a rollout + train iteration (``CheckpointCallback`` acts on
``on_rollout_start`` of the next iteration; a stop by signal is taken there too),
so that a resumed run starts a fresh rollout from exactly the state an
uninterrupted run had at that point.

Atomicity: a checkpoint is written into a temporary folder, every file is
fsynced, the folder is fsynced, renamed to its final name, and the parent folder
fsynced. A kill at any moment leaves either the old set of checkpoints or the old
set plus the new one; old ones are pruned (keeping the newest ``keep``) only after
the new one is in place.

Env state: it cannot be saved in general (a ``SubprocVecEnv`` hides its envs in
other processes; emulators hold native state). For a ``DummyVecEnv`` the state of
every wrapper layer of every env, and of every ``VecEnvWrapper`` around it, is
captured best-effort: each attribute that deep-copies is kept, except links to
the inner env, spaces, renderers and open files (``copy.deepcopy`` of the
attribute; e.g. CartPole's ``state`` and ``np_random``, MinAtar's game with its own
``numpy.random.RandomState``, ``TimeLimit``'s step count, ``Monitor``'s episode in
progress, ``VecFrameStack``'s stack). It travels inside ``model.zip``. Where it
cannot be restored, the resumed run resets its envs with seed ``seed +
num_timesteps`` (new episodes, not a replay of the first ones) and says so.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from rlaux.errors import ConfigError

FORMAT = "rlaux-checkpoint"
FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
_NAME = re.compile(r"^ckpt-(\d{12})-(\d{6})$")
ENV_STATE_ATTR = "_rlaux_env_state"
# Attributes never captured from an env layer: links, spaces, rendering, files.
_SKIP_ATTRS = {
    "env", "venv", "envs", "results_writer", "_action_space", "_observation_space", "action_space",
    "observation_space", "single_action_space", "single_observation_space", "spec", "_cached_spec",
    "_metadata", "metadata", "render_mode", "window", "screen", "clock", "viewer", "renderer", "surf",
    "_saved_kwargs", "t_start", "closed", "close_called",
}


class CheckpointError(ConfigError):
    """A checkpoint that cannot be used: truncated, another format version, another env."""


# --------------------------------------------------------------------------- fsync helpers


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- RNG states


def rng_state() -> dict[str, Any]:
    """The global RNG states (numpy, torch CPU and CUDA, python ``random``), JSON friendly."""
    np_state = np.random.get_state(legacy=False)
    np_state = {**np_state, "state": {"key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"])}}
    version, internal, gauss = random.getstate()
    state = {
        "numpy": np_state,
        "python": [version, list(internal), gauss],
        "torch": th.get_rng_state().tolist(),
    }
    if th.cuda.is_available() and th.cuda.is_initialized():
        state["torch_cuda"] = [s.tolist() for s in th.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": np.asarray(np_state["state"]["key"], dtype=np.uint32), "pos": np_state["state"]["pos"]}
    np.random.set_state(np_state)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    th.set_rng_state(th.tensor(state["torch"], dtype=th.uint8))
    if "torch_cuda" in state and th.cuda.is_available():
        cuda = state["torch_cuda"]
        if len(cuda) == th.cuda.device_count():
            th.cuda.set_rng_state_all([th.tensor(s, dtype=th.uint8) for s in cuda])


# --------------------------------------------------------------------------- env state


def _layer_state(obj: Any) -> dict[str, Any]:
    out = {}
    for key, value in vars(obj).items():
        if key in _SKIP_ATTRS or callable(value) and not hasattr(value, "__dict__"):
            continue
        try:
            out[key] = copy.deepcopy(value)
        except Exception:  # noqa: BLE001 - best effort: what does not copy is left out
            continue
    return out


def _env_layers(env: Any) -> list[Any]:
    layers = [env]
    while hasattr(env, "env") and env.env is not env:
        env = env.env
        layers.append(env)
    return layers


def capture_env_state(venv: VecEnv) -> dict[str, Any] | None:
    """Best-effort copy of the state of a DummyVecEnv's envs and its VecEnv wrappers; None if unreachable."""
    wrappers = []
    inner = venv
    while isinstance(inner, VecEnvWrapper):
        wrappers.append(inner)
        inner = inner.venv
    if not isinstance(inner, DummyVecEnv):
        return None
    return {
        "vec_wrappers": [[type(w).__name__, _layer_state(w)] for w in wrappers],
        "dummy": _layer_state(inner),
        "envs": [[[type(layer).__name__, _layer_state(layer)] for layer in _env_layers(env)] for env in inner.envs],
    }


def restore_env_state(venv: VecEnv, state: Mapping[str, Any] | None) -> bool:
    """Put a ``capture_env_state`` copy back; False (nothing changed) if the env's structure differs."""
    if not state:
        return False
    wrappers = []
    inner = venv
    while isinstance(inner, VecEnvWrapper):
        wrappers.append(inner)
        inner = inner.venv
    if not isinstance(inner, DummyVecEnv) or len(inner.envs) != len(state["envs"]):
        return False
    if [type(w).__name__ for w in wrappers] != [name for name, _ in state["vec_wrappers"]]:
        return False
    env_layers = [_env_layers(env) for env in inner.envs]
    for layers, saved in zip(env_layers, state["envs"], strict=True):
        if [type(layer).__name__ for layer in layers] != [name for name, _ in saved]:
            return False
    for w, (_, attrs) in zip(wrappers, state["vec_wrappers"], strict=True):
        vars(w).update(copy.deepcopy(attrs))
    vars(inner).update(copy.deepcopy(state["dummy"]))
    for layers, saved in zip(env_layers, state["envs"], strict=True):
        for layer, (_, attrs) in zip(layers, saved, strict=True):
            vars(layer).update(copy.deepcopy(attrs))
    return True


# --------------------------------------------------------------------------- monitor files


def monitor_rows(monitor_dir: Path) -> dict[str, int]:
    """Data rows (finished episodes) of each Monitor csv in ``monitor_dir``."""
    out = {}
    if monitor_dir.is_dir():
        for path in sorted(monitor_dir.glob("*monitor.csv")):
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
            complete = [line for line in lines[:-1]]  # a last line without newline is unfinished
            out[path.name] = max(len(complete) - 2, 0)  # '#{json}' and the csv header
    return out


def rewind_monitor_files(monitor_dir: Path, rows: Mapping[str, int], step: int) -> None:
    """Make the Monitor csv files say what they said at a checkpoint, before a resumed env writes anew.

    SB3's Monitor truncates ``<rank>.monitor.csv`` when it starts, so the episodes of the
    segment the checkpoint was in are kept in ``<rank>.upto<step>.monitor.csv`` (cut to the
    rows written by the checkpoint; SB3's ``load_results`` reads every ``*monitor.csv`` and
    orders by time). Files written after the checkpoint (a previous resume of it) are removed.
    """
    if not monitor_dir.is_dir():
        return
    kept = f".upto{step:012d}.monitor.csv"
    for path in sorted(monitor_dir.glob("*monitor.csv")):
        name = path.name
        if name.endswith(kept):
            continue
        if name not in rows:  # written after the checkpoint
            path.unlink()
            continue
        lines = path.read_bytes().split(b"\n")
        keep = lines[: rows[name] + 2]
        content = b"\n".join(keep) + b"\n"
        if re.fullmatch(r"\d+\.monitor\.csv", name):  # the active file of its segment
            target = monitor_dir / name.replace(".monitor.csv", kept)
            if not target.exists():
                atomic_write_bytes(target, content)
            path.unlink()
        elif len(lines) - 1 > len(keep):
            atomic_write_bytes(path, content)
    fsync_dir(monitor_dir)


# --------------------------------------------------------------------------- save


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Finished checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def _spaces(model: Any) -> dict[str, str]:
    return {"observation_space": repr(model.observation_space), "action_space": repr(model.action_space)}


def _logger_pending(logger: Any) -> dict[str, Any]:
    values, counts, excluded, dtypes = {}, {}, {}, {}
    for key, value in getattr(logger, "name_to_value", {}).items():
        if isinstance(value, (bool, int, float, np.integer, np.floating)):
            values[key] = float(value) if not isinstance(value, (bool, int, np.integer)) else int(value)
            if isinstance(value, np.generic):  # e.g. float32: written to csv with its own repr
                dtypes[key] = value.dtype.name
            counts[key] = int(logger.name_to_count.get(key, 0))
            ex = logger.name_to_excluded.get(key)
            excluded[key] = list(ex) if ex is not None else None
    return {"values": values, "counts": counts, "excluded": excluded, "dtypes": dtypes}


def restore_logger_pending(logger: Any, pending: Mapping[str, Any]) -> None:
    dtypes = pending.get("dtypes", {})
    for key, value in pending.get("values", {}).items():
        logger.name_to_value[key] = np.dtype(dtypes[key]).type(value) if key in dtypes else value
        logger.name_to_count[key] = pending["counts"].get(key, 0)
        ex = pending["excluded"].get(key)
        logger.name_to_excluded[key] = tuple(ex) if ex is not None else None


def save_checkpoint(
    model: Any,
    run_dir: Path,
    *,
    keep: int = 3,
    save_replay: bool = False,
    reason: str = "periodic",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint of ``model`` under ``run_dir/checkpoints`` atomically; prune to ``keep``."""
    from rlaux import __version__

    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # left by a kill during an earlier save
        shutil.rmtree(stale, ignore_errors=True)
    existing = checkpoint_dirs(run_dir)
    seq = int(_NAME.match(existing[-1].name).group(2)) + 1 if existing else 0
    name = f"ckpt-{int(model.num_timesteps):012d}-{seq:06d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()

    env_state = capture_env_state(model.env) if model.env is not None else None
    setattr(model, ENV_STATE_ATTR, env_state)
    try:
        model.save(tmp / "model.zip")
    finally:
        delattr(model, ENV_STATE_ATTR)

    tasks = {task.name: task.state_dict() for task in getattr(model, "aux_tasks", [])}
    th.save(tasks, tmp / "tasks.pt")
    replay = getattr(model, "aux_replay", None)
    if save_replay and replay is not None:
        with open(tmp / "replay.npz", "wb") as f:
            np.savez(f, **replay.arrays())
    guard = getattr(model, "update_guard", None)
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rlaux_version": __version__,
        "algo": getattr(model, "algo_name", type(model).__name__.lower()),
        "num_timesteps": int(model.num_timesteps),
        "reason": reason,
        "n_envs": int(model.n_envs),
        "spaces": _spaces(model),
        "env_state_saved": env_state is not None,
        "rng": rng_state(),
        "replay_rng": None if replay is None else replay.rng.bit_generator.state,
        "replay_saved": bool(save_replay and replay is not None),
        "skipped_updates": None if guard is None else guard.state(),
        "iterations": int(getattr(model, "_rlaux_iterations", 0)),
        "logger_pending": _logger_pending(model.logger) if getattr(model, "_logger", None) is not None else {},
        "monitor_rows": monitor_rows(Path(run_dir) / "monitor"),
        **dict(extra or {}),
    }
    files = {}
    for path in sorted(tmp.iterdir()):
        fsync_file(path)
        files[path.name] = {"size": path.stat().st_size, "sha256": _sha256(path)}
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
        if _sha256(file) != meta["sha256"]:
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


def load_checkpoint(path: Path, env: VecEnv, *, device: str = "auto", state: dict | None = None) -> Any:
    """Rebuild the model of a checkpoint on ``env``, with everything a run needs to continue.

    Restores: model and optimizer, SB3's counters, task states, the replay (when saved), the
    logger's pending values (``model._rlaux_logger_pending``, for ``restore_logger_pending``),
    the env state (DummyVecEnv; else the envs are reset with seed ``seed + num_timesteps``) and,
    last of all, the RNG states.
    """
    from rlaux.algorithms import ALGORITHMS

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
        raise CheckpointError(f"checkpoint {path / 'tasks.pt'}: cannot be read ({err})") from None
    for task in model.aux_tasks:
        if task.name in tasks:
            task.load_state_dict(tasks[task.name])

    env_state = model.__dict__.pop(ENV_STATE_ATTR, None)
    if not restore_env_state(env, env_state):
        seed = (model.seed or 0) + int(model.num_timesteps)
        print(f"note: the env state could not be restored ({'SubprocVecEnv' if env_state is None else 'structure differs'});"
              f" resuming with freshly reset envs, seed {seed}", file=sys.stderr)
        env.seed(seed)
        model._last_obs = None  # learn() resets the env
    if getattr(model, "aux_objective", None) is not None:
        model._make_replay()
        replay_file = path / "replay.npz"
        if state.get("replay_saved") and replay_file.is_file():
            try:
                with np.load(replay_file, allow_pickle=False) as data:
                    model.aux_replay.load_arrays(dict(data))
            except (ValueError, OSError) as err:
                raise CheckpointError(f"checkpoint {replay_file}: {err}") from None
        if state.get("replay_rng") is not None:
            model.aux_replay.rng.bit_generator.state = state["replay_rng"]
    guard = getattr(model, "update_guard", None)
    if guard is not None and state.get("skipped_updates"):
        guard.load_state(state["skipped_updates"])
    model._rlaux_iterations = int(state.get("iterations", 0))
    model._rlaux_logger_pending = state.get("logger_pending", {})
    set_rng_state(state["rng"])
    return model


# --------------------------------------------------------------------------- callback


class CheckpointCallback(BaseCallback):
    """Checkpoints every ``save_freq`` env steps, at the end of a rollout + train iteration.

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
        path = save_checkpoint(self.model, self.run_dir, keep=self.keep, save_replay=self.save_replay,
                               reason=reason, extra=self.extra)
        steps = self.model.num_timesteps
        self.last_saved = steps
        if self.save_freq:
            self.next_save = (steps // self.save_freq + 1) * self.save_freq
        return path

    def _on_step(self) -> bool:
        return True
