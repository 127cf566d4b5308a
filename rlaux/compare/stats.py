"""Aggregate statistics with ``rliable`` (Agarwal et al. 2021) and sample efficiency.

Definitions (the report repeats them):

* **final score** of a run: the mean return of its episodes that end in the last
  10% of training (steps in ``(0.9 * budget, budget]``); if none ends there, the
  mean of its last 10 episodes. With ``final_from_eval`` (the Atari 100k suite),
  the mean return of its last evaluation (``evaluations.npz``) instead, where that
  evaluation lies in the last 10% of training.
* **AUC score** of a run: its learning curve (:func:`rlaux.compare.results.resample_curve`)
  averaged over the evenly spaced step grid, i.e. area under the curve / budget.
* Per env: the interquartile mean (IQM) over seeds, with a 95% stratified
  bootstrap confidence interval (percentile method, ``reps`` resamples).
* Across envs: normalised scores. Atari: human-normalised,
  ``(score - random) / (human - random)`` from the shipped dopamine table. Other
  envs: ``(score - low) / (high - low)`` with ``(low, high)`` given explicitly
  (``score_ranges``), else ``score_range`` in the runs' ``config.json``, else the
  min and max of all learning-curve values of that env in the sweep.
* **Threshold ladder** (:func:`threshold_ladder`): env steps to 25/50/75/90% of the way from
  each env's normalisation low to its high, the same fixed targets for every variant.
* **Sample efficiency** (plateau-sensitive): target = the baseline's final-score IQM. For each
  variant, ``steps`` = the first env step at which its IQM-over-seeds learning
  curve reaches the target (linear interpolation between grid points); "not
  reached" if it never does. The baseline's own steps are found the same way; if
  its curve never reaches its final IQM (noise at the plateau) its steps are the
  budget. ``ratio = steps_variant / steps_baseline`` (< 1: fewer steps needed).

Reproducibility: rliable draws its bootstrap from numpy's global RNG (its
``random_state`` argument does not make it reproducible), so every bootstrap
here runs inside :func:`seeded_global_rng`, which seeds that RNG and restores
its previous state afterwards: the same runs always give the same intervals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats
from rliable import library as rly
from rliable import metrics

from rlaux.compare.references import (
    ATARI100K_AGENTS,
    REFERENCES,
    atari100k_matrices,
    atari100k_normalised_scores,
    atari_human_random,
    game_key,
    is_atari,
)
from rlaux.compare.results import Run
from rlaux.errors import ConfigError

DEFAULT_REPS = 2000
DEFAULT_SEED = 0
FINAL_FRACTION = 0.1
AGGREGATE_METRICS = ("Median", "IQM", "Mean", "Optimality Gap")
@contextlib.contextmanager
def seeded_global_rng(seed: int = DEFAULT_SEED) -> Iterator[None]:
    """Seed numpy's global RNG for the block and restore its previous state after."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def iqm(values: np.ndarray) -> float:
    """Interquartile mean of all values (rliable's ``aggregate_iqm``)."""
    return float(metrics.aggregate_iqm(np.asarray(values, dtype=float)))


def columnwise_iqm(matrix: np.ndarray) -> np.ndarray:
    """IQM over rows of each column ([n_runs, n_points] -> [n_points])."""
    return scipy.stats.trim_mean(np.asarray(matrix, dtype=float), proportiontocut=0.25, axis=0)


