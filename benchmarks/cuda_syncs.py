"""Host-device synchronisations per update on a GPU, SB3's own algorithm against rlaux's, in one run.

    python benchmarks/cuda_syncs.py --env MinAtar --algo ppo --aux unreal
    python benchmarks/cuda_syncs.py --env Atari --algo ppo --aux unreal,reward_pred

Each variant trains a few rollouts under ``torch.cuda.set_sync_debug_mode("warn")``, which warns at
every operation that waits for the GPU (``.item()``, ``.cpu()``, a tensor's truth value, ...). The
warnings are counted per phase (collection, the RL update less the auxiliary work, the auxiliary
sampling and forward/backward) and per source line, so that a sync that rlaux adds shows up with the
line that adds it. Collection must sync at least once per vector step (the actions go to the envs);
SB3's update syncs a few times per minibatch (its logged ``.item()`` values).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawdata import write_raw  # noqa: E402
from throughput import PhaseMeter, build, instrument  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def by_line(record: list[warnings.WarningMessage]) -> Counter[str]:
    """The recorded warnings by source line (repository-relative where the line is rlaux's)."""
    lines: Counter[str] = Counter()
    for warning in record:
        path = Path(warning.filename)
        try:
            where = str(path.resolve().relative_to(REPO))
        except ValueError:
            where = "/".join(path.parts[-2:])
        lines[f"{where}:{warning.lineno}"] += 1
    return lines


def count(variant: str, args: argparse.Namespace) -> tuple[dict[str, float], Counter[str], int, int]:
    """Syncs by phase and by line over ``args.rollouts`` rollouts, the env steps and the optimizer steps."""
    model, env = build(variant, args, "auto", seed=0)
    model.learn(model.n_envs * model.n_steps)  # warm-up: replay filled, caches built
    cuda = args.device == "cuda"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        meter = instrument(model, PhaseMeter(read=lambda: len(record)))
        steps_before = model.num_timesteps
        if cuda:
            th.cuda.set_sync_debug_mode("warn")
        try:
            model.learn(args.rollouts * model.n_envs * model.n_steps, reset_num_timesteps=False)
        finally:
            if cuda:
                th.cuda.set_sync_debug_mode("default")
            meter.restore()
    env.close()
    return dict(meter.totals), by_line(record), model.num_timesteps - steps_before, \
        args.rollouts * optimizer_steps_per_update(model)


def optimizer_steps_per_update(model) -> int:
    if hasattr(model, "n_epochs"):  # PPO, RecurrentPPO
        return model.n_epochs * -(-model.n_envs * model.n_steps // model.batch_size)
    return 1  # A2C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar")
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c", "ppo_lstm"])
    parser.add_argument("--agent", default=None, help="agent preset of the --aux rows (default: the algorithm's)")
    parser.add_argument("--aux", default="unreal", help="comma list of aux variants ('+' joins tasks)")
    parser.add_argument("--rollouts", type=int, default=2, help="rollouts counted per variant")
    parser.add_argument("--n-envs", type=int, default=None, help="default: the env preset's")
    parser.add_argument("--top", type=int, default=8, help="source lines listed per variant")
    parser.add_argument("--out", default=None, metavar="JSON",
                        help="also write the raw output (machine, versions, commit, every repeat) to JSON")
    args = parser.parse_args()
    args.device = "cuda" if th.cuda.is_available() else "cpu"
    if args.device == "cpu":  # the counts are then zero: a dry run of the script itself
        print("cuda_syncs.py: no CUDA device; running on the CPU, where nothing syncs")

    print(f"{args.algo.upper()} on {args.env}, {args.rollouts} rollouts per variant, torch {th.__version__}, "
          f"{th.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}")
    print(f"{'variant':>12} {'env steps':>9} {'opt steps':>9} {'collection':>10} {'/ step':>6} "
          f"{'RL update':>9} {'aux':>6} {'/ opt step':>10}")
    lines: dict[str, Counter[str]] = {}
    rows: list[dict] = []
    for variant in ["sb3", "none", *args.aux.split(",")]:
        phase, lines[variant], steps, opt_steps = count(variant, args)
        aux = phase.get("aux sampling", 0) + phase.get("aux forward/backward", 0)
        update = phase.get("RL update", 0) + aux
        rows.append({"variant": variant, "env_steps": steps, "optimizer_steps": opt_steps, "syncs_by_phase": dict(phase)})
        print(f"{variant:>12} {steps:9d} {opt_steps:9d} {phase['collection']:10.0f} "
              f"{phase['collection'] / steps:6.2f} {phase.get('RL update', 0):9.0f} {aux:6.0f} "
              f"{update / opt_steps:10.2f}", flush=True)
    for variant, counts in lines.items():
        print(f"\n{variant}: syncs by source line (top {args.top})")
        for where, n in counts.most_common(args.top):
            print(f"  {n:7d}  {where}")
    write_raw(args.out, "cuda_syncs", vars(args), {"rows": rows,
                                                   "syncs_by_line": {v: dict(c) for v, c in lines.items()}})


if __name__ == "__main__":
    main()
