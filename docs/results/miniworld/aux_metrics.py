"""The logged training scalars of the maze study, in five windows of each run's steps (0-20%, ..., 80-100%):
the mean over each window, then the median over seeds, per variant. The auxiliary metrics that help
explain the scores: whether each task learns, and how hard it pulls on the shared encoder.

    python docs/results/miniworld/aux_metrics.py RUNS_DIR > docs/results/miniworld/aux_metrics.csv

A variant is ``algo:label``, as ``compare`` names it (``label`` is the run's ``--label``, else its
``--aux`` name). Only finished runs are read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

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


def main() -> None:
    rows = []
    for root in sys.argv[1:]:
        for config_path in sorted(Path(root).rglob("config.json")):
            run_dir = config_path.parent
            config = json.loads(config_path.read_text())
            progress = run_dir / "progress.csv"
            if not progress.exists():
                continue
            steps = pd.read_csv(progress, usecols=["time/total_timesteps"])["time/total_timesteps"].max()
            if steps < config["timesteps"]:
                continue  # unfinished
            label = config.get("label") or run_dir.name.split("__")[1]
            windows = run_windows(run_dir, config["timesteps"])
            for window, values in windows.iterrows():
                end = (window + 1) * config["timesteps"] // WINDOWS
                rows.append({"variant": f"{config['algo']}:{label}", "steps_to": end, "seed": config["seed"],
                             **values.dropna().to_dict()})
    frame = pd.DataFrame(rows)
    seeds = frame.groupby(["variant", "steps_to"])["seed"].nunique().rename("seeds")
    summary = frame.drop(columns="seed").groupby(["variant", "steps_to"]).median().join(seeds).reset_index()
    summary.to_csv(sys.stdout, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
