"""The auxiliary replay: skewed sampling, episode boundaries, frame restacking, memory."""

import numpy as np
import pytest
from gymnasium import spaces

from rlaux.replay import AuxReplayBuffer, ReplayRequest


def fill_synthetic(replay: AuxReplayBuffer, steps: int, reward_rate: float, done_rate: float, seed: int = 0):
    """Steps whose observation encodes (episode id, step in episode) so sequences can be checked."""
    rng = np.random.default_rng(seed)
    n = replay.n_envs
    episode = np.arange(n) * 1_000_000
    step = np.zeros(n)
    starts = np.ones(n, dtype=bool)
    for _ in range(steps):
        obs = np.stack([episode, step], axis=1).astype(np.float32)
        rewards = np.where(rng.random(n) < reward_rate, rng.choice([-1.0, 1.0], n), 0.0)
        dones = rng.random(n) < done_rate
        replay.add(obs, rng.integers(3, size=n), rewards, dones, starts)
        episode = np.where(dones, episode + 1, episode)
        step = np.where(dones, 0, step + 1)
        starts = dones


def vector_replay(capacity=500, n_envs=4, seed=0) -> AuxReplayBuffer:
    space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    return AuxReplayBuffer(capacity, n_envs, space, spaces.Discrete(3), seed=seed)


def test_skewed_sampling_draws_rewarding_sequences_half_the_time_when_rewards_are_rare():
    replay = vector_replay()
    fill_synthetic(replay, 1200, reward_rate=0.01, done_rate=0.01)  # wraps the ring
    request = ReplayRequest(seq_len=3, batch_size=20_000, skewed=True)
    batch = replay.sample(request)
    rewarding = (batch.rewards[:, -1].abs() > 0).float().mean().item()
    assert abs(rewarding - 0.5) < 0.015  # 4+ standard deviations of a fair coin over 20k draws
    assert batch.rewarding_share == pytest.approx(rewarding)
    uniform = replay.sample(ReplayRequest(seq_len=3, batch_size=20_000))
    assert (uniform.rewards[:, -1].abs() > 0).float().mean().item() < 0.05


def test_skewed_sampling_falls_back_to_uniform_and_says_so_without_rewards():
    replay = vector_replay()
    fill_synthetic(replay, 100, reward_rate=0.0, done_rate=0.05)
    batch = replay.sample(ReplayRequest(seq_len=3, batch_size=64, skewed=True))
    assert batch.skew_fallback and batch.rewarding_share == 0.0


@pytest.mark.parametrize("allow_end", [True, False])
def test_no_sampled_sequence_crosses_an_episode_end(allow_end):
    replay = vector_replay(capacity=300)
    fill_synthetic(replay, 1000, reward_rate=0.1, done_rate=0.15)
    request = ReplayRequest(seq_len=8, batch_size=5000, next_obs=True, allow_episode_end=allow_end)
    batch = replay.sample(request)
    episode, step = batch.obs[..., 0], batch.obs[..., 1]
    seq = slice(0, request.seq_len)
    assert (episode[:, seq] == episode[:, :1]).all()
    assert (step[:, seq] == step[:, :1] + np.arange(request.seq_len)).all()
    assert (batch.dones[:, :-1] == 0).all()
    ended = batch.dones[:, -1] == 1
    # the observation after the sequence is the same episode's unless the episode ended there
    assert (episode[~ended, -1] == episode[~ended, 0]).all()
    assert (episode[ended, -1] != episode[ended, 0]).all()
    if allow_end:
        assert ended.any()
    else:
        assert not ended.any()


def test_reset_between_learn_calls_closes_the_episode():
    replay = vector_replay(capacity=50, n_envs=1)
    space_obs = np.zeros((1, 2), np.float32)
    for t in range(10):
        replay.add(space_obs + t, [0], [0.0], [False], [t == 0 or t == 5])
    batch = replay.sample(ReplayRequest(seq_len=3, batch_size=500, next_obs=True))
    step = batch.obs[..., 1]
    crossing = (step[:, 0] < 5) & (step[:, 2] >= 5)
    assert not crossing.any()


def test_memory_stays_within_capacity():
    replay = vector_replay(capacity=100, n_envs=3)
    before = replay.nbytes
    fill_synthetic(replay, 1000, reward_rate=0.1, done_rate=0.05)
    assert replay.size == 100 and replay.nbytes == before
    per_step = 2 * 4 + 8 + 4 + 1 + 8  # obs float32 x2, action int64, reward, done, episode step
    assert before == 100 * 3 * per_step


def test_frame_stacked_images_are_stored_one_frame_per_step_and_restacked_exactly():
    """Against the real thing: Atari Breakout through SB3's AtariWrapper and VecFrameStack."""
    import ale_py  # noqa: F401
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

    gym.register_envs(ale_py)
    env = VecTransposeImage(VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=2, seed=0), 4))
    capacity = 150
    replay = AuxReplayBuffer(capacity, 2, env.observation_space, env.action_space, frame_stack=4, seed=0)
    assert replay.frames.shape == (capacity, 2, 1, 84, 84) and replay.frames.dtype == np.uint8
    truth = np.zeros((capacity, 2, 4, 84, 84), np.uint8)
    obs, starts = env.reset(), np.ones(2, dtype=bool)
    rng = np.random.default_rng(0)
    for _ in range(400):  # wraps the ring; life losses end episodes often
        actions = rng.integers(4, size=2)
        truth[replay.pos] = obs
        new_obs, rewards, dones, _ = env.step(actions)
        replay.add(obs, actions, rewards, dones, starts)
        obs, starts = new_obs, dones
    env.close()
    assert replay.dones.any()
    ends = replay.valid_ends(ReplayRequest(seq_len=5, batch_size=1, next_obs=True))
    end_slot, env_idx = np.divmod(ends, 2)
    slots = (end_slot[:, None] + np.arange(-4, 2)) % capacity
    rebuilt = replay._observations(slots, env_idx[:, None])
    # the next observation after an episode end was stored as the new episode's first frame
    np.testing.assert_array_equal(rebuilt, truth[slots, env_idx[:, None]])


def test_up_to_seq_len_sequences_mask_the_steps_before_their_episode_began():
    replay = vector_replay(capacity=300)
    fill_synthetic(replay, 600, reward_rate=0.1, done_rate=0.2)  # episodes mostly shorter than 10 steps
    strict = ReplayRequest(seq_len=10, batch_size=4000, next_obs=True)
    loose = ReplayRequest(seq_len=10, batch_size=4000, next_obs=True, min_len=1)
    assert replay.valid_ends(loose).size > 3 * replay.valid_ends(strict).size
    batch = replay.sample(loose)
    episode, step = batch.obs[..., 0], batch.obs[..., 1]
    last_episode = episode[:, 9:10]
    assert (batch.mask[:, -1] == 1).all() and (batch.mask[:, 0] == 0).any()
    # masked steps are exactly those of an earlier episode; unmasked ones are consecutive steps of the last
    assert ((episode[:, :10] == last_episode) == (batch.mask == 1)).all()
    assert ((step[:, :10] == step[:, 9:10] - (9 - np.arange(10))) | (batch.mask == 0)).all()
    assert (batch.dones * batch.mask)[:, :-1].sum() == 0
    assert (replay.sample(strict).mask == 1).all()
