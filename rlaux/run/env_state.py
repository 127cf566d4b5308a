"""What a checkpoint keeps of the world outside the model: RNG states, env state, Monitor files.

RNG states (numpy, torch CPU and CUDA, python ``random``) are JSON friendly.

Env state cannot be saved in general (a ``SubprocVecEnv`` hides its envs in other
processes; emulators hold native state). For a ``DummyVecEnv`` the state of every wrapper
layer of every env, and of every ``VecEnvWrapper`` around it, is captured best-effort: each
attribute that deep-copies is kept, except links to the inner env, spaces, renderers and
open files (e.g. CartPole's ``state`` and ``np_random``, MinAtar's game with its own
``numpy.random.RandomState``, ``TimeLimit``'s step count, ``Monitor``'s episode in progress,
``VecFrameStack``'s stack).

Monitor files: SB3's Monitor truncates its csv when it starts, so a resumed run first
rewinds them to what they said at the checkpoint (see :func:`rewind_monitor_files`).
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from rlaux.files import atomic_write_bytes, fsync_dir

# Attributes never captured from an env layer: links, spaces, rendering, files.
_SKIP_ATTRS = {
    "env", "venv", "envs", "results_writer", "_action_space", "_observation_space", "action_space",
    "observation_space", "single_action_space", "single_observation_space", "spec", "_cached_spec",
    "_metadata", "metadata", "render_mode", "window", "screen", "clock", "viewer", "renderer", "surf",
    "_saved_kwargs", "t_start", "closed", "close_called",
}


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
    """Put back what :func:`rng_state` returned (CUDA states only on as many GPUs as saved)."""
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


def _unwrap(venv: VecEnv) -> tuple[list[VecEnvWrapper], VecEnv]:
    wrappers = []
    inner = venv
    while isinstance(inner, VecEnvWrapper):
        wrappers.append(inner)
        inner = inner.venv
    return wrappers, inner


def capture_env_state(venv: VecEnv) -> dict[str, Any] | None:
    """Best-effort copy of the state of a DummyVecEnv's envs and its VecEnv wrappers; None if unreachable."""
    wrappers, inner = _unwrap(venv)
    if not isinstance(inner, DummyVecEnv):
        return None
    return {
        "vec_wrappers": [[type(w).__name__, _layer_state(w)] for w in wrappers],
        "dummy": _layer_state(inner),
        "envs": [[[type(layer).__name__, _layer_state(layer)] for layer in _env_layers(env)] for env in inner.envs],
    }


def restore_env_state(venv: VecEnv, state: Mapping[str, Any] | None) -> bool:
    """Put a :func:`capture_env_state` copy back; False (nothing changed) if the env's structure differs."""
    if not state:
        return False
    wrappers, inner = _unwrap(venv)
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


# --------------------------------------------------------------------------- Monitor files


def monitor_rows(monitor_dir: Path) -> dict[str, int]:
    """Data rows (finished episodes) of each Monitor csv in ``monitor_dir``."""
    out = {}
    if monitor_dir.is_dir():
        for path in sorted(monitor_dir.glob("*monitor.csv")):
            with open(path, "rb") as f:
                lines = f.read().split(b"\n")
            complete = lines[:-1]  # a last line without newline is unfinished
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


__all__ = [
    "capture_env_state",
    "monitor_rows",
    "restore_env_state",
    "rewind_monitor_files",
    "rng_state",
    "set_rng_state",
]
