"""``python train_agent.py evaluate --load RUN ...``: the flags of :func:`rlaux.evaluate.evaluate_run`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rlaux.cli.common import OneLineErrorParser, add_action_flags
from rlaux.envs import VEC_ENV_CHOICES
from rlaux.evaluate import MODEL_CHOICES, evaluate_run


def evaluate_parser() -> argparse.ArgumentParser:
    """The parser of ``train_agent.py evaluate``."""
    p = OneLineErrorParser(prog="train_agent.py evaluate",
                           description="Evaluate a trained agent: full games, raw scores (no reward clipping, "
                                       "no episodic life).")
    p.add_argument("--load", required=True, metavar="RUN",
                   help="run folder (its config.json rebuilds the env) or model .zip file")
    p.add_argument("--episodes", "-n", "--n-eval-episodes", dest="episodes", type=int, default=10,
                   help="episodes to play (default 10)")
    p.add_argument("--model", choices=MODEL_CHOICES, default=None,
                   help="model of a run folder (default: best, else final, else the newest checkpoint, "
                        "else interrupted_model.zip)")
    p.add_argument("--env", default=None, help="env preset or gymnasium id (needed for a model file outside a run "
                                                "folder; overrides the run's env otherwise)")
    p.add_argument("--game", default=None, help="game of the env preset")
    add_action_flags(p, "greedy actions (default, as rl-zoo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation envs (env i: seed + i); default 0")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--n-envs", type=int, default=1, help="parallel evaluation envs (default 1)")
    p.add_argument("--vec-env", default="auto", choices=VEC_ENV_CHOICES,
                   help="how to vectorise the evaluation envs (default auto)")
    p.add_argument("--video", nargs="?", const="", default=None, metavar="PATH",
                   help="also record one episode to an MP4 (default <run>/videos/<model>.mp4); needs moviepy")
    p.add_argument("--max-episode-steps", type=int, default=None, metavar="N",
                   help="cut an episode after N agent steps (default: Atari 4500 = 18,000 frames, else 27000; "
                        "0: the env's own limit only)")
    p.add_argument("--output", default=None, metavar="JSON",
                   help="where to write the results (default <run>/evaluation.json; none for a bare model file)")
    return p


def run_evaluate(argv: Sequence[str]) -> int:
    """Entry point of ``train_agent.py evaluate``; returns the exit code (ConfigError -> 2 in rlaux.cli)."""
    args = evaluate_parser().parse_args(argv)
    evaluate_run(args.load, model=args.model, env=args.env, game=args.game, episodes=args.episodes,
                 deterministic=args.deterministic, seed=args.seed, device=args.device, n_envs=args.n_envs,
                 vec_env=args.vec_env, video=args.video, output=args.output,
                 max_episode_steps=args.max_episode_steps)
    return 0


__all__ = ["evaluate_parser", "run_evaluate"]
