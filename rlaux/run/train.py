"""Training a run, and continuing one that stopped.

A run folder holds everything about one run::

    <log_dir>/<run_name>/
        config.json          every resolved preset value and flag (enough to repeat the run)
        monitor/*.csv        SB3 Monitor files: episode returns before any reward clipping
        episode_steps.csv    the env step at which each of those episodes ended (``rlaux.run_folder``)
        progress.csv, events.out.tfevents.*   SB3's logger (stdout, csv, tensorboard)
        final_model.zip      written atomically when the run finishes
        wandb_run.json       with --track: the W&B run that tracks it (see ``rlaux.run.tracking``)
        checkpoints/         with --save-freq, and on SIGINT/SIGTERM: see ``rlaux.run.checkpoint``

``python train_agent.py --resume <run_dir>`` continues a run from its newest valid
checkpoint: the run's own ``config.json`` says what to run (only ``--device``,
``--no-progress`` and ``--verbose`` may be given with it), the step counter goes on,
and the same progress.csv, TensorBoard run, Monitor files and episode_steps.csv are continued (what was
logged after the checkpoint is cut, so no step is logged twice and none is missing).
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import VecEnv

from rlaux.algorithms import ALGORITHMS, AuxAlgorithmMixin, evaluation_reward_feeder
from rlaux.envs import make_vec_env
from rlaux.errors import ConfigError
from rlaux.files import atomic_save, check_writable_folder
from rlaux.objective import NonFiniteUpdates
from rlaux.provenance import code_history, code_version
from rlaux.run.checkpoint import PeriodicCheckpoint, latest_checkpoint, load_checkpoint
from rlaux.run.config import RESUME_OVERRIDES, ResolvedRun, RunConfig, check_flags, load_run, resolve
from rlaux.run.env_state import rewind_monitor_files
from rlaux.run.logs import EpisodeStepLog, make_logger
from rlaux.run.model import build_model
from rlaux.run.signals import Abort, StopOnSignal, signal_name
from rlaux.run.tracking import Tracking, require_wandb, tracked
from rlaux.run_folder import CONFIG_FILE, rewind_episode_steps


def train(config: RunConfig, tracking: Tracking | None = None) -> Path:
    """Train one run as configured; returns the run folder.

    SIGINT/SIGTERM: the current rollout and update finish, a checkpoint is written and the
    process exits with 130/143 (``SystemExit``) after printing how to resume.
    ``tracking``: also track the run on W&B (:mod:`rlaux.run.tracking`).
    """
    _set_threads()
    check_writable_folder(config.log_dir, "--log-dir")  # first: an unwritable folder wastes nothing then
    if tracking is not None:
        require_wandb()  # before anything is written
    run = resolve(config)
    if run.folder.checkpoint_dirs():
        raise ConfigError(f"run folder {run.run_dir} already holds checkpoints of a run: continue it with "
                          f"--resume {run.run_dir}, or choose another --run-name")
    try:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--log-dir {config.log_dir}: cannot make the run folder {run.run_dir} "
                          f"({type(err).__name__}: {err.strerror or err}); give a writable folder") from None
    _say_rounding(run)
    run.folder.write(run.record())
    with tracked(run, tracking):  # before the TensorBoard writer, which W&B then syncs
        env = _make_env(run)
        try:
            model = build_model(run, env)
        except BaseException:
            env.close()
            raise
        model.set_logger(_make_logger(run, None))
        return _learn(run, model, env, run.timesteps, reset_num_timesteps=True)


def resume(run_dir: str | os.PathLike, tracking: Tracking | None = None, restart: bool = False,
           **overrides: Any) -> Path:
    """Continue the run in ``run_dir`` from its newest valid checkpoint (see the module docstring).

    ``overrides``: only ``device``, ``progress_bar`` and ``verbose``. ``tracking``: track it on W&B
    (the W&B run that tracked it before, if it was in the same project). ``restart``: train the run
    again from step 0 with the settings of its config.json, for a run stopped before its first
    checkpoint; what it had written moves to ``attempt-<k>/`` inside the folder (nothing is deleted).
    """
    _set_threads()
    if tracking is not None:
        require_wandb()
    bad = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if bad:
        raise ConfigError(f"--resume takes the run's settings from its config.json; only --device, --no-progress and "
                          f"--verbose may be given with it, not {', '.join('--' + b.replace('_', '-') for b in bad)}")
    run = load_run(run_dir)
    for key, value in overrides.items():
        setattr(run.config, key, value)
    problems = check_flags(run.config)
    if problems:
        raise ConfigError(f"{run.folder.config_file}: " + "; ".join(problems))
    if run.folder.finished:
        raise ConfigError(f"run {run.run_dir} has finished (final_model.zip is there): nothing to resume")
    if restart:
        return _restart(run, tracking)
    if not run.folder.checkpoint_dirs():
        raise ConfigError(f"run {run.run_dir} has no checkpoint: it stopped before its first one, so nothing can be "
                          f"resumed; start it again from step 0 with: python train_agent.py --resume {run.run_dir} "
                          "--restart (its logs so far move to attempt-<k>/ inside it)")
    path, state = latest_checkpoint(run.run_dir)
    step = int(state["num_timesteps"])
    _record_resumed_code(run, step)
    rewind_monitor_files(run.folder.monitor_dir, state.get("monitor_rows", {}), step)
    rewind_episode_steps(run.folder.episode_steps_csv, step)
    with tracked(run, tracking):  # before the TensorBoard writer, which W&B then syncs
        env = _make_env(run)
        try:
            model = load_checkpoint(path, env, device=run.config.device, state=state, logger=_make_logger(run, step))
        except BaseException:
            env.close()
            raise
        model.continue_iteration_count()
        print(f"resuming {run.run_dir} from {path.name} at step {step} of {run.timesteps}", file=sys.stderr)
        return _learn(run, model, env, max(run.timesteps - step, 0), reset_num_timesteps=False)


def _record_resumed_code(run: ResolvedRun, step: int) -> None:
    """A run continued at other code than it last ran keeps both in config.json: ``code.resumed_with`` lists each
    change, with the step it took effect at (runs from before rlaux recorded its code are left as they are)."""
    record = run.folder.read()
    if not record.code:
        return
    now = code_version()
    last = code_history(record.code)[-1]
    if (last.get("commit"), last.get("dirty")) == (now["commit"], now["dirty"]):
        return
    resumed = [*record.code.get("resumed_with", []), {"step": step, **now}]
    run.folder.write(replace(record, code={**record.code, "resumed_with": resumed}))


def _restart(run: ResolvedRun, tracking: Tracking | None) -> Path:
    """``resume(..., restart=True)``: the run's outputs so far into ``attempt-<k>/``, then :func:`train` anew."""
    if run.folder.checkpoint_dirs():
        raise ConfigError(f"run {run.run_dir} has checkpoints: continue it with --resume {run.run_dir} "
                          "(without --restart), or start a new run with another --run-name")
    k = 1 + len(run.folder.attempts())
    attempt = run.run_dir / f"attempt-{k}"
    attempt.mkdir()
    for item in sorted(run.run_dir.iterdir()):
        if item.name not in (CONFIG_FILE, attempt.name) and not item.name.startswith("attempt-"):
            item.rename(attempt / item.name)
    shutil.copy2(run.folder.config_file, attempt / CONFIG_FILE)  # train() rewrites it once all is checked
    config = run.config
    config.log_dir, config.run_name = str(run.run_dir.parent), run.run_dir.name
    print(f"restarting {run.run_dir} from step 0 (what it had written: {attempt})", file=sys.stderr, flush=True)
    return train(config, tracking)


