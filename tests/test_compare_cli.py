"""``train_agent.py compare``: bad input, suites (fake launches), a tiny real sweep, --from, resume, Ray."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rlaux.cli import main as cli_main
from rlaux.run_folder import RunFolder

TINY = ["--", "--n-envs", "2", "-params", "n_steps=64", "batch_size=64"]


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = cli_main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing launched


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--env", "MinAtar", "--games", "Breakout", "--aux", "none,bogus", "--timesteps", "100"], "unknown aux task 'bogus'"),
        (["--env", "MinAtar", "--games", "Breakout,Pacman", "--timesteps", "100"], "unknown MinAtar game 'Pacman'"),
        (["--env", "Atari", "--games", "Breakout,Pongg", "--timesteps", "100"], "unknown Atari game 'Pongg'"),
        (["--env", "MinAtar", "--seeds", "0", "--timesteps", "100"], "--seeds must be >= 1"),
        (["--env", "MinAtar", "--seeds", "1,1", "--timesteps", "100"], "duplicate seeds"),
        (["--env", "MinAtar", "--timesteps", "100", "--", "--seed", "3"], "set by the sweep"),
        (["--env", "MinAtar", "--timesteps", "100", "--", "--bogus"], "bad train flag after '--'"),
        (["--env", "MinAtar", "--aux", "reward_pred", "--baseline", "none", "--timesteps", "100"], "--baseline"),
        (["--env", "MinAtar", "--algo", "ppo,dqn", "--timesteps", "100"], "unknown algorithm 'dqn' in --algo"),
        (["--env", "MinAtar", "--algo", "ppo,ppo_lstm", "--baseline", "none", "--timesteps", "100"],
         "--baseline 'none' is run with several algorithms; name one: ppo:none, ppo_lstm:none"),
        (["--env", "MinAtar"], "--timesteps is required"),
        (["--suite", "atari1m"], "unknown suite 'atari1m'"),
        (["--from", "/nonexistent/folder"], "does not exist"),
        (["--env", "MinAtar", "--timesteps", "100", "--curve-window", "0"], "--curve-window must be >= 1 episode, got 0"),
        (["--from", ".", "--curve-window", "0"], "--curve-window must be >= 1 episode, got 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys, monkeypatch) -> None:
    import rlaux.compare.study

    def no_launch(*args, **kwargs):
        raise AssertionError("launched despite bad input")

    monkeypatch.setattr(rlaux.compare.study, "run_sweep", no_launch)
    code, out, err = _run([*argv[:2], "--out", str(tmp_path / "out"), *argv[2:]], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "out").exists()


def test_parse_seeds_and_variants() -> None:
    from rlaux.compare.study import parse_seeds, parse_variants
    from rlaux.tasks import variant_label

    assert parse_seeds("5") == 5 and parse_seeds("0,2,4") == [0, 2, 4]
    assert parse_variants("none,reward_pred+pixel_control,unreal") == ["none", "reward_pred,pixel_control", "unreal"]
    assert variant_label("unreal") == "reward_pred+value_replay+pixel_control"
    assert variant_label("none") == "none"
    assert parse_variants("none,ppo:reward_pred+pixel_control", ["a2c", "ppo_lstm"]) == [
        "a2c:none", "ppo_lstm:none", "ppo:reward_pred,pixel_control"]


def test_plan_study_without_the_cli(tmp_path) -> None:
    from rlaux.compare.study import plan_study

    plan = plan_study(env="MinAtar", games="Breakout,Asterix", aux="reward_pred,none", seeds="0,3", timesteps=100,
                      out=tmp_path / "p")
    assert len(plan.jobs) == 2 * 2 * 2 and plan.baseline == "none" and plan.out == tmp_path / "p"
    assert {j.seed for j in plan.jobs} == {0, 3} and plan.games == ["Breakout", "Asterix"]
    plan = plan_study(env="MinAtar", aux="unreal,reward_pred", timesteps=100, resolve_jobs=lambda jobs: {"unreal": "U"})
    assert plan.baseline == "U"  # the first variant, named as its runs will record it
    plan = plan_study(env="MinAtar", aux="ppo_lstm:none,ppo_lstm:unreal", timesteps=100)  # one algorithm: old names
    assert [j.run_name for j in plan.jobs][:2] == ["MinAtar__none__s0", "MinAtar__none__s1"]
    assert all(j.algo is None and j.extra_args[-2:] == ("--algo", "ppo_lstm") for j in plan.jobs)
    plan = plan_study(env="MinAtar", aux="none,a2c:none", timesteps=100, seeds="1")  # none: train's default, ppo
    assert [j.run_name for j in plan.jobs] == ["MinAtar__ppo__none__s0", "MinAtar__a2c__none__s0"]
    assert plan.baseline == "ppo:none"
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------- suites (no training)


def test_suite_definitions() -> None:
    from rlaux.compare.stats import atari100k_normalised_scores, game_key
    from rlaux.compare.suites import ATARI5_GAMES, SUITES, get_suite
    from rlaux.envs import resolve_env

    a100k = get_suite("atari100k")
    assert len(a100k.games) == 26 and a100k.timesteps == 100_000 and a100k.frames == 400_000
    assert {game_key(g) for g in a100k.games} == set(atari100k_normalised_scores()["SPR"])
    assert ATARI5_GAMES == ("BattleZone", "DoubleDunk", "NameThisGame", "Phoenix", "Qbert")
    assert get_suite("Atari-5") is SUITES["atari5"]
    spec = resolve_env(a100k.env, game="MsPacman")
    assert spec.env_id == "MsPacmanNoFrameskip-v4"  # no sticky actions
    assert spec.env_kwargs["max_num_frames_per_episode"] == 108_000  # 27,000 agent steps x frame skip 4
    assert spec.wrapper_kwargs["terminal_on_life_loss"] is True and spec.wrapper_kwargs["frame_skip"] == 4
    assert a100k.train_args() == ["--eval-freq", "100000", "--eval-episodes", "10"]


def test_suite_dry_run_prints_commands(tmp_path, capsys) -> None:
    code, out, _ = _run(["--suite", "atari100k", "--aux", "none,reward_pred", "--seeds", "2", "--dry-run",
                         "--out", str(tmp_path / "s")], capsys)
    assert code == 0
    commands = [line for line in out.splitlines() if line.startswith("-m rlaux.cli train")]
    assert len(commands) == 26 * 2 * 2
    assert all("--env Atari100k" in c and "--timesteps 100000" in c and "--eval-freq 100000" in c for c in commands)
    assert "--game UpNDown --aux reward_pred --seed 1" in out
    assert not (tmp_path / "s").exists()


def _fake_atari_run(command: list[str]) -> int:
    """Stands in for a training: a finished run folder with monitor csvs and a final evaluation."""
    arg = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}
    run_dir = Path(arg["--log-dir"]) / arg["--run-name"]
    (run_dir / "monitor").mkdir(parents=True)
    budget, seed, game = int(arg["--timesteps"]), int(arg["--seed"]), arg["--game"]
    aux = [] if arg["--aux"] == "none" else arg["--aux"].split(",")
    config = {"env": arg["--env"], "game": game, "env_id": f"{game}NoFrameskip-v4", "aux": aux,
              "aux_label": "+".join(aux) or "none", "seed": seed, "timesteps": budget}
    (run_dir / "config.json").write_text(json.dumps(config))
    bonus = 100.0 if aux else 0.0
    with (run_dir / "monitor" / "0.monitor.csv").open("w") as f:
        f.write('#{"t_start": 0.0, "env_id": "x"}\nr,l,t\n')
        for i in range(1, 21):
            f.write(f"{10.0 * i + seed + bonus},{budget // 20},{i}\n")
    eval_freq = int(arg["--eval-freq"])
    np.savez(run_dir / "evaluations.npz", timesteps=np.array([eval_freq]),
             results=np.full((1, int(arg["--eval-episodes"])), 1000.0 + bonus + seed), ep_lengths=np.ones((1, 3)))
    (run_dir / "final_model.zip").write_bytes(b"zip")
    return 0


def test_suite_atari5_with_fake_launch(tmp_path, capsys, monkeypatch) -> None:
    import rlaux.compare.study

    launched: list[list[str]] = []

    def fake_launch(command, env, log_path):
        launched.append(command)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("fake\n")
        return _fake_atari_run(command)

    monkeypatch.setattr(rlaux.compare.study, "launch_subprocess", fake_launch)
    out_dir = tmp_path / "a5"
    code, out, err = _run(["--suite", "atari5", "--aux", "none,reward_pred", "--seeds", "2", "--eval-episodes", "3",
                           "--reps", "50", "--workers", "2", "--out", str(out_dir)], capsys)
    assert code == 0, err
    assert len(launched) == 5 * 2 * 2
    assert all(c[c.index("--eval-episodes") + 1] == "3" and "--eval-freq" in c for c in launched)
    report = (out_dir / "report.md").read_text()
    assert "Atari 100k: beside published agents" in report and "| SPR |" in report
    assert "Games (ours and published, same set): battlezone, qbert" in report
    assert "final evaluation" in report
    import pandas as pd

    scores = pd.read_csv(out_dir / "scores.csv")
    assert (scores["final_source"] == "evaluation").all()
    assert set(scores["final"]) == {1000.0, 1001.0, 1100.0, 1101.0}  # the evaluation, not the training episodes
    assert (out_dir / "figures" / "atari100k_iqm.png").is_file()
    assert "sample efficiency" in out and "reward_pred" in out


# ---------------------------------------------------------------- several algorithms (no training)


def _fake_minatar_run(command: list[str]) -> int:
    """Stands in for a training: a finished run folder whose config names the run's algorithm."""
    from rlaux.tasks import parse_names, variant_label

    arg = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i].startswith("--")}
    run_dir = Path(arg["--log-dir"]) / arg["--run-name"]
    (run_dir / "monitor").mkdir(parents=True)
    budget, seed, aux = int(arg["--timesteps"]), int(arg["--seed"]), parse_names(arg["--aux"])
    config = {"env": arg["--env"], "game": arg["--game"], "algo": arg["--algo"], "aux": aux,
              "aux_label": variant_label(aux), "seed": seed, "timesteps": budget}
    (run_dir / "config.json").write_text(json.dumps(config))
    bonus = len(aux) + (0.5 if arg["--algo"] == "ppo" else 0.0)
    with (run_dir / "monitor" / "0.monitor.csv").open("w") as f:
        f.write('#{"t_start": 0.0, "env_id": "x"}\nr,l,t\n')
        for i in range(1, 21):
            f.write(f"{i + seed + bonus},{budget // 20},{i}\n")
    (run_dir / "final_model.zip").write_bytes(b"zip")
    return 0


