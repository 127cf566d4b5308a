"""``python train_agent.py [train] ...``: flags -> :class:`rlaux.run.RunConfig` -> :func:`rlaux.run.train`.

Flag names follow rl-zoo3 where it has one (``-n/--n-timesteps``, ``-f/--log-folder``,
``--tensorboard-log``, ``--eval-freq``, ``--save-freq``, ``--vec-env``, ``-params/--hyperparams``
(``name=value`` or rl-zoo3's ``name:value``), ``-i/--trained-agent``, ``--env-kwargs``, ``--gym-packages``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from rlaux.algorithms import ALGORITHMS
from rlaux.cli.common import OneLineErrorParser, key_values
from rlaux.run import RunConfig, resume, train
from rlaux.run.tracking import Tracking
from rlaux.tasks import available as available_tasks

#: One line for each subcommand, in ``--help``.
SUBCOMMANDS = {
    "train": "train an agent, or --resume a run (default when no subcommand is given)",
    "evaluate": "play a trained agent: full games, raw scores, optional video (evaluate --load RUN)",
    "compare": "sweep variants x games x seeds and report sample efficiency with statistics",
    "push": "package a run (model, evaluation, video, card) for the Hugging Face Hub",
}


def train_parser() -> argparse.ArgumentParser:
    """The parser of ``train_agent.py [train]``."""
    p = OneLineErrorParser(
        prog="train_agent.py", usage="train_agent.py [train|evaluate|compare|push] [flags]",
        description="Train an SB3 PPO/A2C, sb3-contrib RecurrentPPO (ppo_lstm) or Phasic Policy Gradient (ppg) agent with auxiliary tasks. "
                    "The flags below are train's (the default subcommand).",
        epilog="subcommands (each with its own --help):\n"
               + "\n".join(f"  {name:<9} {summary}" for name, summary in SUBCOMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="Atari", help="env preset (Atari, MinAtar, MiniWorld, ...) or a Gymnasium id; default Atari")
    p.add_argument("--game", default=None, help="game of the preset (Atari: Breakout, Pong, ...; MinAtar: Breakout, Asterix, ...)")
    p.add_argument("--algo", choices=list(ALGORITHMS), default=None, help="algorithm (default: the agent preset's, else ppo)")
    p.add_argument("--agent", default=None, help="agent preset in agents/ (algorithm + hyperparameters + aux tasks)")
    p.add_argument("--aux", default=None,
                   help=f"comma list of aux tasks or 'none' (default: the agent preset's); one of {', '.join(available_tasks())}")
    p.add_argument("--aux-weight", action="append", default=[], metavar="NAME=VALUE", help="weight of an aux task (repeatable)")
    p.add_argument("--aux-weighting", action="append", default=[], metavar="[NAME=]SPEC",
                   help="how aux weights vary: fixed, cosine, cosine_weighted, olaux[:BETA:EVERY], uncertainty, or a "
                        "schedule linear|cosine|warmup:START:END:FRACTION; NAME= for one task, else all (repeatable)")
    p.add_argument("-n", "--timesteps", "--n-timesteps", dest="timesteps", type=int, default=None,
                   help="env steps to train for (default: the env preset's)")
    p.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: the env preset's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (GPU if there is one), cpu or cuda")
    p.add_argument("-f", "--log-dir", "--log-folder", dest="log_dir", default="runs", help="folder of run folders (default runs/)")
    p.add_argument("--label", default=None,
                   help="the variant's name in comparisons (default: its aux tasks, with flagged weights and weighting)")
    p.add_argument("--run-name", default=None, help="run folder name (default <env>_<algo>_<aux>_s<seed>)")
    p.add_argument("-tb", "--tensorboard-log", default=None, help="TensorBoard folder (default: inside the run folder)")
    p.add_argument("--vec-env", default="auto", help="auto (subprocesses for n_envs > 1, in-process for cheap envs such as MinAtar), dummy, subproc, or envpool (Atari; pip install 'rlaux[envpool]')")
    p.add_argument("--eval-freq", type=int, default=0, help="evaluate every N env steps and keep the best model (0: off)")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation")
    p.add_argument("--eval-stochastic", dest="eval_deterministic", action="store_false",
                   help="sample the evaluation's actions from the policy (default: its most likely actions, SB3's)")
    p.add_argument("--save-freq", type=int, default=0,
                   help="checkpoint every N env steps, at the end of an update (0: only on SIGINT/SIGTERM)")
    p.add_argument("--keep-checkpoints", type=int, default=3, help="keep the newest K checkpoints (0: all; default 3)")
    p.add_argument("--save-replay", action="store_true",
                   help="also save the auxiliary replay in checkpoints (exact resume; can be large)")
    p.add_argument("--max-skipped-updates", type=int, default=10,
                   help="stop after N updates in a row skipped for a non-finite loss or gradient (0: never; default 10)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest checkpoint, with the settings of its config.json "
                        "(only --device, --no-progress, --verbose may be given too)")
    p.add_argument("--restart", action="store_true",
                   help="with --resume, for a run stopped before its first checkpoint: train it again from step 0 "
                        "with its config.json (what it wrote so far moves to attempt-<k>/ inside it)")
    p.add_argument("-params", "--hyperparams", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override algorithm hyperparameters, e.g. n_steps=64 learning_rate:1e-4 (= or :)")
    p.add_argument("--env-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
                   help="keyword arguments of the env (gymnasium.make), over the preset's, e.g. max_episode_steps:200")
    p.add_argument("--gym-packages", nargs="+", default=[], metavar="MODULE",
                   help="import these modules first: packages that register their envs on import "
                        "(or give --env MODULE:EnvId)")
    p.add_argument("--env-wrapper", nargs="+", default=[], metavar="MODULE.CLASS",
                   help="gymnasium wrappers around the raw env, innermost first (rl-zoo3's env_wrapper), e.g. "
                        "minigrid.wrappers.ImgObsWrapper; in place of the env preset's")
    p.add_argument("-i", "--trained-agent", default=None, metavar="MODEL.zip",
                   help="go on training this saved model (its algorithm, aux tasks and weights) for -n more "
                        "steps, in a new run folder")
    p.add_argument("--no-progress", dest="progress_bar", action="store_false", help="hide the progress bar")
    p.add_argument("--track", action="store_true",
                   help="track the run with Weights & Biases (TensorBoard scalars synced; pip install 'rlaux[wandb]')")
    p.add_argument("--wandb-project-name", default="sb3", help="W&B project (default sb3, as rl-zoo3)")
    p.add_argument("--wandb-entity", default=None, help="W&B entity (team or user; default: yours)")
    p.add_argument("--wandb-group", default=None, help="W&B group of the run")
    p.add_argument("-tags", "--wandb-tags", nargs="+", default=[], help="W&B tags of the run")
    p.add_argument("-v", "--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="SB3's verbosity: 0 quiet, 1 a table of training scalars each log interval (default), "
                        "2 also debug messages")
    return p


def _aux_weighting(items: Sequence[str]) -> dict[str, str]:
    """``["cosine", "reward_pred=fixed"]`` -> ``{"*": "cosine", "reward_pred": "fixed"}``."""
    out: dict[str, str] = {}
    for item in items:
        out.update({"*": item} if "=" not in item else key_values([item], "--aux-weighting", literal=False))
    return out


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run configuration of parsed train flags."""
    return RunConfig(
        env=args.env, game=args.game, algo=args.algo, agent=args.agent,
        aux=None if args.aux is None else args.aux.split(","),
        aux_weights=key_values(args.aux_weight, "--aux-weight", literal=False),
        aux_weighting=_aux_weighting(args.aux_weighting),
        timesteps=args.timesteps, n_envs=args.n_envs, seed=args.seed, device=args.device,
        log_dir=args.log_dir, run_name=args.run_name, tensorboard_log=args.tensorboard_log,
        vec_env=args.vec_env, eval_freq=args.eval_freq, eval_episodes=args.eval_episodes,
        eval_deterministic=args.eval_deterministic, save_freq=args.save_freq,
        keep_checkpoints=args.keep_checkpoints, save_replay=args.save_replay,
        max_skipped_updates=args.max_skipped_updates,
        hyperparams=key_values(args.hyperparams, "--hyperparams", literal=True, colon=True),
        progress_bar=args.progress_bar, verbose=args.verbose,
        env_kwargs=key_values(args.env_kwargs, "--env-kwargs", literal=True, colon=True),
        gym_packages=list(args.gym_packages), env_wrapper=list(args.env_wrapper), trained_agent=args.trained_agent, label=args.label,
    )


