"""One training run: resolve presets and flags into a config, build env and agent, train, save.

A run folder holds everything about one run::

    <log_dir>/<run_name>/
        config.json          every resolved preset value and flag (enough to repeat the run)
        monitor/*.csv        SB3 Monitor files: episode returns before any reward clipping
        progress.csv, events.out.tfevents.*   SB3's logger (stdout, csv, tensorboard)
        final_model.zip      written atomically when the run finishes
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback, EvalCallback
from stable_baselines3.common.logger import configure

from rlaux.algorithms import ALGORITHMS
from rlaux.envs import EnvSpec, make_vec_env, resolve_env, sb3_policy_kwargs
from rlaux.errors import ConfigError
from rlaux.presets import load_preset
from rlaux.tasks import make_tasks, parse_names
from rlaux.tasks.base import check_weight

VEC_ENVS = ("auto", "dummy", "subproc")
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

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self.config),
            "env_id": self.env_spec.env_id,
            "env_spec": self.env_spec.to_dict(),
            "algo": self.algo,
            "aux": self.aux,
            "aux_label": "+".join(self.aux) if self.aux else "none",
            "aux_weights": self.aux_weights,
            "aux_task_kwargs": self.aux_task_kwargs,
            "hyperparams": self.hyperparams,
            "timesteps": self.timesteps,
            "n_envs": self.n_envs,
            "run_dir": str(self.run_dir),
        }


def resolve(config: RunConfig) -> ResolvedRun:
    """Merge the env preset, the agent preset and the flags; check everything before training."""
    problems: list[str] = []
    if config.timesteps is not None and config.timesteps <= 0:
        problems.append(f"--timesteps must be a positive number of env steps, got {config.timesteps}")
    if config.n_envs is not None and config.n_envs <= 0:
        problems.append(f"--n-envs must be at least 1, got {config.n_envs}")
    if config.vec_env not in VEC_ENVS:
        problems.append(f"--vec-env '{config.vec_env}' is not one of {', '.join(VEC_ENVS)}")
    if config.device not in DEVICES:
        problems.append(f"--device '{config.device}' is not one of {', '.join(DEVICES)}")
    elif config.device == "cuda" and not th.cuda.is_available():
        problems.append("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    if config.eval_freq < 0 or config.save_freq < 0 or config.eval_episodes < 1:
        problems.append("--eval-freq and --save-freq must be >= 0 and --eval-episodes >= 1")
    if config.algo is not None and config.algo not in ALGORITHMS:
        problems.append(f"--algo '{config.algo}' is not one of {', '.join(ALGORITHMS)}")
    if problems:
        raise ConfigError("; ".join(problems))

    spec = resolve_env(config.env, game=config.game)
    agent = _agent_preset(config.agent or config.algo or "ppo")
    algo = agent["algo"]
    if config.algo is not None and config.algo != algo:
        raise ConfigError(f"--algo {config.algo} contradicts --agent {config.agent}, which is {algo}")
    aux = parse_names(config.aux if config.aux is not None else agent.get("aux", []))
    hyperparams = {**_hyperparams_for(agent, spec.kind), **config.hyperparams}
    aux_weights = {k: check_weight(k, v) for k, v in {**agent.get("aux_weights", {}), **config.aux_weights}.items()}
    aux_task_kwargs = {k: v for k, v in agent.get("aux_task_kwargs", {}).items() if k in aux}
    make_tasks(aux, {k: v for k, v in aux_weights.items() if k in aux}, algo, aux_task_kwargs)  # validates names and weights
    unknown = sorted(set(config.aux_weights) - set(aux))
    if unknown:
        raise ConfigError(f"--aux-weight names {', '.join(unknown)}, not among the aux tasks {aux or ['none']}")
    timesteps = config.timesteps or int(getattr(spec, "timesteps", None) or DEFAULT_TIMESTEPS.get(spec.kind, 1_000_000))
    n_envs = config.n_envs or spec.n_envs
    run_dir = _run_dir(config, spec, algo, aux)
    return ResolvedRun(config, spec, algo, aux, aux_weights, aux_task_kwargs, hyperparams, timesteps, n_envs, run_dir)


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


class _StopOnSignal(BaseCallback):
    """Ends ``learn`` cleanly after the current env step when SIGINT/SIGTERM arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.signal: int | None = None

    def request_stop(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # second signal: leave at once
            raise KeyboardInterrupt
        self.signal = signum

    def _on_step(self) -> bool:
        return self.signal is None


def atomic_save(model: Any, path: Path) -> Path:
    """``model.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.zip")
    model.save(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
        policy_kwargs=policy_kwargs,
        seed=run.config.seed,
        device=run.config.device,
        verbose=0,
        **kwargs,
    )


def train(config: RunConfig) -> Path:
    """Train one run as configured; returns the run folder. Interrupts save the model first."""
    if os.environ.get("TORCH_NUM_THREADS"):
        th.set_num_threads(int(os.environ["TORCH_NUM_THREADS"]))
    run = resolve(config)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / "config.json").write_text(json.dumps(run.to_json(), indent=2, default=str))
    env = make_vec_env(run.env_spec, n_envs=run.n_envs, seed=config.seed, vec_env=config.vec_env,
                       training=True, monitor_dir=str(run.run_dir / "monitor"))
    model = build_model(run, env)
    formats = ["stdout", "csv"] if config.verbose else ["csv"]
    logger = configure(str(run.run_dir), formats)
    if config.tensorboard_log:
        tb_logger = configure(str(Path(config.tensorboard_log) / run.run_dir.name), ["tensorboard"])
        logger.output_formats += tb_logger.output_formats
    else:
        logger.output_formats += configure(str(run.run_dir), ["tensorboard"]).output_formats
    model.set_logger(logger)

    stopper = _StopOnSignal()
    callbacks: list[BaseCallback] = [stopper]
    if config.eval_freq:
        eval_env = make_vec_env(run.env_spec, n_envs=1, seed=config.seed + 10_000, vec_env="dummy", training=False)
        callbacks.append(EvalCallback(eval_env, n_eval_episodes=config.eval_episodes,
                                      eval_freq=max(config.eval_freq // run.n_envs, 1),
                                      best_model_save_path=str(run.run_dir), log_path=str(run.run_dir), verbose=0))
    if config.save_freq:
        callbacks.append(CheckpointCallback(max(config.save_freq // run.n_envs, 1), str(run.run_dir / "checkpoints"),
                                            name_prefix="model"))
    previous = {s: signal.signal(s, stopper.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        model.learn(run.timesteps, callback=callbacks, progress_bar=config.progress_bar)
    except KeyboardInterrupt:
        atomic_save(model, run.run_dir / "interrupted_model.zip")
        print(f"interrupted at step {model.num_timesteps}: model saved to {run.run_dir / 'interrupted_model.zip'}",
              file=sys.stderr)
        raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        env.close()
    if stopper.signal is not None:
        path = atomic_save(model, run.run_dir / "interrupted_model.zip")
        print(f"stopped by signal {stopper.signal} at step {model.num_timesteps}: model saved to {path}", file=sys.stderr)
        raise SystemExit(128 + stopper.signal)
    atomic_save(model, run.run_dir / "final_model.zip")
    return run.run_dir
