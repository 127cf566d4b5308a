"""config.json keeps the user's request apart from the resolved settings."""

from __future__ import annotations

import json

from rlaux import AuxSettings
from rlaux.cli import main
from rlaux.errors import ConfigError
from rlaux.run.config import load_run


def test_a_preset_weight_is_not_taken_for_a_flag_after_load_run(tmp_path):
    agent = tmp_path / "rp.toml"
    agent.write_text('description = "test"\nalgo = "ppo"\naux = ["reward_pred"]\naux_weights = { reward_pred = 0.5 }\n')
    args = ["--env", "CartPole-v1", "--agent", str(agent), "-n", "64", "-params", "n_steps=64", "batch_size=64",
            "n_epochs=1", "-f", str(tmp_path / "runs"), "--run-name", "r", "--no-progress", "-v", "0",
            "--device", "cpu"]
    assert main(args) == 0
    saved = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert saved["format"] == 2 and set(saved) == {"format", "request", "resolved", "code"}  # kept apart
    resolved = saved["resolved"]
    assert resolved["aux_label"] == "reward_pred" and resolved["aux_settings"]["weights"] == {"reward_pred": 0.5}
    assert saved["request"]["aux_weights"] == {} and saved["request"]["timesteps"] == 64
    run = load_run(tmp_path / "runs" / "r")
    assert run.label == resolved["aux_label"]  # was reward_pred[reward_pred=0.5] before the request was kept
    assert run.aux.weights == {"reward_pred": 0.5} and run.config.aux_weights == {}
    assert AuxSettings.from_json(resolved["aux_settings"]) == run.aux


def test_a_config_json_of_an_older_run_still_loads(tmp_path):
    args = ["--env", "CartPole-v1", "--aux", "reward_pred", "-n", "64", "-params", "n_steps=64", "batch_size=64",
            "n_epochs=1", "-f", str(tmp_path / "runs"), "--run-name", "old", "--no-progress", "-v", "0",
            "--device", "cpu"]
    assert main(args) == 0
    path = tmp_path / "runs" / "old" / "config.json"
    saved = json.loads(path.read_text())
    resolved = saved["resolved"]
    flat = {**saved["request"], **{k: v for k, v in resolved.items() if k != "aux_settings"},
            "aux_weights": {}, "aux_task_kwargs": {}, "aux_weighting": {}}
    path.write_text(json.dumps(flat))  # format 1: one flat object, as runs wrote it before
    run = load_run(tmp_path / "runs" / "old")
    assert run.label == "reward_pred" and run.timesteps == 64 and run.aux.tasks == ("reward_pred",)
    path.write_text(json.dumps({**flat, "request": saved["request"]}))  # format 1 with the request kept
    assert load_run(tmp_path / "runs" / "old").label == "reward_pred"


import pytest  # noqa: E402

BAD_AUX_SETTINGS = [
    (["--aux", "reward_prd"], "reward_prd"),
    (["--aux", "reward_pred", "--aux-weight", "reward_pred=-1"], "reward_pred"),
    (["--aux", "reward_pred", "--aux-weight", "reward_pred=abc"], "abc"),
    (["--aux", "reward_pred", "--aux-weight", "pixel_control=0.1"], "pixel_control"),
    (["--aux", "reward_pred", "--aux-weighting", "bogus"], "bogus"),
    (["--aux", "reward_pred", "--aux-weighting", "value_replay=cosine"], "value_replay"),
    (["--env", "CartPole-v1", "--aux", "pixel_control"], "pixel_control"),
    (["--aux", "reward_pred", "-params", "aux_clip=bogus"], "aux_clip"),
    (["--aux", "reward_pred", "-params", "aux_every=0"], "aux_every"),
    (["--aux", "reward_pred", "-params", "aux_max_grad_norm=-1"], "aux_max_grad_norm"),
    (["--aux", "reward_pred", "-params", "aux_env_steps_per_sequence=0"], "aux_env_steps_per_sequence"),
    (["--aux", "reward_pred", "-params", "aux_replay_capacity=1"], "aux_replay_capacity"),
    (["--aux", "reward_pred", "-params", "aux_weights=dict(reward_pred=1)"], "aux_weights"),
    (["--aux", "reward_pred", "--max-skipped-updates", "-1"], "--max-skipped-updates must be an integer >= 0"),
    (["--aux", "reward_pred", "-params", "aux_clip=bogus", "aux_every=0"], "--hyperparams aux_every must be"),
    (["--algo", "ppo_lstm", "--aux", "value_replay", "-params", "aux_lstm_state_dtype=float8"],
     "--hyperparams aux_lstm_state_dtype must be one of"),
    (["--aux", "reward_pred", "-params", "aux_lstm_state_dtype=float32"], "unknown hyperparameter 'aux_lstm_state_dtype'"),
    (["--aux", "reward_pred", "--aux-weighting", "*=linear:1:0"], "--aux-weighting *='linear:1:0'"),
    (["--aux", "reward_pred,nope"], "--aux names an unknown aux task 'nope'"),
]

