"""Mean of the logged training scalars over the last 10% of each run, then the median over seeds,
per game and variant: the auxiliary metrics that help explain the study's scores.

    python docs/results/minatar-1m/aux_metrics.py RUNS_DIR [RUNS_DIR ...] > docs/results/minatar-1m/aux_metrics.csv
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

KEEP = ("train/grad_norm", "train/entropy_loss", "train/approx_kl", "train/explained_variance", "aux/grad_norm",
        "aux/clip_fraction")


def run_metrics(run_dir: Path) -> dict[str, float]:
    frame = pd.read_csv(run_dir / "progress.csv")
    tail = frame[frame["time/total_timesteps"] >= 0.9 * frame["time/total_timesteps"].max()]
    columns = [c for c in tail.columns if c in KEEP or (c.startswith("aux/") and c.count("/") == 2)]
    return {c: float(tail[c].mean()) for c in columns if tail[c].notna().any()}


def main() -> None:
    rows = []
    for root in sys.argv[1:]:
        for config in sorted(Path(root).rglob("config.json")):
            if not (config.parent / "progress.csv").exists():
                continue
            data = json.loads(config.read_text())
            rows.append({"game": data.get("game"), "variant": data.get("aux_label"), "seed": data.get("seed"),
                         **run_metrics(config.parent)})
    frame = pd.DataFrame(rows)
    summary = frame.drop(columns="seed").groupby(["game", "variant"]).median().reset_index()
    summary.to_csv(sys.stdout, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
