"""PPO2's value clipping (``clip_range_vf_form='max'``) beside SB3's, on MinAtar."""

from __future__ import annotations

import pytest
import stable_baselines3.ppo.ppo as sb3_ppo
import torch as th

from rlaux.algorithms import AuxPPG, AuxPPO
from rlaux.algorithms.value_clip import max_form_value_clip, max_form_values
from rlaux.envs import make_vec_env, resolve_env
from rlaux.errors import ConfigError
from rlaux.minibatch import MinibatchRolloutBuffer
from rlaux.networks import sb3_policy_kwargs


def build(cls=AuxPPO, **extra):
    spec = resolve_env("MinAtar")
    env = make_vec_env(spec, n_envs=2, vec_env="dummy")
    kwargs = {"n_steps": 32, "batch_size": 32, "n_epochs": 4, "learning_rate": 3e-3, "clip_range_vf": 0.05,
              "clip_range_vf_form": "max", **extra}
    return cls("CnnPolicy", env, policy_kwargs=sb3_policy_kwargs(spec.policy_kwargs), seed=0, device="cpu", **kwargs)


def test_max_form_values_hand_case_and_gradient():
    old = th.tensor([0.0, 0.0, 0.0, 1.0])
    values = th.tensor([0.5, 0.5, 0.05, 0.0], requires_grad=True)
    returns = th.tensor([1.0, -1.0, 1.0, 2.0])
    out = max_form_values(values, old, returns, 0.1)
    # clipped predictions 0.1, 0.1, 0.05, 0.9; the larger squared error: clipped (0.81 > 0.25), unclipped
    # (2.25 > 1.21), either (the clip does not bind), unclipped (4.0 > 1.21)
    assert out.detach().tolist() == pytest.approx([0.1, 0.5, 0.05, 0.0])
    loss = (returns - out).square().mean()
    reference = th.maximum((values - returns).square(), (old + (values - old).clamp(-0.1, 0.1) - returns).square())
    assert loss.item() == pytest.approx(reference.mean().item())
    grad, = th.autograd.grad(loss, values)
    expected, = th.autograd.grad(reference.mean(), values)
    assert th.allclose(grad, expected)
    assert grad[0] == 0  # the clip binds and the clipped error is the larger: no pull, as in PPO2


def test_sb3s_value_loss_is_ppo2s_during_training(monkeypatch):
    model = build()
    assert isinstance(model.rollout_buffer, MinibatchRolloutBuffer)
    evaluate = type(model.policy).evaluate_actions
    checked, bound = [], []
    mse = sb3_ppo.F.mse_loss

    def spy(returns, values_pred):
        batch = model.rollout_buffer.current_minibatch
        with th.no_grad():
            actions = batch.actions.long().flatten()
            values = evaluate(model.policy, batch.observations, actions)[0].flatten()
        clipped = batch.old_values + (values - batch.old_values).clamp(-0.05, 0.05)
        ppo2 = th.maximum((values - batch.returns).square(), (clipped - batch.returns).square()).mean()
        loss = mse(returns, values_pred)
        checked.append(th.isclose(loss.detach(), ppo2, rtol=1e-5).item())
        bound.append(((clipped != values) & ((clipped - batch.returns).square()
                                              > (values - batch.returns).square())).any().item())
        return loss

    monkeypatch.setattr(sb3_ppo.F, "mse_loss", spy)
    model.learn(128)
    assert len(checked) == 4 * 4 and all(checked)  # 4 rollouts x 4 epochs of one minibatch
    assert any(bound)  # the clipped error was the larger somewhere: the max form acted
    assert model.clip_range_vf(1.0) == 0.05 and "evaluate_actions" not in vars(model.policy)
    assert model.logger.name_to_value["train/clip_range_vf"] == 0.05


def test_only_the_trained_minibatchs_values_change():
    model = build()
    model.learn(64)
    with th.no_grad():
        model.policy.value_net.bias += 1.0  # the predictions move away from old_values
    batch = next(model.rollout_buffer.get(32))
    actions = batch.actions.long().flatten()
    raw = model.policy.evaluate_actions(batch.observations, actions)[0]
    with max_form_value_clip(model.policy, model.rollout_buffer, 0.05):
        seen = model.policy.evaluate_actions(batch.observations, actions)[0]
        other = model.policy.evaluate_actions(batch.observations.clone(), actions)[0]  # e.g. DrAC's augmented
    expected = max_form_values(raw.flatten(), batch.old_values, batch.returns, 0.05)
    assert th.equal(seen.flatten(), expected) and not th.equal(seen, raw)
    assert th.equal(other, raw)


def test_the_form_is_saved_and_changes_training(tmp_path):
    runs = {}
    for form in ("max", "clipped"):
        model = build(clip_range_vf_form=form)
        model.learn(128)
        runs[form] = th.cat([p.detach().flatten() for p in model.policy.parameters()])
        model.save(tmp_path / form)
    assert not th.equal(runs["max"], runs["clipped"])
    loaded = AuxPPO.load(tmp_path / "max", device="cpu")
    assert loaded.clip_range_vf_form == "max" and loaded.rollout_buffer_class is MinibatchRolloutBuffer
    assert AuxPPO.load(tmp_path / "clipped", device="cpu").clip_range_vf_form == "clipped"


def test_ppg_takes_the_form():
    model = build(AuxPPG, n_epochs=1, ppg_n_pi=2, ppg_aux_epochs=1)
    model.learn(128)
    assert model.clip_range_vf_form == "max" and model.ppg_aux_phases >= 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"clip_range_vf_form": "maximum"}, "clip_range_vf_form must be one of 'clipped', 'max', got 'maximum'"),
    ({"clip_range_vf": None}, "clip_range_vf_form='max' clips the value loss by clip_range_vf, which is not set"),
])
def test_bad_forms_are_refused_in_one_line(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        build(**kwargs)
