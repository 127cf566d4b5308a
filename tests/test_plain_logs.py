"""Reports from committed raw data (episodes.csv.gz) and from other tools' per-run logs (manifest.csv)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlaux.cli import main
from rlaux.compare.results import load_runs

sys.path.insert(0, str(Path(__file__).parent))
from test_compare import baseline_returns, fast_returns, write_run  # noqa: E402


def test_a_report_rebuilds_from_its_episodes_alone(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in range(3):
        write_run(runs, f"none-s{seed}", baseline_returns(seed), variant="none", seed=seed)
        write_run(runs, f"fast-s{seed}", fast_returns(seed), variant="fast", seed=seed)
    first, second = tmp_path / "first", tmp_path / "second"
    assert main(["compare", "--from", str(runs), "--out", str(first), "--reps", "100"]) == 0
    raw = first / "episodes.csv.gz"
    assert raw.is_file() and raw.stat().st_size < 20_000
    assert main(["compare", "--from", str(raw), "--out", str(second), "--reps", "100"]) == 0
    for name in ("curves.csv", "scores.csv", "threshold_ladder.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    strip = lambda text: [line for line in text.splitlines() if not line.startswith("- Runs read:")]  # noqa: E731
    assert strip((first / "report.md").read_text()) == strip((second / "report.md").read_text())
    # the run folders win over a table holding the same runs, and the report says so
    loaded = load_runs([runs, raw])
    assert len(loaded.runs) == 6 and any("also found as run folders" in w for w in loaded.warnings)


def test_the_episodes_table_keeps_each_runs_step_axis(tmp_path):
    """A table over runs on the env-step axis and older ones (ts2xy) keeps which is which; a table written
    before the column existed reads as ts2xy's, and is written again without the column (byte for byte)."""
    from rlaux.compare.plain_logs import read_episodes_table, write_episodes

    runs = tmp_path / "runs"
    write_run(runs, "new", baseline_returns(0), seed=0)
    write_run(runs, "old", baseline_returns(1), seed=1, episode_steps=False)
    loaded = load_runs([runs]).runs
    both = write_episodes(loaded, tmp_path / "both.csv.gz")
    assert {(r.seed, r.step_axis) for r in read_episodes_table(both)} == {(0, "env"), (1, "finished")}
    legacy = write_episodes([r for r in loaded if r.seed == 1], tmp_path / "legacy.csv")
    assert "step_axis" not in legacy.read_text().splitlines()[0]
    again = read_episodes_table(legacy)
    assert [r.step_axis for r in again] == ["finished"]
    assert write_episodes(again, tmp_path / "again.csv").read_bytes() == legacy.read_bytes()
    frame = pd.read_csv(both)
    frame.loc[frame["seed"] == 0, "step_axis"] = "frames"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="step_axis"):
        read_episodes_table(tmp_path / "bad.csv")


