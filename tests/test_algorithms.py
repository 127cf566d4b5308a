"""AuxPPO / AuxA2C: exactness without tasks, joint optimisation with them, save/load/continue."""

import numpy as np
import pytest
import torch as th
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from rlaux import AuxA2C, AuxPPO, AuxTask, ConfigError
from rlaux.envs import make_vec_env as rlaux_vec_env
from rlaux.envs import resolve_env
from rlaux.networks import sb3_policy_kwargs

PAIRS = [(AuxPPO, PPO, dict(n_steps=32, batch_size=16, n_epochs=2)), (AuxA2C, A2C, dict(n_steps=8))]


def cartpole(n_envs=2):
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)


class LinearEncoder(BaseFeaturesExtractor):
    """A vector encoder with parameters (SB3's MlpPolicy flattens: nothing shared to shape)."""

    def __init__(self, observation_space):
        super().__init__(observation_space, features_dim=16)
        self.net = th.nn.Sequential(th.nn.Linear(observation_space.shape[0], 16), th.nn.Tanh())

    def forward(self, obs):
        return self.net(obs)


def train_and_record(cls, steps=256, **kwargs):
    """Learn, recording every loss SB3 logs and the parameters."""
    model = cls("MlpPolicy", cartpole(), seed=0, device="cpu", **kwargs)
    seen: list[dict] = []
    model.set_logger(Logger(folder=None, output_formats=[]))
    record = model.logger.record

    def spy(key, value, exclude=None):
        if not key.startswith("time/"):  # wall-clock figures differ run to run
            seen.append({key: value})
        record(key, value, exclude)

    model.logger.record = spy
    model.learn(steps)
    return model, seen


@pytest.mark.parametrize("aux_cls,sb3_cls,kwargs", PAIRS)
def test_without_tasks_behaves_exactly_as_sb3(aux_cls, sb3_cls, kwargs):
    ours, our_logs = train_and_record(aux_cls, **kwargs)
    theirs, their_logs = train_and_record(sb3_cls, **kwargs)
    # rlaux adds one scalar, the RL gradient's norm before SB3's clip; all else is SB3's
    grad_norms = [d["train/grad_norm"] for d in our_logs if "train/grad_norm" in d]
    assert len(grad_norms) == 256 // (2 * kwargs["n_steps"]) and all(g > 0 for g in grad_norms)
    assert [d for d in our_logs if "train/grad_norm" not in d] == their_logs and len(their_logs) > 5
    for (name, a), (_, b) in zip(ours.policy.state_dict().items(), theirs.policy.state_dict().items()):
        assert th.equal(a, b), name


@pytest.mark.parametrize("aux_cls,sb3_cls,kwargs", PAIRS)
def test_zero_weight_task_leaves_the_rl_update_untouched(aux_cls, sb3_cls, kwargs):
    """The hook, the heads and the replay draw from no RNG the agent uses and add nothing but the aux gradient."""
    ours, _ = train_and_record(aux_cls, aux_tasks=["reward_pred"], aux_weights={"reward_pred": 0.0}, **kwargs)
    theirs, _ = train_and_record(sb3_cls, **kwargs)
    theirs_state = theirs.policy.state_dict()
    for name, value in ours.policy.state_dict().items():
        if not name.startswith("aux_heads"):
            assert th.equal(value, theirs_state[name]), name


@pytest.mark.parametrize("aux_cls,sb3_cls,kwargs", PAIRS)
def test_task_loss_joins_the_same_optimizer_step(aux_cls, sb3_cls, kwargs):
    encoder = dict(policy_kwargs=dict(features_extractor_class=LinearEncoder))
    ours, logs = train_and_record(aux_cls, aux_tasks=["reward_pred"], **encoder, **kwargs)
    theirs, _ = train_and_record(sb3_cls, **encoder, **kwargs)
    head = ours.policy.aux_heads["reward_pred"]
    assert any(p is q for p in head.parameters() for g in ours.policy.optimizer.param_groups for q in g["params"])
    # the shared encoder moved differently from SB3's: the aux gradient reached it
    name = "features_extractor.net.0.weight"
    assert not th.equal(ours.policy.state_dict()[name], theirs.policy.state_dict()[name])
    keys = {k for entry in logs for k in entry}
    assert {"aux/reward_pred/loss", "aux/reward_pred/accuracy", "aux/reward_pred/rewarding_share",
            "aux/reward_pred/weight"} <= keys


