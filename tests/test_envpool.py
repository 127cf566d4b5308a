"""``make_vec_env(spec, vec_env="envpool")`` side by side with the default Atari path."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from rlaux.algorithms import frame_stack_of
from rlaux.envs import make_vec_env, resolve_env
from rlaux.errors import ConfigError
from rlaux.replay import AuxReplayBuffer
from rlaux.tasks.pixel_control import PixelControl, pixel_control_rewards


def _envpool_ok() -> bool:
    try:
        import envpool  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


needs_envpool = pytest.mark.skipif(not _envpool_ok(), reason="envpool is not installed (pip install 'rlaux[envpool]')")


def _roll(venv, steps: int, seed: int = 0) -> dict:
    """Random actions; per-step rewards and dones, Monitor-style episodes, terminal observations."""
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    n = venv.num_envs
    first = obs.copy()
    rewards, dones, episodes, step_sums, terminal = [], 0, [], [], 0
    since_game = np.zeros(n)
    for _ in range(steps):
        obs, reward, done, infos = venv.step(rng.integers(venv.action_space.n, size=n))
        assert obs.shape == first.shape and obs.dtype == np.uint8
        rewards.append(reward.copy())
        since_game += reward
        dones += int(done.sum())
        for i, info in enumerate(infos):
            if done[i]:
                terminal += 1
                assert info["terminal_observation"].shape == first.shape[1:]
            if "episode" in info:
                assert done[i]
                episodes.append(info["episode"])
                step_sums.append(since_game[i])
                since_game[i] = 0
    return {"first": first, "rewards": np.concatenate(rewards), "dones": dones, "episodes": episodes,
            "step_sums": step_sums, "terminal": terminal}


@needs_envpool
@pytest.mark.parametrize("training", [True, False])
def test_same_observations_and_actions(training):
    spec = resolve_env("Atari", game="Breakout")
    default = make_vec_env(spec, n_envs=2, seed=0, vec_env="dummy", training=training)
    pool = make_vec_env(spec, n_envs=2, seed=0, vec_env="envpool", training=training)
    try:
        assert pool.observation_space == default.observation_space  # Box(0, 255, (4, 84, 84), uint8)
        assert pool.observation_space.shape == (4, 84, 84) and pool.observation_space.dtype == np.uint8
        assert pool.action_space == default.action_space  # Discrete(4): the minimal action set
        a, b = default.reset(), pool.reset()
        assert a.shape == b.shape == (2, 4, 84, 84) and a.dtype == b.dtype == np.uint8
        # Same picture up to grey conversion: ALE's palette (EnvPool) vs cv2 from RGB (SB3)
        assert abs(float(a[:, -1].mean()) - float(b[:, -1].mean())) < 3.0
    finally:
        default.close()
        pool.close()


@needs_envpool
@pytest.mark.parametrize("vec_env", ["dummy", "envpool"])
def test_training_mode_clips_rewards_and_ends_lives(vec_env):
    spec = resolve_env("Atari", game="SpaceInvaders")
    venv = make_vec_env(spec, n_envs=2, seed=0, vec_env=vec_env, training=True)
    try:
        r = _roll(venv, 1500)
    finally:
        venv.close()
    assert set(np.unique(r["rewards"])) <= {-1.0, 0.0, 1.0} and r["rewards"].max() == 1.0
    assert r["terminal"] == r["dones"]
    # life losses are dones; Monitor-style episodes come once a game, with the raw score
    assert r["episodes"], "no game finished"
    assert r["dones"] >= 3 * len(r["episodes"])  # SpaceInvaders: 3 lives a game
    assert any(ep["r"] > sum_clipped for ep, sum_clipped in zip(r["episodes"], r["step_sums"], strict=True))
    assert all(ep["r"] % 5 == 0 for ep in r["episodes"])


@needs_envpool
@pytest.mark.parametrize("vec_env", ["dummy", "envpool"])
def test_evaluation_mode_full_games_raw_scores(vec_env):
    spec = resolve_env("Atari", game="SpaceInvaders")
    venv = make_vec_env(spec, n_envs=2, seed=0, vec_env=vec_env, training=False)
    try:
        r = _roll(venv, 1500)
        assert venv.env_is_wrapped(__import__("stable_baselines3").common.monitor.Monitor) == [True, True]
    finally:
        venv.close()
    assert r["rewards"].max() > 1  # raw points
    assert r["episodes"] and r["dones"] == len(r["episodes"])  # every done is a game's end
    for ep, step_sum in zip(r["episodes"], r["step_sums"], strict=True):
        assert ep["r"] == pytest.approx(step_sum)  # the score is the sum of the (raw) step rewards
        assert ep["l"] > 50  # agent steps, as Monitor above the frame skip counts them


@needs_envpool
def test_envpool_monitor_files_and_seed(tmp_path):
    from stable_baselines3.common.monitor import load_results

    spec = resolve_env("Atari", game="Breakout")
    venv = make_vec_env(spec, n_envs=2, seed=3, vec_env="envpool", training=True, monitor_dir=str(tmp_path))
    try:
        r = _roll(venv, 600)
    finally:
        venv.close()
    frame = load_results(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.monitor.csv", "1.monitor.csv"]
    assert len(frame) == len(r["episodes"]) > 0
    # same seed, same observations; another seed, others
    a = make_vec_env(spec, n_envs=2, seed=3, vec_env="envpool")
    b = make_vec_env(spec, n_envs=2, seed=3, vec_env="envpool")
    try:
        ra, rb = _roll(a, 100), _roll(b, 100)
        assert np.array_equal(ra["first"], rb["first"]) and np.array_equal(ra["rewards"], rb["rewards"])
        b.seed(4)  # EnvPool fixes seeds at creation: the pool is remade at the next reset
        assert b.reset().shape == (2, 4, 84, 84) and b.pool.config["seed"] == 4
    finally:
        a.close()
        b.close()


def test_envpool_errors():
    with pytest.raises(ConfigError, match="Atari envs only"):
        make_vec_env(resolve_env("MinAtar"), n_envs=1, vec_env="envpool")
    with pytest.raises(ConfigError, match="envpool"):
        make_vec_env(resolve_env("MinAtar"), n_envs=1, vec_env="nope")


def test_envpool_missing(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "envpool", None)
    with pytest.raises(ConfigError, match=r'--vec-env envpool needs the optional package envpool: pip install "rlaux\[envpool\]"'):
        make_vec_env(resolve_env("Atari"), n_envs=1, vec_env="envpool")


# ------------------------------------------------------------------ frame stacks and pixel control


class ScriptedFrames(gym.Env):
    """84x84 grey frames drawn from a seeded RNG; episodes of 5, 9, 6, ... steps. ``stack`` > 1 stacks the
    frames inside the env as EnvPool does: newest last, a new episode's stack filled with its first frame."""

    def __init__(self, seed: int, stack: int = 1) -> None:
        self.rng = np.random.default_rng(seed)
        self.stack = stack
        self.observation_space = gym.spaces.Box(0, 255, (stack, 84, 84), np.uint8)
        self.action_space = gym.spaces.Discrete(3)
        self.lengths = iter([5, 9, 6, 12, 7, 30])
        self.frames: list[np.ndarray] = []

    def _frame(self) -> np.ndarray:
        return self.rng.integers(0, 256, (1, 84, 84), dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        self.t, self.length = 0, next(self.lengths)
        self.frames = [self._frame()] * self.stack
        return np.concatenate(self.frames[-self.stack :]), {}

    def step(self, action):
        self.t += 1
        self.frames.append(self._frame())
        return np.concatenate(self.frames[-self.stack :]), 0.0, self.t == self.length, False, {}


class SelfStackingVecEnv(DummyVecEnv):
    """A VecEnv that stacks frames itself and says how many, as ``EnvPoolAtariVecEnv`` does."""

    frame_stack = 4


def _replay_of(venv, steps: int = 40) -> AuxReplayBuffer:
    replay = AuxReplayBuffer(64, venv.num_envs, venv.observation_space, venv.action_space,
                             frame_stack=frame_stack_of(venv), seed=0)
    obs, starts = venv.reset(), np.ones(venv.num_envs, dtype=bool)
    for t in range(steps):
        actions = np.full(venv.num_envs, t % 3)
        next_obs, rewards, dones, _ = venv.step(actions)
        replay.add(obs, actions, rewards, dones, starts)
        obs, starts = next_obs, dones
    return replay


def test_envpool_and_default_paths_give_the_same_pixel_control_rewards():
    default = VecFrameStack(DummyVecEnv([lambda i=i: ScriptedFrames(i) for i in range(2)]), 4, channels_order="first")
    pooled = SelfStackingVecEnv([lambda i=i: ScriptedFrames(i, stack=4) for i in range(2)])
    assert default.observation_space == pooled.observation_space  # [4, 84, 84] uint8 both
    assert frame_stack_of(default) == frame_stack_of(pooled) == 4
    task = PixelControl(seq_len=20, batch_size=32)
    replays = [_replay_of(default), _replay_of(pooled)]
    batches = [replay.sample(task.replay_request()) for replay in replays]  # same seed, same sequences
    rewards = [task.pseudo_rewards(batch, default.observation_space) for batch in batches]
    assert rewards[0].shape == (32, 20, 20, 20) and rewards[0].abs().sum() > 0
    assert th.equal(rewards[0], rewards[1])
    # they are the per-frame change of the newest frames, not the moving average over the whole stack
    newest = batches[1].obs[:, :, -1:, 2:82, 2:82].float() / 255.0
    assert th.allclose(rewards[1], pixel_control_rewards(newest, 4))
    whole_stack = batches[1].obs[:, :, :, 2:82, 2:82].float() / 255.0
    assert not th.allclose(rewards[1], pixel_control_rewards(whole_stack, 4), atol=1e-3)


@needs_envpool
def test_envpool_stacks_newest_last_and_the_replay_keeps_the_newest_frame():
    spec = resolve_env("Atari", game="Breakout")
    pool = make_vec_env(spec, n_envs=2, seed=0, vec_env="envpool", training=True)
    try:
        assert frame_stack_of(pool) == pool.frame_stack == 4
        replay = AuxReplayBuffer(100, 2, pool.observation_space, pool.action_space, frame_stack=frame_stack_of(pool))
        rng = np.random.default_rng(0)
        obs, starts, history, shifted = pool.reset(), np.ones(2, dtype=bool), [], 0
        for _ in range(60):
            actions = rng.integers(pool.action_space.n, size=2)
            next_obs, rewards, dones, _ = pool.step(actions)
            replay.add(obs, actions, rewards, dones, starts)
            history.append(obs)
            for i in np.flatnonzero(~dones):  # the stack moves one frame towards the front
                assert np.array_equal(next_obs[i, :-1], obs[i, 1:])
                shifted += int(not np.array_equal(next_obs[i, -1], obs[i, -1]))
            obs, starts = next_obs, dones
    finally:
        pool.close()
    assert shifted > 20  # the newest frames changed: the check above was not trivially true
    assert replay.frames.shape == (100, 2, 1, 84, 84)
    assert np.array_equal(replay.frames[:60, :, 0], np.stack(history)[:, :, -1])