def interval_estimates(
    score_dict: Mapping[str, Any],
    func: Callable[..., np.ndarray],
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``rly.get_interval_estimates`` (95%, stratified bootstrap), reproducible for a given seed."""
    with seeded_global_rng(seed):
        return rly.get_interval_estimates(score_dict, func, reps=reps)


# ---------------------------------------------------------------- per-run scores


def final_score(run: Run, fraction: float = FINAL_FRACTION, fallback_episodes: int = 10) -> float:
    """Mean return of the episodes ending in the last ``fraction`` of training (see module doc)."""
    late = run.episode_steps > (1.0 - fraction) * run.budget
    if late.any():
        return float(run.episode_returns[late].mean())
    return float(run.episode_returns[-fallback_episodes:].mean())


def final_eval_score(run: Run, fraction: float = FINAL_FRACTION) -> float | None:
    """Mean return of the run's last evaluation (``evaluations.npz``) if it is in the last
    ``fraction`` of training, else None."""
    if run.eval_steps is None or run.eval_returns is None or len(run.eval_steps) == 0:
        return None
    if run.eval_steps[-1] <= (1.0 - fraction) * run.budget:
        return None
    return float(run.eval_returns[-1])


def run_scores(runs: Sequence[Run], curves: pd.DataFrame, final_from_eval: bool = False) -> pd.DataFrame:
    """One row per run: env, family, game, variant, seed, budget, final, auc, final_train, final_eval, final_source.

    ``final`` is ``final_train`` (training episodes, :func:`final_score`), or with
    ``final_from_eval`` the run's final evaluation (:func:`final_eval_score`) where it has
    one (``final_source`` says which). Sample efficiency always uses ``final_train``.
    """
    auc = curves.groupby(["env", "variant", "seed"])["return"].mean()
    rows = []
    for run in runs:
        train_final = final_score(run)
        eval_final = final_eval_score(run)
        use_eval = final_from_eval and eval_final is not None
        rows.append(
            {
                "env": run.env,
                "family": run.family,
                "game": run.game,
                "variant": run.variant,
                "seed": run.seed,
                "budget": run.budget,
                "final": eval_final if use_eval else train_final,
                "auc": float(auc[(run.env, run.variant, run.seed)]),
                "final_train": train_final,
                "final_eval": np.nan if eval_final is None else eval_final,
                "final_source": "evaluation" if use_eval else "training episodes",
            }
        )
    columns = ["env", "family", "game", "variant", "seed", "budget", "final", "auc",
               "final_train", "final_eval", "final_source"]
    return pd.DataFrame(rows, columns=columns).sort_values(["env", "variant", "seed"]).reset_index(drop=True)


def per_env_intervals(scores: pd.DataFrame, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """IQM over seeds of ``final`` and ``auc`` per (env, variant), with 95% bootstrap CIs and the runs' range
    (``*_min``, ``*_max``), which a report shows instead below ``significance.MIN_RUNS_FOR_CI`` runs."""
    rows = []
    for (env, variant), part in scores.groupby(["env", "variant"], sort=True):
        row: dict[str, Any] = {"env": env, "variant": variant, "n_seeds": len(part)}
        for column in ("final", "auc"):
            values = part[column].to_numpy(dtype=float)[:, None]
            point, ci = interval_estimates({"x": values}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps, seed)
            row[f"{column}_iqm"] = float(point["x"][0])
            row[f"{column}_low"], row[f"{column}_high"] = float(ci["x"][0, 0]), float(ci["x"][1, 0])
            row[f"{column}_min"], row[f"{column}_max"] = float(values.min()), float(values.max())
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- normalisation


@dataclass
class Normaliser:
    """How one env's scores are normalised: ``(score - low) / (high - low)``."""

    low: float
    high: float
    method: str  # "human-normalised", "reference range", "sweep range"

    def __call__(self, values: np.ndarray | float) -> np.ndarray | float:
        span = self.high - self.low
        return (np.asarray(values, dtype=float) - self.low) / (span if span != 0 else 1.0)


def normalisers(
    runs: Sequence[Run],
    curves: pd.DataFrame,
    score_ranges: Mapping[str, tuple[float, float]] | None = None,
) -> dict[str, Normaliser]:
    """One :class:`Normaliser` per env (see the module doc for the order of choices)."""
    human_random = atari_human_random()
    result: dict[str, Normaliser] = {}
    for run in runs:
        if run.env in result:
            continue
        config_range = run.config.get("score_range") or run.config.get("reference_range")
        key = game_key(run.game or str(run.config.get("env_id", "")))
        if score_ranges and run.env in score_ranges:
            low, high = score_ranges[run.env]
            result[run.env] = Normaliser(float(low), float(high), "reference range")
        elif is_atari(run.family, run.config) and key in human_random:
            low, high = human_random[key]
            result[run.env] = Normaliser(low, high, "human-normalised")
        elif config_range:
            result[run.env] = Normaliser(float(config_range[0]), float(config_range[1]), "reference range")
        else:
            values = curves.loc[curves["env"] == run.env, "return"]
            finals = [final_score(r) for r in runs if r.env == run.env]
            low = float(min(values.min(), min(finals)))
            high = float(max(values.max(), max(finals)))
            result[run.env] = Normaliser(low, high, "sweep range")
    return result


def table_normalisers(scores: pd.DataFrame, curves: pd.DataFrame,
                      score_ranges: Mapping[str, tuple[float, float]] | None = None) -> dict[str, Normaliser]:
    """:func:`normalisers` for a study kept as tables (scores.csv, curves.csv): ``score_ranges``, else
    human-normalised Atari, else the range of the env's curve points and final scores."""
    human_random = atari_human_random()
    result: dict[str, Normaliser] = {}
    for env, part in scores.groupby("env", sort=True):
        family = str(part["family"].iloc[0])
        game = part["game"].iloc[0]
        key = game_key(str(game) if isinstance(game, str) else env)
        if score_ranges and env in score_ranges:
            low, high = score_ranges[env]
            result[env] = Normaliser(float(low), float(high), "reference range")
        elif is_atari(family) and key in human_random:
            low, high = human_random[key]
            result[env] = Normaliser(low, high, "human-normalised")
        else:
            values = curves.loc[curves["env"] == env, "return"]
            result[env] = Normaliser(float(min(values.min(), part["final"].min())),
                                     float(max(values.max(), part["final"].max())), "sweep range")
    return result


def normalise(scores: pd.DataFrame, norms: Mapping[str, Normaliser]) -> pd.DataFrame:
    """Copy of ``scores`` with ``final_norm`` and ``auc_norm`` added."""
    out = scores.copy()
    for column in ("final", "auc"):
        out[f"{column}_norm"] = [norms[env](value) for env, value in zip(out["env"], out[column], strict=True)]
    return out


def score_matrices(
    scores: pd.DataFrame, column: str, variants: Sequence[str] | None = None
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """{variant: [n_seeds, n_envs]} over the envs every variant has, and the seeds all those envs have.

    Returns (matrices, envs, warnings); the warnings name envs or seeds left out to make
    the matrices rectangular, as rliable needs.
    """
    variants = list(variants) if variants is not None else sorted(scores["variant"].unique())
    warnings: list[str] = []
    env_sets = [set(scores.loc[scores["variant"] == v, "env"]) for v in variants]
    envs = sorted(set.intersection(*env_sets)) if env_sets else []
    left_out = sorted(set(scores["env"]) - set(envs))
    if left_out:
        warnings.append(f"aggregate leaves out envs not run with every variant: {', '.join(left_out)}")
    matrices: dict[str, np.ndarray] = {}
    for variant in variants:
        part = scores[(scores["variant"] == variant) & scores["env"].isin(envs)]
        table = part.pivot(index="seed", columns="env", values=column).reindex(columns=envs)
        complete = table.dropna()
        if len(complete) < len(table):
            dropped = sorted(set(table.index) - set(complete.index))
            warnings.append(f"aggregate of {variant} leaves out seeds {dropped} (missing in some envs)")
        matrices[variant] = complete.to_numpy(dtype=float)
    return matrices, envs, warnings


# ---------------------------------------------------------------- aggregates


def _aggregate_func(x: np.ndarray) -> np.ndarray:
    return np.array(
        [
            metrics.aggregate_median(x),
            metrics.aggregate_iqm(x),
            metrics.aggregate_mean(x),
            metrics.aggregate_optimality_gap(x),
        ]
    )


def aggregate_intervals(
    matrices: Mapping[str, np.ndarray], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Median, IQM, Mean, Optimality Gap (:data:`AGGREGATE_METRICS`) with 95% CIs per variant."""
    return interval_estimates(dict(matrices), _aggregate_func, reps, seed)


def iqm_intervals(
    matrices: Mapping[str, np.ndarray], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED
) -> dict[str, tuple[float, float, float]]:
    """{name: (IQM, low, high)} of each [n_runs, n_tasks] matrix."""
    point, ci = interval_estimates(dict(matrices), lambda x: np.array([metrics.aggregate_iqm(x)]), reps, seed)
    return {name: (float(point[name][0]), float(ci[name][0, 0]), float(ci[name][1, 0])) for name in matrices}


def performance_profiles(
    matrices: Mapping[str, np.ndarray],
    taus: np.ndarray | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(taus, profiles, 95% CIs): fraction of runs with normalised score > tau."""
    if taus is None:
        stacked = np.concatenate([m.ravel() for m in matrices.values()])
        high = max(1.0, float(np.nanmax(stacked))) if stacked.size else 1.0
        taus = np.linspace(min(0.0, float(np.nanmin(stacked))) if stacked.size else 0.0, high, 81)
    with seeded_global_rng(seed):
        profiles, cis = rly.create_performance_profile(dict(matrices), taus, reps=reps)
    return taus, profiles, cis


def probability_of_improvement(
    matrices: Mapping[str, np.ndarray],
    baseline: str,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
) -> dict[str, tuple[float, float, float]]:
    """{variant: (P(variant > baseline), low, high)} averaged over envs, 95% CIs, for every variant."""
    if baseline not in matrices:
        raise ConfigError(f"baseline {baseline!r} has no runs; variants: {', '.join(sorted(matrices))}")
    pairs = {v: (m, matrices[baseline]) for v, m in matrices.items() if v != baseline}
    if not pairs:
        return {}
    point, ci = interval_estimates(pairs, lambda x, y: np.array([metrics.probability_of_improvement(x, y)]), reps, seed)
    return {v: (float(point[v][0]), float(ci[v][0, 0]), float(ci[v][1, 0])) for v in pairs}


def aggregate_ranges(matrices: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """For few runs: each :data:`AGGREGATE_METRICS` over all runs x envs, and the range (lowest, highest) of
    the same metric computed on each run row (seed) alone; shaped as :func:`aggregate_intervals`'s results."""
    point = {v: _aggregate_func(m) for v, m in matrices.items()}
    spread = {}
    for v, m in matrices.items():
        per_row = np.stack([_aggregate_func(row[None, :]) for row in m])
        spread[v] = np.stack([per_row.min(axis=0), per_row.max(axis=0)])
    return point, spread


__all__ = ["AGGREGATE_METRICS", "ATARI100K_AGENTS", "DEFAULT_REPS", "DEFAULT_SEED", "FINAL_FRACTION", "REFERENCES",
           "Normaliser", "aggregate_intervals", "aggregate_ranges", "atari100k_matrices",
           "atari100k_normalised_scores", "atari_human_random", "columnwise_iqm", "final_eval_score", "final_score",
           "game_key", "interval_estimates", "iqm", "iqm_intervals", "is_atari", "normalise", "normalisers",
           "per_env_intervals", "performance_profiles", "probability_of_improvement", "run_scores",
           "score_matrices", "seeded_global_rng", "table_normalisers"]