def _say_rounding(run: ResolvedRun) -> None:
    """SB3 trains whole rollouts of n_steps x n_envs env steps: say so when the budget is not a multiple."""
    n_steps = run.hyperparams.get("n_steps")
    if n_steps is None:
        n_steps = next(p.default for k in ALGORITHMS[run.algo].__mro__ if "__init__" in vars(k)
                       for p in [inspect.signature(k.__init__).parameters.get("n_steps")] if p is not None)
    rollout = int(n_steps) * run.n_envs
    if run.timesteps % rollout:
        trained = -(-run.timesteps // rollout) * rollout
        print(f"note: --timesteps {run.timesteps} is not a whole number of rollouts of n_steps {n_steps} x n_envs "
              f"{run.n_envs} = {rollout} env steps; SB3 trains whole rollouts, so this run trains {trained}",
              file=sys.stderr, flush=True)


def _close(env: VecEnv) -> None:
    """Close the envs; a worker that is gone already (killed from outside) is not an error of the run's:
    its checkpoint is written by then, and the exit code says how the run ended."""
    try:
        env.close()
    except (EOFError, BrokenPipeError, ConnectionError) as err:
        print(f"warning: an env worker had already ended when the envs were closed ({type(err).__name__})",
              file=sys.stderr, flush=True)


def _end_workers(env: VecEnv) -> None:
    """After a second stop signal: kill the env worker processes, without the close handshake. The signal may
    have cut a message on their pipes in half, and a close would then wait for ever; and the workers ignore
    stop signals, so at exit Python's own ending of its child processes would wait for them too."""
    processes = getattr(env.unwrapped, "processes", [])
    for process in processes:
        process.kill()
    for process in processes:
        process.join(10)


def _set_threads() -> None:
    if os.environ.get("TORCH_NUM_THREADS"):
        th.set_num_threads(int(os.environ["TORCH_NUM_THREADS"]))


def _make_env(run: ResolvedRun) -> VecEnv:
    return make_vec_env(run.env_spec, n_envs=run.n_envs, seed=run.config.seed, vec_env=run.config.vec_env,
                        training=True, monitor_dir=str(run.folder.monitor_dir))


def _make_logger(run: ResolvedRun, resume_step: int | None) -> Logger:
    config = run.config
    tensorboard_dir = Path(config.tensorboard_log) / run.run_dir.name if config.tensorboard_log else run.run_dir
    return make_logger(run.run_dir, verbose=config.verbose, tensorboard_dir=tensorboard_dir, resume_step=resume_step)


class EvalWithRewards(EvalCallback):
    """SB3's ``EvalCallback``; a policy with UNREAL's LSTM inputs also gets each step's reward."""

    def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        feed = evaluation_reward_feeder(self.model)
        if feed is not None:
            feed(locals_, globals_)
        super()._log_success_callback(locals_, globals_)


def _learn(run: ResolvedRun, model: AuxAlgorithmMixin, env: VecEnv, steps: int, reset_num_timesteps: bool) -> Path:
    """``model.learn`` with the run's callbacks; a signal or too many non-finite updates end it
    with a checkpoint and ``SystemExit``; a finished run saves ``final_model.zip``."""
    config = run.config
    saver = PeriodicCheckpoint(run.run_dir, config.save_freq, keep=config.keep_checkpoints,
                               save_replay=config.save_replay)
    callbacks: list[BaseCallback] = [saver, EpisodeStepLog(run.folder.episode_steps_csv)]
    if config.eval_freq:
        eval_env = make_vec_env(run.env_spec, n_envs=1, seed=config.seed + 10_000, vec_env="dummy", training=False)
        callbacks.append(EvalWithRewards(eval_env, n_eval_episodes=config.eval_episodes,
                                         eval_freq=max(config.eval_freq // run.n_envs, 1),
                                         deterministic=config.eval_deterministic,
                                         best_model_save_path=str(run.run_dir), log_path=str(run.run_dir), verbose=0))
    how = f"python train_agent.py --resume {run.run_dir}"
    aborted = False
    try:
        # The handler stays through the envs' closing: a second signal there quits at once, as anywhere else.
        with StopOnSignal(model) as stopper:
            try:
                model.learn(steps, callback=callbacks, progress_bar=config.progress_bar,
                            reset_num_timesteps=reset_num_timesteps)
                if stopper.signal is not None and model.num_timesteps < run.timesteps:
                    path = saver.save("signal")
                    print(f"stopped by {signal_name(stopper.signal)} at step {model.num_timesteps}: checkpoint "
                          f"{path}; resume with: {how}", file=sys.stderr, flush=True)
                    raise SystemExit(128 + stopper.signal)
            except NonFiniteUpdates as err:
                # Skipped updates never reach the weights: the current ones are the last good ones.
                path = saver.save("non_finite")
                print(f"error: {err}; checkpoint of the last good weights: {path} (resume with: {how}, after fixing "
                      "the cause, e.g. a lower learning rate or aux weight)", file=sys.stderr, flush=True)
                raise SystemExit(3) from None
            except Abort:
                aborted = True
                raise
            finally:
                if not aborted:
                    _close(env)
    except Abort as abort:
        _end_workers(env)
        last = run.folder.checkpoint_dirs()
        where = f"the last checkpoint ({last[-1].name}) is intact; resume with: {how}" if last else "no checkpoint was written"
        print(f"aborted by a second {signal_name(abort.signum)}: {where}", file=sys.stderr, flush=True)
        raise SystemExit(128 + abort.signum) from None
    atomic_save(model, run.folder.model_file("final"))
    return run.run_dir


__all__ = ["resume", "train"]
