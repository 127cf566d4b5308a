"""How each rule for joining the RL and auxiliary gradients behaves: gradient norms and clip shares.

    python benchmarks/gradient_rules.py --env MinAtar --algo ppo --timesteps 20000
    python benchmarks/gradient_rules.py --env Atari --algo ppo --timesteps 8192 --rules rl_plus_aux,each

For each rule (``aux_clip``, ``rlaux.objective``) it trains the env preset's agent with the given
tasks and records, at every optimizer step: the RL gradient's norm before SB3's clip and whether
that clip binds, the weighted auxiliary gradient's norm before any clip, whether a clip changed
the auxiliary gradient, and (on the first step of each update) the part of each task's weighted
gradient that reaches the shared encoder. It prints medians and shares, the mean return of the
last 100 episodes, and writes one CSV row per rule with ``--csv``.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
import torch as th
from rawdata import write_raw

from rlaux.envs import make_vec_env
from rlaux.objective import GRADIENT_RULES
from rlaux.run import RunConfig, build_model, resolve


def record_per_step(model) -> dict[str, list[float]]:
    """Tap the objective's and the guard's metrics: name -> every value added (one per step)."""
    seen: dict[str, list[float]] = defaultdict(list)
    for means in (model.aux_objective.metrics, model.update_guard.rl_grad_norms):
        add = means.add

        def tap(prefix: str, metrics: Mapping[str, th.Tensor], add=add) -> None:
            for key, value in metrics.items():
                seen[f"{prefix}/{key}"].append(float(value))
            add(prefix, metrics)

        means.add = tap
    return seen


def summarise(seen: dict[str, list[float]], max_grad_norm: float, returns: list[float]) -> dict[str, float]:
    rl = np.array(seen["train/grad_norm"])
    row = {
        "optimizer_steps": len(rl),
        "rl_grad_norm_median": float(np.median(rl)),
        "rl_clip_share": float(np.mean(rl > max_grad_norm)),
        "aux_grad_norm_median": float(np.median(seen["aux/grad_norm"])),
        "aux_clip_share": float(np.mean(seen["aux/clip_fraction"])),
        "return_last100": float(np.mean(returns)) if returns else float("nan"),
    }
    for name, values in sorted(seen.items()):
        if name.endswith("/encoder_grad_norm"):
            row[name.removeprefix("aux/").replace("/", "_") + "_median"] = float(np.median(values))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar")
    parser.add_argument("--game", default=None)
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c"])
    parser.add_argument("--aux", default="unreal")
    parser.add_argument("--rules", default=",".join(GRADIENT_RULES))
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-envs", type=int, default=None)
    parser.add_argument("--aux-weight", action="append", default=[], metavar="NAME=VALUE",
                        help="a task's weight instead of its default (repeatable)")
    parser.add_argument("--csv", default=None, help="append one row per rule to this CSV")
    parser.add_argument("--out", default=None, metavar="JSON",
                        help="also write the raw output (machine, versions, commit, every repeat) to JSON")
    args = parser.parse_args()

    rows = []
    for rule in args.rules.split(","):
        run = resolve(RunConfig(env=args.env, game=args.game, algo=args.algo, aux=args.aux.split(","),
                                n_envs=args.n_envs, seed=args.seed, device="cpu", log_dir="/tmp/rlaux-bench",
                                aux_weights={k: float(v) for k, v in (w.split("=") for w in args.aux_weight)},
                                hyperparams={"aux_clip": rule}))
        env = make_vec_env(run.env_spec, n_envs=run.n_envs, seed=args.seed)
        model = build_model(run, env)
        seen = record_per_step(model)
        model.learn(args.timesteps)
        returns = [info["r"] for info in model.ep_info_buffer]
        env.close()
        weights = ";".join(f"{t.name}={t.weight:g}" for t in model.aux_tasks)
        row = {"env": run.env_spec.env_id, "algo": args.algo, "aux": args.aux, "weights": weights, "rule": rule,
               "seed": args.seed,
               "timesteps": args.timesteps, **summarise(seen, model.max_grad_norm, returns)}
        rows.append(row)
        print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if args.csv:
        fields = sorted({k for row in rows for k in row}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
        with open(args.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            if f.tell() == 0:
                writer.writeheader()
            writer.writerows(rows)
    print(f"\n{args.algo.upper()} {args.aux} on {args.env}: median norms, clip shares, return (last 100 episodes)")
    print(f"{'rule':>12} {'|g_rl|':>7} {'RL clip':>7} {'|g_aux|':>8} {'aux clip':>8} {'return':>7}")
    for row in rows:
        print(f"{row['rule']:>12} {row['rl_grad_norm_median']:7.2f} {row['rl_clip_share']:7.0%} "
              f"{row['aux_grad_norm_median']:8.2f} {row['aux_clip_share']:8.0%} {row['return_last100']:7.2f}")
    write_raw(args.out, "gradient_rules", vars(args), {"rows": rows})


if __name__ == "__main__":
    main()
