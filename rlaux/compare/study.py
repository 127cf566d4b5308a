"""A comparison study from start to end: plan the sweep, run it with progress lines, report, summarise.

The library behind ``python train_agent.py compare`` (its flags are parsed in
:mod:`rlaux.cli.compare`). Everything lands in one folder: ``runs/<run>/`` (each run's
logs, monitor csvs, model), ``logs/<run>.log`` (each training's output), ``curves.csv``,
``scores.csv``, ``figures/*.png`` and ``report.md``. Planning the same study again with
the same ``out`` skips the runs that finished (resume). Every check happens in
:func:`plan_study`, before anything is launched.

Algorithms: ``--algo ppo,ppo_lstm --aux none,unreal`` runs every variant with each algorithm
(the cross product); a variant may name its own, ``--aux none,unreal,ppo:unreal`` with
``--algo ppo_lstm``. A study that mixes algorithms names its run folders
``<env>[-<game>]__<algo>__<aux>__s<seed>`` and its variants ``<algo>:<label>`` in the report
(``ppo_lstm:none``); a study of one algorithm keeps ``<env>[-<game>]__<aux>__s<seed>`` and the
bare labels, as before (so its earlier runs resume). Adding a second algorithm to a study
renames its runs: they run again.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rlaux.algorithms import ALGORITHMS
from rlaux.compare import stats
from rlaux.compare.results import DEFAULT_CURVE_WINDOW
from rlaux.compare.runs import split_algorithm, with_algorithm
from rlaux.compare.suites import Suite, get_suite
from rlaux.compare.summary import all_suite_runs, check_report_settings, report_and_summarise
from rlaux.compare.sweep import (
    DEFAULT_EXTRA_ARGS,
    JobOutcome,
    Launch,
    SweepGrid,
    SweepJob,
    build_train_command,
    launch_subprocess,
    run_state,
    run_sweep,
)
from rlaux.envs import resolve_env
from rlaux.errors import ConfigError
from rlaux.run.config import agent_preset
from rlaux.run_folder import RunFolder
from rlaux.tasks import parse_names, variant_label

#: Train flags that the sweep sets per run: not allowed among the extra train flags.
RESERVED_TRAIN_FLAGS = ("--env", "--game", "--aux", "--algo", "--seed", "--timesteps", "-n", "--n-timesteps",
                        "--log-dir", "-f", "--log-folder", "--run-name")

#: Resolves every job as ``train`` will; returns each variant's label as its runs will record it,
#: keyed by the job's :attr:`~rlaux.compare.sweep.SweepJob.variant_key`.
JobResolver = Callable[[Sequence[SweepJob]], Mapping[str, str]]


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


def parse_algos(text: str | None) -> list[str | None]:
    """'ppo,ppo_lstm' -> ['ppo', 'ppo_lstm'], checked; None or '' -> [None] (train's default)."""
    algos = [a.strip() for a in (text or "").split(",") if a.strip()]
    for algo in algos:
        _check_algo(algo, "--algo")
    if len(set(algos)) != len(algos):
        raise ConfigError(f"an algorithm is given twice in --algo {text!r}")
    return list(algos) or [None]


def _check_algo(algo: str, where: str) -> None:
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo!r} in {where}; valid: {', '.join(ALGORITHMS)}")


def parse_variants(text: str, algos: Sequence[str | None] = (None,)) -> list[str]:
    """'none,reward_pred+pixel_control' -> ['none', 'reward_pred,pixel_control'] (the train --aux form), checked.

    A variant may name its algorithm, ``ppo_lstm:unreal`` -> ``'ppo_lstm:unreal'``; one that does
    not is run with each of ``algos`` (``'ppo:none', 'ppo_lstm:none'``; ``None``: no prefix)."""
    variants: list[str] = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        algo, _, tasks = item.rpartition(":")
        if algo:
            _check_algo(algo, f"--aux variant {item!r}")
        parse_names(tasks.split("+"))  # ConfigError naming an unknown task
        for each in [algo] if algo else algos:
            variant = f"{each}:{tasks.replace('+', ',')}" if each else tasks.replace("+", ",")
            if variant in variants:
                raise ConfigError(f"variant {variant.replace(',', '+')!r} given twice in --aux")
            variants.append(variant)
    if not variants:
        raise ConfigError("--aux names no variant (use 'none' for the baseline)")
    return variants


def check_extra_args(extra: Sequence[str]) -> None:
    """ConfigError if a train flag passed to every run is one the sweep sets per run."""
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in RESERVED_TRAIN_FLAGS:
            raise ConfigError(f"train flag {flag} after '--' is set by the sweep for each run; use the compare flags")


