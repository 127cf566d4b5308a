"""``train_agent.py evaluate``: run folders and model files, the evaluation env, videos, bad input."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from stable_baselines3.common.atari_wrappers import ClipRewardEnv, EpisodicLifeEnv, FireResetEnv, NoopResetEnv
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from rlaux.cli import main
from rlaux.envs import make_vec_env, resolve_env
from rlaux.evaluate import make_eval_env, resolve_target, summary_line
from rlaux.run import RunConfig, train

LINE = re.compile(r"^return (-?\d+\.\d+) ± (\d+\.\d+), median (-?\d+\.\d+), min (-?\d+\.\d+), max (-?\d+\.\d+) "
                  r"over (\d+) episodes$", re.M)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("runs")
    return train(RunConfig(env="MinAtar", aux=["reward_pred"], timesteps=512, n_envs=2,
                           hyperparams={"n_steps": 64, "batch_size": 64}, log_dir=str(log_dir),
                           progress_bar=False, verbose=0))


def _evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["evaluate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_run_folder(run_dir, capsys):
    code, out, err = _evaluate(capsys, "--load", str(run_dir), "--episodes", "2")
    assert code == 0, err
    assert "final_model.zip (final)" in out  # no best model without --eval-freq: the final one, said so
    match = LINE.search(out)
    assert match, out
    assert int(match.group(6)) == 2
    result = json.loads((run_dir / "evaluation.json").read_text())
    assert len(result["returns"]) == 2 and len(result["lengths"]) == 2
    assert result["model_choice"] == "final" and result["deterministic"] is True
    assert result["env_id"] == "MinAtar/Breakout-v1" and result["algo"] == "AuxPPO"
    assert result["mean"] == pytest.approx(float(np.mean(result["returns"])))
    assert float(match.group(1)) == pytest.approx(result["mean"], abs=0.005)


def test_evaluate_video(run_dir, tmp_path, capsys):
    pytest.importorskip("moviepy")
    video = tmp_path / "clip.mp4"
    code, out, err = _evaluate(capsys, "--load", str(run_dir), "--episodes", "1", "--video", str(video),
                               "--stochastic", "--output", str(tmp_path / "eval.json"))
    assert code == 0, err
    assert video.is_file() and video.stat().st_size > 0
    assert f"video: {video}" in out
    assert json.loads((tmp_path / "eval.json").read_text())["video"] == str(video)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".video-")]  # temp folder cleaned up


def test_video_without_moviepy(run_dir, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "moviepy", None)  # import moviepy -> ImportError
    code, _, err = _evaluate(capsys, "--load", str(run_dir), "--video")
    assert code == 2
    assert err.strip() == 'error: --video needs the optional package moviepy: pip install "rlaux[video]"'


def test_model_file(run_dir, tmp_path, capsys):
    # inside its run folder: config.json is found next to it
    code, out, err = _evaluate(capsys, "--load", str(run_dir / "final_model.zip"), "--episodes", "1",
                               "--output", str(tmp_path / "a.json"))
    assert code == 0, err
    assert "final_model.zip (file)" in out and "MinAtar/Breakout-v1" in out
    # alone: --env says which env
    alone = tmp_path / "model.zip"
    shutil.copy(run_dir / "final_model.zip", alone)
    code, _, err = _evaluate(capsys, "--load", str(alone))
    assert code == 2 and "needs --env" in err and len(err.strip().splitlines()) == 1
    code, out, err = _evaluate(capsys, "--load", str(alone), "--env", "MinAtar", "--game", "Breakout",
                               "--episodes", "1", "--n-envs", "2")
    assert code == 0, err
    assert LINE.search(out)
    assert not (tmp_path / "evaluation.json").exists()  # a bare model file: results only with --output


def test_bad_input(run_dir, tmp_path, capsys):
    code, out, err = _evaluate(capsys, "--load", str(tmp_path / "nope"))
    assert code == 2 and "nope" in err and len(err.strip().splitlines()) == 1
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes((run_dir / "final_model.zip").read_bytes()[:300])
    code, _, err = _evaluate(capsys, "--load", str(corrupt), "--env", "MinAtar")
    assert code == 2 and str(corrupt) in err and len(err.strip().splitlines()) == 1
    code, _, err = _evaluate(capsys, "--load", str(run_dir), "--model", "best")
    assert code == 2 and "best_model.zip" in err and "final" in err
    code, _, err = _evaluate(capsys, "--load", str(tmp_path))  # a folder without config.json
    assert code == 2 and "no config.json" in err
    code, _, err = _evaluate(capsys, "--load", str(run_dir), "--episodes", "0")
    assert code == 2 and "--episodes" in err
    code, _, err = _evaluate(capsys, "--load", str(run_dir), "--env", "Atari")  # spaces do not match
    assert code == 2 and "observation_space" in err


def test_model_choice(run_dir, tmp_path):
    shutil.copytree(run_dir, tmp_path / "run")
    run = tmp_path / "run"
    assert resolve_target(run).which == "final"
    shutil.copy(run / "final_model.zip", run / "best_model.zip")
    assert resolve_target(run).which == "best"
    assert resolve_target(run, "final").model_path == run / "final_model.zip"
    (run / "best_model.zip").unlink()
    (run / "final_model.zip").rename(run / "interrupted_model.zip")
    assert resolve_target(run).which == "interrupted"
    ckpt = run / "checkpoints" / "ckpt-000000000512-000001"
    ckpt.mkdir(parents=True)
    shutil.copy(run / "interrupted_model.zip", ckpt / "model.zip")
    target = resolve_target(run)
    assert target.which == "latest" and target.model_path == ckpt / "model.zip"
    assert resolve_target(ckpt / "model.zip").run_dir == run  # a checkpoint's model file finds its run


def test_atari_eval_env_plays_full_games_with_raw_scores():
    spec = resolve_env("Atari", game="SpaceInvaders")
    eval_env = make_eval_env(spec, n_envs=1, seed=0)
    train_env = make_vec_env(spec, n_envs=1, seed=0, vec_env="dummy", training=True)
    try:
        assert eval_env.env_is_wrapped(Monitor) == [True]
        assert eval_env.env_is_wrapped(NoopResetEnv) == [True] and eval_env.env_is_wrapped(FireResetEnv) == [True]
        assert eval_env.env_is_wrapped(EpisodicLifeEnv) == [False]
        assert eval_env.env_is_wrapped(ClipRewardEnv) == [False]
        assert train_env.env_is_wrapped(EpisodicLifeEnv) == [True] and train_env.env_is_wrapped(ClipRewardEnv) == [True]

        class Random:
            rng = np.random.default_rng(0)

            def predict(self, obs, state=None, episode_start=None, deterministic=True):
                return self.rng.integers(6, size=len(obs)), None

        steps = []
        returns, lengths = evaluate_policy(Random(), eval_env, n_eval_episodes=1, return_episode_rewards=True,
                                           callback=lambda local, _: steps.append((local["reward"], local["done"])))
        rewards = np.array([r for r, _ in steps])
        dones = [d for _, d in steps]
        assert dones.count(True) == 1 and dones[-1]  # one done: the game's end, not a life's
        assert rewards.max() > 1  # raw points (5 to 30 an alien), not clipped to 1
        assert returns[0] == pytest.approx(rewards.sum())  # Monitor's full-game score
        # Monitor sits above the frame skip: it counts agent steps, plus FireReset's 2 steps at the reset
        assert len(steps) <= lengths[0] <= len(steps) + 2
    finally:
        eval_env.close()
        train_env.close()


def test_summary_line():
    assert summary_line({"mean": 1.5, "std": 0.5, "median": 1.5, "min": 1, "max": 2, "episodes": 2}) == \
        "return 1.50 ± 0.50, median 1.50, min 1.00, max 2.00 over 2 episodes"
