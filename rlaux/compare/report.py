"""A Markdown report that compares variants: tables, figures and the runs left out."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rlaux.compare import efficiency, plots, significance, stats
from rlaux.compare.atari100k import atari100k_section
from rlaux.compare.claims import (
    check_seeds,
    comparisons,
    compute_section,
    kept_as_tables,
    normalisation_sensitivity,
    read_tables,
    verdict_lines,
)
from rlaux.compare.markdown import fmt, image, interval, p_value, spread, table
from rlaux.compare.plain_logs import EPISODES_FILES, write_episodes
from rlaux.compare.results import (
    DEFAULT_CURVE_WINDOW,
    FINISHED_STEPS_MEANING,
    curves_frame,
    load_runs,
    short_dir,
    write_curves_csv,
)
from rlaux.compare.runs import LoadedRuns, split_algorithm
from rlaux.errors import ConfigError

HOW_TO_READ = """\
**How to read this.** Each run's learning curve is the mean return of its last
{window} finished episodes, sampled at {n_points} evenly spaced env steps. The
*final score* of a run is the mean return of its episodes that end in the last
10% of training; the *AUC score* is its learning curve averaged over training
(area under the curve / budget), which rewards learning early. Per env we report
the interquartile mean (IQM: the mean of the middle 50% of runs, robust to
outlier seeds) with {interval_text}. Overlapping intervals or
ranges mean "no evidence either way". Across envs, scores are normalised
({norm_note}). The probability of improvement P(X > {baseline}) is the chance
that a run of X beats a run of {baseline} on a randomly chosen env (0.5 = no
difference), over all run pairs; its *exact p-value* (two-sided) comes from
permuting the variant labels of the runs within each env, every permutation
counted, so it is valid at any number of seeds. Per-env p-values are
Holm-adjusted over all the per-env comparisons of this report (their number is
given). *Sample efficiency* is read two ways: on a fixed *threshold ladder*
(env steps until a variant's IQM curve reaches 25/50/75/90% of the way from
each env's normalisation low to its high: the same targets for every variant),
and as env steps to the baseline's final IQM, which is *plateau-sensitive*: a
baseline that stops improving early reaches its own final score early, and a
variant that passes it later reads as slower although it ends higher.
"""


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
    allow_missing_seeds: bool = False,
) -> Path:
    """Read the runs under ``run_dirs`` and write ``out_dir/report.md`` with its CSVs and PNGs.

    ``reference="atari100k"`` adds the published Atari 100k agents to the human-normalised
    IQM table and figure. ``final_from_eval``: a run's final score is its last evaluation
    (``evaluations.npz``, e.g. the Atari 100k protocol's final evaluation) where it has one;
    sample efficiency still compares training curves with training final scores. Where the runs mix
    algorithms, variants are ``<algo>:<label>`` and ``baseline`` may omit the algorithm if one matches
    (:func:`resolve_baseline`). Raises :class:`ConfigError` for an unknown reference, a baseline
    without runs (or run with several algorithms), no readable run at all, or runs of different
    lengths (unless ``truncate``), or a variant missing seeds that the baseline has in an env (unless
    ``allow_missing_seeds``): all checked before anything is written.
    """
    if reference is not None and reference not in stats.REFERENCES:
        raise ConfigError(f"unknown reference {reference!r}; valid: {', '.join(stats.REFERENCES)}")
    if reps < 1:
        raise ConfigError(f"reps must be >= 1, got {reps}")
    if kept_as_tables(run_dirs):  # a study folder that keeps only its tables: not the runs of folders inside it
        loaded, runs, tables = LoadedRuns([], []), [], read_tables(run_dirs)
    else:
        loaded = load_runs(run_dirs, truncate=truncate, include_unfinished=include_unfinished)
        runs = loaded.runs
        tables = None if runs else read_tables(run_dirs)
    if not runs and tables is None:
        detail = "; ".join(loaded.warnings) or "no folder with config.json, episodes.csv.gz or manifest.csv found"
        raise ConfigError(f"no readable runs under {', '.join(map(str, run_dirs))}: {detail}")
    keys = ([(r.env, r.variant, r.seed, r.budget) for r in runs] if runs else
            [tuple(k) for k in tables[1][["env", "variant", "seed", "budget"]].itertuples(index=False)])
    variants = sorted({k[1] for k in keys})
    baseline = resolve_baseline(baseline, variants)
    if not allow_missing_seeds:
        check_seeds(keys, baseline)
    # Baseline first, then the others: fixed order and colours in every table and figure.
    variants = [baseline] + [v for v in variants if v != baseline]
    final = Path(out_dir)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written to a staging folder first and moved over the report's files only once the
    # whole report is built: an error midway leaves the earlier report as it was.
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    try:
        parent_data = _data_above(run_dirs, final) if runs else None
        report = _build(runs, tables, keys, variants, baseline, loaded, out, final, fig_dir, run_dirs, reference, reps,
                        seed, n_points, window, score_ranges, final_from_eval, parent_data)
        _move_into(out, final)
        if parent_data is not None:  # an earlier copy of the same data would contradict the report's data line
            (final / "episodes.csv.gz").unlink(missing_ok=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return final / report.name


def _data_above(run_dirs: Sequence[str | Path], final: Path) -> str | None:
    """Where the report was read from one study's episodes table lying in a folder above the report's (a
    sub-report of that study, such as the same runs against another baseline): that table's path relative to the
    report, which then names it instead of writing a copy of the same data. Else None."""
    if len(run_dirs) != 1:
        return None
    source = Path(run_dirs[0]).resolve()
    report = final.resolve()
    if source.name not in EPISODES_FILES or not source.is_file() or report == source.parent \
            or not report.is_relative_to(source.parent):
        return None
    return Path(os.path.relpath(source, report)).as_posix()


def _data_line(runs: list, parent_data: str | None) -> str:
    """The start of the report's "Data" line: where its episodes are (none: rebuilt from tables)."""
    columns = "env,env_id,variant,seed,budget,step,return; `compare --from` it rebuilds this report"
    if not runs:
        return "- Data: "
    if parent_data is not None:
        return f"- Data: `{parent_data}` (the study's episodes, not copied here: {columns}), "
    return f"- Data: `episodes.csv.gz` (every episode: {columns}), "


def _move_into(staging: Path, final: Path) -> None:
    """Each file of ``staging`` over its namesake in ``final`` (other files of ``final`` stay)."""
    for path in sorted(staging.rglob("*")):
        if path.is_file():
            target = final / path.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


def _build(runs: list, tables: tuple | None, keys: list, variants: list[str], baseline: str, loaded: Any, out: Path,
           final: Path, fig_dir: Path, run_dirs: list[str], reference: str | None, reps: int, seed: int,
           n_points: int, window: int, score_ranges: Mapping[str, tuple[float, float]] | None,
           final_from_eval: bool, parent_data: str | None = None) -> Path:
    """The report's body (see :func:`build_report`), written into ``out``; ``final`` is where it will lie;
    ``parent_data``: the study's episodes table it was read from (:func:`_data_above`), named, not copied."""
    warnings = list(loaded.warnings) if runs else [
        "rebuilt from the study's curves.csv and scores.csv: its runs' episodes were not kept, so the learning "
        "curves are those resampled then (the window and grid they were made with) and the final and AUC scores "
        "those computed then",
        f"those runs predate episode_steps.csv: their curves place each episode at {FINISHED_STEPS_MEANING}"]

    if runs:
        curves = curves_frame(runs, n_points=n_points, window=window)
        write_curves_csv(curves, out / "curves.csv")
        if parent_data is None:
            write_episodes(runs, out / "episodes.csv.gz")  # the raw data: compare --from it rebuilds this report
        norms = stats.normalisers(runs, curves, score_ranges)
        raw_scores = stats.run_scores(runs, curves, final_from_eval=final_from_eval)
    else:
        curves, raw_scores = tables
        norms = stats.table_normalisers(raw_scores, curves, score_ranges)
        write_curves_csv(curves, out / "curves.csv")
    scores = stats.normalise(raw_scores, norms)
    scores.to_csv(out / "scores.csv", index=False)

    per_env = stats.per_env_intervals(scores, reps, seed)
    any_ci = significance.enough_runs(int(per_env["n_seeds"].max()))  # else no "95%" anywhere in the text
    final_norm, envs, agg_warnings = stats.score_matrices(scores, "final_norm", variants)
    auc_norm, _, _ = stats.score_matrices(scores, "auc_norm", variants)
    final_raw, _, _ = stats.score_matrices(scores, "final", variants)
    final_norm = {v: m for v, m in final_norm.items() if m.size}
    auc_norm = {v: m for v, m in auc_norm.items() if m.size}
    final_raw = {v: m for v, m in final_raw.items() if m.size}

    colors = plots.variant_colors(variants + list(stats.ATARI100K_AGENTS.values()))
    curve_pngs = plots.plot_learning_curves(curves, fig_dir, colors, reps, seed)

    lines: list[str] = ["# Sample-efficiency comparison", ""]
    budgets = ", ".join(f"{env}: {int(b):,}" for env, b in sorted({(k[0], k[3]) for k in keys}))
    seeds_per = ", ".join(f"{v}: {len({(k[0], k[2]) for k in keys if k[1] == v})} runs" for v in variants)
    lines += [
        f"- Runs read: {len(keys)} ({seeds_per}) from {', '.join(_portable(d, final) for d in run_dirs)}",
        f"- Envs: {len(set(scores['env']))}; variants: {', '.join(variants)} (baseline: `{baseline}`)",
        f"- Budget (env steps per run): {budgets}",
        (f"- Bootstrap: {reps} stratified resamples, 95% CIs where a variant has {significance.MIN_RUNS_FOR_CI}+ runs "
         f"(ranges below), seed {seed}; exact permutation p-values throughout" if any_ci else
         f"- Intervals: the range of each variant's runs (every variant has fewer than "
         f"{significance.MIN_RUNS_FOR_CI}); exact permutation p-values throughout"),
        _data_line(runs, parent_data) + "`curves.csv` (env,variant,seed,step,return), "
        "`scores.csv` (per-run final and AUC scores), `threshold_ladder.csv`",
    ]
    if final_from_eval:
        n_eval = int((scores["final_source"] == "evaluation").sum())
        lines.append(
            f"- Final score: each run's final evaluation (`evaluations.npz`) where it has one "
            f"({n_eval} of {len(scores)} runs; the others: training episodes); sample efficiency uses training episodes"
        )
    lines.append("")
    norm_methods = sorted({n.method for n in norms.values()})
    norm_note = "; ".join(norm_methods) + "; see the normalisation table"
    lines += ["## Verdicts", ""] + [f"- {line}" for line in verdict_lines(scores, baseline, reps, seed)] + [""]
    lines += [
        HOW_TO_READ.format(window=window, n_points=n_points, reps=reps, baseline=baseline, norm_note=norm_note,
                           interval_text=_interval_text(any_ci, reps)),
        "",
    ]

    # Per-env table.
    lines += ["## Per env: IQM over seeds (raw episode return)", ""]
    rows = [
        [
            row.env,
            row.variant,
            row.n_seeds,
            spread(row.final_iqm, row.final_low, row.final_high, row.final_min, row.final_max, row.n_seeds),
            spread(row.auc_iqm, row.auc_low, row.auc_high, row.auc_min, row.auc_max, row.n_seeds),
        ]
        for row in per_env.itertuples()
    ]
    lines += [table(["env", "variant", "seeds", "final score IQM [interval]", "AUC score IQM [interval]"], rows), ""]
    smallest = int(per_env["n_seeds"].min())
    lines += [(f"[a, b]: 95% bootstrap CI ({significance.MIN_RUNS_FOR_CI}+ runs); " if any_ci else "")
              + "range a to b: the lowest and highest run (fewer runs). " + (significance.spread_note(smallest) if smallest < significance.MIN_RUNS_FOR_CI
                                              else ""), ""]
    for env, path in curve_pngs.items():
        lines += [image(path, out, f"learning curves {env}"), ""]

    # Normalisation table.
    lines += ["## Normalisation", ""]
    rows = [[env, n.method, fmt(n.low), fmt(n.high)] for env, n in sorted(norms.items())]
    lines += [table(["env", "method", "low (score 0)", "high (score 1)"], rows), ""]

    # Aggregate across envs.
    lines += [f"## Aggregate over {len(envs)} env(s): normalised final score", ""]
    lines += [f"Note: {w}" for w in agg_warnings] + ([""] if agg_warnings else [])
    if final_norm:
        few = not significance.enough_runs(*(m.shape[0] for m in final_norm.values()))
        if few:
            point, ci = stats.aggregate_ranges(final_norm)
            auc_point, auc_spread = stats.aggregate_ranges(auc_norm)
            auc_iqm = {v: (auc_point[v][1], auc_spread[v][0, 1], auc_spread[v][1, 1]) for v in auc_norm}
        else:
            point, ci = stats.aggregate_intervals(final_norm, reps, seed)
            auc_iqm = stats.iqm_intervals(auc_norm, reps, seed)
        rows = []
        for v in final_norm:
            cells = [interval(point[v][i], ci[v][0, i], ci[v][1, i], ranged=few)
                     for i in range(len(stats.AGGREGATE_METRICS))]
            rows.append([v, f"{final_norm[v].shape[0]} x {final_norm[v].shape[1]}", *cells,
                         interval(*auc_iqm[v], ranged=few)])
        headers = ["variant", "runs x envs", *stats.AGGREGATE_METRICS, "AUC IQM"]
        lines += [table(headers, rows), ""]
        if few:
            smallest = min(m.shape[0] for m in final_norm.values())
            lines += [significance.spread_note(smallest) + " Here a range is that of the metric computed on each "
                      "seed's envs alone.", ""]
        else:
            lines += ["[a, b]: 95% stratified-bootstrap CI.", ""]
        agg_png = plots.plot_aggregate_intervals(
            point, ci, fig_dir / "aggregate_intervals.png", colors=colors,
            xlabel="Normalised score (bars: " + ("range over seeds)" if few else "95% CI)"))
        lines += [image(agg_png, out, "aggregate intervals"), ""]
        lines += normalisation_sensitivity(scores, variants, norms, curves)
        taus, profiles, profile_cis = stats.performance_profiles(final_norm, reps=reps, seed=seed)
        prof_png = plots.plot_performance_profile(
            taus, profiles, profile_cis, fig_dir / "performance_profile.png", colors=colors
        )
        lines += ["Performance profile (fraction of runs above each normalised score):", ""]
        lines += [image(prof_png, out, "performance profile"), ""]
    else:
        lines += ["No env was run with every variant: no aggregate.", ""]

    # Probability of improvement, with exact p-values.
    lines += [f"## Probability of improvement over `{baseline}`", ""]
    tests = comparisons(scores, baseline)
    if tests["aggregate"]:
        poi = stats.probability_of_improvement(final_raw, baseline, reps, seed) if baseline in final_raw else {}
        rows = []
        for v, t in tests["aggregate"].items():
            shown = v in poi and significance.enough_runs(t["runs"], t["baseline_runs"])
            ci = f"[{fmt(poi[v][1])}, {fmt(poi[v][2])}]" if shown else f"n/a (< {significance.MIN_RUNS_FOR_CI} runs)"
            rows.append([v, f"{t['counts']} x {t['envs']}", fmt(t["p_improvement"]), ci,
                         p_value(t["p"], t["exact"]), p_value(t["p_holm"], True), t["verdict"]])
        lines += [table(["variant", "runs x envs", f"P(variant > {baseline})", "bootstrap interval", "exact p",
                          f"Holm p ({len(tests['aggregate'])} variants)", "verdict"], rows), ""]
        per_env_tests = tests["per_env"]
        lines += [f"Per env ({len(per_env_tests)} comparisons in this report; Holm-adjusted over all of them):", ""]
        rows = [[t["env"], t["variant"], f"{t['runs']} vs {t['baseline_runs']}", fmt(t["p_improvement"]),
                 p_value(t["p"], t["exact"]), p_value(t["p_holm"], True), t["verdict"]] for t in per_env_tests]
        lines += [table(["env", "variant", "runs", f"P(variant > {baseline})", "exact p", "Holm p", "verdict"],
                         rows), ""]
        lines += ["verdict: higher or lower where the (Holm-adjusted, for per-env rows) p-value is below 0.05, "
                  "else level (no evidence either way, not evidence of no difference).", ""]
    else:
        lines += ["Only the baseline was run: nothing to compare.", ""]

    # Sample efficiency.
    lines += ["## Sample efficiency on a fixed threshold ladder", ""]
    ladder = efficiency.threshold_ladder(curves, norms)
    ladder.to_csv(out / "threshold_ladder.csv", index=False)
    header = ["env", "variant"] + [f"{int(f * 100)}%" for f in efficiency.THRESHOLDS]
    rows = []
    for (env, variant), part in ladder.groupby(["env", "variant"], sort=True):
        cells = [("never" if math.isnan(r.steps) else f"{r.steps:,.0f}") + f" ({r.runs_reaching}/{r.runs} runs)"
                 for r in part.sort_values("threshold").itertuples()]
        rows.append([env, variant, *cells])
    lines += ["Env steps until the IQM curve reaches each fraction of the way from the env's normalisation low "
              "to its high (targets in threshold_ladder.csv; in parentheses, how many runs' own curves get there; "
              "never: not within the budget).", "", table(header, rows), ""]

    lines += [f"## Sample efficiency: env steps to reach `{baseline}`'s final score (plateau-sensitive)", ""]
    to_baseline = efficiency.sample_efficiency(curves, scores, baseline)
    rows = []
    for row in to_baseline.itertuples():
        reached = not math.isnan(row.steps)
        rows.append(
            [
                row.env,
                row.variant,
                fmt(row.target),
                f"{row.steps:,.0f}" if reached else "not reached",
                f"{row.ratio:.2f}x" if reached else "not reached",
            ]
        )
    lines += [table(["env", "variant", "target (baseline final IQM)", "steps", f"ratio to {baseline}"], rows), ""]
    envs_without_baseline = sorted(set(scores["env"]) - set(to_baseline["env"]))
    if envs_without_baseline:
        lines += [f"No `{baseline}` runs (no target) for: {', '.join(envs_without_baseline)}", ""]

    if runs:
        lines += compute_section(runs, variants)

    if reference == "atari100k":
        lines += atari100k_section(scores, variants, out, fig_dir, colors, reps, seed)

    lines += ["## Runs left out (and reading notes)", ""]
    lines += [f"- {w}" for w in warnings] if warnings else ["None: every run found was read."]
    lines.append("")
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report


def _interval_text(any_ci: bool, reps: int) -> str:
    """How HOW_TO_READ describes the intervals: bootstrap CIs only where some variant has enough runs."""
    ranges = ("the range of its runs (lowest to highest) where a variant has fewer than "
              f"{significance.MIN_RUNS_FOR_CI} runs: a bootstrap over so few runs cannot give the coverage it "
              "would claim")
    if not any_ci:
        return ranges + " (here every variant has fewer)"
    return (f"a 95% stratified-bootstrap confidence interval ({reps} resamples, Agarwal et al. 2021, `rliable`) "
            f"where a variant has at least {significance.MIN_RUNS_FOR_CI} runs, and " + ranges)
