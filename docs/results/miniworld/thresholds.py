"""Env steps each variant takes to reach a ladder of fixed scores, from the study's curves.csv.

The report's sample-efficiency measure (steps to the baseline's *final* score) says little when the
baseline reaches its plateau early and stays there: any variant that learns more slowly at first looks
"slower", however far above the plateau it ends. This table asks the question at several levels instead,
on the same IQM-over-seeds curves and with the same interpolation as ``compare`` (``steps_to_reach``),
plus per seed, so a level one seed reaches early and another never is visible as such.

    python docs/results/miniworld/thresholds.py docs/results/miniworld/curves.csv \
        --baseline ppo_lstm:none --levels 0.3,0.35,0.4,0.45,0.5,0.55 > docs/results/miniworld/thresholds.csv
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from rlaux.compare.efficiency import steps_to_reach
from rlaux.compare.results import curve_matrix
from rlaux.compare.stats import columnwise_iqm


def steps_or_nan(grid: np.ndarray, curve: np.ndarray, level: float) -> float:
    """``steps_to_reach``, with NaN for never."""
    steps = steps_to_reach(grid, curve, level)
    return np.nan if steps is None else steps


def level_steps(curves: pd.DataFrame, env: str, variant: str, level: float) -> tuple[float, list[float]]:
    """(steps of the variant's IQM curve to ``level``, the same per seed); NaN where never reached."""
    _, grid, matrix = curve_matrix(curves, env, variant)
    return steps_or_nan(grid, columnwise_iqm(matrix), level), [steps_or_nan(grid, row, level) for row in matrix]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("curves", help="a compare curves.csv")
    parser.add_argument("--baseline", required=True, help="the variant the ratios divide by")
    parser.add_argument("--levels", default="0.3,0.4,0.5", help="comma-separated scores (raw return)")
    args = parser.parse_args(argv)
    curves = pd.read_csv(args.curves)
    levels = [float(x) for x in args.levels.split(",")]
    rows = []
    for env in sorted(curves["env"].unique()):
        variants = sorted(curves.loc[curves["env"] == env, "variant"].unique())
        if args.baseline not in variants:
            sys.exit(f"thresholds: baseline {args.baseline!r} is not in {args.curves} for {env}; have {variants}")
        for level in levels:
            base, _ = level_steps(curves, env, args.baseline, level)
            for variant in variants:
                steps, per_seed = level_steps(curves, env, variant, level)
                rows.append({
                    "env": env, "variant": variant, "level": level, "steps_iqm": steps,
                    "ratio_to_baseline": steps / base if np.isfinite(base) else np.nan,
                    "steps_per_seed": " ".join("never" if np.isnan(s) else f"{s:.0f}" for s in per_seed),
                })
    pd.DataFrame(rows).to_csv(sys.stdout, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