def test_a_sub_report_names_its_studys_episodes_instead_of_copying_them(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in range(3):
        write_run(runs, f"none-s{seed}", baseline_returns(seed), variant="none", seed=seed)
        write_run(runs, f"fast-s{seed}", fast_returns(seed), variant="fast", seed=seed)
    study = tmp_path / "study"
    assert main(["compare", "--from", str(runs), "--out", str(study), "--reps", "50"]) == 0
    sub = study / "vs-fast"
    sub.mkdir()
    (sub / "episodes.csv.gz").write_bytes((study / "episodes.csv.gz").read_bytes())  # a copy an older compare wrote
    argv = ["compare", "--from", str(study / "episodes.csv.gz"), "--out", str(sub), "--reps", "50", "--baseline", "fast"]
    assert main(argv) == 0
    assert not (sub / "episodes.csv.gz").exists() and (sub / "scores.csv").is_file()
    assert "- Data: `../episodes.csv.gz` (the study's episodes, not copied here:" in (sub / "report.md").read_text()
    assert main(argv) == 0 and (sub / "report.md").is_file()  # it regenerates from the study's table
    elsewhere = tmp_path / "elsewhere"  # not below the study: the report keeps its own copy
    assert main([*argv[:4], str(elsewhere), *argv[5:]]) == 0
    assert (elsewhere / "episodes.csv.gz").read_bytes() == (study / "episodes.csv.gz").read_bytes()
    assert main(["compare", "--from", str(study / "episodes.csv.gz"), "--out", str(study), "--reps", "50"]) == 0
    assert (study / "episodes.csv.gz").is_file()  # its own folder: rewritten, never removed


def test_a_report_over_two_algorithms_joins_new_seeds_from_run_folders(tmp_path, capsys):
    """A study of several algorithms writes "ppg:none" in its episodes; read back beside run folders of the next
    seeds, those are ppg's "none" again, not a third variant."""
    first_seeds, next_seeds = tmp_path / "first", tmp_path / "next"
    for algo, returns in (("ppo", baseline_returns), ("ppg", fast_returns)):
        for seed in range(3):
            root = first_seeds if seed < 2 else next_seeds
            write_run(root, f"{algo}-s{seed}", returns(seed), seed=seed, extra_config={"algo": algo})
    report = tmp_path / "report"
    assert main(["compare", "--from", str(first_seeds), "--out", str(report), "--reps", "50", "--baseline", "ppo:none"]) == 0
    assert set(pd.read_csv(report / "episodes.csv.gz")["variant"]) == {"ppo:none", "ppg:none"}
    loaded = load_runs([report / "episodes.csv.gz", next_seeds])
    seeds = {(r.variant, r.seed) for r in loaded.runs}
    assert seeds == {(f"{algo}:none", seed) for algo in ("ppo", "ppg") for seed in range(3)}


def test_a_one_algorithm_reports_episodes_join_the_studys_next_run_folders(tmp_path, capsys):
    """A report over one algorithm writes "none", not "a2c:none"; read back beside run folders of the next seeds
    (whose configs name a2c), its runs are a2c's, and the variants stay "none" and "fast"."""
    first_seeds, next_seeds = tmp_path / "first", tmp_path / "next"
    for variant, returns in (("none", baseline_returns), ("fast", fast_returns)):
        for seed in range(3):
            write_run(first_seeds if seed < 2 else next_seeds, f"{variant}-s{seed}", returns(seed), variant=variant,
                      seed=seed, extra_config={"algo": "a2c"})
    report = tmp_path / "report"
    assert main(["compare", "--from", str(first_seeds), "--out", str(report), "--reps", "50"]) == 0
    assert set(pd.read_csv(report / "episodes.csv.gz")["variant"]) == {"none", "fast"}
    loaded = load_runs([report / "episodes.csv.gz", next_seeds])
    assert {(r.variant, r.seed) for r in loaded.runs} == {(v, seed) for v in ("none", "fast") for seed in range(3)}
    assert any("taken as a2c, the algorithm of every other run read" in w for w in loaded.warnings)
    assert main(["compare", "--from", str(report / "episodes.csv.gz"), str(next_seeds), "--out", str(report),
                 "--reps", "50", "--baseline", "none"]) == 0
    assert "3 runs" in (report / "report.md").read_text().split("\n")[2]


def _other_tool_logs(folder: Path) -> Path:
    """CleanRL-like logs: one CSV per run, a 'charts/episodic_return' column, 'global_step' as the step."""
    folder.mkdir(parents=True)
    rows = []
    rng = np.random.default_rng(0)
    for variant, slope in (("cleanrl_ppo", 1.0), ("rlaux_ppo", 1.5)):
        for seed in range(5):
            steps = np.arange(1, 101) * 100
            returns = slope * steps / 1000 + rng.normal(0, 0.1, len(steps))
            name = f"{variant}_{seed}.csv"
            pd.DataFrame({"global_step": steps, "charts/episodic_return": returns}).to_csv(folder / name, index=False)
            rows.append({"file": name, "env": "MinAtar/Breakout", "variant": variant, "seed": seed, "budget": 10_000,
                         "step_column": "global_step", "return_column": "charts/episodic_return"})
    # a published log written every 1,000 steps, without a step column
    pd.DataFrame({"score": np.linspace(1, 10, 10)}).to_csv(folder / "published.csv", index=False)
    rows.append({"file": "published.csv", "env": "MinAtar/Breakout", "variant": "published", "seed": 0,
                 "budget": 10_000, "return_column": "score", "steps_per_row": 1000})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def test_compare_reads_other_tools_logs_through_a_manifest(tmp_path, capsys):
    logs = _other_tool_logs(tmp_path / "logs")
    loaded = load_runs([logs])
    published = next(r for r in loaded.runs if r.variant == "published")
    assert published.episode_steps.tolist() == list(range(1000, 10_001, 1000))
    out = tmp_path / "out"
    code = main(["compare", "--from", str(logs), "--out", str(out), "--reps", "100", "--baseline", "cleanrl_ppo",
                 "--allow-missing-seeds"])
    assert code == 0, capsys.readouterr().err
    text = (out / "report.md").read_text()
    assert "rlaux_ppo vs cleanrl_ppo: higher" in text and "5 vs 5 runs x 1 env(s)" in text


def test_a_bad_manifest_is_named(tmp_path):
    logs = _other_tool_logs(tmp_path / "logs")
    manifest = pd.read_csv(logs / "manifest.csv")
    manifest.loc[0, "return_column"] = "nope"
    manifest.to_csv(logs / "manifest.csv", index=False)
    loaded = load_runs([logs])
    assert not loaded.runs
    assert any("no return column 'nope'" in w for w in loaded.warnings)
    with pytest.raises(Exception, match="no return column 'nope'"):
        from rlaux.compare.report import build_report

        build_report([str(logs)], str(tmp_path / "out"), reps=50)


def test_a_committed_study_report_regenerates_from_its_committed_data(tmp_path):
    """docs/results/miniworld keeps curves.csv and scores.csv (its runs predate episodes.csv.gz): the command of
    docs/results/regenerate.sh rebuilds its report.md and tables exactly as committed."""
    import shutil

    study = Path(__file__).parent.parent / "docs" / "results" / "miniworld"
    copy = tmp_path / "miniworld"
    copy.mkdir()
    for name in ("curves.csv", "scores.csv"):
        shutil.copy(study / name, copy / name)
    assert main(["compare", "--from", str(copy), "--out", str(copy), "--baseline", "ppo_lstm:none",
                 "--curve-window", "100", "--allow-missing-seeds"]) == 0
    for name in ("report.md", "curves.csv", "scores.csv", "threshold_ladder.csv"):
        assert (copy / name).read_text() == (study / name).read_text(), name
