"""rl-zoo3 integration (rlaux.zoo): aux_ppo, aux_a2c and aux_ppo_lstm in rl-zoo3's train, enjoy, record_video and
-optimize,
the zoo files shipped for the presets, and the message when the extra is not installed."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlaux.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ENV_ID = "MinAtar/Breakout-v1"

needs_zoo = pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason='needs pip install "rlaux[zoo]"')

# A tiny run: 2 envs, 64-step rollouts, aux keys of every kind.
TRAIN_YML = f"""
{ENV_ID}:
  env_wrapper: rlaux.zoo.MinAtarImage
  n_envs: 2
  n_timesteps: 256
  policy: CnnPolicy
  policy_kwargs: "dict(features_extractor_class=MinAtarCNN, features_extractor_kwargs=dict(features_dim=64))"
  n_steps: 64
  n_epochs: 1
  batch_size: 64
  aux_tasks: [reward_pred, value_replay]
  aux_weights: {{reward_pred: 0.5, value_replay: 2.0}}
  aux_task_kwargs: {{reward_pred: {{hidden: 32}}}}
  aux_replay_capacity: 200
"""

# A tiny RecurrentPPO + UNREAL run: the LSTM inputs (last action and reward) on, small LSTM.
LSTM_TRAIN_YML = f"""
{ENV_ID}:
  env_wrapper: rlaux.zoo.MinAtarImage
  n_envs: 2
  n_timesteps: 256
  policy: CnnLstmPolicy
  policy_kwargs: "dict(features_extractor_class=MinAtarCNN, features_extractor_kwargs=dict(features_dim=32),
    lstm_hidden_size=16, last_action_reward=True)"
  n_steps: 64
  n_epochs: 1
  batch_size: 64
  aux_tasks: [unreal]
  aux_weights: {{pixel_control: 0.02}}
  aux_replay_capacity: 200
"""

# A study's file: the RL hyperparameters come from the sampler; one env keeps trials short.
STUDY_YML = f"""
{ENV_ID}:
  env_wrapper: rlaux.zoo.MinAtarImage
  n_envs: 1
  n_timesteps: 256
  policy: CnnPolicy
  policy_kwargs: "dict(features_extractor_class=MinAtarCNN, features_extractor_kwargs=dict(features_dim=32))"
  aux_tasks: [reward_pred, pixel_control]
  aux_replay_capacity: 300
"""

# rl-zoo3's PPO parameters, fixed (enqueued) so that a trial stays a few seconds; the aux weights are sampled.
SMALL_PPO_TRIAL = {"batch_size_pow": 6, "n_steps_pow": 6, "one_minus_gamma": 0.01, "one_minus_gae_lambda": 0.05,
                   "learning_rate": 3e-4, "ent_coef": 0.01, "clip_range": 0.2, "n_epochs": 1, "max_grad_norm": 0.5,
                   "net_arch": "tiny", "activation_fn": "relu"}


def zoo(*argv: str) -> int:
    from rlaux.zoo.__main__ import main

    return main(list(argv))


# ------------------------------------------------------------------ missing extra


def test_importing_without_rl_zoo3_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "rl_zoo3", None)  # "not installed"
    for name in [m for m in sys.modules if m == "rlaux.zoo" or m.startswith("rlaux.zoo.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ConfigError) as err:
        importlib.import_module("rlaux.zoo")
    message = str(err.value)
    assert 'pip install "rlaux[zoo]"' in message and "rl_zoo3" in message
    assert "\n" not in message


def test_python_m_rlaux_zoo_without_rl_zoo3_is_one_line(tmp_path):
    fake = tmp_path / "rl_zoo3"  # shadows an installed rl-zoo3: its import fails as a missing one does
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'rl_zoo3'\", name='rl_zoo3')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-m", "rlaux.zoo", "train", "--algo", "aux_ppo"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: rlaux.zoo needs the optional package rl_zoo3: pip install "rlaux[zoo]"'
    ]


# ------------------------------------------------------------------ train, enjoy, record_video


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished zoo run of aux_ppo on MinAtar Breakout (its log folder)."""
    pytest.importorskip("rl_zoo3")
    folder = tmp_path_factory.mktemp("zoo")
    conf = folder / "my.yml"
    conf.write_text(TRAIN_YML)
    assert zoo("train", "--algo", "aux_ppo", "--env", ENV_ID, "-conf", str(conf), "-f", str(folder / "logs"),
               "--seed", "1", "--eval-freq", "-1", "--device", "cpu", "-tb", str(folder / "tb")) == 0
    return folder / "logs"


