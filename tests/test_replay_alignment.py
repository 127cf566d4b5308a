"""The replay stores exactly the step SB3 acted on.

rlaux feeds the replay from SB3's internals (``_last_obs``, ``_last_episode_starts`` and
``collect_rollouts``' locals), whose order nothing in SB3 promises. This pins it: on an
env whose reward is a known function of observation and action, with time-limit
truncations, every stored step must hold the observation acted on, that action, the
raw reward of that pair (not SB3's truncation bootstrap) and the episode end.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.vec_env import DummyVecEnv

from rlaux import AuxA2C, AuxPPO

TIME_LIMIT = 7


def reward_of(obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """The env's reward: a known function of the observation acted on and the action."""
    return (10.0 * obs[..., 2] + action).astype(np.float32)


class KnownRewardEnv(gym.Env):
    """Observation [episode id, step in episode, random draw]; reward ``reward_of(obs, action)``;
    terminates with probability 0.05 per step (TimeLimit truncates the rest)."""

    observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = spaces.Discrete(3)

    def __init__(self, rank: int) -> None:
        self.episode = rank * 10_000 - 1
        self.t = 0

    def _obs(self) -> np.ndarray:
        self.draw = float(self.np_random.random())
        return np.array([self.episode, self.t, self.draw], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        self.obs = self._obs()
        return self.obs, {}

    def step(self, action):
        reward = float(reward_of(self.obs, np.asarray(action)))
        self.t += 1
        terminated = bool(self.np_random.random() < 0.05)
        self.obs = self._obs()
        return self.obs, reward, terminated, False, {}


@pytest.mark.parametrize("algo", [AuxPPO, AuxA2C])
def test_replay_holds_the_observation_acted_on_its_action_raw_reward_and_episode_end(algo):
    n_envs, n_steps = 3, 40
    env = DummyVecEnv([lambda rank=rank: TimeLimit(KnownRewardEnv(rank), TIME_LIMIT) for rank in range(n_envs)])
    model = algo("MlpPolicy", env, aux_tasks=["value_replay"], n_steps=n_steps, seed=0,
                 aux_replay_capacity=1000, **({"batch_size": 40} if algo is AuxPPO else {}))
    model.learn(2 * n_steps * n_envs)

    stored = model.aux_replay.arrays()
    size = int(stored["meta"][4])
    assert size == 2 * n_steps  # one slot per vectorised step, nothing skipped or doubled
    obs, actions = stored["frames"][:size], stored["actions"][:size].reshape(size, n_envs)
    rewards, dones, episode_step = stored["rewards"][:size], stored["dones"][:size], stored["episode_step"][:size]

    # Each step holds the observation acted on, the action taken on it and the raw reward of that pair.
    np.testing.assert_array_equal(rewards, reward_of(obs, actions))
    # Step counters follow the env's own: the stored observation is the one before the step, never after.
    np.testing.assert_array_equal(episode_step, obs[..., 1])
    # An episode ends where the next stored observation begins a new one (termination or truncation).
    next_episode_begins = obs[1:, :, 0] != obs[:-1, :, 0]
    np.testing.assert_array_equal(dones[:-1], next_episode_begins)
    at_limit = obs[..., 1] == TIME_LIMIT - 1  # steps that end their episode by truncation
    assert (dones & at_limit).any(), "the run must include time-limit truncations"

    # The last rollout in SB3's buffer is the same steps as the newest stored ones.
    buffer = model.rollout_buffer
    assert buffer.generator_ready  # train() has flattened it env-major: [n_envs * n_steps, ...]

    def per_step(array: np.ndarray) -> np.ndarray:
        return array.reshape(n_envs, n_steps, *array.shape[1:]).swapaxes(0, 1)

    np.testing.assert_array_equal(per_step(buffer.observations), obs[-n_steps:])
    np.testing.assert_array_equal(per_step(buffer.actions).reshape(n_steps, n_envs), actions[-n_steps:])
    # SB3 adds the bootstrap of truncated episodes to its own rewards; the replay keeps them raw.
    bootstrapped = buffer.rewards != rewards[-n_steps:]  # rewards are not flattened by get()
    assert bootstrapped.any()
    assert not (bootstrapped & ~at_limit[-n_steps:]).any(), "only truncated steps may differ from the raw reward"
