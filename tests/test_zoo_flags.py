"""rl-zoo3's flags on ``train_agent.py``: ``-params key:value``, ``--env-kwargs``, ``--gym-packages`` and
gymnasium's ``module:EnvId``, ``-i/--trained-agent``, and ``compare -f/--log-dir``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import pytest

from rlaux.algorithms import AuxPPO
from rlaux.cli.train import config_from_args, train_parser
from rlaux.run import resolve
from rlaux.run.checkpoint import checkpoint_dirs
from rlaux.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
FAST = ["-params", "n_steps:32", "batch_size=32", "n_epochs:1", "--n-envs", "1", "--no-progress", "-v", "0"]

#: A package that registers a small env (4-dim Box observations, Discrete(2) actions) when imported.
PACKAGE_SOURCE = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Tiny(gym.Env):
    """Episodes of ``length`` steps; reward 1 for action 1."""

    def __init__(self, length=20):
        self.observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.length = length
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.t += 1
        return self.observation_space.sample(), float(action), False, self.t >= self.length, {}


gym.register("{env_id}", entry_point=Tiny)
'''


from test_cli import run_main  # noqa: E402  (after the package text above)


def write_package(folder: Path, module: str, env_id: str) -> None:
    (folder / module).mkdir(parents=True)
    (folder / module / "__init__.py").write_text(PACKAGE_SOURCE.replace("{env_id}", env_id))


@pytest.fixture
def tiny_package(tmp_path, monkeypatch):
    """(module, env id) of a throwaway package on sys.path, forgotten (module and id) afterwards."""
    module, env_id = "rlaux_tiny_envs", "RlauxTiny-v0"
    write_package(tmp_path / "pkg", module, env_id)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    yield module, env_id
    sys.modules.pop(module, None)
    gym.registry.pop(env_id, None)


def monitor_lengths(run: Path) -> set[int]:
    return {int(line.split(",")[1]) for f in (run / "monitor").glob("*.monitor.csv")
            for line in f.read_text().splitlines()[2:]}


# ------------------------------------------------------------------ -params key:value


def test_hyperparams_take_key_colon_value_as_rl_zoo3_and_key_equals_value():
    def parsed(*items: str) -> dict:
        return config_from_args(train_parser().parse_args(["-params", *items])).hyperparams

    assert parsed("learning_rate:0.01") == parsed("learning_rate=0.01") == {"learning_rate": 0.01}
    # the name ends at the first '=' or ':', so values may hold either
    assert parsed("policy_kwargs:dict(net_arch=[64, 64], ortho_init=False)", "learning_rate:lin_2.5e-4",
                  "clip_range=lin_0.1", "n_steps:64", "normalize_advantage:False") == {
        "policy_kwargs": {"net_arch": [64, 64], "ortho_init": False}, "learning_rate": "lin_2.5e-4",
        "clip_range": "lin_0.1", "n_steps": 64, "normalize_advantage": False}
    argv = ["--env", "CartPole-v1", "-params", "learning_rate:lin_2.5e-4", "n_steps:64", "policy_kwargs:dict(net_arch=[8])"]
    run = resolve(config_from_args(train_parser().parse_args(argv)))
    assert run.hyperparams["learning_rate"] == "lin_2.5e-4" and run.hyperparams["n_steps"] == 64
    assert run.hyperparams["policy_kwargs"] == {"net_arch": [8]}


@pytest.mark.parametrize("flag", ["-params", "--env-kwargs"])
def test_an_item_without_separator_is_one_line_exit_2(flag, tmp_path, capsys):
    code, _, err = run_main(["--env", "CartPole-v1", flag, "n_steps", "-f", str(tmp_path)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "expects name=value or name:value, got 'n_steps'" in err
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------ --gym-packages, module:EnvId, --env-kwargs


def test_env_of_a_package_trains_through_gym_packages_with_env_kwargs(tiny_package, tmp_path, capsys):
    module, env_id = tiny_package
    code, out, err = run_main(["--gym-packages", module, "--env", env_id, "--env-kwargs", "length:7", "-n", "256",
                               *FAST, "-f", str(tmp_path), "--run-name", "r"], capsys)
    assert code == 0, err
    run = tmp_path / "r"
    assert (run / "final_model.zip").is_file()
    config = RunFolder(run).read()
    assert config["gym_packages"] == [module] and config["env_spec"]["gym_packages"] == [module]
    assert config["env_kwargs"] == {"length": 7} and config["env_spec"]["env_kwargs"] == {"length": 7}
    assert monitor_lengths(run) == {7}  # the env got the kwargs
    # evaluate rebuilds the same env from config.json
    code, out, err = run_main(["evaluate", "--load", str(run), "-n", "2"], capsys)
    assert code == 0, err
    assert set(json.loads((run / "evaluation.json").read_text())["lengths"]) == {7}


def test_bad_package_or_module_env_id_is_one_line_exit_2(tmp_path, capsys):
    for argv, needle in ((["--gym-packages", "no_such_pkg_x", "--env", "CartPole-v1"],
                          "--gym-packages: cannot import 'no_such_pkg_x' (ModuleNotFoundError"),
                         (["--env", "no_such_pkg_x:Tiny-v0"],
                          "--env no_such_pkg_x:Tiny-v0: cannot import 'no_such_pkg_x'"),
                         (["--env", "RlauxNotRegistered-v0"], "--gym-packages PACKAGE, or --env PACKAGE:EnvId")):
        code, _, err = run_main([*argv, "-n", "64", "-f", str(tmp_path), "--no-progress"], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert needle in err
    assert not any(tmp_path.iterdir())


def test_module_colon_env_id_trains_in_subprocess_workers_and_resumes_and_evaluates_from_config(tmp_path):
    """In fresh processes, so that nothing is imported but what the run itself imports: the SubprocVecEnv
    workers, ``--resume`` and ``evaluate`` get the package from config.json."""
    module, env_id = "rlaux_tiny_envs_sub", "RlauxTinySub-v0"
    write_package(tmp_path / "pkg", module, env_id)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "pkg"), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, str(ROOT / "train_agent.py"), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done

    run = tmp_path / "runs" / "r"
    cli("--env", f"{module}:{env_id}", "--env-kwargs", "length=5", "-n", "256", "--n-envs", "2", "--vec-env", "subproc",
        "-params", "n_steps:32", "batch_size:32", "n_epochs:1", "--save-freq", "64", "--no-progress", "-v", "0",
        "-f", str(tmp_path / "runs"), "--run-name", "r")
    config = RunFolder(run).read()
    assert config["env_id"] == env_id and config["env_spec"]["gym_packages"] == [module]
    assert monitor_lengths(run) == {5}
    # as if stopped after the first checkpoint
    (run / "final_model.zip").unlink()
    for later in checkpoint_dirs(run)[1:]:
        shutil.rmtree(later)
    done = cli("--resume", str(run), "--no-progress")
    assert "resuming" in done.stderr and (run / "final_model.zip").is_file()
    assert AuxPPO.load(run / "final_model.zip", device="cpu").num_timesteps == 256
    cli("evaluate", "--load", str(run), "-n", "1")
    assert json.loads((run / "evaluation.json").read_text())["lengths"] == [5]


# ------------------------------------------------------------------ -i/--trained-agent


def test_trained_agent_goes_on_training_with_its_tasks_and_weights(tmp_path, capsys):
    code, _, err = run_main(["--env", "CartPole-v1", "--aux", "reward_pred", "--aux-weight", "reward_pred=0.5",
                             "-n", "128", *FAST, "-f", str(tmp_path), "--run-name", "first"], capsys)
    assert code == 0, err
    first = tmp_path / "first" / "final_model.zip"
    code, out, err = run_main(["-i", str(first), "--env", "CartPole-v1", "-n", "96", "-params", "learning_rate:1e-4",
                               "--n-envs", "1", "--no-progress", "-v", "0", "-f", str(tmp_path), "--run-name", "second",
                               "--seed", "1"], capsys)
    assert code == 0, err
    run = tmp_path / "second"
    config = RunFolder(run).read()
    assert config["trained_agent"] == str(first) and config["algo"] == "ppo"
    assert config["aux"] == ["reward_pred"] and config["aux_settings"]["weights"] == {"reward_pred": 0.5}
    model = AuxPPO.load(run / "final_model.zip", device="cpu")
    assert [t.name for t in model.aux_tasks] == ["reward_pred"] and model.aux_tasks[0].weight == 0.5
    assert model.learning_rate == 1e-4 and model.n_steps == 32  # the flag's hyperparameter, the model's own
    assert model.num_timesteps == 96  # the new run counts from 0 (3 rollouts of 32 steps)
    before = AuxPPO.load(first, device="cpu").policy.state_dict()
    assert any((before[k] != v).any() for k, v in model.policy.state_dict().items())  # it trained on


def test_bad_trained_agent_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("data", "{not json")
    out_dir = tmp_path / "runs"
    for path, needle in ((tmp_path / "missing.zip", "no such model file"),
                         (corrupt, "not a model file (not a zip archive"),
                         (foreign, "cannot be loaded as an AuxPPO model")):
        code, _, err = run_main(["-i", str(path), "--env", "CartPole-v1", "-n", "64", "-f", str(out_dir)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"-i/--trained-agent {path}: {needle}" in err
    assert not out_dir.exists()


def test_trained_agent_on_an_env_of_other_spaces_or_with_new_tasks_is_refused(tmp_path, capsys):
    code, _, err = run_main(["--env", "CartPole-v1", "-n", "64", *FAST, "-f", str(tmp_path), "--run-name", "m"], capsys)
    assert code == 0, err
    model = str(tmp_path / "m" / "final_model.zip")
    code, _, err = run_main(["-i", model, "--env", "Acrobot-v1", "-n", "64", "-f", str(tmp_path / "x")], capsys)
    assert code == 2 and "was trained on observation space" in err and "Acrobot-v1" in err
    code, _, err = run_main(["-i", model, "--env", "CartPole-v1", "--aux", "reward_pred", "--algo", "a2c", "-n", "64",
                             "-f", str(tmp_path / "x")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "keeps the model's own aux tasks and weights: drop --aux" in err
    assert "--algo a2c contradicts" in err and "AuxPPO model" in err
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ compare -f/--log-dir


@pytest.mark.parametrize("flag", ["-f", "--log-dir", "--log-folder", "--out"])
def test_compare_takes_the_train_commands_log_dir_flags(flag, tmp_path, capsys):
    code, out, err = run_main(["compare", "--env", "MinAtar", "--aux", "none", "--seeds", "1", "--timesteps", "100",
                               flag, str(tmp_path / "cmp"), "--dry-run"], capsys)
    assert code == 0, err
    assert f"--log-dir {tmp_path / 'cmp' / 'runs'} " in out
