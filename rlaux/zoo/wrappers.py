"""The env wrapper that zoo hyperparameter files name for MinAtar (``env_wrapper: rlaux.zoo.MinAtarImage``)."""

from __future__ import annotations

import numpy as np

from rlaux.envs import MinAtarImage as _MinAtarObservations

#: Pixels per MinAtar cell in rendered frames: 10x10 cells -> 160x160 (video encoders need more than 10x10).
CELL_PIXELS = 16


def minatar_video_frame(frame: np.ndarray | None) -> np.ndarray | None:
    """MinAtar's rgb_array render (a float palette image in [0, 1], ``[10, 10, 3]``) as a uint8
    frame, each cell ``CELL_PIXELS`` pixels wide (nearest-neighbour, so cells stay sharp)."""
    if frame is None:
        return None
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(frame, CELL_PIXELS, axis=0), CELL_PIXELS, axis=1)


class MinAtarImage(_MinAtarObservations):
    """rlaux's MinAtar observations (uint8 ``[C, 10, 10]`` in {0, 255}, channel-first, exactly as
    :class:`rlaux.envs.MinAtarImage`), with ``render()`` frames that rl-zoo3's ``record_video``
    can encode (uint8, 160x160)."""

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        return minatar_video_frame(self.env.render())


__all__ = ["CELL_PIXELS", "MinAtarImage", "minatar_video_frame"]
