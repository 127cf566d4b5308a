"""One training run: resolve presets and flags into a config, build env and agent, train, save.

A run folder holds everything about one run::

    <log_dir>/<run_name>/
        config.json          every resolved preset value and flag (enough to repeat the run)
        monitor/*.csv        SB3 Monitor files: episode returns before any reward clipping
        progress.csv, events.out.tfevents.*   SB3's logger (stdout, csv, tensorboard)
        final_model.zip      written atomically when the run finishes
        checkpoints/         with --save-freq, and on SIGINT/SIGTERM: see ``rlaux.checkpoint``

``python train_agent.py --resume <run_dir>`` continues a run from its newest valid
checkpoint: the run's own ``config.json`` says what to run (only ``--device``,
``--no-progress`` and ``--verbose`` may be given with it), the step counter goes on,
and the same progress.csv, TensorBoard run and Monitor files are continued (what was
logged after the checkpoint is cut, so no step is logged twice and none is missing).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.logger import CSVOutputFormat, TensorBoardOutputFormat, configure

from rlaux import checkpoint as ckpt
from rlaux.algorithms import ALGORITHMS
from rlaux.envs import EnvSpec, make_vec_env, resolve_env, sb3_policy_kwargs
from rlaux.errors import ConfigError
from rlaux.objective import NonFiniteUpdates
from rlaux.presets import load_preset
from rlaux.tasks import BUNDLES, TASKS, make_tasks, parse_names
from rlaux.tasks.base import check_weight

VEC_ENVS = ("auto", "dummy", "subproc", "envpool")
#: Env steps when neither the flag nor the env preset says (rl-zoo3 trains Atari for 10M).
DEFAULT_TIMESTEPS = {"atari": 10_000_000, "minatar": 5_000_000, "miniworld": 2_000_000, "gym": 1_000_000}
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class RunConfig:
    """What a user asks for; ``None`` means "from the presets"."""

    env: str = "Atari"
    game: str | None = None
    algo: str | None = None
    agent: str | None = None
    aux: list[str] | None = None
    aux_weights: dict[str, float] = field(default_factory=dict)
    aux_weighting: dict[str, str] = field(default_factory=dict)  # task name or "*" -> rlaux.weighting spec
    timesteps: int | None = None
    n_envs: int | None = None
    seed: int = 0
    device: str = "auto"
    log_dir: str = "runs"
    run_name: str | None = None
    tensorboard_log: str | None = None
    vec_env: str = "auto"
    eval_freq: int = 0
    eval_episodes: int = 5
    save_freq: int = 0
    keep_checkpoints: int = 3
    save_replay: bool = False
    max_skipped_updates: int = 10
    hyperparams: dict[str, Any] = field(default_factory=dict)
    progress_bar: bool = True
    verbose: int = 1


@dataclass
class ResolvedRun:
    """A config with every preset value filled in: what ``config.json`` holds."""

    config: RunConfig
    env_spec: EnvSpec
    algo: str
    aux: list[str]
    aux_weights: dict[str, float]
    aux_task_kwargs: dict[str, dict]
    hyperparams: dict[str, Any]
    timesteps: int
    n_envs: int
    run_dir: Path
    aux_weighting: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The variant name comparisons group runs by: the tasks, '+'-joined (or "none"), then the
        weights given by flag in brackets and the weighting after '@', so that runs that differ
        in them are told apart: ``reward_pred+value_replay+pixel_control[pixel_control=0.05]@cosine``."""
        if not self.aux:
            return "none"
        label = "+".join(self.aux)
        flagged = {k: v for k, v in sorted(self.aux_weights.items()) if k in self.config.aux_weights}
        if flagged:
            label += "[" + ",".join(f"{k}={v:g}" for k, v in flagged.items()) + "]"
        if self.aux_weighting:
            label += "@" + ",".join(v if k == "*" else f"{k}={v}" for k, v in sorted(self.aux_weighting.items()))
        return label

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self.config),
            "env_id": self.env_spec.env_id,
            "env_spec": self.env_spec.to_dict(),
            "algo": self.algo,
            "aux": self.aux,
            "aux_label": self.label,
            "aux_weights": self.aux_weights,
            "aux_task_kwargs": self.aux_task_kwargs,
            "aux_weighting": self.aux_weighting,
            "hyperparams": self.hyperparams,
            "timesteps": self.timesteps,
            "n_envs": self.n_envs,
            "run_dir": str(self.run_dir),
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_flags(config: RunConfig) -> list[str]:
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    if config.timesteps is not None:
        need(_is_int(config.timesteps) and config.timesteps > 0,
             f"--timesteps must be a positive number of env steps, got {config.timesteps!r}")
    if config.n_envs is not None:
        need(_is_int(config.n_envs) and config.n_envs >= 1, f"--n-envs must be at least 1, got {config.n_envs!r}")
    need(_is_int(config.seed) and config.seed >= 0, f"--seed must be an integer >= 0, got {config.seed!r}")
    need(config.vec_env in VEC_ENVS, f"--vec-env '{config.vec_env}' is not one of {', '.join(VEC_ENVS)}")
    if config.device not in DEVICES:
        problems.append(f"--device '{config.device}' is not one of {', '.join(DEVICES)}")
    elif config.device == "cuda" and not th.cuda.is_available():
        problems.append("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    for flag, value, low in (("--eval-freq", config.eval_freq, 0), ("--eval-episodes", config.eval_episodes, 1),
                             ("--save-freq", config.save_freq, 0), ("--keep-checkpoints", config.keep_checkpoints, 0),
                             ("--max-skipped-updates", config.max_skipped_updates, 0)):
        need(_is_int(value) and value >= low, f"{flag} must be an integer >= {low}, got {value!r}")
    need(isinstance(config.save_replay, bool), f"--save-replay must be true or false, got {config.save_replay!r}")
    need(_is_int(config.verbose) and config.verbose in (0, 1, 2), f"--verbose must be 0, 1 or 2, got {config.verbose!r}")
    if config.algo is not None:
        need(config.algo in ALGORITHMS, f"--algo '{config.algo}' is not one of {', '.join(ALGORITHMS)}")
    if config.run_name is not None:
        need(bool(config.run_name) and "/" not in config.run_name and config.run_name not in (".", ".."),
             f"--run-name must be a plain folder name, got {config.run_name!r}")
    return problems


