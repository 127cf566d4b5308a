"""Tests of rlaux.compare on synthetic run folders with known answers (fast: small reps)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlaux.errors import ConfigError

BUDGET = 10_000
EPISODE_LENGTH = 100
REPS = 200


def write_run(
    root: Path,
    name: str,
    returns_at: Callable[[int], float],
    *,
    variant: str = "none",
    seed: int = 0,
    game: str | None = "Breakout",
    env: str = "MinAtar",
    budget: int = BUDGET,
    n_envs: int = 2,
    finished: bool = True,
    extra_config: dict | None = None,
    episode_steps: bool = True,
) -> Path:
    """A fake run folder: episodes of EPISODE_LENGTH steps; the episode ending at step s returns returns_at(s).

    Its ``episode_steps.csv`` places them at those steps; without it (``episode_steps=False``, a run of rlaux
    before that file) they are read from the Monitor files, where ts2xy gives the same steps."""
    run_dir = root / name
    (run_dir / "monitor").mkdir(parents=True)
    config = {
        "env": env,
        "game": game,
        "env_id": f"{env}/{game}-v1" if game else env,
        "algo": "ppo",
        "aux": [] if variant == "none" else variant.split("+"),
        "aux_label": variant,
        "seed": seed,
        "timesteps": budget,
        "n_envs": n_envs,
        **(extra_config or {}),
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    files = [(run_dir / "monitor" / f"{rank}.monitor.csv").open("w") for rank in range(n_envs)]
    for f in files:
        f.write('#{"t_start": 1000.0, "env_id": "x"}\nr,l,t\n')
    rows = ["step,rank,r,l"]
    for i in range(budget // EPISODE_LENGTH):
        end_step = (i + 1) * EPISODE_LENGTH
        files[i % n_envs].write(f"{returns_at(end_step)},{EPISODE_LENGTH},{0.01 * (i + 1):.4f}\n")
        rows.append(f"{end_step},{i % n_envs},{returns_at(end_step)},{EPISODE_LENGTH}")
    for f in files:
        f.close()
    if episode_steps:
        (run_dir / "episode_steps.csv").write_text("\n".join(rows) + "\n")
    if finished:
        (run_dir / "final_model.zip").write_bytes(b"zip")
    return run_dir


OFFSETS = {0: -0.1, 1: 0.0, 2: 0.1}  # symmetric: the IQM over 3 seeds (their mean) cancels them


def baseline_returns(seed: int) -> Callable[[int], float]:
    return lambda s: 10.0 * s / BUDGET + OFFSETS[seed]


def fast_returns(seed: int) -> Callable[[int], float]:
    return lambda s: min(10.0, 20.0 * s / BUDGET) + OFFSETS[seed]


def slow_returns(seed: int) -> Callable[[int], float]:
    return lambda s: 5.0 * s / BUDGET + OFFSETS[seed]


@pytest.fixture()
def sweep_dir(tmp_path: Path) -> Path:
    """3 seeds of 'none' (linear ramp to 10), 'fast' (twice as fast, capped) and 'slow' (half as fast)."""
    root = tmp_path / "runs"
    for seed in OFFSETS:
        write_run(root, f"none-s{seed}", baseline_returns(seed), variant="none", seed=seed)
        write_run(root, f"fast-s{seed}", fast_returns(seed), variant="fast", seed=seed)
        write_run(root, f"slow-s{seed}", slow_returns(seed), variant="slow", seed=seed)
    return root


# ---------------------------------------------------------------- environment


def test_rliable_imports() -> None:
    """rliable 1.2 needs arch, which breaks with pandas 3: the pinned versions must import."""
    from rliable import library as rly  # noqa: F401
    from rliable import metrics, plot_utils  # noqa: F401

    assert int(pd.__version__.split(".")[0]) < 3


# ---------------------------------------------------------------- results


def test_resample_curve_mean_of_last_window() -> None:
    from rlaux.compare.results import resample_curve

    steps = np.array([10, 20, 30, 40])
    returns = np.array([1.0, 2.0, 3.0, 4.0])
    grid = np.array([5, 20, 35, 40])
    values = resample_curve(steps, returns, grid, window=2)
    # before the first episode end: back-filled with the first episode
    np.testing.assert_allclose(values, [1.0, 1.5, 2.5, 3.5])


def test_load_runs_reads_keys_and_steps(sweep_dir: Path) -> None:
    from rlaux.compare.results import load_runs

    loaded = load_runs([sweep_dir])
    assert loaded.warnings == []
    assert len(loaded.runs) == 9
    run = next(r for r in loaded.runs if r.key == ("MinAtar/Breakout", "fast", 1))
    # episode_steps.csv's env steps (the Monitor files, interleaved by time, give the same here)
    np.testing.assert_array_equal(run.episode_steps, np.arange(1, 101) * EPISODE_LENGTH)
    assert run.episode_returns[-1] == pytest.approx(10.0) and run.step_axis == "env"


def test_episodes_sit_at_their_env_step_and_runs_without_it_are_marked(tmp_path: Path) -> None:
    """episode_steps.csv places each episode (not ts2xy's summed finished lengths); a run without one, or whose
    file lacks Monitor episodes, falls back to ts2xy and the loaded runs say so."""
    from rlaux.compare.results import load_runs, read_run

    new = write_run(tmp_path / "a", "new", baseline_returns(0), seed=0)
    lines = (new / "episode_steps.csv").read_text().splitlines()
    # the env step of each end is later than ts2xy's sum (the other env's running episode); a cut last line
    # (a run killed while writing it) is not a row
    shifted = [lines[0]] + [f"{int(row.split(',')[0]) + 50},{row.split(',', 1)[1]}" for row in lines[1:]]
    (new / "episode_steps.csv").write_text("\n".join(shifted) + "\n9999")
    run = read_run(new)
    assert run.step_axis == "env"
    np.testing.assert_array_equal(run.episode_steps, np.arange(1, 101) * EPISODE_LENGTH + 50)

    old = write_run(tmp_path / "a", "old", baseline_returns(1), seed=1, episode_steps=False)
    short = write_run(tmp_path / "a", "short", baseline_returns(2), seed=2)
    (short / "episode_steps.csv").write_text("\n".join(lines[:-3]) + "\n")  # begun at older code, resumed
    for folder in (old, short):
        run = read_run(folder)
        assert run.step_axis == "finished"
        np.testing.assert_array_equal(run.episode_steps, np.arange(1, 101) * EPISODE_LENGTH)

    notes = [w for w in load_runs([tmp_path / "a"]).warnings if "ts2xy" in w]
    assert len(notes) == 1 and notes[0].startswith("2 of 3 runs place each episode") and "look faster" in notes[0]
    assert not any("ts2xy" in w for w in load_runs([new]).warnings)
    notes = [w for w in load_runs([old]).warnings if "ts2xy" in w]
    assert len(notes) == 1 and notes[0].startswith("every run places each episode") and "faster" not in notes[0]


def test_variant_of_a_run_is_its_aux_label_else_the_task_label() -> None:
    from rlaux.compare.results import variant_label

    assert variant_label({"aux_label": "reward_pred[reward_pred=0.5]", "aux": ["reward_pred"]}) == \
        "reward_pred[reward_pred=0.5]"
    assert variant_label({"aux": ["unreal"]}) == "reward_pred+value_replay+pixel_control"
    assert variant_label({"aux": []}) == variant_label({}) == "none"


def test_runs_of_several_algorithms_are_labelled_with_their_algorithm(tmp_path: Path) -> None:
    from rlaux.compare.report import build_report, resolve_baseline
    from rlaux.compare.results import load_runs
    from rlaux.compare.runs import split_algorithm

    root = tmp_path / "runs"
    for algo, variant in [("ppo_lstm", "none"), ("ppo_lstm", "unreal"), ("ppo", "unreal")]:
        write_run(root, f"{algo}-{variant}", baseline_returns(1), variant=variant, seed=1, extra_config={"algo": algo})
    loaded = load_runs([root])
    assert loaded.warnings == []  # ppo unreal and ppo_lstm unreal are two variants, not duplicates
    assert sorted(r.variant for r in loaded.runs) == ["ppo:unreal", "ppo_lstm:none", "ppo_lstm:unreal"]
    assert sorted(r.variant for r in load_runs([root / "ppo_lstm-none", root / "ppo_lstm-unreal"]).runs) == \
        ["none", "unreal"]  # one algorithm: the bare labels
    assert split_algorithm("ppo_lstm:none") == ("ppo_lstm", "none")
    assert split_algorithm("reward_pred@linear:1:0:0.5") == (None, "reward_pred@linear:1:0:0.5")
    variants = ["ppo:none", "ppo_lstm:none", "ppo_lstm:unreal"]
    assert resolve_baseline("ppo_lstm:unreal", variants) == resolve_baseline("unreal", variants) == "ppo_lstm:unreal"
    with pytest.raises(ConfigError, match="several algorithms; name one: ppo:none, ppo_lstm:none"):
        resolve_baseline("none", variants)
    text = build_report([str(root)], str(tmp_path / "out"), reps=REPS).read_text()  # default baseline none
    assert "(baseline: `ppo_lstm:none`)" in text and "| ppo:unreal |" in text


def test_curves_csv_is_tidy(sweep_dir: Path, tmp_path: Path) -> None:
    from rlaux.compare.results import curves_frame, load_runs, write_curves_csv

    frame = curves_frame(load_runs([sweep_dir]).runs, n_points=50)
    path = write_curves_csv(frame, tmp_path / "curves.csv")
    table = pd.read_csv(path)
    assert list(table.columns) == ["env", "variant", "seed", "step", "return"]
    assert len(table) == 9 * 50
    assert table["step"].max() == BUDGET and table["step"].min() == BUDGET // 50


def test_corrupt_and_unfinished_runs_are_named_and_left_out(sweep_dir: Path) -> None:
    from rlaux.compare.results import load_runs, short_dir

    bad_csv = write_run(sweep_dir, "bad-csv", baseline_returns(0), seed=7)
    (bad_csv / "monitor" / "0.monitor.csv").write_text("garbage without header\n1,2\n")
    bad_config = write_run(sweep_dir, "bad-config", baseline_returns(0), seed=8)
    (bad_config / "config.json").write_text("{not json")
    empty = write_run(sweep_dir, "empty", baseline_returns(0), seed=9, budget=BUDGET)
    for f in (empty / "monitor").iterdir():
        f.write_text('#{"t_start": 0}\nr,l,t\n')
    unfinished = write_run(sweep_dir, "unfinished", baseline_returns(0), seed=10, finished=False)
    loaded = load_runs([sweep_dir])
    assert len(loaded.runs) == 9
    text = "\n".join(loaded.warnings)
    for folder, reason in [
        (bad_csv, "corrupt Monitor csv"),
        (bad_config, "config.json"),
        (empty, "no finished episode"),
        (unfinished, "unfinished"),
    ]:
        assert any(short_dir(folder) in w and reason in w for w in loaded.warnings), text
    assert len(load_runs([sweep_dir], include_unfinished=True).runs) == 10


def test_different_lengths_error_or_truncate(sweep_dir: Path) -> None:
    from rlaux.compare.results import load_runs

    write_run(sweep_dir, "long", baseline_returns(0), seed=5, budget=2 * BUDGET)
    with pytest.raises(ConfigError, match="different lengths"):
        load_runs([sweep_dir])
    loaded = load_runs([sweep_dir], truncate=True)
    assert {r.budget for r in loaded.runs} == {BUDGET}
    assert max(r.episode_steps.max() for r in loaded.runs) <= BUDGET
    assert any("truncated" in w for w in loaded.warnings)


# ---------------------------------------------------------------- stats


def _scores(sweep_dir: Path, window: int = 1):
    from rlaux.compare import stats
    from rlaux.compare.results import curves_frame, load_runs

    runs = load_runs([sweep_dir]).runs
    curves = curves_frame(runs, n_points=50, window=window)
    return runs, curves, stats.run_scores(runs, curves)


def test_final_and_auc_scores_known_values(sweep_dir: Path) -> None:
    _, _, scores = _scores(sweep_dir)
    base = scores[(scores["variant"] == "none") & (scores["seed"] == 1)].iloc[0]
    # episodes ending in (9000, 10000]: 9100..10000 -> mean 9550 -> 9.55
    assert base["final"] == pytest.approx(9.55)
    # window 1: curve at grid 200..10000 is 10*g/B -> mean = 10 * 5100/10000
    assert base["auc"] == pytest.approx(5.1)


def test_sample_efficiency_half_the_steps(sweep_dir: Path) -> None:
    from rlaux.compare import efficiency

    _, curves, scores = _scores(sweep_dir, window=1)
    table = efficiency.sample_efficiency(curves, scores, "none").set_index("variant")
    assert table.loc["none", "target"] == pytest.approx(9.55)
    assert table.loc["none", "steps"] == pytest.approx(9550)
    assert table.loc["none", "ratio"] == pytest.approx(1.0)
    assert table.loc["fast", "steps"] == pytest.approx(4775)
    assert table.loc["fast", "ratio"] == pytest.approx(0.5)
    assert np.isnan(table.loc["slow", "ratio"])  # not reached


def test_intervals_are_reproducible_and_leave_global_rng_alone(sweep_dir: Path) -> None:
    from rlaux.compare import stats

    _, _, scores = _scores(sweep_dir)
    scores = scores.assign(final=scores["final"] + np.random.default_rng(0).normal(size=len(scores)))
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = stats.per_env_intervals(scores, reps=REPS)
    assert np.random.rand() == expected_next  # global state restored
    np.random.seed(999)  # a different global state must not change the intervals
    second = stats.per_env_intervals(scores, reps=REPS)
    pd.testing.assert_frame_equal(first, second)
    assert (first["final_low"] <= first["final_iqm"]).all() and (first["final_iqm"] <= first["final_high"]).all()
    assert (first["final_low"] < first["final_high"]).all()
    other_seed = stats.per_env_intervals(scores, reps=REPS, seed=1)
    assert not np.allclose(first["final_low"], other_seed["final_low"])


def test_normalisation_sweep_range_and_reference(sweep_dir: Path) -> None:
    from rlaux.compare import stats

    runs, curves, scores = _scores(sweep_dir)
    norms = stats.normalisers(runs, curves)
    assert norms["MinAtar/Breakout"].method == "sweep range"
    normalised = stats.normalise(scores, norms)
    assert normalised["final_norm"].between(0, 1).all()
    ref = stats.normalisers(runs, curves, {"MinAtar/Breakout": (0.0, 20.0)})["MinAtar/Breakout"]
    assert (ref.method, ref(10.0)) == ("reference range", 0.5)


def test_atari_is_human_normalised(tmp_path: Path) -> None:
    from rlaux.compare import stats
    from rlaux.compare.results import curves_frame, load_runs

    write_run(tmp_path, "pong", lambda s: 14.6, env="Atari", game="Pong")
    runs = load_runs([tmp_path]).runs
    norm = stats.normalisers(runs, curves_frame(runs))["Atari/Pong"]
    assert norm.method == "human-normalised"
    assert norm(14.6) == pytest.approx(1.0) and norm(-20.7) == pytest.approx(0.0)


def test_probability_of_improvement(sweep_dir: Path) -> None:
    from rlaux.compare import stats

    _, _, scores = _scores(sweep_dir)
    matrices, envs, warnings = stats.score_matrices(scores, "final", ["none", "fast", "slow"])
    assert envs == ["MinAtar/Breakout"] and warnings == []
    poi = stats.probability_of_improvement(matrices, "none", reps=REPS)
    assert poi["fast"][0] > 0.5 > poi["slow"][0]
    with pytest.raises(ConfigError, match="baseline"):
        stats.probability_of_improvement(matrices, "nope", reps=REPS)


def test_spr_human_normalised_iqm_matches_published() -> None:
    """Recomputed SPR human-normalised IQM on Atari 100k: 0.337 [0.326, 0.348] (2000 reps)."""
    from rlaux.compare import stats

    matrices = stats.atari100k_matrices()
    assert matrices["SPR"].shape == (100, 26)
    point, low, high = stats.iqm_intervals({"SPR": matrices["SPR"]}, reps=2000)["SPR"]
    assert (round(point, 3), round(low, 3), round(high, 3)) == (0.337, 0.326, 0.348)
    curl = stats.iqm_intervals({"CURL": matrices["CURL"]}, reps=2000)["CURL"]
    assert round(curl[0], 3) == 0.113


# ---------------------------------------------------------------- report


def test_report_from_synthetic_runs(sweep_dir: Path, tmp_path: Path) -> None:
    from rlaux.compare.report import build_report
    from rlaux.compare.results import short_dir

    bad = write_run(sweep_dir, "corrupt", baseline_returns(0), seed=42)
    (bad / "monitor" / "0.monitor.csv").write_text("no header\n")
    out = tmp_path / "report"
    path = build_report([str(sweep_dir)], str(out), baseline="none", reps=REPS)
    text = path.read_text()
    assert path == out / "report.md"
    for heading in ["Per env", "Aggregate", "Probability of improvement", "Sample efficiency", "Runs left out"]:
        assert heading in text
    assert "How to read this" in text and "not reached" in text and short_dir(bad) in text
    assert "Budget (env steps per run): MinAtar/Breakout: 10,000" in text
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["aggregate_intervals.png", "curves_MinAtar_Breakout.png", "performance_profile.png"]
    for name in pngs:
        assert f"figures/{name}" in text
        assert (out / "figures" / name).stat().st_size > 1000
    assert (out / "curves.csv").is_file() and (out / "scores.csv").is_file()


def test_report_bad_input(sweep_dir: Path, tmp_path: Path) -> None:
    from rlaux.compare.report import build_report

    with pytest.raises(ConfigError, match="baseline 'nope'"):
        build_report([str(sweep_dir)], str(tmp_path / "r"), baseline="nope", reps=REPS)
    with pytest.raises(ConfigError, match="unknown reference"):
        build_report([str(sweep_dir)], str(tmp_path / "r"), reference="atari200k", reps=REPS)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no readable runs"):
        build_report([str(empty)], str(tmp_path / "r"), reps=REPS)


def test_report_atari100k_reference(tmp_path: Path) -> None:
    from rlaux.compare.report import build_report

    root = tmp_path / "runs"
    for game, score in [("Pong", -20.0), ("Breakout", 10.0)]:
        for seed in range(2):
            write_run(root, f"{game}-none-{seed}", lambda s, v=score, k=seed: v + k, env="Atari", game=game, seed=seed)
            write_run(
                root,
                f"{game}-rp-{seed}",
                lambda s, v=score, k=seed: v + 2 + k,
                env="Atari",
                game=game,
                seed=seed,
                variant="reward_pred",
            )
    path = build_report([str(root)], str(tmp_path / "out"), reference="atari100k", reps=REPS)
    text = path.read_text()
    assert "Atari 100k" in text and "SPR" in text and "ours: reward_pred" in text
    assert "breakout, pong" in text
    assert (tmp_path / "out" / "figures" / "atari100k_iqm.png").is_file()


# ---------------------------------------------------------------- sweep


def test_build_train_command_is_pure() -> None:
    from rlaux.compare.sweep import SweepJob, build_train_command

    job = SweepJob("Atari", "Pong", "reward_pred,pixel_control", 3, 1000, ("--n-envs", "2"))
    command = build_train_command(job, "/out/runs", python="py")
    assert command == [
        "py",
        "-m",
        "rlaux.cli",
        "train",
        "--env",
        "Atari",
        "--game",
        "Pong",
        "--aux",
        "reward_pred,pixel_control",
        "--seed",
        "3",
        "--timesteps",
        "1000",
        "--log-dir",
        "/out/runs",
        "--run-name",
        "Atari-Pong__reward_pred+pixel_control__s3",
        "--save-freq",
        "100",
        "--n-envs",
        "2",
    ]
    resume = SweepJob("Atari", "Pong", "none", 3, 1000, ("--n-envs", "2", "--device", "cpu", "--no-progress", "-v=0"))
    assert build_train_command(resume, "/out/runs", python="py", resume=True) == [
        "py", "-m", "rlaux.cli", "train", "--resume", "/out/runs/Atari-Pong__none__s3", "--device", "cpu",
        "--no-progress", "-v=0"]  # only the flags --resume accepts
    assert "--game" not in build_train_command(SweepJob("MinAtar", None, "none", 0, 10), "x")


def test_a_variant_of_its_own_algorithm_names_it_in_command_and_folder() -> None:
    from rlaux.compare.sweep import SweepGrid, build_train_command

    jobs = SweepGrid(["MinAtar"], ["ppo_lstm:unreal", ("ppo", "unreal"), "none"], 1, 100).jobs()
    assert [(j.algo, j.variant_key, j.run_name) for j in jobs] == [
        ("ppo_lstm", "ppo_lstm:unreal", "MinAtar__ppo_lstm__unreal__s0"),
        ("ppo", "ppo:unreal", "MinAtar__ppo__unreal__s0"),
        (None, "none", "MinAtar__none__s0"),
    ]
    assert build_train_command(jobs[0], "x")[6:10] == ["--aux", "unreal", "--algo", "ppo_lstm"]
    assert "--algo" not in build_train_command(jobs[2], "x")


def test_sweep_grid_validation() -> None:
    from rlaux.compare.sweep import SweepGrid

    jobs = SweepGrid(["MinAtar:Breakout", ("Atari", "Pong")], ["none", "reward_pred"], 2, 100).jobs()
    assert len(jobs) == 8 and {j.seed for j in jobs} == {0, 1}
    with pytest.raises(ConfigError, match="--seeds must be >= 1"):
        SweepGrid(["MinAtar"], ["none"], 0, 100).jobs()
    with pytest.raises(ConfigError, match="variant"):
        SweepGrid(["MinAtar"], [], 1, 100).jobs()


def test_sweep_resume_skips_finished_and_redoes_unfinished(tmp_path: Path, monkeypatch) -> None:
    from rlaux.compare.sweep import THREAD_VARIABLES, SweepGrid, run_sweep

    for name in THREAD_VARIABLES:  # the test session sets OMP_NUM_THREADS; the split below is compare's own
        monkeypatch.delenv(name, raising=False)

    grid = SweepGrid(["MinAtar:Breakout"], ["none", "reward_pred"], 2, 100)
    launched: list[list[str]] = []
    envs: list[dict[str, str]] = []

    def fake_launch(command: list[str], env: dict[str, str], log_path: Path) -> int:
        launched.append(command)
        envs.append(env)
        run_dir = Path(command[command.index("--log-dir") + 1]) / command[command.index("--run-name") + 1]
        assert not run_dir.exists()  # unfinished folders were removed before relaunch
        run_dir.mkdir(parents=True)
        if "reward_pred" in command and "1" == command[command.index("--seed") + 1]:
            return 1  # a crash: no final model
        (run_dir / "final_model.zip").write_bytes(b"zip")
        return 0

    runs = tmp_path / "runs"
    finished = runs / "MinAtar-Breakout__none__s0"
    finished.mkdir(parents=True)
    (finished / "final_model.zip").write_bytes(b"zip")
    stale = runs / "MinAtar-Breakout__none__s1"
    stale.mkdir()
    (stale / "partial.txt").write_text("interrupted")

    outcomes = run_sweep(grid, tmp_path, workers=2, launch=fake_launch, cores=4)
    status = {o.job.run_name: o.status for o in outcomes}
    assert status == {
        "MinAtar-Breakout__none__s0": "skipped",
        "MinAtar-Breakout__none__s1": "done",
        "MinAtar-Breakout__reward_pred__s0": "done",
        "MinAtar-Breakout__reward_pred__s1": "failed",
    }
    assert len(launched) == 3 and not (stale / "partial.txt").exists()
    assert all(e["OMP_NUM_THREADS"] == e["TORCH_NUM_THREADS"] == e["MKL_NUM_THREADS"] == "2" for e in envs)

    launched.clear()
    outcomes = run_sweep(grid, tmp_path, workers=1, launch=fake_launch, cores=1)
    assert [c[c.index("--run-name") + 1] for c in launched] == ["MinAtar-Breakout__reward_pred__s1"]
    assert [o.status for o in outcomes].count("skipped") == 3


def test_a_thread_count_the_caller_sets_wins_over_the_split_of_cores() -> None:
    from rlaux.compare.sweep import THREAD_VARIABLES, thread_env

    assert thread_env(2, cores=4, base={})["TORCH_NUM_THREADS"] == "2"
    assert thread_env(1, cores=4, base={"PATH": "/bin"})["OMP_NUM_THREADS"] == "4"
    chosen = thread_env(1, cores=4, base={"MKL_NUM_THREADS": " 1 ", "OMP_NUM_THREADS": ""})
    assert [chosen[name] for name in THREAD_VARIABLES] == ["1", "1", "1"]
    assert thread_env(2, cores=4, base={"OMP_NUM_THREADS": "3"})["TORCH_NUM_THREADS"] == "3"
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS='two' is not a thread count"):
        thread_env(1, base={"OMP_NUM_THREADS": "two"})


def test_sweep_ray_backend_without_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from rlaux.compare.sweep import SweepGrid, run_sweep

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r'backend \'ray\' needs the optional package ray: pip install "rlaux\[ray\]"'):
        run_sweep(SweepGrid(["MinAtar"], ["none"], 1, 10), tmp_path, backend="ray")


def test_report_names_the_folders_it_read_without_machine_paths(sweep_dir: Path, tmp_path: Path) -> None:
    from rlaux.compare.report import build_report

    inside = build_report([str(sweep_dir)], str(sweep_dir.parent), baseline="none", reps=REPS).read_text()
    assert f"from {sweep_dir.name}\n" in inside  # under the report's folder: relative to it
    write_run(sweep_dir, "unfinished", baseline_returns(0), seed=10, finished=False)  # named in the notes
    outside = build_report([str(sweep_dir)], str(tmp_path / "elsewhere" / "report"), baseline="none", reps=REPS)
    runs_line = next(line for line in outside.read_text().splitlines() if line.startswith("- Runs read:"))
    assert runs_line.endswith(f"from .../{sweep_dir.parent.name}/{sweep_dir.name}")
    assert "left out, unfinished" in outside.read_text()  # the notes name runs too
    assert str(tmp_path) not in outside.read_text()
