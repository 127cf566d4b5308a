"""Atari through EnvPool (``make_vec_env(spec, vec_env="envpool")``), as an SB3 VecEnv.

EnvPool (``pip install 'rlaux[envpool]'``, envpool >= 1.2) runs the ALE and the whole
Atari preprocessing in C++ threads. :class:`EnvPoolAtariVecEnv` maps an Atari
:class:`~rlaux.envs.spec.EnvSpec` onto EnvPool's options so that agents see what the
default path (SB3's AtariWrapper chain + VecFrameStack + VecTransposeImage) gives:

================================  ==================================  ===============================
default path (``rlaux.envs``)     EnvPool option                      note
================================  ==================================  ===============================
NoopReset(30)                     ``noop_max=30``                     EnvPool: 1-30 no-ops, one less
                                                                      when it presses FIRE
MaxAndSkip(4), max of 2 frames    ``frame_skip=4`` (max-pooled)
EpisodicLife (training only)      ``episodic_life=training``          on a life loss only no-ops +
                                                                      FIRE, no game reset (as SB3)
FireReset                         ``use_fire_reset=True``             games with a FIRE action
WarpFrame 84x84 grey, INTER_AREA  ``img_height/width=84``,            EnvPool greys with ALE's
                                  ``gray_scale``,                     palette, SB3 with cv2 from RGB:
                                  ``use_inter_area_resize=True``      pixel values differ slightly
ClipReward (training only)        ``reward_clip=training``
VecFrameStack(4) + transpose      ``stack_num=4``: ``[4, 84, 84]``    channel-first already, oldest
                                                                      frame first as SB3's; at a
                                                                      game start EnvPool fills the
                                                                      stack with the first frame,
                                                                      SB3 with zeros
``<Game>NoFrameskip-v4``          ``repeat_action_probability=0``
``ALE/<Game>-v5`` (sticky)        ``repeat_action_probability=0.25``
108,000-frame cap (both ids)      ``max_episode_steps=108000 // 4``   truncation, not termination
================================  ==================================  ===============================

SB3 semantics on top of EnvPool's (which resets an env on the step *after* its
episode ended, returning that reset as a step with reward 0):

- a done at step t returns the first observation of the next episode (life, in
  training mode), the true last one is in ``infos[i]["terminal_observation"]``,
  and ``infos[i]["TimeLimit.truncated"]`` marks the frame cap. The reset is done
  at once by stepping only the finished envs (EnvPool ignores the action of that
  step); ``pool.reset(ids)`` is not used because it restarts the whole game, which
  would break episodic life.
- Episode statistics as SB3's ``Monitor`` below the Atari wrappers would log them:
  ``infos[i]["episode"] = {"r", "l", "t"}`` once per *game* (not per life), with the
  unclipped score (EnvPool's ``info["reward"]``), and ``<monitor_dir>/<i>.monitor.csv``.
  ``l`` counts agent steps, like the default path's Monitor (which sits above the
  frame skipping). ``env_is_wrapped(Monitor)`` answers
  True so that ``evaluate_policy`` uses these game scores.
- ``seed(s)``: env ``i`` gets ``s + i``; EnvPool fixes seeds at creation, so the pool
  is remade at the next ``reset()``.
- ``frame_stack``: the frames stacked in each observation (``stack_num``), newest last
  along the channel axis. ``rlaux.algorithms.frame_stack_of`` reads it as it reads a
  ``VecFrameStack``, so the auxiliary replay stores one frame per step and pixel control
  takes its pseudo-reward from the newest frame, as on the default path. The replay
  rebuilds stacks zero-padded at episode starts (the default path's stacks), where
  EnvPool repeats the first frame of a game and keeps the previous life's frames after
  a life loss: replayed stacks differ from the agent's in the first ``frame_stack - 1``
  steps of an episode, never in their newest frame.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.monitor import Monitor, ResultsWriter
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvStepReturn

from rlaux.envs.spec import EnvSpec, atari_wrapper_kwargs
from rlaux.errors import ConfigError, import_optional

#: env_kwargs of the ALE ids that map onto EnvPool options (others are an error).
_ENV_KWARGS = {"repeat_action_probability", "full_action_space", "frameskip", "mode", "difficulty",
               "max_num_frames_per_episode"}


def import_envpool() -> Any:
    """``import envpool``, or a one-line ConfigError saying how to install it (also for a broken binary)."""
    return import_optional("envpool", "--vec-env envpool")


def envpool_settings(spec: EnvSpec, training: bool) -> tuple[str, dict[str, Any]]:
    """(EnvPool task id, ``envpool.make`` keyword arguments) for an Atari EnvSpec."""
    if spec.kind != "atari":
        raise ConfigError(f"--vec-env envpool supports Atari envs only, not {spec.env_id!r} (kind {spec.kind}); "
                          "use --vec-env auto, dummy or subproc")
    envpool = import_envpool()
    reg = gym.registry[spec.env_id]
    ale_kwargs = {**reg.kwargs, **spec.env_kwargs}
    unknown = set(spec.env_kwargs) - _ENV_KWARGS
    if unknown:
        raise ConfigError(f"--vec-env envpool cannot apply env_kwargs {', '.join(sorted(unknown))} of {spec.env_id!r}; "
                          f"it maps only {', '.join(sorted(_ENV_KWARGS))}")
    game = str(ale_kwargs.get("game", ""))
    task_id = "".join(part.capitalize() for part in game.split("_")) + "-v5"
    if task_id not in envpool.list_all_envs():
        raise ConfigError(f"EnvPool has no Atari task {task_id!r} for {spec.env_id!r} (game {game!r})")

    wk = {"noop_max": 30, "frame_skip": 4, "screen_size": 84, "terminal_on_life_loss": True, "clip_reward": True,
          "action_repeat_probability": 0.0, "grayscale": True, **atari_wrapper_kwargs(spec, training)}
    frame_skip = int(wk["frame_skip"])
    # Sticky actions: the ALE's own (v5 ids), or SB3's StickyActionEnv (also per frame) from the wrapper kwargs.
    sticky = float(ale_kwargs.get("repeat_action_probability", 0.0)) or float(wk["action_repeat_probability"])
    # Frame cap: ALE's max_num_frames_per_episode (108,000 for v4 and v5 ids), else a TimeLimit on the
    # frameskip-1 env (frames), in agent steps for EnvPool.
    frames = ale_kwargs.get("max_num_frames_per_episode") or reg.max_episode_steps or 108_000
    kwargs = {
        "episodic_life": bool(wk["terminal_on_life_loss"]),
        "reward_clip": bool(wk["clip_reward"]),
        "noop_max": int(wk["noop_max"]),
        "frame_skip": frame_skip,
        "img_height": int(wk["screen_size"]),
        "img_width": int(wk["screen_size"]),
        "gray_scale": bool(wk["grayscale"]),
        "stack_num": max(int(spec.frame_stack or 1), 1),
        "repeat_action_probability": sticky,
        "full_action_space": bool(ale_kwargs.get("full_action_space", False)),
        "max_episode_steps": max(int(frames) // frame_skip, 1),
        "use_fire_reset": True,
        "use_inter_area_resize": True,
    }
    for key in ("mode", "difficulty"):
        if ale_kwargs.get(key) is not None:
            kwargs[key] = int(ale_kwargs[key])
    return task_id, kwargs


class EnvPoolAtariVecEnv(VecEnv):
    """An SB3 VecEnv over one EnvPool Atari pool; see the module docstring for the semantics."""

    def __init__(self, spec: EnvSpec, n_envs: int, seed: int = 0, training: bool = True,
                 monitor_dir: str | None = None) -> None:
        self.task_id, self.envpool_kwargs = envpool_settings(spec, training)
        self.frame_skip = int(self.envpool_kwargs["frame_skip"])
        #: Frames stacked in each observation, oldest first (see the module docstring).
        self.frame_stack = int(self.envpool_kwargs["stack_num"])
        self._seed = int(seed)
        self._n = int(n_envs)
        self.pool = self._make_pool(self._seed)
        super().__init__(self._n, self.pool.observation_space, self.pool.action_space)
        self._returns = np.zeros(self._n, dtype=np.float64)
        self._lengths = np.zeros(self._n, dtype=np.int64)
        self._t_start = time.time()
        self._writers: list[ResultsWriter] = []
        if monitor_dir is not None:
            os.makedirs(monitor_dir, exist_ok=True)
            header = {"t_start": self._t_start, "env_id": f"envpool:{self.task_id}"}
            self._writers = [ResultsWriter(os.path.join(monitor_dir, str(i)), header=header) for i in range(self._n)]
        self._actions: np.ndarray | None = None

    def _make_pool(self, seed: int) -> Any:
        envpool = import_envpool()
        return envpool.make(self.task_id, env_type="gymnasium", num_envs=self._n, batch_size=self._n, seed=seed,
                            **self.envpool_kwargs)

    # ---------------------------------------------------------------- VecEnv API

    def reset(self) -> np.ndarray:
        if self._seeds[0] is not None and self._seeds[0] != self._seed:
            self.pool.close()
            self._seed = int(self._seeds[0])
            self.pool = self._make_pool(self._seed)
        self._reset_seeds()
        self._reset_options()
        obs, info = self.pool.reset()
        obs = self._ordered(obs, info)
        self._returns[:] = 0.0
        self._lengths[:] = 0
        self.reset_infos = [{"lives": int(lives)} for lives in self._ordered(info["lives"], info)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int32).reshape(self._n)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async first"
        obs, reward, terminated, truncated, info = self.pool.step(self._actions)
        order = np.argsort(info["env_id"])
        obs, reward, terminated, truncated = obs[order], reward[order], terminated[order], truncated[order]
        raw = np.asarray(info["reward"], dtype=np.float64)[order]
        game_over = np.asarray(info["terminated"], dtype=bool)[order]
        lives = np.asarray(info["lives"])[order]
        dones = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
        self._returns += raw
        self._lengths += 1
        infos: list[dict[str, Any]] = [{"lives": int(lives[i])} for i in range(self._n)]
        ended = np.flatnonzero(dones)
        if len(ended):
            obs = np.array(obs, copy=True)
            for i in ended:
                infos[i]["terminal_observation"] = obs[i].copy()
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                if game_over[i] or truncated[i]:  # a whole game: what Monitor below EpisodicLife logs
                    self._log_episode(int(i), infos[i])
            # EnvPool resets a finished env on its next step (action ignored): do that step now.
            new_obs, _, _, _, new_info = self.pool.step(np.zeros(len(ended), dtype=np.int32), ended.astype(np.int32))
            for k, i in enumerate(np.asarray(new_info["env_id"])):
                obs[i] = new_obs[k]
        self._actions = None
        return obs, np.asarray(reward, dtype=np.float32), dones, infos

    def _log_episode(self, i: int, info: dict[str, Any]) -> None:
        episode = {"r": round(float(self._returns[i]), 6), "l": int(self._lengths[i]),
                   "t": round(time.time() - self._t_start, 6)}
        info["episode"] = episode
        if self._writers:
            self._writers[i].write_row(episode)
        self._returns[i] = 0.0
        self._lengths[i] = 0

    @staticmethod
    def _ordered(values: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return np.asarray(values)[np.argsort(info["env_id"])]

    def close(self) -> None:
        self.pool.close()
        for writer in self._writers:
            writer.close()

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        return super().seed(seed)

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self._n)]

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self._n))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":
            return [None for _ in self._indices(indices)]
        if hasattr(self, attr_name):
            return [getattr(self, attr_name) for _ in self._indices(indices)]
        raise AttributeError(f"EnvPoolAtariVecEnv has no attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        warnings.warn(f"EnvPoolAtariVecEnv ignores set_attr({attr_name!r})", stacklevel=2)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any) -> list[Any]:
        raise AttributeError(f"EnvPoolAtariVecEnv cannot call {method_name!r} on its envs (they live in C++)")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # It logs what Monitor below the Atari wrappers logs ("episode" per game, raw scores).
        return [wrapper_class is Monitor for _ in self._indices(indices)]


def make_envpool_vec_env(spec: EnvSpec, n_envs: int, seed: int = 0, training: bool = True,
                         monitor_dir: str | None = None) -> EnvPoolAtariVecEnv:
    """The EnvPool VecEnv of an Atari spec (ConfigError for other kinds or without envpool)."""
    return EnvPoolAtariVecEnv(spec, n_envs=n_envs, seed=seed, training=training, monitor_dir=monitor_dir)


__all__ = ["EnvPoolAtariVecEnv", "envpool_settings", "import_envpool", "make_envpool_vec_env"]
