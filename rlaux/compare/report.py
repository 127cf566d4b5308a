"""A Markdown report that compares variants: tables, figures and the runs left out."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from rlaux.compare import plots, stats
from rlaux.compare.results import (
    DEFAULT_CURVE_WINDOW,
    curves_frame,
    load_runs,
    short_dir,
    split_algorithm,
    write_curves_csv,
)
from rlaux.errors import ConfigError

HOW_TO_READ = """\
**How to read this.** Each run's learning curve is the mean return of its last
{window} finished episodes, sampled at {n_points} evenly spaced env steps. The
*final score* of a run is the mean return of its episodes that end in the last
10% of training; the *AUC score* is its learning curve averaged over training
(area under the curve / budget), which rewards learning early. Per env we report
the interquartile mean (IQM: the mean of the middle 50% of runs, robust to
outlier seeds) with a 95% stratified-bootstrap confidence interval ({reps}
resamples, Agarwal et al. 2021, `rliable`). Intervals that do not overlap are a
strong sign of a difference; with few seeds intervals are wide, so read
overlapping ones as "no evidence either way". Across envs, scores are normalised
({norm_note}). The probability of improvement P(X > {baseline}) is the chance
that a run of X beats a run of {baseline} on a randomly chosen env (0.5 = no
difference; a CI that excludes 0.5 is significant). *Sample efficiency*: the
target is the baseline's final-score IQM; "steps" is the first env step at which
a variant's IQM-over-seeds curve reaches it (interpolated between grid points),
and the ratio is those steps over the baseline's own steps to its final score
(the budget if its curve never quite gets there): 0.5x means half the env steps.
"""


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _interval(point: float, low: float, high: float, digits: int = 3) -> str:
    return f"{_fmt(point, digits)} [{_fmt(low, digits)}, {_fmt(high, digits)}]"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _image(path: Path, out_dir: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})"


def _portable(run_dir: str | Path, out_dir: Path) -> str:
    """How the report names a folder it read: relative to the report where it lies inside it, else by
    its own last two path parts, so that no machine's absolute path lands in a committed report."""
    path, out = Path(run_dir).resolve(), out_dir.resolve()
    if path.is_relative_to(out):
        return path.relative_to(out).as_posix() or "."
    return short_dir(path, parts=2)


def resolve_baseline(baseline: str, variants: Sequence[str]) -> str:
    """The variant that ``baseline`` names among ``variants``: itself, or, where the variants carry
    their algorithm (``ppo_lstm:none``), the one variant of that label (``none``). ConfigError if none
    or several match."""
    if baseline in variants:
        return baseline
    matches = [v for v in variants if split_algorithm(v)[0] is not None and split_algorithm(v)[1] == baseline]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"baseline {baseline!r} was run with several algorithms; name one: {', '.join(matches)}")
    raise ConfigError(f"baseline {baseline!r} has no runs; variants found: {', '.join(variants)}")