#: Keys that flags or rlaux set; a hyperparameter may not name them.
_RESERVED = {"policy", "env", "seed", "device", "verbose", "tensorboard_log", "aux_tasks", "aux_weights",
             "aux_task_kwargs", "aux_weighting", "_init_setup_model", "max_skipped_updates"}
_POS_INT = ("n_steps", "batch_size", "n_epochs", "stats_window_size", "sde_sample_freq", "aux_replay_capacity")
_UNIT = ("gamma", "gae_lambda", "rms_prop_eps")
_NON_NEG = ("ent_coef", "vf_coef", "target_kl")
_POS_OR_SCHEDULE = ("learning_rate", "clip_range", "clip_range_vf", "max_grad_norm")
_BOOL = ("normalize_advantage", "use_sde", "use_rms_prop")


def check_hyperparams(algo: str, hyperparams: Mapping[str, Any]) -> list[str]:
    """Names against the algorithm's ``__init__`` signature, then types and ranges of the known ones."""
    cls = ALGORITHMS[algo]
    accepted = {name for klass in cls.__mro__ if "__init__" in vars(klass) and klass is not object
                for name in inspect.signature(vars(klass)["__init__"]).parameters}
    # positional/keyword catch-alls of the classes in between, and what lower classes fix
    accepted -= {"self", "args", "kwargs", "_init_setup_model", "policy_base", "supported_action_spaces",
                 "monitor_wrapper", "support_multi_env"}
    problems = []
    for key, value in hyperparams.items():
        where = f"hyperparameter {key}={value!r}"
        if key in _RESERVED:
            problems.append(f"{where} is set by a flag or by rlaux, not by --hyperparams")
        elif key not in accepted:
            problems.append(f"unknown hyperparameter '{key}' for {algo} (it takes: {', '.join(sorted(accepted - _RESERVED))})")
        elif key in _POS_INT and not (_is_int(value) and value >= 1 if key != "sde_sample_freq" else _is_int(value)):
            problems.append(f"{where} must be a positive integer")
        elif key in _UNIT and not (_is_number(value) and 0 <= value <= 1):
            problems.append(f"{where} must be a number in [0, 1]")
        elif key in _NON_NEG and value is not None and not (_is_number(value) and value >= 0):
            problems.append(f"{where} must be a number >= 0")
        elif key in _POS_OR_SCHEDULE and value is not None:
            number = value[4:] if isinstance(value, str) and value.startswith("lin_") else value
            try:
                ok = math.isfinite(float(number)) and float(number) > 0 and not isinstance(number, bool)
            except (TypeError, ValueError):
                ok = False
            if not ok:
                problems.append(f"{where} must be a positive number or 'lin_<positive number>'")
        elif key in _BOOL and not isinstance(value, bool):
            problems.append(f"{where} must be true or false")
        elif key == "policy_kwargs" and not isinstance(value, Mapping):
            problems.append(f"{where} must be a table/dict")
    if algo == "ppo" and _is_int(hyperparams.get("batch_size")) and hyperparams["batch_size"] == 1 \
            and hyperparams.get("normalize_advantage", True):
        problems.append("hyperparameter batch_size=1 cannot normalise advantages (PPO needs batch_size > 1)")
    if not problems:
        try:
            algorithm_kwargs(hyperparams)
        except ConfigError as err:
            problems.append(str(err))
    return problems


