"""Stops from outside: a signal to the whole process group (SLURM, systemd, ``docker stop``, ``timeout``,
Ctrl-C), with the envs in worker processes, ends as a signal to the main process alone does."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rlaux.run import checkpoint as ck

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")

CODE = "import sys; from rlaux.cli import main; raise SystemExit(main(sys.argv[1:]))"


def start_group(argv: list[str], log: Path) -> subprocess.Popen:
    """The CLI in a fresh interpreter leading a process group of its own (as a job under a scheduler)."""
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-c", CODE, *argv], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "TORCH_NUM_THREADS": "1"}, start_new_session=True)


def group_members(pgid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "-g", str(pgid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait_for_training(run: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Until the run has logged an update (its env workers are up and stepping)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        progress = run / "progress.csv"
        if progress.is_file() and len(progress.read_text().splitlines()) >= 2:
            return
        time.sleep(0.05)
    raise AssertionError(f"the run did not start training (exit {proc.poll()})")


def args_of(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return ["--env", "CartPole-v1", "--aux", "none", "--vec-env", "subproc", "--n-envs", "2", "-n", "200000",
            "-params", "n_steps=64", "batch_size=64", "n_epochs=1", "--no-progress", "-v", "0", "--device", "cpu",
            "-f", str(tmp_path), "--run-name", name, *extra]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_to_the_process_group_checkpoints_and_resumes(tmp_path, signum, code):
    run, log = tmp_path / "g", tmp_path / "log.txt"
    proc = start_group(args_of(tmp_path, "g"), log)
    wait_for_training(run, proc)
    assert len(group_members(proc.pid)) >= 3  # the main process and its two env workers
    time.sleep(random.Random(signum).uniform(0.0, 0.5))  # a random moment of the rollout or the update
    os.killpg(proc.pid, signum)
    proc.wait(60)
    out = log.read_text()
    assert proc.returncode == code, out
    assert "Traceback" not in out and "EOFError" not in out and "BrokenPipe" not in out, out
    state = json.loads((ck.checkpoint_dirs(run)[-1] / "state.json").read_text())
    assert state["reason"] == "signal" and state["num_timesteps"] > 0
    # ... and the run goes on from there to its end.
    config = json.loads((run / "config.json").read_text())
    config["resolved"]["timesteps"] = state["num_timesteps"] + 256
    (run / "config.json").write_text(json.dumps(config))
    resumed = start_group(["--resume", str(run), "--no-progress"], log)
    resumed.wait(120)
    assert resumed.returncode == 0, log.read_text()
    assert (run / "final_model.zip").is_file()


def test_a_second_group_signal_quits_at_once_and_the_last_checkpoint_stays_valid(tmp_path):
    run, log = tmp_path / "twice", tmp_path / "log.txt"
    proc = start_group(args_of(tmp_path, "twice", "--save-freq", "128"), log)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None and not ck.checkpoint_dirs(run):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(random.Random(1).uniform(0.0, 0.3))  # during the last update, the checkpoint or the exit
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)
    out = log.read_text()
    assert proc.returncode == 143, out
    assert "Traceback" not in out, out
    path, state = ck.latest_checkpoint(run)  # raises if none is valid
    assert state["num_timesteps"] > 0 and path.is_dir()
    deadline = time.time() + 20
    while group_members(proc.pid) and time.time() < deadline:  # workers end when their pipes close
        time.sleep(0.1)
    assert not group_members(proc.pid), "env workers outlived the main process"


def test_resume_of_a_run_stopped_before_its_first_checkpoint_says_so_and_can_start_again(tmp_path, capsys):
    from rlaux.cli import main

    run, log = tmp_path / "early", tmp_path / "log.txt"
    proc = start_group(args_of(tmp_path, "early"), log)
    wait_for_training(run, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # nothing can be saved
    proc.wait(30)
    assert not ck.checkpoint_dirs(run)
    capsys.readouterr()
    assert main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint" in err and "--restart" in err, err

    config = json.loads((run / "config.json").read_text())
    for where in (config["resolved"], config["request"]):  # the resolved values and the user's own flags
        where["timesteps"] = 128
    config["request"]["vec_env"] = "dummy"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["--resume", str(run), "--restart", "--no-progress"]) == 0
    assert (run / "final_model.zip").is_file()
    import pandas as pd

    progress = pd.read_csv(run / "progress.csv")
    assert progress["time/total_timesteps"].dropna().tolist() == [128]  # the new run's rows only
    assert (run / "attempt-1" / "progress.csv").is_file()  # the first attempt's, moved aside


def test_a_second_signal_mid_message_ends_the_workers_instead_of_waiting_on_their_pipes(tmp_path):
    """The second signal can land while a message on a worker's pipe is half read or half written: a close
    handshake then fails or waits for ever, and workers left alive (they ignore stop signals) keep Python's exit
    waiting on them. The run kills its workers instead, and exits with 128 + the signal."""
    import threading

    from rlaux.run.config import RunConfig, resolve
    from rlaux.run.signals import Abort
    from rlaux.run.train import _learn, _make_env

    run = resolve(RunConfig(env="CartPole-v1", aux=["none"], vec_env="subproc", n_envs=2, timesteps=256,
                            log_dir=str(tmp_path), run_name="cut", progress_bar=False, verbose=0, device="cpu"))
    env = _make_env(run)
    workers = list(env.unwrapped.processes)

    class CutMidMessage:
        """learn() as a second SIGTERM would leave it: a reply's length header read, its body not."""

        def request_stop(self) -> None:
            pass

        def learn(self, *args, **kwargs) -> None:
            env.reset()
            env.step_async(np.zeros(2, dtype=np.int64))
            os.read(env.unwrapped.remotes[0].fileno(), 4)  # the header of worker 0's reply, not its body
            raise Abort(signal.SIGTERM)

    rescued = threading.Event()

    def watchdog() -> None:  # had the run waited on the pipe, end the wait (and fail the test)
        if not finished.wait(30):
            rescued.set()
            for worker in workers:
                worker.kill()

    finished = threading.Event()
    threading.Thread(target=watchdog, daemon=True).start()
    with pytest.raises(SystemExit) as exit_info:  # in the main thread: the run installs its signal handlers
        try:
            _learn(run, CutMidMessage(), env, 256, reset_num_timesteps=True)
        finally:
            finished.set()
    assert not rescued.is_set(), "the run waited on a pipe cut mid-message"
    assert exit_info.value.code == 143
    assert not any(worker.is_alive() for worker in workers)
