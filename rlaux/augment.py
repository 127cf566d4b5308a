"""Image augmentation for the representation tasks: random shift (DrQ / SPR / CURL / DrAC).

Random shift (Kostrikov et al. 2020; used by SPR, CURL's Atari variant and DrAC):
pad the image by ``pad`` pixels on each side, repeating the border pixels
("replicate" padding), and crop back to the original size at a random offset,
one offset per image, the same for all its channels (so a frame stack is shifted
as a whole). The padding is never materialised: cropping the replicate-padded
image at offset (dy, dx) is the same as reading pixel (clamp(y + dy - pad),
clamp(x + dx - pad)) of the original, which is what :func:`random_shift` does
with one gather. Any dtype works (uint8 observations stay uint8).

``pad``: the papers use 4 for 84x84 frames. :func:`auto_pad` keeps that for
frames of 64 px or more and uses 1 for small frames (MinAtar's 10x10, where a
pixel is a game tile and 4 would shift objects by 40 % of the board).
"""

from __future__ import annotations

import torch as th


def auto_pad(height: int, width: int) -> int:
    """The shift amplitude for frames of this size: 4 from 64 px (Atari 84x84), else 1."""
    return 4 if min(height, width) >= 64 else 1


def random_shift(images: th.Tensor, pad: int, generator: th.Generator | None = None) -> th.Tensor:
    """Randomly shift each image of ``images`` [N, C, H, W] by up to ``pad`` pixels in x and y.

    Equivalent to replicate-padding by ``pad`` and cropping ``H x W`` at a uniform random
    offset in ``{0, ..., 2 pad}^2`` per image. Returns a new tensor of the same shape and dtype.
    ``pad`` 0 returns a copy. ``generator``: a torch generator on ``images.device`` for
    reproducible shifts (the global RNG otherwise).
    """
    if images.dim() != 4:
        raise ValueError(f"random_shift needs images [N, C, H, W], got shape {tuple(images.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return images.clone()
    n, _, h, w = images.shape
    shifts = th.randint(0, 2 * pad + 1, (n, 2), device=images.device, generator=generator) - pad  # [N, 2]
    return shift(images, shifts)


def shift(images: th.Tensor, shifts: th.Tensor) -> th.Tensor:
    """Shift ``images`` [N, C, H, W] by integer ``shifts`` [N, 2] = (dy, dx), repeating border pixels.

    Output pixel (y, x) of image n is input pixel (clamp(y + dy_n), clamp(x + dx_n)).
    """
    n, c, h, w = images.shape
    rows = (th.arange(h, device=images.device)[None, :] + shifts[:, :1]).clamp_(0, h - 1)  # [N, H]
    cols = (th.arange(w, device=images.device)[None, :] + shifts[:, 1:]).clamp_(0, w - 1)  # [N, W]
    flat = rows[:, :, None] * w + cols[:, None, :]  # [N, H, W] indices into H*W
    index = flat.view(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)


__all__ = ["auto_pad", "random_shift", "shift"]
