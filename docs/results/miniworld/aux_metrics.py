"""The logged training scalars of the maze study, in five windows of each run's steps (0-20%, ..., 80-100%):
the mean over each window, then the median over seeds, per variant. The auxiliary metrics that help
explain the scores: whether each task learns, and how hard it pulls on the shared encoder.

    python docs/results/miniworld/aux_metrics.py RUNS_DIR > docs/results/miniworld/aux_metrics.csv

``--per-run`` writes the windows of every run instead of the medians (a compact table to commit beside a
study's raw episodes, since run folders are not committed), and ``--from-table`` summarises such a table:

    python docs/results/miniworld/aux_metrics.py --per-run RUNS_DIR... > aux_metrics_runs.csv
    python docs/results/miniworld/aux_metrics.py --from-table aux_metrics_runs.csv > aux_metrics.csv

A variant is named as ``compare`` names it (the run's ``--label``, else its tasks). Only finished runs are read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from rlaux.compare.results import variant_label
from rlaux.run_folder import RunFolder

KEEP = ("rollout/ep_rew_mean", "train/explained_variance", "train/grad_norm", "train/entropy_loss",
        "train/approx_kl", "aux/grad_norm", "aux/clip_fraction")
WINDOWS = 5


def wanted(column: str) -> bool:
    return column in KEEP or (column.startswith("aux/") and column.count("/") == 2 and not column.endswith("/weight"))


def run_windows(run_dir: Path, timesteps: int) -> pd.DataFrame:
    frame = pd.read_csv(run_dir / "progress.csv")
    frame["window"] = (frame["time/total_timesteps"] * WINDOWS // (timesteps + 1)).clip(upper=WINDOWS - 1)
    columns = [c for c in frame.columns if wanted(c)]
    return frame.groupby("window")[columns].mean()


def per_run_windows(roots: list[str]) -> pd.DataFrame:
    """One row per (variant, seed, window) of every finished run under ``roots``; the variant is the name
    ``compare`` gives the run (its ``--label``, else its tasks), as in a study's episodes table."""
    rows = []
    for folder in RunFolder.find(roots):
        if not folder.finished or not folder.progress_csv.exists():
            continue
        record = folder.read()
        budget = int(record["timesteps"])
        for window, values in run_windows(folder.path, budget).iterrows():
            rows.append({"variant": variant_label(record), "algo": record["algo"], "seed": int(record["seed"]),
                         "steps_to": (window + 1) * budget // WINDOWS, **values.dropna().to_dict()})
    if not rows:
        sys.exit(f"aux_metrics: no finished run under {roots}")
    return pd.DataFrame(rows).sort_values(["variant", "seed", "steps_to"])


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Median over seeds per (variant, window), with the number of seeds."""
    seeds = frame.groupby(["variant", "steps_to"])["seed"].nunique().rename("seeds")
    metrics = frame.drop(columns=["seed", "algo"], errors="ignore")
    return metrics.groupby(["variant", "steps_to"]).median().join(seeds).reset_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", help="folders searched for finished runs (config.json + progress.csv)")
    parser.add_argument("--per-run", action="store_true", help="every run's windows, not the medians")
    parser.add_argument("--from-table", metavar="CSV", help="summarise a --per-run table instead of run folders")
    args = parser.parse_args(argv)
    if bool(args.roots) == bool(args.from_table):
        sys.exit("aux_metrics: give run folders or --from-table CSV, not both or neither")
    frame = pd.read_csv(args.from_table) if args.from_table else per_run_windows(args.roots)
    (frame if args.per_run else summary(frame)).to_csv(sys.stdout, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
