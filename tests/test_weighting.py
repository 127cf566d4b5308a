"""Adaptive weighting of auxiliary losses: schedules, cosine gating, OL-AUX, uncertainty."""

import math

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from rlaux import AuxPPO, AuxTask, ConfigError, ReplayRequest
from rlaux.objective import AuxiliaryObjective, RLPlusAux
from rlaux.tasks import make_tasks
from rlaux.weighting import CosineGate, Fixed, OLAux, Schedule, Uncertainty, parse_weighting


@pytest.mark.parametrize(
    "spec,progress,expected",
    [
        ("linear:1:0:0.5", 0.0, 1.0), ("linear:1:0:0.5", 0.25, 0.5), ("linear:1:0:0.5", 0.9, 0.0),
        ("warmup:0:1:0.2", 0.1, 0.5), ("warmup:0:1:0.2", 0.5, 1.0),
        ("cosine:1:0:1", 0.5, 0.5), ("cosine:2:0:1", 0.25, 1 + math.cos(math.pi / 4)), ("cosine:1:0:1", 1.0, 0.0),
    ],
)
def test_schedules_give_the_right_weight_at_given_progress(spec, progress, expected):
    weighting = parse_weighting(spec)
    assert isinstance(weighting, Schedule)
    assert weighting.weight(2.0, progress) == pytest.approx(2.0 * expected)


@pytest.mark.parametrize("spec", ["nope", "linear:1:0", "linear:1:0:0", "linear:-1:0:0.5", "olaux:x", "cosine:1"])
def test_bad_weighting_specs_are_one_line_errors(spec):
    with pytest.raises(ConfigError, match="is not a weighting"):
        parse_weighting(spec)


def test_weighting_applies_to_all_or_one_task():
    tasks = make_tasks("unreal", weightings={"*": "cosine", "pixel_control": "linear:1:0:0.5"})
    kinds = {t.name: t.weighting for t in tasks}
    assert isinstance(kinds["reward_pred"], CosineGate) and isinstance(kinds["pixel_control"], Schedule)
    with pytest.raises(ConfigError, match="not among the aux tasks"):
        make_tasks("reward_pred", weightings={"pixel_control": "cosine"})


class PullFeatures(AuxTask):
    """Loss 0.5 * (mean feature - target)^2: its encoder gradient points where ``target`` says."""

    name = "pull"

    def __init__(self, target: float, name: str = "pull", **kwargs):
        super().__init__(**kwargs)
        self.target, self.name = target, name

    def replay_request(self):
        return ReplayRequest(seq_len=1, batch_size=16)

    def loss(self, policy, head, batch):
        return 0.5 * (policy.encode_sequences(batch).mean() - self.target) ** 2, {}


def model_with(tasks):
    """A PPO agent on CartPole whose encoder is one scale per input: gradients we can predict."""
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = AuxPPO("MlpPolicy", env, aux_tasks=tasks, seed=0, device="cpu",
                   policy_kwargs=dict(features_extractor_class=LinearEncoder))
    model.learn(64)  # fills the replay
    return model


from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402


class LinearEncoder(BaseFeaturesExtractor):
    def __init__(self, observation_space: spaces.Box):
        super().__init__(observation_space, features_dim=4)
        self.scale = th.nn.Parameter(th.ones(4))

    def forward(self, obs):
        return obs * self.scale


def aux_encoder_gradient(model, task):
    model.policy.zero_grad()
    loss = {t.name: loss for t, loss in model.aux_objective.task_losses()}[task]
    loss.backward()
    return model.policy.encoder.scale.grad.clone()


@pytest.mark.parametrize("weighted", [False, True])
def test_cosine_gating_drops_an_opposed_task_and_keeps_an_aligned_one(weighted):
    spec = "cosine_weighted" if weighted else "cosine"
    tasks = [PullFeatures(target=100.0, name="up"), PullFeatures(target=-100.0, name="down")]
    model = model_with(tasks)
    for t in model.aux_tasks:
        t.weighting = parse_weighting(spec)
    state = model.aux_replay.rng.bit_generator.state
    g_up = aux_encoder_gradient(model, "up")
    model.aux_replay.rng.bit_generator.state = state  # the same batch for every computation below
    g_down = aux_encoder_gradient(model, "down")
    # the RL gradient agrees with "up"'s gradient on the encoder, and opposes "down"'s
    rl = g_up.sign()
    for p in model.policy.parameters():
        p.grad = th.zeros_like(p)
    model.policy.encoder.scale.grad = rl.clone()
    model.aux_replay.rng.bit_generator.state = state
    objective: AuxiliaryObjective = model.aux_objective
    objective.mixer = RLPlusAux(objective.head_ids, aux_max_grad_norm=1e9)  # no clipping: the sum is exact
    objective.guard.max_grad_norm = 1e9
    logger = Logger(folder=None, output_formats=[])
    objective.record(logger)  # start the means afresh
    model.policy.optimizer.step()  # the pre-hook mixes the gradients in .grad, then the step reads them
    got = model.policy.encoder.scale.grad
    cos_up = float(th.nn.functional.cosine_similarity(g_up, rl, dim=0))
    expected = rl + (cos_up if weighted else 1.0) * g_up  # "down" is dropped on the shared encoder
    th.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert cos_up > 0 and float(th.nn.functional.cosine_similarity(g_down, rl, dim=0)) < 0
    objective.record(logger)
    logged = logger.name_to_value
    assert logged["aux/up/gate"] == pytest.approx(cos_up if weighted else 1.0, rel=1e-4)
    assert logged["aux/down/gate"] == 0.0 and logged["aux/down/grad_cosine"] < 0


