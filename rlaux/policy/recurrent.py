"""sb3-contrib's recurrent actor-critic policy with the heads of the auxiliary tasks, and the one-call LSTM pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from torch import nn

from rlaux.errors import ConfigError
from rlaux.policy.feedforward import AuxActorCriticPolicy
from rlaux.replay import ReplayBatch


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

    def values_of_sequences(self, batch: ReplayBatch, through_shared_lstm: bool = False) -> th.Tensor:
        """The value head's output [B, N] for the observations of a recurrent batch, through the critic's
        LSTM (the actor's, detached, with ``shared_lstm``, as sb3-contrib does; none without critic LSTM).
        ``through_shared_lstm``: with ``shared_lstm``, the actor's LSTM output is not detached, so the
        loss's gradient reaches the LSTM the policy reads (UNREAL's one LSTM for policy and value)."""
        if self.lstm_critic is not None:
            latent = self._replayed_lstm(batch, critic=True)
        elif self.shared_lstm:
            latent = self.core_sequences(batch) if through_shared_lstm else self.core_sequences(batch).detach()
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


__all__ = ["AuxRecurrentActorCriticCnnPolicy", "AuxRecurrentActorCriticPolicy", "AuxRecurrentMultiInputActorCriticPolicy", "lstm_pass"]
