"""PNG figures (matplotlib, Agg backend): learning curves, aggregate intervals, performance profiles.

rliable's ``plot_utils`` draws all three; this module picks the fixed colours (one per
variant, the same in every figure), titles, legends and file names, and saves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rliable import plot_utils  # noqa: E402

from rlaux.compare.results import curve_matrix  # noqa: E402
from rlaux.compare.stats import (  # noqa: E402
    AGGREGATE_METRICS,
    DEFAULT_REPS,
    DEFAULT_SEED,
    columnwise_iqm,
    interval_estimates,
)


def variant_colors(variants: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One fixed colour per name (matplotlib tab10, in the given order)."""
    palette = plt.get_cmap("tab10").colors
    return {name: tuple(palette[i % len(palette)]) for i, name in enumerate(variants)}


def safe_file_name(name: str) -> str:
    """A file-name-safe version of an env or variant name ('MinAtar/Breakout' -> 'MinAtar_Breakout')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "unnamed"


def plot_learning_curves(
    curves: pd.DataFrame,
    out_dir: str | os.PathLike,
    colors: Mapping[str, tuple] | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
) -> dict[str, Path]:
    """One PNG per env: IQM across seeds of each variant with a pointwise 95% bootstrap band.

    Drawn by rliable's ``plot_sample_efficiency_curve`` (every variant of an env shares the
    env's step grid). Returns {env: path}. Files are named ``curves_<env>.png``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    variants = sorted(curves["variant"].unique())
    colors = dict(colors or variant_colors(variants))
    paths: dict[str, Path] = {}
    for env in sorted(curves["env"].unique()):
        points: dict[str, np.ndarray] = {}
        bands: dict[str, np.ndarray] = {}
        legend_colors: dict[str, tuple] = {}
        steps = None
        for variant in sorted(curves.loc[curves["env"] == env, "variant"].unique()):
            seeds, steps, matrix = curve_matrix(curves, env, variant)
            legend = f"{variant} (n={len(seeds)})"
            points[legend] = columnwise_iqm(matrix)
            _, ci = interval_estimates({"x": matrix}, columnwise_iqm, reps, seed)
            bands[legend] = ci["x"]
            legend_colors[legend] = colors.get(variant)
        fig, ax = plt.subplots(figsize=(6, 4))
        plot_utils.plot_sample_efficiency_curve(
            steps, points, bands, colors=legend_colors, xlabel="env steps", ylabel="episode return (IQM over seeds)",
            ax=ax, labelsize="medium", ticklabelsize="small", marker="", linewidth=1.5, grid_alpha=0.3,
        )
        ax.set_title(env)
        ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        path = out_dir / f"curves_{safe_file_name(env)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths[env] = path
    return paths


def _xlabel_y(rows: int, row_height: float = 0.37, bottom: float = 0.11, below_axes_in: float = 0.75) -> float:
    """Where rliable's figure-level x label goes (figure fraction): ``below_axes_in`` inches under the axes,
    clear of the tick labels whatever the number of rows (rliable's figure is ``row_height * rows`` tall
    and matplotlib's default bottom margin is ``bottom``)."""
    height = row_height * max(rows, 1)
    return (bottom * height - below_axes_in) / height


def plot_aggregate_intervals(
    point_estimates: Mapping[str, np.ndarray],
    interval_estimates_: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    metric_names: Sequence[str] = AGGREGATE_METRICS,
    colors: Mapping[str, tuple] | None = None,
    xlabel: str = "Normalised score",
) -> Path:
    """rliable's interval-estimates figure (one panel per metric, one row per variant/agent)."""
    names = list(point_estimates)
    colors = dict(colors or variant_colors(names))
    fig, _ = plot_utils.plot_interval_estimates(
        dict(point_estimates),
        dict(interval_estimates_),
        metric_names=list(metric_names),
        algorithms=names,
        colors=colors,
        xlabel=xlabel,
        xlabel_y_coordinate=_xlabel_y(len(names)),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_performance_profile(
    taus: np.ndarray,
    profiles: Mapping[str, np.ndarray],
    profile_cis: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    colors: Mapping[str, tuple] | None = None,
) -> Path:
    """Performance profiles: fraction of runs with normalised score > tau, with 95% CI bands."""
    colors = dict(colors or variant_colors(list(profiles)))
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_utils.plot_performance_profiles(
        dict(profiles),
        taus,
        performance_profile_cis=dict(profile_cis),
        colors=colors,
        xlabel=r"Normalised score ($\tau$)",
        ax=ax,
    )
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
