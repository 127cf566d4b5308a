"""The score of a uniformly random policy on the study's maze, through the same env preset as the agents:
the floor to read the learning curves against.

    python docs/results/miniworld/random_policy.py --episodes 400
"""

from __future__ import annotations

import argparse

import numpy as np

from rlaux.envs import make_vec_env, resolve_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="MazeS3")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    spec = resolve_env("MiniWorld", args.game)
    env = make_vec_env(spec, n_envs=8, seed=args.seed, vec_env="dummy")
    rng = np.random.default_rng(args.seed)
    env.reset()
    returns: list[float] = []
    while len(returns) < args.episodes:
        _, _, _, infos = env.step(rng.integers(env.action_space.n, size=env.num_envs))
        returns += [info["episode"]["r"] for info in infos if "episode" in info]
    env.close()
    returns_ = np.array(returns[: args.episodes])
    print(f"random policy on MiniWorld {args.game}, {len(returns_)} episodes: mean return {returns_.mean():.3f} "
          f"(95% CI +- {1.96 * returns_.std(ddof=1) / np.sqrt(len(returns_)):.3f}), "
          f"success rate {(returns_ > 0).mean():.3f}")


if __name__ == "__main__":
    main()
