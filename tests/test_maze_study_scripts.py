"""The maze study's own scripts (docs/results/miniworld): scores by training window with exact tests, and the
logged auxiliary metrics kept per run so that a report can be rebuilt without the run folders."""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import pandas as pd
import pytest

from rlaux.run_folder import RunFolder, RunRecord

STUDY = Path(__file__).parent.parent / "docs" / "results" / "miniworld"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"maze_{name}", STUDY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def episodes_table(path: Path) -> Path:
    """Five seeds of 'fast' (early return 1, then 0) and of 'slow' (early 0, then 1): episodes at steps 50 and 150."""
    rows = []
    for variant, early, late in (("fast", 1.0, 0.0), ("slow", 0.0, 1.0)):
        for seed in range(5):
            rows += [{"variant": variant, "seed": seed, "step": 50, "return": early + 0.01 * seed},
                     {"variant": variant, "seed": seed, "step": 150, "return": late}]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_windows_scores_each_window_and_tests_exactly_with_holm(tmp_path, capsys):
    windows = load_script("windows")
    table = episodes_table(tmp_path / "episodes.csv")
    windows.main([str(table), "--windows", "0:100,100:200", "--compare", "fast:slow"])
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    early, late = frame.iloc[0], frame.iloc[1]
    assert (early["window"], early["p_improvement"], late["p_improvement"]) == ("0:100", 1.0, 0.0)
    assert early["iqm"] == pytest.approx(1.02) and early["other_max"] == pytest.approx(0.04)
    one_split = 2 / math.comb(10, 5)  # the observed split and its mirror image, of 252 (CSV keeps 4 digits)
    assert early["p_value"] == pytest.approx(one_split, rel=1e-3) and late["p_value"] == pytest.approx(one_split, rel=1e-3)
    assert early["p_holm"] == pytest.approx(2 * one_split, rel=1e-3) and set(frame["comparisons"]) == {2}
    assert early["seeds"].split()[0] == "0:1.000"


@pytest.mark.parametrize("flags, message", [
    (["--windows", "0:100", "--compare", "fast:nobody"], "unknown variant(s) ['nobody']"),
    (["--windows", "0:x", "--compare", "fast:slow"], "'0:x' is not two ints"),
    (["--windows", "200:300", "--compare", "fast:slow"], "no episodes of 'fast' or 'slow' end in 200:300"),
])
def test_windows_rejects_bad_input_in_one_line(tmp_path, flags, message):
    windows = load_script("windows")
    with pytest.raises(SystemExit) as exit_:
        windows.main([str(episodes_table(tmp_path / "episodes.csv")), *flags])
    assert message in str(exit_.value)


def fake_run(root: Path, label: str | None, seed: int, finished: bool = True) -> None:
    folder = RunFolder(root / f"MiniWorld-MazeS3__unreal__s{seed}{label or ''}")
    folder.write(RunRecord(request={"env": "MiniWorld", "game": "MazeS3", "seed": seed, "label": label},
                           resolved={"algo": "ppo_lstm", "timesteps": 1000, "aux": ["reward_pred"],
                                     "aux_label": label or "reward_pred", "seed": seed}))
    steps = list(range(100, 1001, 100))
    pd.DataFrame({"time/total_timesteps": steps, "train/grad_norm": [seed + s / 1000 for s in steps],
                  "aux/reward_pred/loss": [1.0] * 10, "aux/reward_pred/weight": [0.05] * 10}
                 ).to_csv(folder.progress_csv, index=False)
    if finished:
        folder.model_file("final").write_bytes(b"")


def test_aux_metrics_per_run_table_summarises_as_from_the_folders(tmp_path, capsys):
    aux_metrics = load_script("aux_metrics")
    for seed in range(3):
        fake_run(tmp_path, "lower", seed)
    fake_run(tmp_path, "lower", 3, finished=False)
    aux_metrics.main(["--per-run", str(tmp_path)])
    per_run = capsys.readouterr().out
    frame = pd.read_csv(io.StringIO(per_run))
    assert sorted(frame["seed"].unique()) == [0, 1, 2] and set(frame["variant"]) == {"lower"}
    assert "aux/reward_pred/weight" not in frame.columns and len(frame) == 3 * aux_metrics.WINDOWS
    first = frame[(frame["seed"] == 2) & (frame["steps_to"] == 200)]
    assert first["train/grad_norm"].item() == pytest.approx(2.15)  # steps 100 and 200 fall in window 0
    (tmp_path / "per_run.csv").write_text(per_run)
    aux_metrics.main(["--from-table", str(tmp_path / "per_run.csv")])
    from_table = capsys.readouterr().out
    aux_metrics.main([str(tmp_path)])
    assert capsys.readouterr().out == from_table
    summary = pd.read_csv(io.StringIO(from_table))
    assert summary.loc[0, "train/grad_norm"] == pytest.approx(1.15) and summary.loc[0, "seeds"] == 3
