"""The auxiliary task interface.

A task is a small, picklable object holding its hyperparameters. It names
itself, checks that it can work with the env's spaces, says what replay it
needs, builds its head (which the policy then owns, so the optimizer, ``.to``,
``save`` and ``load`` cover it), and turns a replay batch into a loss.
Tasks know nothing of PPO or A2C.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

import torch as th
from gymnasium import spaces
from stable_baselines3.common.utils import polyak_update
from torch import nn

from rlaux.errors import ConfigError
from rlaux.networks import conv_trunk
from rlaux.replay import LSTM_STARTS, ReplayBatch, ReplayRequest
from rlaux.weighting import Fixed, Weighting

Metrics = dict[str, th.Tensor]

#: UNREAL's data rate: each auxiliary task replays one sequence per 20-step A3C update of an actor.
DEFAULT_ENV_STEPS_PER_SEQUENCE = 20


def sequences_per_update(env_steps_per_update: float, env_steps_per_sequence: int) -> int:
    """Sequences per optimizer step that replay one sequence per ``env_steps_per_sequence`` collected env
    steps: ``round(env_steps_per_update / env_steps_per_sequence)``, at least 1.

    The auxiliary work is then tied to the data, not to the optimizer: PPO's 4 epochs of 4 minibatches
    over 8 x 128 steps (64 env steps per optimizer step) get 3 sequences a step, A2C's 8 x 5 steps 2, and
    either way one sequence per task per 20 env steps, UNREAL's rate, whatever the minibatch size."""
    return max(1, round(env_steps_per_update / env_steps_per_sequence))