@needs_zoo
def test_zoo_tensorboard_runs_are_named_after_the_aux_algorithm(trained):
    runs = sorted(p.name for p in (trained.parent / "tb" / ENV_ID.replace("/", "-")).iterdir())
    assert runs == ["AuxPPO_1"], runs


@needs_zoo
def test_zoo_errors_name_the_zoo_key_not_a_cli_flag(tmp_path, capsys):
    conf = tmp_path / "bad.yml"
    conf.write_text(TRAIN_YML.replace("value_replay: 2.0", "pixel_contrl: 2.0"))
    code = zoo("train", "--algo", "aux_ppo", "--env", ENV_ID, "-conf", str(conf), "-f", str(tmp_path / "logs"),
               "--seed", "1", "--eval-freq", "-1", "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "aux_weights names 'pixel_contrl'" in err and "--aux-weight" not in err, err


@needs_zoo
def test_zoo_train_passes_the_aux_keys_to_the_algorithm(trained):
    from rlaux import AuxPPO
    from rlaux.envs import make_vec_env, resolve_env
    from rlaux.networks import MinAtarCNN

    model = AuxPPO.load(trained / "aux_ppo" / "MinAtar-Breakout-v1_1" / "MinAtar-Breakout-v1.zip", device="cpu")
    assert {t.name: t.weight for t in model.aux_tasks} == {"reward_pred": 0.5, "value_replay": 2.0}
    assert next(t for t in model.aux_tasks if t.name == "reward_pred").hidden == 32
    assert model.aux_replay_capacity == 200
    assert model.num_timesteps >= 256
    assert isinstance(model.policy.features_extractor, MinAtarCNN)
    assert model.policy.features_extractor.features_dim == 64
    # the zoo env's observations are rlaux's own (uint8 [C, 10, 10], channel-first)
    venv = make_vec_env(resolve_env("MinAtar", game="Breakout"), n_envs=1)
    try:
        assert model.observation_space == venv.observation_space
    finally:
        venv.close()


@needs_zoo
def test_zoo_enjoy_plays_the_trained_aux_ppo(trained, capsys):
    assert zoo("enjoy", "--algo", "aux_ppo", "--env", ENV_ID, "-f", str(trained), "--no-render", "-n", "60",
               "--device", "cpu") == 0
    out = capsys.readouterr().out
    assert f"Loading {trained / 'aux_ppo' / 'MinAtar-Breakout-v1_1' / 'MinAtar-Breakout-v1.zip'}" in out
    assert "Mean reward:" in out  # whole episodes were played


@needs_zoo
def test_zoo_record_video_writes_a_watchable_mp4(trained, tmp_path):
    pytest.importorskip("moviepy")
    from moviepy import VideoFileClip

    assert zoo("record_video", "--algo", "aux_ppo", "--env", ENV_ID, "-f", str(trained), "-n", "20",
               "-o", str(tmp_path)) == 0
    (video,) = tmp_path.glob("*.mp4")
    clip = VideoFileClip(str(video))
    try:
        assert list(clip.size) == [160, 160]  # MinAtar's 10x10 cells, 16 px each
        assert clip.get_frame(0).max() > 0
    finally:
        clip.close()


@needs_zoo
def test_zoo_trains_and_plays_aux_ppo_lstm(tmp_path, capsys):
    from rlaux import AuxRecurrentPPO

    conf = tmp_path / "lstm.yml"
    conf.write_text(LSTM_TRAIN_YML)
    logs = tmp_path / "logs"
    assert zoo("train", "--algo", "aux_ppo_lstm", "--env", ENV_ID, "-conf", str(conf), "-f", str(logs),
               "--seed", "0", "--eval-freq", "-1", "--device", "cpu") == 0
    path = logs / "aux_ppo_lstm" / "MinAtar-Breakout-v1_1" / "MinAtar-Breakout-v1.zip"
    model = AuxRecurrentPPO.load(path, device="cpu")
    assert {t.name: t.weight for t in model.aux_tasks} == {"reward_pred": 0.0625, "value_replay": 0.0625,
                                                           "pixel_control": 0.02}  # PPO's defaults, and the yml's
    assert model.num_timesteps >= 256 and model.policy.last_action_reward
    assert model.policy.lstm_actor.hidden_size == 16
    assert zoo("enjoy", "--algo", "aux_ppo_lstm", "--env", ENV_ID, "-f", str(logs), "--no-render", "-n", "40",
               "--device", "cpu") == 0  # rl-zoo3 carries the LSTM states (with the last action and reward) along
    assert f"Loading {path}" in capsys.readouterr().out


# A tiny PPG run: 2 envs, 64-step rollouts, an auxiliary phase every 2 rollouts, reward prediction in its policy phase.
PPG_TRAIN_YML = f"""
{ENV_ID}:
  env_wrapper: rlaux.zoo.MinAtarImage
  n_envs: 2
  n_timesteps: 256
  policy: CnnPolicy
  policy_kwargs: "dict(features_extractor_class=MinAtarCNN, features_extractor_kwargs=dict(features_dim=32))"
  n_steps: 64
  n_epochs: 1
  batch_size: 64
  ppg_n_pi: 2
  ppg_aux_epochs: 2
  ppg_arch: detach
  aux_tasks: [reward_pred]
  aux_replay_capacity: 200
"""


@needs_zoo
def test_zoo_trains_aux_ppg_with_its_settings_and_refuses_a_bad_one(tmp_path, capsys):
    from rlaux import AuxPPG

    conf = tmp_path / "ppg.yml"
    conf.write_text(PPG_TRAIN_YML)
    logs = tmp_path / "logs"
    assert zoo("train", "--algo", "aux_ppg", "--env", ENV_ID, "-conf", str(conf), "-f", str(logs),
               "--seed", "0", "--eval-freq", "-1", "--device", "cpu") == 0
    model = AuxPPG.load(logs / "aux_ppg" / "MinAtar-Breakout-v1_1" / "MinAtar-Breakout-v1.zip", device="cpu")
    assert model.aux_settings.ppg_n_pi == 2 and model.aux_settings.ppg_arch == "detach"
    assert model.ppg_aux_phases == 1 and [t.name for t in model.aux_tasks] == ["reward_pred"]  # 2 rollouts of 128
    capsys.readouterr()
    conf.write_text(PPG_TRAIN_YML.replace("ppg_n_pi: 2", "ppg_n_pi: 0"))
    code = zoo("train", "--algo", "aux_ppg", "--env", ENV_ID, "-conf", str(conf), "-f", str(tmp_path / "bad"),
               "--seed", "0", "--eval-freq", "-1", "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "ppg_n_pi must be an integer >= 1" in err, err


@needs_zoo
def test_an_unknown_zoo_command_is_one_line(capsys):
    assert zoo("plot") == 2
    assert capsys.readouterr().err.strip() == "error: the rlaux.zoo command must be one of train, enjoy, record_video, got 'plot'"


# ------------------------------------------------------------------ Optuna


@needs_zoo
@pytest.mark.parametrize("algo", ["aux_ppo", "aux_a2c"])
def test_two_trial_optuna_study_samples_the_aux_weights(algo, tmp_path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from rlaux import AuxA2C, AuxPPO
    from rlaux.networks import MinAtarCNN
    from rlaux.zoo import AUX_WEIGHT_RANGES

    conf = tmp_path / "study.yml"
    conf.write_text(STUDY_YML)
    storage = tmp_path / "study.log"
    name = f"{algo}-minatar"
    if algo == "aux_ppo":  # rl-zoo3's PPO ranges go up to 4096-step rollouts and 20 epochs of batch 4
        study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(storage))), study_name=name,
                                    direction="maximize")
        for _ in range(2):
            study.enqueue_trial(SMALL_PPO_TRIAL)
    assert zoo("train", "--algo", algo, "--env", ENV_ID, "-conf", str(conf), "-f", str(tmp_path / "logs"),
               "-optimize", "--n-trials", "2", "--n-evaluations", "1", "--eval-episodes", "1", "--sampler", "random",
               "--pruner", "none", "--seed", "0", "--no-optim-plots", "--storage", str(storage), "--study-name", name,
               "--device", "cpu", "--num-threads", "1") == 0

    study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(storage))))
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in trials:
        assert {"learning_rate", "ent_coef", "one_minus_gamma"} <= set(trial.params)  # rl-zoo3's own parameters
        for task in ("reward_pred", "pixel_control"):
            low, high = AUX_WEIGHT_RANGES[task]
            assert low <= trial.params[f"aux_weight_{task}"] <= high
    assert trials[0].params["aux_weight_reward_pred"] != trials[1].params["aux_weight_reward_pred"]

    # --trial-id: the trial's weights and network reach the model, the file's encoder stays
    assert zoo("train", "--algo", algo, "--env", ENV_ID, "-conf", str(conf), "-f", str(tmp_path / "logs"),
               "--storage", str(storage), "--study-name", name, "--trial-id", "1", "-n", "64", "--eval-freq", "-1",
               "--seed", "0", "--device", "cpu") == 0
    (path,) = (tmp_path / "logs" / algo).glob("MinAtar-Breakout-v1_*/MinAtar-Breakout-v1.zip")
    model = {"aux_ppo": AuxPPO, "aux_a2c": AuxA2C}[algo].load(path, device="cpu")
    params = trials[1].params
    assert {t.name: t.weight for t in model.aux_tasks} == pytest.approx(
        {"reward_pred": params["aux_weight_reward_pred"], "pixel_control": params["aux_weight_pixel_control"]})
    assert model.lr_schedule(1.0) == pytest.approx(params["learning_rate"])
    assert isinstance(model.policy.features_extractor, MinAtarCNN)
    width = {"tiny": [64], "small": [64, 64], "medium": [256, 256]}[params["net_arch"]]
    assert model.policy.net_arch == {"pi": width, "vf": width}


