"""Value replay, pixel control and feature control (UNREAL tasks)."""

from __future__ import annotations

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from rlaux.algorithms import AuxA2C, AuxPPO
from rlaux.errors import ConfigError
from rlaux.tasks import BUNDLES, TASKS, make_tasks
from rlaux.tasks.feature_control import FeatureControl, FeatureControlHead, feature_control_rewards
from rlaux.tasks.functional import dueling, masked_mean, n_step_q_loss, n_step_returns
from rlaux.tasks.pixel_control import (
    PixelControl,
    PixelControlHead,
    crop_box,
    deconv_geometry,
    pixel_control_rewards,
    scatter_matrix,
    transposed_conv,
)
from rlaux.tasks.value_replay import ValueReplay

SHORT = 8  # sequence length in the training tests: random MinAtar Breakout episodes are often < 20 steps
UNREAL_NAMES = ("value_replay", "pixel_control", "feature_control")


# ----------------------------------------------------------------------------- envs


class MinAtarImageLocal(gym.ObservationWrapper):
    """MinAtar bool [10, 10, C] -> uint8 {0, 255} [C, 10, 10] (fallback if rlaux.envs lacks one)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = spaces.Box(0, 255, (c, h, w), np.uint8)

    def observation(self, observation):
        return np.ascontiguousarray(observation.transpose(2, 0, 1), dtype=np.uint8) * np.uint8(255)


def _minatar_wrapper():
    try:
        from rlaux.envs import MinAtarImage

        return MinAtarImage
    except ImportError:  # pragma: no cover
        return MinAtarImageLocal


def _minatar_extractor():
    from rlaux.networks import MinAtarCNN

    return MinAtarCNN


def minatar_env(n_envs: int = 4, seed: int = 0):
    import minatar.gym

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "MinAtar/Breakout-v1" not in gym.registry:
            minatar.gym.register_envs()
    return make_vec_env("MinAtar/Breakout-v1", n_envs=n_envs, seed=seed, wrapper_class=_minatar_wrapper())


def minatar_kwargs(**extra):
    return dict(policy_kwargs=dict(features_extractor_class=_minatar_extractor()), seed=0, device="cpu", **extra)


class FakeImageEnv(gym.Env):
    """Random channel-first uint8 frames of a given shape; rewards now and then."""

    def __init__(self, shape=(3, 84, 84), n_actions: int = 4) -> None:
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(n_actions)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        return self.observation_space.sample(), float(self._t % 7 == 0), False, self._t >= 50, {}


# ------------------------------------------------------------------ pure functions


def test_n_step_returns_hand_case_with_episode_end():
    rewards = th.tensor([[1.0], [2.0], [3.0], [4.0]])  # [T=4, B=1]
    dones = th.tensor([[0.0], [1.0], [0.0], [0.0]])  # the episode ends at step 1
    returns = n_step_returns(rewards, dones, th.tensor([10.0]), gamma=0.5)
    # R_3 = 4 + .5*10 = 9; R_2 = 3 + .5*9 = 7.5; R_1 = 2 (done); R_0 = 1 + .5*2 = 2
    assert th.allclose(returns[:, 0], th.tensor([2.0, 2.0, 7.5, 9.0]))


def test_n_step_returns_batch_and_trailing_dims():
    rewards = th.ones(3, 2, 2, 2)  # [T, B, H, W]
    dones = th.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])  # env 1 ends at the last step
    bootstrap = th.full((2, 2, 2), 4.0)
    returns = n_step_returns(rewards, dones, bootstrap, gamma=0.5)
    assert returns.shape == (3, 2, 2, 2)
    assert th.allclose(
        returns[:, 0], th.tensor([2.25, 2.5, 3.0]).view(3, 1, 1).expand(3, 2, 2)
    )  # 1 + .5 * (1 + .5 * (1 + .5 * 4))
    assert th.allclose(returns[:, 1], th.tensor([1.75, 1.5, 1.0]).view(3, 1, 1).expand(3, 2, 2))  # no bootstrap
    with pytest.raises(ValueError):
        n_step_returns(rewards, dones, th.zeros(2), 0.5)


def test_n_step_returns_discount_and_bootstrap_hand_case():
    rewards = th.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 2.0]])  # [T=3, B=2], no episode end
    returns = n_step_returns(rewards, th.zeros(3, 2), th.tensor([10.0, -8.0]), gamma=0.9)
    expected_0 = [1 + 0.81 * 1 + 0.729 * 10, 0.9 * 1 + 0.81 * 10, 1 + 0.9 * 10]
    expected_1 = [0.81 * 2 + 0.729 * -8, 0.9 * 2 + 0.81 * -8, 2 + 0.9 * -8]
    assert th.allclose(returns, th.tensor([expected_0, expected_1]).T)
    assert th.equal(n_step_returns(rewards, th.zeros(3, 2), th.zeros(2), gamma=0.0), rewards)  # gamma 0: r_t


def test_dueling_subtracts_the_mean_advantage():
    value = th.tensor([[[1.0]], [[-2.0]]])  # [N=2, 1, E=1]
    advantage = th.tensor([[[1.0], [2.0], [6.0]], [[0.0], [0.0], [3.0]]])  # [N=2, A=3, E=1]
    q = dueling(value, advantage, dim=1)
    assert th.allclose(q[:, :, 0], th.tensor([[-1.0, 0.0, 4.0], [-3.0, -3.0, 0.0]]))
    assert th.allclose(q.mean(dim=1), value[:, 0])  # the mean over actions is V
    assert th.allclose(dueling(value.transpose(1, 2), advantage.transpose(1, 2), dim=-1), q.transpose(1, 2))


def test_masked_mean_counts_only_the_masked_steps_and_their_elements():
    x = th.arange(12.0).view(2, 3, 2)  # [B=2, T=3, E=2]
    mask = th.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert masked_mean(x, mask).item() == pytest.approx((0 + 1 + 4 + 5 + 10 + 11) / 6)
    assert masked_mean(th.tensor([[2.0, 4.0]]), th.tensor([[0.0, 1.0]])).item() == 4.0  # no trailing dims
    assert masked_mean(x, th.zeros(2, 3)).item() == 0.0  # nothing to average: 0, not NaN


def test_pixel_control_rewards_hand_case():
    frames = th.zeros(3, 2, 4, 4)  # T+1 = 3 frames, 2 channels, 4x4
    frames[1, 0, 0, 0] = 1.0  # one pixel of one channel changes in the top-left cell
    frames[2] = frames[1]  # the last frame does not change
    rewards = pixel_control_rewards(frames, cell_size=2)
    assert rewards.shape == (2, 2, 2)
    expected0 = th.zeros(2, 2)
    expected0[0, 0] = 1.0 / (2 * 2 * 2)  # mean over 4 pixels and 2 channels
    assert th.allclose(rewards[0], expected0)
    assert th.equal(rewards[1], th.zeros(2, 2))  # unchanged frame: zero reward
    full = th.rand(5, 3, 8, 8)
    assert th.allclose(pixel_control_rewards(full, 1), (full[1:] - full[:-1]).abs().mean(1))
    assert pixel_control_rewards(th.rand(2, 5, 3, 8, 8), 4).shape == (2, 4, 2, 2)  # leading batch dim


def test_pixel_control_rewards_rejects_non_multiple():
    with pytest.raises(ValueError):
        pixel_control_rewards(th.rand(3, 1, 10, 10), 4)


def test_crop_and_deconv_geometry():
    assert crop_box(84, 84, 4, 2) == (2, 2, 20, 20)  # UNREAL: central 80x80 of 84x84
    assert crop_box(10, 10, 1, 0) == (0, 0, 10, 10)
    assert crop_box(10, 10, 4, 0) == (1, 1, 2, 2)
    assert deconv_geometry(20) == (9, 0, 0)  # FC 32x9x9 -> 4x4 stride-2 deconv -> 20x20
    for g in range(1, 30):
        n, p, op = deconv_geometry(g)
        assert 2 * (n - 1) - 2 * p + 4 + op == g and 0 <= op < 2


def test_feature_control_rewards_and_q_loss_hand_case():
    maps = th.zeros(3, 2, 2, 2)  # [T+1, K, h, w]
    maps[1, 0] = 1.0
    maps[2, 0] = 1.0
    rewards = feature_control_rewards(maps)
    assert th.equal(rewards, th.tensor([[1.0, 0.0], [0.0, 0.0]]))
    # n-step Q: B=1, T=2, A=2, E=(1,)
    q = th.tensor([[[[1.0], [0.0]], [[0.0], [2.0]], [[3.0], [5.0]]]])  # [1, 3, 2, 1]
    loss, taken, targets = n_step_q_loss(q, th.tensor([[0, 1]]), th.tensor([[[1.0], [1.0]]]), th.zeros(1, 2), 0.5)
    assert th.allclose(taken[0, :, 0], th.tensor([1.0, 2.0]))
    assert th.allclose(targets[0, :, 0], th.tensor([1 + 0.5 * 3.5, 1 + 0.5 * 5]))  # bootstrap max_a = 5
    assert loss.item() == pytest.approx(0.5 * ((2.75 - 1) ** 2 + (3.5 - 2) ** 2) / 2)


# ------------------------------------------------------------------------- heads


@pytest.fixture(scope="module")
def atari_like_model():
    env = DummyVecEnv([lambda: FakeImageEnv((3, 84, 84), n_actions=4)])
    return AuxPPO("CnnPolicy", env, n_steps=16, batch_size=16, aux_tasks=["pixel_control"], seed=0, device="cpu")


def test_pixel_control_head_shape_84(atari_like_model):
    policy = atari_like_model.policy
    head = policy.aux_head("pixel_control")
    assert isinstance(head, PixelControlHead)
    obs = th.as_tensor(np.stack([policy.observation_space.sample() for _ in range(3)]))
    q = head(policy.encode(obs))
    assert q.shape == (3, 4, 20, 20)


@pytest.mark.parametrize("grid", [(10, 10), (7, 9), (3, 5), (1, 1), (16, 16), (20, 20)])
def test_deconvolutions_as_matrix_products_equal_the_modules(grid):
    """Small grids run the deconvolutions as products (faster on CPU): same outputs and gradients."""
    th.manual_seed(0)
    head = PixelControlHead(32, 5, grid)
    assert head.as_products == (grid[0] * grid[1] <= 256)
    h = th.randn(6, *head.fc_shape, requires_grad=True)
    scatter = scatter_matrix(head.deconv_advantage, head.fc_shape[1:])
    for deconv in (head.deconv_value, head.deconv_advantage):
        ours = transposed_conv(h, deconv, scatter, head.grid)
        theirs = deconv(h)
        th.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        grads = th.autograd.grad((ours * theirs.detach()).sum(), [h, deconv.weight, deconv.bias])
        expected = th.autograd.grad((theirs * theirs.detach()).sum(), [h, deconv.weight, deconv.bias])
        for g, e in zip(grads, expected):
            th.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)
    assert "scatter" not in head.state_dict()  # checkpoints hold the modules' parameters only


def test_pixel_control_advantage_stream_matters(atari_like_model):
    policy = atari_like_model.policy
    head = copy.deepcopy(policy.aux_head("pixel_control"))
    features = policy.encode(th.as_tensor(policy.observation_space.sample()[None])).detach()
    h = head.fc(features).view(-1, *head.fc_shape)
    advantage = head.deconv_advantage(h)
    assert advantage.shape[1] == 4
    assert (advantage - advantage.mean(1, keepdim=True)).abs().max() > 1e-6  # not identically 0
    q_before = head(features).detach()
    with th.no_grad():
        head.deconv_advantage.weight.add_(th.randn_like(head.deconv_advantage.weight))
    change = head(features).detach() - q_before  # [1, A, 20, 20]
    assert change.abs().max() > 1e-4
    assert (change - change[:, :1]).abs().max() > 1e-4  # actions change differently: Q depends on A


# ------------------------------------------------------------- learning one task


@pytest.fixture(scope="module")
def filled_minatar_model():
    kwargs = {name: {"seq_len": SHORT} for name in UNREAL_NAMES}
    model = AuxPPO(
        "CnnPolicy",
        minatar_env(),
        n_steps=128,
        batch_size=128,
        n_epochs=1,
        aux_tasks=list(UNREAL_NAMES),
        aux_task_kwargs=kwargs,
        **minatar_kwargs(),
    )
    model.learn(512)
    return model


@pytest.mark.parametrize("name", UNREAL_NAMES)
def test_task_loss_decreases_on_fixed_batch(filled_minatar_model, name):
    model = filled_minatar_model
    task = next(t for t in model.aux_tasks if t.name == name)
    request = task.replay_request()
    assert model.aux_replay.can_sample(request)
    th.manual_seed(0)
    batch = model.aux_replay.sample(request)
    policy = model.policy  # trained in place and restored after (SB3 policies do not deepcopy after use)
    saved = copy.deepcopy(policy.state_dict())
    head = policy.aux_head(name)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = th.optim.Adam(params, lr=1e-3)
    losses = []
    try:
        for _ in range(50):
            batch.forget()  # features change with the weights
            loss, metrics = task.loss(policy, head, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    finally:
        policy.load_state_dict(saved)
    assert all(np.isfinite(losses))
    assert all(th.isfinite(v) for v in metrics.values())
    assert min(losses[-5:]) < 0.5 * losses[0], losses


def test_feature_control_target_is_not_optimised_and_saved(filled_minatar_model, tmp_path):
    model = filled_minatar_model
    head = model.policy.aux_head("feature_control")
    assert isinstance(head, FeatureControlHead)
    assert not any(p.requires_grad for p in head.target.parameters())
    assert any(k.startswith("aux_heads.feature_control.target.") for k in model.policy.state_dict())
    # the target moved toward the encoder, slowly
    online = model.policy.encoder.conv[0].weight
    target = head.target[0].weight
    assert not th.equal(online, target)
    model.save(tmp_path / "m.zip")
    loaded = AuxPPO.load(tmp_path / "m.zip", device="cpu")
    assert th.equal(loaded.policy.aux_head("feature_control").target[0].weight, target)


# ------------------------------------------------------------------ training runs


def _aux_scalars(model) -> dict[str, float]:
    return {k: v for k, v in model.logger.name_to_value.items() if k.startswith("aux/")}


@pytest.mark.parametrize("algo", [AuxPPO, AuxA2C])
def test_unreal_bundle_trains_on_minatar(algo):
    extra = dict(batch_size=64, n_epochs=2) if algo is AuxPPO else {}
    model = algo(
        "CnnPolicy",
        minatar_env(),
        n_steps=32,
        aux_tasks="unreal",
        aux_task_kwargs={"value_replay": {"seq_len": SHORT}, "pixel_control": {"seq_len": SHORT}},
        **minatar_kwargs(**extra),
    )
    assert [t.name for t in model.aux_tasks] == list(BUNDLES["unreal"])
    model.learn(512)
    scalars = _aux_scalars(model)
    for key in (
        "aux/reward_pred/loss",
        "aux/value_replay/loss",
        "aux/value_replay/mean_return",
        "aux/pixel_control/loss",
        "aux/pixel_control/mean_max_q",
        "aux/pixel_control/mean_pseudo_reward",
    ):
        assert key in scalars and np.isfinite(scalars[key]), (key, scalars)
    assert scalars["aux/skipped_updates"] == 0
    pc = next(t for t in model.aux_tasks if t.name == "pixel_control")
    assert pc.geometry(model.observation_space)[0] == 1  # MinAtar: 1-pixel cells, a 10x10 grid


@pytest.mark.parametrize("algo", [AuxPPO, AuxA2C])
def test_unreal_tasks_train_on_atari_breakout(algo):
    import ale_py
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=2, seed=0), n_stack=4)
    extra = dict(batch_size=64, n_epochs=1) if algo is AuxPPO else {}
    model = algo(
        "CnnPolicy",
        env,
        n_steps=48,
        aux_tasks=["unreal", "feature_control"],
        aux_task_kwargs={name: {"seq_len": 10, "batch_size": 2} for name in UNREAL_NAMES},
        aux_replay_capacity=200,
        seed=0,
        **extra,
    )
    pc = next(t for t in model.aux_tasks if t.name == "pixel_control")
    assert pc.geometry(model.observation_space) == (4, 2, 2, 20, 20)
    assert model.aux_replay is None  # made by learn(), sized for the env it trains on
    model.learn(192)
    assert model.aux_replay.frame_stack == 4  # found the env's VecFrameStack
    assert model.aux_replay.n_envs == 2
    scalars = _aux_scalars(model)
    for name in UNREAL_NAMES:
        assert f"aux/{name}/loss" in scalars and np.isfinite(scalars[f"aux/{name}/loss"]), scalars
    assert "aux/feature_control/mean_pseudo_reward" in scalars
    assert scalars["aux/pixel_control/mean_pseudo_reward"] >= 0
    env.close()


# ------------------------------------------------------------------- configuration


def test_registry_and_bundle():
    for name, cls in (
        ("value_replay", ValueReplay),
        ("pixel_control", PixelControl),
        ("feature_control", FeatureControl),
    ):
        assert TASKS[name] is cls
    assert BUNDLES["unreal"] == ("reward_pred", "value_replay", "pixel_control")
    weights = {t.name: t.weight for t in make_tasks("unreal", algo="a2c")}
    assert weights["pixel_control"] == 0.05
    assert weights == {"reward_pred": 0.25, "value_replay": 0.25, "pixel_control": 0.05}  # the sweep's
    assert {t.name: t.weight for t in make_tasks("unreal", algo="ppo")} == {
        "reward_pred": 0.0625, "value_replay": 0.0625, "pixel_control": 0.05}


def test_value_replay_takes_the_agents_gamma():
    model = AuxA2C("CnnPolicy", minatar_env(1), gamma=0.93, aux_tasks=["value_replay"], **minatar_kwargs())
    assert model.aux_tasks[0].discount == pytest.approx(0.93)
    assert ValueReplay(gamma=0.5).discount == 0.5
    with pytest.raises(ConfigError):
        ValueReplay().discount  # noqa: B018 - no agent, no gamma


@pytest.mark.parametrize("name", ["pixel_control", "feature_control"])
def test_control_tasks_reject_non_image_env(name):
    with pytest.raises(ConfigError):
        AuxPPO("MlpPolicy", "CartPole-v1", aux_tasks=[name])


def test_pixel_control_rejects_cell_size_that_does_not_fit():
    with pytest.raises(ConfigError):
        AuxPPO(
            "CnnPolicy",
            minatar_env(1),
            aux_tasks=["pixel_control"],
            aux_task_kwargs={"pixel_control": {"cell_size": 11}},
            **minatar_kwargs(),
        )
    with pytest.raises(ConfigError):
        PixelControl(cell_size=0)
    model = AuxPPO(
        "CnnPolicy",
        minatar_env(1),
        aux_tasks=["pixel_control"],
        aux_task_kwargs={"pixel_control": {"cell_size": 3}},
        **minatar_kwargs(),
    )
    assert model.policy.aux_head("pixel_control")(th.zeros(2, model.policy.features_dim)).shape == (2, 3, 3, 3)


def test_feature_control_rejects_encoder_without_conv_layers():
    with pytest.raises(ConfigError):  # MlpPolicy on images: a Flatten encoder, no feature maps
        AuxPPO("MlpPolicy", minatar_env(1), aux_tasks=["feature_control"], seed=0)


def test_control_tasks_reject_continuous_actions():
    class Continuous(FakeImageEnv):
        def __init__(self):
            super().__init__((3, 10, 10))
            self.action_space = spaces.Box(-1, 1, (2,), np.float32)

    for name in ("pixel_control", "feature_control"):
        with pytest.raises(ConfigError):
            AuxPPO(
                "CnnPolicy",
                DummyVecEnv([Continuous]),
                aux_tasks=[name],
                policy_kwargs=dict(features_extractor_class=_minatar_extractor()),
            )


def test_n_step_q_loss_stops_before_an_episode_end_it_has_no_frame_for():
    """Last step done: its pseudo-reward is unknown; step T-2 bootstraps from max Q(s_{T-1})."""
    q = th.zeros(1, 4, 2, 1)  # B=1, T=3 (+1), 2 actions, one cell
    q[0, 2, 1, 0] = 5.0  # max_a Q(s_2) = 5
    q[0, 3, 0, 0] = 100.0  # Q of the next episode's first frame: must not be used
    actions = th.zeros(1, 3, dtype=th.long)
    rewards = th.tensor([[[1.0], [2.0], [1000.0]]])  # the last one crosses the episode end
    dones = th.tensor([[0.0, 0.0, 1.0]])
    loss, q_taken, targets = n_step_q_loss(q, actions, rewards, dones, gamma=0.5)
    assert targets[0, 1, 0] == pytest.approx(2.0 + 0.5 * 5.0)
    assert targets[0, 0, 0] == pytest.approx(1.0 + 0.5 * (2.0 + 0.5 * 5.0))
    # the last step is left out of the loss: only steps 0 and 1 (q_taken = 0 there)
    expected = 0.5 * (targets[0, 0, 0] ** 2 + targets[0, 1, 0] ** 2) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_feature_control_target_moves_once_per_optimizer_step_when_a_batch_is_reused(filled_minatar_model):
    """With aux_every = k a loss is computed once for k optimizer steps: the target moves by k EMA steps,
    1 - (1 - tau)^k of the way, and its step counter counts k."""
    model = filled_minatar_model
    task = next(t for t in model.aux_tasks if t.name == "feature_control")
    head = model.policy.aux_head("feature_control")
    saved_steps, saved_state = task.steps_per_batch, {k: v.clone() for k, v in head.state_dict().items()}
    try:
        task.steps_per_batch = 3
        online = model.policy.encoder.conv[0].weight.detach().clone()
        before, calls = head.target[0].weight.detach().clone(), int(head.calls)
        task.loss(model.policy, head, model.aux_replay.sample(task.replay_request()))
        after = head.target[0].weight.detach()
        expected = before + (1.0 - (1.0 - task.tau) ** 3) * (online - before)
        assert int(head.calls) == calls + 3
        assert th.allclose(after, expected, atol=1e-6)
    finally:
        task.steps_per_batch = saved_steps
        head.load_state_dict(saved_state)