#: The flags of W&B tracking (rl-zoo3's); they may go with --resume.
TRACKING_FLAGS = ("track", "wandb_project_name", "wandb_entity", "wandb_group", "wandb_tags")


def tracking_from_args(args: argparse.Namespace) -> Tracking | None:
    """The W&B tracking parsed train flags ask for (None without ``--track``; the other flags alone do nothing,
    as in rl-zoo3)."""
    if not args.track:
        return None
    return Tracking(project=args.wandb_project_name, entity=args.wandb_entity, group=args.wandb_group,
                    tags=tuple(args.wandb_tags))


def run_train(argv: Sequence[str]) -> int:
    """Entry point of ``train_agent.py [train]``: train, or ``--resume`` a run; returns the exit code."""
    parser = train_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        defaults = vars(parser.parse_args([]))
        overrides = {k: v for k, v in vars(args).items()
                     if k not in ("resume", "restart") and k not in TRACKING_FLAGS and v != defaults[k]}
        run_dir = resume(args.resume, tracking=tracking_from_args(args), restart=args.restart, **overrides)
    elif args.restart:
        parser.error("--restart goes with --resume RUN_DIR (it starts that run again from step 0)")
    else:
        run_dir = train(config_from_args(args), tracking=tracking_from_args(args))
    print(f"run saved in {run_dir} (model: {run_dir / 'final_model.zip'}); watch it with: tensorboard --logdir {run_dir.parent}")
    return 0


__all__ = ["TRACKING_FLAGS", "config_from_args", "run_train", "tracking_from_args", "train_parser"]
