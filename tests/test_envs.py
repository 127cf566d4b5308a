"""Env presets and env construction (rlaux.envs, rlaux.presets, rlaux.networks). CPU, fast."""

from __future__ import annotations

import csv
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common import atari_wrappers as sb3_atari
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecTransposeImage

from rlaux.envs import (
    MinAtarImage,
    make_vec_env,
    miniworld_available,
    resolve_env,
)
from rlaux.errors import ConfigError
from rlaux.networks import (
    FEATURE_EXTRACTORS,
    MinAtarCNN,
    NatureCNN,
    conv_feature_maps,
    sb3_policy_kwargs,
    without_rlaux_kwargs,
)
from rlaux.presets import list_presets, load_preset, preset_source


def _step(venv, n=5):
    obs = venv.reset()
    for _ in range(n):
        obs, rewards, dones, infos = venv.step(np.array([venv.action_space.sample() for _ in range(venv.num_envs)]))
    return obs


def _wrapper_chain(env: gym.Env) -> list[type]:
    chain = []
    while True:
        chain.append(type(env))
        if not hasattr(env, "env"):
            return chain
        env = env.env


# ------------------------------------------------------------------ presets


def test_presets_load_from_checkout():
    names = list_presets("envs")
    for expected in ("Atari", "AtariRGB", "MinAtar", "MiniWorld"):
        assert expected in names
    preset = load_preset("envs", "minatar")  # case-insensitive
    assert preset["kind"] == "minatar"
    assert load_preset("envs", "MinAtar.toml") == preset
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert preset_source("envs", "Atari").startswith(os.path.join(root, "envs"))


def test_preset_from_path(tmp_path):
    path = tmp_path / "Mine.toml"
    path.write_text('kind = "gym"\nenv_id = "CartPole-v1"\nn_envs = 3\n')
    assert load_preset("envs", str(path))["n_envs"] == 3
    spec = resolve_env(str(path))
    assert (spec.env_id, spec.kind, spec.n_envs, spec.policy) == ("CartPole-v1", "gym", 3, "MlpPolicy")


def test_unknown_preset_names_choices():
    with pytest.raises(ConfigError) as err:
        load_preset("envs", "Atarii")
    msg = str(err.value)
    assert "\n" not in msg and "Atarii" in msg and "Atari" in msg and "MinAtar" in msg


def test_bad_preset_key(tmp_path):
    path = tmp_path / "Bad.toml"
    path.write_text('kind = "gym"\nenv_id = "CartPole-v1"\nn_env = 3\n')
    with pytest.raises(ConfigError, match="n_env"):
        resolve_env(str(path))


# ------------------------------------------------------------------ resolving


def test_resolve_presets_and_ids():
    assert resolve_env("atari").env_id == "BreakoutNoFrameskip-v4"
    spec = resolve_env("Atari", game="pong", sticky_actions=True)
    assert spec.env_id == "ALE/Pong-v5" and spec.env_kwargs["frameskip"] == 1
    assert resolve_env("Atari", game="space_invaders").env_id == "SpaceInvadersNoFrameskip-v4"
    assert resolve_env("MinAtar", game="seaquest").env_id == "MinAtar/Seaquest-v1"
    # gym ids that need registration (ALE, MinAtar) work without the user registering
    spec = resolve_env("ALE/Pong-v5")
    assert spec.kind == "atari" and spec.env_kwargs["frameskip"] == 1 and spec.frame_stack == 4
    assert resolve_env("MinAtar/Asterix-v1").kind == "minatar"
    spec = resolve_env("CartPole-v1")
    assert (spec.kind, spec.policy, spec.frame_stack) == ("gym", "MlpPolicy", 1)
    assert resolve_env("Atari").to_dict()["wrapper_kwargs"]["frame_skip"] == 4


def test_unknown_env_close_matches():
    with pytest.raises(ConfigError) as err:
        resolve_env("CartPol-v1")
    msg = str(err.value)
    assert "\n" not in msg and "CartPol-v1" in msg and "CartPole-v1" in msg


def test_unknown_atari_game_close_matches():
    with pytest.raises(ConfigError) as err:
        resolve_env("Atari", game="Breakot")
    msg = str(err.value)
    assert "\n" not in msg and "Breakot" in msg and "Breakout" in msg


