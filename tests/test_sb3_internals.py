"""Every Stable-Baselines3 / sb3-contrib internal that rlaux reads or writes, pinned (docs/sb3-internals.md).

These are the places an SB3 upgrade breaks first. Each test names what rlaux relies on and fails, saying
which, on a version that changes it; behaviour is checked where it can be (a tiny run), source otherwise.
"""

from __future__ import annotations

import inspect

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack


class Seen(BaseCallback):
    """Records what rlaux's rollout callbacks read, at the first step."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, object] = {}

    def _on_step(self) -> bool:
        if not self.seen:
            self.seen = {"locals": set(self.locals), "last_obs": getattr(self.model, "_last_obs", None),
                         "last_starts": getattr(self.model, "_last_episode_starts", None),
                         "lstm": getattr(self.model, "_last_lstm_states", None)}
        return True


@pytest.mark.parametrize("cls", [PPO, A2C])
def test_rollout_callback_locals_and_last_obs(cls):
    """rlaux.algorithms.ReplayFeeder reads self.locals["actions"/"rewards"/"dones"] and model._last_obs,
    model._last_episode_starts in collect_rollouts' callback."""
    callback = Seen()
    kwargs = {"batch_size": 8} if cls is PPO else {}
    cls("MlpPolicy", "CartPole-v1", n_steps=8, seed=0, device="cpu", **kwargs).learn(8, callback=callback)
    assert {"actions", "rewards", "dones", "infos", "new_obs"} <= callback.seen["locals"], callback.seen["locals"]
    assert isinstance(callback.seen["last_obs"], np.ndarray) and isinstance(callback.seen["last_starts"], np.ndarray)


def test_recurrent_rollout_locals_and_lstm_states():
    """rlaux's LastRewardFeeder reads self.locals["lstm_states"].pi and ["rewards"]; AuxRecurrentPPO reads and
    writes model._last_lstm_states (RNNStates of (h, c) tuples)."""
    callback = Seen()
    RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=8, batch_size=8, seed=0, device="cpu").learn(8, callback=callback)
    assert {"lstm_states", "rewards", "actions", "dones"} <= callback.seen["locals"]
    assert isinstance(callback.seen["lstm"], RNNStates) and len(callback.seen["lstm"].pi) == 2


def test_process_sequence_signature():
    """rlaux.policy calls RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
    as a static method and overrides it."""
    method = inspect.getattr_static(RecurrentActorCriticPolicy, "_process_sequence")
    assert isinstance(method, staticmethod)
    assert list(inspect.signature(RecurrentActorCriticPolicy._process_sequence).parameters) == [
        "features", "lstm_states", "episode_starts", "lstm"]


def test_evaluate_policy_callback_locals():
    """rlaux.algorithms.evaluation_reward_feeder reads locals_["i"], ["states"], ["reward"] in evaluate_policy's
    callback."""
    seen: set[str] = set()
    model = RecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=8, batch_size=8, seed=0, device="cpu")
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    evaluate_policy(model, env, n_eval_episodes=1, callback=lambda locals_, globals_: seen.update(locals_))
    assert {"i", "states", "reward"} <= seen


def test_max_grad_norm_is_read_by_train():
    """AuxAlgorithmMixin.train swaps self.max_grad_norm for inf around super().train() (the update guard clips
    instead): each train() must read it from self at clip time."""
    for cls in (PPO, A2C, RecurrentPPO):
        assert "clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)" in inspect.getsource(cls.train), cls


def test_on_policy_private_api():
    """Overridden or read by rlaux: _init_callback(callback, progress_bar), _excluded_save_params(),
    dump_logs(iteration), _current_progress_remaining, _total_timesteps, learn's 4th parameter tb_log_name;
    _setup_learn resets the env when _last_obs is None (rlaux.run.checkpoint sets it so)."""
    assert list(inspect.signature(BaseAlgorithm._init_callback).parameters)[1:] == ["callback", "progress_bar"]
    assert list(inspect.signature(OnPolicyAlgorithm.dump_logs).parameters)[1:] == ["iteration"]
    assert "_excluded_save_params" in vars(BaseAlgorithm)
    for cls in (PPO, A2C, RecurrentPPO):
        assert list(inspect.signature(cls.learn).parameters)[1:5] == [
            "total_timesteps", "callback", "log_interval", "tb_log_name"], cls
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=8, batch_size=8, seed=0, device="cpu")
    model.learn(8)
    assert model._current_progress_remaining == pytest.approx(0.0) and model._total_timesteps == 8
    assert "self._last_obs is None" in inspect.getsource(BaseAlgorithm._setup_learn)


@pytest.mark.parametrize("cls", [PPO, A2C, RecurrentPPO])
def test_setup_model_builds_the_policy_from_policy_kwargs(cls):
    """AuxAlgorithmMixin._setup_model hands the tasks to the policy by putting them into ``self.policy_kwargs``
    for the one call of ``super()._setup_model()``; SB3 must build the policy from that attribute there."""
    source = inspect.getsource(cls._setup_model) + inspect.getsource(OnPolicyAlgorithm._setup_model)
    assert "**self.policy_kwargs" in source, cls
    policy = "MlpLstmPolicy" if cls is RecurrentPPO else "MlpPolicy"
    model = cls(policy, "CartPole-v1", n_steps=8, seed=0, device="cpu", _init_setup_model=False,
                **({"batch_size": 8} if cls is not A2C else {}))
    model.policy_kwargs = {"net_arch": [7]}
    model._setup_model()
    assert model.policy.net_arch == [7]


def test_logger_pending_values():
    """rlaux.run.checkpoint saves and restores the values recorded but not dumped: Logger.name_to_value,
    name_to_count, name_to_excluded; model._logger is absent until learn() or set_logger() sets it."""
    logger = Logger(folder=None, output_formats=[])
    logger.record("a", 1.0)
    assert logger.name_to_value == {"a": 1.0} and set(vars(logger)) >= {"name_to_value", "name_to_count",
                                                                      "name_to_excluded"}
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=8, batch_size=8, device="cpu")
    assert getattr(model, "_logger", None) is None  # checkpoint.py reads it with getattr(model, "_logger", None)
    model.learn(8)
    assert isinstance(model._logger, Logger)


def test_vec_env_internals():
    """rlaux.envs.vec.InfoSharingDummyVecEnv replaces DummyVecEnv.buf_infos (a list that step_wait deep-copies);
    rlaux.algorithms finds the frame stack of a VecFrameStack as stacked_obs.n_stack."""
    env = DummyVecEnv([lambda: gym.make("CartPole-v1")])
    assert isinstance(env.buf_infos, list) and "deepcopy(self.buf_infos)" in inspect.getsource(DummyVecEnv.step_wait)
    stacked = VecFrameStack(env, n_stack=3)
    assert stacked.stacked_obs.n_stack == 3
    stacked.close()


def test_rnn_states_fields():
    """AuxRecurrentPPO rebuilds RNNStates(pi, vf) from stored states."""
    states = RNNStates((th.zeros(1), th.zeros(1)), (th.zeros(1), th.zeros(1)))
    assert states._fields == ("pi", "vf")