def default_out(label: str) -> Path:
    """``runs/compare-<label>-<timestamp>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"compare-{re.sub(r'[^A-Za-z0-9_.-]+', '-', label).strip('-')}-{stamp}"


@dataclass(frozen=True)
class StudyPlan:
    """A checked study: the jobs to run, where and how, and how to report them."""

    jobs: list[SweepJob]
    out: Path
    games: list[str | None]
    variants: list[str]  #: as the grid names them: ``<aux>``, or ``<algo>:<aux>`` in a study of several algorithms
    timesteps: int
    baseline: str  #: the baseline's label, as its runs record it
    reference: str | None
    final_from_eval: bool
    suite: Suite | None = None
    workers: int = 1
    backend: str = "local"
    address: str | None = None
    reps: int = stats.DEFAULT_REPS
    truncate: bool = False
    curve_window: int = DEFAULT_CURVE_WINDOW
    allow_missing_seeds: bool = False


def plan_study(
    *,
    aux: str = "none",
    seeds: str = "3",
    env: str | None = None,
    games: str | None = None,
    suite: str | None = None,
    timesteps: int | None = None,
    algo: str | None = None,
    agent: str | None = None,
    eval_episodes: int | None = None,
    baseline: str | None = None,
    reference: str | None = None,
    final_from_eval: bool = False,
    extra_args: Sequence[str] = (),
    out: str | Path | None = None,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    reps: int = stats.DEFAULT_REPS,
    truncate: bool = False,
    curve_window: int = DEFAULT_CURVE_WINDOW,
    resolve_jobs: JobResolver | None = None,
    allow_missing_seeds: bool = False,
) -> StudyPlan:
    """Check every setting and build the grid env/game x variant x seed; launch nothing.

    ``aux`` is the comma list of variants (tasks of one variant joined by '+', optionally
    prefixed ``<algo>:``), ``algo`` a comma list of algorithms every unprefixed variant runs
    with (see the module docstring), ``seeds`` a count or a comma list, ``games`` a comma
    list. A ``suite`` sets the env, games, budget,
    final evaluation and reference. ``extra_args`` go to every training run; ``workers``
    runs at a time on ``backend`` (local or ray, at ``address``); ``reps`` bootstrap
    resamples in the report, ``truncate`` cuts runs of one env to the shortest budget,
    ``curve_window`` episodes make each point of a learning curve.
    ``resolve_jobs`` (see :data:`JobResolver`) checks each run as ``train`` will and names
    the labels its runs will record (weights or weighting among ``extra_args`` are part of
    them); without it, a variant's label is its task names.
    """
    chosen_suite = get_suite(suite) if suite else None
    if chosen_suite is not None:
        if env or games:
            raise ConfigError("--suite sets the env and the games; drop --env/--games")
        env_name, game_list = chosen_suite.env, list(chosen_suite.games)
        budget = timesteps or chosen_suite.timesteps
        if eval_episodes is not None and eval_episodes < 1:
            raise ConfigError(f"--eval-episodes must be >= 1, got {eval_episodes}")
        suite_args = chosen_suite.train_args(eval_episodes)
        if budget != chosen_suite.timesteps:
            suite_args = ["--eval-freq", str(budget), *suite_args[2:]]
        reference = reference or chosen_suite.reference
        final_from_eval = True
        label = chosen_suite.name
    else:
        if not env:
            raise ConfigError("give --env (with --games), --suite, or --from DIR")
        if eval_episodes is not None:
            raise ConfigError("--eval-episodes belongs to --suite; pass '-- --eval-freq N --eval-episodes K' instead")
        if timesteps is None:
            raise ConfigError("--timesteps is required (env steps per run)")
        env_name = env
        game_list = [g.strip() for g in games.split(",") if g.strip()] if games else [None]
        if not game_list:
            raise ConfigError("--games names no game")
        budget, suite_args, label = timesteps, [], env
    if budget < 1:
        raise ConfigError(f"--timesteps must be >= 1, got {budget}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    check_report_settings(reps, curve_window)
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; valid: local, ray")
    if address and backend != "ray":
        raise ConfigError("--address is for --backend ray")
    if reference is not None and reference not in stats.REFERENCES:
        raise ConfigError(f"unknown reference {reference!r}; valid: {', '.join(stats.REFERENCES)}")
    seed_spec = parse_seeds(seeds)
    given = [_split_variant(v) for v in parse_variants(aux, parse_algos(algo))]
    default_algo = agent_preset(agent)["algo"] if agent else "ppo"  # train's, for a variant that names none
    algos = [a or default_algo for a, _ in given]
    mixed = len(set(algos)) > 1
    labels = [variant_label(tasks) for _, tasks in given]
    shown = [with_algorithm(a, label) if mixed else label for a, label in zip(algos, labels, strict=True)]
    if len(set(shown)) != len(shown):
        raise ConfigError(f"--aux variants {', '.join(aux.split(','))} name the same task set twice")
    index = _baseline_index(baseline, algos, labels, shown)
    for game in game_list:
        resolve_env(env_name, game=game)  # unknown env or game: one line, close matches
    check_extra_args(extra_args)
    if mixed:  # each job names its algorithm: in its command and its run name
        variants, named = [f"{a}:{tasks}" for a, (_, tasks) in zip(algos, given, strict=True)], []
    else:  # one algorithm: as before, --algo for every run where one is named
        variants, named = [tasks for _, tasks in given], sorted({a for a, _ in given if a})
    algo_args = (["--algo", named[0]] if named else []) + (["--agent", agent] if agent else [])
    grid = SweepGrid(envs=[(env_name, g) for g in game_list], variants=variants, seeds=seed_spec, timesteps=budget,
                     extra_args=[*DEFAULT_EXTRA_ARGS, *algo_args, *suite_args, *extra_args])
    jobs = grid.jobs()
    baseline_label = shown[index]
    if resolve_jobs is not None:
        run_label = resolve_jobs(jobs).get(variants[index], labels[index])
        baseline_label = with_algorithm(algos[index], run_label) if mixed else run_label
    return StudyPlan(jobs=jobs, out=Path(out) if out else default_out(label), games=game_list, variants=variants,
                     timesteps=budget, baseline=baseline_label, reference=reference,
                     final_from_eval=final_from_eval, suite=chosen_suite, workers=workers, backend=backend,
                     address=address, reps=reps, truncate=truncate, curve_window=curve_window,
                     allow_missing_seeds=allow_missing_seeds)


def _split_variant(variant: str) -> tuple[str | None, str]:
    algo, _, tasks = variant.rpartition(":")
    return algo or None, tasks


def _baseline_index(baseline: str | None, algos: list[str], labels: list[str], shown: list[str]) -> int:
    """Which variant is the baseline: the one ``baseline`` names (its algorithm may be left out where
    one variant of that label is run), else the first ``none``, else the first."""
    if not baseline:
        return labels.index("none") if "none" in labels else 0
    algo, tasks = _split_variant(parse_variants(baseline)[0])
    label = variant_label(tasks)
    matches = [i for i, (a, v) in enumerate(zip(algos, labels, strict=True)) if v == label and algo in (None, a)]
    if not matches:
        raise ConfigError(f"--baseline {baseline!r} is not among the variants {', '.join(shown)}")
    if len(matches) > 1:
        raise ConfigError(f"--baseline {baseline!r} is run with several algorithms; name one: "
                          f"{', '.join(shown[i] for i in matches)}")
    return matches[0]


def _finished(plan: StudyPlan, job: SweepJob) -> bool:
    return RunFolder(plan.out / "runs" / job.run_name).finished


def _resumable(plan: StudyPlan, job: SweepJob) -> bool:
    return plan.backend == "local" and run_state(plan.out / "runs" / job.run_name) == "resume"


def print_dry_run(plan: StudyPlan) -> None:
    """Print the runs the plan would launch (finished ones marked), launch nothing."""
    jobs = plan.jobs
    finished = sum(_finished(plan, j) for j in jobs)
    print(f"dry run: {len(jobs)} runs ({len(plan.games)} game(s) x {len(plan.variants)} variant(s) x "
          f"{len(jobs) // (len(plan.games) * len(plan.variants))} seed(s)), {plan.timesteps:,} env steps each, "
          f"{plan.workers} at a time, backend {plan.backend}; {finished} already finished in {plan.out}")
    if plan.suite is not None:
        print(f"suite {plan.suite.name}: {plan.suite.description}")
    if any(job.algo for job in jobs):
        variants = ", ".join(v.replace(",", "+") for v in plan.variants)
        print(f"variants (algorithm:aux): {variants}; the report's baseline: {plan.baseline}")
    for job in jobs:
        resume = _resumable(plan, job)
        command = build_train_command(job, plan.out / "runs", resume=resume)
        mark = "[skip, finished] " if _finished(plan, job) else "[resume] " if resume else ""
        print(mark + " ".join(command[1:]))


class ProgressLaunch:
    """Wraps a launcher to print one line per finished run."""

    def __init__(self, total: int, launch: Launch = launch_subprocess) -> None:
        self.total, self.launch, self.count, self.lock = total, launch, 0, threading.Lock()

    def __call__(self, command: list[str], env: dict[str, str], log_path: Path) -> int:
        start = time.monotonic()
        code = self.launch(command, env, log_path)
        with self.lock:
            self.count += 1
            state = "done" if code == 0 else f"FAILED (exit {code}, log {log_path})"
            print(f"[{self.count}/{self.total}] {log_path.stem}: {state} in {time.monotonic() - start:.0f} s", flush=True)
        return code


def run_study(plan: StudyPlan, launch: Launch | None = None) -> list[JobOutcome]:
    """Run the plan's sweep (printing progress), then write and summarise the report; one outcome per job.

    No report when every run failed (said on stderr). ``launch`` replaces the local
    subprocess launcher (default :func:`~rlaux.compare.sweep.launch_subprocess`).
    """
    jobs, out, workers, backend = plan.jobs, plan.out, plan.workers, plan.backend
    out.mkdir(parents=True, exist_ok=True)
    todo = sum(not _finished(plan, j) for j in jobs)
    resumed = sum(_resumable(plan, j) for j in jobs)
    resuming = f"; {resumed} resume from a checkpoint" if resumed else ""
    print(f"compare: {len(jobs)} runs ({todo} to run, {len(jobs) - todo} already finished{resuming}) into {out}, "
          f"{workers} at a time, backend {backend}", flush=True)
    start = time.monotonic()
    progress = ProgressLaunch(todo, launch or launch_subprocess) if backend == "local" else None
    outcomes = run_sweep(jobs, out, workers=workers, backend=backend, address=plan.address, launch=progress)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    print(f"sweep: {counts['done']} done, {counts['skipped']} skipped (already finished), "
          f"{counts['failed']} failed, in {time.monotonic() - start:.0f} s", flush=True)
    failed = [o for o in outcomes if o.status == "failed"]
    for o in failed:
        print(f"failed: {o.job.run_name} (exit {o.returncode}); log: {o.log_path}", file=sys.stderr)
    if len(failed) == len(outcomes):
        print("error: every run failed; no report (see the logs above)", file=sys.stderr)
        return outcomes
    report_and_summarise([out / "runs"], out, plan.baseline, plan.reference, plan.final_from_eval, plan.reps,
                         plan.truncate, plan.curve_window, allow_missing_seeds=plan.allow_missing_seeds or bool(failed))
    return outcomes


def rebuild_report(
    dirs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    baseline: str | None = None,
    reference: str | None = None,
    final_from_eval: bool = False,
    reps: int = stats.DEFAULT_REPS,
    truncate: bool = False,
    curve_window: int = DEFAULT_CURVE_WINDOW,
    allow_missing_seeds: bool = False,
) -> Path:
    """The report of existing run folders (searched recursively); runs nothing.

    ``out`` defaults to the one folder given, else ``runs/compare-from-<timestamp>``.
    ``baseline`` is a variant (``reward_pred+pixel_control``), a run label with weights
    or weighting, or a ``--label`` the runs were trained with; default none. Where the runs mix algorithms it may name one
    (``ppo_lstm:none``), and must where its label was run with several. Runs of a suite's
    env preset get the suite's report (reference atari100k, final evaluation scores).
    """
    folders = [Path(d) for d in dirs]
    for d in folders:
        if not d.exists():
            raise ConfigError(f"--from folder {str(d)!r} does not exist")
    check_report_settings(reps, curve_window)
    out_dir = Path(out) if out else (folders[0] if len(folders) == 1 else default_out("from"))
    if baseline and any(c in baseline for c in "[@"):  # a run label with weights or weighting
        baseline_label = baseline
    elif baseline:
        try:
            algo, tasks = split_algorithm(baseline)
            label = variant_label(parse_variants(tasks)[0])
            baseline_label = with_algorithm(algo, label) if algo else label
        except ConfigError:  # not tasks: a --label the runs were given (build_report checks it names runs)
            baseline_label = baseline
    else:
        baseline_label = "none"
    if all_suite_runs(folders):  # runs of --suite atari100k/atari5: the suite's report
        reference, final_from_eval = reference or "atari100k", True
    return report_and_summarise(folders, out_dir, baseline_label, reference, final_from_eval, reps, truncate,
                                curve_window, allow_missing_seeds=allow_missing_seeds)


__all__ = ["RESERVED_TRAIN_FLAGS", "JobResolver", "ProgressLaunch", "StudyPlan", "check_extra_args",
           "default_out", "parse_algos", "parse_seeds", "parse_variants", "plan_study", "print_dry_run",
           "rebuild_report", "run_study"]