def test_a_study_of_several_algorithms_dry_run_report_resume_and_from(tmp_path, capsys, monkeypatch) -> None:
    """Issue 13: ppo_lstm none vs ppo_lstm unreal vs ppo unreal, in one report."""
    import pandas as pd

    import rlaux.compare.study

    launched: list[list[str]] = []

    def fake_launch(command, env, log_path):
        launched.append(command)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("fake\n")
        return _fake_minatar_run(command)

    monkeypatch.setattr(rlaux.compare.study, "launch_subprocess", fake_launch)
    out_dir = tmp_path / "mix"
    argv = ["--env", "MinAtar", "--games", "Breakout", "--algo", "ppo_lstm", "--aux", "none,unreal,ppo:unreal",
            "--seeds", "2", "--timesteps", "1000", "--reps", "50", "--out", str(out_dir)]
    code, out, err = _run([*argv, "--dry-run"], capsys)
    assert code == 0, err
    commands = [line for line in out.splitlines() if line.startswith("-m rlaux.cli train")]
    assert [c.split("--run-name ")[1].split()[0] for c in commands] == [
        f"MinAtar-Breakout__{algo}__{aux}__s{seed}"
        for algo, aux in [("ppo_lstm", "none"), ("ppo_lstm", "unreal"), ("ppo", "unreal")] for seed in (0, 1)]
    assert "--aux unreal --algo ppo --seed 1" in out and "--aux unreal --algo ppo_lstm --seed 1" in out
    assert "the report's baseline: ppo_lstm:none" in out and not launched and not out_dir.exists()

    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert len(launched) == 6
    curves = pd.read_csv(out_dir / "curves.csv")
    unreal = "reward_pred+value_replay+pixel_control"
    assert sorted(set(curves["variant"])) == [f"ppo:{unreal}", "ppo_lstm:none", f"ppo_lstm:{unreal}"]
    assert "(baseline: `ppo_lstm:none`)" in (out_dir / "report.md").read_text()
    assert f"MinAtar/Breakout  ppo:{unreal}" in out  # the summary table

    code, out, err = _run(argv, capsys)  # resume: nothing to run
    assert code == 0 and "(0 to run, 6 already finished)" in out and len(launched) == 6

    rebuilt = tmp_path / "rebuilt"  # --from over both algorithms: the same labels; baseline none is ppo_lstm's
    code, out, err = _run(["--from", str(out_dir / "runs"), "--out", str(rebuilt), "--reps", "50"], capsys)
    assert code == 0, err
    assert pd.read_csv(rebuilt / "curves.csv").equals(curves)
    assert "(baseline: `ppo_lstm:none`)" in (rebuilt / "report.md").read_text()

    smoothed = tmp_path / "smoothed"  # each curve point averages more episodes
    code, out, err = _run(["--from", str(out_dir / "runs"), "--out", str(smoothed), "--reps", "50",
                           "--curve-window", "100"], capsys)
    assert code == 0, err
    assert "mean return of its last\n100 finished episodes" in (smoothed / "report.md").read_text()