@needs_zoo
def test_the_samplers_merge_into_the_configured_hyperparameters():
    import optuna

    from rlaux.networks import MinAtarCNN
    from rlaux.zoo.tuning import configured_hyperparams, sample_aux_a2c_params

    trial = optuna.trial.FixedTrial({"n_steps": 64, "one_minus_gamma": 0.01, "one_minus_gae_lambda": 0.05,
                                     "learning_rate": 1e-3, "max_grad_norm": 0.5, "ent_coef": 0.01, "net_arch": "small",
                                     "activation_fn": "tanh", "aux_weight_value_replay": 3.0})
    configured = {"policy_kwargs": {"features_extractor_class": MinAtarCNN, "net_arch": [8]},
                  "aux_tasks": "value_replay", "aux_weights": {"value_replay": 1.0}}
    with configured_hyperparams(configured):
        sampled = sample_aux_a2c_params(trial, 0, 1, {})
    assert sampled["policy_kwargs"]["features_extractor_class"] is MinAtarCNN
    assert sampled["policy_kwargs"]["net_arch"] == {"pi": [64, 64], "vf": [64, 64]}
    assert sampled["aux_weights"] == {"value_replay": 3.0}
    assert sampled["n_steps"] == 64
    assert configured["policy_kwargs"]["net_arch"] == [8]  # the configuration itself is left as it was
    with pytest.raises(ConfigError, match="python -m rlaux.zoo train --algo aux_a2c -optimize"):
        sample_aux_a2c_params(trial, 0, 1, {})


