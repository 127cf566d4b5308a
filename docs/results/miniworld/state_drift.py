"""How far a replayed sequence's LSTM start is from the state the current network would have there (R2D2's
"representational drift"), for each way of starting it: the state stored with the data or zeros, after a
burn-in of 0, 5 or 20 steps.

    python docs/results/miniworld/state_drift.py --fresh 50000 --out docs/results/miniworld/state_drift_50k.csv
    python docs/results/miniworld/state_drift.py --model RUN_DIR/final_model.zip --out docs/results/miniworld/state_drift_500k.csv

The agent (``ppo_lstm`` with UNREAL's tasks and LSTM inputs on MazeS3) trains on, ``--fill`` env steps, so
that its auxiliary replay holds what training holds: sequences whose stored states were computed by the
network of up to ~15 updates ago. Then, for the same ``--sequences`` value-replay sequences, each start is
compared with the reference: the current network run from the sequence's episode start (zeros there, as in
the rollout), which replaying cannot afford. Errors are on the steps that get a loss (the sequence's
steps within its episode): the value (``values_of_sequences``, what value replay regresses) and the actor
LSTM's output (``core_sequences``, what pixel control reads), as the mean absolute value error, that error
over the reference values' standard deviation, and the relative norm of the output error.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
import tempfile

import numpy as np
import torch as th

from rlaux import AuxRecurrentPPO
from rlaux.envs import make_vec_env
from rlaux.run import RunConfig, build_model, resolve

#: Steps of burn-in that reach back past any MazeS3 episode's start (episodes last at most 216 steps).
REFERENCE_BURN_IN = 240
STARTS = [("stored", 0), ("stored", 5), ("stored", 20), ("zeros", 0), ("zeros", 5), ("zeros", 20)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a trained ppo_lstm unreal model (.zip) to go on training")
    source.add_argument("--fresh", type=int, help="train a new agent for this many env steps first")
    parser.add_argument("--fill", type=int, default=16384, help="env steps trained before measuring")
    parser.add_argument("--sequences", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="CSV file to write (default: stdout, where MiniWorld prints too)")
    args = parser.parse_args()

    run = resolve(RunConfig(env="MiniWorld", game="MazeS3", algo="ppo_lstm", agent="ppo_lstm_unreal", aux=["unreal"],
                            seed=args.seed, device="cpu", log_dir=tempfile.mkdtemp()))
    env = make_vec_env(run.env_spec, n_envs=run.n_envs, seed=args.seed)
    if args.model:
        model = AuxRecurrentPPO.load(args.model, env=env, device="cpu")
        model.set_random_seed(args.seed)
    else:
        model = build_model(run, env)
        model.learn(args.fresh)
    model.learn(args.fill, reset_num_timesteps=False)
    replay, policy = model.aux_replay, model.policy
    task = next(t for t in model.aux_tasks if t.name == "value_replay")
    base = task.replay_request()

    reference = dataclasses.replace(base, burn_in=REFERENCE_BURN_IN, lstm_start="zeros")
    ends = np.random.default_rng(args.seed).choice(replay.valid_ends(reference), size=args.sequences, replace=False)
    end_step = replay.episode_step.reshape(-1)[ends]
    assert (end_step < REFERENCE_BURN_IN).all(), "the reference window must reach back to each episode's start"

    def run_from(request, chunk: int = 32):
        """Values [B, T], actor LSTM outputs [B, T, H] and loss mask [B, T] of the sequences ending at ``ends``
        (``chunk`` sequences at a time: the reference's windows are long)."""
        values, core, mask = [], [], []
        for part in np.array_split(ends, max(1, len(ends) // chunk)):
            batch = replay.sequences_ending_at(request, part)
            with th.no_grad():  # the sequence's steps (the last observation is value replay's bootstrap only)
                values.append(policy.values_of_sequences(batch)[:, :-1])
                core.append(policy.core_sequences(batch)[:, :-1])
            mask.append(batch.mask)
        return th.cat(values), th.cat(core), th.cat(mask)

    true_values, true_core, mask = run_from(reference)
    mask = mask.bool()
    value_scale = true_values[mask].std()
    out = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115 - closed below
    writer = csv.writer(out)
    writer.writerow(["env_steps", "lstm_start", "burn_in", "value_abs_error", "value_error_over_std",
                     "first_step_value_abs_error", "core_relative_error"])
    for start, burn_in in STARTS:
        values, core, _ = run_from(dataclasses.replace(base, burn_in=burn_in, lstm_start=start))
        error = (values - true_values).abs()
        first = mask.float().argmax(dim=1)  # each sequence's first step within its episode
        first_error = error[th.arange(len(first)), first]
        core_error = (core - true_core).norm(dim=-1) / true_core.norm(dim=-1).clamp_min(1e-8)
        writer.writerow([model.num_timesteps, start, burn_in, f"{error[mask].mean():.4g}",
                         f"{error[mask].mean() / value_scale:.4g}", f"{first_error.mean():.4g}",
                         f"{core_error[mask].mean():.4g}"])
    if args.out:
        out.close()
    env.close()


if __name__ == "__main__":
    main()
