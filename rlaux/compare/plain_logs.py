"""Runs in plain files: a study's compact raw data (``episodes.csv.gz``, written beside every report, from
which ``compare --from`` rebuilds it) and other tools' per-run logs (``manifest.csv``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rlaux.compare.runs import ENV_STEP_AXIS, FINISHED_STEPS_AXIS, Run, split_algorithm

#: A study's compact raw data (``episodes.csv.gz``, written beside every report): one row per finished episode.
EPISODE_COLUMNS = ["env", "env_id", "variant", "seed", "budget", "step", "return"]
#: Optional per-run columns (the same on every row of a run): what the run logged it spent, where it did.
COMPUTE_COLUMNS = ["wall_seconds", "optimizer_steps"]
#: Optional per-run column, written where some run recorded it: the code it trained with (``4d027d3``).
CODE_COLUMN = "code"
#: Per-run column, written where some run's steps are env steps (:attr:`Run.step_axis`). Tables without it were
#: written before rlaux logged each episode's env step: their steps are SB3's ts2xy sums of finished lengths.
STEP_AXIS_COLUMN = "step_axis"
EPISODES_FILES = ("episodes.csv.gz", "episodes.csv")
#: Per-run logs of other tools: a folder with ``manifest.csv`` naming each run's CSV (see :func:`read_manifest`).
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("file", "env", "variant", "seed", "budget")


def write_episodes(runs: Sequence[Run], path: str | os.PathLike) -> Path:
    """Every episode of ``runs`` as one long table (:data:`EPISODE_COLUMNS`; gzip if the name ends in .gz):
    what a report is computed from, so that ``compare --from`` rebuilds it without the run folders."""
    frames = [pd.DataFrame({"env": run.env, "env_id": str(run.config.get("env_id") or run.family),
                            "variant": run.variant, "seed": run.seed, "budget": run.budget,
                            "step": run.episode_steps, "return": run.episode_returns,
                            "wall_seconds": run.wall_seconds, "optimizer_steps": run.optimizer_steps,
                            CODE_COLUMN: run.code, STEP_AXIS_COLUMN: run.step_axis})
              for run in runs]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EPISODE_COLUMNS + COMPUTE_COLUMNS)
    columns = (EPISODE_COLUMNS + COMPUTE_COLUMNS + ([CODE_COLUMN] if any(run.code for run in runs) else [])
               + ([STEP_AXIS_COLUMN] if any(run.step_axis == ENV_STEP_AXIS for run in runs) else []))
    path = Path(path)
    # full precision: a rebuilt report is byte-identical
    # gzip without a timestamp, so that rebuilding a report from its own data leaves the file byte for byte
    compression = {"method": "gzip", "mtime": 0} if path.name.endswith(".gz") else None
    frame[columns].to_csv(path, index=False, compression=compression)
    return path


def _plain_run(source: Path, env: str, env_id: str, variant: str, seed: int, budget: int,
               steps: np.ndarray, returns: np.ndarray, algo: str | None = None) -> Run:
    family, _, game = env.partition("/")
    order = np.argsort(steps, kind="stable")
    config = {"env": family, "game": game or None, "env_id": env_id, "seed": seed, "timesteps": budget, "algo": algo}
    return Run(run_dir=source, env=env, family=family, game=game or None, variant=variant, seed=seed, budget=budget,
               episode_steps=np.asarray(steps, dtype=np.int64)[order],
               episode_returns=np.asarray(returns, dtype=np.float64)[order], config=config, finished=True,
               algo=algo or "")


def read_episodes_table(path: str | os.PathLike) -> list[Run]:
    """The runs of a study's ``episodes.csv[.gz]`` (:func:`write_episodes`); ValueError naming what is wrong."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, float_precision="round_trip")
    except Exception as error:  # noqa: BLE001 - pandas/gzip errors: say which file
        raise ValueError(f"unreadable ({type(error).__name__}: {error})") from error
    missing = [c for c in EPISODE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"lacks columns {', '.join(missing)} (has {', '.join(map(str, frame.columns))})")
    runs = []
    for (env, env_id, variant, seed), part in frame.groupby(["env", "env_id", "variant", "seed"], sort=True):
        budgets = part["budget"].unique()
        if len(budgets) != 1:
            raise ValueError(f"run {env} {variant} seed {seed} has several budgets {sorted(budgets)}")
        # A report over several algorithms wrote "ppg:none": read it back as ppg's "none", so that it joins run
        # folders of the same study (and is prefixed again where the runs read mix algorithms).
        algo, label = split_algorithm(str(variant))
        run = _plain_run(path.parent / f"{path.name}:{env}:{variant}:s{seed}", str(env), str(env_id), label,
                         int(seed), int(budgets[0]), part["step"].to_numpy(), part["return"].to_numpy(dtype=float),
                         algo=algo)
        if "wall_seconds" in part and part["wall_seconds"].notna().any():
            run.wall_seconds = float(part["wall_seconds"].dropna().iloc[0])
        if "optimizer_steps" in part and part["optimizer_steps"].notna().any():
            run.optimizer_steps = int(part["optimizer_steps"].dropna().iloc[0])
        if CODE_COLUMN in part and part[CODE_COLUMN].notna().any():
            run.code = str(part[CODE_COLUMN].dropna().iloc[0])
        axes = part[STEP_AXIS_COLUMN].dropna().unique() if STEP_AXIS_COLUMN in part else [FINISHED_STEPS_AXIS]
        if len(axes) != 1 or axes[0] not in (ENV_STEP_AXIS, FINISHED_STEPS_AXIS):
            raise ValueError(f"run {env} {variant} seed {seed} has step_axis {list(axes)} (one of "
                             f"{ENV_STEP_AXIS!r}, {FINISHED_STEPS_AXIS!r} per run)")
        run.step_axis = str(axes[0])
        runs.append(run)
    return runs