class TaskPolicy(Protocol):
    """What a task reads of the policy it trains (``rlaux.policy.AuxActorCriticPolicy`` and its recurrent
    subclass provide it). Tasks sit below the policy: they name this protocol, never the policy classes,
    so that a task's maths is tested on tensors and a small stand-in, and the policy composes the tasks."""

    observation_space: spaces.Space
    action_space: spaces.Space
    #: Whether an LSTM sits between the encoder and the actor/critic heads.
    recurrent: bool

    @property
    def device(self) -> th.device: ...

    @property
    def features_dim(self) -> int:
        """Width of the encoder's features."""

    @property
    def core_dim(self) -> int:
        """Width of what the actor's head reads (the LSTM output on a recurrent policy)."""

    @property
    def encoder(self) -> nn.Module:
        """The shared encoder the heads sit on."""

    def preprocess(self, obs: th.Tensor) -> th.Tensor:
        """Raw observations -> the encoder's float input."""

    def encode(self, obs: th.Tensor) -> th.Tensor:
        """Encoder features [N, features_dim] of raw observations [N, *obs_shape]."""

    def encode_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """Encoder features [B, T, features_dim] of a replay batch."""

    def core_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """What the actor's head reads [B, T, core_dim] for a replay batch."""

    def values_of_sequences(self, batch: ReplayBatch, through_shared_lstm: bool = False) -> th.Tensor:
        """The value head's output [B, T] for a replay batch."""

    def get_distribution(self, obs: th.Tensor) -> Any:
        """SB3's action distribution of observations."""

    def predict_values(self, obs: th.Tensor) -> th.Tensor:
        """SB3's value estimates [N, 1]."""

    def evaluate_actions(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """SB3's (values, log-probabilities, entropy) of actions."""

    def parameters(self) -> Any: ...



class AuxTask(ABC):
    """Base class of auxiliary tasks. Subclasses set ``name`` and implement ``loss``.

    :param weight: lambda_k in L_total = L_rl + sum_k lambda_k L_aux_k; ``None`` takes the
        task's default for the algorithm (``default_weights``).
    """

    name: ClassVar[str]
    requires_image: ClassVar[bool] = False
    default_weights: ClassVar[dict[str, float]] = {"ppo": 1.0, "a2c": 1.0}
    #: True: ``loss`` gets the on-policy minibatch of the current optimizer step (SB3's
    #: ``RolloutBufferSamples``, see ``rlaux.minibatch``) instead of a replay batch.
    uses_minibatch: ClassVar[bool] = False
    #: True: the task's gradient reaches the actor's or critic's own layers (``mlp_extractor``,
    #: ``action_net``, ``value_net``), not only the shared encoder and the task's head.
    trains_actor_critic: ClassVar[bool] = False
    #: Why the task cannot work with a recurrent policy (``AuxRecurrentPPO``); empty when it can.
    not_recurrent_because: ClassVar[str] = ""
    #: Share of training done, in [0, 1]; the algorithm sets it before each ``train()``.
    progress: float = 0.0
    #: Whether the policy it trains has an LSTM (set by ``configure``).
    recurrent: bool = False
    #: Sequences per batch at the data rate (set by ``configure``); used when ``batch_size`` is None.
    rate_batch_size: int = 1
    #: Optimizer steps one batch serves (``aux_every``; set by ``configure``).
    steps_per_batch: int = 1

    def __init__(self, weight: float | None = None) -> None:
        if weight is not None:
            check_weight(self.name, weight)
        self.weight = weight
        self.weighting: Weighting = Fixed()  # how the weight varies (rlaux.weighting); --aux-weighting

    def resolve_weight(self, algo: str) -> None:
        """Fill in the default weight for ``algo`` ("ppo" or "a2c") when none was given."""
        if self.weight is None:
            self.weight = self.default_weights.get(algo, 1.0)

    def check(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        """Raise ConfigError when the task cannot work with these spaces.

        The algorithm calls it once, before the policy builds the heads: ``build_head`` may
        take for granted what ``check`` accepts (image shape, action-space type, ...).
        Whether it can train a recurrent policy is ``not_recurrent_because``, checked beside it."""
        if self.requires_image and not is_image(observation_space):
            raise ConfigError(
                f"aux task '{self.name}' needs image observations (uint8 [C, H, W]), "
                f"but the env gives {observation_space}; use it with an image env such as Atari or MinAtar"
            )

    def configure(self, *, gamma: float, recurrent: bool = False, env_steps_per_update: float | None = None,
                  env_steps_per_sequence: int = DEFAULT_ENV_STEPS_PER_SEQUENCE, steps_per_batch: int = 1,
                  **_: object) -> None:
        """Receive facts about the agent that trains the task (called by the algorithm's
        ``_setup_model``, after the policy and its heads exist). ``gamma``: the agent's
        discount; ``recurrent``: whether its policy has an LSTM (kept in :attr:`recurrent`);
        ``env_steps_per_update``: env steps collected per batch the task draws, which with
        ``env_steps_per_sequence`` sets :attr:`rate_batch_size` (:func:`sequences_per_update`);
        ``steps_per_batch``: optimizer steps each batch serves (``aux_every``), which multiplies an
        explicit ``batch_size``.
        Unknown keywords are ignored so that more can be added; overrides call this one."""
        self.recurrent = bool(recurrent)
        self.steps_per_batch = int(steps_per_batch)
        if env_steps_per_update is not None:
            self.rate_batch_size = sequences_per_update(env_steps_per_update, env_steps_per_sequence)

    @property
    def sequences(self) -> int:
        """Sequences the task draws per batch: its ``batch_size`` (per optimizer step, times
        :attr:`steps_per_batch`) where given, else :attr:`rate_batch_size`, the data rate's."""
        batch_size = getattr(self, "batch_size", None)
        return self.rate_batch_size if batch_size is None else batch_size * self.steps_per_batch

    def replay_request(self) -> ReplayRequest | None:
        """The sequences this task samples each update; ``None`` if it uses no replay."""
        return None

    def build_head(self, policy: TaskPolicy) -> nn.Module | None:
        """The task's own head on the shared encoder (``None`` if it has none). The spaces have
        passed ``check``; what depends on the encoder is checked here (``ConfigError``)."""
        return None

    def check_policy(self, policy: TaskPolicy) -> None:
        """ConfigError when the task cannot work with the built policy (called once the policy exists, before
        any training); most tasks need nothing of it beyond ``check`` and ``build_head``."""
        return None

    def state_dict(self) -> dict[str, th.Tensor]:
        """Extra training state of the task that is neither a hyperparameter nor in its head (e.g. a
        counter kept on the task object), saved in checkpoints. Tensors only: checkpoints read it
        with ``torch.load(weights_only=True)``. State kept in the head (buffers, target networks)
        is already in the policy's state dict. Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, th.Tensor]) -> None:  # noqa: B027 - optional hook
        """Restore what ``state_dict`` returned. Default: nothing to restore."""

    @abstractmethod
    def loss(self, policy: TaskPolicy, head: nn.Module | None, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        """Scalar loss (unweighted) and detached metrics for ``batch``."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def is_image(space: spaces.Space) -> bool:
    """A channel-first uint8 image, as SB3 hands it to the policy after ``VecTransposeImage``."""
    return isinstance(space, spaces.Box) and space.dtype == "uint8" and len(space.shape) == 3


def check_weight(name: str, weight: object) -> float:
    """A weight must be a finite, non-negative number."""
    try:
        value = float(weight)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"weight of aux task '{name}' must be a non-negative number, got {weight!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"weight of aux task '{name}' must be a finite non-negative number, got {weight!r}")
    return value


def check_batch_size(task_name: str, batch_size: int | None) -> None:
    """ConfigError unless ``batch_size`` is None (the data rate's) or an integer >= 1."""
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ConfigError(f"{task_name} batch_size must be an integer >= 1 or None (from the data rate), got {batch_size!r}")


class ParameterFreeEncoderWarning(UserWarning):
    """Auxiliary tasks sit on an encoder with no parameters: they shape nothing the policy uses."""


class SharedEncoderDefault(UserWarning):
    """On vector observations, rlaux gave the policy a shared encoder (``SharedMLP``) for the aux tasks."""


def warn_if_encoder_is_parameter_free(tasks: Iterable[AuxTask], policy: TaskPolicy, stacklevel: int = 1) -> None:
    """Warn, in one line, when tasks whose gradient reaches only the shared encoder and their own
    heads (not ``trains_actor_critic``) sit on an encoder with no trainable parameter, such as
    ``MlpPolicy``'s ``FlattenExtractor``: their losses then train their heads and nothing else.
    ``stacklevel``: counted from the caller, as ``warnings.warn`` counts it (1: the caller)."""
    if any(p.requires_grad for p in policy.encoder.parameters()):
        return
    idle = [task.name for task in tasks if not task.trains_actor_critic]
    if idle:
        warnings.warn(
            f"aux task(s) {', '.join(idle)} train only their own heads: the policy's features extractor "
            f"({type(policy.encoder).__name__}) has no parameters, so they shape nothing the policy uses; "
            "give it a shared encoder, e.g. policy_kwargs features_extractor = \"shared_mlp\" "
            "(rlaux.networks.SharedMLP) for vector observations or a CNN for images",
            ParameterFreeEncoderWarning,
            stacklevel=stacklevel + 1,
        )


#: Burn-in steps of tasks that replay sequences through a recurrent policy's LSTM from the stored state
#: (R2D2 used 40 of 80 steps; here sequences are 20 steps, UNREAL's). Measured on MiniWorld MazeS3
#: (docs/results/miniworld): 5 steps nearly halve the stored state's drift from the current network's
#: state; from zeros the error in the LSTM output stays 5x larger.
DEFAULT_BURN_IN = 5


def lstm_window(task: AuxTask) -> dict[str, object]:
    """The ``ReplayRequest`` fields of a task with ``lstm_start`` and ``burn_in`` (none for a feed-forward policy)."""
    if not task.recurrent:
        return {}
    return {"recurrent": True, "lstm_start": task.lstm_start, "burn_in": task.burn_in}  # type: ignore[attr-defined]


def check_lstm_window(task_name: str, lstm_start: str, burn_in: int) -> None:
    """ConfigError unless ``lstm_start`` is one of ``LSTM_STARTS`` and ``burn_in`` a non-negative integer."""
    if lstm_start not in LSTM_STARTS:
        raise ConfigError(f"{task_name} lstm_start must be one of {', '.join(LSTM_STARTS)}, got {lstm_start!r}")
    if not isinstance(burn_in, int) or isinstance(burn_in, bool) or burn_in < 0:
        raise ConfigError(f"{task_name} burn_in must be an integer >= 0, got {burn_in!r}")


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    """One hidden ReLU layer of width ``hidden``, or a single linear layer when ``hidden`` is 0."""
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def task_conv_trunk(task_name: str, encoder: nn.Module) -> nn.Module:
    """The encoder's conv layers (``rlaux.networks.conv_trunk``); ConfigError naming the task if it has none."""
    try:
        return conv_trunk(encoder)
    except TypeError as exc:
        raise ConfigError(f"aux task '{task_name}' cannot find the encoder's conv layers: {exc}") from None


def update_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """Move a target network toward ``online``: target <- (1 - tau) target + tau online for the
    parameters (SB3's ``polyak_update``; ``tau`` 1 copies), buffers copied."""
    polyak_update(online.parameters(), target.parameters(), tau)
    with th.no_grad():
        for t, o in zip(target.buffers(), online.buffers(), strict=True):
            t.copy_(o)
