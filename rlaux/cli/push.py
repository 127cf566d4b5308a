"""``python train_agent.py push --load RUN --repo-id ORG/NAME ...``: the flags of :func:`rlaux.hub.push_run`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rlaux.cli.common import OneLineErrorParser, add_action_flags
from rlaux.evaluate import MODEL_CHOICES
from rlaux.hub import push_run


def push_parser() -> argparse.ArgumentParser:
    """The parser of ``train_agent.py push``."""
    p = OneLineErrorParser(prog="train_agent.py push",
                           description="Package a run for the Hugging Face Hub (model, config, evaluation, replay "
                                       "video, model card) and upload it; needs pip install 'rlaux[hub]'.")
    p.add_argument("--load", required=True, metavar="RUN", help="run folder (or a model file in one)")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="Hub repository to upload to")
    p.add_argument("--local-dir", default=None, metavar="DIR",
                   help="write the package to DIR and upload nothing (e.g. without network)")
    p.add_argument("--episodes", "-n", "--n-eval-episodes", dest="episodes", type=int, default=10,
                   help="evaluation episodes (default 10)")
    p.add_argument("--model", choices=MODEL_CHOICES, default=None,
                   help="model of the run folder (default: best, else final, else the newest checkpoint)")
    add_action_flags(p, "greedy actions in the evaluation (default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation env (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-video", dest="video", action="store_false", help="no replay.mp4")
    p.add_argument("-m", "--commit-message", default=None, help="commit message of the upload")
    return p


def run_push(argv: Sequence[str]) -> int:
    """Entry point of ``train_agent.py push``; returns the exit code (ConfigError -> 2 in rlaux.cli)."""
    args = push_parser().parse_args(argv)
    push_run(args.load, args.repo_id, local_dir=args.local_dir, commit_message=args.commit_message,
             model=args.model, episodes=args.episodes, deterministic=args.deterministic, seed=args.seed,
             device=args.device, video=args.video)
    return 0


__all__ = ["push_parser", "run_push"]
