"""End-to-end env steps/s of the default agents, against vanilla SB3 at the old MinAtar preset, in one run.

    python benchmarks/throughput.py --env MinAtar --algo ppo --timesteps 131072
    python benchmarks/throughput.py --env MinAtar --algo a2c --timesteps 131072
    python benchmarks/throughput.py --env Atari --algo ppo --timesteps 16384 --vec-env auto,envpool
    python benchmarks/throughput.py --env MiniWorld --algo ppo_lstm --agent ppo_lstm_unreal --timesteps 8192

Variants, each trained for the same env steps, interleaved over ``--repeats``:

- ``sb3-before``: SB3's own PPO/A2C with the settings rlaux's MinAtar preset had before the throughput
  work (8 envs, float32, PPO minibatch 256; MinAtar only);
- ``sb3``: SB3's own PPO/A2C (sb3-contrib's RecurrentPPO for ``ppo_lstm``) with today's preset, less
  the options only rlaux's policies have (``encoder_dtype``: float32; ``lstm_one_pass``: sb3-contrib's
  step-by-step LSTM pass);
- ``none`` and each ``--aux`` variant: rlaux's AuxPPO/AuxA2C/AuxRecurrentPPO with today's preset
  (``encoder_dtype`` included), one row per ``--vec-env``; ``--agent`` names the agent preset of the
  ``--aux`` rows (e.g. ``ppo_lstm_unreal``, UNREAL's LSTM inputs on).

Besides steps/s and the ratios (to ``sb3-before`` where run, and ``<aux>/none``), ``--profile`` splits
each run's wall time into collection, the RL update, auxiliary sampling, the auxiliary
forward/backward and logging (timers around the methods; adds a little overhead of its own).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch as th
from rawdata import write_raw
from sb3_contrib import RecurrentPPO
from stable_baselines3 import A2C, PPO

from rlaux.algorithms import ALGORITHMS
from rlaux.envs import make_vec_env
from rlaux.networks import without_rlaux_kwargs
from rlaux.run import RunConfig, algorithm_kwargs, build_model, resolve

REPO = Path(__file__).resolve().parents[1]

#: The MinAtar agents before the throughput work (run with 8 envs), kept as preset files with their study.
BEFORE_AGENTS = {"ppo": "docs/results/presets/ppo_before.toml", "a2c": "docs/results/presets/a2c_before.toml"}
BEFORE_N_ENVS = 8


class PhaseMeter:
    """What ``read`` counts (seconds by default) while wrapped methods run, by phase name; a phase nested
    in another is subtracted from its parent."""

    def __init__(self, read: Callable[[], float] = time.perf_counter) -> None:
        self.read = read
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[float] = []
        self._originals: list[tuple[object, str, Callable]] = []

    @contextmanager
    def measure(self, name: str):
        self._stack.append(0.0)
        start = self.read()
        try:
            yield
        finally:
            amount = self.read() - start
            inner = self._stack.pop()
            self.totals[name] += amount - inner
            if self._stack:
                self._stack[-1] += amount

    def wrap(self, obj: object, attribute: str, name: str) -> None:
        """Measure ``obj.attribute`` (a method, or a module's function) as phase ``name`` until :meth:`restore`."""
        original = getattr(obj, attribute)
        self._originals.append((obj, attribute, original))

        def measured(*args, **kwargs):
            with self.measure(name):
                return original(*args, **kwargs)

        setattr(obj, attribute, measured)

    def restore(self) -> None:
        """Put back what :meth:`wrap` replaced."""
        for obj, attribute, original in reversed(self._originals):
            setattr(obj, attribute, original)
        self._originals.clear()


#: The phases :func:`instrument` measures, in order.
PHASES = ["collection", "RL update", "aux sampling", "aux forward/backward", "logging"]


def instrument(model, meter: PhaseMeter | None = None) -> PhaseMeter:
    """``meter`` (a timer by default) around collection, the update, the aux sampling and losses, and logging.
    Call its ``restore()`` after the run."""
    meter = meter or PhaseMeter()
    meter.wrap(model, "collect_rollouts", "collection")
    meter.wrap(model, "train", "RL update")
    meter.wrap(model, "dump_logs", "logging")
    objective = getattr(model, "aux_objective", None)
    if objective is not None:
        import rlaux.objective.auxiliary as objective_module

        meter.wrap(objective.guard, "contribute", "aux forward/backward")
        meter.wrap(objective_module, "batch_for", "aux sampling")
    return meter


def build(variant: str, args: argparse.Namespace, vec_env: str, seed: int):
    before = variant == "sb3-before"
    variant, _, rate = variant.partition("@")
    hyperparams = {"aux_env_steps_per_sequence": int(rate)} if rate else {}
    aux = [] if variant in ("sb3", "sb3-before", "none") else variant.split("+")
    agent = str(REPO / BEFORE_AGENTS[args.algo]) if before else args.agent if aux else None
    run = resolve(RunConfig(env=args.env, algo=args.algo, agent=agent,
                            aux=aux, seed=seed, device=args.device, hyperparams=hyperparams,
                            n_envs=BEFORE_N_ENVS if before else args.n_envs, log_dir="/tmp/rlaux-bench"))
    env = make_vec_env(run.env_spec, n_envs=run.n_envs, seed=seed, vec_env=vec_env)
    if variant.startswith("sb3"):
        kwargs = algorithm_kwargs(run.hyperparams, run.env_spec.policy_kwargs)
        kwargs["policy_kwargs"] = without_rlaux_kwargs(kwargs.get("policy_kwargs", {}))
        cls = {"ppo": PPO, "a2c": A2C, "ppo_lstm": RecurrentPPO}[args.algo]
        policy = getattr(ALGORITHMS[args.algo], "env_policies", {}).get(run.env_spec.policy, run.env_spec.policy)
        return cls(policy, env, seed=seed, device=args.device, **kwargs), env
    return build_model(run, env), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar")
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c", "ppo_lstm"])
    parser.add_argument("--agent", default=None, help="agent preset of the --aux rows (default: the algorithm's)")
    parser.add_argument("--aux", default="unreal",
                        help="comma list of aux variants ('+' joins tasks; '@N': one sequence per N env steps, e.g. unreal@40)")
    parser.add_argument("--timesteps", type=int, default=131072)
    parser.add_argument("--n-envs", type=int, default=None, help="default: the env preset's")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vec-env", default="auto", help="comma list: auto, dummy, subproc, envpool")
    parser.add_argument("--profile", action="store_true", help="split wall time into its parts")
    parser.add_argument("--out", default=None, metavar="JSON",
                        help="also write the raw output (machine, versions, commit, every repeat) to JSON")
    args = parser.parse_args()

    vec_envs = args.vec_env.split(",")
    rows = (["sb3-before"] if args.env.lower() == "minatar" and args.algo in BEFORE_AGENTS else []) + ["sb3"]
    rows = [(v, vec_envs[0]) for v in rows]
    rows += [(v, ve) for ve in vec_envs for v in ["none", *args.aux.split(",")]]
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    parts: dict[tuple[str, str], dict[str, float]] = {}
    memory: dict[str, tuple[float, int, int]] = {}
    for repeat in range(args.repeats):
        for variant, vec_env in rows:
            model, env = build(variant, args, vec_env, seed=repeat)
            model.learn(min(args.timesteps // 8, 4 * model.n_envs * model.n_steps))  # warm-up, not timed
            timers = instrument(model) if args.profile else None
            start = time.perf_counter()
            model.learn(args.timesteps, reset_num_timesteps=False)
            times[(variant, vec_env)].append(time.perf_counter() - start)
            if timers is not None:
                parts[(variant, vec_env)] = dict(timers.totals)
                timers.restore()
            replay = getattr(model, "aux_replay", None)
            if replay is not None:
                memory[variant] = (replay.bytes_per_step, replay.nbytes, replay.capacity * replay.n_envs)
            env.close()
            print(f"repeat {repeat} {variant:>12} {vec_env:>8}: {times[(variant, vec_env)][-1]:7.2f} s", flush=True)

    print(f"\n{args.algo.upper()} on {args.env}, {args.timesteps} env steps per run, torch {th.__version__}, "
          f"{th.get_num_threads()} threads, device {args.device}; median of {args.repeats}")
    print(f"{'variant':>12} {'vec env':>8} {'seconds':>8} {'steps/s':>8} {'x before':>9} {'/ none':>7}")
    medians = {key: statistics.median(t) for key, t in times.items()}
    for (variant, vec_env), seconds in medians.items():
        before = medians.get(("sb3-before", vec_envs[0]))
        speedup = f"{before / seconds:8.2f}x" if before else "       -"
        none = medians.get(("none", vec_env))
        ratio = f"{seconds / none:6.2f}x" if none and variant not in ("sb3", "sb3-before", "none") else "      -"
        print(f"{variant:>12} {vec_env:>8} {seconds:8.2f} {args.timesteps / seconds:8.0f} {speedup} {ratio}")
    for variant, (per_step, total, steps) in memory.items():
        print(f"replay of {variant}: {per_step:,.0f} bytes per stored env step, {total / 2**20:,.1f} MiB for "
              f"{steps:,} steps (aux_replay_capacity x n_envs)")
    if parts:
        print("\nwhere the time goes (last repeat; share of the run's wall time)")
        print(f"{'variant':>12} {'vec env':>8} " + " ".join(f"{n:>20}" for n in PHASES))
        for key, seconds in parts.items():
            total = times[key][-1]
            print(f"{key[0]:>12} {key[1]:>8} " + " ".join(f"{seconds.get(n, 0.0) / total:20.0%}" for n in PHASES))
    write_raw(args.out, "throughput", vars(args), {
        "runs": [{"variant": v, "vec_env": ve, "repeat": i, "seconds": t, "env_steps": args.timesteps,
                  "steps_per_second": args.timesteps / t} for (v, ve), ts in times.items() for i, t in enumerate(ts)],
        "medians_seconds": {f"{v}/{ve}": s for (v, ve), s in medians.items()},
        "phases_last_repeat_seconds": {f"{v}/{ve}": p for (v, ve), p in parts.items()},
        "replay_memory": {v: {"bytes_per_step": m[0], "bytes": m[1], "steps": m[2]} for v, m in memory.items()},
    })


if __name__ == "__main__":
    main()
