"""The callbacks that feed the auxiliary replay and UNREAL's LSTM inputs, in rollouts and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecFrameStack


class ReplayFeeder(BaseCallback):
    """Adds each vectorised step to the model's auxiliary replay (with the LSTM state of a recurrent model)."""

    def _on_step(self) -> bool:
        model = self.model
        model.aux_replay.add(
            model._last_obs,
            self.locals["actions"],
            self.locals["rewards"],
            self.locals["dones"],
            model._last_episode_starts,
            **model._replay_lstm_step(),
        )
        return True


def frame_stack_of(env: VecEnv) -> int:
    """Frames stacked in each observation, newest last along the channel axis: the stack size of the
    ``VecFrameStack`` in a VecEnv's wrapper chain, else the ``frame_stack`` attribute of a VecEnv that
    stacks frames itself (EnvPool's, ``rlaux.envs.envpool``), else 1."""
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecFrameStack):
            return env.stacked_obs.n_stack
        env = env.venv
    return int(getattr(env, "frame_stack", 1))


class LastRewardFeeder(BaseCallback):
    """Writes each step's rewards (the env's, before SB3 adds a truncation bootstrap) into the LSTM
    inputs of the next step, which the policy returned with the action just taken."""

    def _on_step(self) -> bool:
        self.model.policy.record_rewards(self.locals["lstm_states"].pi[2], self.locals["rewards"])
        return True


def evaluation_reward_feeder(model: Any) -> Callable[[dict[str, Any], dict[str, Any]], None] | None:
    """A ``callback`` for SB3's ``evaluate_policy`` that writes each step's reward into the LSTM inputs
    of a policy with UNREAL's inputs (in the state its ``predict`` returned); None for other policies."""
    policy = model.policy
    if not getattr(policy, "last_action_reward", False):
        return None

    def feed(locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        i = locals_["i"]
        policy.record_rewards(locals_["states"][2][i : i + 1], [locals_["reward"]])

    return feed


__all__ = ["LastRewardFeeder", "ReplayFeeder", "evaluation_reward_feeder", "frame_stack_of"]