def test_unknown_minatar_game_lists_games():
    with pytest.raises(ConfigError) as err:
        resolve_env("MinAtar", game="Pong")
    msg = str(err.value)
    assert "\n" not in msg and "Pong" in msg and "SpaceInvaders" in msg


def test_game_with_gym_id_rejected():
    with pytest.raises(ConfigError):
        resolve_env("CartPole-v1", game="Pong")


# ------------------------------------------------------------------ building


def test_atari_obs_and_wrappers_training_vs_eval(tmp_path):
    spec = resolve_env("Atari")
    venv = make_vec_env(spec, n_envs=1, seed=0, training=True, monitor_dir=str(tmp_path))
    try:
        assert isinstance(venv, VecTransposeImage)
        obs = _step(venv, 3)
        assert obs.shape == (1, 4, 84, 84) and obs.dtype == np.uint8
        assert venv.observation_space.shape == (4, 84, 84)
        chain = _wrapper_chain(venv.unwrapped.envs[0])
        assert sb3_atari.EpisodicLifeEnv in chain and sb3_atari.ClipRewardEnv in chain
        # Monitor sits below the reward clipping: it logs raw scores
        from stable_baselines3.common.monitor import Monitor

        assert chain.index(Monitor) > chain.index(sb3_atari.ClipRewardEnv)
    finally:
        venv.close()
    assert (tmp_path / "0.monitor.csv").exists()

    venv = make_vec_env(spec, n_envs=1, training=False)
    try:
        chain = _wrapper_chain(venv.unwrapped.envs[0])
        assert sb3_atari.EpisodicLifeEnv not in chain and sb3_atari.ClipRewardEnv not in chain
        assert sb3_atari.MaxAndSkipEnv in chain and sb3_atari.NoopResetEnv in chain
    finally:
        venv.close()


def test_atari_rgb_obs():
    venv = make_vec_env(resolve_env("AtariRGB"), n_envs=1)
    try:
        obs = _step(venv, 2)
        assert obs.shape == (1, 12, 84, 84) and obs.dtype == np.uint8
    finally:
        venv.close()


def test_atari_subproc_two_envs():
    """SubprocVecEnv (forkserver) workers must find the ALE ids without user registration."""
    venv = make_vec_env(resolve_env("Atari"), n_envs=2, seed=1)
    try:
        assert isinstance(venv.unwrapped, SubprocVecEnv)
        obs = _step(venv, 3)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    finally:
        venv.close()


@pytest.mark.parametrize("game,channels", [("Breakout", 4), ("Seaquest", 10)])
def test_minatar_obs(game, channels):
    venv = make_vec_env(resolve_env("MinAtar", game=game), n_envs=2, seed=0)
    try:
        assert isinstance(venv, DummyVecEnv)  # auto: in-process for cheap envs
        assert not isinstance(venv, VecTransposeImage)
        obs = _step(venv, 5)
        assert obs.shape == (2, channels, 10, 10) and obs.dtype == np.uint8
        assert set(np.unique(obs)) <= {0, 255} and obs.max() == 255
        assert isinstance(venv.envs[0], MinAtarImage)
    finally:
        venv.close()


def test_minatar_frame_stack_channel_first():
    spec = resolve_env("MinAtar")
    spec.frame_stack = 2
    venv = make_vec_env(spec, n_envs=1)
    try:
        assert isinstance(venv, VecFrameStack)
        obs = _step(venv, 2)
        assert obs.shape == (1, 8, 10, 10)
    finally:
        venv.close()


def test_cartpole_vector():
    spec = resolve_env("CartPole-v1")
    venv = make_vec_env(spec, n_envs=2)
    try:
        obs = _step(venv, 5)
        assert obs.shape == (2, 4) and obs.dtype == np.float32
    finally:
        venv.close()


def test_seeding_reproducible():
    spec = resolve_env("MinAtar")
    a = make_vec_env(spec, n_envs=2, seed=3)
    b = make_vec_env(spec, n_envs=2, seed=3)
    try:
        np.testing.assert_array_equal(_step(a, 10), _step(b, 10))
    finally:
        a.close()
        b.close()


def test_miniworld_obs():
    ok, reason = miniworld_available()
    if not ok:
        pytest.skip(f"MiniWorld cannot render here: {reason}")
    venv = make_vec_env(resolve_env("MiniWorld"), n_envs=1)
    try:
        obs = _step(venv, 2)
        assert obs.shape == (1, 3, 60, 80) and obs.dtype == np.uint8
    finally:
        venv.close()