def read_manifest(path: str | os.PathLike) -> list[Run]:
    """Runs logged by other tools (CleanRL, SB3, published per-seed logs), in a documented plain form.

    ``manifest.csv`` has one row per run with columns ``file`` (its CSV, relative to the manifest; .gz
    allowed), ``env``, ``variant``, ``seed``, ``budget`` (env steps), and optionally ``return_column``
    (default ``return``), ``step_column`` (default ``step``: the env step at which each episode ended) or
    ``steps_per_row`` (each row then ends ``steps_per_row`` env steps after the one before, for logs of a
    fixed interval), and ``env_id`` (for Atari human-normalisation, e.g. ``ALE/Breakout-v5``).
    """
    path = Path(path)
    manifest = pd.read_csv(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise ValueError(f"lacks columns {', '.join(missing)} (a manifest needs {', '.join(MANIFEST_COLUMNS)})")
    runs = []
    for row in manifest.to_dict("records"):
        log = path.parent / str(row["file"])
        frame = pd.read_csv(log)
        return_column = str(row.get("return_column") if isinstance(row.get("return_column"), str) else "return")
        if return_column not in frame.columns:
            raise ValueError(f"{log.name} has no return column {return_column!r} (has {', '.join(frame.columns)}); "
                             "name it in the manifest's return_column")
        per_row = row.get("steps_per_row")
        if isinstance(per_row, (int, float)) and per_row == per_row:  # given, not NaN
            steps = (np.arange(len(frame)) + 1) * int(per_row)
        else:
            step_column = str(row.get("step_column") if isinstance(row.get("step_column"), str) else "step")
            if step_column not in frame.columns:
                raise ValueError(f"{log.name} has no step column {step_column!r} (has {', '.join(frame.columns)}); "
                                 "name it in step_column, or give steps_per_row")
            steps = frame[step_column].to_numpy()
        returns = frame[return_column].to_numpy(dtype=float)
        keep = np.isfinite(returns)
        env_id = row.get("env_id") if isinstance(row.get("env_id"), str) else str(row["env"])
        runs.append(_plain_run(log, str(row["env"]), env_id, str(row["variant"]), int(row["seed"]),
                               int(row["budget"]), steps[keep], returns[keep]))
    return runs


def find_plain_logs(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Every ``episodes.csv[.gz]`` and ``manifest.csv`` under ``roots`` (recursively; a root may be one)."""
    found: set[Path] = set()
    names = (*EPISODES_FILES, MANIFEST)
    for root in roots:
        root = Path(root)
        if root.is_file() and root.name in names:
            found.add(root.resolve())
        elif root.is_dir():
            for name in names:
                found.update(p.resolve() for p in root.rglob(name))
    return sorted(found)



__all__ = ["COMPUTE_COLUMNS", "EPISODES_FILES", "EPISODE_COLUMNS", "MANIFEST", "MANIFEST_COLUMNS", "find_plain_logs", "read_episodes_table",
           "read_manifest", "write_episodes"]
