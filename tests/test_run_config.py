"""config.json keeps the user's request apart from the resolved settings."""

from __future__ import annotations

import json

from rlaux.cli import main
from rlaux.run.config import load_run


def test_a_preset_weight_is_not_taken_for_a_flag_after_load_run(tmp_path):
    agent = tmp_path / "rp.toml"
    agent.write_text('description = "test"\nalgo = "ppo"\naux = ["reward_pred"]\naux_weights = { reward_pred = 0.5 }\n')
    args = ["--env", "CartPole-v1", "--agent", str(agent), "-n", "64", "-params", "n_steps=64", "batch_size=64",
            "n_epochs=1", "-f", str(tmp_path / "runs"), "--run-name", "r", "--no-progress", "-v", "0",
            "--device", "cpu"]
    assert main(args) == 0
    saved = json.loads((tmp_path / "runs" / "r" / "config.json").read_text())
    assert saved["aux_label"] == "reward_pred" and saved["aux_weights"] == {"reward_pred": 0.5}
    assert saved["request"]["aux_weights"] == {} and saved["request"]["timesteps"] == 64
    run = load_run(tmp_path / "runs" / "r")
    assert run.label == saved["aux_label"]  # was reward_pred[reward_pred=0.5] before the request was kept
    assert run.aux_weights == {"reward_pred": 0.5} and run.config.aux_weights == {}


def test_a_config_json_of_an_older_run_still_loads(tmp_path):
    args = ["--env", "CartPole-v1", "--aux", "reward_pred", "-n", "64", "-params", "n_steps=64", "batch_size=64",
            "n_epochs=1", "-f", str(tmp_path / "runs"), "--run-name", "old", "--no-progress", "-v", "0",
            "--device", "cpu"]
    assert main(args) == 0
    path = tmp_path / "runs" / "old" / "config.json"
    flat = json.loads(path.read_text())
    del flat["request"]  # as runs wrote it before
    path.write_text(json.dumps(flat))
    run = load_run(tmp_path / "runs" / "old")
    assert run.label == "reward_pred" and run.timesteps == 64


import pytest  # noqa: E402

BAD_AUX_SETTINGS = [
    (["--aux", "reward_prd"], "reward_prd"),
    (["--aux", "reward_pred", "--aux-weight", "reward_pred=-1"], "reward_pred"),
    (["--aux", "reward_pred", "--aux-weight", "reward_pred=abc"], "abc"),
    (["--aux", "reward_pred", "--aux-weight", "pixel_control=0.1"], "pixel_control"),
    (["--aux", "reward_pred", "--aux-weighting", "bogus"], "bogus"),
    (["--aux", "reward_pred", "--aux-weighting", "value_replay=cosine"], "value_replay"),
    (["--env", "CartPole-v1", "--aux", "pixel_control"], "pixel_control"),
    (["--aux", "reward_pred", "-params", "aux_clip=bogus"], "aux_clip"),
    (["--aux", "reward_pred", "-params", "aux_every=0"], "aux_every"),
    (["--aux", "reward_pred", "-params", "aux_max_grad_norm=-1"], "aux_max_grad_norm"),
    (["--aux", "reward_pred", "-params", "aux_env_steps_per_sequence=0"], "aux_env_steps_per_sequence"),
    (["--aux", "reward_pred", "-params", "aux_replay_capacity=1"], "aux_replay_capacity"),
    (["--aux", "reward_pred", "-params", "aux_weights=dict(reward_pred=1)"], "aux_weights"),
    (["--aux", "reward_pred", "--max-skipped-updates", "-1"], "--max-skipped-updates"),
]


@pytest.mark.parametrize("args, needle", BAD_AUX_SETTINGS, ids=[" ".join(a) for a, _ in BAD_AUX_SETTINGS])
def test_every_bad_aux_setting_is_one_line_before_anything_is_written(tmp_path, capsys, args, needle):
    full = (["--env", "MinAtar"] if "--env" not in args else []) + args + ["-n", "1000", "-f", str(tmp_path / "r")]
    assert main(full) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "r").exists()
