"""Auxiliary tasks on vector observations: the parameter-free encoder warning and ``SharedMLP``."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from rlaux.algorithms import AuxPPO
from rlaux.envs import resolve_env
from rlaux.errors import ConfigError
from rlaux.networks import SharedMLP, sb3_policy_kwargs
from rlaux.tasks import ParameterFreeEncoderWarning, SharedEncoderDefault

SHARED = {"features_extractor": "shared_mlp"}


def cartpole_ppo(tasks, toml_policy_kwargs=None, extra_policy_kwargs=None, **extra) -> AuxPPO:
    policy_kwargs = {**sb3_policy_kwargs(toml_policy_kwargs or {}), **(extra_policy_kwargs or {})}
    kwargs = {"policy_kwargs": policy_kwargs} if policy_kwargs else {}
    return AuxPPO("MlpPolicy", "CartPole-v1", aux_tasks=tasks, n_steps=64, batch_size=64, n_epochs=2, seed=0,
                  device="cpu", **kwargs, **extra)


FLAT = {"features_extractor_class": FlattenExtractor}


def test_encoder_only_tasks_on_vector_observations_get_a_shared_encoder_and_one_note():
    with pytest.warns(SharedEncoderDefault) as record:
        model = cartpole_ppo(["reward_pred", "value_replay"])
    assert len(record) == 1 and "\n" not in str(record[0].message) and "reward_pred" in str(record[0].message)
    assert record[0].filename == __file__  # pointed at the user's AuxPPO(...), past rlaux's own __init__s
    assert isinstance(model.policy.encoder, SharedMLP)
    with warnings.catch_warnings():  # it loads with the same encoder, without a note
        warnings.simplefilter("error", SharedEncoderDefault)
        loaded = AuxPPO.load(_saved(model))
    assert isinstance(loaded.policy.encoder, SharedMLP)
    # the same spelling as in presets and on the command line works from Python
    python = AuxPPO("MlpPolicy", "CartPole-v1", aux_tasks=["reward_pred"], policy_kwargs=SHARED, device="cpu")
    assert isinstance(python.policy.encoder, SharedMLP)


def _saved(model: AuxPPO) -> Path:
    path = Path(tempfile.mkdtemp()) / "model.zip"
    model.save(path)
    return path


def test_warns_once_in_one_line_for_encoder_only_tasks_on_a_flatten_extractor():
    with pytest.warns(ParameterFreeEncoderWarning) as record:
        cartpole_ppo(["reward_pred", "value_replay"], extra_policy_kwargs=FLAT)
    assert len(record) == 1 and record[0].filename == __file__  # the user's AuxPPO(...), not rlaux's own code
    message = str(record[0].message)
    assert "\n" not in message
    assert "reward_pred" in message and "value_replay" not in message  # value replay trains the critic
    assert "FlattenExtractor" in message and "shared_mlp" in message


@pytest.mark.parametrize("tasks,toml_policy_kwargs", [
    (["reward_pred"], SHARED),  # an encoder with parameters
    (["value_replay"], None),  # trains the critic's own layers
    (["reward_pred"], None),  # given a shared encoder by default
    ([], None),  # no task
])
def test_no_warning_when_the_tasks_shape_the_policy(tasks, toml_policy_kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterFreeEncoderWarning)
        cartpole_ppo(tasks, toml_policy_kwargs)


def _encoder_gradient(model: AuxPPO, task_name: str) -> dict[str, float]:
    """|grad| summed per part of the policy, of one task's loss on a replay batch."""
    policy = model.policy
    task = next(t for t in model.aux_tasks if t.name == task_name)
    loss, _ = task.loss(policy, policy.aux_head(task_name), model.aux_replay.sample(task.replay_request()))
    policy.optimizer.zero_grad()
    loss.backward()
    parts = {"encoder": policy.encoder, "actor": policy.mlp_extractor.policy_net, "action_net": policy.action_net}
    grads = {name: sum(float(p.grad.abs().sum()) for p in part.parameters() if p.grad is not None)
             for name, part in parts.items()}
    policy.optimizer.zero_grad()
    return grads


def test_shared_mlp_trains_on_cartpole_and_the_aux_gradient_reaches_it():
    model = cartpole_ppo(["reward_pred", "value_replay"], SHARED)
    encoder = model.policy.encoder
    assert isinstance(encoder, SharedMLP) and model.policy.share_features_extractor
    assert model.policy.features_dim == 64
    assert sum(p.numel() for p in encoder.parameters()) == (4 * 64 + 64) + (64 * 64 + 64)
    before = [p.detach().clone() for p in encoder.parameters()]
    model.learn(320)
    scalars = model.logger.name_to_value
    for name in ("reward_pred", "value_replay"):
        assert np.isfinite(scalars[f"aux/{name}/loss"])
    assert any(not th.equal(a, b) for a, b in zip(before, encoder.parameters()))
    grads = _encoder_gradient(model, "reward_pred")
    assert grads["encoder"] > 0  # reward prediction shapes the features the actor reads
    # on MlpPolicy's own flatten extractor the same loss reaches nothing the policy uses
    with pytest.warns(ParameterFreeEncoderWarning):
        flat = cartpole_ppo(["reward_pred"], extra_policy_kwargs=FLAT)
    flat.learn(128)
    assert _encoder_gradient(flat, "reward_pred") == {"encoder": 0.0, "actor": 0.0, "action_net": 0.0}


def test_shared_mlp_from_a_preset_and_its_checks(tmp_path):
    preset = tmp_path / "Pole.toml"
    preset.write_text('kind = "gym"\nenv_id = "CartPole-v1"\n\n[policy_kwargs]\nfeatures_extractor = "shared_mlp"\n'
                      'features_extractor_kwargs = { net_arch = [32, 16], activation_fn = "relu" }\nnet_arch = []\n')
    spec = resolve_env(str(preset))
    assert spec.policy == "MlpPolicy"
    model = AuxPPO(spec.policy, spec.env_id, aux_tasks=["reward_pred"],
                   policy_kwargs=sb3_policy_kwargs(spec.policy_kwargs), device="cpu")
    layers = [m for m in model.policy.encoder.mlp if not isinstance(m, nn.Flatten)]
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU]
    assert model.policy.features_dim == 16 and model.policy.action_net.in_features == 16  # net_arch = []: linear heads
    space = gym.spaces.Box(-1.0, 1.0, (4,))
    with pytest.raises(ConfigError, match="net_arch"):
        SharedMLP(space, net_arch=[])
    with pytest.raises(ConfigError, match="activation_fn 'nope'"):
        SharedMLP(space, activation_fn="nope")
