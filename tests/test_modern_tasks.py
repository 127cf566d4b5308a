"""SPR, CURL, inverse dynamics, DrAC, deep supervision; random shift; the minibatch plumbing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer

from rlaux.algorithms import AuxA2C, AuxPPO
from rlaux.augment import auto_pad, random_shift, shift
from rlaux.envs import make_vec_env, resolve_env
from rlaux.errors import ConfigError
from rlaux.minibatch import MinibatchRolloutBuffer, RecordsMinibatch, rollout_buffer_class_for
from rlaux.networks import sb3_policy_kwargs
from rlaux.tasks import TASKS, make_tasks
from rlaux.tasks.base import update_target
from rlaux.tasks.curl import CURL, CURLHead
from rlaux.tasks.deep_supervision import DeepSupervision, decay_factor, policy_gradient_loss
from rlaux.tasks.drac import DrAC, drac_loss
from rlaux.tasks.functional import cosine_prediction_loss, info_nce_loss
from rlaux.tasks.inverse_dynamics import InverseDynamics, inverse_dynamics_loss
from rlaux.tasks.spr import SPR, SPRHead, valid_after_dones

REPLAY_TASKS = ("inverse_dynamics", "spr", "curl")
MINIBATCH_TASKS = ("drac", "deep_supervision")
ALL_TASKS = REPLAY_TASKS + MINIBATCH_TASKS


def minatar(n_envs: int = 2):
    spec = resolve_env("MinAtar")
    return make_vec_env(spec, n_envs=n_envs, vec_env="dummy"), sb3_policy_kwargs(spec.policy_kwargs)


def build(algo, tasks, n_steps=32, task_kwargs=None, **extra):
    env, policy_kwargs = minatar()
    if algo is AuxPPO:
        extra = {"batch_size": 32, "n_epochs": 2, **extra}
    return algo(
        "CnnPolicy",
        env,
        n_steps=n_steps,
        aux_tasks=list(tasks),
        aux_task_kwargs=task_kwargs or {},
        policy_kwargs=policy_kwargs,
        seed=0,
        device="cpu",
        **extra,
    )


# ------------------------------------------------------------------ augmentation


def test_random_shift_keeps_shape_dtype_and_shifts():
    g = th.Generator().manual_seed(0)
    x = th.randint(0, 256, (64, 3, 10, 10), dtype=th.uint8, generator=g)
    y = random_shift(x, 2, generator=g)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not th.equal(x, y)  # some images moved
    # each output is the input shifted by one (dy, dx) in [-2, 2]^2 with border pixels repeated
    for i in range(x.shape[0]):
        candidates = [shift(x[i : i + 1], th.tensor([[dy, dx]])) for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(th.equal(y[i : i + 1], c) for c in candidates)
    assert th.equal(random_shift(x, 0), x)
    assert auto_pad(84, 84) == 4 and auto_pad(10, 10) == 1


def test_shift_hand_case_replicates_the_border():
    x = th.arange(16.0).view(1, 1, 4, 4)
    y = shift(x, th.tensor([[1, -1]]))  # output (r, c) = input (clamp(r + 1), clamp(c - 1))
    expected = th.tensor([[4.0, 4, 5, 6], [8, 8, 9, 10], [12, 12, 13, 14], [12, 12, 13, 14]])
    assert th.equal(y[0, 0], expected)
    with pytest.raises(ValueError):
        random_shift(th.zeros(3, 4, 4), 1)


# ------------------------------------------------------------------ pure functions


def test_cosine_prediction_loss_and_done_mask():
    p = th.randn(3, 2, 5)
    loss, cos = cosine_prediction_loss(p, 2.0 * p)  # same direction: 0
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and cos.item() == pytest.approx(1.0)
    loss, _ = cosine_prediction_loss(p, -p)  # opposite: 4 per step, summed over K = 2
    assert loss.item() == pytest.approx(8.0, abs=1e-5)
    mask = th.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    target = th.cat([p[:, :1], -p[:, 1:]], dim=1)  # step 2 wrong, but masked
    assert cosine_prediction_loss(p, target, mask)[0].item() == pytest.approx(0.0, abs=1e-6)
    dones = th.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert th.equal(valid_after_dones(dones), th.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))


def test_info_nce_hand_case_and_row_shift_invariance():
    third = float(np.log(3.0))
    logits = th.tensor([[third, 0.0], [0.0, third]])  # each positive has probability 3/4
    loss, accuracy = info_nce_loss(logits)
    assert loss.item() == pytest.approx(np.log(4.0 / 3.0)) and accuracy.item() == 1.0
    wrong = th.tensor([[0.0, third], [third, 0.0]])  # each positive has probability 1/4
    loss, accuracy = info_nce_loss(wrong + th.tensor([[100.0], [-7.0]]))  # a constant per row changes nothing
    assert loss.item() == pytest.approx(np.log(4.0)) and accuracy.item() == 0.0


def test_update_target_is_polyak_on_parameters_and_copies_buffers():
    online, target = th.nn.BatchNorm1d(3), th.nn.BatchNorm1d(3)
    with th.no_grad():
        online.weight.fill_(2.0)
        target.weight.fill_(1.0)
        online.running_mean.fill_(5.0)
    update_target(target, online, 0.25)
    assert th.allclose(target.weight, th.full((3,), 1.25))  # 0.75 * 1 + 0.25 * 2
    assert th.equal(target.running_mean, online.running_mean)
    update_target(target, online, 1.0)
    assert th.equal(target.weight, online.weight)


def test_info_nce_inverse_dynamics_drac_and_decay_functions():
    loss, acc = info_nce_loss(10.0 * th.eye(4))
    assert loss.item() < 1e-3 and acc.item() == 1.0
    assert info_nce_loss(th.zeros(4, 4))[0].item() == pytest.approx(np.log(4))
    logits = th.tensor([[5.0, 0.0], [0.0, 5.0]])
    ce, acc = inverse_dynamics_loss(logits, th.tensor([0, 0]), discrete=True)
    assert acc.item() == 0.5 and ce.item() > 0
    mse, none = inverse_dynamics_loss(th.zeros(2, 3), th.ones(2, 3), discrete=False)
    assert mse.item() == pytest.approx(1.0) and none is None
    total, gv, gpi = drac_loss(th.tensor([1.0, 2.0]), th.tensor([2.0, 2.0]), th.log(th.tensor([0.5, 0.25])))
    assert gv.item() == pytest.approx(0.25) and gpi.item() == pytest.approx(-(np.log(0.5) + np.log(0.25)) / 2)
    assert total.item() == pytest.approx(gv.item() + gpi.item())
    assert decay_factor(0.25, 0.5) == 0.5 and decay_factor(0.9, 0.5) == 0.0 and decay_factor(0.9, None) == 1.0
    lp = th.tensor([-1.0, -2.0], requires_grad=True)
    assert policy_gradient_loss(lp, th.tensor([1.0, 3.0]), normalize=False).item() == pytest.approx(3.5)


# ------------------------------------------------------------------ fixed-batch learning


@pytest.fixture(scope="module")
def trained_model():
    kwargs = {
        "spr": {"k": 3, "batch_size": 16},
        "curl": {"batch_size": 16},
        "deep_supervision": {"decay_fraction": None},
    }
    model = build(AuxPPO, ALL_TASKS, n_steps=128, task_kwargs=kwargs, batch_size=128, n_epochs=1)
    model.learn(512)
    return model


def _fixed_batch(model, task):
    if task.uses_minibatch:
        th.manual_seed(0)
        return next(model.rollout_buffer.get(64))
    return model.aux_replay.sample(task.replay_request())


@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_loss_decreases_on_fixed_batch(trained_model, name):
    model = trained_model
    task = next(t for t in model.aux_tasks if t.name == name)
    batch = _fixed_batch(model, task)
    policy = model.policy
    saved = copy.deepcopy(policy.state_dict())
    head = policy.aux_head(name)
    optimizer = th.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    losses, watched = [], []
    steps = 200 if name == "curl" else 40  # CURL starts at log B with logits of order 1 (W = I / D): slower
    try:
        for i in range(steps):
            th.manual_seed(i)  # augmentations and DrAC's actions vary; the data does not
            if hasattr(batch, "_cache"):
                batch.forget()
            loss, metrics = task.loss(policy, head, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            watched.append(metrics["value_loss"].item() if name in MINIBATCH_TASKS else loss.item())
    finally:
        policy.load_state_dict(saved)
    assert all(np.isfinite(losses)) and all(th.isfinite(v) for v in metrics.values())
    # deep supervision's policy-gradient term is not bounded below, DrAC's -log pi(a|aug(s)) falls only
    # as fast as the policy sharpens: watch their value terms, and require the total to fall too
    assert min(watched[-5:]) < 0.5 * watched[0], watched
    if name == "drac":
        assert min(losses[-5:]) < losses[0], losses


# ------------------------------------------------------------------ target networks


@pytest.mark.parametrize("name,kwargs", [("spr", {"augment": False, "tau": 0.1, "k": 2}), ("curl", {"tau": 0.1})])
def test_ema_target_moves_by_tau_and_gets_no_gradient(trained_model, name, kwargs):
    policy = trained_model.policy
    task = TASKS[name](**kwargs)
    with th.random.fork_rng():
        head = task.build_head(policy)
    targets = [head.target_trunk, head.target_rest] if name == "spr" else [head.key_encoder, head.key_projection]
    with th.no_grad():  # make the target differ from the online network
        for module in targets:
            for p in module.parameters():
                p.add_(th.randn_like(p))
    online = head.online_parts(policy) if name == "spr" else [policy.encoder, head.projection]
    old = [[p.clone() for p in m.parameters()] for m in targets]
    now = [[p.detach().clone() for p in m.parameters()] for m in online]
    batch = trained_model.aux_replay.sample(task.replay_request())
    loss, _ = task.loss(policy, head, batch)
    for module, olds, onlines in zip(targets, old, now, strict=True):
        for p, o, w in zip(module.parameters(), olds, onlines, strict=True):
            assert not p.requires_grad
            assert th.allclose(p, 0.9 * o + 0.1 * w, atol=1e-6)
    policy.optimizer.zero_grad()
    loss.backward()
    assert all(p.grad is None for m in targets for p in m.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.encoder.parameters())
    policy.optimizer.zero_grad()


def test_curl_loss_at_init_is_near_log_batch_size(trained_model):
    """A fresh head on a fresh MinAtar encoder: projected latents and W = I / D give logits of order 1."""
    fresh = build(AuxPPO, ["curl"], task_kwargs={"curl": {"batch_size": 32}})
    task, head = fresh.aux_tasks[0], fresh.policy.aux_head("curl")
    assert head.projection[0].out_features == 50 and head.W.shape == (50, 50)
    with th.no_grad():
        losses = [task.loss(fresh.policy, head, trained_model.aux_replay.sample(task.replay_request()))[0].item()
                  for _ in range(3)]
    assert all(abs(loss - np.log(32)) < 0.2 * np.log(32) for loss in losses), losses
    assert CURL(latent_dim=8).build_head(fresh.policy).W.shape == (8, 8)
    with pytest.raises(ConfigError, match="latent_dim"):
        CURL(latent_dim=0)


def test_spr_with_augmentation_copies_the_online_network(trained_model):
    task = next(t for t in trained_model.aux_tasks if t.name == "spr")
    assert task.target_tau(trained_model.observation_space) == 1.0
    assert SPR(augment=False).target_tau(trained_model.observation_space) == 0.01
    head = trained_model.policy.aux_head("spr")
    assert isinstance(head, SPRHead) and head.mode == "conv"
    trunk, rest = head.online_parts(trained_model.policy)
    # the last loss call copied the online network; the optimizer step after it moved the online one
    assert [p.shape for p in head.target_trunk.parameters()] == [p.shape for p in trunk.parameters()]
    update_target(head.target_trunk, trunk, 1.0)
    assert all(th.equal(a, b) for a, b in zip(head.target_trunk.parameters(), trunk.parameters(), strict=True))


def test_targets_are_saved_and_loaded(trained_model, tmp_path):
    model = trained_model
    state = model.policy.state_dict()
    assert any(k.startswith("aux_heads.spr.target_trunk.") for k in state)
    assert any(k.startswith("aux_heads.curl.key_encoder.") for k in state)
    assert isinstance(model.policy.aux_head("curl"), CURLHead)
    model.save(tmp_path / "m.zip")
    loaded = AuxPPO.load(tmp_path / "m.zip", device="cpu")
    for key, value in loaded.policy.state_dict().items():
        assert th.equal(value, state[key]), key
    assert loaded.rollout_buffer_class is MinibatchRolloutBuffer


# ------------------------------------------------------------------ minibatch plumbing


@pytest.mark.parametrize("algo", [AuxPPO, AuxA2C])
def test_minibatch_tasks_see_the_minibatch_sb3_trains_on(algo):
    model = build(algo, ["drac"], n_steps=16)
    assert isinstance(model.rollout_buffer, MinibatchRolloutBuffer)
    task = model.aux_tasks[0]
    sizes, seen = [], []
    original = task.loss

    def spy(policy, head, batch):
        sizes.append(batch.observations.shape[0])
        seen.append(batch is model.rollout_buffer.current_minibatch)
        return original(policy, head, batch)

    task.loss = spy
    model.learn(64)
    expected = 32 if algo is AuxPPO else 16 * 2  # PPO: batch_size; A2C: the whole rollout
    assert sizes and set(sizes) == {expected} and all(seen)
    steps_per_train = 2 if algo is AuxPPO else 1  # PPO: n_epochs=2 of one 32-step minibatch; A2C: one step
    assert len(sizes) == (64 // 32) * steps_per_train  # two rollouts of 16 steps x 2 envs
    assert model.rollout_buffer.current_minibatch is not None


def test_rollout_buffer_class_rules():
    space = minatar()[0].observation_space
    tasks = make_tasks(["drac"])
    assert rollout_buffer_class_for(make_tasks(["curl"]), None, space) is None  # no minibatch task: SB3's choice
    assert rollout_buffer_class_for(tasks, None, space) is MinibatchRolloutBuffer

    class Mine(RecordsMinibatch, RolloutBuffer):
        pass

    assert rollout_buffer_class_for(tasks, Mine, space) is Mine
    with pytest.raises(ConfigError):
        build(AuxPPO, ["drac"], rollout_buffer_class=RolloutBuffer)
    assert build(AuxPPO, ["curl"]).rollout_buffer_class is RolloutBuffer  # SB3's own
    assert type(build(AuxA2C, ["deep_supervision"], rollout_buffer_class=Mine).rollout_buffer) is Mine


def test_deep_supervision_weight_decays_with_progress():
    model = build(AuxA2C, ["deep_supervision"], n_steps=16, task_kwargs={"deep_supervision": {"decay_fraction": 0.5}})
    task = model.aux_tasks[0]
    decays = []
    original = task.loss

    def spy(policy, head, batch):
        loss, metrics = original(policy, head, batch)
        decays.append((task.progress, metrics["decay"].item()))
        return loss, metrics

    task.loss = spy
    model.learn(256)
    assert decays[0][0] == pytest.approx(32 / 256) and decays[0][1] == pytest.approx(1 - (32 / 256) / 0.5)
    assert all(d == pytest.approx(max(0.0, 1 - p / 0.5)) for p, d in decays)
    assert decays[-1][1] == 0.0


# ------------------------------------------------------------------ training runs


@pytest.mark.parametrize("algo", [AuxPPO, AuxA2C])
@pytest.mark.parametrize("name", ALL_TASKS)
def test_task_trains_on_minatar(algo, name):
    kwargs = {
        "spr": {"k": 3, "batch_size": 8},
        "curl": {"batch_size": 16},
        "deep_supervision": {"decay_fraction": None},
    }
    model = build(algo, [name], task_kwargs={name: kwargs.get(name, {})})
    model.learn(256)
    scalars = {k: v for k, v in model.logger.name_to_value.items() if k.startswith("aux/")}
    assert f"aux/{name}/loss" in scalars and np.isfinite(scalars[f"aux/{name}/loss"]), scalars
    assert scalars[f"aux/{name}/weight"] == pytest.approx(make_tasks([name], algo=model.algo_name)[0].weight)
    assert scalars["aux/skipped_updates"] == 0


# ------------------------------------------------------------------ configuration


def test_registry_defaults_and_checks():
    assert TASKS["spr"] is SPR and TASKS["curl"] is CURL and TASKS["inverse_dynamics"] is InverseDynamics
    assert TASKS["drac"] is DrAC and TASKS["deep_supervision"] is DeepSupervision
    weights = {t.name: t.weight for t in make_tasks(list(ALL_TASKS), algo="ppo")}
    assert weights["drac"] == 0.1 and weights["deep_supervision"] == 0.3
    for name in ("curl", "drac", "deep_supervision"):
        with pytest.raises(ConfigError):
            AuxPPO("MlpPolicy", "CartPole-v1", aux_tasks=[name])
    with pytest.raises(ConfigError):
        SPR(transition="rnn")
    with pytest.raises(ConfigError):
        CURL(batch_size=1)


def test_spr_and_inverse_dynamics_on_vector_observations():
    """Without a conv trunk, SPR falls back to an MLP transition model on the flat features."""
    model = AuxA2C(
        "MlpPolicy",
        "CartPole-v1",
        n_steps=16,
        aux_tasks=["spr", "inverse_dynamics"],
        aux_task_kwargs={"spr": {"k": 2, "batch_size": 8}},
        seed=0,
        device="cpu",
    )
    assert model.policy.aux_head("spr").mode == "mlp"
    assert model.aux_tasks[0].target_tau(model.observation_space) == 0.01  # no augmentation: EMA
    model.learn(128)
    assert np.isfinite(model.logger.name_to_value["aux/spr/loss"])
    assert np.isfinite(model.logger.name_to_value["aux/inverse_dynamics/loss"])