def resolve(config: RunConfig) -> ResolvedRun:
    """Merge the env preset, the agent preset and the flags; check everything before training.

    Every problem found is reported at once, in one ConfigError: bad flag values, an unknown
    env, agent or aux task, bad weights, unknown or out-of-range hyperparameters.
    """
    problems = _check_flags(config)

    def attempt(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as err:
            problems.append(str(err))
            return None

    spec = attempt(resolve_env, config.env, game=config.game)
    agent = attempt(_agent_preset, config.agent or (config.algo if config.algo in ALGORITHMS else None) or "ppo")
    algo = agent["algo"] if agent else (config.algo if config.algo in ALGORITHMS else "ppo")
    if agent and config.algo is not None and config.algo in ALGORITHMS and config.algo != algo:
        problems.append(f"--algo {config.algo} contradicts --agent {config.agent}, which is {algo}")
    aux_spec = config.aux if config.aux is not None else (agent or {}).get("aux", [])
    aux = attempt(parse_names, aux_spec)
    if aux is None:  # keep the names that are fine, to check the rest
        items = aux_spec.split(",") if isinstance(aux_spec, str) else list(aux_spec or [])
        aux = [n for item in items if item.strip() in TASKS or item.strip() in BUNDLES
               for n in parse_names([item.strip()])]
        aux_known = False
    else:
        aux_known = True
    raw_weights = {**(agent or {}).get("aux_weights", {}), **config.aux_weights}
    aux_weights = {}
    for name, value in raw_weights.items():
        weight = attempt(check_weight, name, value)
        if weight is not None:
            aux_weights[name] = weight
    unknown = sorted(set(config.aux_weights) - set(aux))
    if unknown and aux_known:
        problems.append(f"--aux-weight names {', '.join(unknown)}, not among the aux tasks {aux or ['none']}")
    aux_task_kwargs = {k: v for k, v in (agent or {}).get("aux_task_kwargs", {}).items() if k in aux}
    # validates task names, constructor arguments and weights
    aux_weighting = {**(agent or {}).get("aux_weighting", {}), **config.aux_weighting}
    attempt(make_tasks, aux, {k: v for k, v in aux_weights.items() if k in aux}, algo, aux_task_kwargs,
            aux_weighting if aux_known else {})
    if spec is not None and spec.policy == "MlpPolicy":
        for name in aux:
            if name in TASKS and TASKS[name].requires_image:
                problems.append(f"aux task '{name}' needs image observations (uint8 [C, H, W]), but {spec.env_id} "
                                "gives vector observations; use it with an image env such as Atari or MinAtar")
    hyperparams = {**(_hyperparams_for(agent, spec.kind) if agent and spec else {}), **config.hyperparams}
    problems.extend(check_hyperparams(algo, hyperparams))
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(p.replace("\n", " ") for p in problems)))
    timesteps = config.timesteps or int(getattr(spec, "timesteps", None) or DEFAULT_TIMESTEPS.get(spec.kind, 1_000_000))
    n_envs = config.n_envs or spec.n_envs
    run_dir = _run_dir(config, spec, algo, aux)
    return ResolvedRun(config, spec, algo, aux, aux_weights, aux_task_kwargs, hyperparams, timesteps, n_envs, run_dir,
                       aux_weighting)


