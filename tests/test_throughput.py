"""What the throughput work changed: bfloat16 encoders, the info-sharing DummyVecEnv, the data rate of the
replaying tasks, the reuse of the auxiliary gradient (``aux_every``) and ``--label``. CPU, fast."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from rlaux import AuxA2C, AuxPPO, ConfigError
from rlaux.envs import InfoSharingDummyVecEnv, make_vec_env, resolve_env
from rlaux.envs.wrappers import make_env
from rlaux.networks import sb3_policy_kwargs
from rlaux.objective import can_reuse_gradient
from rlaux.policy import resolve_encoder_dtype
from rlaux.tasks import make_tasks
from rlaux.tasks.base import sequences_per_update
from tests.test_cli import run_main


def minatar(cls=AuxPPO, n_envs: int = 2, encoder_dtype: str = "float32", **kwargs):
    spec = resolve_env("MinAtar")
    env = make_vec_env(spec, n_envs=n_envs, seed=0, vec_env="dummy")
    policy_kwargs = {**sb3_policy_kwargs(spec.policy_kwargs), "encoder_dtype": encoder_dtype}
    return cls(spec.policy, env, policy_kwargs=policy_kwargs, seed=0, device="cpu", **kwargs)


# ------------------------------------------------------------------------------ encoder_dtype


def test_bfloat16_encoder_runs_under_autocast_and_hands_float32_features_on():
    model = minatar(n_steps=32, batch_size=32, n_epochs=1, encoder_dtype="bfloat16", aux_tasks=["reward_pred"])
    policy = model.policy
    assert policy.encoder_dtype == "bfloat16"
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(4)]))
    seen = {}

    def record(module, inputs, output) -> None:
        seen["dtype"] = output.dtype

    hook = policy.features_extractor.linear.register_forward_hook(record)
    features = policy.extract_features(obs)
    hook.remove()
    assert seen["dtype"] == th.bfloat16  # computed in bfloat16 ...
    assert features.dtype == th.float32  # ... handed on as float32
    assert policy.encode(obs).dtype == th.float32
    # the weights and the optimizer state stay float32
    assert all(p.dtype == th.float32 for p in policy.parameters())
    model.learn(64)
    assert np.isfinite(model.logger.name_to_value["train/loss"])
    assert np.isfinite(model.logger.name_to_value["aux/reward_pred/loss"])


def test_float32_encoder_gives_the_same_features_as_sb3():
    model = minatar(n_steps=32, batch_size=32, n_epochs=1)
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(4)]))
    policy = model.policy
    expected = policy.features_extractor(policy.preprocess(obs))
    assert th.equal(policy.extract_features(obs), expected)


def test_encoder_dtype_auto_and_bad_names():
    assert resolve_encoder_dtype("float32", th.device("cpu")) == "float32"
    assert resolve_encoder_dtype("auto", th.device("cpu")) in ("float32", "bfloat16")
    with pytest.raises(ConfigError, match="float16.*valid: float32, bfloat16, auto"):
        minatar(encoder_dtype="float16")


def test_encoder_dtype_is_saved_with_the_model(tmp_path):
    model = minatar(n_steps=16, batch_size=32, n_epochs=1, encoder_dtype="bfloat16")
    model.save(tmp_path / "m.zip")
    loaded = AuxPPO.load(tmp_path / "m.zip", device="cpu")
    assert loaded.policy.encoder_dtype == "bfloat16"


# ------------------------------------------------------------------------------ vec env


def test_info_sharing_vec_env_gives_what_dummy_vec_env_gives():
    spec = resolve_env("MinAtar")
    ours = make_vec_env(spec, n_envs=3, seed=0, vec_env="dummy")
    assert isinstance(ours, InfoSharingDummyVecEnv) and isinstance(ours, DummyVecEnv)
    reference = DummyVecEnv([lambda rank=rank: make_env(spec.env_id, spec.kind, rank, 0, None, {}, {}, None, ())
                             for rank in range(3)])
    reference.seed(0)
    assert np.array_equal(ours.reset(), reference.reset())
    rng = np.random.default_rng(0)
    previous = None
    ended = 0
    for _ in range(300):
        actions = rng.integers(ours.action_space.n, size=3)
        obs, rewards, dones, infos = ours.step(actions)
        obs_ref, rewards_ref, dones_ref, infos_ref = reference.step(actions)
        assert np.array_equal(obs, obs_ref) and np.array_equal(rewards, rewards_ref) and np.array_equal(dones, dones_ref)
        for info, info_ref in zip(infos, infos_ref):
            assert info.keys() == info_ref.keys()
            if "terminal_observation" in info:
                ended += 1
                assert np.array_equal(info["terminal_observation"], info_ref["terminal_observation"])
        assert infos is not previous  # a new list every step: the caller may keep the last one
        previous = infos
    assert ended > 0
    ours.close()
    reference.close()


# ------------------------------------------------------------------------------ data rate


def test_sequences_per_update_is_one_per_twenty_env_steps():
    assert sequences_per_update(64, 20) == 3  # PPO 8 x 128 steps, 4 epochs of 4 minibatches
    assert sequences_per_update(40, 20) == 2  # A2C 8 x 5 steps
    assert sequences_per_update(256, 20) == 13
    assert sequences_per_update(5, 20) == 1  # at least one


@pytest.mark.parametrize("cls, kwargs, env_steps", [
    (AuxPPO, dict(n_steps=64, batch_size=32, n_epochs=2), 64 * 4 / (2 * 8)),
    (AuxA2C, dict(n_steps=10), 40),
])
def test_replaying_tasks_draw_sequences_at_the_data_rate(cls, kwargs, env_steps):
    model = minatar(cls, n_envs=4, aux_tasks=["unreal"], aux_every=1, **kwargs)
    assert model.env_steps_per_optimizer_step() == env_steps
    for task in model.aux_tasks:
        assert task.sequences == sequences_per_update(env_steps, 20)
    slower = minatar(cls, n_envs=4, aux_tasks=["unreal"], aux_env_steps_per_sequence=40, aux_every=1, **kwargs)
    assert all(t.sequences == sequences_per_update(env_steps, 40) for t in slower.aux_tasks)
    explicit = minatar(cls, n_envs=4, aux_tasks=["reward_pred"], aux_task_kwargs={"reward_pred": {"batch_size": 7}},
                       aux_every=1, **kwargs)
    assert explicit.aux_tasks[0].sequences == 7


def test_bad_rate_and_batch_size_are_one_line_errors():
    with pytest.raises(ConfigError, match="aux_env_steps_per_sequence must be an integer >= 1, got 0"):
        minatar(aux_tasks=["reward_pred"], aux_env_steps_per_sequence=0)
    with pytest.raises(ConfigError, match="aux_every must be an integer >= 1 or 'auto', got 0"):
        minatar(aux_tasks=["reward_pred"], aux_every=0)
    with pytest.raises(ConfigError, match="value_replay batch_size must be an integer >= 1 or None"):
        make_tasks(["value_replay"], None, "ppo", {"value_replay": {"batch_size": 0}})


# ------------------------------------------------------------------------------ aux_every


def count_losses(model) -> list[int]:
    calls = []
    original = model.aux_objective.task_losses

    def counted():
        terms = original()
        calls.append(len(terms))
        return terms

    model.aux_objective.task_losses = counted
    return calls


def test_aux_every_computes_one_step_in_k_with_k_times_the_sequences_and_reuses_it():
    kwargs = dict(n_envs=4, n_steps=64, batch_size=32, n_epochs=2, aux_tasks=["unreal"])  # 16 optimizer steps
    every_step = minatar(aux_every=1, **kwargs)
    reused = minatar(aux_every=4, **kwargs)
    assert reused.aux_objective.every == 4
    for a, b in zip(every_step.aux_tasks, reused.aux_tasks):
        assert b.sequences == sequences_per_update(16 * 4, 20) and a.sequences == sequences_per_update(16, 20)
    reused.learn(256)  # the replay fills during the first rollout
    calls = count_losses(reused)
    added = []
    original_mix = reused.aux_objective.mixer.mix

    def mix(params, rl_grads, rl_norm, max_grad_norm):
        added.append([None if p.grad is None else p.grad.clone() for p in params])
        return original_mix(params, rl_grads, rl_norm, max_grad_norm)

    reused.aux_objective.mixer.mix = mix
    reused.learn(256, reset_num_timesteps=False)  # one more update: 16 optimizer steps
    assert len(calls) == 4 and all(n == 3 for n in calls)
    assert len(added) == 16
    for step in range(16):  # steps 1-3 of each group add the gradient step 0 computed
        first = added[step - step % 4]
        for g, g0 in zip(added[step], first):
            assert (g is None and g0 is None) or th.equal(g, g0)
    assert not all(th.equal(g, g0) for g, g0 in zip(added[4], added[0]) if g is not None)


def test_aux_every_auto_and_where_it_cannot_apply():
    model = minatar(n_envs=8, n_steps=128, batch_size=256, n_epochs=4, aux_tasks=["unreal"])
    assert model.aux_objective.every == 4  # 3 sequences a step: 17 steps for 50, but an epoch has 4
    model = minatar(n_envs=32, n_steps=128, batch_size=256, n_epochs=2, aux_tasks=["unreal"])
    rate = sequences_per_update(128, 20)  # 6 sequences a step, 16 steps an epoch
    assert model.aux_objective.every == -(-50 // rate) == 9  # the smallest k with at least 50 sequences
    a2c = minatar(AuxA2C, n_envs=4, aux_tasks=["unreal"])  # one optimizer step per update: nothing to reuse
    assert a2c.aux_objective.every == 1
    drac = minatar(n_steps=64, batch_size=32, n_epochs=2, aux_tasks=["reward_pred", "drac"])
    assert not can_reuse_gradient(drac.aux_tasks) and drac.aux_objective.every == 1  # drac reads SB3's minibatch
    gated = minatar(n_steps=64, batch_size=32, n_epochs=2, aux_tasks=["reward_pred"], aux_weighting={"*": "cosine"})
    assert gated.aux_objective.every == 1  # the gate reads each step's RL gradient


# ------------------------------------------------------------------------------ --label


def test_label_names_the_variant_in_config_json(tmp_path, capsys):
    code, _, _ = run_main(["--env", "MinAtar", "--algo", "a2c", "-n", "64", "--n-envs", "2", "-f", str(tmp_path),
                           "--label", "a2c-before", "--no-progress", "-v", "0"], capsys)
    assert code == 0
    (config,) = tmp_path.glob("*/config.json")
    data = json.loads(config.read_text())
    assert data["resolved"]["aux_label"] == "a2c-before" and data["request"]["label"] == "a2c-before"
