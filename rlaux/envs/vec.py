"""The vectorised env of an :class:`~rlaux.envs.spec.EnvSpec`: SB3 VecEnvs, or EnvPool for Atari.

``make_vec_env(spec)`` picks the VecEnv class (``VEC_ENV_CHOICES``), builds one env per
rank with :func:`rlaux.envs.wrappers.make_env`, then stacks frames and transposes images
so that image observations are uint8 channel-first, as SB3 expects:

- Atari: ``[4, 84, 84]`` (``[12, 84, 84]`` for AtariRGB): AtariWrapper preprocessing,
  VecFrameStack 4, VecTransposeImage.
- MinAtar: ``[C, 10, 10]`` in {0, 255} (channel-first already; no transpose).
- MiniWorld: ``[3, 60, 80]``.
- Other ids: whatever the env gives, transposed to channel-first if it is an image.

``vec_env="envpool"`` builds Atari through EnvPool instead (optional extra
``rlaux[envpool]``; same preprocessing, same observations, see :mod:`rlaux.envs.envpool`).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable

import gymnasium as gym
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    SubprocVecEnv,
    VecEnv,
    VecFrameStack,
    VecTransposeImage,
)

from rlaux.envs.envpool import make_envpool_vec_env
from rlaux.envs.families import KINDS, check_miniworld_gl
from rlaux.envs.spec import EnvSpec, atari_wrapper_kwargs, is_image_observation
from rlaux.envs.wrappers import make_env
from rlaux.errors import ConfigError

#: Ctrl-C, a scheduler's stop, a closed terminal (where the platform has it): they stop a run
#: (``rlaux.run.signals``), and env workers ignore them.
STOP_SIGNALS: tuple[int, ...] = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

#: The vec-env choices of ``make_vec_env`` (and of every ``--vec-env`` option).
VEC_ENV_CHOICES = ("auto", "dummy", "subproc", "envpool")


class _InfoList(list):
    """A list of info dicts whose deep copy is a shallow one (the dicts themselves are shared)."""

    def __deepcopy__(self, memo: dict) -> _InfoList:
        return type(self)(self)


class InfoSharingDummyVecEnv(DummyVecEnv):
    """SB3's ``DummyVecEnv`` minus the deep copy of the info dicts at every step.

    ``DummyVecEnv.step_wait`` returns ``deepcopy(self.buf_infos)``. Every env step returns a new info
    dict, which the next step replaces in ``buf_infos`` rather than changes, so a copy of the list
    suffices; the deep copy cost 19% of collection time with 64 MinAtar envs (``benchmarks/throughput.py``,
    docs/benchmarks.md). The returned list is a new list each step; its dicts are the envs' own.
    """

    def __init__(self, env_fns: list[Callable[[], gym.Env]]) -> None:
        super().__init__(env_fns)
        self.buf_infos = _InfoList(self.buf_infos)


def _frozen(wrappers: list) -> list:
    return [w if isinstance(w, str) else {k: dict(v or {}) for k, v in w.items()} for w in wrappers]


def ignore_stop_signals() -> None:
    """Ignore :data:`STOP_SIGNALS` in this process."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _in_worker(make: Callable[[], gym.Env]) -> gym.Env:
    """An env factory as a ``SubprocVecEnv`` worker runs it: first the worker stops listening to stop
    signals. A scheduler, ``timeout`` or Ctrl-C signals the whole process group; a worker that died of
    it would take the main process's rollout with it before it could write its checkpoint. The main
    process decides when to stop and closes its workers; a worker whose main process is gone ends
    when its pipe closes (SB3's worker loop)."""
    ignore_stop_signals()
    return make()


