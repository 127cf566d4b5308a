"""Phasic Policy Gradient (AuxPPG): the cycle, the auxiliary phase's loss, the architectures, the store, settings that
cannot work, checkpoints mid-cycle, rlaux's tasks in the policy phase, and the CLI end to end."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env

from rlaux import AuxPPG, AuxPPO, AuxSettings, ConfigError
from rlaux.algorithms.phasic import RolloutStore, bytes_per_stored_step, check_phasic_memory
from rlaux.policy.phasic import distribution_parameters, kl_from_parameters
from rlaux.run import RunConfig, resume, train
from rlaux.run import checkpoint as ck

SMALL = dict(n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")


def cartpole(n_envs: int = 2):
    return make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)


# ------------------------------------------------------------------ the cycle


def test_an_aux_phase_runs_after_every_n_pi_rollouts_and_empties_the_store():
    model = AuxPPG("MlpPolicy", cartpole(), ppg_n_pi=3, **SMALL)
    model.learn(5 * 64)  # 5 rollouts of 32 steps x 2 envs
    assert model.ppg_aux_phases == 1 and model.ppg_store.size == 2
    model.learn(64, reset_num_timesteps=False)
    assert model.ppg_aux_phases == 2 and model.ppg_store.size == 0


def test_the_aux_phase_fits_the_aux_value_head_and_holds_the_policy_by_the_kl():
    """After a phase of many epochs the policy network's auxiliary value head fits the stored value targets far better
    than before, and with a large beta_clone the policy moves less from the pre-phase policy than with beta_clone 0."""
    def after_phase(beta_clone: float) -> tuple[float, float, float]:
        model = AuxPPG("MlpPolicy", cartpole(), ppg_n_pi=2, ppg_aux_epochs=0, ppg_beta_clone=beta_clone,
                       ppg_aux_learning_rate=3e-3, **SMALL)
        model.learn(2 * 64)  # fills the store (E_aux 0: no phase); the phase is then run by hand
        store = model.ppg_store
        store.size = 2
        obs = th.as_tensor(store.obs[:2].reshape(-1, 4))
        targets = th.as_tensor(store.returns[:2].reshape(-1))
        with th.no_grad():
            before_dist, before_aux, _ = model.policy.phasic_forward(obs)
            before = distribution_parameters(before_dist)
        model.aux_settings = model.aux_settings.replace(ppg_aux_epochs=100)
        model._auxiliary_phase()
        with th.no_grad():
            dist, aux, _ = model.policy.phasic_forward(obs)
            kl = kl_from_parameters(before, dist).mean().item()
        return (((before_aux - targets) ** 2).mean().item(), ((aux - targets) ** 2).mean().item(), kl)

    _, _, kl_held = after_phase(100.0)
    error_before, error_after, kl_free = after_phase(0.0)
    assert error_after < 0.5 * error_before
    assert kl_held < kl_free


def test_kl_from_parameters_is_zero_for_the_same_policy_and_matches_torch():
    logits = th.randn(5, 2)  # CartPole: 2 actions
    model = AuxPPG("MlpPolicy", cartpole(), **SMALL)
    dist = model.policy.get_distribution(th.zeros(5, 4))
    same = distribution_parameters(dist)
    assert th.allclose(kl_from_parameters(same, dist), th.zeros(5), atol=1e-6)
    expected = th.distributions.kl_divergence(th.distributions.Categorical(logits=logits), dist.distribution)
    assert th.allclose(kl_from_parameters(logits, dist), expected)


def test_box_actions_keep_means_and_log_stds():
    model = AuxPPG("MlpPolicy", make_vec_env("Pendulum-v1", n_envs=2, seed=0), ppg_n_pi=2, n_steps=64,
                   batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(2 * 128)
    assert model.ppg_aux_phases == 1
    dist = model.policy.get_distribution(th.zeros(3, 3))
    assert distribution_parameters(dist).shape == (3, 2)
    assert th.allclose(kl_from_parameters(distribution_parameters(dist), dist), th.zeros(3), atol=1e-6)


# ------------------------------------------------------------------ architectures


def _encoder_gets_value_gradient(model: AuxPPG) -> bool:
    policy = model.policy
    policy.zero_grad()
    obs = th.randn(8, 4)
    policy.predict_values(obs).sum().backward()
    grads = [p.grad for p in policy.pi_features_extractor.parameters()] + \
            [p.grad for p in policy.mlp_extractor.policy_net.parameters()]
    return any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("arch, separate, value_trains_policy_network", [
    ("dual", True, False), ("detach", False, False), ("shared", False, True)])
def test_the_three_architectures(arch, separate, value_trains_policy_network):
    model = AuxPPG("MlpPolicy", cartpole(), ppg_arch=arch, policy_kwargs=dict(features_extractor="shared_mlp"),
                   **SMALL)
    policy = model.policy
    assert (policy.pi_features_extractor is not policy.vf_features_extractor) == separate
    assert _encoder_gets_value_gradient(model) == value_trains_policy_network
    # the policy's latent, not the critic's, feeds the auxiliary value head
    assert policy.aux_value_net.in_features == policy.mlp_extractor.latent_dim_pi


def test_a_contradicting_share_features_extractor_is_refused():
    with pytest.raises(ConfigError, match="share_features_extractor=True contradicts ppg_arch='dual'"):
        AuxPPG("MlpPolicy", cartpole(), policy_kwargs=dict(share_features_extractor=True), **SMALL)


def test_ppg_starts_from_ppos_weights():
    """The auxiliary value head is made outside SB3's RNG stream: actor and critic start as PPO's (shared layout)."""
    ppg = AuxPPG("MlpPolicy", cartpole(), ppg_arch="shared", **SMALL)
    ppo = AuxPPO("MlpPolicy", cartpole(), **SMALL)
    for name, value in ppo.policy.state_dict().items():
        assert th.equal(value, ppg.policy.state_dict()[name]), name


# ------------------------------------------------------------------ store and memory


def test_minatar_rollouts_are_stored_as_uint8_and_their_bytes_are_named():
    from rlaux.envs import make_vec_env as rlaux_vec_env
    from rlaux.envs import resolve_env

    venv = rlaux_vec_env(resolve_env("MinAtar", game="Breakout"), n_envs=2, seed=0, vec_env="dummy")
    model = AuxPPG("CnnPolicy", venv, ppg_n_pi=2, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu",
                   policy_kwargs=dict(features_extractor="minatar_cnn"))
    model.learn(32)
    store = model.ppg_store
    assert store.obs.dtype == np.uint8 and store.size == 1
    assert set(np.unique(store.obs[0])) <= {0, 255}
    # 4 channels x 10 x 10 uint8 + a float32 value target + 3 float32 logits
    assert bytes_per_stored_step(venv.observation_space, venv.action_space) == 400 + 4 + 12
    venv.close()


def test_a_store_larger_than_memory_allows_is_refused_naming_the_setting_and_the_limit():
    box = spaces.Box(0, 255, (4, 10, 10), np.uint8)
    with pytest.raises(ConfigError) as err:
        check_phasic_memory(1_000_000, 128, 64, box, spaces.Discrete(3), available=8 * 2**30)
    message = str(err.value)
    assert "ppg_n_pi=1000000" in message and "use ppg_n_pi <= 201" in message and "\n" not in message
    assert check_phasic_memory(8, 128, 64, box, spaces.Discrete(3), available=8 * 2**30) == 8 * 128 * 64 * 416


def test_store_state_round_trips_and_refuses_another_shape():
    box = spaces.Box(0, 255, (2, 3), np.uint8)
    store = RolloutStore(3, 4, 2, box)
    store.add(np.full((4, 2, 2, 3), 7, np.uint8), np.ones((4, 2), np.float32))
    again = RolloutStore(3, 4, 2, box)
    again.load_state(store.state())
    assert again.size == 1 and np.array_equal(again.obs[0], store.obs[0])
    with pytest.raises(ValueError, match="do not fit"):
        RolloutStore(3, 5, 2, box).load_state(store.state())


# ------------------------------------------------------------------ settings that cannot work


@pytest.mark.parametrize("argument, value, expected", [
    ("ppg_n_pi", 0, "ppg_n_pi must be an integer >= 1"),
    ("ppg_aux_epochs", -1, "ppg_aux_epochs must be an integer >= 0"),
    ("ppg_beta_clone", -0.5, "ppg_beta_clone must be a number >= 0"),
    ("ppg_arch", "twin", "ppg_arch must be one of dual, detach, shared"),
])
def test_bad_ppg_settings_are_refused_by_name(argument, value, expected):
    with pytest.raises(ConfigError, match=expected):
        AuxSettings.from_arguments(**{argument: value})


def test_other_algorithms_refuse_ppg_settings():
    with pytest.raises(ConfigError, match="ppg_n_pi is a setting of Phasic Policy Gradient"):
        AuxPPO("MlpPolicy", cartpole(), ppg_n_pi=4, **SMALL)


@pytest.mark.parametrize("flags, expected", [
    (["--algo", "ppg", "--hyperparams", "ppg_n_pi=0"], "--hyperparams ppg_n_pi must be an integer >= 1 (policy iterations per auxiliary phase), got 0"),
    (["--algo", "ppg", "--hyperparams", "ppg_beta_clone=-1"], "--hyperparams ppg_beta_clone must be a number >= 0"),
    (["--algo", "ppg", "--hyperparams", "ppg_n_pi=100000000"], "ppg_n_pi=100000000 would keep"),
    (["--algo", "ppo", "--hyperparams", "ppg_n_pi=4"], "unknown hyperparameter 'ppg_n_pi' for ppo"),
])
def test_the_cli_refuses_bad_ppg_settings_in_one_line_before_training(flags, expected, tmp_path, capsys, monkeypatch):
    import sys

    from rlaux.cli import main

    # the run's own envs are never built; only resolve's throw-away env of one copy reads the spaces
    monkeypatch.setattr(sys.modules["rlaux.run.train"], "_make_env", lambda *_, **__: pytest.fail("an env was built"))
    code = main(["train", "--env", "MinAtar", "-n", "1000", "--log-dir", str(tmp_path / "logs"), *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and "\n" not in err
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").iterdir())


# ------------------------------------------------------------------ rlaux's tasks in the policy phase


def test_reward_prediction_trains_in_ppgs_policy_phase():
    model = AuxPPG("MlpPolicy", cartpole(), aux_tasks=["reward_pred"], ppg_n_pi=2, aux_replay_capacity=200, **SMALL)
    head = model.policy.aux_head("reward_pred")
    before = [p.detach().clone() for p in head.parameters()]
    model.learn(4 * 64)
    assert model.ppg_aux_phases == 2
    assert any(not th.equal(b, p) for b, p in zip(before, head.parameters(), strict=True))
    assert "aux/reward_pred/loss" in model.logger.name_to_value


# ------------------------------------------------------------------ checkpoints, save and load


def test_a_run_resumed_mid_cycle_equals_the_uninterrupted_run(tmp_path):
    """CPU, one env: stopped after 2 of 3 rollouts of a cycle, resumed, the stored rollouts and the auxiliary
    optimizer come back and every logged value, weight and episode is as without the stop."""
    def config(name: str) -> RunConfig:
        return RunConfig(env="CartPole-v1", algo="ppg", timesteps=640, n_envs=1, seed=1, device="cpu",
                         log_dir=str(tmp_path), run_name=name, save_freq=128, progress_bar=False, verbose=0,
                         vec_env="dummy", keep_checkpoints=0,
                         hyperparams=dict(n_steps=64, batch_size=32, n_epochs=1, ppg_n_pi=3, ppg_aux_epochs=2))

    a, b = train(config("a")), train(config("b"))
    (b / "final_model.zip").unlink()
    for later in ck.checkpoint_dirs(b)[1:]:
        shutil.rmtree(later)
    first = ck.checkpoint_dirs(b)[0]
    assert json.loads((first / "state.json").read_text())["num_timesteps"] == 128
    assert th.load(first / "rollout.pt", weights_only=True)["ppg_obs"].shape[0] == 2  # mid-cycle
    resume(b)
    pa, pb = pd.read_csv(a / "progress.csv"), pd.read_csv(b / "progress.csv")
    cols = [c for c in pa.columns if not c.startswith("time/") and not c.endswith("_s")]
    assert "ppg/kl" in cols and pa[cols].equals(pb[cols])
    ma, mb = AuxPPG.load(a / "final_model.zip", device="cpu"), AuxPPG.load(b / "final_model.zip", device="cpu")
    assert ma.ppg_aux_phases == mb.ppg_aux_phases == 3
    for (name, x), y in zip(ma.policy.state_dict().items(), mb.policy.state_dict().values(), strict=True):
        assert th.equal(x, y), name
    for x, y in zip(ma.ppg_aux_optimizer.state_dict()["state"].values(),
                    mb.ppg_aux_optimizer.state_dict()["state"].values(), strict=True):
        assert th.equal(x["exp_avg"], y["exp_avg"])


def test_save_and_load_keep_the_settings_the_aux_optimizer_and_the_phase_count(tmp_path):
    model = AuxPPG("MlpPolicy", cartpole(), ppg_n_pi=2, ppg_value_epochs=2, ppg_arch="detach", **SMALL)
    model.learn(2 * 64)
    model.save(tmp_path / "ppg.zip")
    loaded = AuxPPG.load(tmp_path / "ppg.zip", env=cartpole(), device="cpu")
    assert loaded.aux_settings == model.aux_settings and loaded.ppg_aux_phases == 1
    assert loaded.policy.detach_critic and loaded.ppg_value_optimizer is not None
    saved = model.ppg_aux_optimizer.state_dict()["state"]
    assert saved and all(th.equal(saved[k]["exp_avg"], v["exp_avg"])
                         for k, v in loaded.ppg_aux_optimizer.state_dict()["state"].items())
    loaded.learn(2 * 64, reset_num_timesteps=False)
    assert loaded.ppg_aux_phases == 2


def test_minatar_cli_trains_saves_resumes_and_evaluates(tmp_path, capsys):
    from rlaux.cli import main

    logs = tmp_path / "logs"
    argv = ["train", "--env", "MinAtar", "--algo", "ppg", "-n", "1024", "--n-envs", "4", "--log-dir", str(logs),
            "--run-name", "r", "--save-freq", "256", "--eval-freq", "0", "--no-progress", "--verbose", "0",
            "--hyperparams", "n_steps=64", "batch_size=128", "ppg_n_pi=2", "ppg_aux_epochs=1"]
    assert main(argv) == 0
    run = logs / "r"
    model = AuxPPG.load(run / "final_model.zip", device="cpu")
    assert model.ppg_aux_phases == 2 and model.aux_settings.ppg_n_pi == 2
    assert "ppg/aux_value_loss" in pd.read_csv(run / "progress.csv").columns
    (run / "final_model.zip").unlink()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "final_model.zip").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--load", str(run), "--episodes", "2", "--model", "final"]) == 0
    assert "mean" in capsys.readouterr().out.lower()