# ---------------------------------------------------------------- a tiny real sweep, --from, resume


def test_tiny_real_sweep_from_and_resume(tmp_path, capsys) -> None:
    out_dir = tmp_path / "cmp"
    argv = ["--env", "MinAtar", "--games", "Breakout", "--aux", "none,reward_pred", "--seeds", "1",
            "--timesteps", "1000", "--workers", "2", "--reps", "100", "--out", str(out_dir), *TINY]
    code, out, err = _run(argv, capsys)
    assert code == 0, out + err
    names = [f"MinAtar-Breakout__{v}__s0" for v in ("none", "reward_pred")]
    for name in names:
        run = out_dir / "runs" / name
        assert (run / "final_model.zip").is_file() and list((run / "monitor").glob("*.monitor.csv"))
        assert (out_dir / "logs" / f"{name}.log").is_file()
        assert RunFolder(run).read()["n_envs"] == 2
    import pandas as pd

    curves = pd.read_csv(out_dir / "curves.csv")
    assert list(curves.columns) == ["env", "variant", "seed", "step", "return"]
    assert set(curves["variant"]) == {"none", "reward_pred"} and curves["step"].max() == 1000
    assert (out_dir / "figures" / "curves_MinAtar_Breakout.png").is_file()
    assert (out_dir / "report.md").is_file()
    assert f"report: {out_dir / 'report.md'}" in out
    assert "ratio" in out and "MinAtar/Breakout  reward_pred" in out
    assert "sweep: 2 done, 0 skipped" in out

    # Resume: the same command again runs nothing.
    mtime = (out_dir / "runs" / names[0] / "final_model.zip").stat().st_mtime
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    assert "(0 to run, 2 already finished)" in out and "sweep: 0 done, 2 skipped" in out
    assert (out_dir / "runs" / names[0] / "final_model.zip").stat().st_mtime == mtime

    # A run killed after a checkpoint (its final model and newer checkpoints gone) continues from it.
    from rlaux.run.checkpoint import checkpoint_dirs

    killed = out_dir / "runs" / names[1]
    (killed / "final_model.zip").unlink()
    kept, *newer = checkpoint_dirs(killed)
    assert newer, "each sweep job checkpoints during its run"
    for path in newer:
        shutil.rmtree(path)
    resumed_at = json.loads((kept / "state.json").read_text())["num_timesteps"]
    assert 0 < resumed_at < 1000
    code, out, err = _run([*argv[:argv.index("--")], "--dry-run", *TINY], capsys)
    assert code == 0 and f"[resume] -m rlaux.cli train --resume {killed} --no-progress" in out, out + err
    code, out, err = _run(argv, capsys)
    assert code == 0, out + err
    assert "(1 to run, 1 already finished; 1 resume from a checkpoint)" in out and "sweep: 1 done" in out
    progress = pd.read_csv(killed / "progress.csv")["time/total_timesteps"].to_numpy()
    assert progress[-1] >= 1000 and (np.diff(progress) == 128).all()  # no update lost or logged twice
    assert (killed / "final_model.zip").is_file()
    assert list((out_dir / "logs").glob(f"{names[1]}.interrupted-*.log"))  # the first part's log is kept

    # --from: rebuild the report elsewhere, from the run folders alone (no sweep files needed).
    rebuilt = tmp_path / "rebuilt"
    code, out, err = _run(["--from", str(out_dir / "runs"), "--out", str(rebuilt), "--reps", "100"], capsys)
    assert code == 0, err
    assert (rebuilt / "report.md").is_file() and (rebuilt / "curves.csv").is_file()
    assert pd.read_csv(rebuilt / "curves.csv").equals(curves)


# ---------------------------------------------------------------- Ray


def test_ray_backend_local_cluster(tmp_path, capsys) -> None:
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rlaux[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out_dir = tmp_path / "ray"
        code, out, err = _run(["--env", "MinAtar", "--games", "Breakout", "--aux", "none", "--seeds", "1",
                               "--timesteps", "500", "--reps", "50", "--backend", "ray",
                               "--out", str(out_dir), *TINY], capsys)
    finally:
        ray.shutdown()
    assert code == 0, out + err
    name = "MinAtar-Breakout__none__s0"
    run = out_dir / "runs" / name  # trained in a Ray task's temp folder, shipped back as tar bytes
    assert (run / "final_model.zip").is_file() and (run / "config.json").is_file()
    assert list((run / "monitor").glob("*.monitor.csv"))
    assert (out_dir / "logs" / f"{name}.log").is_file()
    assert (out_dir / "report.md").is_file() and "sweep: 1 done" in out
