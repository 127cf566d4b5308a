"""Episodes played for evaluation: how long one may last by default (``--max-episode-steps``), and the
progress lines while they play (:class:`EvaluationProgress`, a VecEnv wrapper that reads only what the
VecEnv returns), and the frames of a recorded episode (:func:`video_wrapper`). Used by :mod:`rlaux.evaluate`."""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordVideo
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rlaux.envs.spec import EnvSpec, atari_wrapper_kwargs

#: Agent steps an evaluation episode may last by default (``--max-episode-steps``), by env kind.
DEFAULT_MAX_EPISODE_STEPS = {"atari": 4_500}
#: ... and for every other kind.
FALLBACK_MAX_EPISODE_STEPS = 27_000
#: Seconds between two progress lines while no episode ends.
PROGRESS_EVERY_S = 10.0


def default_max_episode_steps(spec: EnvSpec) -> int:
    """The default cap of an evaluation episode, in agent steps (see the module docstring)."""
    return DEFAULT_MAX_EPISODE_STEPS.get(spec.kind, FALLBACK_MAX_EPISODE_STEPS)


class EvaluationProgress(VecEnvWrapper):
    """Prints each finished episode (return, agent steps, whether the cap ended it) and, every
    ``every_s`` seconds without one, the steps and running return of the episodes under way.

    Reads only what the VecEnv returns: ``info["episode"]`` (SB3's Monitor) and SB3's
    ``info["TimeLimit.truncated"]``. ``capped``: the number of episodes the cap ended so far.
    """

    def __init__(self, venv: VecEnv, episodes: int, max_episode_steps: int | None, every_s: float = PROGRESS_EVERY_S,
                 print_fn: Any = print) -> None:
        super().__init__(venv)
        self.episodes, self.cap, self.every_s, self.print = episodes, max_episode_steps, every_s, print_fn
        self.done = 0
        self.capped = 0
        self._returns: list[float] = []
        self._running = np.zeros(venv.num_envs)
        self._steps = np.zeros(venv.num_envs, dtype=np.int64)
        self._last = time.perf_counter()

    def reset(self) -> Any:
        self._running[:] = 0.0
        self._steps[:] = 0
        return self.venv.reset()

    def step_wait(self) -> Any:
        obs, rewards, dones, infos = self.venv.step_wait()
        self._running += rewards
        self._steps += 1
        now = time.perf_counter()
        for i, (done, info) in enumerate(zip(dones, infos)):
            if not done or "episode" not in info:
                continue
            length = int(info["episode"]["l"])
            by_cap = bool(self.cap) and bool(info.get("TimeLimit.truncated")) and length >= self.cap
            self.capped += by_cap
            self._running[i], self._steps[i] = 0.0, 0
            if self.done < self.episodes:
                self.done += 1
                self._returns.append(float(info["episode"]["r"]))
                self.print(f"episode {self.done}/{self.episodes}: return {self._returns[-1]:.2f}, {length} agent steps"
                           f"{' (ended by the cap, --max-episode-steps)' if by_cap else ''}; "
                           f"mean so far {np.mean(self._returns):.2f}", flush=True)
                self._last = now
        if now - self._last >= self.every_s and self.done < self.episodes:
            self.print(f"  ... {self.done}/{self.episodes} episodes done; under way: {int(self._steps.max())} agent "
                       f"steps{f' of at most {self.cap}' if self.cap else ''}, return so far "
                       f"{float(self._running[int(self._steps.argmax())]):.2f}", flush=True)
            self._last = now
        return obs, rewards, dones, infos


def atari_frame_skip(spec: EnvSpec) -> int | None:
    """Emulator frames per agent step of an Atari spec (None for other kinds)."""
    if spec.kind != "atari":
        return None
    return int(atari_wrapper_kwargs(spec, False).get("frame_skip", 4))



def video_frame(frame: Any) -> Any:
    """uint8 RGB frame, at least ~160 px on its short side, even sides (H.264 needs them)."""
    if frame is None:
        return None
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:  # MinAtar's rgb_array is a float palette image in [0, 1]
        scale = 255.0 if frame.size and float(frame.max()) <= 1.0 else 1.0
        frame = np.clip(frame * scale, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    h, w = frame.shape[:2]
    k = max(1, int(np.ceil(160 / max(min(h, w), 1))))
    if k > 1:  # nearest-neighbour upscaling keeps MinAtar's cells sharp
        frame = np.repeat(np.repeat(frame, k, axis=0), k, axis=1)
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
    return frame


class VideoFrames(gym.Wrapper):
    """Renders video-ready frames (see :func:`video_frame`)."""

    def render(self) -> Any:
        return video_frame(self.env.render())


def video_wrapper(env: gym.Env, video_folder: str, name_prefix: str, fps: int | None) -> gym.Env:
    """The raw env, rendering video-ready frames, inside RecordVideo (first episode only)."""
    return RecordVideo(VideoFrames(env), video_folder=video_folder, name_prefix=name_prefix,
                       episode_trigger=lambda episode: episode == 0, fps=fps, disable_logger=True)



__all__ = ["DEFAULT_MAX_EPISODE_STEPS", "EvaluationProgress", "VideoFrames", "atari_frame_skip", "default_max_episode_steps", "video_frame", "video_wrapper"]
