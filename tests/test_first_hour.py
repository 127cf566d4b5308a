"""A new user's first hour: mistakes refused in one line before anything is written, what the CLI says
about itself, evaluation that shows progress and ends, third-party envs through --env-wrapper."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rlaux.cli import COMMANDS, main
from rlaux.cli.train import SUBCOMMANDS, train_parser
from rlaux.run_folder import RunFolder

pytest.importorskip("minigrid")


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------- the log folder


def test_a_log_dir_that_is_a_file_is_one_line_before_anything_is_built(tmp_path, capsys):
    afile = tmp_path / "runs"
    afile.write_text("")
    for log_dir, needle in ((afile, "is a file"), (afile / "sub", "lies under")):
        assert main(["--env", "CartPole-v1", "-n", "64", "-f", str(log_dir)]) == 2
        err = one_line_error(capsys)
        assert f"--log-dir {log_dir}" in err and needle in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root writes in any folder; the permission check needs a normal user")
def test_a_log_dir_without_write_permission_is_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["--env", "CartPole-v1", "-n", "64", "-f", str(locked / "runs")]) == 2
    assert "no permission to write" in one_line_error(capsys)


# --------------------------------------------------------------------------- what the CLI says


def test_help_lists_every_subcommand_and_verbose(capsys):
    assert set(SUBCOMMANDS) == set(COMMANDS)
    text = train_parser().format_help()
    for name, summary in SUBCOMMANDS.items():
        assert f"  {name:<9} {summary}" in text
    assert "SB3's verbosity" in text


def test_a_budget_that_is_not_whole_rollouts_is_said(tmp_path, capsys):
    code = main(["--env", "CartPole-v1", "--aux", "none", "-n", "100", "--n-envs", "2", "-params", "n_steps=64",
                 "batch_size=64", "n_epochs=1", "-f", str(tmp_path), "--no-progress", "-v", "0", "--device", "cpu"])
    assert code == 0
    err = capsys.readouterr().err
    assert "--timesteps 100 is not a whole number of rollouts of n_steps 64 x n_envs 2 = 128" in err
    assert "trains 128" in err


# --------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def minatar_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["--env", "MinAtar", "--game", "Breakout", "--aux", "none", "-n", "256", "--n-envs", "2",
                 "-params", "n_steps=128", "batch_size=64", "n_epochs=1", "-f", str(out), "--run-name", "r",
                 "--no-progress", "-v", "0", "--device", "cpu"]) == 0
    return out / "r"


def test_evaluate_prints_each_episode_and_names_a_stalling_greedy_policy(minatar_run, capsys):
    assert main(["evaluate", "--load", str(minatar_run), "--episodes", "2", "--max-episode-steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "at most 3 agent steps an episode" in out
    assert "episode 1/2: return" in out and "episode 2/2: return" in out
    assert "(ended by the cap, --max-episode-steps)" in out
    assert "2 of 2 episodes ran to the cap of 3 agent steps" in out and "greedy policy that stalls" in out
    result = json.loads((minatar_run / "evaluation.json").read_text())
    assert result["lengths"] == [3, 3] and result["episodes_capped"] == 2 and result["max_episode_steps"] == 3
    assert result["lengths_unit"] == "agent steps"


def test_evaluate_prints_progress_within_a_long_episode(minatar_run):
    from rlaux.envs import make_vec_env, resolve_env
    from rlaux.evaluate import EvaluationProgress

    lines: list[str] = []
    env = EvaluationProgress(make_vec_env(resolve_env("MinAtar", game="Breakout"), n_envs=1, vec_env="dummy",
                                          training=False, max_episode_steps=50),
                             episodes=1, max_episode_steps=50, every_s=0.0,
                             print_fn=lambda line, flush=False: lines.append(line))
    env.reset()
    for _ in range(3):
        env.step([0])
    env.close()
    assert lines and "0/1 episodes done; under way: 3 agent steps of at most 50" in lines[-1]


def test_evaluate_refuses_a_negative_cap(minatar_run, capsys):
    assert main(["evaluate", "--load", str(minatar_run), "--max-episode-steps", "-1"]) == 2
    assert "--max-episode-steps must be >= 0" in one_line_error(capsys)


def test_atari_default_cap_and_lengths_in_frames():
    from rlaux.envs import resolve_env
    from rlaux.evaluate import atari_frame_skip, default_max_episode_steps

    atari = resolve_env("Atari", game="Breakout")
    assert default_max_episode_steps(atari) == 4_500 and atari_frame_skip(atari) == 4
    assert default_max_episode_steps(resolve_env("MinAtar", game="Breakout")) == 27_000
    assert atari_frame_skip(resolve_env("MinAtar", game="Breakout")) is None


# --------------------------------------------------------------------------- third-party envs


def test_a_dict_observation_is_refused_naming_the_wrapper_and_nothing_is_written(tmp_path, capsys):
    code = main(["--env", "MiniGrid-Empty-5x5-v0", "--gym-packages", "minigrid", "--aux", "none", "-n", "64",
                 "-f", str(tmp_path / "runs")])
    assert code == 2
    err = one_line_error(capsys)
    assert "Dict observation" in err and "'mission'" in err and "--env-wrapper minigrid.wrappers.ImgObsWrapper" in err
    assert not (tmp_path / "runs").exists()


def test_env_wrapper_trains_minigrid_with_an_aux_task_and_evaluates(tmp_path, capsys):
    args = ["--env", "MiniGrid-Empty-5x5-v0", "--gym-packages", "minigrid", "--env-wrapper",
            "minigrid.wrappers.ImgObsWrapper", "--aux", "reward_pred", "-n", "128", "--n-envs", "2", "--vec-env",
            "dummy", "-params", "n_steps=64", "batch_size=64", "n_epochs=1", "-f", str(tmp_path), "--run-name", "mg",
            "--no-progress", "-v", "0", "--device", "cpu"]
    assert main(args) == 0
    config = RunFolder(tmp_path / "mg").read()
    assert config["env_spec"]["env_wrapper"] == ["minigrid.wrappers.ImgObsWrapper"]
    assert config["env_spec"]["policy"] == "CnnPolicy"
    assert main(["evaluate", "--load", str(tmp_path / "mg"), "--episodes", "1"]) == 0  # the config rebuilds the env
    assert "episode 1/1" in capsys.readouterr().out


@pytest.mark.parametrize("wrapper, needle", [
    ("no_such_module.Wrapper", "cannot import 'no_such_module'"),
    ("minigrid.wrappers.NoSuchWrapper", "has no class NoSuchWrapper"),
    ("ImgObsWrapper", "is not a wrapper class as module.Class"),
])
def test_a_bad_env_wrapper_is_one_line(tmp_path, capsys, wrapper, needle):
    code = main(["--env", "MiniGrid-Empty-5x5-v0", "--gym-packages", "minigrid", "--env-wrapper", wrapper,
                 "-n", "64", "-f", str(tmp_path / "runs")])
    assert code == 2
    assert needle in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


def test_env_wrapper_in_an_env_preset(tmp_path):
    from rlaux.envs import resolve_env

    preset = tmp_path / "Grid.toml"
    preset.write_text('kind = "gym"\nenv_id = "MiniGrid-Empty-5x5-v0"\n'
                      'env_wrapper = [{"minigrid.wrappers.ImgObsWrapper" = {}}]\n')
    spec = resolve_env(str(preset), gym_packages=["minigrid"])
    assert spec.env_wrapper == [{"minigrid.wrappers.ImgObsWrapper": {}}] and spec.policy == "CnnPolicy"


@pytest.mark.parametrize("value, needle", [
    ('dict(net_arch=[64], activation_fn=nn.ReLU)', "only literals are read, not nn.ReLU; name classes as strings"),
    ("[64]", "policy_kwargs must be a dict, got a list ([64])"),
    ("net_arch", "is not a dict: write dict(name=value, ...)"),
    ("dict(net_arch=[64", "does not parse"),
])
def test_policy_kwargs_errors_say_what_is_wrong(tmp_path, capsys, value, needle):
    assert main(["--env", "CartPole-v1", "-n", "64", "-params", f"policy_kwargs:{value}", "-f", str(tmp_path / "r")]) == 2
    assert needle in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("setting, needle", [
    ("aux_clip=bogus", "aux_clip must be one of"),
    ("aux_every=0", "aux_every must be an integer >= 1 or 'auto'"),
    ("aux_max_grad_norm=-1", "aux_max_grad_norm must be a number > 0"),
    ("aux_env_steps_per_sequence=0", "aux_env_steps_per_sequence must be an integer >= 1"),
    ("aux_replay_capacity=1", "aux_replay_capacity must be an integer >= 2"),
])
def test_bad_algorithm_level_aux_settings_are_refused_before_anything_is_built(tmp_path, capsys, setting, needle):
    assert main(["--env", "MinAtar", "--aux", "reward_pred", "-n", "1000", "-f", str(tmp_path / "r"),
                 "-params", setting]) == 2
    assert needle in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("algo, steps", [("ppo", "128"), ("a2c", "640")])
def test_a_run_shorter_than_the_log_interval_still_logs_its_training_scalars(tmp_path, algo, steps):
    import pandas as pd

    args = ["--env", "MinAtar", "--game", "Breakout", "--algo", algo, "--aux", "reward_pred", "-n", steps,
            "--n-envs", "2", "-f", str(tmp_path), "--run-name", "short", "--no-progress", "-v", "0", "--device", "cpu"]
    if algo == "ppo":
        args += ["-params", "n_steps=64", "batch_size=64", "n_epochs=1"]  # one update, dumped before it by SB3
    assert main(args) == 0  # A2C: 64 updates of 2 x 5 steps, fewer than its log interval of 100
    progress = pd.read_csv(tmp_path / "short" / "progress.csv")
    for column in ("train/value_loss", "aux/reward_pred/loss"):
        assert column in progress and progress[column].notna().any(), list(progress.columns)
