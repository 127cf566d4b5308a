"""Gymnasium wrappers of the env families, and the factory of one env of a VecEnv.

- Atari: :class:`AtariWrapper` (SB3's chain with a ``grayscale`` switch;
  :class:`WarpFrameRGB` for colour frames): uint8 ``[84, 84, 1]`` (``[84, 84, 3]`` RGB).
- MinAtar: :class:`MinAtarImage`: uint8 ``[C, 10, 10]`` in {0, 255}, channel-first.
- MiniWorld and other ids: as the env gives them.

Monitor (episode returns, lengths; ``<monitor_dir>/<rank>.monitor.csv``) sits below
every reward transform and life-loss reset: logged returns are game scores before
reward clipping and over full games, not lives, as with SB3's make_atari_env. Unlike
make_atari_env, the Atari Monitor sits above the frame skipping, so episode lengths
count agent steps (SB3's ``num_timesteps``), not emulator frames (plus the 1-3 steps
that EpisodicLife and FireReset take themselves at each reset).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common import atari_wrappers as sb3_atari
from stable_baselines3.common.monitor import Monitor

from rlaux.envs.families import apply_env_wrappers, make_base_env


class WarpFrameRGB(gym.ObservationWrapper):
    """Resize frames to ``height x width`` keeping the 3 colour channels (SB3's WarpFrame is grey only)."""

    def __init__(self, env: gym.Env, width: int = 84, height: int = 84) -> None:
        super().__init__(env)
        self.width = width
        self.height = height
        assert isinstance(env.observation_space, spaces.Box)
        self.observation_space = spaces.Box(low=0, high=255, shape=(height, width, 3), dtype=np.uint8)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)


class AtariWrapper(gym.Wrapper):
    """SB3's AtariWrapper chain, with a ``grayscale`` switch and a place for the Monitor.

    NoopReset(30), MaxAndSkip(4), [monitor], EpisodicLife, FireReset, WarpFrame(84, grey
    or RGB), ClipReward: SB3's order. ``monitor`` (e.g. SB3's ``Monitor``) is applied right
    above the frame skipping, so it counts agent steps (not emulator frames, and not the
    reset no-ops), sees whole games (below the life-loss resets) and raw rewards (below
    the clipping): its episode lengths are on the same axis as SB3's ``num_timesteps``.
    """

    def __init__(
        self,
        env: gym.Env,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen_size: int = 84,
        terminal_on_life_loss: bool = True,
        clip_reward: bool = True,
        action_repeat_probability: float = 0.0,
        grayscale: bool = True,
        monitor: Callable[[gym.Env], gym.Env] | None = None,
    ) -> None:
        if action_repeat_probability > 0.0:
            env = sb3_atari.StickyActionEnv(env, action_repeat_probability)
        if noop_max > 0:
            env = sb3_atari.NoopResetEnv(env, noop_max=noop_max)
        if frame_skip > 1:
            env = sb3_atari.MaxAndSkipEnv(env, skip=frame_skip)
        if monitor is not None:
            env = monitor(env)
        if terminal_on_life_loss:
            env = sb3_atari.EpisodicLifeEnv(env)
        if "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]
            env = sb3_atari.FireResetEnv(env)
        if grayscale:
            env = sb3_atari.WarpFrame(env, width=screen_size, height=screen_size)
        else:
            env = WarpFrameRGB(env, width=screen_size, height=screen_size)
        if clip_reward:
            env = sb3_atari.ClipRewardEnv(env)
        super().__init__(env)


class MinAtarImage(gym.ObservationWrapper):
    """MinAtar's bool ``[10, 10, C]`` channel-last -> uint8 ``[C, 10, 10]`` in {0, 255}.

    uint8 in [0, 255] makes SB3 treat it as an image (``is_image_space``) and divide
    by 255, so the network sees exactly the {0, 1} planes. Channel-first here, so
    SB3 never transposes it (its heuristic takes the smallest axis as channels;
    with ties, as Seaquest's 10 channels, the first, so [C, 10, 10] reads as
    channel-first, while a [10, 10, 10] channel-last obs would be misread).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = spaces.Box(low=0, high=255, shape=(c, h, w), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(observation.transpose(2, 0, 1), dtype=np.uint8) * np.uint8(255)


def _capped(env: gym.Env, monitor: Callable[[gym.Env], gym.Env], max_episode_steps: int) -> gym.Env:
    return monitor(gym.wrappers.TimeLimit(env, max_episode_steps))


def make_env(
    env_id: str,
    kind: str,
    rank: int,
    seed: int | None,
    monitor_dir: str | None,
    env_kwargs: dict[str, Any],
    wrapper_kwargs: dict[str, Any],
    env_wrapper: Callable[[gym.Env], gym.Env] | None,
    gym_packages: Sequence[str] = (),
    max_episode_steps: int | None = None,
    env_wrappers: Sequence[Any] = (),
) -> gym.Env:
    """Env ``rank`` of a VecEnv: as SB3's make_vec_env builds it, except that the Monitor of
    Atari envs sits above the frame skipping (see ``AtariWrapper``). Module level, so
    picklable by reference: forkserver workers import this module, and with it
    :mod:`rlaux.envs.families`, which registers the ALE and MinAtar ids; other ids are registered
    by importing ``gym_packages``. ``max_episode_steps``: a TimeLimit right below the Monitor, so it
    counts agent steps (above Atari's frame skip) and Monitor records the truncated episode.
    ``env_wrappers``: rl-zoo3's ``env_wrapper`` list, right around the raw env (names, so picklable)."""
    env = apply_env_wrappers(make_base_env(env_id, kind, gym_packages, **env_kwargs), env_wrappers)
    if env_wrapper is not None:
        env = env_wrapper(env)
    if seed is not None:
        env.action_space.seed(seed + rank)
    monitor = functools.partial(Monitor, filename=None if monitor_dir is None else os.path.join(monitor_dir, str(rank)))
    if max_episode_steps:
        monitor = functools.partial(_capped, monitor=monitor, max_episode_steps=max_episode_steps)
    if kind == "atari":
        return AtariWrapper(env, monitor=monitor, **wrapper_kwargs)
    env = monitor(env)
    return MinAtarImage(env) if kind == "minatar" else env


__all__ = ["AtariWrapper", "MinAtarImage", "WarpFrameRGB", "make_env"]