#: The settings whose check needs the env's spaces (a throw-away env of one copy, nothing written).
NEEDS_SPACES = {"pixel_control"}


@pytest.mark.parametrize("args, needle", BAD_AUX_SETTINGS, ids=[" ".join(a) for a, _ in BAD_AUX_SETTINGS])
def test_every_bad_aux_setting_is_one_line_before_anything_is_written(tmp_path, capsys, monkeypatch, args, needle):
    import sys

    import rlaux.run.config

    def no_env(*_, **__):
        raise AssertionError("an env was built before the settings were refused")

    if needle not in NEEDS_SPACES:
        monkeypatch.setattr(rlaux.run.config, "_spaces_of", no_env)
    monkeypatch.setattr(sys.modules["rlaux.run.train"], "_make_env", no_env)  # the module, not rlaux.run's train()
    full = (["--env", "MinAtar"] if "--env" not in args else []) + args + ["-n", "1000", "-f", str(tmp_path / "r")]
    assert main(full) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "r").exists()


BAD_PRESET = """description = "bad"
algo = "ppo"
aux = ["reward_pred", "value_replay"]
aux_weights = { reward_pred = -2 }
aux_weighting = { value_replay = "sometimes" }
[hyperparams.default]
aux_clip = "bogus"
aux_every = 0
"""


def test_a_bad_agent_preset_reports_every_aux_problem_at_once(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules["rlaux.run.train"], "_make_env", lambda *_, **__: pytest.fail("an env was built"))
    agent = tmp_path / "bad.toml"
    agent.write_text(BAD_PRESET)
    assert main(["--env", "CartPole-v1", "--agent", str(agent), "-n", "64", "-f", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in ("reward_pred=-2", "'sometimes' is not a weighting", "aux_clip must be one of", "aux_every must be"):
        assert needle in err, (needle, err)
    assert not (tmp_path / "r").exists()


def test_the_python_api_names_its_arguments_and_builds_no_env(monkeypatch):
    import gymnasium

    from rlaux import AuxPPO
    from rlaux.algorithms import AuxSettingsError

    monkeypatch.setattr(gymnasium, "make", lambda *_, **__: pytest.fail("an env was built"))
    with pytest.raises(AuxSettingsError) as caught:
        AuxPPO("MlpPolicy", "CartPole-v1", aux_tasks="reward_pred", aux_clip="bogus", aux_every=0,
               aux_weights={"pixel_control": 1.0})
    message = str(caught.value)
    assert "aux_clip must be one of" in message and "aux_every must be" in message
    assert "aux_weights names 'pixel_control'" in message and "--" not in message  # no CLI flag
    with pytest.raises(ConfigError, match="either as aux_settings or as arguments"):
        AuxPPO("MlpPolicy", "CartPole-v1", aux_settings=AuxSettings(tasks=("reward_pred",)), aux_clip="sum")


def test_aux_settings_are_frozen_made_once_and_round_trip():
    import copy
    import pickle

    settings = AuxSettings(tasks="unreal", weights={"pixel_control": 0.1}, weighting={"*": "cosine"}, every=2)
    assert settings.tasks == ("reward_pred", "value_replay", "pixel_control")
    with pytest.raises(AttributeError):
        settings.clip = "sum"
    assert AuxSettings.from_json(json.loads(json.dumps(settings.to_json()))) == settings
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert AuxSettings.from_arguments(**settings.to_arguments()) == settings
    first = settings.take_tasks("ppo")
    again = settings.take_tasks("ppo")  # a second agent from the same settings gets its own task objects
    assert [t.name for t in first] == [t.name for t in again] and all(a is not b for a, b in zip(first, again))
    assert [t.weight for t in first] == [t.weight for t in again] and first[2].weight == 0.1
    assert copy.deepcopy(settings) == settings


def test_load_folds_its_keyword_settings_into_aux_settings(tmp_path):
    from rlaux import AuxPPO

    model = AuxPPO("MlpPolicy", "CartPole-v1", aux_tasks="reward_pred", aux_clip="sum", n_steps=16, batch_size=16,
                   device="cpu", seed=0)
    model.save(tmp_path / "m.zip")
    loaded = AuxPPO.load(tmp_path / "m.zip", device="cpu", max_skipped_updates=3)
    assert loaded.aux_settings == model.aux_settings.replace(max_skipped_updates=3)
    assert loaded.max_skipped_updates == 3 and loaded.aux_clip == "sum" and loaded.update_guard.max_consecutive == 3
    assert [t.name for t in loaded.aux_tasks] == ["reward_pred"] and "aux_tasks" not in loaded.policy_kwargs
    with pytest.raises(ConfigError, match="aux_clip must be one of"):
        AuxPPO.load(tmp_path / "m.zip", device="cpu", aux_clip="bogus")