def _agent_preset(name: str) -> dict[str, Any]:
    preset = load_preset("agents", name)
    if "base" in preset:
        base = _agent_preset(preset["base"])
        hyper = {**base.get("hyperparams", {})}
        for kind, values in preset.get("hyperparams", {}).items():
            hyper[kind] = {**hyper.get(kind, {}), **values}
        preset = {**base, **preset, "hyperparams": hyper}
    if preset.get("algo") not in ALGORITHMS:
        raise ConfigError(f"agent preset '{name}' has algo {preset.get('algo')!r}, not one of {', '.join(ALGORITHMS)}")
    return preset


def _hyperparams_for(agent: Mapping[str, Any], kind: str) -> dict[str, Any]:
    table = agent.get("hyperparams", {})
    return dict(table.get(kind, table.get("default", {})))


def _run_dir(config: RunConfig, spec: EnvSpec, algo: str, aux: list[str]) -> Path:
    if config.run_name:
        return Path(config.log_dir) / config.run_name
    env_label = re.sub(r"[^A-Za-z0-9]+", "-", spec.name if not config.game else f"{spec.name}-{config.game}").strip("-")
    base = f"{env_label}_{algo}_{'+'.join(aux) or 'none'}_s{config.seed}"
    run_dir = Path(config.log_dir) / base
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = Path(config.log_dir) / f"{base}_{n}"
    return run_dir


def linear_schedule(initial: float):
    """rl-zoo3's ``lin_<value>``: decays linearly from ``initial`` to 0 over training."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def algorithm_kwargs(hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    """TOML/JSON-friendly hyperparameters -> SB3 keyword arguments."""
    kwargs = dict(hyperparams)
    for key in ("learning_rate", "clip_range", "clip_range_vf"):
        value = kwargs.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = linear_schedule(float(value[4:]))
    policy_kwargs = dict(kwargs.pop("policy_kwargs", {}))
    optimizer = policy_kwargs.get("optimizer_class")
    if isinstance(optimizer, str):
        if optimizer == "RMSpropTFLike":
            from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

            policy_kwargs["optimizer_class"] = RMSpropTFLike
        elif hasattr(th.optim, optimizer):
            policy_kwargs["optimizer_class"] = getattr(th.optim, optimizer)
        else:
            raise ConfigError(f"optimizer_class '{optimizer}' is neither RMSpropTFLike nor a torch.optim class")
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


class _Abort(BaseException):
    """A second SIGINT/SIGTERM: leave at once."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StopOnSignal:
    """First SIGINT/SIGTERM: ask the model to stop at the end of the current iteration; second: abort."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.signal: int | None = None

    def __call__(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise _Abort(signum)
        self.signal = signum
        self.model._rlaux_stop = signum
        print(f"\n{signal.Signals(signum).name}: finishing the current rollout and update, then writing a checkpoint "
              "(send it again to quit at once; the last checkpoint stays valid)", file=sys.stderr, flush=True)


def atomic_save(model: Any, path: Path) -> Path:
    """``model.save`` to a temporary file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.zip")
    model.save(tmp)
    ckpt.fsync_file(tmp)
    os.replace(tmp, path)
    ckpt.fsync_dir(path.parent)
    return path


def build_model(run: ResolvedRun, env: Any) -> Any:
    """The AuxPPO/AuxA2C of a resolved run, on ``env``."""
    kwargs = algorithm_kwargs(run.hyperparams)
    policy_kwargs = {**sb3_policy_kwargs(run.env_spec), **kwargs.pop("policy_kwargs", {})}
    algo_cls = ALGORITHMS[run.algo]
    return algo_cls(
        run.env_spec.policy,
        env,
        aux_tasks=run.aux,
        aux_weights={k: v for k, v in run.aux_weights.items() if k in run.aux},
        aux_task_kwargs=run.aux_task_kwargs,
        aux_weighting=run.aux_weighting,
        max_skipped_updates=run.config.max_skipped_updates,
        policy_kwargs=policy_kwargs,
        seed=run.config.seed,
        device=run.config.device,
        verbose=0,
        **kwargs,
    )


