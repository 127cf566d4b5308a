"""Pixel control (UNREAL, Jaderberg et al. 2016, sec. 3.1).

Pseudo-reward: the newest frame of each observation (frames scaled to [0, 1]) is
cropped to a centred grid of ``cell_size`` x ``cell_size`` cells; the reward of a
cell is the mean absolute change of its pixels (and channels) between
consecutive frames (TRFL / rlax definition). One auxiliary "control" policy per
cell learns, by n-step Q-learning over replayed sequences with gamma_pc = 0.9,
to change its cell as much as possible.

Crop and cells (``cell_size`` and ``border``; ``None`` = automatic):

* ``border`` pixels are dropped on each side (automatic: 2 for frames of at
  least 64 px, UNREAL's 84x84 -> 80x80; 0 for smaller frames such as MinAtar's
  10x10, where every pixel is a game tile); the rest is cropped, centred, to the
  largest multiple of the cell size. 84x84, cell 4 -> 80x80 -> a 20x20 grid.
* automatic ``cell_size``: 4 for frames of at least 64 px (UNREAL), 2 from
  32 px, else 1 (MinAtar 10x10 -> a 10x10 grid: one cell per game tile, since
  MinAtar objects move one tile per step and coarser cells would blur them).
* An explicit cell size larger than the cropped frame raises ``ConfigError``
  when the algorithm is built (the frame size is known only then).

Head (``PixelControlHead``): shared features -> FC to 32 x n x n -> ReLU -> two
4x4 stride-2 transposed convolutions, one to a value map (1 channel), one to an
advantage map (one channel per action), combined as a dueling network
Q = V + A - mean_a A, Q: [B, n_actions, gh, gw]. A 4x4 stride-2 deconvolution
maps n to 2n + 2, so n = 9 gives UNREAL's 20x20 grid. Other grid sizes g use
n = max(1, (g - 2) // 2) with ``output_padding`` 1 for odd g, and padding for
g < 4 (``deconv_geometry``); height and width are handled separately. No ReLU
after the deconvolutions (miyosuda/unreal has one; it can only clip Q).

Episode ends: sequences never span an episode start (the steps before it are
masked), and when the last step ends the episode, the next stored frame belongs
to the next episode (the true last frame is not kept): that step is dropped and
the earlier ones bootstrap from max_a Q(s_{T-1}) instead (``functional.n_step_q_loss``).
So no pseudo-reward and no bootstrap crosses an episode boundary. The bootstrap
comes from the online network, detached. The request equals value replay's, so
the two tasks share one replay batch and one encoder pass.

What the head reads: the policy's ``core_sequences``, i.e. the shared encoder's
features for a feed-forward policy and the actor's LSTM output for a recurrent
one (UNREAL's pixel control sits on the LSTM). Through the LSTM, the sequence
starts from the state stored ``burn_in`` steps before it (``lstm_start="stored"``)
or from zeros (``"zeros"``), as value replay's; burn-in steps get no loss.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rlaux.errors import ConfigError
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import (
    DEFAULT_BURN_IN,
    AuxTask,
    Metrics,
    TaskPolicy,
    check_batch_size,
    check_lstm_window,
    lstm_window,
)
from rlaux.tasks.functional import dueling, masked_mean, n_step_q_loss


def pixel_control_rewards(frames: th.Tensor, cell_size: int) -> th.Tensor:
    """Pixel-control pseudo-rewards of consecutive frames.

    ``frames`` float [*L, T+1, C, H, W] in [0, 1] (optional leading dims L), H and W
    multiples of ``cell_size`` (else ValueError). Returns [*L, T, H/cell, W/cell]: for
    each cell, the mean over its pixels and channels of |frame_{t+1} - frame_t|.
    """
    if frames.dim() < 4:
        raise ValueError(f"frames must be [T+1, C, H, W], got shape {tuple(frames.shape)}")
    h, w = frames.shape[-2:]
    if cell_size < 1 or h % cell_size or w % cell_size:
        raise ValueError(f"frame size {h}x{w} is not a multiple of cell_size={cell_size}: crop it first")
    lead = frames.shape[:-4]
    diff = (frames[..., 1:, :, :, :] - frames[..., :-1, :, :, :]).abs().mean(dim=-3)  # [*L, T, H, W]
    pooled = F.avg_pool2d(diff.reshape(-1, 1, h, w), cell_size)  # [N, 1, H/c, W/c]
    return pooled.reshape(*lead, diff.shape[-3], h // cell_size, w // cell_size)


def auto_cell_size(height: int, width: int) -> int:
    """4 for frames of at least 64 px (UNREAL's 84x84), 2 from 32 px, else 1 (MinAtar)."""
    side = min(height, width)
    return 4 if side >= 64 else 2 if side >= 32 else 1


def auto_border(height: int, width: int) -> int:
    """Pixels dropped on each side before gridding: 2 from 64 px (84 -> 80), else 0."""
    return 2 if min(height, width) >= 64 else 0


def crop_box(height: int, width: int, cell_size: int, border: int) -> tuple[int, int, int, int]:
    """(top, left, grid_h, grid_w): drop ``border`` px each side, then crop, centred, to a multiple of the cell."""
    gh, gw = (height - 2 * border) // cell_size, (width - 2 * border) // cell_size
    return (height - gh * cell_size) // 2, (width - gw * cell_size) // 2, gh, gw


def deconv_geometry(grid: int) -> tuple[int, int, int]:
    """(input size n, padding, output_padding) such that ConvTranspose2d(k=4, s=2) maps n to ``grid``.

    Output size is 2(n - 1) - 2 padding + 4 + output_padding = 2n + 2 - 2 padding + output_padding.
    """
    if grid < 1:
        raise ValueError(f"grid size must be positive, got {grid}")
    if grid >= 4:
        n = (grid - 2) // 2
        return n, 0, grid - (2 * n + 2)
    padding = (4 - grid + 1) // 2
    return 1, padding, 2 * padding - (4 - grid)


def scatter_matrix(deconv: nn.ConvTranspose2d, in_size: tuple[int, int]) -> th.Tensor:
    """The 0/1 matrix S [(h * w) * (kh * kw), H * W] of where ``deconv`` adds each input position times each
    kernel tap in its output, for inputs of ``in_size`` (h, w) and outputs (H, W): see :func:`transposed_conv`."""
    h, w = in_size
    kh, kw = deconv.kernel_size
    positions = th.eye(h * w).view(h * w, 1, h, w)
    taps = th.eye(kh * kw).view(1, kh * kw, kh, kw)
    s = F.conv_transpose2d(positions, taps, stride=deconv.stride, padding=deconv.padding,
                           output_padding=deconv.output_padding)  # [h*w, kh*kw, H, W]
    return s.reshape(h * w * kh * kw, -1)


def transposed_conv(x: th.Tensor, deconv: nn.ConvTranspose2d, scatter: th.Tensor, out_size: tuple[int, int]) -> th.Tensor:
    """``deconv(x)`` as two matrix products, x [N, C, h, w] -> [N, O, H, W]: each input position times each
    kernel tap (``x^T w``), then summed into the output by ``scatter`` (:func:`scatter_matrix`). Equal to the
    module's output up to float rounding; gradients reach its weight and bias."""
    n = x.shape[0]
    weight = deconv.weight  # [C, O, kh, kw]
    o = weight.shape[1]
    taps = th.einsum("nci,cok->noik", x.flatten(2), weight.flatten(2))  # [N, O, h*w, kh*kw]
    out = (taps.reshape(n * o, -1) @ scatter).view(n, o, *out_size)
    return out + deconv.bias.view(1, o, 1, 1)


#: Grids up to this many cells run the deconvolutions as matrix products (:func:`transposed_conv`), larger
#: ones as torch's ``ConvTranspose2d``. Fwd + bwd of both, 2-core CPU (docs/benchmarks.md): MinAtar's 10x10
#: grid, 798 rows: 10.0 ms native, 4.2 ms as products; Atari's 20x20, 273 rows: 8.8 ms native, 15.6 ms.
MATMUL_DECONV_MAX_CELLS = 256


class PixelControlHead(nn.Module):
    """Shared features [N, F] -> dueling Q maps [N, n_actions, grid_h, grid_w].

    The deconvolutions are ``nn.ConvTranspose2d`` modules (their parameters and initialisation); on grids
    of at most ``MATMUL_DECONV_MAX_CELLS`` cells they run as matrix products, which torch's CPU transposed
    convolution is slower than at such sizes."""

    def __init__(self, features_dim: int, n_actions: int, grid: tuple[int, int], channels: int = 32) -> None:
        super().__init__()
        (nh, ph, oph), (nw, pw, opw) = deconv_geometry(grid[0]), deconv_geometry(grid[1])
        self.grid = tuple(grid)
        self.channels = channels
        self.fc_shape = (channels, nh, nw)
        self.fc = nn.Sequential(nn.Linear(features_dim, channels * nh * nw), nn.ReLU())
        kwargs = dict(kernel_size=4, stride=2, padding=(ph, pw), output_padding=(oph, opw))
        self.deconv_value = nn.ConvTranspose2d(channels, 1, **kwargs)
        self.deconv_advantage = nn.ConvTranspose2d(channels, n_actions, **kwargs)
        self.as_products = grid[0] * grid[1] <= MATMUL_DECONV_MAX_CELLS
        if self.as_products:  # not in the state dict: it follows from the geometry
            self.register_buffer("scatter", scatter_matrix(self.deconv_value, (nh, nw)), persistent=False)

    def forward(self, features: th.Tensor) -> th.Tensor:
        h = self.fc(features).view(-1, *self.fc_shape)
        if self.as_products:
            value = transposed_conv(h, self.deconv_value, self.scatter, self.grid)
            advantage = transposed_conv(h, self.deconv_advantage, self.scatter, self.grid)
        else:
            value, advantage = self.deconv_value(h), self.deconv_advantage(h)
        return dueling(value, advantage, dim=1)


class PixelControl(AuxTask):
    """``pixel_control``: n-step Q-learning of one control policy per cell of the frame.

    :param cell_size: cell side in pixels; ``None``: automatic (4 from 64 px, 2 from 32, else 1).
    :param border: pixels dropped on each side before gridding; ``None``: 2 from 64 px, else 0.
    :param gamma: the control policies' discount (UNREAL: 0.9, not the agent's).
    :param seq_len: steps per replayed sequence (UNREAL: up to 20).
    :param batch_size: sequences per optimizer step; None (default): one per ``env_steps_per_sequence``
        collected env steps (UNREAL's rate, ``rlaux.tasks.base.sequences_per_update``).
    :param lstm_start: recurrent policies only: ``"stored"`` or ``"zeros"`` (see value replay).
    :param burn_in: recurrent policies only: steps run through the LSTM before the sequence, without loss.
    """

    name = "pixel_control"
    requires_image = True
    # miyosuda/unreal's A2C value, inside UNREAL's [0.01, 0.1]; best of 0.0125/0.05/0.2 for A2C and level
    # for PPO in the sweep (docs/results/unreal-weights).
    default_weights = {"ppo": 0.05, "a2c": 0.05}

    def __init__(
        self,
        weight: float | None = None,
        cell_size: int | None = None,
        border: int | None = None,
        gamma: float = 0.9,
        seq_len: int = 20,
        batch_size: int | None = None,
        lstm_start: str = "stored",
        burn_in: int = DEFAULT_BURN_IN,
    ) -> None:
        super().__init__(weight)
        check_lstm_window(self.name, lstm_start, burn_in)
        if cell_size is not None and (not isinstance(cell_size, int) or cell_size < 1):
            raise ConfigError(f"pixel_control cell_size must be a positive integer or None, got {cell_size!r}")
        if border is not None and (not isinstance(border, int) or border < 0):
            raise ConfigError(f"pixel_control border must be a non-negative integer or None, got {border!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ConfigError(f"pixel_control gamma must be in [0, 1], got {gamma}")
        check_batch_size(self.name, batch_size)
        if seq_len < 1:
            raise ConfigError(f"pixel_control needs seq_len >= 1, got {seq_len}")
        self.cell_size = cell_size
        self.border = border
        self.gamma = gamma
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.lstm_start = lstm_start
        self.burn_in = burn_in

    def geometry(self, observation_space: spaces.Box) -> tuple[int, int, int, int, int]:
        """(cell_size, top, left, grid_h, grid_w) for image observations [C, H, W]; ConfigError if none fits."""
        h, w = observation_space.shape[-2:]
        cell = self.cell_size if self.cell_size is not None else auto_cell_size(h, w)
        border = self.border if self.border is not None else auto_border(h, w)
        top, left, gh, gw = crop_box(h, w, cell, border)
        if gh < 1 or gw < 1:
            raise ConfigError(
                f"pixel_control cell_size={cell} (border {border}) does not fit {h}x{w} frames: "
                f"use a cell size of at most {max(1, min(h, w) - 2 * border)}, or cell_size=None for automatic"
            )
        return cell, top, left, gh, gw

    def check(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        super().check(observation_space, action_space)
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError(f"aux task '{self.name}' needs a Discrete action space (Q-learning), got {action_space}")
        self.geometry(observation_space)

    def replay_request(self) -> ReplayRequest:
        # Up to seq_len steps (shorter ones masked), possibly ending an episode (n_step_q_loss
        # then stops before it). The same request as value_replay's: one batch, one encoder pass.
        return ReplayRequest(
            seq_len=self.seq_len, batch_size=self.sequences, next_obs=True, allow_episode_end=True, min_len=1,
            **lstm_window(self),
        )

    def build_head(self, policy: TaskPolicy) -> nn.Module:
        _, _, _, gh, gw = self.geometry(policy.observation_space)
        return PixelControlHead(policy.core_dim, int(policy.action_space.n), (gh, gw))

    def pseudo_rewards(self, batch: ReplayBatch, observation_space: spaces.Box) -> th.Tensor:
        """[B, T, grid_h, grid_w] pseudo-rewards of the newest frame of each replayed observation."""
        cell, top, left, gh, gw = self.geometry(observation_space)
        obs = batch.obs  # [B, T+1, C * stack, H, W] uint8
        per_frame = obs.shape[2] // batch.frame_stack
        frames = obs[:, :, -per_frame:, top : top + gh * cell, left : left + gw * cell]
        return pixel_control_rewards(frames.float() / 255.0, cell)

    def loss(self, policy: TaskPolicy, head: nn.Module, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        rewards = self.pseudo_rewards(batch, policy.observation_space)
        features = policy.core_sequences(batch)  # [B, T+1, F]: encoder features, or the LSTM output
        q = head(features.flatten(0, 1)).unflatten(0, features.shape[:2])  # [B, T+1, A, gh, gw]
        loss, _, _ = n_step_q_loss(q, batch.actions, rewards, batch.dones, self.gamma, batch.mask)
        metrics = {
            "mean_max_q": masked_mean(q[:, :-1].detach().max(dim=2).values, batch.mask),
            "mean_pseudo_reward": masked_mean(rewards, batch.mask * (1 - batch.dones)),
        }
        return loss, metrics


__all__ = [
    "PixelControl",
    "PixelControlHead",
    "auto_cell_size",
    "crop_box",
    "deconv_geometry",
    "pixel_control_rewards",
    "scatter_matrix",
    "transposed_conv",
]
