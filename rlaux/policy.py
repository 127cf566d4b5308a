"""SB3's actor-critic policy and sb3-contrib's recurrent one, owning the heads of the auxiliary tasks.

The heads are submodules (``aux_heads``), so ``policy.parameters()``, the
optimizer, ``.to(device)``, ``save`` and ``load`` cover them with no extra code.
With no task the policy is exactly SB3's ``ActorCriticPolicy`` (or sb3-contrib's
``RecurrentActorCriticPolicy``).

Tasks read the agent through a few calls that both kinds of policy answer:
``encode``/``encode_sequences`` (the encoder's features, feed-forward),
``core_sequences`` and ``core_dim`` (what the agent's own heads read: the encoder
features here, the LSTM output in a recurrent policy) and ``values_of_sequences``
(the agent's value head, through the critic's LSTM in a recurrent policy).

The policy sits below the tasks: it knows them only through ``HeadSource``,
what it asks of a task (its name, its head, whether its weighting is learned).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from torch import nn

from rlaux.errors import ConfigError
from rlaux.replay import ReplayBatch
from rlaux.weighting import Weighting


class HeadSource(Protocol):
    """What the policy needs of an auxiliary task (``rlaux.tasks.AuxTask`` provides it)."""

    @property
    def name(self) -> str:
        """The task's name, the key of its head in ``aux_heads``."""

    @property
    def weighting(self) -> Weighting:
        """How the task's loss is weighted; a ``learned`` weighting gets a log-variance parameter here."""

    def build_head(self, policy: AuxActorCriticPolicy) -> nn.Module | None:
        """The task's head on this policy's encoder, or ``None``."""


#: ``encoder_dtype`` values: the precision of the encoder's forward and backward passes.
ENCODER_DTYPES = ("float32", "bfloat16", "auto")


