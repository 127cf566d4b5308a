"""Reading training runs into learning curves.

A run folder holds ``config.json``, ``monitor/<rank>.monitor.csv`` (SB3 Monitor files) and
``episode_steps.csv``; ``final_model.zip`` marks a finished run. Each episode is placed at the env step
at which it ended (SB3's ``num_timesteps``), read from ``episode_steps.csv``. Runs without that file (rlaux
before it was written), or whose file does not hold every Monitor episode (a run begun before it and resumed
after), are placed with SB3's own readers (``load_results`` + ``ts2xy``): the summed lengths of the episodes
finished so far, over all envs in wall-time order. That axis trails the env step by the steps of the episodes
still running (at most ``n_envs`` episodes), so those curves sit a little early; such runs are marked
(:attr:`Run.step_axis`) and a report over them says so (:func:`step_axis_notes`).

Decisions (documented here, relied on by :mod:`rlaux.compare.stats`):

* A run is keyed by (env, variant, seed). ``env`` is ``"<env>/<game>"`` when the
  config names a game (``"MinAtar/Breakout"``), else the config's ``env``. ``variant`` is the
  run's ``aux_label``; when the runs read together mix algorithms (the configs' ``algo``), it
  is ``"<algo>:<aux_label>"`` for every run (``"ppo_lstm:none"``, ``"ppo:reward_pred"``), so
  that ``ppo`` and ``ppo_lstm`` runs of one task set are two variants, not duplicates. Runs of
  one algorithm keep the bare label (reports of a single algorithm read as before).
* Unreadable runs (bad ``config.json``, corrupt Monitor csv, no finished episode)
  and unfinished runs (no ``final_model.zip``; kept with ``include_unfinished``)
  are left out and named in :attr:`LoadedRuns.warnings`, never silently.
  A second folder with the same (env, variant, seed) is left out the same way.
* Every env must have one budget (``timesteps`` in the config). Different budgets
  raise :class:`~rlaux.errors.ConfigError` naming them, unless
  ``truncate=True``: then every run of that env is cut to the shortest budget
  (episodes ending after it are dropped) and a warning says so.
* Curves are resampled onto ``n_points`` evenly spaced steps
  ``budget/n_points, ..., budget``; the value at step s is the mean return of the
  last ``window`` episodes that ended at or before s. Grid points before the first
  finished episode take the first episode's return (back-filled).
* ``evaluations.npz`` (SB3 EvalCallback, written with ``--eval-freq``), when a run
  folder has one, is read into :attr:`Run.eval_steps` / :attr:`Run.eval_returns`
  (the mean return of each evaluation); an unreadable one is ignored with a warning.
  Training curves never use it; :func:`rlaux.compare.stats.run_scores` takes the
  last evaluation as the final score when asked (``final_from_eval``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import rlaux.tasks
from rlaux.compare.plain_logs import (
    MANIFEST,
    find_plain_logs,
    read_episodes_table,
    read_manifest,
)
from rlaux.compare.runs import ENV_STEP_AXIS, FINISHED_STEPS_AXIS, LoadedRuns, Run, short_dir, with_algorithm
from rlaux.errors import ConfigError
from rlaux.provenance import code_label
from rlaux.run_folder import RunFolder, RunRecord, read_episode_steps

#: What a step on :data:`FINISHED_STEPS_AXIS` is, as reports say it.
FINISHED_STEPS_MEANING = (
    "the summed lengths of the episodes finished before it (SB3's ts2xy over Monitor files), not at the env step it "
    "ended at: that axis trails the env step by the steps of the episodes still running (at most n_envs episodes), "
    "so those curves sit a little early")

#: Finished episodes averaged into each point of a learning curve (``compare --curve-window``).
DEFAULT_CURVE_WINDOW = 10

CURVE_COLUMNS = ["env", "variant", "seed", "step", "return"]


def find_run_dirs(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Every folder under ``roots`` (recursively, roots included) holding ``config.json``."""
    return [folder.path for folder in RunFolder.find(roots)]


def variant_label(config: Mapping[str, Any] | RunRecord) -> str:
    """The variant name of a run: its ``aux_label``, else :func:`rlaux.tasks.variant_label` of its ``aux`` list."""
    label = config.get("aux_label")
    if label:
        return str(label)
    return rlaux.tasks.variant_label(config.get("aux"))


def env_label(config: Mapping[str, Any] | RunRecord) -> str:
    """``"<env>/<game>"`` when the run has a game, else ``"<env>"`` (or the env id)."""
    env = config.get("env") or config.get("env_id")
    if not env:
        raise ValueError("config.json names no 'env' nor 'env_id'")
    game = config.get("game")
    return f"{env}/{game}" if game else str(env)


