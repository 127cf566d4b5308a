"""Is gymnax's MinAtar SpaceInvaders the game rlaux trains on? Both ports play the same action sequences.

SpaceInvaders is deterministic without sticky actions (MinAtar's game draws no random number), so the two ports
must give the same frames, rewards and ends, step for step, if they are the same game. The action sequences are
random ones (short games), and those of a trained rlaux agent playing MinAtar (long games: waves cleared, aliens
sped up), recorded first with rlaux and replayed here:

    # with rlaux installed: an agent's stochastic games on MinAtarGymnax SpaceInvaders, as action sequences
    python docs/results/baselines/port_check.py --record runs/baselines/vf-clip-max/runs/MinAtarGymnax-SpaceInvaders__none__s5 \
        --episodes 50 --out actions.npz
    # with gymnax and JAX (not rlaux's dependencies: pip install gymnax "jax[cpu]" minatar)
    python docs/results/baselines/port_check.py --episodes 200 --actions actions.npz

Prints, per episode, the first step where the two ports differ (none if they never do), and a summary line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

GAME = "SpaceInvaders"


def record(run_dir: Path, episodes: int, out: Path, seed: int) -> None:
    """Play a trained run's final model (stochastic policy) on its own env; save each game's actions."""
    from rlaux.algorithms import ALGORITHMS
    from rlaux.envs import make_vec_env
    from rlaux.run.config import load_run

    run = load_run(run_dir)
    if run.config.game != GAME:
        raise SystemExit(f"--record {run_dir}: a run of {run.config.game}, not {GAME}")
    model = ALGORITHMS[run.algo].load(run_dir / "final_model.zip", device="cpu")
    env = make_vec_env(run.env_spec, n_envs=1, seed=seed, vec_env="dummy", training=False)
    games, returns, obs = [], [], env.reset()
    actions, total = [], 0.0
    while len(games) < episodes:
        action, _ = model.predict(obs, deterministic=False)
        actions.append(int(action[0]))
        obs, reward, done, info = env.step(action)
        total += float(reward[0])
        if done[0]:
            games.append(np.array(actions, dtype=np.int8))
            returns.append(total)
            actions, total = [], 0.0
    np.savez_compressed(out, **{f"episode_{i}": g for i, g in enumerate(games)})
    print(f"{len(games)} games of {run_dir.name} to {out}: lengths {min(map(len, games))} to "
          f"{max(map(len, games))}, returns mean {np.mean(returns):.2f}, max {max(returns):.0f}")


def compare(sequences: list[np.ndarray]) -> None:
    """Play each action sequence in MinAtar and in gymnax's port; report the first step they differ at."""
    import jax
    from gymnax.environments.minatar.space_invaders import MinSpaceInvaders
    from minatar.gym import BaseEnv

    # MinAtar/SpaceInvaders-v1 as rlaux registers it (rlaux/envs/families.py) and MinAtarGymnax plays it
    minatar = BaseEnv(game="space_invaders", use_minimal_action_set=True, sticky_action_prob=0.0)
    port = MinSpaceInvaders()
    params = port.default_params.replace(max_steps_in_episode=max(map(len, sequences)) + 1)
    step = jax.jit(port.step_env)
    key = jax.random.PRNGKey(0)  # unused: the game draws no random number
    differing, steps, returns = 0, 0, []
    for episode, actions in enumerate(sequences):
        obs_a, _ = minatar.reset(seed=episode)
        obs_b, state = port.reset_env(key, params)
        first_difference, total = None, 0.0
        for t, action in enumerate(actions.tolist()):
            if not np.array_equal(np.asarray(obs_a, dtype=np.float32), np.asarray(obs_b)):
                first_difference = (t, "frame")
                break
            obs_a, reward_a, terminated_a, _, _ = minatar.step(action)
            obs_b, state, reward_b, _, _ = step(key, state, action, params)
            steps += 1
            total += reward_a
            if float(reward_a) != float(reward_b):
                first_difference = (t, f"reward {reward_a} against {float(reward_b)}")
                break
            if bool(terminated_a) != bool(state.terminal):
                first_difference = (t, f"end of game {terminated_a} against {bool(state.terminal)}")
                break
            if terminated_a:
                break
        returns.append(total)
        if first_difference is not None:
            differing += 1
            print(f"episode {episode}: first difference at step {first_difference[0]} ({first_difference[1]})")
    print(f"{differing} of {len(sequences)} games differ; {steps:,} steps compared; longest game {max(map(len, sequences))} "
          f"steps; MinAtar returns: mean {np.mean(returns):.2f}, max {max(returns):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="games to record, or random games to compare")
    parser.add_argument("--actions", type=Path, help="compare these recorded games (--record's output)")
    parser.add_argument("--record", type=Path, metavar="RUN_DIR", help="record a trained run's games (needs rlaux)")
    parser.add_argument("--out", type=Path, default=Path("actions.npz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.record:
        record(args.record, args.episodes, args.out, args.seed)
        return
    rng = np.random.default_rng(args.seed)
    # random games, each with its own action frequencies (some fire or wait more), up to gymnax-blines' 1,000 steps
    sequences = [rng.choice(4, size=1000, p=rng.dirichlet(np.ones(4))) for _ in range(args.episodes)]
    if args.actions:
        with np.load(args.actions) as data:
            sequences += [data[name] for name in sorted(data.files, key=lambda n: int(n.split("_")[1]))]
    compare(sequences)


if __name__ == "__main__":
    main()