def fast_bfloat16(device: th.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: a CUDA GPU that supports it, or a CPU
    with AMX or AVX512-BF16 (elsewhere torch emulates bfloat16, slower than float32)."""
    if device.type == "cuda":
        return th.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(th.cpu._is_amx_tile_supported() or th.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def resolve_encoder_dtype(encoder_dtype: str, device: th.device) -> str:
    """``"auto"`` -> ``"bfloat16"`` where :func:`fast_bfloat16`, else ``"float32"``; checks the name."""
    if encoder_dtype not in ENCODER_DTYPES:
        raise ConfigError(f"unknown encoder_dtype {encoder_dtype!r}; valid: {', '.join(ENCODER_DTYPES)}")
    if encoder_dtype == "auto":
        return "bfloat16" if fast_bfloat16(device) else "float32"
    return encoder_dtype


class AuxActorCriticPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` plus ``aux_heads``, one per auxiliary task that has a head.

    :param aux_tasks: the task objects; each builds its head from this policy.
    :param encoder_dtype: ``"float32"`` (SB3's), ``"bfloat16"``: the features extractor runs under
        ``torch.autocast`` to bfloat16 (mixed precision: weights, optimizer state and everything after
        the features stay float32; the features are cast back to float32), or ``"auto"``: bfloat16 where
        the device computes it natively (:func:`fast_bfloat16`), else float32. The resolved value is in
        :attr:`encoder_dtype`.
    """

    def __init__(self, *args: Any, aux_tasks: Sequence[HeadSource] = (), encoder_dtype: str = "float32",
                 **kwargs: Any) -> None:
        self.aux_tasks = list(aux_tasks)  # read by _build, which super().__init__ calls
        resolve_encoder_dtype(encoder_dtype, th.device("cpu"))  # a bad name fails here
        self._requested_encoder_dtype = encoder_dtype
        self._resolved_encoder_dtype: tuple[th.device, str] | None = None
        super().__init__(*args, **kwargs)

    @property
    def encoder_dtype(self) -> str:
        """``"float32"`` or ``"bfloat16"``: the requested precision, ``"auto"`` resolved for the policy's device."""
        device = self.device
        if self._resolved_encoder_dtype is None or self._resolved_encoder_dtype[0] != device:
            self._resolved_encoder_dtype = (device, resolve_encoder_dtype(self._requested_encoder_dtype, device))
        return self._resolved_encoder_dtype[1]

    def encoder_precision(self) -> AbstractContextManager:
        """The context the encoder runs in: bfloat16 autocast, or nothing for float32."""
        if self.encoder_dtype == "float32":
            return nullcontext()
        return th.autocast(self.device.type, dtype=th.bfloat16)

    def extract_features(self, obs: Any, features_extractor: nn.Module | None = None) -> Any:
        """SB3's feature extraction in :meth:`encoder_precision`, returned as float32 (a no-op for float32)."""
        with self.encoder_precision():
            features = super().extract_features(obs, features_extractor)
        if isinstance(features, tuple):
            return tuple(f.float() for f in features)
        return features.float()

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        if not self.aux_tasks:
            return
        # Heads are made after SB3's own modules and outside its RNG stream, so that
        # the RL part starts from the same weights and draws the same actions as SB3.
        with th.random.fork_rng(devices=[]):
            heads = {task.name: task.build_head(self) for task in self.aux_tasks}
            self.aux_heads = nn.ModuleDict({name: head for name, head in heads.items() if head is not None})
        learned = [t.name for t in self.aux_tasks if t.weighting.learned]
        if learned:  # log-variances of the ``uncertainty`` weighting, optimised with everything else
            self.aux_log_vars = nn.ParameterDict({name: nn.Parameter(th.zeros(())) for name in learned})
        # SB3 made its optimizer before the heads existed: make it again over all parameters.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["aux_tasks"] = self.aux_tasks
        data["encoder_dtype"] = self._requested_encoder_dtype
        return data

    def aux_head(self, name: str) -> nn.Module | None:
        heads = getattr(self, "aux_heads", None)
        return heads[name] if heads is not None and name in heads else None

    #: Whether an LSTM sits between the encoder and the actor/critic heads.
    recurrent = False

    @property
    def core_dim(self) -> int:
        """Width of what the agent's heads read (``core_sequences``): the encoder's features here."""
        return self.features_dim

    @property
    def encoder(self) -> nn.Module:
        """The shared encoder the auxiliary heads sit on (the actor's features extractor)."""
        return self.pi_features_extractor

    def preprocess(self, obs: th.Tensor) -> th.Tensor:
        """Raw observations -> the float input of the encoder (uint8 images scaled to [0, 1]), as SB3 does."""
        return preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images).float()

    def encode(self, obs: th.Tensor) -> th.Tensor:
        """Encoder features [N, features_dim] of raw observations [N, *obs_shape] (float32)."""
        return self._features(obs, self.pi_features_extractor)

    def _features(self, obs: th.Tensor, extractor: nn.Module) -> th.Tensor:
        """One extractor's features of raw observations, in :meth:`encoder_precision`, returned as float32."""
        with self.encoder_precision():
            features = BasePolicy.extract_features(self, obs, extractor)
        return features.float()

    def encode_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """Features [B, T, features_dim] of every observation of ``batch``, computed once per batch."""

        def compute() -> th.Tensor:
            obs = batch.obs
            return self.encode(obs.flatten(0, 1)).unflatten(0, obs.shape[:2])

        return batch.memo("features", compute)

    def core_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """What the actor's head reads [B, T, core_dim] for every observation of ``batch``: the encoder features."""
        return self.encode_sequences(batch)

    def values_of_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """The value head's output [B, T] for every observation of ``batch``."""
        if self.share_features_extractor:
            features = self.encode_sequences(batch).flatten(0, 1)
        else:
            features = self._features(batch.obs.flatten(0, 1), self.vf_features_extractor)
        values = self.value_net(self.mlp_extractor.forward_critic(features))
        return values.view(batch.obs.shape[:2])


class AuxActorCriticCnnPolicy(AuxActorCriticPolicy):
    """``CnnPolicy`` with auxiliary heads (NatureCNN encoder by default)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(*args, **kwargs)


class AuxMultiInputActorCriticPolicy(AuxActorCriticPolicy):
    """``MultiInputPolicy`` with auxiliary heads (tasks that need replay do not support Dict spaces)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(*args, **kwargs)


# ------------------------------------------------------------------------------ recurrent