def read_run(run_dir: str | os.PathLike) -> Run:
    """Read one run folder; raise ``ValueError`` (or a reader's error) with the reason if it cannot."""
    from stable_baselines3.common.monitor import load_results
    from stable_baselines3.common.results_plotter import ts2xy

    folder = RunFolder(run_dir)
    run_dir = folder.path
    try:
        config = folder.read()
    except ConfigError as error:
        raise ValueError(str(error)) from None
    for key in ("seed", "timesteps"):
        if key not in config:
            raise ValueError(f"config.json lacks {key!r}")
    monitor_dir = folder.monitor_dir
    if not monitor_dir.is_dir():
        raise ValueError("no monitor/ folder")
    try:
        frame = load_results(str(monitor_dir))
    except AssertionError as error:  # load_results asserts the '#{json}' first line
        raise ValueError("corrupt Monitor csv (first line is not '#{...}')") from error
    except Exception as error:  # pandas/json errors: the message says what is wrong
        raise ValueError(f"corrupt Monitor csv ({type(error).__name__}: {error})") from error
    if len(frame) == 0:
        raise ValueError("no finished episode in the Monitor files")
    if not {"r", "l", "t"} <= set(frame.columns):
        raise ValueError(f"Monitor csv lacks columns r,l,t (has {list(frame.columns)})")
    stamped = _episode_steps(folder, n_episodes=len(frame))
    if stamped is not None:
        (steps, returns), axis = stamped, ENV_STEP_AXIS
    else:
        try:
            steps, returns = ts2xy(frame, "timesteps")
            steps = np.asarray(steps, dtype=np.int64)
            returns = np.asarray(returns, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"corrupt Monitor csv (non-numeric values: {error})") from error
        axis = FINISHED_STEPS_AXIS
    if not np.all(np.isfinite(returns)):
        raise ValueError("corrupt Monitor csv (non-finite returns)")
    eval_steps, eval_returns, eval_warning = read_evaluations(run_dir)
    wall_seconds, optimizer_steps = read_compute(run_dir)
    code = code_label(config.code)
    return Run(
        run_dir=run_dir,
        env=env_label(config),
        family=str(config.get("env") or config.get("env_id")),
        game=config.get("game"),
        variant=variant_label(config),
        seed=int(config["seed"]),
        budget=int(config["timesteps"]),
        episode_steps=steps,
        episode_returns=returns,
        config=config,
        finished=folder.finished,
        eval_steps=eval_steps,
        eval_returns=eval_returns,
        eval_warning=eval_warning,
        algo=str(config.get("algo") or ""),
        wall_seconds=wall_seconds,
        optimizer_steps=optimizer_steps,
        code=code,
        step_axis=axis,
    )


