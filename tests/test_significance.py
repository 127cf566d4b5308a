"""Statistics that claim only what they can: exact p-values, Holm, ranges below 5 runs, the threshold
ladder, verdict lines, and refusals before anything is written."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from rlaux.compare import significance as sig
from rlaux.compare.claims import comparisons, verdict_lines
from rlaux.compare.report import build_report
from rlaux.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from test_compare import baseline_returns, fast_returns, slow_returns, write_run  # noqa: E402


def sweep(root: Path, seeds: range, variants=("none", "fast", "slow"), skip: dict | None = None) -> Path:
    makers = {"none": baseline_returns, "fast": fast_returns, "slow": slow_returns}
    for seed in seeds:
        for variant in variants:
            if seed in (skip or {}).get(variant, ()):
                continue
            write_run(root, f"{variant}-s{seed}", makers[variant](seed % 3), variant=variant, seed=seed)
    return root


# ---------------------------------------------------------------- the tests themselves


def test_exact_p_equals_the_exact_mann_whitney_test_without_ties():
    rng = np.random.default_rng(3)
    x, y = rng.normal(1.0, 1.0, 5), rng.normal(0.0, 1.0, 5)
    probability, p, exact = sig.exact_test(x, y)
    assert exact and probability == sig.improvement_probability(x, y)
    assert p == pytest.approx(scipy.stats.mannwhitneyu(x, y, method="exact").pvalue)


def test_exact_p_of_separated_groups_is_the_share_of_extreme_splits():
    # 3 runs each, every run of x above every run of y: 2 of the C(6, 3) = 20 splits are as extreme.
    assert sig.exact_test([6, 7, 8], [1, 2, 3]) == (1.0, pytest.approx(0.1), True)
    # 8 of 9 pairs higher (the maze example): p = 0.2, not significant at 3 seeds.
    assert sig.exact_test([5, 7, 8], [1, 2, 6])[1] == pytest.approx(0.2)
    # ties count 1/2 and stay exact: identical groups give P = 0.5 and p = 1
    assert sig.exact_test([1, 1, 1], [1, 1, 1]) == (0.5, pytest.approx(1.0), True)
    # one run against one: the two labellings are equally likely
    assert sig.exact_test([2.0], [1.0])[1] == pytest.approx(1.0)


def test_stratified_test_convolves_the_envs():
    separated = ([6.0, 7.0, 8.0], [1.0, 2.0, 3.0])
    probability, p, exact = sig.stratified_exact_test([separated] * 3)
    assert probability == 1.0 and exact
    assert p == pytest.approx(2 * (1 / 20) ** 3)  # all three envs at their extreme, either direction
    # opposite effects in two envs cancel
    flipped = (separated[1], separated[0])
    assert sig.stratified_exact_test([separated, flipped])[0] == 0.5
    assert sig.stratified_exact_test([separated, flipped])[1] == pytest.approx(1.0)


def test_holm_adjustment():
    adjusted = sig.holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adjusted == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06)}
    assert sig.holm({"a": 0.5, "b": 0.9}) == {"a": 1.0, "b": 1.0}


# ---------------------------------------------------------------- the report's wording


def test_report_shows_ranges_below_five_runs_and_95_percent_intervals_from_five(tmp_path):
    few = build_report([str(sweep(tmp_path / "few", range(3)))], str(tmp_path / "out-few"), reps=200)
    text = few.read_text()
    assert "(range " in text and "fewer than 5" in text
    assert "n/a (< 5 runs)" in text  # no bootstrap interval for P(improvement)
    assert "exact p" in text and "Holm" in text
    per_env = text.split("## Per env")[1].split("## Normalisation")[0]
    assert "[" not in per_env.split("|---|")[1].split("\n\n")[0]  # no bracketed interval in the table rows

    many = build_report([str(sweep(tmp_path / "many", range(5)))], str(tmp_path / "out-many"), reps=200)
    text = many.read_text()
    table = text.split("## Per env")[1].split("## Normalisation")[0]
    assert "(range " not in table and "95% bootstrap CI" in text
    assert "fewer than 5" not in text.split("## Aggregate")[1].split("## Probability")[0]


def test_report_counts_its_comparisons_and_gives_exact_and_holm_p(tmp_path):
    report = build_report([str(sweep(tmp_path / "runs", range(5)))], str(tmp_path / "out"), reps=200)
    text = report.read_text()
    assert "Per env (2 comparisons in this report; Holm-adjusted over all of them)" in text
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    tests = comparisons(scores, "none")
    fast = tests["aggregate"]["fast"]
    assert fast["p_improvement"] == 1.0 and fast["p"] == pytest.approx(2 / math.comb(10, 5))
    assert fast["verdict"] == "higher" and tests["aggregate"]["slow"]["verdict"] == "lower"
    assert fast["p_holm"] == pytest.approx(min(1.0, 2 * fast["p"]))


def test_verdict_lines_name_seed_counts_and_do_not_overclaim_at_two_seeds(tmp_path):
    build_report([str(sweep(tmp_path / "runs", range(2)))], str(tmp_path / "out"), reps=200)
    lines = verdict_lines(pd.read_csv(tmp_path / "out" / "scores.csv"), "none", reps=200)
    fast = next(line for line in lines if line.startswith("fast vs none"))
    # P = 1.000 from 2 x 2 runs: p = 2 / C(4, 2) = 0.33, so "level", with the counts and a range
    assert "level" in fast and "P(fast > none) = 1.000" in fast and "exact p = 0.333" in fast
    assert "2 vs 2 runs x 1 env(s)" in fast and "(range " in fast
    assert any("not bootstrap intervals" in line for line in lines)


def test_threshold_ladder_uses_fixed_targets_and_counts_never(tmp_path):
    build_report([str(sweep(tmp_path / "runs", range(3)))], str(tmp_path / "out"), reps=200)
    ladder = pd.read_csv(tmp_path / "out" / "threshold_ladder.csv")
    assert sorted(ladder["threshold"].unique()) == [0.25, 0.5, 0.75, 0.9]
    assert ladder.groupby("threshold")["target"].nunique().eq(1).all()  # one target for every variant
    at = ladder.set_index(["variant", "threshold"])
    assert at.loc[("fast", 0.5), "steps"] < at.loc[("none", 0.5), "steps"]
    assert math.isnan(at.loc[("slow", 0.9), "steps"]) and at.loc[("slow", 0.9), "runs_reaching"] == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "never (0/3 runs)" in text and "(plateau-sensitive)" in text


def test_aggregate_figure_label_sits_below_the_tick_labels():
    from rlaux.compare.plots import _xlabel_y

    for rows in (1, 2, 6, 12):
        height = 0.37 * rows
        assert (0.11 - _xlabel_y(rows)) * height >= 0.7  # inches between the axes' bottom and the label


def test_missing_seeds_are_refused_before_anything_is_written(tmp_path, capsys):
    from rlaux.cli import main

    runs = sweep(tmp_path / "runs", range(3), skip={"fast": (2,)})
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"fast on MinAtar/Breakout lacks seeds \[2\]"):
        build_report([str(runs)], str(out), reps=50)
    assert not out.exists()
    assert main(["compare", "--from", str(runs), "--out", str(out), "--reps", "50"]) == 2
    assert "--allow-missing-seeds" in capsys.readouterr().err and not out.exists()
    assert main(["compare", "--from", str(runs), "--out", str(out), "--reps", "50", "--allow-missing-seeds"]) == 0
    assert (out / "report.md").is_file()


def test_compute_spent_is_read_from_progress_csv(tmp_path):
    root = sweep(tmp_path / "runs", range(2), variants=("none", "fast"))
    for seed, (steps, seconds) in enumerate([(100, 10.0), (300, 30.0)]):
        run = root / f"fast-s{seed}"
        pd.DataFrame({"time/time_elapsed": [seconds / 2, seconds], "train/n_updates": [steps / 2, steps],
                      "time/total_timesteps": [5000, 10000]}).to_csv(run / "progress.csv", index=False)
    text = build_report([str(root)], str(tmp_path / "out"), reps=50).read_text()
    section = text.split("## Compute spent")[1].split("##")[0]
    assert "| fast | 2 | 200 | 20 | 500 |" in section  # medians: 200 steps, 20 s; 10,000 env steps / 20 s
    assert "| none | 2 | not logged | not logged | n/a |" in section


def test_a_report_that_fails_midway_leaves_the_earlier_one_as_it_was(tmp_path, monkeypatch):
    from rlaux.compare import plots

    root = sweep(tmp_path / "runs", range(2), variants=("none", "fast"))
    out = tmp_path / "out"
    build_report([str(root)], str(out), reps=50)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "plot_performance_profile", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report([str(root)], str(out), reps=50, n_points=20)  # would change curves.csv
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.partial-")] == []


def test_wall_time_of_a_resumed_run_sums_its_segments(tmp_path):
    """SB3 restarts time/time_elapsed at a resume, after the log is cut back to the checkpoint: the run's wall
    time is the sum of each segment's last value, not the last value alone."""
    from rlaux.compare.results import read_compute

    pd.DataFrame({"time/time_elapsed": [10.0, 20.0, 4.0, 9.0, 2.0, 3.0], "train/n_updates": [1, 2, 3, 4, 5, 6]}
                 ).to_csv(tmp_path / "progress.csv", index=False)
    assert read_compute(tmp_path) == (20.0 + 9.0 + 3.0, 6)
    pd.DataFrame({"time/time_elapsed": [1.0, 5.0], "train/n_updates": [1, 2]}).to_csv(tmp_path / "progress.csv",
                                                                                       index=False)
    assert read_compute(tmp_path) == (5.0, 2)