def lstm_pass(features: th.Tensor, lstm_states: tuple[th.Tensor, th.Tensor], episode_starts: th.Tensor,
              lstm: nn.LSTM) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
    """sb3-contrib's ``_process_sequence`` (features [n_seq * T, in], states [1, n_seq, H], starts [n_seq * T]),
    in one LSTM call where episodes start only at the sequences' first steps.

    sb3-contrib steps through the sequence one LSTM call at a time whenever any step starts an episode.
    Its training minibatches are split at episode starts, so a start is only ever a sequence's first
    step: zeroing those sequences' initial states and running the LSTM once is the same computation
    (the same values; the backward pass sums in another order, so gradients agree to float rounding)
    and, forward and backward, about 12x faster for 128-step sequences. Sequences with a start further
    in (replayed auxiliary sequences that cross an episode's end) keep the loop.
    """
    n_seq = lstm_states[0].shape[1]
    starts = episode_starts.reshape(n_seq, -1)
    if th.any(starts[:, 1:]):
        return RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
    keep = (1.0 - starts[:, 0]).view(1, n_seq, 1)
    sequence = features.reshape(n_seq, -1, lstm.input_size).swapaxes(0, 1)
    output, states = lstm(sequence, (keep * lstm_states[0], keep * lstm_states[1]))
    return th.flatten(output.transpose(0, 1), start_dim=0, end_dim=1), states