class _PurgingTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard writer, continuing a run: events at or after ``purge_step`` in earlier
    files are discarded by TensorBoard (a ``SessionLog.START`` at that step), so the steps that
    were logged after the checkpoint and are now logged again appear once."""

    def __init__(self, folder: str, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


def _continued_csv(path: Path, step: int) -> CSVOutputFormat:
    """SB3's CSV writer appending to ``path``, first cut to the rows logged at or before ``step``."""
    header: list[str] = []
    rows: list[str] = []
    if path.is_file():
        text = path.read_text()
        lines = text.split("\n")[:-1]  # the last piece has no newline: unfinished or empty
        if lines:
            header = lines[0].split(",")
            col = header.index("time/total_timesteps") if "time/total_timesteps" in header else None
            for line in lines[1:]:
                cells = line.split(",")
                try:
                    if col is not None and float(cells[col]) > step:
                        continue
                except (ValueError, IndexError):
                    pass
                rows.append(line)
    content = "".join(f"{line}\n" for line in ([",".join(header)] if header else []) + rows)
    ckpt.atomic_write_bytes(path, content.encode())
    fmt = CSVOutputFormat.__new__(CSVOutputFormat)
    fmt.file = open(path, "r+")  # noqa: SIM115 - owned by the logger, closed by it
    fmt.file.seek(0, os.SEEK_END)
    fmt.keys = header
    fmt.separator, fmt.quotechar = ",", '"'
    return fmt


def _make_logger(run: ResolvedRun, resume_step: int | None) -> Any:
    config = run.config
    logger = configure(str(run.run_dir), ["stdout"] if config.verbose else [])
    if resume_step is None:
        logger.output_formats.append(CSVOutputFormat(str(run.run_dir / "progress.csv")))
    else:
        logger.output_formats.append(_continued_csv(run.run_dir / "progress.csv", resume_step))
    tb_dir = Path(config.tensorboard_log) / run.run_dir.name if config.tensorboard_log else run.run_dir
    tb_dir.mkdir(parents=True, exist_ok=True)
    logger.output_formats.append(_PurgingTensorBoard(str(tb_dir), None if resume_step is None else resume_step + 1))
    return logger


def _make_env(run: ResolvedRun) -> Any:
    return make_vec_env(run.env_spec, n_envs=run.n_envs, seed=run.config.seed, vec_env=run.config.vec_env,
                        training=True, monitor_dir=str(run.run_dir / "monitor"))


def train(config: RunConfig) -> Path:
    """Train one run as configured; returns the run folder.

    SIGINT/SIGTERM: the current rollout and update finish, a checkpoint is written and the
    process exits with 130/143 (``SystemExit``) after printing how to resume.
    """
    _set_threads()
    run = resolve(config)
    if ckpt.checkpoint_dirs(run.run_dir):
        raise ConfigError(f"run folder {run.run_dir} already holds checkpoints of a run: continue it with "
                          f"--resume {run.run_dir}, or choose another --run-name")
    run.run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.atomic_write_bytes(run.run_dir / "config.json",
                            json.dumps(run.to_json(), indent=2, default=str).encode())
    env = _make_env(run)
    try:
        model = build_model(run, env)
    except BaseException:
        env.close()
        raise
    model.set_logger(_make_logger(run, None))
    return _learn(run, model, env, run.timesteps, reset_num_timesteps=True)


#: Flags that may be given with --resume (the others come from the run's config.json).
RESUME_OVERRIDES = ("device", "progress_bar", "verbose")


