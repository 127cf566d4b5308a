"""The auxiliary replay: a small ring buffer of recent experience per vectorised env.

UNREAL samples its auxiliary tasks from a buffer of the most recent frames
(about 2,000 per actor). This one holds, for each env of a ``VecEnv``, the last
``capacity`` steps: the observation the agent acted on, its action, the raw
reward and whether the episode ended there. Sampling returns whole sequences of
consecutive steps of one env that never cross an episode end, drawn uniformly
or skewed so that half of them end in a rewarding step.

Memory: images are kept as uint8. With frame stacking (``VecFrameStack``, or a
VecEnv that stacks frames itself such as EnvPool's; either way the newest frame
last along the channel axis), only the newest frame of each observation is
stored and the stacks are rebuilt at sampling time, zero-padded at episode
starts exactly as ``VecFrameStack`` does, which divides the memory by the stack
size.

Recurrent agents (``AuxRecurrentPPO``): to run replayed sequences through the
policy's LSTM, the replay also keeps, per step, the LSTM state the policy had
before that step (h and c of each LSTM, ``lstm_state_dim`` values, float16 by
default) and the extra LSTM inputs it was given (UNREAL's last action and
reward, ``lstm_input_dim`` float32 values). A request with ``recurrent=True``
gets a :class:`RecurrentWindow` with its batch: ``burn_in`` steps before each
sequence, the episode starts of every step (where the LSTM is reset), the
stored state at the window's first step (``lstm_start="stored"``, R2D2) or none
(``"zeros"``, UNREAL), and the inputs. Memory per step and env: ``2 x D`` bytes in
float16, e.g. 2,048 bytes for sb3-contrib's default actor and critic LSTMs of 256
units (4 x 256 values), 512 bytes for rl-zoo3's Atari ``ppo_lstm`` (one LSTM of 128).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

if TYPE_CHECKING:
    from gymnasium import spaces

from rlaux.errors import ConfigError


@dataclass(frozen=True)
class ReplayRequest:
    """What a task asks of the replay. Tasks with equal requests share one sampled batch.

    ``seq_len`` transitions per sequence; ``next_obs`` adds the observation after
    the last one (so ``seq_len + 1`` observations). ``skewed``: each sequence ends
    in a rewarding step (``|r| > reward_threshold``) with probability 0.5.
    ``allow_episode_end``: the last transition may end its episode (then the
    next observation belongs to the next episode and ``dones[:, -1]`` says so).
    ``min_len``: sequences of "up to ``seq_len``" steps: a sequence may begin fewer
    than ``seq_len`` steps after its episode began, down to ``min_len`` steps; the
    steps before the episode began are masked out (``ReplayBatch.mask``).
    ``None``: exactly ``seq_len`` steps of one episode.
    ``recurrent``: the sequences will run through the policy's LSTM; the batch carries a
    :class:`RecurrentWindow` that begins ``burn_in`` steps before each sequence, with the
    LSTM state stored at its first step (``lstm_start="stored"``) or none (``"zeros"``).
    """

    seq_len: int
    batch_size: int
    next_obs: bool = False
    skewed: bool = False
    reward_threshold: float = 0.0
    allow_episode_end: bool = True
    min_len: int | None = None
    recurrent: bool = False
    burn_in: int = 0
    lstm_start: str = "stored"

    def __post_init__(self) -> None:
        if self.lstm_start not in LSTM_STARTS:
            raise ConfigError(f"lstm_start must be one of {', '.join(LSTM_STARTS)}, got {self.lstm_start!r}")
        if self.burn_in < 0 or (self.burn_in and not self.recurrent):
            raise ConfigError(f"burn_in must be >= 0 and is for recurrent requests only, got burn_in={self.burn_in}")

    @property
    def n_obs(self) -> int:
        return self.seq_len + int(self.next_obs)

    @property
    def stored_state(self) -> bool:
        """Whether sampling it needs the LSTM states stored per step."""
        return self.recurrent and self.lstm_start == "stored"


#: Where a replayed sequence's LSTM starts: the state stored with its first step (R2D2), or zeros (UNREAL).
LSTM_STARTS = ("stored", "zeros")


@dataclass
class RecurrentWindow:
    """What running a batch's sequences through an LSTM needs: K = ``burn_in`` steps before its N observations.

    ``burn_in_obs`` [B, K, *obs_shape]; ``starts`` [B, K + N] float32, 1 where an episode begins (the
    LSTM state is reset there); ``state`` [B, D] float32, the LSTM state the policy had before the
    window's first step (before any reset), ``None`` for a zero state; ``inputs`` [B, K + N, U] float32,
    the extra LSTM inputs the policy was given at each step (last action and reward), ``None`` if none.
    """

    burn_in_obs: th.Tensor
    starts: th.Tensor
    state: th.Tensor | None
    inputs: th.Tensor | None

    @property
    def burn_in(self) -> int:
        return self.burn_in_obs.shape[1]


@dataclass
class ReplayBatch:
    """Sequences sampled from the replay, as tensors on the training device.

    Shapes, with B sequences of T = ``seq_len`` transitions:
    ``obs`` [B, T(+1), *obs_shape] (uint8 for images), ``actions`` [B, T, *action_shape],
    ``rewards`` [B, T] float32 (raw env rewards), ``dones`` [B, T] float32
    (1 where the episode ended at that step), ``mask`` [B, T] float32 (1 for the steps
    of the sampled episode, 0 for the steps before it began when ``min_len`` allows
    shorter sequences; the last step is always 1 and only it can end the episode).
    ``rewarding_share`` is the share of sequences ending in a rewarding step.
    ``frame_stack``: frames stacked in each observation (its channels are
    ``frame_stack`` frames of ``C // frame_stack`` channels each, oldest first).
    ``recurrent``: for requests with ``recurrent=True``, the LSTM window (else ``None``).
    """

    obs: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
    mask: th.Tensor
    rewarding_share: float
    skew_fallback: bool = False
    frame_stack: int = 1
    recurrent: RecurrentWindow | None = None
    _cache: dict[str, Any] | None = None

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute a value once per batch (e.g. encoder features shared by several tasks)."""
        if self._cache is None:
            self._cache = {}
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def forget(self) -> None:
        """Drop the memoised values (they are stale once the weights they came from change)."""
        self._cache = None


class AuxReplayBuffer:
    """Ring buffer of the last ``capacity`` steps of each of ``n_envs`` envs.

    :param capacity: steps (frames) kept per env.
    :param observation_space: the (channel-first) observation space of the VecEnv.
    :param frame_stack: frames stacked in each observation, newest last (a ``VecFrameStack``'s
        or EnvPool's stack size; 1: none); images are then stored one frame per step and
        restacked on sampling.
    :param lstm_state_dim: D, values of the LSTM state kept per step (0: none kept).
    :param lstm_input_dim: U, extra LSTM inputs kept per step (0: none kept).
    :param lstm_state_dtype: how the states are kept: ``float16`` (default, half the memory; the
        rounding, about 1e-3 relative, is far below the staleness burn-in is there for) or ``float32``.
    """

    def __init__(
        self,
        capacity: int,
        n_envs: int,
        observation_space: spaces.Box,
        action_space: spaces.Space,
        frame_stack: int = 1,
        seed: int | None = None,
        lstm_state_dim: int = 0,
        lstm_input_dim: int = 0,
        lstm_state_dtype: str = "float16",
    ) -> None:
        if lstm_state_dtype not in LSTM_STATE_DTYPES:
            raise ConfigError(f"lstm_state_dtype must be one of {', '.join(LSTM_STATE_DTYPES)}, got {lstm_state_dtype!r}")
        if capacity < 2:
            raise ConfigError(f"replay capacity {capacity} is too small: need at least 2 steps per env")
        obs_shape = tuple(observation_space.shape)
        if frame_stack > 1 and (len(obs_shape) != 3 or obs_shape[0] % frame_stack):
            raise ConfigError(f"frame_stack={frame_stack} does not divide the channels of observations {obs_shape}")
        self.capacity = capacity
        self.n_envs = n_envs
        self.obs_shape = obs_shape
        self.frame_stack = frame_stack
        frame_shape = (obs_shape[0] // frame_stack, *obs_shape[1:]) if frame_stack > 1 else obs_shape
        action_shape = tuple(action_space.shape or ())
        self.frames = np.zeros((capacity, n_envs, *frame_shape), dtype=observation_space.dtype)
        self.actions = np.zeros((capacity, n_envs, *action_shape), dtype=action_space.dtype or np.float32)
        self.rewards = np.zeros((capacity, n_envs), dtype=np.float32)
        self.dones = np.zeros((capacity, n_envs), dtype=bool)
        self.episode_step = np.zeros((capacity, n_envs), dtype=np.int64)  # steps since the episode began
        self._arrays = list(self._ARRAYS)
        self.lstm_states = self.lstm_inputs = None
        if lstm_state_dim:
            self.lstm_states = np.zeros((capacity, n_envs, lstm_state_dim), dtype=lstm_state_dtype)
            self._arrays.append("lstm_states")
        if lstm_input_dim:
            self.lstm_inputs = np.zeros((capacity, n_envs, lstm_input_dim), dtype=np.float32)
            self._arrays.append("lstm_inputs")
        self.pos = 0  # next slot to write
        self.size = 0  # filled slots per env
        self.rng = np.random.default_rng(seed)
        self._valid_ends: dict[tuple, np.ndarray] = {}

    _ARRAYS = ("frames", "actions", "rewards", "dones", "episode_step")

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything but the RNG as plain numpy arrays (for ``np.savez``; no pickle needed)."""
        out = {name: getattr(self, name) for name in self._arrays}
        out["meta"] = np.array([self.capacity, self.n_envs, self.frame_stack, self.pos, self.size], dtype=np.int64)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore ``arrays()``; ValueError naming the mismatch when they were made for another buffer."""
        meta = arrays.get("meta")
        if meta is None or any(name not in arrays for name in self._arrays):
            raise ValueError(f"replay arrays lack some of {', '.join(('meta', *self._arrays))}")
        capacity, n_envs, frame_stack, pos, size = (int(v) for v in meta)
        if (capacity, n_envs, frame_stack) != (self.capacity, self.n_envs, self.frame_stack):
            raise ValueError(
                f"replay saved with capacity={capacity}, n_envs={n_envs}, frame_stack={frame_stack}; this one has "
                f"capacity={self.capacity}, n_envs={self.n_envs}, frame_stack={self.frame_stack}"
            )
        for name in self._arrays:
            mine, theirs = getattr(self, name), arrays[name]
            if mine.shape != theirs.shape or mine.dtype != theirs.dtype:
                raise ValueError(f"replay array '{name}' is {theirs.dtype}{list(theirs.shape)}, "
                                 f"expected {mine.dtype}{list(mine.shape)}")
        for name in self._arrays:
            getattr(self, name)[...] = arrays[name]
        self.pos, self.size = pos, size
        self._valid_ends.clear()

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in self._arrays)

    @property
    def bytes_per_step(self) -> float:
        """Memory of one stored step of one env, all arrays together."""
        return self.nbytes / (self.capacity * self.n_envs)

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        dones: np.ndarray,
        episode_starts: np.ndarray,
        lstm_states: np.ndarray | None = None,
        lstm_inputs: np.ndarray | None = None,
    ) -> None:
        """Store one vectorised step: ``obs`` [n_envs, *obs_shape] acted on, and what followed.

        ``episode_starts[i]`` says ``obs[i]`` begins an episode (SB3's ``_last_episode_starts``);
        a start that follows no stored end (a reset between ``learn`` calls) closes the
        previous episode, so no sequence ever spans it. ``lstm_states`` [n_envs, D] and
        ``lstm_inputs`` [n_envs, U]: what the policy's LSTM had before this step (before any reset
        at an episode start), required when the buffer keeps them.
        """
        for name, value in (("lstm_states", lstm_states), ("lstm_inputs", lstm_inputs)):
            if getattr(self, name) is not None and value is None:
                raise ValueError(f"this replay keeps {name}: add() needs them")
        starts = np.asarray(episode_starts, dtype=bool)
        prev = (self.pos - 1) % self.capacity
        if self.size:
            self.dones[prev] |= starts
            step = np.where(starts, 0, self.episode_step[prev] + 1)
        else:
            step = np.zeros(self.n_envs, dtype=np.int64)
        frame = obs[:, -self.frames.shape[2] :] if self.frame_stack > 1 else obs
        self.frames[self.pos] = frame
        self.actions[self.pos] = np.asarray(actions).reshape(self.actions.shape[1:])
        self.rewards[self.pos] = rewards
        self.dones[self.pos] = dones
        self.episode_step[self.pos] = step
        if self.lstm_states is not None:
            self.lstm_states[self.pos] = lstm_states
        if self.lstm_inputs is not None:
            self.lstm_inputs[self.pos] = lstm_inputs
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self._valid_ends.clear()

    def _ages(self) -> np.ndarray:
        """Age of each slot: 0 for the newest, ``size - 1`` for the oldest, -1 when empty."""
        age = (self.pos - 1 - np.arange(self.capacity)) % self.capacity
        return np.where(age < self.size, age, -1)

    def valid_ends(self, request: ReplayRequest) -> np.ndarray:
        """Flat indices (slot * n_envs + env) where a sequence of the request may end."""
        min_len = request.seq_len if request.min_len is None else request.min_len
        key = (request.seq_len, min_len, request.allow_episode_end, request.burn_in)
        if key not in self._valid_ends:
            span = request.seq_len - 1 + request.burn_in
            age = self._ages()[:, None]
            # The next observation must be stored (age >= 1); the first one (of the burn-in, if any), with its
            # frame stack, too.
            ok = (age >= 1) & (age + span + self.frame_stack - 1 <= self.size - 1) & (self.episode_step >= min_len - 1)
            if not request.allow_episode_end:
                ok &= ~self.dones
            self._valid_ends[key] = np.flatnonzero(ok)
        return self._valid_ends[key]

    def can_sample(self, request: ReplayRequest) -> bool:
        return self.valid_ends(request).size > 0

    def sample(self, request: ReplayRequest, device: th.device | str = "cpu") -> ReplayBatch:
        """Draw ``request.batch_size`` sequences (vectorised, no loop per item)."""
        if request.stored_state and self.lstm_states is None:
            raise ValueError("the request starts the LSTM from stored states, which this replay does not keep")
        ends = self.valid_ends(request)
        if ends.size == 0:
            raise ValueError(f"the replay holds no sequence of {request.seq_len} steps yet")
        end_rewarding = np.abs(self.rewards.reshape(-1)[ends]) > request.reward_threshold
        fallback = False
        if request.skewed:
            rewarding, plain = ends[end_rewarding], ends[~end_rewarding]
            if rewarding.size and plain.size:
                want_reward = self.rng.random(request.batch_size) < 0.5
                picked = np.where(
                    want_reward,
                    rewarding[self.rng.integers(rewarding.size, size=request.batch_size)],
                    plain[self.rng.integers(plain.size, size=request.batch_size)],
                )
            else:  # all or none of the steps are rewarding: skewing is impossible
                fallback = True
                picked = ends[self.rng.integers(ends.size, size=request.batch_size)]
        else:
            picked = ends[self.rng.integers(ends.size, size=request.batch_size)]
        return self.sequences_ending_at(request, picked, device, skew_fallback=fallback)

    def sequences_ending_at(self, request: ReplayRequest, ends: np.ndarray, device: th.device | str = "cpu",
                            skew_fallback: bool = False) -> ReplayBatch:
        """The sequences of ``request`` whose last step is at ``ends`` [B], flat indices slot * n_envs + env
        taken from :meth:`valid_ends` (``sample`` draws them)."""
        picked = np.asarray(ends)
        end_slot, env = np.divmod(picked, self.n_envs)
        offsets = np.arange(request.n_obs) - (request.seq_len - 1)
        slots = (end_slot[:, None] + offsets[None, :]) % self.capacity  # [B, n_obs]
        envs = env[:, None]
        step_slots, step_envs = slots[:, : request.seq_len], envs
        rewards = self.rewards[step_slots, step_envs]
        first_in_episode = request.seq_len - 1 - self.episode_step.reshape(-1)[picked]  # [B], may be < 0
        mask = np.arange(request.seq_len)[None, :] >= first_in_episode[:, None]
        batch = ReplayBatch(
            obs=_to_device(self._observations(slots, envs), device),
            actions=_to_device(self.actions[step_slots, step_envs], device),
            rewards=_to_device(rewards, device),
            dones=_to_device(self.dones[step_slots, step_envs].astype(np.float32), device),
            mask=_to_device(mask.astype(np.float32), device),
            rewarding_share=float(np.mean(np.abs(rewards[:, -1]) > request.reward_threshold)),
            skew_fallback=skew_fallback,
            frame_stack=self.frame_stack,
            recurrent=self._window(request, slots, envs, device) if request.recurrent else None,
        )
        return batch

    def _window(self, request: ReplayRequest, slots: np.ndarray, envs: np.ndarray, device: th.device | str) -> RecurrentWindow:
        """The LSTM window of sequences at ``slots`` [B, N] of ``envs`` [B, 1]: ``burn_in`` slots before them too."""
        k = request.burn_in
        window = (slots[:, :1] + np.arange(-k, slots.shape[1])[None, :]) % self.capacity  # [B, K + N]
        starts = (self.episode_step[window, envs] == 0).astype(np.float32)
        state = self.lstm_states[window[:, 0], envs[:, 0]].astype(np.float32) if request.stored_state else None
        inputs = self.lstm_inputs[window, envs] if self.lstm_inputs is not None else None
        return RecurrentWindow(
            burn_in_obs=_to_device(self._observations(window[:, :k], envs), device),
            starts=_to_device(starts, device),
            state=None if state is None else _to_device(state, device),
            inputs=None if inputs is None else _to_device(inputs, device),
        )

    def _observations(self, slots: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Observations at ``slots`` [B, N] of ``envs`` [B, 1], restacked when frames are stored."""
        if self.frame_stack == 1:
            return self.frames[slots, envs]
        k = self.frame_stack
        back = np.arange(k - 1, -1, -1)  # frames back from the newest, oldest first
        stack_slots = (slots[..., None] - back) % self.capacity  # [B, N, k]
        frames = self.frames[stack_slots, envs[..., None]]  # [B, N, k, C, H, W]
        in_episode = back <= self.episode_step[slots, envs][..., None]  # [B, N, k]
        frames *= in_episode[..., None, None, None].astype(frames.dtype)
        b, n = slots.shape
        return frames.reshape(b, n, *self.obs_shape)


#: How the LSTM states may be kept (``AuxReplayBuffer``'s ``lstm_state_dtype``).
LSTM_STATE_DTYPES = ("float16", "float32")


def _to_device(array: np.ndarray, device: th.device | str) -> th.Tensor:
    tensor = th.from_numpy(np.ascontiguousarray(array))
    if th.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor
