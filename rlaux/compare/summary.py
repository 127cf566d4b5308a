"""A comparison's report written and summarised on the terminal (the sample-efficiency table, the verdicts),
and the checks of the report's settings; ``rlaux.compare.study`` calls them after a sweep or on ``--from``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from rlaux.compare import efficiency, stats
from rlaux.compare.claims import verdict_lines
from rlaux.compare.report import build_report, resolve_baseline
from rlaux.compare.results import DEFAULT_CURVE_WINDOW
from rlaux.compare.suites import SUITES
from rlaux.errors import ConfigError
from rlaux.run_folder import RunFolder


def summary_table(out: Path, baseline: str) -> str:
    """The sample-efficiency ratios, from the report's curves.csv and scores.csv, as a text table."""
    curves = pd.read_csv(out / "curves.csv")
    scores = pd.read_csv(out / "scores.csv")
    table = efficiency.sample_efficiency(curves, scores, baseline)
    finals = scores.groupby(["env", "variant"])["final"].apply(lambda v: stats.iqm(v.to_numpy())).to_dict()
    rows = [("env", "variant", "final IQM", f"steps to {baseline}'s final", "ratio")]
    for row in table.itertuples():
        reached = row.steps == row.steps  # not NaN
        rows.append((row.env, row.variant, f"{finals[(row.env, row.variant)]:.3f}",
                     f"{row.steps:,.0f}" if reached else "not reached",
                     f"{row.ratio:.2f}x" if reached else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def report_and_summarise(
    run_dirs: Sequence[Path],
    out: Path,
    baseline: str,
    reference: str | None = None,
    final_from_eval: bool = False,
    reps: int = stats.DEFAULT_REPS,
    truncate: bool = False,
    curve_window: int = DEFAULT_CURVE_WINDOW,
    allow_missing_seeds: bool = False,
) -> Path:
    """Write the report of the runs under ``run_dirs`` into ``out``, print where, the summary table and the
    verdicts."""
    report = build_report([str(d) for d in run_dirs], str(out), baseline=baseline, reference=reference,
                          reps=reps, truncate=truncate, final_from_eval=final_from_eval, window=curve_window,
                          allow_missing_seeds=allow_missing_seeds)
    baseline = resolve_baseline(baseline, sorted(set(pd.read_csv(out / "curves.csv")["variant"])))
    print(f"\nreport: {report}")
    print(f"data: {out / 'curves.csv'}, {out / 'scores.csv'}; figures: {out / 'figures'}")
    print(f"\nsample efficiency (ratio = env steps to reach {baseline}'s final score / {baseline}'s own steps; "
          "plateau-sensitive, see the threshold ladder in the report):")
    print(summary_table(out, baseline))
    print("\nverdicts:")
    for line in verdict_lines(pd.read_csv(out / "scores.csv"), baseline, reps):
        print(f"  {line}")
    return report


def all_suite_runs(dirs: Sequence[Path]) -> bool:
    """True if every run under ``dirs`` used a suite's env preset (the Atari 100k protocol's)."""
    envs = set()
    for folder in RunFolder.find(dirs):
        try:
            envs.add(str(folder.read().get("env", "")).lower())
        except ConfigError:
            continue
    suite_envs = {suite.env.lower() for suite in SUITES.values()}
    return bool(envs) and envs <= suite_envs


def check_report_settings(reps: int, curve_window: int) -> None:
    """ConfigError unless the report's bootstrap resamples and curve window are at least 1."""
    if reps < 1:
        raise ConfigError(f"--reps must be >= 1, got {reps}")
    if curve_window < 1:
        raise ConfigError(f"--curve-window must be >= 1 episode, got {curve_window}")


__all__ = ["all_suite_runs", "check_report_settings", "report_and_summarise", "summary_table"]
