"""How fast a variant learns: steps to the baseline's final score (``sample_efficiency``) and steps to fixed
fractions of a reference score (``threshold_ladder``, which an early plateau cannot game)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from rlaux.compare.results import curve_matrix
from rlaux.compare.stats import Normaliser, columnwise_iqm, iqm


def steps_to_reach(steps: np.ndarray, curve: np.ndarray, target: float) -> float | None:
    """First step at which ``curve`` reaches ``target`` (linear interpolation), or None."""
    reached = np.flatnonzero(curve >= target)
    if reached.size == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return float(steps[0])
    x0, x1, y0, y1 = float(steps[i - 1]), float(steps[i]), float(curve[i - 1]), float(curve[i])
    return x0 + (target - y0) / (y1 - y0) * (x1 - x0)


def sample_efficiency(curves: pd.DataFrame, scores: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per env and variant: steps to reach the baseline's final IQM, and the ratio to the baseline's steps.

    Columns: env, variant, target, steps (NaN = not reached), baseline_steps, ratio (NaN = not reached).
    """
    rows = []
    for env in sorted(scores["env"].unique()):
        env_scores = scores[scores["env"] == env]
        if baseline not in set(env_scores["variant"]):
            continue
        column = "final_train" if "final_train" in env_scores else "final"  # training curves: training finals
        target = iqm(env_scores.loc[env_scores["variant"] == baseline, column].to_numpy())
        _, grid, base_matrix = curve_matrix(curves, env, baseline)
        base_steps = steps_to_reach(grid, columnwise_iqm(base_matrix), target)
        if base_steps is None:
            base_steps = float(grid[-1])
        for variant in sorted(env_scores["variant"].unique()):
            _, grid_v, matrix = curve_matrix(curves, env, variant)
            steps = steps_to_reach(grid_v, columnwise_iqm(matrix), target)
            if variant == baseline:
                steps = base_steps
            rows.append(
                {
                    "env": env,
                    "variant": variant,
                    "target": target,
                    "steps": np.nan if steps is None else steps,
                    "baseline_steps": base_steps,
                    "ratio": np.nan if steps is None else steps / base_steps,
                }
            )
    return pd.DataFrame(rows, columns=["env", "variant", "target", "steps", "baseline_steps", "ratio"])


#: Fractions of the way from an env's normalisation low to its high that the threshold ladder reads.
THRESHOLDS = (0.25, 0.5, 0.75, 0.9)


def threshold_ladder(curves: pd.DataFrame, norms: Mapping[str, Normaliser],
                     thresholds: Sequence[float] = THRESHOLDS) -> pd.DataFrame:
    """Steps to fixed fractions of a reference score, per env, variant and threshold.

    The target of fraction ``f`` is ``low + f * (high - low)`` of the env's :class:`Normaliser` (the
    published reference where there is one), the same for every variant, so a baseline that
    plateaus early gains nothing from it. ``steps``: the first env step at which the variant's
    IQM-over-seeds curve reaches the target (interpolated; NaN: never); ``runs_reaching`` of
    ``runs``: how many of its runs' own curves reach it.
    """
    rows = []
    for env in sorted(curves["env"].unique()):
        norm = norms[env]
        for variant in sorted(curves.loc[curves["env"] == env, "variant"].unique()):
            _, grid, matrix = curve_matrix(curves, env, variant)
            iqm_curve = columnwise_iqm(matrix)
            for f in thresholds:
                target = norm.low + f * (norm.high - norm.low)
                steps = steps_to_reach(grid, iqm_curve, target)
                reaching = sum(steps_to_reach(grid, row, target) is not None for row in matrix)
                rows.append({"env": env, "variant": variant, "threshold": f, "target": target,
                             "steps": np.nan if steps is None else steps, "runs_reaching": reaching,
                             "runs": len(matrix), "method": norm.method})
    return pd.DataFrame(rows, columns=["env", "variant", "threshold", "target", "steps", "runs_reaching", "runs",
                                       "method"])


__all__ = ["THRESHOLDS", "sample_efficiency", "steps_to_reach", "threshold_ladder"]
