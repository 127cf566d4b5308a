"""Wall time of AuxPPO/AuxA2C with auxiliary tasks against SB3's own PPO/A2C, in one run.

    python benchmarks/aux_overhead.py --env Atari --aux reward_pred,unreal --timesteps 8192
    python benchmarks/aux_overhead.py --env MinAtar --aux reward_pred,unreal --timesteps 50000

Each variant trains for the same env steps on the same env preset and
hyperparameters (the agent preset's for that env kind); variants are
interleaved and repeated, and the median time is reported with its ratio to
vanilla SB3. Env construction is not timed; learning is.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch as th
from rawdata import write_raw
from stable_baselines3 import A2C, PPO

from rlaux.envs import make_vec_env
from rlaux.networks import without_rlaux_kwargs
from rlaux.run import RunConfig, algorithm_kwargs, build_model, resolve


def time_learn(model, timesteps: int) -> float:
    start = time.perf_counter()
    model.learn(timesteps)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="Atari")
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c"])
    parser.add_argument("--aux", default="reward_pred", help="comma list of variants; each may be a '+'-joined task set")
    parser.add_argument("--timesteps", type=int, default=8192)
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vec-env", default="auto")
    parser.add_argument("--out", default=None, metavar="JSON",
                        help="also write the raw output (machine, versions, commit, every repeat) to JSON")
    args = parser.parse_args()

    variants = ["sb3"] + args.aux.split(",")
    times: dict[str, list[float]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        for variant in variants:
            aux = [] if variant == "sb3" else variant.split("+")
            run = resolve(RunConfig(env=args.env, algo=args.algo, aux=aux, n_envs=args.n_envs, seed=repeat,
                                    device=args.device, log_dir="/tmp/rlaux-bench"))
            env = make_vec_env(run.env_spec, n_envs=run.n_envs, seed=repeat, vec_env=args.vec_env)
            if variant == "sb3":
                kwargs = algorithm_kwargs(run.hyperparams, without_rlaux_kwargs(run.env_spec.policy_kwargs))
                cls = {"ppo": PPO, "a2c": A2C}[args.algo]
                model = cls(run.env_spec.policy, env, seed=repeat, device=args.device, **kwargs)
            else:
                model = build_model(run, env)
            times[variant].append(time_learn(model, args.timesteps))
            env.close()
            print(f"repeat {repeat} {variant:>28}: {times[variant][-1]:7.2f} s", flush=True)

    base = statistics.median(times["sb3"])
    print(f"\n{args.algo.upper()} on {args.env}, {args.n_envs} envs, {args.timesteps} env steps, "
          f"torch {th.__version__}, {th.get_num_threads()} threads, device {args.device}; median of {args.repeats}")
    print(f"{'variant':>28} {'seconds':>8} {'steps/s':>8} {'ratio':>6}")
    for variant in variants:
        t = statistics.median(times[variant])
        print(f"{variant:>28} {t:8.2f} {args.timesteps / t:8.0f} {t / base:6.2f}x")
    write_raw(args.out, "aux_overhead", vars(args), {
        "runs": [{"variant": v, "repeat": i, "seconds": t, "env_steps": args.timesteps}
                 for v, ts in times.items() for i, t in enumerate(ts)],
        "medians_seconds": {v: statistics.median(ts) for v, ts in times.items()}})


if __name__ == "__main__":
    main()
