"""Host-device synchronisations per update on a GPU, SB3's own algorithm against rlaux's, in one run.

    python benchmarks/cuda_syncs.py --env MinAtar --algo ppo --aux unreal
    python benchmarks/cuda_syncs.py --env Atari --algo ppo --aux unreal,reward_pred

Each variant trains a few rollouts under ``torch.cuda.set_sync_debug_mode("warn")``, which warns at
every operation that waits for the GPU (``.item()``, ``.cpu()``, a tensor's truth value, ...). The
warnings are counted per phase (collection, the RL update less the auxiliary work, the auxiliary
sampling and forward/backward) and per source line, so that a sync that rlaux adds shows up with the
line that adds it. Collection must sync once per env step (the actions go to the envs); SB3's update
syncs a few times per minibatch (its logged ``.item()`` values).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter, defaultdict
from pathlib import Path

import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import build  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class SyncCounter:
    """Sync warnings recorded while wrapped methods run, by phase (inner phases subtracted) and by line."""

    def __init__(self, record: list) -> None:
        self.record = record
        self.by_phase: dict[str, int] = defaultdict(int)
        self.by_line: Counter[str] = Counter()
        self._stack: list[int] = []

    def wrap(self, obj: object, method: str, phase: str) -> None:
        original = getattr(obj, method)

        def counted(*args, **kwargs):
            self._stack.append(0)
            start = len(self.record)
            try:
                return original(*args, **kwargs)
            finally:
                seen = len(self.record) - start
                self.by_phase[phase] += seen - self._stack.pop()
                if self._stack:
                    self._stack[-1] += seen

        setattr(obj, method, counted)

    def collect_lines(self) -> None:
        for warning in self.record:
            path = Path(warning.filename)
            try:
                where = str(path.resolve().relative_to(REPO))
            except ValueError:
                where = "/".join(path.parts[-2:])
            self.by_line[f"{where}:{warning.lineno}"] += 1


def count(variant: str, args: argparse.Namespace) -> tuple[SyncCounter, int, int]:
    model, env = build(variant, args, "auto", seed=0)
    model.learn(model.n_envs * model.n_steps)  # warm-up: replay filled, caches built
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        counter = SyncCounter(record)
        counter.wrap(model, "collect_rollouts", "collection")
        counter.wrap(model, "train", "RL update")
        objective = getattr(model, "aux_objective", None)
        if objective is not None:
            counter.wrap(objective.guard, "contribute", "aux")
        steps_before = model.num_timesteps
        cuda = args.device == "cuda"
        if cuda:
            th.cuda.set_sync_debug_mode("warn")
        try:
            model.learn(args.rollouts * model.n_envs * model.n_steps, reset_num_timesteps=False)
        finally:
            if cuda:
                th.cuda.set_sync_debug_mode("default")
        counter.collect_lines()
    env.close()
    optimizer_steps = args.rollouts * optimizer_steps_per_update(model)
    return counter, model.num_timesteps - steps_before, optimizer_steps


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
    args = parser.parse_args()
    args.device = "cuda" if th.cuda.is_available() else "cpu"
    if args.device == "cpu":  # the counts are then zero: a dry run of the script itself
        print("cuda_syncs.py: no CUDA device; running on the CPU, where nothing syncs")

    print(f"{args.algo.upper()} on {args.env}, {args.rollouts} rollouts per variant, torch {th.__version__}, "
          f"{th.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}")
    print(f"{'variant':>12} {'env steps':>9} {'opt steps':>9} {'collection':>10} {'/ step':>6} "
          f"{'RL update':>9} {'aux':>6} {'/ opt step':>10}")
    lines: dict[str, Counter[str]] = {}
    for variant in ["sb3", "none", *args.aux.split(",")]:
        counter, steps, opt_steps = count(variant, args)
        phase = counter.by_phase
        update = phase["RL update"] + phase["aux"]
        print(f"{variant:>12} {steps:9d} {opt_steps:9d} {phase['collection']:10d} "
              f"{phase['collection'] / steps:6.2f} {phase['RL update']:9d} {phase['aux']:6d} "
              f"{update / opt_steps:10.2f}", flush=True)
        lines[variant] = counter.by_line
    for variant, by_line in lines.items():
        print(f"\n{variant}: syncs by source line (top {args.top})")
        for where, n in by_line.most_common(args.top):
            print(f"  {n:7d}  {where}")


if __name__ == "__main__":
    main()