def test_the_aux_gradient_is_the_gradient_of_the_weighted_loss():
    """At a step, the hook adds exactly d(lambda * L_aux)/d theta to the (clipped) RL gradient."""
    model = AuxPPO("MlpPolicy", cartpole(), aux_tasks=["reward_pred"], aux_weights={"reward_pred": 0.5},
                   n_steps=32, batch_size=64, n_epochs=1, seed=0, max_grad_norm=1e9, aux_max_grad_norm=1e9,
                   device="cpu")
    model.learn(64)
    params = list(model.policy.parameters())
    for p in params:
        p.grad = th.zeros_like(p)
    state = model.aux_replay.rng.bit_generator.state
    expected = th.autograd.grad(model.aux_loss(), [p for p in params], allow_unused=True)
    model.aux_replay.rng.bit_generator.state = state
    assert model.aux_objective.add_auxiliary_gradient(params, th.tensor(0.0))  # what the step pre-hook adds
    for p, g in zip(params, expected):
        assert th.allclose(p.grad, th.zeros_like(p) if g is None else g, atol=1e-6)


class NeedsImages(AuxTask):
    name = "needs_images"
    requires_image = True

    def loss(self, policy, head, batch):
        raise AssertionError("never reached")


def test_image_task_on_vector_env_fails_before_training():
    with pytest.raises(ConfigError, match="needs image observations"):
        AuxPPO("MlpPolicy", cartpole(), aux_tasks=[NeedsImages()])


def test_unknown_task_and_bad_weights():
    with pytest.raises(ConfigError, match="^aux_tasks names an unknown aux task 'nope'"):  # the Python argument
        AuxPPO("MlpPolicy", cartpole(), aux_tasks=["nope"])
    with pytest.raises(ConfigError, match="^aux_weights reward_pred=-1: must be a finite number >= 0"):
        AuxPPO("MlpPolicy", cartpole(), aux_tasks=["reward_pred"], aux_weights={"reward_pred": -1})


class Constant(AuxTask):
    """A user's own task: pulls its head's output to 1 on replayed observations."""

    name = "constant"

    def replay_request(self):
        from rlaux import ReplayRequest

        return ReplayRequest(seq_len=1, batch_size=8)

    def build_head(self, policy):
        return th.nn.Linear(policy.features_dim, 1)

    def loss(self, policy, head, batch):
        out = head(policy.encode_sequences(batch)[:, 0])
        return ((out - 1) ** 2).mean(), {"mean_output": out.mean().detach()}


def test_user_task_object_is_trained_saved_and_loaded(tmp_path):
    model = AuxPPO("MlpPolicy", cartpole(), aux_tasks=[Constant()], n_steps=32, batch_size=32, seed=0, device="cpu",
                   learning_rate=1e-2)
    obs = th.as_tensor(np.random.default_rng(0).normal(0, 0.5, (64, 4)), dtype=th.float32)

    def distance_to_target():
        with th.no_grad():
            return (model.policy.aux_heads["constant"](model.policy.encode(obs)) - 1).abs().mean().item()

    before = distance_to_target()
    model.learn(512)
    assert distance_to_target() < 0.5 * before
    assert "aux/constant/mean_output" in model.logger.name_to_value
    model.save(tmp_path / "m.zip")
    loaded = AuxPPO.load(tmp_path / "m.zip", env=cartpole(), device="cpu")
    assert isinstance(loaded.aux_tasks[0], Constant)
    th.testing.assert_close(loaded.policy.state_dict(), model.policy.state_dict())


