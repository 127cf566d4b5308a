"""Exact tests for the comparisons a report makes, valid at the few seeds of RL studies.

A bootstrap interval over n runs cannot cover what it claims when n is small: a percentile
bootstrap over 3 runs never reaches past their min and max. So beside the probability of
improvement (rliable's P(X > Y), ties counted 1/2) a report gives an exact p-value:

* **per env**: the two-sided permutation test of P_e(X > Y) = U / (n m) (Mann-Whitney's U over all
  n x m run pairs), by enumerating every split of the pooled n + m runs into groups of n and m
  (exact under ties too; ``scipy.stats.permutation_test`` with every split; equal to the exact
  Mann-Whitney test where no runs tie).
* **aggregate** (the mean of P_e over envs, rliable's statistic): the stratified version, labels
  permuted within each env. Its exact null distribution is the convolution of the per-env ones,
  since envs are independent under the null.
* **Holm's step-down adjustment** of the p-values of one family of comparisons (all per-env
  comparisons of a report), so that a per-game claim states its multiplicity.

Two-sided: p = P(|S - 1/2| >= |s - 1/2|) under the null, S the statistic and s its observed value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.stats

#: Below this many runs of a variant (in an env, or in every env for an aggregate), a report shows
#: ranges (min to max over runs), not "95%" intervals: a bootstrap cannot give that coverage there.
MIN_RUNS_FOR_CI = 5
#: Enumerate every split up to this many per env; above it the null distribution is sampled.
MAX_EXACT_SPLITS = 200_000
MONTE_CARLO_SPLITS = 100_000
_DECIMALS = 12


def improvement_probability(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) over all run pairs, ties counted 1/2 (rliable's per-task statistic)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    greater = (x[:, None] > y[None, :]).sum() + 0.5 * (x[:, None] == y[None, :]).sum()
    return float(greater / (len(x) * len(y)))


def null_distribution(x: Sequence[float], y: Sequence[float], seed: int = 0) -> tuple[np.ndarray, np.ndarray, bool]:
    """The permutation distribution of :func:`improvement_probability` with the labels of the pooled
    runs exchanged (``scipy.stats.permutation_test``): (values, probabilities, exact). Every split of the
    n + m runs into groups of n and m when there are at most :data:`MAX_EXACT_SPLITS`, else
    :data:`MONTE_CARLO_SPLITS` random ones."""
    exact = math.comb(len(x) + len(y), len(x)) <= MAX_EXACT_SPLITS
    if min(len(x), len(y)) < 2:  # scipy wants two runs a group; one run against m: its m + 1 ranks
        pooled = np.concatenate([np.asarray(x, dtype=float), np.asarray(y, dtype=float)])
        single_x = len(x) == 1
        values = []
        for i in range(len(pooled)):
            one, rest = pooled[i:i + 1], np.delete(pooled, i)
            values.append(improvement_probability(one, rest) if single_x else improvement_probability(rest, one))
        unique, counts = np.unique(np.round(values, _DECIMALS), return_counts=True)
        return unique, counts / counts.sum(), True
    result = scipy.stats.permutation_test(
        (np.asarray(x, dtype=float), np.asarray(y, dtype=float)), improvement_probability,
        permutation_type="independent", vectorized=False,
        n_resamples=np.inf if exact else MONTE_CARLO_SPLITS, rng=np.random.default_rng(seed))
    unique, counts = np.unique(np.round(result.null_distribution, _DECIMALS), return_counts=True)
    return unique, counts / counts.sum(), exact


def _two_sided(values: np.ndarray, probs: np.ndarray, observed: float) -> float:
    distance = abs(observed - 0.5) - 10.0 ** -(_DECIMALS - 2)
    return float(min(1.0, probs[np.abs(values - 0.5) >= distance].sum()))


def exact_test(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, bool]:
    """(P(X > Y), two-sided p, exact) for one env (see the module doc)."""
    observed = improvement_probability(x, y)
    values, probs, exact = null_distribution(x, y)
    return observed, _two_sided(values, probs, observed), exact


def stratified_exact_test(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> tuple[float, float, bool]:
    """(mean over envs of P_e(X > Y), two-sided p, exact) with labels permuted within each env:
    ``pairs`` holds one (x runs, y runs) per env. The null distribution of the mean is the
    convolution of the per-env ones (independent under the null)."""
    if not pairs:
        raise ValueError("no env to test")
    observed = float(np.mean([improvement_probability(x, y) for x, y in pairs]))
    total: dict[float, float] = {0.0: 1.0}
    all_exact = True
    for x, y in pairs:
        values, probs, exact = null_distribution(x, y)
        all_exact &= exact
        merged: dict[float, float] = {}
        for s, p in total.items():
            for v, q in zip(values, probs):
                key = round(s + float(v), _DECIMALS - 2)
                merged[key] = merged.get(key, 0.0) + p * float(q)
        total = merged
    sums = np.fromiter(total, dtype=float)
    probs = np.fromiter(total.values(), dtype=float)
    return observed, _two_sided(sums / len(pairs), probs, observed), all_exact


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values of one family of comparisons (same keys)."""
    order = sorted(p_values, key=lambda k: p_values[k])
    m = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        adjusted[key] = running
    return adjusted


def enough_runs(*counts: int) -> bool:
    """True when every count reaches :data:`MIN_RUNS_FOR_CI` (a 95% bootstrap interval may be shown)."""
    return min(counts) >= MIN_RUNS_FOR_CI


def spread_note(smallest: int) -> str:
    """Why a report shows ranges instead of intervals, for the smallest run count it has."""
    return (f"With {smallest} run(s) per variant (fewer than {MIN_RUNS_FOR_CI}), intervals are shown as ranges "
            "(the lowest and highest run, or per-seed aggregate), not as bootstrap intervals: a percentile bootstrap "
            "over so few runs cannot reach past them and covers far less than it claims. The exact p-values stay "
            "valid.")


def verdict(p: float, probability: float, alpha: float = 0.05) -> str:
    """One word for a comparison: higher / lower (p < alpha) or level (no evidence either way)."""
    if p < alpha:
        return "higher" if probability > 0.5 else "lower"
    return "level"


__all__ = ["MIN_RUNS_FOR_CI", "enough_runs", "exact_test", "holm", "improvement_probability", "null_distribution",
           "spread_note", "stratified_exact_test", "verdict"]
