"""Memory of PPG's auxiliary phase: the N_pi stored rollouts of one cycle, per preset.

    python benchmarks/ppg_memory.py [--out docs/benchmarks/ppg-memory.json]

For the MinAtar games and Atari, builds the preset's env and an ``AuxPPG`` with the ``ppg`` agent preset's
hyperparameters (``rlaux.run.config.resolve``) and reads the sizes of its store: observations in the space's dtype,
float32 value targets, and the float32 pre-phase policy parameters made at the phase (N_pi x n_steps x n_envs x
the action count). Beside it, what float32 copies of the observations would take. Procgen has no package that
installs here (envs/README.md): its line is computed from the paper's setting (64x64x3 uint8 frames, 15 actions,
64 envs x 256 steps x N_pi 32), not built. The store lives in CPU memory; each minibatch goes to the device.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from gymnasium import spaces
from rawdata import write_raw

from rlaux.algorithms.phasic import bytes_per_stored_step
from rlaux.run.config import RunConfig, resolve


def _built(env: str, game: str | None) -> dict[str, object]:
    from rlaux.envs import make_vec_env
    from rlaux.run.model import build_model

    run = resolve(RunConfig(env=env, game=game, algo="ppg", device="cpu"))
    venv = make_vec_env(run.env_spec, n_envs=run.n_envs, seed=0, vec_env="dummy")
    try:
        model = build_model(run, venv)
        store = model.ppg_store
        n = store.capacity * model.n_steps * model.n_envs
        old = n * 4 * int(venv.action_space.n)
        float_obs = n * int(np.prod(venv.observation_space.shape)) * 4
        return {"preset": f"{env} {game or ''}".strip(), "n_pi": store.capacity, "n_steps": model.n_steps,
                "n_envs": model.n_envs, "obs_shape": list(venv.observation_space.shape),
                "obs_dtype": str(store.obs.dtype), "bytes_per_step": bytes_per_stored_step(venv.observation_space,
                                                                                            venv.action_space),
                "bytes": store.obs.nbytes + store.returns.nbytes + old,
                "bytes_with_float32_obs": float_obs + store.returns.nbytes + old, "built": True}
    finally:
        venv.close()


def _procgen() -> dict[str, object]:
    observation, action = spaces.Box(0, 255, (64, 64, 3), np.uint8), spaces.Discrete(15)
    n_pi, n_steps, n_envs = 32, 256, 64
    per_step = bytes_per_stored_step(observation, action)
    n = n_pi * n_steps * n_envs
    return {"preset": "Procgen (the paper's setting; computed)", "n_pi": n_pi, "n_steps": n_steps, "n_envs": n_envs,
            "obs_shape": [64, 64, 3], "obs_dtype": "uint8", "bytes_per_step": per_step, "bytes": n * per_step,
            "bytes_with_float32_obs": n * (per_step + 3 * 64 * 64 * 3), "built": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the raw JSON here")
    args = parser.parse_args(argv)
    rows = [_built("MinAtar", game) for game in ("Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders")]
    rows += [_built("Atari", "Breakout"), _procgen()]
    print(f"{'preset':42} {'N_pi x steps x envs':>20} {'obs':>14} {'B/step':>7} {'total':>10} {'float32 obs':>12}")
    for row in rows:
        shape = "x".join(map(str, row["obs_shape"]))
        print(f"{row['preset']:42} {row['n_pi']:>5} x {row['n_steps']:>3} x {row['n_envs']:>3}    "
              f"{shape + ' ' + row['obs_dtype']:>14} {row['bytes_per_step']:>7,} {row['bytes'] / 2**20:>7.1f} MiB "
              f"{row['bytes_with_float32_obs'] / 2**20:>8.1f} MiB")
    write_raw(args.out, "ppg_memory", vars(args), {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