def minatar_model(cls=AuxPPO, **kwargs):
    spec = resolve_env("MinAtar")
    env = rlaux_vec_env(spec, n_envs=2, seed=0, vec_env="dummy")
    return cls(spec.policy, env, policy_kwargs=sb3_policy_kwargs(spec.policy_kwargs), seed=0, device="cpu", **kwargs), spec


@pytest.mark.parametrize("cls", [AuxPPO, AuxA2C])
def test_minatar_reward_pred_trains_logs_saves_loads_and_continues(cls, tmp_path):
    extra = dict(n_steps=64, batch_size=64, n_epochs=2) if cls is AuxPPO else dict(n_steps=16)
    model, spec = minatar_model(cls, aux_tasks="reward_pred", **extra)
    model.learn(512)
    logged = model.logger.name_to_value
    for key in ("loss", "accuracy", "rewarding_share", "weight"):
        assert f"aux/reward_pred/{key}" in logged
    assert np.isfinite(logged["aux/reward_pred/loss"])
    model.save(tmp_path / "agent.zip")
    # the replay is left out of the file: a model, not a buffer
    assert (tmp_path / "agent.zip").stat().st_size < 5_000_000
    env = rlaux_vec_env(spec, n_envs=2, seed=1, vec_env="dummy")
    loaded = cls.load(tmp_path / "agent.zip", env=env, device="cpu")
    head_before = [p.clone() for p in loaded.policy.aux_heads.parameters()]
    th.testing.assert_close(loaded.policy.state_dict(), model.policy.state_dict())
    loaded.learn(512, reset_num_timesteps=False)
    assert loaded.num_timesteps >= 1024
    assert any(not th.equal(a, b) for a, b in zip(head_before, loaded.policy.aux_heads.parameters()))


def test_atari_reward_pred_trains_and_logs():
    spec = resolve_env("Atari")
    env = rlaux_vec_env(spec, n_envs=2, seed=0, vec_env="dummy")
    model = AuxPPO(spec.policy, env, aux_tasks=["reward_pred"], n_steps=128, batch_size=64, n_epochs=1,
                   seed=0, device="cpu")
    model.learn(256)
    assert model.aux_replay.frame_stack == 4 and model.aux_replay.frames.shape[2] == 1
    logged = model.logger.name_to_value
    assert {"aux/reward_pred/loss", "aux/reward_pred/accuracy", "aux/reward_pred/rewarding_share"} <= set(logged)


class Rows(KVWriter):
    """Every dumped row, as a dict."""

    def __init__(self):
        self.rows: list[dict] = []

    def write(self, key_values, key_excluded, step=0):
        self.rows.append(dict(key_values))

    def close(self):
        pass


def test_stop_request_iteration_count_and_continued_numbering(tmp_path):
    model = AuxPPO("MlpPolicy", cartpole(), n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(96)  # 3 iterations of 2 envs x 16 steps
    assert model.iterations == 3
    model.request_stop()
    assert model.stop_requested
    model.learn(96, reset_num_timesteps=False)  # ends before its first rollout, and uses the request up
    assert model.num_timesteps == 96 and model.iterations == 3 and not model.stop_requested

    model.save(tmp_path / "m.zip")
    loaded = AuxPPO.load(tmp_path / "m.zip", env=cartpole(), device="cpu")
    assert loaded.iterations == 3 and loaded.env_state is None and not loaded.stop_requested
    rows = Rows()
    loaded.set_logger(Logger(folder=None, output_formats=[rows]))
    loaded.continue_iteration_count()
    loaded.learn(64, reset_num_timesteps=False)
    assert [r["time/iterations"] for r in rows.rows] == [4, 5] and loaded.iterations == 5


def test_task_spaces_are_checked_before_the_policy_is_built(monkeypatch):
    from rlaux.policy import AuxActorCriticPolicy

    built = []
    monkeypatch.setattr(AuxActorCriticPolicy, "_build", lambda self, *a: built.append(self))
    with pytest.raises(ConfigError, match="needs image observations"):
        AuxPPO("MlpPolicy", cartpole(), aux_tasks=["pixel_control"], device="cpu")
    assert built == []
