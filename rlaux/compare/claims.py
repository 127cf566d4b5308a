"""What a report may claim, and the checks before it: each variant against the baseline with exact p-values and
Holm's adjustment (``comparisons``), one verdict line per variant, the compute each variant spent, how the
aggregate moves with the normalisation; the study tables an old report is rebuilt from, and the seed check."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rlaux.compare import significance, stats
from rlaux.compare.markdown import fmt, interval, p_value, table
from rlaux.errors import ConfigError


def run_counts(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> str:
    """``5 vs 5``, or per env where the counts differ between envs: ``1-5 vs 1-5``."""
    def span(counts: list[int]) -> str:
        return str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
    return f"{span([len(x) for x, _ in pairs])} vs {span([len(y) for _, y in pairs])}"


def comparisons(scores: pd.DataFrame, baseline: str, column: str = "final") -> dict[str, object]:
    """Every variant against ``baseline`` on ``column``: the stratified exact test over the envs both have
    (``aggregate``: {variant: {...}}, Holm-adjusted over the variants) and one exact test per env
    (``per_env``: a list, Holm-adjusted over all of them); see :mod:`rlaux.compare.significance`."""
    variants = [v for v in dict.fromkeys(scores["variant"]) if v != baseline]
    per_env: list[dict[str, object]] = []
    aggregate: dict[str, dict[str, object]] = {}
    for variant in variants:
        pairs = []
        for env in sorted(set(scores.loc[scores["variant"] == variant, "env"])):
            x = scores.loc[(scores["env"] == env) & (scores["variant"] == variant), column].to_numpy(dtype=float)
            y = scores.loc[(scores["env"] == env) & (scores["variant"] == baseline), column].to_numpy(dtype=float)
            if len(x) and len(y):
                pairs.append((x, y))
                prob, p, exact = significance.exact_test(x, y)
                per_env.append({"env": env, "variant": variant, "runs": len(x), "baseline_runs": len(y),
                                "p_improvement": prob, "p": p, "exact": exact})
        if pairs:
            prob, p, exact = significance.stratified_exact_test(pairs)
            aggregate[variant] = {"runs": min(len(x) for x, _ in pairs), "baseline_runs": min(len(y) for _, y in pairs),
                                  "counts": run_counts(pairs),
                                  "envs": len(pairs), "p_improvement": prob, "p": p, "exact": exact}
    for family in (per_env, list(aggregate.values())):
        adjusted = significance.holm({str(i): float(t["p"]) for i, t in enumerate(family)})
        for i, t in enumerate(family):
            t["p_holm"] = adjusted[str(i)]
            t["verdict"] = significance.verdict(float(t["p_holm"]), float(t["p_improvement"]))
    return {"aggregate": aggregate, "per_env": per_env}


def verdict_lines(scores: pd.DataFrame, baseline: str, reps: int = stats.DEFAULT_REPS,
                  seed: int = stats.DEFAULT_SEED) -> list[str]:
    """One line per variant against ``baseline``: P(improvement) with its exact and Holm-adjusted p-values and
    run counts, the verdict, and the aggregate IQM of the normalised final score with its 95% CI (5+ runs)
    or range (fewer). ``scores``: a report's scores.csv."""
    tests = comparisons(scores, baseline)["aggregate"]
    variants = [baseline, *tests]
    matrices, envs, _ = stats.score_matrices(scores, "final_norm", variants)
    matrices = {v: m for v, m in matrices.items() if m.size}
    few = not matrices or not significance.enough_runs(*(m.shape[0] for m in matrices.values()))
    if few:
        point, spread = stats.aggregate_ranges(matrices)
        iqms = {v: (point[v][1], spread[v][0, 1], spread[v][1, 1]) for v in matrices}
    else:
        iqms = stats.iqm_intervals(matrices, reps, seed)
    kind = "ranges over seeds" if few else "95% CIs"
    lines = []
    for v in variants:
        agg = (f"aggregate IQM {interval(*iqms[v], ranged=few)}" if v in iqms else "no aggregate (envs differ)")
        if v == baseline:
            lines.append(f"{v} (baseline): {agg}")
            continue
        t = tests[v]
        lines.append(f"{v} vs {baseline}: {t['verdict']}; P({v} > {baseline}) = {fmt(t['p_improvement'])}, exact p = "
                     f"{p_value(t['p'], t['exact'])} (Holm over {len(tests)}: {p_value(t['p_holm'], True)}), "
                     f"{t['counts']} runs x {t['envs']} env(s); {agg}")
    if few and matrices:
        lines.append(f"(fewer than {significance.MIN_RUNS_FOR_CI} runs a variant: {kind}, not bootstrap intervals; "
                     "the exact p-values hold at any count)")
    return lines


def compute_section(runs: Sequence, variants: Sequence[str]) -> list[str]:
    """What each variant spent, as its runs logged it: SB3's update count and wall time (medians over runs), so
    that a compute-matched control is described by what it matches and what it does not."""
    rows = []
    for variant in variants:
        mine = [r for r in runs if r.variant == variant]
        steps = [r.optimizer_steps for r in mine if r.optimizer_steps is not None]
        walls = [r.wall_seconds for r in mine if r.wall_seconds is not None]
        budget = np.median([r.budget for r in mine])
        rows.append([variant, len(mine), f"{np.median(steps):,.0f}" if steps else "not logged",
                     f"{np.median(walls):,.0f}" if walls else "not logged",
                     f"{budget / np.median(walls):,.0f}" if walls and np.median(walls) > 0 else "n/a"])
    return ["## Compute spent (as logged by the runs)", "",
            "Median over each variant's runs of SB3's update count (`train/n_updates`) and wall seconds "
            "(`time/time_elapsed`; a resumed run's segments summed, since SB3 restarts the clock) at the last "
            "logged row. SB3 counts epochs for PPO (each of "
            "n_steps x n_envs / batch_size optimizer steps) and optimizer steps for A2C; PPG's auxiliary-phase "
            "steps are not in it. Wall time depends on what else ran on the machine "
            "(a sweep's parallel workers), so compare it within one sweep only. Encoder passes per env step are "
            "not logged; docs/benchmarks.md gives them for the default agents.", "",
            table(["variant", "runs", "SB3 updates", "wall seconds", "env steps/s"], rows), ""]


