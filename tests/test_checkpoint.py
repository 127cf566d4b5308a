"""Checkpoints, resume, signals, numerical faults and config validation."""

import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger

from rlaux import AuxA2C, AuxPPO, AuxTask, ConfigError
from rlaux.objective import NonFiniteUpdates
from rlaux.replay import ReplayRequest
from rlaux.run import RunConfig, resume, train
from rlaux.run import checkpoint as ck
from rlaux.run.env_state import capture_env_state, restore_env_state

SMALL = dict(n_steps=64, batch_size=32, n_epochs=1)


def config(tmp_path, name, **kwargs):
    base = dict(env="CartPole-v1", timesteps=512, n_envs=1, seed=1, device="cpu", log_dir=str(tmp_path),
                run_name=name, save_freq=128, hyperparams=dict(SMALL), progress_bar=False, verbose=0,
                vec_env="dummy", keep_checkpoints=0)
    base.update(kwargs)
    return RunConfig(**base)


def tb_steps(folder: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [e.step for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


# --------------------------------------------------------------------------- resume is exact


@pytest.mark.parametrize("env,aux", [("CartPole-v1", []), ("MinAtar", ["reward_pred"])])
def test_resumed_run_equals_uninterrupted_run(tmp_path, env, aux):
    """CPU, one DummyVecEnv env: same losses, same weights, same Monitor episodes, same TensorBoard steps."""
    kw = dict(env=env, aux=aux, timesteps=640, save_replay=True, hyperparams=dict(n_steps=128, batch_size=64, n_epochs=2))
    a = train(config(tmp_path, "a", **kw))
    b = train(config(tmp_path, "b", **kw))
    # Pretend b was stopped after its first checkpoint (logs and Monitor rows after it exist, as after a kill).
    (b / "final_model.zip").unlink()
    for later in ck.checkpoint_dirs(b)[1:]:
        shutil.rmtree(later)
    assert json.loads((ck.checkpoint_dirs(b)[0] / "state.json").read_text())["num_timesteps"] == 128
    resume(b)

    pa, pb = pd.read_csv(a / "progress.csv"), pd.read_csv(b / "progress.csv")
    cols = [c for c in pa.columns if not c.startswith("time/") or c in ("time/total_timesteps", "time/iterations")]
    assert pa[cols].equals(pb[cols])
    assert any(c.startswith("train/") for c in cols) and (not aux or "aux/reward_pred/loss" in cols)
    ma, mb = AuxPPO.load(a / "final_model.zip", device="cpu"), AuxPPO.load(b / "final_model.zip", device="cpu")
    for (name, x), y in zip(ma.policy.state_dict().items(), mb.policy.state_dict().values(), strict=True):
        assert th.equal(x, y), name
    from stable_baselines3.common.monitor import load_results

    ra, rb = load_results(str(a / "monitor")), load_results(str(b / "monitor"))
    assert ra[["r", "l"]].equals(rb[["r", "l"]]) and len(ra) > 0
    # The episodes' env steps: b's rows after its checkpoint were cut at the resume, then written again.
    assert (a / "episode_steps.csv").read_text() == (b / "episode_steps.csv").read_text()
    assert len((a / "episode_steps.csv").read_text().splitlines()) == len(ra) + 1
    sa, sb = tb_steps(a), tb_steps(b)
    assert sa == sb


def test_env_state_capture_restores_cartpole_and_minatar():
    from rlaux.envs import make_vec_env as rlaux_vec_env
    from rlaux.envs import resolve_env

    for name in ("CartPole-v1", "MinAtar"):
        venv = rlaux_vec_env(resolve_env(name), n_envs=2, seed=0, vec_env="dummy")
        venv.reset()
        for _ in range(5):
            venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
        state = capture_env_state(venv)
        actions = [np.array([i % 2, (i + 1) % 2]) for i in range(40)]
        first = [venv.step(a)[:3] for a in actions]
        assert restore_env_state(venv, state)
        again = [venv.step(a)[:3] for a in actions]
        for (o1, r1, d1), (o2, r2, d2) in zip(first, again, strict=True):
            assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(d1, d2)
        venv.close()


# --------------------------------------------------------------------------- signals and kills


def _main_in_child(argv: list[str], log: Path) -> None:
    """The CLI in a child process, its output into ``log``."""
    from rlaux.cli import main

    out = open(log, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = sys.stderr = out
    os.environ["TORCH_NUM_THREADS"] = "1"
    raise SystemExit(main(argv))


class CliSubprocess:
    """The CLI in a fresh interpreter, with the part of ``multiprocessing.Process`` that these tests use."""

    def __init__(self, argv: list[str], log: Path) -> None:
        code = "import sys; from rlaux.cli import main; raise SystemExit(main(sys.argv[1:]))"
        with open(log, "a") as out:
            self._popen = subprocess.Popen([sys.executable, "-c", code, *argv], stdout=out, stderr=subprocess.STDOUT,
                                           env={**os.environ, "TORCH_NUM_THREADS": "1"}, cwd=log.parent)
        self.pid = self._popen.pid

    def is_alive(self) -> bool:
        return self._popen.poll() is None

    def join(self, timeout: float | None = None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout)

    def kill(self) -> None:
        self._popen.kill()

    @property
    def exitcode(self) -> int | None:
        return self._popen.poll()


def cli_process(argv: list[str], log: Path) -> multiprocessing.Process | CliSubprocess:
    """The CLI in a forked process (no interpreter start-up to pay); in a fresh interpreter once this
    worker has run autograd on a GPU, which a forked child cannot use (torch refuses)."""
    if th.cuda.is_initialized():
        return CliSubprocess(argv, log)
    proc = multiprocessing.get_context("fork").Process(target=_main_in_child, args=(argv, log))
    proc.start()
    return proc


def _logged_beyond(run: Path, step: int) -> bool:
    """progress.csv has a row past ``step``."""
    try:
        lines = (run / "progress.csv").read_text().split("\n")[:-1]
        col = lines[0].split(",").index("time/total_timesteps")
        return any(float(line.split(",")[col]) > step for line in lines[1:])
    except (OSError, IndexError, ValueError):
        return False


def sigterm_after_a_checkpoint(proc, run: Path, timeout: float) -> None:
    """Wait until ``run`` has a checkpoint and steps logged after it, then SIGTERM the process."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.is_alive():
        dirs = ck.checkpoint_dirs(run)
        if dirs and _logged_beyond(run, int(dirs[0].name.split("-")[1])):
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGTERM)
    proc.join(60)


def test_sigterm_then_resume_gives_the_uninterrupted_step_count_and_clean_tensorboard(tmp_path, capsys):
    total = 1536
    args = ["--env", "CartPole-v1", "-n", str(total), "--n-envs", "1", "--vec-env", "dummy", "--save-freq", "256",
            "-params", "n_steps=64", "batch_size=64", "n_epochs=1", "--no-progress", "-v", "0", "-f", str(tmp_path),
            "--run-name", "r", "--device", "cpu", "--seed", "2"]
    run, log = tmp_path / "r", tmp_path / "log.txt"
    proc = cli_process(args, log)
    sigterm_after_a_checkpoint(proc, run, timeout=60)
    err = log.read_text()
    assert proc.exitcode == 143, err
    assert f"python train_agent.py --resume {run}" in err
    assert not (run / "final_model.zip").exists()
    assert json.loads((ck.checkpoint_dirs(run)[-1] / "state.json").read_text())["reason"] == "signal"

    # In a process of its own too: TensorBoard orders event files by start time, then pid.
    done = cli_process(["--resume", str(run), "--no-progress"], log)
    done.join(120)
    assert done.exitcode == 0, log.read_text()
    progress = pd.read_csv(run / "progress.csv")
    steps = progress["time/total_timesteps"].to_numpy()
    assert steps[-1] == total and np.all(np.diff(steps) == 64)
    assert np.array_equal(progress["time/iterations"].to_numpy(), np.arange(1, len(steps) + 1))
    for tag, seen in tb_steps(run).items():
        assert np.all(np.diff(seen) > 0), tag  # strictly increasing: none repeated
    assert tb_steps(run)["time/fps"][-1] == total and len(tb_steps(run)["time/fps"]) == total // 64
    # flags other than --device/--no-progress/--verbose are refused with --resume
    from rlaux.cli import main

    capsys.readouterr()
    assert main(["--resume", str(run), "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "--seed" in err and len(err.strip().splitlines()) == 1


def test_kill_9_at_random_moments_leaves_a_loadable_checkpoint(tmp_path):
    from rlaux.envs import make_vec_env as rlaux_vec_env
    from rlaux.envs import resolve_env

    rng = random.Random(0)
    run = tmp_path / "k"
    args = ["--env", "MinAtar", "--aux", "reward_pred", "-n", "100000", "--n-envs", "2", "--save-freq", "64",
            "--keep-checkpoints", "2", "--save-replay", "-params", "n_steps=32", "batch_size=64", "n_epochs=1",
            "--no-progress", "-v", "0", "--device", "cpu"]
    steps_seen = []
    for round_ in range(4):
        argv = args + ["-f", str(tmp_path), "--run-name", "k"] if round_ == 0 else ["--resume", str(run)]
        start = len(ck.checkpoint_dirs(run)) and ck.checkpoint_dirs(run)[-1].name
        proc = cli_process(argv, tmp_path / "log.txt")
        deadline = time.time() + 60
        while time.time() < deadline and proc.is_alive():
            dirs = ck.checkpoint_dirs(run)
            if dirs and dirs[-1].name != start:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.join()
        assert proc.exitcode == -signal.SIGKILL, (tmp_path / "log.txt").read_text()
        path, state = ck.latest_checkpoint(run)
        venv = rlaux_vec_env(resolve_env("MinAtar"), n_envs=2, seed=0, vec_env="dummy")
        model = ck.load_checkpoint(path, venv, device="cpu", state=state)
        assert model.num_timesteps == state["num_timesteps"] and model.aux_replay.size > 0
        venv.close()
        steps_seen.append(state["num_timesteps"])
        assert len(ck.checkpoint_dirs(run)) <= 3  # pruned to 2 (+1 if killed between rename and prune)
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]


# --------------------------------------------------------------------------- numerical faults


class NaNTask(AuxTask):
    name = "nan_task"

    def replay_request(self):
        return ReplayRequest(seq_len=1, batch_size=4)

    def loss(self, policy, head, batch):
        return policy.encode(batch.obs[:, 0].float()).sum() * float("nan"), {}


def _recorded(model):
    seen = {}
    model.set_logger(Logger(folder=None, output_formats=[]))
    record = model.logger.record

    def spy(key, value, exclude=None):
        seen[key] = value
        record(key, value, exclude)

    model.logger.record = spy
    return seen


def test_nan_aux_loss_is_skipped_counted_logged_and_leaves_weights_and_adam_alone():
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = AuxPPO("MlpPolicy", env, aux_tasks=[NaNTask()], n_steps=64, batch_size=32, n_epochs=1, seed=0,
                   device="cpu", max_skipped_updates=0)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    seen = _recorded(model)
    model.learn(128)
    assert model.aux_objective.skipped_updates == 4  # 2 rollouts x 2 minibatches, all NaN
    assert seen["aux/skipped_updates"] == 4 and seen["train/skipped_updates"] == 4
    assert model.policy.optimizer.state_dict()["state"] == {}  # Adam never stepped
    for name, value in model.policy.state_dict().items():
        assert th.equal(value, before[name]), name


def test_plain_run_is_guarded_too(monkeypatch):
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = AuxA2C("MlpPolicy", env, n_steps=8, seed=0, device="cpu", max_skipped_updates=3)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}

    def nan_clip(parameters, *args, **kwargs):
        for p in parameters:
            if p.grad is not None:
                p.grad.fill_(float("nan"))

    monkeypatch.setattr(th.nn.utils, "clip_grad_norm_", nan_clip)
    with pytest.raises(NonFiniteUpdates, match="3 optimizer steps in a row"):
        model.learn(64)
    assert model.update_guard.skipped_updates == 3
    for name, value in model.policy.state_dict().items():
        assert th.equal(value, before[name]), name  # the last good weights


def test_run_stops_after_max_skipped_updates_with_a_checkpoint_of_good_weights(tmp_path, monkeypatch, capsys):
    from rlaux import tasks

    monkeypatch.setitem(tasks.TASKS, "nan_task", NaNTask)
    with pytest.raises(SystemExit) as exit_info:
        train(config(tmp_path, "nan", aux=["nan_task"], max_skipped_updates=2, save_freq=0))
    assert exit_info.value.code == 3
    assert "2 optimizer steps in a row" in capsys.readouterr().err
    path, state = ck.latest_checkpoint(tmp_path / "nan")
    assert state["reason"] == "non_finite" and state["skipped_updates"]["skipped_updates"] == 2
    model = AuxPPO.load(path / "model.zip", device="cpu")
    assert all(th.isfinite(v).all() for v in model.policy.state_dict().values() if v.is_floating_point())


# --------------------------------------------------------------------------- bad checkpoints


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    return train(config(tmp, "s", timesteps=256, save_freq=64))


def _copy_latest(run, tmp_path):
    path = ck.checkpoint_dirs(run)[-1]
    target = tmp_path / "run" / "checkpoints" / path.name
    shutil.copytree(path, target)
    return target


def test_truncated_checkpoint_is_named_and_the_previous_one_is_used(saved_run, tmp_path):
    target = _copy_latest(saved_run, tmp_path)
    model_zip = target / "model.zip"
    model_zip.write_bytes(model_zip.read_bytes()[:1000])
    with pytest.raises(ConfigError, match=r"model\.zip: truncated or changed"):
        ck.read_state(target)
    with pytest.raises(ConfigError, match="no valid checkpoint") as err:
        ck.latest_checkpoint(tmp_path / "run")
    assert str(model_zip) in str(err.value) and "\n" not in str(err.value)
    (target / "state.json").write_text((target / "state.json").read_text()[:50])
    with pytest.raises(ConfigError, match="state.json: unreadable or truncated"):
        ck.read_state(target)
    # With an older good one beside it, resume falls back to the older one.
    older = ck.checkpoint_dirs(saved_run)[-2]
    shutil.copytree(older, tmp_path / "run" / "checkpoints" / older.name)
    assert ck.latest_checkpoint(tmp_path / "run")[0].name == older.name


def test_checkpoint_of_another_version_or_env_is_refused(saved_run, tmp_path):
    target = _copy_latest(saved_run, tmp_path)
    state = json.loads((target / "state.json").read_text())
    from rlaux.envs import make_vec_env as rlaux_vec_env
    from rlaux.envs import resolve_env

    minatar = rlaux_vec_env(resolve_env("MinAtar"), n_envs=1, seed=0, vec_env="dummy")
    with pytest.raises(ConfigError, match=r"model\.zip: made for observation_space Box") as err:
        ck.load_checkpoint(target, minatar, device="cpu")
    assert "\n" not in str(err.value)
    minatar.close()
    (target / "state.json").write_text(json.dumps({**state, "format_version": 99, "rlaux_version": "9.0"}))
    with pytest.raises(ConfigError, match=f"format version 99 .*rlaux 9.0.*reads version {ck.FORMAT_VERSION}"):
        ck.read_state(target)


def test_resume_refuses_a_finished_run_and_a_non_run(saved_run, tmp_path):
    with pytest.raises(ConfigError, match="has finished"):
        resume(saved_run)
    with pytest.raises(ConfigError, match="no config.json"):
        resume(tmp_path)
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        train(config(saved_run.parent, saved_run.name))


# --------------------------------------------------------------------------- config validation


def test_every_config_problem_is_reported_at_once(tmp_path):
    bad = config(tmp_path, "x", timesteps=0, n_envs=0, aux=["nope", "reward_pred"], aux_weights={"reward_pred": -1},
                 hyperparams={"n_stepz": 64, "gamma": 2.0, "learning_rate": "fast"}, save_freq=-1, keep_checkpoints=-2)
    with pytest.raises(ConfigError) as err:
        train(bad)
    message = str(err.value)
    for needle in ("--timesteps must be a positive", "--n-envs must be at least 1", "unknown aux task 'nope'",
                   "--aux-weight reward_pred=-1: must be a finite number >= 0", "unknown hyperparameter 'n_stepz' for ppo",
                   "gamma=2.0 must be a number in [0, 1]", "learning_rate='fast' must be a positive number",
                   "--save-freq must be an integer >= 0", "--keep-checkpoints must be an integer >= 0"):
        assert needle in message, needle
    assert "\n" not in message and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(env="NoSuchEnv-v0"), "unknown env 'NoSuchEnv-v0'"),
        (dict(aux=["pixel_control"]), "needs image observations"),
        (dict(aux_weights={"reward_pred": 1.0}), "--aux-weight names 'reward_pred'"),
        (dict(agent="nope"), "unknown agent preset 'nope'"),
        (dict(vec_env="threads"), "--vec-env 'threads'"),
        (dict(device="tpu"), "--device 'tpu'"),
        (dict(max_skipped_updates=-1), "--max-skipped-updates must be an integer >= 0"),
        (dict(eval_episodes=0), "--eval-episodes must be an integer >= 1"),
        (dict(hyperparams={"seed": 3}), "set by a flag"),
        (dict(hyperparams={"batch_size": 0}), "batch_size=0 must be a positive integer"),
        (dict(hyperparams={"ent_coef": -0.1}), "ent_coef=-0.1 must be a number >= 0"),
        (dict(hyperparams={"clip_range": "lin_-1"}), "clip_range='lin_-1'"),
        (dict(hyperparams={"normalize_advantage": "yes"}), "normalize_advantage='yes' must be true or false"),
        (dict(hyperparams={"policy_kwargs": {"optimizer_class": "Nope"}}), "optimizer_class 'Nope'"),
        (dict(algo="a2c", hyperparams={"n_epochs": 4}), "unknown hyperparameter 'n_epochs' for a2c"),
    ],
)
def test_bad_configs_each_give_their_error(tmp_path, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        train(config(tmp_path, "x", **kwargs))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_lin_schedule_decays_linearly_from_its_value_to_zero():
    """``lin_0.5`` (rl-zoo3's notation) is ``progress_remaining * 0.5``: SB3's LinearSchedule to 0."""
    from rlaux.run import algorithm_kwargs

    kwargs = algorithm_kwargs({"learning_rate": "lin_0.5", "clip_range": "lin_2.5e-4", "clip_range_vf": 0.2})
    progress = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_allclose([kwargs["learning_rate"](p) for p in progress], progress * 0.5, rtol=1e-12, atol=0)
    np.testing.assert_allclose([kwargs["clip_range"](p) for p in progress], progress * 2.5e-4, rtol=1e-12, atol=0)
    assert kwargs["learning_rate"](1.0) == 0.5 and kwargs["learning_rate"](0.0) == 0.0
    assert kwargs["clip_range_vf"] == 0.2
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = AuxPPO("MlpPolicy", env, n_steps=32, batch_size=32, n_epochs=1, device="cpu", **kwargs)
    assert model.lr_schedule(0.3) == pytest.approx(0.15) and model.clip_range(0.3) == pytest.approx(0.3 * 2.5e-4)


def test_policy_kwargs_of_preset_and_hyperparameters_are_converted_together():
    from rlaux.networks import MinAtarCNN
    from rlaux.run import algorithm_kwargs

    kwargs = algorithm_kwargs({"policy_kwargs": {"optimizer_class": "RMSpropTFLike", "activation_fn": "tanh"}},
                              {"features_extractor": "minatar_cnn", "activation_fn": "relu"})
    policy_kwargs = kwargs["policy_kwargs"]
    assert policy_kwargs["features_extractor_class"] is MinAtarCNN and policy_kwargs["activation_fn"] is th.nn.Tanh
    assert policy_kwargs["optimizer_class"].__name__ == "RMSpropTFLike"
    with pytest.raises(ConfigError, match="unknown activation_fn 'nope'"):
        algorithm_kwargs({"policy_kwargs": {"activation_fn": "nope"}})
