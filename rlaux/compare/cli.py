"""``python train_agent.py compare ...``: run a sweep of variants x seeds, then write the report.

Synopsis::

    compare --env ENV [--games G1,G2] --aux none,reward_pred,unreal --seeds 5 --timesteps N
            [--workers 2] [--out DIR] [--algo ppo|a2c] [--agent PRESET] [--baseline VARIANT]
            [--backend local|ray] [--address ADDR] [--reps 2000] [--dry-run] [-- extra train flags...]
    compare --suite atari100k|atari5 --aux none,unreal --seeds 5 [...]   (protocol from rlaux.compare.suites)
    compare --from DIR [DIR ...] [--out OUT] [--baseline none] [--reference atari100k] [--final-from-eval]
            (runs of a suite's env preset get the suite's report: reference atari100k, final evaluation scores)

Variants are separated by commas; the tasks of one variant by '+' (``none,reward_pred+pixel_control``).
Everything lands in one folder: ``runs/<run>/`` (each run's logs, monitor csvs, model),
``logs/<run>.log`` (each training's output), ``curves.csv``, ``scores.csv``,
``figures/*.png`` and ``report.md``. Running the same command again with the same
``--out`` skips the runs that finished (resume). Bad input is one line and exit code 2,
before anything is launched.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from rlaux.cli import _Parser, config_from_args, train_parser
from rlaux.compare import stats
from rlaux.compare.suites import SUITES, get_suite
from rlaux.compare.sweep import (
    DEFAULT_EXTRA_ARGS,
    FINISHED_MARKER,
    JobOutcome,
    SweepGrid,
    SweepJob,
    build_train_command,
    launch_subprocess,
    run_sweep,
)
from rlaux.errors import ConfigError

#: Train flags that the sweep sets per run: not allowed after ``--``.
RESERVED_TRAIN_FLAGS = ("--env", "--game", "--aux", "--seed", "--timesteps", "-n", "--n-timesteps",
                        "--log-dir", "-f", "--log-folder", "--run-name")


def compare_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="train_agent.py compare",
        description="Compare the sample efficiency of aux-task variants over seeds: run the sweep, "
        "then write curves.csv, figures and report.md into one folder. Flags after '--' go to every training run.",
    )
    src = p.add_argument_group("what to run")
    src.add_argument("--env", default=None, help="env preset (MinAtar, Atari, ...) or gymnasium id")
    src.add_argument("--games", default=None, help="comma list of games of the preset (default: the preset's game)")
    src.add_argument("--suite", default=None, help=f"a benchmark protocol instead of --env/--games: {', '.join(SUITES)}")
    src.add_argument("--aux", default="none", help="comma list of variants, tasks of one variant joined by '+' "
                     "(e.g. none,reward_pred,unreal,reward_pred+pixel_control); default none")
    src.add_argument("--seeds", default="3", help="number of seeds N (seeds 0..N-1) or a comma list (0,1,2); default 3")
    src.add_argument("-n", "--timesteps", type=int, default=None, help="env steps per run (a suite sets its own)")
    src.add_argument("--algo", choices=["ppo", "a2c"], default=None, help="algorithm of every run")
    src.add_argument("--agent", default=None, help="agent preset of every run")
    src.add_argument("--eval-episodes", type=int, default=None, help="suite only: episodes of the final evaluation")
    src.add_argument("--from", dest="from_dirs", nargs="+", default=None, metavar="DIR",
                     help="rebuild the report from existing run folders (searched recursively); runs nothing")
    how = p.add_argument_group("how to run")
    how.add_argument("--workers", type=int, default=1, help="runs at a time (threads split between them); default 1")
    how.add_argument("--backend", choices=["local", "ray"], default="local", help="local subprocesses or a Ray cluster")
    how.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    how.add_argument("--out", default=None, help="output folder (default runs/compare-<env or suite>-<timestamp>)")
    how.add_argument("--dry-run", action="store_true", help="print the runs that would be launched, launch nothing")
    rep = p.add_argument_group("report")
    rep.add_argument("--baseline", default=None, help="baseline variant (default: none if run, else the first variant)")
    rep.add_argument("--reference", default=None, choices=list(stats.REFERENCES),
                     help="published agents to place the results beside (a suite sets atari100k)")
    rep.add_argument("--final-from-eval", action="store_true",
                     help="final score = last evaluation (evaluations.npz) where a run has one (a suite sets it)")
    rep.add_argument("--reps", type=int, default=stats.DEFAULT_REPS, help="bootstrap resamples; default 2000")
    rep.add_argument("--truncate", action="store_true", help="cut runs of one env to the shortest budget")
    return p


def _split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def parse_seeds(text: str) -> int | list[int]:
    """'5' -> 5 (seeds 0..4); '0,1,2' -> [0, 1, 2]. ConfigError for anything else or N < 1."""
    text = text.strip()
    try:
        numbers = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes a number of seeds or a comma list of integers, got {text!r}") from None
    if "," not in text:
        if not numbers or numbers[0] < 1:
            raise ConfigError(f"--seeds must be >= 1 (a number of seeds) or a comma list of seeds, got {text!r}")
        return numbers[0]
    seeds = numbers
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds list must hold non-negative integers, got {text!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"duplicate seeds in --seeds {text!r}")
    return seeds


def parse_variants(text: str) -> list[str]:
    """'none,reward_pred+pixel_control' -> ['none', 'reward_pred,pixel_control'] (the train --aux form), checked."""
    from rlaux.tasks import parse_names

    variants: list[str] = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        parse_names(item.split("+"))  # ConfigError naming an unknown task
        variant = item.replace("+", ",")
        if variant in variants:
            raise ConfigError(f"variant {item!r} given twice in --aux")
        variants.append(variant)
    if not variants:
        raise ConfigError("--aux names no variant (use 'none' for the baseline)")
    return variants


def variant_label(variant: str) -> str:
    """The label the report gives a variant (a run's ``aux_label``): tasks expanded, '+'-joined."""
    from rlaux.tasks import parse_names

    return "+".join(parse_names(variant.split(","))) or "none"


def _check_extra(extra: Sequence[str]) -> None:
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in RESERVED_TRAIN_FLAGS:
            raise ConfigError(f"train flag {flag} after '--' is set by the sweep for each run; use the compare flags")


def _validate_jobs(jobs: Sequence[SweepJob]) -> dict[str, str]:
    """Resolve every run exactly as ``train`` will (env, game, algo, agent, aux, flags) before launching.

    Returns each variant's label as its runs will record it (weights or weighting given
    after '--' are part of it)."""
    from rlaux.train import resolve

    parser = train_parser()

    def one_line(message: str) -> None:
        raise ConfigError(f"bad train flag after '--': {message}")

    parser.error = one_line  # type: ignore[method-assign]  # argparse calls self.error
    checked: set[tuple] = set()
    labels: dict[str, str] = {}
    for job in jobs:
        key = (job.env, job.game, job.variant, job.extra_args)
        if key in checked:
            continue
        checked.add(key)
        argv = build_train_command(job, "runs")[4:]  # drop python -m rlaux.cli train
        args = parser.parse_args(argv)
        labels[job.variant] = resolve(config_from_args(args)).label
    return labels


def _default_out(label: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"compare-{re.sub(r'[^A-Za-z0-9_.-]+', '-', label).strip('-')}-{stamp}"


class _ProgressLaunch:
    """Wraps the local launcher to print one line per finished run."""

    def __init__(self, total: int) -> None:
        self.total, self.count, self.lock = total, 0, threading.Lock()

    def __call__(self, command: list[str], env: dict[str, str], log_path: Path) -> int:
        start = time.monotonic()
        code = launch_subprocess(command, env, log_path)
        with self.lock:
            self.count += 1
            state = "done" if code == 0 else f"FAILED (exit {code}, log {log_path})"
            print(f"[{self.count}/{self.total}] {log_path.stem}: {state} in {time.monotonic() - start:.0f} s", flush=True)
        return code


def _summary(out: Path, baseline_label: str) -> str:
    """The sample-efficiency ratios, from the report's curves.csv and scores.csv, as a text table."""
    import pandas as pd

    curves = pd.read_csv(out / "curves.csv")
    scores = pd.read_csv(out / "scores.csv")
    table = stats.sample_efficiency(curves, scores, baseline_label)
    finals = scores.groupby(["env", "variant"])["final"].apply(lambda v: stats.iqm(v.to_numpy())).to_dict()
    rows = [("env", "variant", "final IQM", f"steps to {baseline_label}'s final", "ratio")]
    for row in table.itertuples():
        reached = row.steps == row.steps  # not NaN
        rows.append((row.env, row.variant, f"{finals[(row.env, row.variant)]:.3f}",
                     f"{row.steps:,.0f}" if reached else "not reached",
                     f"{row.ratio:.2f}x" if reached else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _report(run_dirs: list[Path], out: Path, baseline: str, args: argparse.Namespace, reference: str | None,
            final_from_eval: bool) -> int:
    from rlaux.compare.report import build_report

    report = build_report([str(d) for d in run_dirs], str(out), baseline=baseline, reference=reference,
                          reps=args.reps, truncate=args.truncate, final_from_eval=final_from_eval)
    print(f"\nreport: {report}")
    print(f"data: {out / 'curves.csv'}, {out / 'scores.csv'}; figures: {out / 'figures'}")
    print(f"\nsample efficiency (ratio = env steps to reach {baseline}'s final score / {baseline}'s own steps):")
    print(_summary(out, baseline))
    return 0


def _from_main(args: argparse.Namespace) -> int:
    if args.env or args.games or args.suite or args.dry_run or args.timesteps:
        raise ConfigError("--from rebuilds a report from existing runs; it takes no --env/--games/--suite/--timesteps")
    dirs = [Path(d) for d in args.from_dirs]
    for d in dirs:
        if not d.exists():
            raise ConfigError(f"--from folder {str(d)!r} does not exist")
    out = Path(args.out) if args.out else (dirs[0] if len(dirs) == 1 else _default_out("from"))
    if args.baseline and any(c in args.baseline for c in "[@"):  # a run label with weights or weighting
        baseline = args.baseline
    else:
        baseline = variant_label(parse_variants(args.baseline)[0]) if args.baseline else "none"
    reference, final_from_eval = args.reference, args.final_from_eval
    if _all_suite_runs(dirs):  # runs of --suite atari100k/atari5: the suite's report
        reference, final_from_eval = reference or "atari100k", True
    return _report(dirs, out, baseline, args, reference, final_from_eval)


def _all_suite_runs(dirs: Sequence[Path]) -> bool:
    """True if every run under ``dirs`` used the Atari 100k protocol's env preset."""
    import json

    from rlaux.compare.results import find_run_dirs

    envs = set()
    for run_dir in find_run_dirs(dirs):
        try:
            envs.add(str(json.loads((run_dir / "config.json").read_text()).get("env", "")).lower())
        except (OSError, ValueError, AttributeError):
            continue
    suite_envs = {suite.env.lower() for suite in SUITES.values()}
    return bool(envs) and envs <= suite_envs


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``train_agent.py compare``; returns the exit code (ConfigError -> 2 in rlaux.cli)."""
    own, extra = _split_extra(sys.argv[1:] if argv is None else argv)
    args = compare_parser().parse_args(own)
    if args.from_dirs is not None:
        return _from_main(args)

    # ------------------------------------------------ validate everything before launching
    suite = get_suite(args.suite) if args.suite else None
    if suite is not None:
        if args.env or args.games:
            raise ConfigError("--suite sets the env and the games; drop --env/--games")
        env, games = suite.env, list(suite.games)
        timesteps = args.timesteps or suite.timesteps
        if args.eval_episodes is not None and args.eval_episodes < 1:
            raise ConfigError(f"--eval-episodes must be >= 1, got {args.eval_episodes}")
        suite_args = suite.train_args(args.eval_episodes)
        if timesteps != suite.timesteps:
            suite_args = ["--eval-freq", str(timesteps), *suite_args[2:]]
        reference = args.reference or suite.reference
        final_from_eval = True
        label = suite.name
    else:
        if not args.env:
            raise ConfigError("give --env (with --games), --suite, or --from DIR")
        if args.eval_episodes is not None:
            raise ConfigError("--eval-episodes belongs to --suite; pass '-- --eval-freq N --eval-episodes K' instead")
        if args.timesteps is None:
            raise ConfigError("--timesteps is required (env steps per run)")
        env = args.env
        games = [g.strip() for g in args.games.split(",") if g.strip()] if args.games else [None]
        if not games:
            raise ConfigError("--games names no game")
        timesteps, suite_args = args.timesteps, []
        reference, final_from_eval, label = args.reference, args.final_from_eval, env
    if timesteps < 1:
        raise ConfigError(f"--timesteps must be >= 1, got {timesteps}")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.reps < 1:
        raise ConfigError(f"--reps must be >= 1, got {args.reps}")
    if args.address and args.backend != "ray":
        raise ConfigError("--address is for --backend ray")
    seeds = parse_seeds(args.seeds)
    variants = parse_variants(args.aux)
    labels = [variant_label(v) for v in variants]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--aux variants {', '.join(args.aux.split(','))} name the same task set twice")
    if args.baseline:
        baseline = variant_label(parse_variants(args.baseline)[0])
        if baseline not in labels:
            raise ConfigError(f"--baseline {args.baseline!r} is not among the variants {', '.join(labels)}")
    else:
        baseline = "none" if "none" in labels else labels[0]
    from rlaux.envs import resolve_env

    for game in games:
        resolve_env(env, game=game)  # unknown env or game: one line, close matches
    _check_extra(extra)
    algo_args = (["--algo", args.algo] if args.algo else []) + (["--agent", args.agent] if args.agent else [])
    extra_args = [*DEFAULT_EXTRA_ARGS, *algo_args, *suite_args, *extra]
    grid = SweepGrid(envs=[(env, g) for g in games], variants=variants, seeds=seeds, timesteps=timesteps,
                     extra_args=extra_args)
    jobs = grid.jobs()
    run_labels = _validate_jobs(jobs)
    baseline = {variant_label(v): run_labels[v] for v in variants if v in run_labels}.get(baseline, baseline)
    out = Path(args.out) if args.out else _default_out(label)

    if args.dry_run:
        finished = sum((out / "runs" / j.run_name / FINISHED_MARKER).is_file() for j in jobs)
        print(f"dry run: {len(jobs)} runs ({len(games)} game(s) x {len(variants)} variant(s) x "
              f"{len(jobs) // (len(games) * len(variants))} seed(s)), {timesteps:,} env steps each, "
              f"{args.workers} at a time, backend {args.backend}; {finished} already finished in {out}")
        if suite is not None:
            print(f"suite {suite.name}: {suite.description}")
        for job in jobs:
            done = (out / "runs" / job.run_name / FINISHED_MARKER).is_file()
            command = build_train_command(job, out / "runs")
            print(("[skip, finished] " if done else "") + " ".join(command[1:]))
        return 0

    # ------------------------------------------------ run
    out.mkdir(parents=True, exist_ok=True)
    todo = sum(not (out / "runs" / j.run_name / FINISHED_MARKER).is_file() for j in jobs)
    print(f"compare: {len(jobs)} runs ({todo} to run, {len(jobs) - todo} already finished) into {out}, "
          f"{args.workers} at a time, backend {args.backend}", flush=True)
    start = time.monotonic()
    launch = _ProgressLaunch(todo) if args.backend == "local" else None
    outcomes: list[JobOutcome] = run_sweep(jobs, out, workers=args.workers, backend=args.backend,
                                           address=args.address, launch=launch)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(f"sweep: {counts['done']} done, {counts['skipped']} skipped (already finished), "
          f"{counts['failed']} failed, in {time.monotonic() - start:.0f} s", flush=True)
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        print(f"failed: {o.job.run_name} (exit {o.returncode}); log: {o.log_path}", file=sys.stderr)
    if len(failed) == len(outcomes):
        print("error: every run failed; no report (see the logs above)", file=sys.stderr)
        return 1
    _report([out / "runs"], out, baseline, args, reference, final_from_eval)
    return 1 if failed else 0