def load_run(run_dir: str | os.PathLike) -> ResolvedRun:
    """The ResolvedRun that a run folder's ``config.json`` describes (the source of truth on resume)."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} is not a run folder: it has no config.json") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable ({err})") from None
    try:
        fields = {f: data[f] for f in RunConfig.__dataclass_fields__ if f in data}
        config = RunConfig(**fields)
        spec = EnvSpec(**data["env_spec"])
        return ResolvedRun(config, spec, data["algo"], list(data["aux"]), dict(data["aux_weights"]),
                           dict(data["aux_task_kwargs"]), dict(data["hyperparams"]), int(data["timesteps"]),
                           int(data["n_envs"]), run_dir, dict(data.get("aux_weighting", {})))
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(f"{path}: not a config.json written by rlaux ({type(err).__name__}: {err})") from None


def resume(run_dir: str | os.PathLike, **overrides: Any) -> Path:
    """Continue the run in ``run_dir`` from its newest valid checkpoint (see the module docstring).

    ``overrides``: only ``device``, ``progress_bar`` and ``verbose``.
    """
    _set_threads()
    bad = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if bad:
        raise ConfigError(f"--resume takes the run's settings from its config.json; only --device, --no-progress and "
                          f"--verbose may be given with it, not {', '.join('--' + b.replace('_', '-') for b in bad)}")
    run = load_run(run_dir)
    for key, value in overrides.items():
        setattr(run.config, key, value)
    problems = _check_flags(run.config)
    if problems:
        raise ConfigError(f"{Path(run_dir) / 'config.json'}: " + "; ".join(problems))
    if (run.run_dir / "final_model.zip").is_file():
        raise ConfigError(f"run {run.run_dir} has finished (final_model.zip is there): nothing to resume")
    path, state = ckpt.latest_checkpoint(run.run_dir)
    step = int(state["num_timesteps"])
    ckpt.rewind_monitor_files(run.run_dir / "monitor", state.get("monitor_rows", {}), step)
    env = _make_env(run)
    try:
        model = ckpt.load_checkpoint(path, env, device=run.config.device, state=state)
    except BaseException:
        env.close()
        raise
    model.set_logger(_make_logger(run, step))
    ckpt.restore_logger_pending(model.logger, model.__dict__.pop("_rlaux_logger_pending", {}))
    model._rlaux_iteration_offset = model._rlaux_iterations
    print(f"resuming {run.run_dir} from {path.name} at step {step} of {run.timesteps}", file=sys.stderr)
    return _learn(run, model, env, max(run.timesteps - step, 0), reset_num_timesteps=False)


def _set_threads() -> None:
    if os.environ.get("TORCH_NUM_THREADS"):
        th.set_num_threads(int(os.environ["TORCH_NUM_THREADS"]))


def _learn(run: ResolvedRun, model: Any, env: Any, steps: int, reset_num_timesteps: bool) -> Path:
    config = run.config
    saver = ckpt.CheckpointCallback(run.run_dir, config.save_freq, keep=config.keep_checkpoints,
                                    save_replay=config.save_replay)
    callbacks: list[BaseCallback] = [saver]
    if config.eval_freq:
        eval_env = make_vec_env(run.env_spec, n_envs=1, seed=config.seed + 10_000, vec_env="dummy", training=False)
        callbacks.append(EvalCallback(eval_env, n_eval_episodes=config.eval_episodes,
                                      eval_freq=max(config.eval_freq // run.n_envs, 1),
                                      best_model_save_path=str(run.run_dir), log_path=str(run.run_dir), verbose=0))
    stopper = _StopOnSignal(model)
    previous = {s: signal.signal(s, stopper) for s in (signal.SIGINT, signal.SIGTERM)}
    how = f"python train_agent.py --resume {run.run_dir}"
    try:
        model.learn(steps, callback=callbacks, progress_bar=config.progress_bar,
                    reset_num_timesteps=reset_num_timesteps)
        if stopper.signal is not None and model.num_timesteps < model._total_timesteps:
            path = saver.save("signal")
            print(f"stopped by {signal.Signals(stopper.signal).name} at step {model.num_timesteps}: checkpoint "
                  f"{path}; resume with: {how}", file=sys.stderr, flush=True)
            raise SystemExit(128 + stopper.signal)
    except _Abort as abort:
        last = ckpt.checkpoint_dirs(run.run_dir)
        where = f"the last checkpoint ({last[-1].name}) is intact; resume with: {how}" if last else "no checkpoint was written"
        print(f"aborted by a second {signal.Signals(abort.signum).name}: {where}", file=sys.stderr, flush=True)
        raise SystemExit(128 + abort.signum) from None
    except NonFiniteUpdates as err:
        # Skipped updates never reach the weights: the current ones are the last good ones.
        path = saver.save("non_finite")
        print(f"error: {err}; checkpoint of the last good weights: {path} (resume with: {how}, after fixing the "
              "cause, e.g. a lower learning rate or aux weight)", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        env.close()
    atomic_save(model, run.run_dir / "final_model.zip")
    return run.run_dir