def test_olaux_moves_weights_by_the_inner_product_every_n_updates():
    weighting = OLAux(beta=0.5, every=2)
    weighting.observe(1.0, 0.4)
    assert weighting.weight(1.0, 0.0) == 1.0
    weighting.observe(1.0, 0.2)
    assert weighting.weight(1.0, 0.0) == pytest.approx(1.0 + 0.5 * 0.3)
    weighting.observe(1.0, -10.0)
    weighting.observe(1.0, -10.0)
    assert weighting.weight(1.0, 0.0) == 0.0


def test_gate_is_one_call_for_every_weighting():
    assert Fixed().gate(-0.5, -3.0, 1.0) == 1.0 and parse_weighting("linear:1:0:1").gate(-0.5, -3.0, 1.0) == 1.0
    assert CosineGate().gate(0.3, 2.0, 1.0) == 1.0 and CosineGate().gate(-0.3, -2.0, 1.0) == 0.0
    assert CosineGate(weighted=True).gate(0.3, 2.0, 1.0) == pytest.approx(0.3)
    assert CosineGate(weighted=True).gate(-0.3, -2.0, 1.0) == 0.0
    olaux = OLAux(beta=0.5, every=2)
    assert olaux.gate(-0.9, 0.4, 1.0) == 1.0 and olaux.gate(0.9, 0.2, 1.0) == 1.0  # never gates...
    assert olaux.weight(1.0, 0.0) == pytest.approx(1.0 + 0.5 * 0.3)  # ...but records the inner products


def test_uncertainty_weights_are_learned_parameters_of_the_policy(tmp_path):
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = AuxPPO("MlpPolicy", env, aux_tasks=["reward_pred"], aux_weighting={"reward_pred": "uncertainty"},
                   n_steps=32, batch_size=32, seed=0, device="cpu", learning_rate=1e-2)
    assert isinstance(model.aux_tasks[0].weighting, Uncertainty)
    log_var = model.policy.aux_log_vars["reward_pred"]
    assert any(log_var is p for g in model.policy.optimizer.param_groups for p in g["params"])
    model.learn(512)
    assert log_var.item() != 0.0
    logged = model.logger.name_to_value
    base = model.aux_tasks[0].weight  # the task's default weight, scaled by Kendall's 0.5 exp(-s)
    assert logged["aux/reward_pred/weight"] == pytest.approx(base * 0.5 * np.exp(-logged["aux/reward_pred/log_variance"]),
                                                             rel=0.2)
    model.save(tmp_path / "m.zip")
    loaded = AuxPPO.load(tmp_path / "m.zip", device="cpu")
    assert loaded.policy.aux_log_vars["reward_pred"].item() == pytest.approx(log_var.item())


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
@pytest.mark.parametrize("spec", ["cosine", "olaux:0.1:2", "linear:1:0:0.5", "uncertainty"])
def test_every_weighting_trains_and_logs_its_weights(algo, spec):
    from rlaux import ALGORITHMS
    from rlaux.envs import make_vec_env as rlaux_env
    from rlaux.envs import resolve_env
    from rlaux.networks import sb3_policy_kwargs

    spec_env = resolve_env("MinAtar")
    env = rlaux_env(spec_env, n_envs=2, seed=0, vec_env="dummy")
    extra = dict(n_steps=32, batch_size=64, n_epochs=1) if algo == "ppo" else dict(n_steps=8)
    model = ALGORITHMS[algo](spec_env.policy, env, aux_tasks=["reward_pred", "value_replay"],
                             aux_weighting={"*": spec}, policy_kwargs=sb3_policy_kwargs(spec_env.policy_kwargs), seed=0,
                             device="cpu", aux_task_kwargs={"value_replay": {"seq_len": 5}}, **extra)
    model.learn(384)
    logged = model.logger.name_to_value
    for task in ("reward_pred", "value_replay"):
        assert np.isfinite(logged[f"aux/{task}/weight"])
        if spec in ("cosine", "olaux:0.1:2"):
            assert -1.0 <= logged[f"aux/{task}/grad_cosine"] <= 1.0
    assert logged["aux/skipped_updates"] == 0
