"""The command line: a real tiny run end to end, and one-line errors with exit code 2 (in-process, and once
through ``train_agent.py`` itself)."""

import subprocess
import sys
from pathlib import Path

import pytest

from rlaux.cli import main
from rlaux.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "train_agent.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def run_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """``rlaux.cli.main(argv)`` in-process: (exit code, stdout, stderr); argparse's exit counts as a code."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--env", "NoSuchEnv-v0"], "unknown env 'NoSuchEnv-v0'"),
        (["--env", "CartPole-v2"], "CartPole-v1"),
        (["--env", "MinAtar", "--aux", "nope"], "unknown aux task 'nope'"),
        (["--env", "CartPole-v1", "--aux", "pixel_control"], "needs image observations"),
        (["--env", "MinAtar", "--aux", "reward_pred", "--aux-weight", "reward_pred=abc"], "'abc'"),
        (["--env", "MinAtar", "--aux", "reward_pred", "--aux-weight", "reward_pred=-1"], "'-1'"),
        (["--env", "MinAtar", "--timesteps", "0"], "--timesteps must be a positive"),
        (["--env", "MinAtar", "--algo", "dqn"], "invalid choice: 'dqn'"),
        (["--env", "MinAtar", "--agent", "nope"], "unknown agent preset 'nope'"),
        (["--env", "MinAtar", "--hyperparams", "n_steps"], "--hyperparams expects name=value"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(args, needle, tmp_path, capsys):
    code, _, err = run_main(["train", "-n", "64", *args, "-f", str(tmp_path), "--no-progress"], capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert needle in lines[0]
    assert not any(tmp_path.iterdir())  # nothing was started


def test_train_agent_py_bad_input_exits_2_with_one_line(tmp_path):
    result = run_cli("-n", "64", "--env", "NoSuchEnv-v0", "-f", str(tmp_path), "--no-progress")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "A.L.E" not in line and "Stella" not in line]
    assert len(lines) == 1, result.stderr
    assert "unknown env 'NoSuchEnv-v0'" in lines[0]
    assert "Traceback" not in result.stderr


def test_minatar_reward_pred_run_writes_its_folder_and_tensorboard_scalars(tmp_path, capsys):
    code, out, err = run_main(["--env", "MinAtar", "--aux", "reward_pred", "--aux-weight", "reward_pred=0.5",
                               "-n", "512", "--n-envs", "2", "-params", "n_steps=64", "batch_size=64", "n_epochs=2",
                               "--no-progress", "-f", str(tmp_path), "--seed", "3"], capsys)
    assert code == 0, err
    assert f"run saved in {tmp_path / 'MinAtar_ppo_reward_pred_s3'}" in out
    run = tmp_path / "MinAtar_ppo_reward_pred_s3"
    assert (run / "final_model.zip").is_file()
    config = RunFolder(run).read()
    assert config["aux"] == ["reward_pred"] and float(config["aux_settings"]["weights"]["reward_pred"]) == 0.5
    assert config["hyperparams"]["n_steps"] == 64 and config["env_id"] == "MinAtar/Breakout-v1"
    assert list((run / "monitor").glob("*.monitor.csv"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"aux/reward_pred/loss", "aux/reward_pred/accuracy", "aux/reward_pred/rewarding_share",
            "aux/reward_pred/weight", "train/value_loss", "rollout/ep_rew_mean"} <= tags
    assert events.Scalars("aux/reward_pred/weight")[-1].value == 0.5
