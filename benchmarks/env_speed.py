"""Raw env speed of the env presets: random actions, no learning.

    python benchmarks/env_speed.py                        # all presets, 1 and 8 envs
    python benchmarks/env_speed.py --env MinAtar --n-envs 8 --vec-env dummy subproc --seconds 3
    python benchmarks/env_speed.py --env Atari --n-envs 1 8 --vec-env auto envpool   # needs rlaux[envpool]

Reports env steps/s (one step of a VecEnv with n envs counts n steps; an Atari
step is 4 emulator frames) and the time to build and reset the VecEnv.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from rawdata import write_raw

from rlaux.envs import VEC_ENV_CHOICES, make_vec_env, miniworld_available, resolve_env
from rlaux.errors import ConfigError


def measure(name: str, n_envs: int, vec_env: str, seconds: float) -> dict:
    spec = resolve_env(name)
    t0 = time.perf_counter()
    venv = make_vec_env(spec, n_envs=n_envs, seed=0, vec_env=vec_env)
    venv.reset()
    startup = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    n_actions = venv.action_space.n
    try:
        for _ in range(20):  # warm-up
            venv.step(rng.integers(n_actions, size=n_envs))
        steps = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(10):
                venv.step(rng.integers(n_actions, size=n_envs))
            steps += 10 * n_envs
        elapsed = time.perf_counter() - t0
    finally:
        venv.close()
    return {
        "env": name,
        "env_id": spec.env_id,
        "n_envs": n_envs,
        "vec_env": type(venv.unwrapped).__name__,
        "steps_per_s": steps / elapsed,
        "startup_s": startup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=["Atari", "MinAtar", "MiniWorld", "CartPole-v1"])
    parser.add_argument("--n-envs", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--vec-env", nargs="+", default=["auto"], choices=VEC_ENV_CHOICES,
                        help="envpool: Atari only, optional extra rlaux[envpool]")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--out", default=None, metavar="JSON",
                        help="also write the raw output (machine, versions, commit, every repeat) to JSON")
    args = parser.parse_args()

    print(f"{'env':<12} {'env id':<24} {'n':>3} {'vec env':<18} {'steps/s':>9} {'startup s':>9}")
    results: list[dict] = []
    for name in args.env:
        if name.lower().startswith("miniworld"):
            ok, reason = miniworld_available()
            if not ok:
                print(f"{name:<12} skipped: {reason}")
                continue
        for n in args.n_envs:
            seen = set()
            for vec in args.vec_env:
                if n == 1 and vec not in ("auto", "envpool"):
                    vec = "dummy"
                if (n, vec) in seen:
                    continue
                seen.add((n, vec))
                try:
                    r = measure(name, n, vec, args.seconds)
                except ConfigError as exc:
                    print(f"{name:<12} {vec}: {exc}")
                    continue
                results.append(dict(r))
                print(
                    f"{r['env']:<12} {r['env_id']:<24} {r['n_envs']:>3} {r['vec_env']:<18} "
                    f"{r['steps_per_s']:>9.0f} {r['startup_s']:>9.2f}",
                    flush=True,
                )
    write_raw(args.out, "env_speed", vars(args), {"runs": results})


if __name__ == "__main__":
    main()
