"""Run a grid of trainings (env/game x variant x seed), each as a subprocess of the rlaux CLI.

A variant is a train ``--aux`` value (``reward_pred,pixel_control``), or ``<algo>:<aux>``
(``ppo_lstm:unreal``) for a run of its own algorithm: such a job passes ``--algo`` and has the
algorithm in its run name, ``<env>[-<game>]__<algo>__<aux>__s<seed>``, so that the runs of two
algorithms never share a folder.

Layout: ``<out_dir>/runs/<run name>/`` (written by the CLI), ``<out_dir>/logs/<run name>.log``
(stdout+stderr of the subprocess). Resume: a run whose folder holds ``final_model.zip``
is skipped; an interrupted run with a valid checkpoint continues from it (``train --resume``:
each job checkpoints ``SWEEP_CHECKPOINTS`` times over its budget, and on SIGTERM); any other
unfinished run folder is deleted and the run redone. So a sweep killed with its session loses
at most a tenth of each run in flight. (The Ray backend trains in temporary folders: it redoes
unfinished runs.) Checkpoints leave out the auxiliary replay unless ``--save-replay`` is among
the extra args: a resumed run's replay refills from its next rollout.

Parallelism: ``workers`` runs at a time (a thread pool, each thread waiting on its own
``python -m rlaux.cli train`` process), each process limited to
``max(1, cores // workers)`` threads via OMP_NUM_THREADS, MKL_NUM_THREADS and
TORCH_NUM_THREADS, unless the caller's environment sets one of them: then all three take its value
(two sweeps side by side on one machine: ``OMP_NUM_THREADS=1`` for each). ``backend="ray"`` sends
the same command to a Ray cluster instead; each task ships its run folder back as tar bytes into
the same layout.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rlaux.errors import ConfigError, import_optional
from rlaux.run.checkpoint import CheckpointError, latest_checkpoint
from rlaux.run_folder import RunFolder

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")
DEFAULT_EXTRA_ARGS = ("--no-progress",)
#: Checkpoints per run of a sweep (``--save-freq`` = budget / this), so that an interrupted run resumes.
SWEEP_CHECKPOINTS = 10
#: The train flags that may go with ``--resume`` (the rest come from the run's config.json).
RESUME_FLAGS = {"--no-progress": 0, "--device": 1, "-v": 1, "--verbose": 1}


@dataclass(frozen=True)
class SweepJob:
    """One training run of the sweep."""

    env: str
    game: str | None
    variant: str
    seed: int
    timesteps: int
    extra_args: tuple[str, ...] = DEFAULT_EXTRA_ARGS
    algo: str | None = None  #: the run's ``--algo``; None: as ``extra_args`` say (or train's default)

    @property
    def variant_key(self) -> str:
        """The variant as the grid names it: ``<algo>:<aux>`` for a job of its own algorithm, else ``<aux>``."""
        return f"{self.algo}:{self.variant}" if self.algo else self.variant

    @property
    def run_name(self) -> str:
        """Folder name: ``<env>[-<game>]__[<algo>__]<variant>__s<seed>``, file-name safe."""
        env = self.env if self.game is None else f"{self.env}-{self.game}"
        parts = [env, *([self.algo] if self.algo else []), self.variant, f"s{self.seed}"]
        return "__".join(re.sub(r"[^A-Za-z0-9_.+-]+", "+", p).strip("+") for p in parts)


@dataclass
class SweepGrid:
    """The cross product envs x variants x seeds.

    ``envs``: ``"MinAtar"`` or ``("Atari", "Pong")`` / ``"Atari:Pong"`` (env preset, game);
    ``variants``: ``"unreal"`` or ``"ppo_lstm:unreal"`` / ``("ppo_lstm", "unreal")`` (algorithm, aux);
    ``seeds``: a count ``n`` (seeds 0..n-1) or explicit seeds.
    """

    envs: Sequence[str | tuple[str, str | None]]
    variants: Sequence[str | tuple[str | None, str]]
    seeds: int | Sequence[int]
    timesteps: int
    extra_args: Sequence[str] = field(default_factory=lambda: list(DEFAULT_EXTRA_ARGS))

    def jobs(self) -> list[SweepJob]:
        """Every job, validated (clear :class:`ConfigError` for an empty or bad grid)."""
        if isinstance(self.seeds, int):
            if self.seeds < 1:
                raise ConfigError(f"--seeds must be >= 1 (a number of seeds), got {self.seeds}")
            seeds = list(range(self.seeds))
        else:
            seeds = [int(s) for s in self.seeds]
            if not seeds:
                raise ConfigError("no seeds given; --seeds must be >= 1")
            if len(set(seeds)) != len(seeds):
                raise ConfigError(f"duplicate seeds in {seeds}")
        if not self.envs:
            raise ConfigError("no env given for the sweep")
        if not self.variants:
            raise ConfigError("no variant given for the sweep (use 'none' for the baseline)")
        if self.timesteps < 1:
            raise ConfigError(f"--timesteps must be >= 1, got {self.timesteps}")
        envs = [_parse_env(e) for e in self.envs]
        variants = [_parse_variant(v) for v in self.variants]
        return [
            SweepJob(env, game, variant, seed, self.timesteps, tuple(self.extra_args), algo)
            for env, game in envs
            for algo, variant in variants
            for seed in seeds
        ]


def _parse_env(spec: str | tuple[str, str | None]) -> tuple[str, str | None]:
    if isinstance(spec, tuple):
        return spec[0], spec[1]
    env, _, game = spec.partition(":")
    return env, (game or None)


def _parse_variant(spec: str | tuple[str | None, str]) -> tuple[str | None, str]:
    if isinstance(spec, tuple):
        return spec[0] or None, spec[1]
    algo, _, aux = spec.rpartition(":")
    return algo or None, aux


@dataclass
class JobOutcome:
    """What happened to one job: 'skipped' (already finished), 'done' or 'failed'."""

    job: SweepJob
    status: str
    run_dir: Path
    log_path: Path
    returncode: int | None = None


def build_train_command(
    job: SweepJob, log_dir: str | os.PathLike, python: str = sys.executable, resume: bool = False
) -> list[str]:
    """The ``python -m rlaux.cli train ...`` command line of one job (pure: no side effect).

    ``resume``: continue the job's interrupted run in ``log_dir`` from its newest checkpoint, with
    the flags of ``job.extra_args`` that ``--resume`` accepts (``RESUME_FLAGS``).
    """
    if resume:
        return [python, "-m", "rlaux.cli", "train", "--resume", str(Path(log_dir) / job.run_name),
                *_resume_flags(job.extra_args)]
    command = [python, "-m", "rlaux.cli", "train", "--env", job.env]
    if job.game is not None:
        command += ["--game", job.game]
    command += ["--aux", job.variant, *(["--algo", job.algo] if job.algo else [])]
    command += [
        "--seed",
        str(job.seed),
        "--timesteps",
        str(job.timesteps),
        "--log-dir",
        str(log_dir),
        "--run-name",
        job.run_name,
        "--save-freq",
        str(max(1, job.timesteps // SWEEP_CHECKPOINTS)),
        *job.extra_args,  # after --save-freq, so that a user's own wins
    ]
    return command


def _resume_flags(extra_args: Sequence[str]) -> list[str]:
    """The flags of ``extra_args`` (with their values) that may go with ``--resume``."""
    kept, i = [], 0
    while i < len(extra_args):
        flag = extra_args[i].split("=", 1)[0]
        takes = RESUME_FLAGS.get(flag)
        if takes is not None:
            width = 1 if "=" in extra_args[i] else 1 + takes
            kept += extra_args[i:i + width]
            i += width
        else:
            i += 1
    return kept


def thread_env(workers: int, cores: int | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for one job: ``base`` (default os.environ) with the thread variables set, to the
    first of them ``base`` already sets (the user's choice, e.g. for two sweeps side by side), else
    to ``cores // workers``."""
    env = dict(os.environ if base is None else base)
    chosen = next((name for name in THREAD_VARIABLES if env.get(name, "").strip()), None)
    if chosen is None:
        threads = str(max(1, (cores or os.cpu_count() or 1) // max(1, workers)))
    else:
        threads = env[chosen].strip()
        if not threads.isdigit() or int(threads) < 1:
            raise ConfigError(f"{chosen}={env[chosen]!r} is not a thread count: set it to a whole number >= 1, or unset it")
    env.update({name: threads for name in THREAD_VARIABLES})
    return env


Launch = Callable[[list[str], dict[str, str], Path], int]


def launch_subprocess(command: list[str], env: dict[str, str], log_path: Path) -> int:
    """Run ``command`` to completion, stdout and stderr into ``log_path``; return its exit code."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        return subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def run_state(run_dir: Path, can_resume: bool = True) -> str:
    """What a job's run folder asks for (pure): ``"finished"``, ``"resume"`` (interrupted, with a valid
    checkpoint, and ``can_resume``) or ``"new"``."""
    if RunFolder(run_dir).finished:
        return "finished"
    if can_resume and RunFolder(run_dir).is_run():
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # its skipped-checkpoint warnings
                latest_checkpoint(run_dir)
            return "resume"
        except CheckpointError:
            pass
    return "new"


def prepare_run_dir(run_dir: Path, can_resume: bool = True) -> str:
    """:func:`run_state`, after deleting the folder of a run that must start anew."""
    state = run_state(run_dir, can_resume)
    if state == "new" and run_dir.exists():
        shutil.rmtree(run_dir)
    return state


def run_sweep(
    grid: SweepGrid | Iterable[SweepJob],
    out_dir: str | os.PathLike,
    workers: int = 1,
    *,
    backend: str = "local",
    address: str | None = None,
    launch: Launch | None = None,
    cores: int | None = None,
    python: str = sys.executable,
) -> list[JobOutcome]:
    """Run every job not finished yet, ``workers`` at a time; return one outcome per job, in grid order.

    ``launch(command, env, log_path) -> exit code`` runs one command (default
    :func:`launch_subprocess`; tests inject a fake). ``backend="ray"`` runs the jobs as
    Ray tasks on ``address`` (``None``: a local Ray) instead; needs ``pip install 'rlaux[ray]'``.
    """
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown backend {backend!r}; valid: local, ray")
    jobs = grid.jobs() if isinstance(grid, SweepGrid) else list(grid)
    names = [job.run_name for job in jobs]
    if len(set(names)) != len(names):
        raise ConfigError("the sweep has duplicate runs (same env, game, algorithm, variant and seed)")
    out = Path(out_dir)
    runs_dir, logs_dir = out / "runs", out / "logs"
    runs_dir.mkdir(parents=True, exist_ok=True)

    outcomes: dict[str, JobOutcome] = {}
    todo: list[SweepJob] = []
    resumed: set[str] = set()
    for job in jobs:
        run_dir, log_path = runs_dir / job.run_name, logs_dir / f"{job.run_name}.log"
        state = prepare_run_dir(run_dir, can_resume=backend == "local")
        if state == "finished":
            outcomes[job.run_name] = JobOutcome(job, "skipped", run_dir, log_path)
            continue
        todo.append(job)
        if state == "resume":
            resumed.add(job.run_name)

    if backend == "ray":
        results = _run_with_ray(todo, runs_dir, logs_dir, workers, address, cores)
    else:
        launch = launch or launch_subprocess
        env = thread_env(workers, cores)

        def run_one(job: SweepJob) -> int:
            command = build_train_command(job, runs_dir, python, resume=job.run_name in resumed)
            log_path = logs_dir / f"{job.run_name}.log"
            if job.run_name in resumed and log_path.is_file():  # keep the interrupted part's log
                log_path.replace(log_path.with_name(f"{log_path.stem}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}.log"))
            return launch(command, env, log_path)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = dict(zip((job.run_name for job in todo), pool.map(run_one, todo), strict=True))

    for job in todo:
        run_dir = runs_dir / job.run_name
        code = results[job.run_name]
        finished = code == 0 and RunFolder(run_dir).finished
        outcomes[job.run_name] = JobOutcome(
            job, "done" if finished else "failed", run_dir, logs_dir / f"{job.run_name}.log", code
        )
    return [outcomes[name] for name in names]


# ---------------------------------------------------------------- Ray backend


def _import_ray():
    return import_optional("ray", "backend 'ray'")


def _ray_task(job: SweepJob, threads: int) -> tuple[int, bytes, str]:
    """On a Ray worker: train into a temp folder; return (exit code, run folder as tar bytes, log)."""
    with tempfile.TemporaryDirectory(prefix="rlaux-sweep-") as tmp:
        env = dict(os.environ)
        env.update({name: str(threads) for name in THREAD_VARIABLES})
        command = build_train_command(job, tmp, sys.executable)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        buffer = io.BytesIO()
        run_dir = Path(tmp) / job.run_name
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            if run_dir.exists():
                tar.add(run_dir, arcname=job.run_name)
        return done.returncode, buffer.getvalue(), done.stdout + done.stderr


def _run_with_ray(
    jobs: list[SweepJob],
    runs_dir: Path,
    logs_dir: Path,
    workers: int,
    address: str | None,
    cores: int | None,
) -> dict[str, int]:
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address)
    threads = max(1, (cores or os.cpu_count() or 1) // workers)
    remote = ray.remote(num_cpus=threads)(_ray_task)
    pending = {remote.remote(job, threads): job for job in jobs}
    results: dict[str, int] = {}
    logs_dir.mkdir(parents=True, exist_ok=True)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        code, archive, log = ray.get(ready[0])
        (logs_dir / f"{job.run_name}.log").write_text(log)
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12
                tar.extractall(runs_dir, filter="data")
            else:
                tar.extractall(runs_dir)
        results[job.run_name] = code
    return results
