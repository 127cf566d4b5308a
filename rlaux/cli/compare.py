"""``python train_agent.py compare ...``: run a sweep of variants x seeds, then write the report.

Synopsis::

    compare --env ENV [--games G1,G2] --aux none,reward_pred,unreal --seeds 5 --timesteps N
            [--workers 2] [--out|-f|--log-dir DIR] [--algo ppo|a2c|ppo_lstm[,...]] [--agent PRESET] [--baseline VARIANT]
            [--backend local|ray] [--address ADDR] [--reps 2000] [--dry-run] [-- extra train flags...]
    compare --suite atari100k|atari5 --aux none,unreal --seeds 5 [...]   (protocol from rlaux.compare.suites)
    compare --from DIR [DIR ...] [--out OUT] [--baseline none] [--reference atari100k] [--final-from-eval]
            (runs of a suite's env preset get the suite's report: reference atari100k, final evaluation scores)

Variants are separated by commas; the tasks of one variant by '+' (``none,reward_pred+pixel_control``).
Several algorithms in one study: ``--algo ppo,ppo_lstm --aux none,unreal`` runs each variant with each
algorithm; a variant may name its own: ``--algo ppo_lstm --aux none,unreal,ppo:unreal``. The report then
names the variants ``<algo>:<tasks>`` (``ppo_lstm:none``), as ``compare --from`` does for runs of several
algorithms; ``--baseline`` may leave the algorithm out where one variant has that label.
What lands where, and resuming: :mod:`rlaux.compare.study`. Bad input is one line and exit
code 2, before anything is launched: every run is resolved exactly as ``train`` will.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from rlaux.algorithms import ALGORITHMS
from rlaux.cli.common import OneLineErrorParser, split_extra
from rlaux.cli.train import config_from_args, train_parser
from rlaux.compare import stats
from rlaux.compare.results import DEFAULT_CURVE_WINDOW
from rlaux.compare.study import plan_study, print_dry_run, rebuild_report, run_study
from rlaux.compare.suites import SUITES
from rlaux.compare.sweep import SweepJob, build_train_command
from rlaux.errors import ConfigError
from rlaux.run import resolve


def compare_parser() -> argparse.ArgumentParser:
    """The parser of ``train_agent.py compare`` (the flags before ``--``)."""
    p = OneLineErrorParser(
        prog="train_agent.py compare",
        description="Compare the sample efficiency of aux-task variants over seeds: run the sweep, "
        "then write curves.csv, figures and report.md into one folder. Flags after '--' go to every training run.",
    )
    src = p.add_argument_group("what to run")
    src.add_argument("--env", default=None, help="env preset (MinAtar, Atari, ...) or gymnasium id")
    src.add_argument("--games", default=None, help="comma list of games of the preset (default: the preset's game)")
    src.add_argument("--suite", default=None, help=f"a benchmark protocol instead of --env/--games: {', '.join(SUITES)}")
    src.add_argument("--aux", default="none", help="comma list of variants, tasks of one variant joined by '+' "
                     "(e.g. none,reward_pred,unreal,reward_pred+pixel_control), a variant of its own algorithm "
                     "prefixed ALGO: (ppo_lstm:unreal); default none")
    src.add_argument("--seeds", default="3", help="number of seeds N (seeds 0..N-1) or a comma list (0,1,2); default 3")
    src.add_argument("-n", "--timesteps", type=int, default=None, help="env steps per run (a suite sets its own)")
    src.add_argument("--algo", default=None, help=f"algorithm of the runs ({', '.join(ALGORITHMS)}), or a comma "
                     "list: every --aux variant is run with each")
    src.add_argument("--agent", default=None, help="agent preset of every run")
    src.add_argument("--eval-episodes", type=int, default=None, help="suite only: episodes of the final evaluation")
    src.add_argument("--from", dest="from_dirs", nargs="+", default=None, metavar="DIR",
                     help="rebuild the report from existing run folders (searched recursively); runs nothing")
    how = p.add_argument_group("how to run")
    how.add_argument("--workers", type=int, default=1, help="runs at a time (threads split between them); default 1")
    how.add_argument("--backend", choices=["local", "ray"], default="local", help="local subprocesses or a Ray cluster")
    how.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    how.add_argument("--out", "-f", "--log-dir", "--log-folder", dest="out", default=None,
                     help="output folder (default runs/compare-<env or suite>-<timestamp>)")
    how.add_argument("--dry-run", action="store_true", help="print the runs that would be launched, launch nothing")
    rep = p.add_argument_group("report")
    rep.add_argument("--baseline", default=None, help="baseline variant, ALGO:VARIANT where several algorithms ran it "
                     "(default: none if run, else the first variant)")
    rep.add_argument("--reference", default=None, choices=list(stats.REFERENCES),
                     help="published agents to place the results beside (a suite sets atari100k)")
    rep.add_argument("--final-from-eval", action="store_true",
                     help="final score = last evaluation (evaluations.npz) where a run has one (a suite sets it)")
    rep.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples; default 2000")
    rep.add_argument("--truncate", action="store_true", help="cut runs of one env to the shortest budget")
    rep.add_argument("--allow-missing-seeds", action="store_true",
                     help="report although a variant lacks seeds the baseline has (default: refuse, naming them)")
    rep.add_argument("--curve-window", type=int, default=DEFAULT_CURVE_WINDOW,
                     help="episodes averaged into each point of a learning curve; default "
                          f"{DEFAULT_CURVE_WINDOW} (more for envs with many short episodes)")
    return p


def _bad_train_flag(message: str) -> NoReturn:
    raise ConfigError(f"bad train flag after '--': {message}")


def validate_jobs(jobs: Sequence[SweepJob]) -> dict[str, str]:
    """Resolve every run exactly as ``train`` will (env, game, algo, agent, aux, flags) before launching.

    Returns each variant's label as its runs will record it (weights or weighting given
    after '--' are part of it), keyed by the job's ``variant_key`` (``ppo_lstm:unreal`` for a
    job of its own algorithm)."""
    parser = train_parser()
    parser.error = _bad_train_flag  # type: ignore[method-assign]  # argparse reports bad flags through it
    checked: set[tuple] = set()
    labels: dict[str, str] = {}
    for job in jobs:
        key = (job.env, job.game, job.algo, job.variant, job.extra_args)
        if key in checked:
            continue
        checked.add(key)
        argv = build_train_command(job, "runs")[4:]  # drop python -m rlaux.cli train
        labels[job.variant_key] = resolve(config_from_args(parser.parse_args(argv))).label
    return labels


def run_compare(argv: Sequence[str]) -> int:
    """Entry point of ``train_agent.py compare``; returns the exit code (ConfigError -> 2 in rlaux.cli)."""
    own, extra = split_extra(argv)
    args = compare_parser().parse_args(own)
    if args.from_dirs is not None:
        if args.env or args.games or args.suite or args.dry_run or args.timesteps:
            raise ConfigError("--from rebuilds a report from existing runs; it takes no --env/--games/--suite/--timesteps")
        rebuild_report(args.from_dirs, args.out, baseline=args.baseline, reference=args.reference,
                       final_from_eval=args.final_from_eval, reps=args.reps, truncate=args.truncate,
                       curve_window=args.curve_window, allow_missing_seeds=args.allow_missing_seeds)
        return 0
    plan = plan_study(aux=args.aux, seeds=args.seeds, env=args.env, games=args.games, suite=args.suite,
                      timesteps=args.timesteps, algo=args.algo, agent=args.agent, eval_episodes=args.eval_episodes,
                      baseline=args.baseline, reference=args.reference, final_from_eval=args.final_from_eval,
                      extra_args=extra, out=args.out, workers=args.workers, backend=args.backend,
                      address=args.address, reps=args.reps, truncate=args.truncate, curve_window=args.curve_window,
                      resolve_jobs=validate_jobs, allow_missing_seeds=args.allow_missing_seeds)
    if args.dry_run:
        print_dry_run(plan)
        return 0
    outcomes = run_study(plan)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


__all__ = ["compare_parser", "run_compare", "validate_jobs"]