def build_report(
    run_dirs: list[str],
    out_dir: str,
    baseline: str = "none",
    reference: str | None = None,
    *,
    reps: int = stats.DEFAULT_REPS,
    seed: int = stats.DEFAULT_SEED,
    n_points: int = 50,
    window: int = DEFAULT_CURVE_WINDOW,
    truncate: bool = False,
    include_unfinished: bool = False,
    score_ranges: Mapping[str, tuple[float, float]] | None = None,
    final_from_eval: bool = False,
) -> Path:
    """Read the runs under ``run_dirs`` and write ``out_dir/report.md`` with its CSVs and PNGs.

    ``reference="atari100k"`` adds the published Atari 100k agents to the human-normalised
    IQM table and figure. ``final_from_eval``: a run's final score is its last evaluation
    (``evaluations.npz``, e.g. the Atari 100k protocol's final evaluation) where it has one;
    sample efficiency still compares training curves with training final scores. Where the runs mix
    algorithms, variants are ``<algo>:<label>`` and ``baseline`` may omit the algorithm if one matches
    (:func:`resolve_baseline`). Raises :class:`ConfigError` for an unknown reference, a baseline
    without runs (or run with several algorithms), no readable run at all, or runs of different
    lengths (unless ``truncate``).
    """
    if reference is not None and reference not in stats.REFERENCES:
        raise ConfigError(f"unknown reference {reference!r}; valid: {', '.join(stats.REFERENCES)}")
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")
    loaded = load_runs(run_dirs, truncate=truncate, include_unfinished=include_unfinished)
    if not loaded.runs:
        detail = "; ".join(loaded.warnings) or "no folder with config.json found"
        raise ConfigError(f"no readable runs under {', '.join(map(str, run_dirs))}: {detail}")
    runs = loaded.runs
    variants = sorted({run.variant for run in runs})
    baseline = resolve_baseline(baseline, variants)
    # Baseline first, then the others: fixed order and colours in every table and figure.
    variants = [baseline] + [v for v in variants if v != baseline]
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    warnings = list(loaded.warnings)

    curves = curves_frame(runs, n_points=n_points, window=window)
    write_curves_csv(curves, out / "curves.csv")
    norms = stats.normalisers(runs, curves, score_ranges)
    scores = stats.normalise(stats.run_scores(runs, curves, final_from_eval=final_from_eval), norms)
    scores.to_csv(out / "scores.csv", index=False)

    per_env = stats.per_env_intervals(scores, reps, seed)
    final_norm, envs, agg_warnings = stats.score_matrices(scores, "final_norm", variants)
    auc_norm, _, _ = stats.score_matrices(scores, "auc_norm", variants)
    final_raw, _, _ = stats.score_matrices(scores, "final", variants)
    final_norm = {v: m for v, m in final_norm.items() if m.size}
    auc_norm = {v: m for v, m in auc_norm.items() if m.size}
    final_raw = {v: m for v, m in final_raw.items() if m.size}

    colors = plots.variant_colors(variants + list(stats.ATARI100K_AGENTS.values()))
    curve_pngs = plots.plot_learning_curves(curves, fig_dir, colors, reps, seed)

    lines: list[str] = ["# Sample-efficiency comparison", ""]
    budgets = ", ".join(f"{env}: {b:,}" for env, b in sorted({(r.env, r.budget) for r in runs}))
    seeds_per = ", ".join(f"{v}: {len({(r.env, r.seed) for r in runs if r.variant == v})} runs" for v in variants)
    lines += [
        f"- Runs read: {len(runs)} ({seeds_per}) from {', '.join(_portable(d, out) for d in run_dirs)}",
        f"- Envs: {len(set(scores['env']))}; variants: {', '.join(variants)} (baseline: `{baseline}`)",
        f"- Budget (env steps per run): {budgets}",
        f"- Bootstrap: {reps} stratified resamples, 95% CIs, seed {seed}",
        "- Data: `curves.csv` (env,variant,seed,step,return), `scores.csv` (per-run final and AUC scores)",
    ]
    if final_from_eval:
        n_eval = int((scores["final_source"] == "evaluation").sum())
        lines.append(
            f"- Final score: each run's final evaluation (`evaluations.npz`) where it has one "
            f"({n_eval} of {len(scores)} runs; the others: training episodes); sample efficiency uses training episodes"
        )
    lines.append("")
    norm_methods = sorted({n.method for n in norms.values()})
    norm_note = "; ".join(norm_methods) + " (see the normalisation table)"
    lines += [
        HOW_TO_READ.format(window=window, n_points=n_points, reps=reps, baseline=baseline, norm_note=norm_note),
        "",
    ]

    # Per-env table.
    lines += ["## Per env: IQM over seeds (raw episode return)", ""]
    rows = [
        [
            row.env,
            row.variant,
            row.n_seeds,
            _interval(row.final_iqm, row.final_low, row.final_high),
            _interval(row.auc_iqm, row.auc_low, row.auc_high),
        ]
        for row in per_env.itertuples()
    ]
    lines += [_table(["env", "variant", "seeds", "final score IQM [95% CI]", "AUC score IQM [95% CI]"], rows), ""]
    for env, path in curve_pngs.items():
        lines += [_image(path, out, f"learning curves {env}"), ""]

    # Normalisation table.
    lines += ["## Normalisation", ""]
    rows = [[env, n.method, _fmt(n.low), _fmt(n.high)] for env, n in sorted(norms.items())]
    lines += [_table(["env", "method", "low (score 0)", "high (score 1)"], rows), ""]

    # Aggregate across envs.
    lines += [f"## Aggregate over {len(envs)} env(s): normalised final score", ""]
    lines += [f"Note: {w}" for w in agg_warnings] + ([""] if agg_warnings else [])
    if final_norm:
        point, ci = stats.aggregate_intervals(final_norm, reps, seed)
        auc_iqm = stats.iqm_intervals(auc_norm, reps, seed)
        rows = []
        for v in final_norm:
            cells = [_interval(point[v][i], ci[v][0, i], ci[v][1, i]) for i in range(len(stats.AGGREGATE_METRICS))]
            rows.append([v, f"{final_norm[v].shape[0]} x {final_norm[v].shape[1]}", *cells, _interval(*auc_iqm[v])])
        headers = ["variant", "runs x envs", *stats.AGGREGATE_METRICS, "AUC IQM"]
        lines += [_table(headers, rows), ""]
        agg_png = plots.plot_aggregate_intervals(point, ci, fig_dir / "aggregate_intervals.png", colors=colors)
        lines += [_image(agg_png, out, "aggregate intervals"), ""]
        taus, profiles, profile_cis = stats.performance_profiles(final_norm, reps=reps, seed=seed)
        prof_png = plots.plot_performance_profile(
            taus, profiles, profile_cis, fig_dir / "performance_profile.png", colors=colors
        )
        lines += ["Performance profile (fraction of runs above each normalised score):", ""]
        lines += [_image(prof_png, out, "performance profile"), ""]
    else:
        lines += ["No env was run with every variant: no aggregate.", ""]

    # Probability of improvement.
    lines += [f"## Probability of improvement over `{baseline}`", ""]
    if baseline in final_raw and len(final_raw) > 1:
        poi = stats.probability_of_improvement(final_raw, baseline, reps, seed)
        rows = [[v, _interval(*poi[v])] for v in poi]
        lines += [_table(["variant", f"P(variant > {baseline}) [95% CI]"], rows), ""]
    else:
        lines += ["Only the baseline was run: nothing to compare.", ""]

    # Sample efficiency.
    lines += [f"## Sample efficiency: env steps to reach `{baseline}`'s final score", ""]
    efficiency = stats.sample_efficiency(curves, scores, baseline)
    rows = []
    for row in efficiency.itertuples():
        reached = not math.isnan(row.steps)
        rows.append(
            [
                row.env,
                row.variant,
                _fmt(row.target),
                f"{row.steps:,.0f}" if reached else "not reached",
                f"{row.ratio:.2f}x" if reached else "not reached",
            ]
        )
    lines += [_table(["env", "variant", "target (baseline final IQM)", "steps", f"ratio to {baseline}"], rows), ""]
    envs_without_baseline = sorted(set(scores["env"]) - set(efficiency["env"]))
    if envs_without_baseline:
        lines += [f"No `{baseline}` runs (no target) for: {', '.join(envs_without_baseline)}", ""]

    if reference == "atari100k":
        lines += _atari100k_section(scores, variants, out, fig_dir, colors, reps, seed)

    lines += ["## Runs left out (and reading notes)", ""]
    lines += [f"- {w}" for w in warnings] if warnings else ["None: every run found was read."]
    lines.append("")
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def _atari100k_section(
    scores: pd.DataFrame,
    variants: list[str],
    out: Path,
    fig_dir: Path,
    colors: Mapping[str, tuple],
    reps: int,
    seed: int,
) -> list[str]:
    """Our human-normalised final-score IQM beside the published Atari 100k agents, same games."""
    published = set(stats.atari100k_normalised_scores()["SPR"])
    atari = scores[[stats.is_atari(f) for f in scores["family"]]].copy()
    atari["game_key"] = [stats.game_key(g or e) for g, e in zip(atari["game"], atari["env"], strict=True)]
    ours_games = sorted(set(atari["game_key"]) & published)
    outside = sorted(set(atari["game_key"]) - published)
    lines = ["## Atari 100k: beside published agents (human-normalised final score)", ""]
    lines += [
        "Published per-run scores (SPR, DrQ(eps), CURL, SimPLe, IRIS; rliable's collection, "
        "see `rlaux/data/README.md`) were obtained with 100k agent steps (400k frames), no sticky "
        "actions: the comparison is fair only for runs trained under that protocol.",
        "",
    ]
    matrices: dict[str, np.ndarray] = {}
    if ours_games:
        atari = atari[atari["game_key"].isin(ours_games)]
        atari = atari.assign(env=atari["game_key"])
        ours, _, _ = stats.score_matrices(atari, "final_norm", [v for v in variants if v in set(atari["variant"])])
        matrices.update({f"ours: {v}": m for v, m in ours.items() if m.size})
        lines += [f"Games (ours and published, same set): {', '.join(ours_games)}", ""]
        reference = stats.atari100k_matrices(ours_games)
    else:
        lines += ["No Atari run of ours is on one of the 26 games: published agents shown on all 26 games.", ""]
        reference = stats.atari100k_matrices()
    if outside:
        lines += [f"Our games outside the Atari 100k set (left out here): {', '.join(outside)}", ""]
    matrices.update(reference)
    iqms = stats.iqm_intervals(matrices, reps, seed)
    rows = [[name, f"{m.shape[0]} x {m.shape[1]}", _interval(*iqms[name])] for name, m in matrices.items()]
    lines += [_table(["agent", "runs x games", "IQM [95% CI]"], rows), ""]
    colors = dict(colors)
    colors.update({f"ours: {v}": colors[v] for v in variants})
    point = {name: np.array([iqms[name][0]]) for name in matrices}
    interval = {name: np.array([[iqms[name][1]], [iqms[name][2]]]) for name in matrices}
    png = plots.plot_aggregate_intervals(
        point,
        interval,
        fig_dir / "atari100k_iqm.png",
        metric_names=["IQM"],
        colors=colors,
        xlabel="Human-normalised score",
    )
    lines += [_image(png, out, "Atari 100k IQM"), ""]
    return lines