def normalisation_sensitivity(scores: pd.DataFrame, variants: Sequence[str], norms: Mapping[str, stats.Normaliser],
                               curves: pd.DataFrame) -> list[str]:
    """The aggregate IQM of each variant under the report's normalisation and two others, so a reader sees
    how much the aggregate owes to the choice."""
    options: dict[str, Mapping[str, stats.Normaliser]] = {f"this report's ({'; '.join(sorted({n.method for n in norms.values()}))})": norms}
    sweep = {}
    base_final = {}
    for env in sorted(set(scores["env"])):
        values = curves.loc[curves["env"] == env, "return"]
        finals = scores.loc[scores["env"] == env, "final"]
        sweep[env] = stats.Normaliser(float(min(values.min(), finals.min())), float(max(values.max(), finals.max())),
                                      "sweep range")
        base = scores.loc[(scores["env"] == env) & (scores["variant"] == variants[0]), "final"].to_numpy(dtype=float)
        low = float(min(values.min(), finals.min()))
        base_final[env] = stats.Normaliser(low, stats.iqm(base) if len(base) else low + 1.0, "baseline final")
    if {n.method for n in norms.values()} != {"sweep range"}:
        options["sweep range (min to max of every curve point and final score)"] = sweep
    options[f"random-to-baseline (low of the sweep to `{variants[0]}`'s final IQM)"] = base_final
    rows = []
    for name, option in options.items():
        normed = stats.normalise(scores[["env", "variant", "seed", "final", "auc"]], option)
        matrices, _, _ = stats.score_matrices(normed, "final_norm", variants)
        rows.append([name, *[fmt(stats.iqm(matrices[v])) if matrices[v].size else "n/a" for v in variants]])
    return ["How the aggregate IQM of the normalised final score moves with the normalisation:", "",
            table(["normalisation", *variants], rows), ""]


def kept_as_tables(folders: Sequence[str | Path]) -> bool:
    """Whether ``folders`` is one study folder that keeps only its report's tables (curves.csv, scores.csv) and no
    runs of its own at its top level (no run folder, episodes table or manifest there): it is rebuilt from those
    tables, and folders inside it (a pilot, a side study) are not read as its runs."""
    if len(folders) != 1 or not Path(folders[0]).is_dir():
        return False
    folder = Path(folders[0])
    own = ("config.json", "runs", "episodes.csv.gz", "episodes.csv", "manifest.csv")
    return ((folder / "curves.csv").is_file() and (folder / "scores.csv").is_file()
            and not any((folder / name).exists() for name in own))


def read_tables(folders: Sequence[str | Path]) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(curves, scores) of one study folder that keeps only its ``curves.csv`` and ``scores.csv`` (studies made
    before reports wrote ``episodes.csv.gz``), or None where ``folders`` is not one such folder."""
    if len(folders) != 1 or not Path(folders[0]).is_dir():
        return None
    folder = Path(folders[0])
    if not ((folder / "curves.csv").is_file() and (folder / "scores.csv").is_file()):
        return None
    curves = pd.read_csv(folder / "curves.csv", float_precision="round_trip")
    scores = pd.read_csv(folder / "scores.csv", float_precision="round_trip")
    need = {"curves.csv": (curves, ["env", "variant", "seed", "step", "return"]),
            "scores.csv": (scores, ["env", "family", "game", "variant", "seed", "budget", "final", "auc"])}
    for name, (frame, columns) in need.items():
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigError(f"{folder / name}: lacks columns {', '.join(missing)}")
    scores = scores.drop(columns=[c for c in ("final_norm", "auc_norm") if c in scores.columns])
    if "final_train" not in scores.columns:
        scores["final_train"] = scores["final"]
    return curves, scores


def check_seeds(keys: Sequence[tuple], baseline: str) -> None:
    """ConfigError naming every (env, variant) whose seeds differ from the baseline's in that env: a
    comparison over unequal seed sets is not the one the report's tests assume. ``keys``: (env, variant,
    seed, ...) of each run."""
    seeds: dict[tuple[str, str], set[int]] = {}
    for env, variant, seed, *_ in keys:
        seeds.setdefault((env, variant), set()).add(int(seed))
    problems = []
    for (env, variant), have in sorted(seeds.items()):
        want = seeds.get((env, baseline))
        if variant == baseline or want is None or have == want:
            continue
        missing, extra = sorted(want - have), sorted(have - want)
        parts = ([f"lacks seeds {missing}"] if missing else []) + ([f"has seeds {extra} that {baseline} lacks"]
                                                                   if extra else [])
        problems.append(f"{variant} on {env} {' and '.join(parts)}")
    if problems:
        raise ConfigError(f"seeds differ from {baseline}'s: {'; '.join(problems)}; finish those runs, or give "
                          "--allow-missing-seeds to report the runs there are")



__all__ = ["check_seeds", "comparisons", "kept_as_tables", "compute_section", "normalisation_sensitivity", "read_tables", "verdict_lines"]