def _episode_steps(folder: RunFolder, n_episodes: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(env step, return) of every episode from ``episode_steps.csv``; None where the run has none, or where
    it does not hold the ``n_episodes`` episodes of the Monitor files (begun at older code, resumed at this)."""
    if not folder.episode_steps_csv.is_file():
        return None
    steps, _, returns = read_episode_steps(folder.episode_steps_csv)
    return (steps, returns) if len(steps) == n_episodes else None


def read_compute(run_dir: Path) -> tuple[float | None, int | None]:
    """(wall seconds, optimizer steps) of the training kept in ``progress.csv``; Nones where not logged.
    SB3 restarts ``time/time_elapsed`` at each resume (the log is cut back to the checkpoint first), so the
    wall time is the sum, over the segments that each drop of the clock starts, of each segment's last value:
    the time of the steps the run kept, not of work lost after its last checkpoint."""
    path = RunFolder(run_dir).progress_csv
    try:
        frame = pd.read_csv(path, usecols=lambda c: c in ("time/time_elapsed", "train/n_updates"))
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None, None
    clock = frame["time/time_elapsed"].dropna() if "time/time_elapsed" in frame else pd.Series(dtype=float)
    wall = float(clock[clock.shift(-1, fill_value=-np.inf) < clock].sum()) if len(clock) else None
    updates = frame["train/n_updates"].dropna() if "train/n_updates" in frame else pd.Series(dtype=float)
    return wall, (int(updates.iloc[-1]) if len(updates) else None)


def read_evaluations(run_dir: Path) -> tuple[np.ndarray | None, np.ndarray | None, str | None]:
    """(steps, mean return per evaluation, warning) from ``evaluations.npz``; Nones if absent."""
    path = run_dir / "evaluations.npz"
    if not path.is_file():
        return None, None, None
    try:
        with np.load(path) as data:
            steps = np.asarray(data["timesteps"], dtype=np.int64).reshape(-1)
            results = np.asarray(data["results"], dtype=np.float64)
        means = results.reshape(len(steps), -1).mean(axis=1)
        if len(steps) == 0 or not np.all(np.isfinite(means)):
            raise ValueError("empty or non-finite")
    except Exception as error:  # noqa: BLE001 - any reader failure: say so, use the training episodes
        return None, None, f"{short_dir(run_dir)}: evaluations.npz unreadable ({error}); training episodes used instead"
    return steps, means, None


def _adopt_the_only_algorithm(untagged: dict[Path, list[Run]], algos: set[str]) -> list[str]:
    """A report over one algorithm writes its variants without it (``none``, not ``a2c:none``). Read back beside
    runs that all name one algorithm (the study's next run folders), such a table's runs take that algorithm, so
    that they join them rather than stand apart as another algorithm's; a note per table says so."""
    if len(algos) != 1:
        return []
    algo = next(iter(algos))
    notes = []
    for log, runs in untagged.items():
        for run in runs:
            run.algo = algo
        if runs:
            notes.append(f"{short_dir(log)}: {len(runs)} run(s) name no algorithm (written by a report over one); "
                         f"taken as {algo}, the algorithm of every other run read")
    return notes


def load_runs(
    roots: Iterable[str | os.PathLike],
    *,
    truncate: bool = False,
    include_unfinished: bool = False,
) -> LoadedRuns:
    """Read every run under ``roots``; see the module docstring for what is left out and why."""
    roots = list(roots)
    read: list[tuple[Path, Run | Exception]] = []
    for run_dir in find_run_dirs(r for r in roots if not Path(r).is_file()):
        try:
            read.append((run_dir, read_run(run_dir)))
        except Exception as error:  # any reader failure: name the run, leave it out
            read.append((run_dir, error))
    folder_runs = [r for _, r in read if isinstance(r, Run)]
    keys, keys_with_algo = {r.key for r in folder_runs}, {(r.algo, *r.key) for r in folder_runs}

    def in_folders(run: Run) -> bool:
        """A table's run is a folder's where env, variant and seed match, and the algorithm where the table names one."""
        return (run.algo, *run.key) in keys_with_algo if run.algo else run.key in keys

    plain_notes: list[str] = []
    untagged: dict[Path, list[Run]] = {}  # an episodes table's runs that name no algorithm, by table
    for log in find_plain_logs(roots):
        try:
            plain = read_manifest(log) if log.name == MANIFEST else read_episodes_table(log)
        except Exception as error:  # noqa: BLE001 - name the file, leave it out
            read.append((log, ValueError(f"{error}")))
            continue
        shadowed = [r for r in plain if in_folders(r)]
        if shadowed:
            plain_notes.append(f"{short_dir(log)}: {len(shadowed)} run(s) also found as run folders; the run folders "
                               "were read")
        fresh = [r for r in plain if not in_folders(r)]
        read.extend((r.run_dir, r) for r in fresh)
        if log.name != MANIFEST:
            untagged[log] = [r for r in fresh if not r.algo]
    plain_notes += _adopt_the_only_algorithm(untagged, {r.algo for _, r in read if isinstance(r, Run) and r.algo})
    kept = [r for _, r in read if isinstance(r, Run) and (r.finished or include_unfinished)]
    mixed = len({r.algo for r in kept}) > 1
    runs: list[Run] = []
    warnings: list[str] = []
    seen: dict[tuple[str, str, int], Path] = {}
    for run_dir, run in read:
        if not isinstance(run, Run):
            warnings.append(f"{short_dir(run_dir)}: left out, {run}")
            continue
        if mixed:
            run.variant = with_algorithm(run.algo, run.variant)
        if not run.finished and not include_unfinished:
            warnings.append(
                f"{short_dir(run_dir)}: left out, unfinished (no final_model.zip; "
                f"last episode at step {int(run.episode_steps[-1])} of {run.budget})"
            )
            continue
        if run.key in seen:
            warnings.append(f"{short_dir(run_dir)}: left out, duplicate of {short_dir(seen[run.key])} {run.key}")
            continue
        seen[run.key] = run_dir
        if run.eval_warning:
            warnings.append(run.eval_warning)
        runs.append(run)
    _check_budgets(runs, warnings, truncate)
    return LoadedRuns(runs=runs, warnings=warnings + plain_notes + code_notes(runs) + step_axis_notes(runs))


def code_notes(runs: Sequence[Run]) -> list[str]:
    """One line naming the code the runs trained with, where any recorded it: so that a report over runs of
    several commits says so (runs of one command at two commits are two experiments). [] where none did."""
    counts = Counter(run.code for run in runs)
    if not any(counts):
        return []
    if len(counts) == 1:
        return [f"every run trained with the same code: {next(iter(counts))}"]
    named = [f"{code} ({n} run{'s' if n > 1 else ''})" for code, n in sorted(counts.items(), key=lambda c: -c[1])
             if code is not None]
    if None in counts:
        named.append(f"not recorded ({counts[None]} run{'s' if counts[None] > 1 else ''})")
    return ["the runs do not all come from one recorded version of the code, so differences between them may "
            "come from the code as well as from the variants: " + ", ".join(named)]


def step_axis_notes(runs: Sequence[Run]) -> list[str]:
    """One line where some runs place episodes on the summed lengths of finished episodes (SB3's ``ts2xy``)
    rather than the env step: what that axis is, how far it can trail, and whether the report mixes the two."""
    finished = [run for run in runs if run.step_axis == FINISHED_STEPS_AXIS]
    if not finished:
        return []
    which = "every run places" if len(finished) == len(runs) else f"{len(finished)} of {len(runs)} runs place"
    note = (f"{which} each episode at {FINISHED_STEPS_MEANING}; runs trained before rlaux wrote episode_steps.csv "
            "are read so")
    if len(finished) < len(runs):
        note += ("; the other runs are on the env-step axis, so beside them these look faster by that much "
                 "(compare runs trained at one version of rlaux)")
    return [note]


def _check_budgets(runs: list[Run], warnings: list[str], truncate: bool) -> None:
    by_env: dict[str, list[Run]] = {}
    for run in runs:
        by_env.setdefault(run.env, []).append(run)
    for env, env_runs in by_env.items():
        budgets = sorted({run.budget for run in env_runs})
        if len(budgets) == 1:
            continue
        if not truncate:
            detail = "; ".join(f"{b}: {', '.join(r.run_dir.name for r in env_runs if r.budget == b)}" for b in budgets)
            raise ConfigError(
                f"runs of {env} have different lengths (timesteps {detail}); "
                "compare runs of one length, or truncate to the shortest (truncate=True / --truncate)"
            )
        shortest = budgets[0]
        for run in env_runs:
            keep = run.episode_steps <= shortest
            run.episode_steps, run.episode_returns = run.episode_steps[keep], run.episode_returns[keep]
            if run.eval_steps is not None:
                kept = run.eval_steps <= shortest
                run.eval_steps, run.eval_returns = run.eval_steps[kept], run.eval_returns[kept]
            run.budget = shortest
        warnings.append(f"{env}: runs of timesteps {budgets} truncated to the shortest, {shortest}")
    for run in list(runs):
        if len(run.episode_steps) == 0:
            warnings.append(f"{short_dir(run.run_dir)}: left out, no episode ends within {run.budget} steps")
            runs.remove(run)


def step_grid(budget: int, n_points: int = 50) -> np.ndarray:
    """``n_points`` evenly spaced env steps ``budget/n_points, ..., budget`` (integers)."""
    return np.rint(np.linspace(budget / n_points, budget, n_points)).astype(np.int64)


def resample_curve(
    episode_steps: np.ndarray, episode_returns: np.ndarray, grid: np.ndarray, window: int = DEFAULT_CURVE_WINDOW
) -> np.ndarray:
    """Mean return of the last ``window`` episodes ended at or before each grid step (back-filled)."""
    if len(episode_steps) == 0:
        raise ValueError("no episodes to resample")
    cumulative = np.concatenate([[0.0], np.cumsum(episode_returns)])
    ended = np.searchsorted(episode_steps, grid, side="right")  # episodes ended at or before step
    ended = np.maximum(ended, 1)  # back-fill: before the first episode end, use that episode
    start = np.maximum(ended - window, 0)
    return (cumulative[ended] - cumulative[start]) / (ended - start)


def curves_frame(runs: Sequence[Run], n_points: int = 50, window: int = DEFAULT_CURVE_WINDOW) -> pd.DataFrame:
    """Tidy frame ``env,variant,seed,step,return`` of every run resampled onto its env's grid."""
    rows = []
    for run in runs:
        grid = step_grid(run.budget, n_points)
        values = resample_curve(run.episode_steps, run.episode_returns, grid, window)
        rows.append(
            pd.DataFrame({"env": run.env, "variant": run.variant, "seed": run.seed, "step": grid, "return": values})
        )
    if not rows:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    frame = pd.concat(rows, ignore_index=True)
    return frame.sort_values(["env", "variant", "seed", "step"], kind="stable").reset_index(drop=True)


def write_curves_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the tidy curves frame as CSV (columns ``env,variant,seed,step,return``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[CURVE_COLUMNS].to_csv(path, index=False)
    return path


def curve_matrix(frame: pd.DataFrame, env: str, variant: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(seeds, grid steps, returns [n_seeds, n_points]) of one env and variant."""
    part = frame[(frame["env"] == env) & (frame["variant"] == variant)]
    table = part.pivot(index="seed", columns="step", values="return").sort_index()
    return table.index.to_numpy(), table.columns.to_numpy(), table.to_numpy(dtype=float)