@needs_zoo
def test_every_aux_task_has_a_weight_range_around_its_defaults():
    from rlaux.tasks import TASKS
    from rlaux.zoo import AUX_WEIGHT_RANGES

    assert set(AUX_WEIGHT_RANGES) == set(TASKS)
    for name, (low, high) in AUX_WEIGHT_RANGES.items():
        for algo in ("ppo", "a2c"):
            default = TASKS[name].default_weights[algo]
            assert 0 < low < default < high, (name, algo)


# ------------------------------------------------------------------ the shipped zoo files


@needs_zoo
def test_rl_zoo3_knows_the_aux_algorithms_everywhere():
    import rl_zoo3
    import rl_zoo3.exp_manager
    import rl_zoo3.train
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    from rlaux import AuxA2C, AuxPPG, AuxPPO, AuxRecurrentPPO
    from rlaux.networks import MinAtarCNN
    from rlaux.zoo import AuxExperimentManager, hyperparams_file

    assert rl_zoo3.ALGOS["aux_ppo"] is AuxPPO and rl_zoo3.ALGOS["aux_a2c"] is AuxA2C
    assert rl_zoo3.ALGOS["aux_ppo_lstm"] is AuxRecurrentPPO and rl_zoo3.ALGOS["aux_ppg"] is AuxPPG
    for algo in ("aux_ppo", "aux_a2c", "aux_ppo_lstm", "aux_ppg"):
        assert algo in HYPERPARAMS_SAMPLER and algo in HYPERPARAMS_CONVERTER
        assert hyperparams_file(algo).is_file()
    assert rl_zoo3.train.ExperimentManager is AuxExperimentManager
    assert eval("MinAtarCNN", vars(rl_zoo3.exp_manager)) is MinAtarCNN  # policy_kwargs expressions can name it
    assert "MinAtar/Breakout-v1" in __import__("gymnasium").registry


