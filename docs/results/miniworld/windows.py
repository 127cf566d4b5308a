"""Per-run scores in windows of training, with each variant's exact test against fixed comparators.

The study's *slow start* is a question about the first 100k env steps, which a final score and an AUC over
the whole run both hide. This script reads the committed raw episodes (``write_episodes``'s table) and
scores each run by the mean return of the episodes that end inside a window of env steps (a run with no
episode there is left out, and the table says so by its seed count). For each comparison ``VARIANT:OTHER``
it gives the probability of improvement over all run pairs and its exact two-sided permutation p-value
(``rlaux.compare.significance.exact_test``), Holm-adjusted over every comparison the command makes.

    python docs/results/miniworld/windows.py docs/results/miniworld/runs-48adb0f/episodes.csv.gz \
        --windows 0:100000,400000:500000 --compare pc0.0125:none,pc0.0125:unreal

Output: CSV on stdout, one row per (window, comparison), with both variants' per-seed scores.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from rlaux.compare.significance import exact_test, holm
from rlaux.compare.stats import iqm


def window_scores(episodes: pd.DataFrame, start: int, end: int) -> pd.Series:
    """Mean return per (variant, seed) of the episodes with ``start < step <= end``."""
    inside = episodes[(episodes["step"] > start) & (episodes["step"] <= end)]
    return inside.groupby(["variant", "seed"])["return"].mean()


def parse_pairs(text: str, flag: str, kind: type = str) -> list[tuple]:
    """``a:b,c:d`` -> [(a, b), (c, d)]; exits with a one-line error on a malformed item."""
    pairs = []
    for item in text.split(","):
        parts = item.rsplit(":", 1)
        if len(parts) != 2 or not all(parts):
            sys.exit(f"windows: {flag} item {item!r} is not A:B")
        try:
            pairs.append((kind(parts[0]), kind(parts[1])))
        except ValueError:
            sys.exit(f"windows: {flag} item {item!r} is not two {kind.__name__}s joined by ':'")
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("episodes", help="an episodes.csv.gz written by compare / write_episodes")
    parser.add_argument("--windows", required=True, help="comma list of START:END env steps")
    parser.add_argument("--compare", required=True, help="comma list of VARIANT:OTHER (the variant names of the table)")
    args = parser.parse_args(argv)
    episodes = pd.read_csv(args.episodes)
    windows = parse_pairs(args.windows, "--windows", int)
    comparisons = parse_pairs(args.compare, "--compare")
    variants = set(episodes["variant"])
    unknown = sorted({v for pair in comparisons for v in pair} - variants)
    if unknown:
        sys.exit(f"windows: unknown variant(s) {unknown}; the table has {sorted(variants)}")
    rows = []
    for start, end in windows:
        scores = window_scores(episodes, start, end)
        for variant, other in comparisons:
            x, y = scores.get(variant, pd.Series(dtype=float)), scores.get(other, pd.Series(dtype=float))
            if len(x) == 0 or len(y) == 0:
                sys.exit(f"windows: no episodes of {variant!r} or {other!r} end in {start}:{end}")
            probability, p, exact = exact_test(x.to_numpy(), y.to_numpy())
            rows.append({
                "window": f"{start}:{end}", "variant": variant, "other": other,
                "runs": len(x), "other_runs": len(y),
                "iqm": iqm(x.to_numpy()), "other_iqm": iqm(y.to_numpy()),
                "min": x.min(), "max": x.max(), "other_min": y.min(), "other_max": y.max(),
                "p_improvement": probability, "p_value": p, "exact": exact,
                "seeds": " ".join(f"{s}:{v:.3f}" for s, v in x.items()),
                "other_seeds": " ".join(f"{s}:{v:.3f}" for s, v in y.items()),
            })
    frame = pd.DataFrame(rows)
    keys = [f"{r.window}|{r.variant}|{r.other}" for r in frame.itertuples()]
    adjusted = holm(dict(zip(keys, frame["p_value"])))
    frame["p_holm"] = [adjusted[k] for k in keys]
    frame["comparisons"] = len(frame)
    frame.to_csv(sys.stdout, index=False, float_format="%.4g")


if __name__ == "__main__":
    main()
