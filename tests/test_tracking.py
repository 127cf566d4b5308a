"""``train_agent.py --track``: a real W&B run in offline mode holds rlaux's aux scalars; the W&B run is
finished also on an interrupt; without wandb, one line naming the extra."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlaux.cli import main
from rlaux.errors import ConfigError
from rlaux.run import RunConfig, resolve
from rlaux.run.tracking import WANDB_RUN_FILE, Tracking, tracked

ROOT = Path(__file__).resolve().parents[1]


def wandb_records(path: Path) -> Iterator[object]:
    """The records of a ``.wandb`` file, as wandb's own protobuf ``Record`` messages.

    wandb >= 0.19 reads these files in its Go core only; the framing is LevelDB's log format
    (32 KiB blocks; records of a 4-byte checksum, 2-byte length, 1-byte type: 1 full, 2 first,
    3 middle, 4 last) after a 7-byte ``:W&B`` header.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a .wandb file"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(pending)
            pending = b""


def test_offline_wandb_run_holds_the_aux_scalars(tmp_path):
    pytest.importorskip("wandb")
    # In a child process, as users run it: W&B patches TensorBoard process-wide and starts a service.
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
           "PYGLET_HEADLESS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train_agent.py"), "--env", "MinAtar", "--game", "Breakout", "--aux", "reward_pred",
         "-n", "512", "--n-envs", "2", "-params", "n_steps=64", "batch_size=64", "-f", str(tmp_path / "runs"),
         "--no-progress", "-v", "0", "--track", "--wandb-project-name", "rlaux-test", "-tags", "smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "runs" / "MinAtar-Breakout_ppo_reward_pred_s0"
    assert (run_dir / "final_model.zip").is_file()
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, list((tmp_path / "wandb").rglob("*"))

    history: dict[str, list[float]] = {}
    runs, exits = [], []
    for record in wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
        elif kind == "run":
            runs.append(record.run)
        elif kind == "exit":
            exits.append(record.exit.exit_code)
    assert "aux/reward_pred/loss" in history, sorted(history)
    assert "train/value_loss" in history and "rollout/ep_rew_mean" in history
    # the synced values are the ones the run logged (progress.csv, same updates)
    with open(run_dir / "progress.csv") as f:
        logged = [float(row["aux/reward_pred/loss"]) for row in csv.DictReader(f) if row["aux/reward_pred/loss"]]
    assert history["aux/reward_pred/loss"] == pytest.approx(logged, rel=1e-5)
    assert exits == [0]  # finished
    (run,) = runs
    assert run.display_name == run_dir.name and run.project == "rlaux-test"
    assert "smoke" in run.tags
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["aux"] == ["reward_pred"] and config["env_id"] == "MinAtar/Breakout-v1"
    record = json.loads((run_dir / WANDB_RUN_FILE).read_text())
    assert record["id"] == run.run_id and record["project"] == "rlaux-test"


class FakeWandb(SimpleNamespace):
    """Stands in for the ``wandb`` module: records ``init``'s arguments and ``finish``'s exit code."""

    def __init__(self) -> None:
        super().__init__(inits=[], finished=[])

    def init(self, **kwargs):
        self.inits.append(kwargs)
        fake = self

        class Run:
            id, name, url = "abc123", kwargs["name"], None
            settings = SimpleNamespace(mode="offline")

            def finish(self, exit_code=None):
                fake.finished.append(exit_code)

        return Run()


@pytest.fixture
def resolved(tmp_path):
    run = resolve(RunConfig(env="MinAtar", aux=["reward_pred"], aux_weights={"reward_pred": 0.5}, timesteps=64,
                            log_dir=str(tmp_path)))
    run.run_dir.mkdir(parents=True)
    return run


@pytest.mark.parametrize("error,code", [(None, 0), (SystemExit(130), 130), (KeyboardInterrupt(), 130),
                                        (RuntimeError("boom"), 1)])
def test_the_wandb_run_is_finished_with_the_exit_code(resolved, monkeypatch, error, code):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracking = Tracking(project="p", entity="e", group="g", tags=("t",))
    with pytest.raises(type(error)) if error else contextlib.nullcontext():
        with tracked(resolved, tracking) as wandb_run:
            assert wandb_run is not None and fake.finished == []
            if error:
                raise error
    assert fake.finished == [code]
    (kwargs,) = fake.inits
    assert kwargs["sync_tensorboard"] is True and kwargs["name"] == resolved.run_dir.name
    assert (kwargs["project"], kwargs["entity"], kwargs["group"]) == ("p", "e", "g")
    assert kwargs["tags"][0] == "t" and kwargs["config"]["aux_weights"] == {"reward_pred": 0.5}


def test_a_resumed_run_continues_its_wandb_run(resolved, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with tracked(resolved, Tracking(project="p")):
        pass
    with tracked(resolved, Tracking(project="p")):
        pass
    with tracked(resolved, Tracking(project="other")):
        pass
    assert "id" not in fake.inits[0]
    assert (fake.inits[1]["id"], fake.inits[1]["resume"]) == ("abc123", "allow")
    assert "id" not in fake.inits[2]  # another project: a new W&B run


def test_wandb_that_does_not_start_is_one_line(resolved, monkeypatch):
    fake = FakeWandb()

    def init(**kwargs):
        raise RuntimeError("No API key configured. Use `wandb login` to log in.\nmore")

    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)
    with pytest.raises(ConfigError, match=r"^--track: W&B did not start \(RuntimeError: No API key configured"):
        with tracked(resolved, Tracking()):
            pass


def test_track_without_wandb_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    code = main(["--env", "MinAtar", "-n", "64", "--track", "-f", str(tmp_path), "--no-progress"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.strip() == 'error: --track needs the optional package wandb: pip install "rlaux[wandb]"'
    assert not any(tmp_path.iterdir())  # checked before anything is written


def test_tracking_flags_may_go_with_resume(tmp_path, capsys):
    pytest.importorskip("wandb")
    code = main(["--resume", str(tmp_path / "nope"), "--track", "--wandb-project-name", "p"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "may be given with it" not in err and "no config.json" in err