def test_bad_vec_env_choice():
    with pytest.raises(ConfigError, match="vec_env"):
        make_vec_env(resolve_env("CartPole-v1"), vec_env="threads")


# ------------------------------------------------------------------ networks


def test_minatar_cnn_forward_and_conv():
    space = gym.spaces.Box(0, 255, (4, 10, 10), np.uint8)
    net = MinAtarCNN(space)
    x = torch.rand(5, 4, 10, 10)
    assert net(x).shape == (5, 128)
    assert net.conv(x).shape == (5, 16, 8, 8)
    assert conv_feature_maps(net, x).shape == (5, 16, 8, 8)
    nature = NatureCNN(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8))
    assert conv_feature_maps(nature, torch.rand(2, 4, 84, 84)).shape == (2, 64, 7, 7)


def test_sb3_policy_kwargs_and_ppo_builds():
    spec = resolve_env("MinAtar")
    kwargs = sb3_policy_kwargs(spec.policy_kwargs)
    assert kwargs["features_extractor_class"] is FEATURE_EXTRACTORS["minatar_cnn"]
    assert "features_extractor" not in kwargs
    assert kwargs["encoder_dtype"] == "auto"  # rlaux's policies take it; SB3's own do not
    kwargs = without_rlaux_kwargs(kwargs)
    from stable_baselines3 import PPO

    venv = make_vec_env(spec, n_envs=2)
    try:
        model = PPO(spec.policy, venv, policy_kwargs=kwargs, n_steps=8, batch_size=16, n_epochs=1, device="cpu")
        # SB3 adds no transpose of its own: the obs is already channel-first
        assert not isinstance(model.get_env(), VecTransposeImage)
        model.learn(16)
    finally:
        venv.close()
    with pytest.raises(ConfigError, match="minatar_cnn"):
        sb3_policy_kwargs({"features_extractor": "resnet"})


def test_monitor_records_raw_returns(tmp_path):
    spec = resolve_env("MinAtar")
    venv = make_vec_env(spec, n_envs=1, seed=0, monitor_dir=str(tmp_path))
    try:
        venv.reset()
        for _ in range(2000):
            _, _, dones, _ = venv.step(np.array([venv.action_space.sample()]))
            if dones[0]:
                break
    finally:
        venv.close()
    with open(tmp_path / "0.monitor.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0][0].startswith("#") and rows[1] == ["r", "l", "t"]
    assert len(rows) >= 3  # at least one finished episode


def test_miniworld_maze_trains_headless_with_unreal_tasks():
    """The 3D maze preset (Labyrinth's stand-in) trains a few hundred steps with UNREAL tasks, headless."""
    ok, reason = miniworld_available()
    if not ok:
        pytest.skip(f"MiniWorld cannot render here: {reason}")
    from rlaux import AuxPPO

    spec = resolve_env("MiniWorld")
    venv = make_vec_env(spec, n_envs=1, seed=0, vec_env="dummy")
    try:
        model = AuxPPO(spec.policy, venv, aux_tasks="unreal", policy_kwargs=sb3_policy_kwargs(spec.policy_kwargs),
                       aux_task_kwargs={"value_replay": {"seq_len": 8}, "pixel_control": {"seq_len": 8}},
                       n_steps=64, batch_size=32, n_epochs=1, seed=0, device="cpu")
        model.learn(256)
    finally:
        venv.close()
    logged = model.logger.name_to_value
    for key in ("reward_pred/loss", "value_replay/loss", "pixel_control/loss", "pixel_control/mean_pseudo_reward"):
        assert np.isfinite(logged[f"aux/{key}"]), key
    assert model.num_timesteps == 256


def test_a_preset_can_give_one_game_its_own_env_kwargs():
    """MinAtarGymnax: gymnax's episode cap is 1,000 steps, Freeway's 2,500; --env-kwargs wins over both."""
    from rlaux.envs import resolve_env

    assert resolve_env("MinAtarGymnax", game="Breakout").env_kwargs["max_episode_steps"] == 1000
    assert resolve_env("MinAtarGymnax", game="freeway").env_kwargs["max_episode_steps"] == 2500
    assert resolve_env("MinAtarGymnax", game="Freeway", env_kwargs={"max_episode_steps": 50}).env_kwargs == {
        "sticky_action_prob": 0.0, "max_episode_steps": 50}