@needs_zoo
@pytest.mark.parametrize("algo, agent, aux_agent", [("aux_ppo", "ppo_reward_pred", "ppo_reward_pred"),
                                                    ("aux_a2c", "a2c", "ppo_reward_pred"),
                                                    ("aux_ppo_lstm", "ppo_lstm_unreal", "ppo_lstm_unreal"),
                                                    ("aux_ppg", "ppg", "ppg")])
def test_the_shipped_zoo_files_are_the_presets(algo, agent, aux_agent):
    """aux_<algo>.yml = agents/<agent>.toml (its [hyperparams.<kind>]) + envs/<Atari|MinAtar>.toml + the aux tasks of
    <aux_agent> + rlaux's default length of the kind, key by key (see the files' header)."""
    import rl_zoo3.exp_manager
    import yaml
    from rl_zoo3.exp_manager import ExperimentManager

    from rlaux.envs import MINATAR_GAMES
    from rlaux.networks import sb3_policy_kwargs
    from rlaux.presets import load_preset
    from rlaux.run.config import DEFAULT_TIMESTEPS, agent_preset
    from rlaux.zoo import ZOO_ALGOS, hyperparams_file

    entries = yaml.safe_load(hyperparams_file(algo).read_text())
    minatar_ids = {f"MinAtar/{game}-v{version}" for game in MINATAR_GAMES for version in (0, 1)}
    assert set(entries) == {"atari"} | minatar_ids
    assert ExperimentManager.is_atari("BreakoutNoFrameskip-v4")  # the "atari" entry serves the Atari preset's ids
    preset = agent_preset(agent)
    aux = load_preset("agents", aux_agent)["aux"]
    zoo_keys = {"env_wrapper", "frame_stack", "n_envs", "n_timesteps", "policy", "policy_kwargs", "aux_tasks"}
    for key, entry in entries.items():
        kind = "atari" if key == "atari" else "minatar"
        env = load_preset("envs", "Atari" if kind == "atari" else "MinAtar")
        hyperparams = dict(preset["hyperparams"][kind])
        assert {k: v for k, v in entry.items() if k not in zoo_keys} == {k: v for k, v in hyperparams.items()
                                                                          if k != "policy_kwargs"}, key
        assert entry["aux_tasks"] == aux
        assert entry["n_envs"] == env["n_envs"]
        assert entry.get("frame_stack", 1) == env.get("frame_stack", 1)
        assert entry["policy"] == ZOO_ALGOS[algo].env_policies.get(env["policy"], env["policy"])  # CnnLstmPolicy
        assert entry["n_timesteps"] == DEFAULT_TIMESTEPS[kind]
        expected_policy_kwargs = sb3_policy_kwargs({**env.get("policy_kwargs", {}), **hyperparams.get("policy_kwargs", {})})
        assert eval(entry.get("policy_kwargs", "{}"), vars(rl_zoo3.exp_manager)) == expected_policy_kwargs, key
        if kind == "atari":
            assert entry["env_wrapper"] == [{"rlaux.envs.AtariWrapper": env["wrapper_kwargs"]}]
        else:
            assert entry["env_wrapper"] == "rlaux.zoo.MinAtarImage"
