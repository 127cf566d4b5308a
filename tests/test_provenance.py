"""The code a run trained with: recorded in config.json, kept across a resume, named by compare."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlaux.cli import main
from rlaux.compare.plain_logs import read_episodes_table
from rlaux.compare.results import load_runs
from rlaux.provenance import SOURCE, code_label, code_version, git_state
from rlaux.run.config import RunConfig, resolve
from rlaux.run.train import _record_resumed_code
from rlaux.run_folder import RunFolder, RunRecord

sys.path.insert(0, str(Path(__file__).parent))
from test_compare import baseline_returns, fast_returns, write_run  # noqa: E402

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder, check=True,
                          capture_output=True, text=True).stdout.strip()


@needs_git
def test_git_state_names_the_commit_and_changes_to_tracked_files_only(tmp_path):
    assert git_state(tmp_path) == (None, None)  # not a checkout
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "new.csv").write_text("1\n")  # untracked outputs are not a change of the code
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_state(tmp_path) == (head, True)


def test_code_label_names_commit_changes_and_resumes():
    commit, other = "4d027d3" + "0" * 33, "0adfc23" + "1" * 33
    assert code_label({}) is None
    assert code_label({"rlaux": "0.1.0", "commit": commit, "dirty": False}) == "4d027d3"
    assert code_label({"rlaux": "0.1.0", "commit": commit, "dirty": True}) == "4d027d3+changes"
    assert code_label({"rlaux": "0.1.0", "commit": None, "dirty": None}) == "rlaux 0.1.0"
    resumed = {"commit": commit, "dirty": False, "resumed_with": [{"step": 50_000, "commit": other, "dirty": False}]}
    assert code_label(resumed) == "4d027d3 then 0adfc23"


def _resolved(tmp_path: Path):
    return resolve(RunConfig(env="MinAtar", game="Breakout", aux=["none"], timesteps=1024, log_dir=str(tmp_path),
                             run_name="run"))


def test_a_run_records_its_code_and_config_json_keeps_it(tmp_path):
    run = _resolved(tmp_path)
    run.folder.write(run.record())
    written = json.loads(run.folder.config_file.read_text())
    assert written["code"] == json.loads(json.dumps(code_version()))
    assert {"rlaux", "commit", "dirty", "torch", "stable-baselines3", "gymnasium"} <= set(written["code"])
    repo = Path(__file__).resolve().parents[1]
    if SOURCE.parent == repo and (repo / ".git").exists() and shutil.which("git"):  # rlaux from this checkout
        assert written["code"]["commit"] == _git(repo, "rev-parse", "HEAD")
    assert run.folder.read().code == written["code"]
    assert "code" not in RunRecord({"seed": 0}, {"seed": 0}).to_json()  # nothing recorded, nothing written


def test_a_run_resumed_at_other_code_keeps_both(tmp_path):
    run = _resolved(tmp_path)
    record = run.record()
    started = {**record.code, "commit": "f" * 40, "dirty": False}
    run.folder.write(RunRecord(record.request, record.resolved, started))
    _record_resumed_code(run, 512)
    code = run.folder.read().code
    assert code["commit"] == "f" * 40
    assert code["resumed_with"] == [{"step": 512, **json.loads(json.dumps(code_version()))}]
    _record_resumed_code(run, 768)  # resumed again at the same code: nothing new to say
    assert len(run.folder.read().code["resumed_with"]) == 1
    assert code_label(run.folder.read().code).startswith("fffffff then ")


def _with_code(run_dir: Path, commit: str | None) -> Path:
    """Give a fake (flat) run folder's config.json the format with ``code``, as training writes it."""
    flat = json.loads((run_dir / "config.json").read_text())
    code = {"rlaux": "0.1.0", "commit": commit, "dirty": False} if commit else {}
    RunFolder(run_dir).write(RunRecord(flat, flat, code))
    return run_dir


def test_compare_names_the_code_of_its_runs_and_keeps_it_in_the_table(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in range(3):
        _with_code(write_run(runs, f"none-s{seed}", baseline_returns(seed), seed=seed), "a" * 40)
        _with_code(write_run(runs, f"fast-s{seed}", fast_returns(seed), variant="fast", seed=seed),
                   "a" * 40 if seed < 2 else "b" * 40)
    notes = load_runs([runs]).warnings
    assert notes == ["the runs do not all come from one recorded version of the code, so differences between them "
                     "may come from the code as well as from the variants: aaaaaaa (5 runs), bbbbbbb (1 run)"]
    out = tmp_path / "report"
    assert main(["compare", "--from", str(runs), "--out", str(out), "--reps", "50"]) == 0
    assert "aaaaaaa (5 runs), bbbbbbb (1 run)" in (out / "report.md").read_text()
    table = read_episodes_table(out / "episodes.csv.gz")
    assert sorted(run.code for run in table) == ["aaaaaaa"] * 5 + ["bbbbbbb"]
    assert load_runs([out / "episodes.csv.gz"]).warnings == notes  # rebuilt from the table, it still says so


def test_runs_of_one_code_say_so_and_runs_that_recorded_none_say_nothing(tmp_path):
    one, none = tmp_path / "one", tmp_path / "none"
    for seed in range(2):
        _with_code(write_run(one, f"s{seed}", baseline_returns(seed), seed=seed), "c" * 40)
        write_run(none, f"s{seed}", baseline_returns(seed), seed=seed + 2)
    assert load_runs([one]).warnings == ["every run trained with the same code: ccccccc"]
    assert load_runs([none]).warnings == []
    mixed = load_runs([one, none]).warnings
    assert len(mixed) == 1 and mixed[0].endswith(": ccccccc (2 runs), not recorded (2 runs)")
