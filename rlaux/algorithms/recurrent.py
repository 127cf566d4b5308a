"""sb3-contrib's RecurrentPPO with auxiliary tasks, and the rollout buffers that keep UNREAL's LSTM inputs."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy

from rlaux.algorithms.callbacks import LastRewardFeeder
from rlaux.algorithms.mixin import AuxAlgorithmMixin
from rlaux.policy import (
    AuxRecurrentActorCriticCnnPolicy,
    AuxRecurrentActorCriticPolicy,
    AuxRecurrentMultiInputActorCriticPolicy,
)


class RecordsLstmInputs:
    """Mixin for sb3-contrib's recurrent rollout buffers: also keeps the extra LSTM inputs of every step
    (the third element of each ``RNNStates`` tuple, [n_envs, U]) and hands them to training, padded as
    the observations, as the third element of the minibatch's states ([n_seq * max_len, U])."""

    def __init__(self, *args: Any, lstm_input_dim: int, **kwargs: Any) -> None:
        self.lstm_input_dim = lstm_input_dim  # U, read by reset(), which the base class's __init__ calls
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self.lstm_inputs = np.zeros((self.buffer_size, self.n_envs, self.lstm_input_dim), dtype=np.float32)

    def add(self, *args: Any, lstm_states: RNNStates, **kwargs: Any) -> None:
        self.lstm_inputs[self.pos] = lstm_states.pi[2].cpu().numpy()
        super().add(*args, lstm_states=lstm_states, **kwargs)  # type: ignore[misc]

    def get(self, batch_size: int | None = None) -> Any:
        if not self.generator_ready:  # flattened as sb3-contrib flattens the observations
            self.lstm_inputs = self.swap_and_flatten(self.lstm_inputs)  # type: ignore[attr-defined]
        yield from super().get(batch_size)  # type: ignore[misc]

    def _get_samples(self, batch_inds: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        samples = super()._get_samples(batch_inds, *args, **kwargs)  # type: ignore[misc]
        inputs = self.pad(self.lstm_inputs[batch_inds]).flatten(0, 1)  # the padding sb3-contrib just used
        pi, vf = samples.lstm_states
        return samples._replace(lstm_states=RNNStates((*pi, inputs), (*vf, inputs)))


class LstmInputsRolloutBuffer(RecordsLstmInputs, RecurrentRolloutBuffer):
    """sb3-contrib's ``RecurrentRolloutBuffer`` that keeps the LSTM inputs too."""


class LstmInputsDictRolloutBuffer(RecordsLstmInputs, RecurrentDictRolloutBuffer):
    """sb3-contrib's ``RecurrentDictRolloutBuffer`` that keeps the LSTM inputs too."""


class AuxRecurrentPPO(AuxAlgorithmMixin, RecurrentPPO):
    """sb3-contrib's RecurrentPPO with auxiliary tasks:
    ``AuxRecurrentPPO("CnnLstmPolicy", env, aux_tasks=["unreal"])``.

    Value replay and pixel control run their replayed sequences through the LSTM (see their
    ``lstm_start`` and ``burn_in``); tasks that cannot work with an LSTM say so at construction.
    UNREAL's LSTM inputs: ``policy_kwargs=dict(last_action_reward=True)``.

    :param aux_lstm_state_dtype: how the replay keeps the LSTM state of each step: ``"float16"``
        (default, half the memory) or ``"float32"`` (bit for bit the state the policy had).
    """

    algo_name = "ppo_lstm"
    weights_like = "ppo"  # the tasks' PPO weights
    recurrent = True
    env_policies = {"MlpPolicy": "MlpLstmPolicy", "CnnPolicy": "CnnLstmPolicy", "MultiInputPolicy": "MultiInputLstmPolicy"}
    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": AuxRecurrentActorCriticPolicy,
        "CnnLstmPolicy": AuxRecurrentActorCriticCnnPolicy,
        "MultiInputLstmPolicy": AuxRecurrentMultiInputActorCriticPolicy,
    }

    def __init__(self, *args: Any, aux_lstm_state_dtype: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, aux_lstm_state_dtype=aux_lstm_state_dtype, **kwargs)  # one of the aux settings

    def _setup_model(self) -> None:
        super()._setup_model()
        policy = self.policy
        if policy.last_action_reward:
            # sb3-contrib makes its buffer and zero states without the inputs: the same, with them.
            buffer = self.rollout_buffer
            buffer_class = (LstmInputsDictRolloutBuffer if isinstance(self.observation_space, spaces.Dict)
                            else LstmInputsRolloutBuffer)
            self.rollout_buffer = buffer_class(
                self.n_steps, self.observation_space, self.action_space, buffer.hidden_state_shape, self.device,
                gamma=self.gamma, gae_lambda=self.gae_lambda, n_envs=self.n_envs, lstm_input_dim=policy.lstm_input_dim,
            )
            self._last_lstm_states = policy.initial_state(self.n_envs)

    def _replay_lstm_layout(self) -> dict[str, Any]:
        requests = [t.replay_request() for t in self.aux_tasks]
        recurrent = [r for r in requests if r is not None and r.recurrent]
        return {
            "lstm_state_dim": self.policy.lstm_state_dim if any(r.stored_state for r in recurrent) else 0,
            "lstm_input_dim": self.policy.lstm_input_dim if recurrent else 0,
            "lstm_state_dtype": self.aux_lstm_state_dtype,
        }

    def _replay_lstm_step(self) -> dict[str, Any]:
        replay, states = self.aux_replay, self._last_lstm_states
        step = {}
        if replay.lstm_states is not None:
            step["lstm_states"] = self.policy.flat_lstm_state(states).cpu().numpy()
        if replay.lstm_inputs is not None:
            step["lstm_inputs"] = states.pi[2].cpu().numpy()
        return step

    def _step_feeders(self) -> list[BaseCallback]:
        feeders = super()._step_feeders()
        return [*feeders, LastRewardFeeder()] if self.policy.last_action_reward else feeders

    def rollout_state(self) -> dict[str, th.Tensor]:
        """The LSTM states the next rollout starts from (``pi_h``, ``pi_c``, ``vf_h``, ``vf_c``, each
        [layers, n_envs, H]) and, with UNREAL's inputs, ``inputs`` [n_envs, U]."""
        states = self._last_lstm_states
        state = dict(zip(("pi_h", "pi_c", "vf_h", "vf_c"), (t.detach().cpu() for t in (*states.pi[:2], *states.vf[:2]))))
        if self.policy.last_action_reward:
            state["inputs"] = states.pi[2].detach().cpu()
        return state

    def load_rollout_state(self, state: dict[str, th.Tensor]) -> None:
        """Put back what :meth:`rollout_state` returned; ValueError when it is not this model's."""
        expected = self.rollout_state()
        for name, tensor in expected.items():
            if name not in state or tuple(state[name].shape) != tuple(tensor.shape):
                got = tuple(state[name].shape) if name in state else "nothing"
                raise ValueError(f"rollout state '{name}' is {got}, expected {tuple(tensor.shape)}")
        loaded = {name: state[name].to(self.device) for name in expected}
        pi, vf = (loaded["pi_h"], loaded["pi_c"]), (loaded["vf_h"], loaded["vf_c"])
        if "inputs" in loaded:
            pi, vf = (*pi, loaded["inputs"]), (*vf, loaded["inputs"])
        self._last_lstm_states = RNNStates(pi, vf)


__all__ = ["AuxRecurrentPPO", "LstmInputsDictRolloutBuffer", "LstmInputsRolloutBuffer", "RecordsLstmInputs"]
