"""``train_agent.py push`` and ``rlaux.hub.load_from_hub``: the package written to a local folder (model,
config, evaluation, video, model card), loaded back; the upload calls; one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from rlaux import AuxPPO
from rlaux.cli import main
from rlaux.errors import ConfigError
from rlaux.evaluate import load_model
from rlaux.run import RunConfig, train

pytest.importorskip("huggingface_sb3")
from huggingface_hub import ModelCard  # noqa: E402 - after the skip

from rlaux.hub import load_from_hub, package_run  # noqa: E402
from rlaux.run_folder import RunFolder

MODEL_FILE = "aux_ppo-MinAtar-Breakout-v1.zip"
REPO = "someone/minatar-aux"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("runs")
    return train(RunConfig(env="MinAtar", aux=["reward_pred", "inverse_dynamics"], aux_weights={"reward_pred": 0.5},
                           timesteps=512, n_envs=2, hyperparams={"n_steps": 64, "batch_size": 64},
                           log_dir=str(log_dir), progress_bar=False, verbose=0))


@pytest.fixture(scope="module")
def package(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "package"
    code = main(["push", "--load", str(run_dir), "--repo-id", REPO, "--local-dir", str(out), "--episodes", "3"])
    assert code == 0
    return out


def test_the_package_holds_model_config_results_and_card(package, run_dir):
    names = {p.name for p in package.iterdir()}
    assert {MODEL_FILE, "config.json", "results.json", "README.md"} <= names
    assert (package / MODEL_FILE).read_bytes() == (run_dir / "final_model.zip").read_bytes()

    config = RunFolder(package).read()
    assert config["aux"] == ["reward_pred", "inverse_dynamics"] and config["algo"] == "ppo"
    assert config["hub"]["model_file"] == MODEL_FILE and config["hub"]["repo_id"] == REPO
    assert "Stable-Baselines3" in config["system_info"]
    assert str(run_dir.parent) not in (package / "config.json").read_text()  # no folder of this machine is published

    results = json.loads((package / "results.json").read_text())
    assert results["n_eval_episodes"] == 3 and len(results["returns"]) == 3
    assert results["mean_reward"] == pytest.approx(np.mean(results["returns"]))
    assert results["std_reward"] == pytest.approx(np.std(results["returns"]))
    assert results["is_deterministic"] is True and "eval_datetime" in results

    card = ModelCard.load(package / "README.md")
    mean, std = results["mean_reward"], results["std_reward"]
    for needle in ("rlaux", "AuxPPO", "MinAtar/Breakout-v1", "`reward_pred` | 0.5 |", "`inverse_dynamics` | 1 |",
                   f"{mean:.2f} ± {std:.2f}** over 3 episodes", f'load_from_hub("{REPO}")', MODEL_FILE,
                   "(PPO of [Stable-Baselines3](https://github.com/DLR-RM/stable-baselines3)"):
        assert needle in card.text, needle
    assert card.data.library_name == "stable-baselines3"
    assert {"rlaux", "reward_pred", "inverse_dynamics", "MinAtar/Breakout-v1"} <= set(card.data.tags)
    (result,) = card.data.eval_results
    assert result.metric_value == f"{mean:.2f} +/- {std:.2f}" and result.dataset_type == "MinAtar/Breakout-v1"


def test_the_card_of_a_recurrent_agent_names_sb3_contrib_recurrent_ppo():
    import huggingface_hub

    from rlaux import AuxRecurrentPPO
    from rlaux.hub_card import model_card as _model_card

    agent = AuxRecurrentPPO("MlpLstmPolicy", "CartPole-v1", n_steps=8, batch_size=8, device="cpu")
    config = {"algo": "ppo_lstm", "env_id": "CartPole-v1", "hyperparams": {}, "n_envs": 1, "seed": 0}
    results = {"num_timesteps": 0, "mean_reward": 9.0, "std_reward": 0.0, "median_reward": 9.0, "min_reward": 9.0,
               "max_reward": 9.0, "n_eval_episodes": 1, "is_deterministic": True}
    card = _model_card(huggingface_hub, agent, config, results, REPO, "aux_ppo_lstm-CartPole-v1.zip", False)
    assert "(RecurrentPPO of [sb3-contrib](https://github.com/Stable-Baselines-Team/stable-baselines3-contrib)" \
        in card.text
    assert "plain RecurrentPPO baseline" in card.text and "PPO_LSTM" not in card.text
    assert '"clip": "rl_plus_aux"' in card.text and '"lstm_state_dtype": "float16"' in card.text  # the AuxSettings
    assert "sb3-contrib" in card.data.tags


def test_a_ppg_agent_goes_to_the_hub_and_comes_back(tmp_path):
    """``--algo ppg``: packaged with a card that says what PPG does, loaded back as the same AuxPPG."""
    from rlaux import AuxPPG

    run = train(RunConfig(env="MinAtar", algo="ppg", timesteps=256, n_envs=2, log_dir=str(tmp_path / "runs"),
                          hyperparams={"n_steps": 64, "batch_size": 64, "ppg_n_pi": 2}, progress_bar=False, verbose=0))
    out = tmp_path / "package"
    assert main(["push", "--load", str(run), "--repo-id", REPO, "--local-dir", str(out), "--episodes", "1"]) == 0
    card = (out / "README.md").read_text()
    assert "**Phasic Policy Gradient** (Cobbe et al. 2021): every 2 PPO iterations" in card
    assert "plain PPO baseline" not in card and (out / "aux_ppg-MinAtar-Breakout-v1.zip").is_file()
    model = load_from_hub(REPO, local_dir=out, device="cpu")
    original = load_model(run / "final_model.zip", algo="ppg", device="cpu")
    assert isinstance(model, AuxPPG) and model.aux_settings == original.aux_settings and model.ppg_aux_phases == 1
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], original.predict(obs, deterministic=True)[0])


def test_the_package_has_a_replay_video(package):
    pytest.importorskip("moviepy")
    video = package / "replay.mp4"
    assert video.is_file() and video.stat().st_size > 0
    assert "replay.mp4" in (package / "README.md").read_text()


def test_without_moviepy_the_video_is_skipped_with_a_note(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # import moviepy -> ImportError
    out = package_run(run_dir, tmp_path / "pkg", repo_id=REPO, episodes=1)
    printed = capsys.readouterr().out
    assert 'no replay video: moviepy is not installed (pip install "rlaux[video]")' in printed
    assert not (out / "replay.mp4").exists() and (out / "README.md").is_file()
    assert "replay.mp4" not in (out / "README.md").read_text()


def test_loaded_back_from_the_folder_it_is_the_same_agent(package, run_dir):
    model = load_from_hub(REPO, local_dir=package, device="cpu")
    original = load_model(run_dir / "final_model.zip", algo="ppo", device="cpu")
    assert isinstance(model, AuxPPO)
    assert [(t.name, t.weight) for t in model.aux_tasks] == [("reward_pred", 0.5), ("inverse_dynamics", 1.0)]
    assert [(t.name, t.weight) for t in model.aux_tasks] == [(t.name, t.weight) for t in original.aux_tasks]
    obs = np.stack([model.observation_space.sample() for _ in range(8)])
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (8,) and all(model.action_space.contains(int(a)) for a in actions)
    np.testing.assert_array_equal(actions, original.predict(obs, deterministic=True)[0])


def test_load_from_hub_downloads_config_and_model_through_the_libraries(package, monkeypatch):
    import huggingface_hub

    downloads = []

    def fake_download(repo_id, filename, **kwargs):  # the Hub, served from the local package
        downloads.append((repo_id, filename))
        return str(package / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.delenv("TRUST_REMOTE_CODE", raising=False)
    with pytest.raises(ConfigError, match="set TRUST_REMOTE_CODE=True if you trust this repository"):
        load_from_hub(REPO)  # huggingface_sb3's guard: a model file is a pickle
    monkeypatch.setenv("TRUST_REMOTE_CODE", "True")
    model = load_from_hub(REPO, device="cpu")
    assert isinstance(model, AuxPPO) and [t.name for t in model.aux_tasks] == ["reward_pred", "inverse_dynamics"]
    assert downloads[-2:] == [(REPO, "config.json"), (REPO, MODEL_FILE)]


def test_upload_uses_the_hub_api_on_the_package(run_dir, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def whoami(self):
            calls.append(("whoami",))
            return {"name": "someone"}

        def create_repo(self, repo_id, exist_ok):
            calls.append(("create_repo", repo_id, exist_ok))
            return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in folder_path.iterdir()), commit_message))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    code = main(["push", "--load", str(run_dir), "--repo-id", REPO, "--episodes", "1", "--no-video", "-m", "first"])
    assert code == 0, capsys.readouterr().err
    assert calls[1] == ("whoami",)
    assert calls[2] == ("create_repo", REPO, True)
    assert calls[3] == ("upload_folder", REPO, sorted([MODEL_FILE, "README.md", "config.json", "results.json"]), "first")
    assert f"uploaded to https://huggingface.co/{REPO}" in capsys.readouterr().out


def _api_that(whoami_error: BaseException | None, upload_error: BaseException | None = None) -> type:
    class Api:
        def __init__(self, token=None):
            pass

        def whoami(self):
            if whoami_error is not None:
                raise whoami_error
            return {"name": "someone"}

        def create_repo(self, repo_id, exist_ok):
            raise upload_error

    return Api


def test_a_failed_upload_is_one_line(run_dir, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", _api_that(None, PermissionError("no write access\nsecond line")))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    code = main(["push", "--load", str(run_dir), "--repo-id", REPO, "--episodes", "1", "--no-video"])
    captured = capsys.readouterr()
    assert code == 2 and len(captured.err.strip().splitlines()) == 1
    assert "upload to someone/minatar-aux failed (PermissionError: no write access)" in captured.err
    assert "--local-dir" in captured.err and "rlaux-hub-" not in captured.out  # no deleted temp folder named


@pytest.mark.parametrize("error, needle", [
    (ConnectionError("Failed to resolve 'huggingface.co'"), "cannot reach the Hugging Face Hub (ConnectionError"),
    ("no token", "no Hugging Face token; log in"),
    (PermissionError("401 Unauthorized"), "the Hub refused the token (PermissionError: 401"),
])
def test_push_checks_network_and_token_before_evaluating(run_dir, monkeypatch, capsys, error, needle):
    import huggingface_hub

    if error == "no token":
        error = huggingface_hub.errors.LocalTokenNotFoundError("Token is required")
    monkeypatch.setattr(huggingface_hub, "HfApi", _api_that(error))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    code = main(["push", "--load", str(run_dir), "--repo-id", REPO, "--episodes", "1"])
    captured = capsys.readouterr()
    assert code == 2 and len(captured.err.strip().splitlines()) == 1 and needle in captured.err, captured.err
    assert captured.out == ""  # nothing evaluated, nothing recorded


@pytest.mark.parametrize("args,needle", [
    (["--repo-id", "no-slash"], "--repo-id 'no-slash'"),
    (["--repo-id", "a/b/c"], "--repo-id 'a/b/c'"),
    (["--repo-id", REPO, "--episodes", "0"], "--episodes must be at least 1"),
])
def test_bad_push_input_is_one_line(run_dir, tmp_path, capsys, args, needle):
    code = main(["push", "--load", str(run_dir), "--local-dir", str(tmp_path / "pkg"), *args])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert needle in err
    assert not (tmp_path / "pkg").exists()  # checked before anything is written


def test_a_folder_with_other_files_is_not_overwritten(run_dir, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code = main(["push", "--load", str(run_dir), "--repo-id", REPO, "--local-dir", str(tmp_path)])
    assert code == 2 and "holds other files (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_missing_huggingface_sb3_names_the_extra(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_sb3", None)
    code = main(["push", "--load", str(run_dir), "--repo-id", REPO, "--local-dir", str(tmp_path / "pkg")])
    assert code == 2
    assert capsys.readouterr().err.strip() == ('error: push needs the optional package huggingface_sb3: '
                                               'pip install "rlaux[hub]"')
    assert not (tmp_path / "pkg").exists()
    with pytest.raises(ConfigError, match=r'load_from_hub needs the optional package huggingface_sb3: pip install "rlaux\[hub\]"'):
        load_from_hub(REPO)