class AuxRecurrentActorCriticPolicy(AuxActorCriticPolicy, RecurrentActorCriticPolicy):
    """sb3-contrib's ``RecurrentActorCriticPolicy`` (``MlpLstmPolicy``) plus ``aux_heads``.

    With no task and ``last_action_reward`` off it is sb3-contrib's policy exactly. Recurrent state:
    sb3-contrib's ``RNNStates(pi=(h, c), vf=(h, c))``, h and c [layers, n_envs, H]; with
    ``last_action_reward`` each tuple carries a third tensor, the extra LSTM inputs [n, U] of the
    steps being processed (one row per env while acting, one per step of every sequence in training).

    :param last_action_reward: UNREAL's LSTM input: the last action (one-hot for ``Discrete`` actions,
        the action vector for ``Box`` ones) and the last reward, clipped to [-1, 1], concatenated to the
        features before the LSTM (zero at an episode's first step). Off by default. The reward is the
        training env's (after its reward wrappers); only the algorithm and ``rlaux.evaluate`` know it, so a
        bare ``predict`` loop leaves it 0 unless it calls ``record_rewards`` on the returned state.
    :param lstm_one_pass: run each training sequence through the LSTM in one call (:func:`lstm_pass`):
        the same values, gradients equal to float rounding, about 2x faster PPO updates on a maze. Off
        by default, so that with no task the policy is sb3-contrib's bit for bit; the presets turn it on.
    """

    recurrent = True

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Any, *args: Any,
                 last_action_reward: bool = False, lstm_one_pass: bool = False, **kwargs: Any) -> None:
        self.last_action_reward = bool(last_action_reward)
        self.lstm_one_pass = bool(lstm_one_pass)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)
        if self.last_action_reward:
            if not isinstance(self.action_space, (spaces.Discrete, spaces.Box)):
                raise ConfigError(f"last_action_reward needs Discrete or Box actions, got {self.action_space}")
            # sb3-contrib sizes its LSTMs for the features alone: make them again, wider by the extra inputs.
            width = self.features_dim + self.lstm_input_dim
            self.lstm_actor = self._lstm_like(self.lstm_actor, width)
            if self.lstm_critic is not None:
                self.lstm_critic = self._lstm_like(self.lstm_critic, width)
            self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        self._pending_inputs: th.Tensor | None = None  # the inputs ``predict`` hands to ``_predict`` and back

    def _lstm_like(self, lstm: nn.LSTM, input_size: int) -> nn.LSTM:
        return nn.LSTM(input_size, lstm.hidden_size, num_layers=lstm.num_layers, **self.lstm_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["last_action_reward"] = self.last_action_reward
        data["lstm_one_pass"] = self.lstm_one_pass
        return data

    @property
    def core_dim(self) -> int:
        """Width of the actor's LSTM output, what the actor's head (and pixel control's) reads."""
        return self.lstm_output_dim

    # -- the extra LSTM inputs (UNREAL's last action and reward)

    @property
    def lstm_input_dim(self) -> int:
        """U: the action's one-hot (or vector) and the reward; 0 without ``last_action_reward``."""
        if not self.last_action_reward:
            return 0
        if isinstance(self.action_space, spaces.Discrete):
            return int(self.action_space.n) + 1
        return int(np.prod(self.action_space.shape)) + 1

    def action_inputs(self, actions: th.Tensor) -> th.Tensor:
        """The LSTM inputs [n, U] that follow ``actions`` [n, *action_shape]: the action, and a reward
        slot of 0 until ``record_rewards`` fills it."""
        n = actions.shape[0]
        if isinstance(self.action_space, spaces.Discrete):
            action = nn.functional.one_hot(actions.reshape(n).long(), int(self.action_space.n)).float()
        else:
            action = actions.reshape(n, -1).float()
        return th.cat([action, action.new_zeros(n, 1)], dim=1)

    @staticmethod
    def record_rewards(inputs: th.Tensor | np.ndarray, rewards: Any) -> None:
        """Write ``rewards`` [n], clipped to [-1, 1], into the reward slot of LSTM inputs [n, U], in place."""
        clipped = np.clip(np.asarray(rewards, dtype=np.float32), -1.0, 1.0)
        if isinstance(inputs, th.Tensor):
            inputs[:, -1] = th.as_tensor(clipped, dtype=inputs.dtype, device=inputs.device)
        else:
            inputs[:, -1] = clipped

    def initial_state(self, n_envs: int) -> RNNStates:
        """Zero LSTM states (and inputs) for ``n_envs`` envs, as sb3-contrib starts a rollout."""
        lstm = self.lstm_actor
        shape = (lstm.num_layers, n_envs, lstm.hidden_size)
        pi = (th.zeros(shape, device=self.device), th.zeros(shape, device=self.device))
        vf = (th.zeros(shape, device=self.device), th.zeros(shape, device=self.device))
        if self.last_action_reward:
            inputs = th.zeros(n_envs, self.lstm_input_dim, device=self.device)
            pi, vf = (*pi, inputs), (*vf, inputs)
        return RNNStates(pi, vf)

    def _process_sequence(self, features: th.Tensor, lstm_states: tuple[th.Tensor, ...], episode_starts: th.Tensor,
                          lstm: nn.LSTM) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
        """sb3-contrib's LSTM pass; with ``last_action_reward``, the inputs (third element of the state,
        zeros when absent, as for a truncated episode's terminal value) are reset at episode starts and
        concatenated to the features first."""
        if self.last_action_reward:
            if len(lstm_states) > 2:
                inputs = lstm_states[2] * (1.0 - episode_starts.reshape(-1, 1))
            else:
                inputs = features.new_zeros(features.shape[0], self.lstm_input_dim)
            features = th.cat([features, inputs], dim=1)
        sequence_pass = lstm_pass if self.lstm_one_pass else RecurrentActorCriticPolicy._process_sequence
        return sequence_pass(features, tuple(lstm_states[:2]), episode_starts, lstm)

    def forward(self, obs: th.Tensor, lstm_states: RNNStates, episode_starts: th.Tensor, deterministic: bool = False):
        actions, values, log_prob, states = super().forward(obs, lstm_states, episode_starts, deterministic)
        if self.last_action_reward:
            inputs = self.action_inputs(actions)  # one tensor for both: the reward is written once
            states = RNNStates((*states.pi, inputs), (*states.vf, inputs))
        return actions, values, log_prob, states

    def _predict(self, observation: th.Tensor, lstm_states: tuple[th.Tensor, ...], episode_starts: th.Tensor,
                 deterministic: bool = False) -> tuple[th.Tensor, tuple[th.Tensor, ...]]:
        if self.last_action_reward and len(lstm_states) == 2 and self._pending_inputs is not None:
            lstm_states = (*lstm_states, self._pending_inputs)
        actions, states = super()._predict(observation, lstm_states, episode_starts, deterministic)
        if self.last_action_reward:
            self._pending_inputs = self.action_inputs(actions)
        return actions, states

    def predict(self, observation: Any, state: tuple[np.ndarray, ...] | None = None,
                episode_start: np.ndarray | None = None, deterministic: bool = False):
        """sb3-contrib's ``predict``; with ``last_action_reward`` the state is ``(h, c, inputs)`` and
        the returned inputs hold the action taken and a reward slot for ``record_rewards``."""
        if not self.last_action_reward:
            return super().predict(observation, state, episode_start, deterministic)
        inputs = None if state is None or len(state) < 3 else state[2]
        self._pending_inputs = None if inputs is None else th.as_tensor(inputs, dtype=th.float32, device=self.device)
        try:
            actions, states = super().predict(observation, None if state is None else tuple(state[:2]),
                                              episode_start, deterministic)
            return actions, (*states, self._pending_inputs.cpu().numpy())
        finally:
            self._pending_inputs = None

    # -- the replay's view of the LSTM state

    @property
    def lstm_state_dim(self) -> int:
        """D: values in one env's LSTM state as the replay keeps it (h and c of the actor's LSTM, and of
        the critic's when it has its own)."""
        lstm = self.lstm_actor
        return (1 + (self.lstm_critic is not None)) * 2 * lstm.num_layers * lstm.hidden_size

    def flat_lstm_state(self, states: RNNStates) -> th.Tensor:
        """Each env's LSTM state as one row [n_envs, D]: actor h, c, then critic h, c (each [layers, H])."""
        parts = [*states.pi[:2], *(states.vf[:2] if self.lstm_critic is not None else ())]
        return th.cat([part.transpose(0, 1).flatten(1) for part in parts], dim=1)

    def _state_from_flat(self, flat: th.Tensor | None, critic: bool, batch_size: int) -> tuple[th.Tensor, th.Tensor]:
        """(h, c) [layers, B, H] of the actor's (or critic's) LSTM from rows [B, D]; zeros for ``None``."""
        lstm = self.lstm_actor
        shape = (lstm.num_layers, batch_size, lstm.hidden_size)
        if flat is None:
            return th.zeros(shape, device=self.device), th.zeros(shape, device=self.device)
        parts = flat.view(batch_size, -1, lstm.num_layers, lstm.hidden_size)
        first = 2 if critic else 0
        return parts[:, first].transpose(0, 1).contiguous(), parts[:, first + 1].transpose(0, 1).contiguous()

    def _run_lstm(self, features: th.Tensor, starts: th.Tensor, inputs: th.Tensor | None,
                  state: tuple[th.Tensor, th.Tensor], lstm: nn.LSTM) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
        """Features [B, T, F] through ``lstm`` from ``state``, reset where ``starts`` [B, T] is 1 -> [B, T, H]."""
        b, t = features.shape[:2]
        states = state if inputs is None else (*state, inputs.flatten(0, 1))
        output, state = self._process_sequence(features.flatten(0, 1), states, starts.flatten(), lstm)
        return output.view(b, t, -1), state

    def _replayed_lstm(self, batch: ReplayBatch, critic: bool) -> th.Tensor:
        """The actor's (or critic's) LSTM output [B, N, H] for the N observations of ``batch``: the burn-in
        steps first, without gradient and without output, from the stored state or zeros."""
        window = batch.recurrent
        if window is None:
            raise ValueError("this batch has no LSTM window: sample it with a ReplayRequest(recurrent=True)")
        extractor = self.vf_features_extractor if critic else self.pi_features_extractor
        if critic and not self.share_features_extractor:
            obs = batch.obs
            features = self._features(obs.flatten(0, 1), extractor).unflatten(0, obs.shape[:2])
        else:
            features = self.encode_sequences(batch)
        lstm = self.lstm_critic if critic else self.lstm_actor
        b, k = features.shape[0], window.burn_in
        state = self._state_from_flat(window.state, critic, b)
        inputs = window.inputs
        if k:
            with th.no_grad():
                burn_obs = window.burn_in_obs.flatten(0, 1)
                burn = self._features(burn_obs, extractor).view(b, k, -1)
                _, state = self._run_lstm(burn, window.starts[:, :k], None if inputs is None else inputs[:, :k], state, lstm)
        output, _ = self._run_lstm(features, window.starts[:, k:], None if inputs is None else inputs[:, k:], state, lstm)
        return output

    def core_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """The actor's LSTM output [B, N, core_dim] for the observations of a recurrent batch (computed once)."""
        return batch.memo("core", lambda: self._replayed_lstm(batch, critic=False))

    def values_of_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """The value head's output [B, N] for the observations of a recurrent batch, through the critic's
        LSTM (the actor's, detached, with ``shared_lstm``, as sb3-contrib does; none without critic LSTM)."""
        if self.lstm_critic is not None:
            latent = self._replayed_lstm(batch, critic=True)
        elif self.shared_lstm:
            latent = self.core_sequences(batch).detach()
        else:
            obs = batch.obs
            features = (self.encode_sequences(batch) if self.share_features_extractor else
                        self._features(obs.flatten(0, 1), self.vf_features_extractor)
                        .unflatten(0, obs.shape[:2]))
            latent = self.critic(features)
        values = self.value_net(self.mlp_extractor.forward_critic(latent.flatten(0, 1)))
        return values.view(latent.shape[:2])


class AuxRecurrentActorCriticCnnPolicy(AuxRecurrentActorCriticPolicy):
    """``CnnLstmPolicy`` with auxiliary heads (NatureCNN encoder by default)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(*args, **kwargs)


class AuxRecurrentMultiInputActorCriticPolicy(AuxRecurrentActorCriticPolicy):
    """``MultiInputLstmPolicy`` with auxiliary heads (tasks that need replay do not support Dict spaces)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(*args, **kwargs)