def _preload_forkserver() -> None:
    """Have the forkserver import the env factory's module once, so that each SubprocVecEnv
    worker forks with torch, SB3 and ale_py already imported instead of importing them itself
    (8 Atari workers on 2 cores: about 20 s to start without, about 6 s with).
    Only possible before the forkserver starts; harmless afterwards."""
    try:
        from multiprocessing import forkserver
    except ImportError:  # pragma: no cover - platforms without forkserver
        return
    server = getattr(forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is not None:
        return
    modules = list(getattr(server, "_preload_modules", ["__main__"]))
    if make_env.__module__ not in modules:
        forkserver.set_forkserver_preload([*modules, make_env.__module__])


def _vec_env_cls(spec: EnvSpec, n_envs: int, vec_env: str) -> type[VecEnv]:
    if vec_env not in VEC_ENV_CHOICES:
        raise ConfigError(f"unknown vec_env {vec_env!r}; valid choices: {', '.join(VEC_ENV_CHOICES)}")
    if vec_env == "dummy" or n_envs == 1:
        return InfoSharingDummyVecEnv
    if vec_env == "subproc":
        return SubprocVecEnv
    # auto: processes only pay off when a step costs more than the IPC round trip.
    # MinAtar (~100k raw steps/s) and vector gym envs (CartPole ...) are far faster in-process.
    if spec.kind == "minatar" or (spec.kind == "gym" and spec.policy == "MlpPolicy"):
        return InfoSharingDummyVecEnv
    return SubprocVecEnv


def make_vec_env(
    spec: EnvSpec,
    n_envs: int | None = None,
    seed: int = 0,
    vec_env: str = "auto",
    training: bool = True,
    monitor_dir: str | None = None,
    env_wrapper: Callable[[gym.Env], gym.Env] | None = None,
    max_episode_steps: int | None = None,
) -> VecEnv:
    """Build the vectorised env of ``spec`` (SB3's make_vec_env underneath).

    - ``n_envs``: overrides ``spec.n_envs``.
    - ``seed``: env ``i`` is seeded ``seed + i`` (its first reset and its action space).
    - ``vec_env``: "dummy", "subproc" (forkserver), or "auto": DummyVecEnv for 1 env
      and for cheap envs (MinAtar, vector-observation gym envs), SubprocVecEnv otherwise.
      "envpool" (Atari only, optional extra ``rlaux[envpool]``): EnvPool's C++ pool with
      the same preprocessing, see :mod:`rlaux.envs.envpool`.
    - ``training``: False builds the evaluation variant: Atari without EpisodicLife
      and without ClipReward (full games, raw scores).
    - ``monitor_dir``: SB3 Monitor writes ``<monitor_dir>/<rank>.monitor.csv`` with the
      raw episode returns (below all reward transforms and life-loss resets).
    - ``env_wrapper``: applied to each raw env, below Monitor and the preset's wrappers
      (e.g. gymnasium's RecordVideo); must be picklable for SubprocVecEnv.
    - ``max_episode_steps``: truncate episodes after this many agent steps (a TimeLimit right
      below the Monitor; for Atari above the frame skip, so 4 emulator frames a step). Not with
      EnvPool, whose own cap (108,000 frames) stays.

    Returns a VecEnv whose image observations are uint8 channel-first ``[C, H, W]``
    (VecFrameStack then VecTransposeImage where needed), so SB3 adds no transpose.
    """
    n = int(spec.n_envs if n_envs is None else n_envs)
    if n < 1:
        raise ConfigError(f"n_envs must be >= 1, got {n}")
    if spec.kind not in KINDS:
        raise ConfigError(f"unknown env kind {spec.kind!r}; valid kinds: {', '.join(KINDS)}")
    if vec_env == "envpool":
        if spec.kind != "atari":
            raise ConfigError(f"--vec-env envpool supports Atari envs only, not {spec.env_id!r} (kind {spec.kind}); "
                              "use --vec-env auto, dummy or subproc")
        if env_wrapper is not None:
            raise ConfigError("--vec-env envpool runs the envs in C++: it cannot wrap them (e.g. for --video)")
        return make_envpool_vec_env(spec, n_envs=n, seed=seed, training=training, monitor_dir=monitor_dir)
    env_kwargs = dict(spec.env_kwargs)
    if spec.kind == "miniworld":
        check_miniworld_gl(spec.env_id, env_kwargs)
    cls = _vec_env_cls(spec, n, vec_env)
    if cls is SubprocVecEnv:
        _preload_forkserver()
    if monitor_dir is not None:
        os.makedirs(monitor_dir, exist_ok=True)
    wrapper_kwargs = atari_wrapper_kwargs(spec, training) if spec.kind == "atari" else {}
    factories = [
        functools.partial(make_env, spec.env_id, spec.kind, rank, seed, monitor_dir, env_kwargs, wrapper_kwargs,
                          env_wrapper, tuple(spec.gym_packages), max_episode_steps, tuple(_frozen(spec.env_wrapper)))
        for rank in range(n)
    ]
    if cls is SubprocVecEnv:
        factories = [functools.partial(_in_worker, make) for make in factories]
    venv = cls(factories)
    venv.seed(seed)  # env ``rank`` is seeded ``seed + rank`` at its first reset, as SB3's make_vec_env does
    space = venv.observation_space
    image = is_image_observation(space)
    if spec.frame_stack and spec.frame_stack > 1:
        order = None
        if image:
            order = "first" if (spec.kind == "minatar" or is_image_space_channels_first(space)) else "last"
        venv = VecFrameStack(venv, n_stack=spec.frame_stack, channels_order=order)
    space = venv.observation_space
    if is_image_observation(space) and not is_image_space_channels_first(space) and spec.kind != "minatar":
        venv = VecTransposeImage(venv)
    return venv


__all__ = ["STOP_SIGNALS", "VEC_ENV_CHOICES", "ignore_stop_signals", "InfoSharingDummyVecEnv", "make_vec_env"]
