"""What one run is: the flags a user gives (``RunConfig``), checked and merged with the env and
agent presets into every value the run uses (``ResolvedRun``, saved as the run's ``config.json``).

Every problem is found before anything is trained or written, and all of them are reported at
once, in one one-line ConfigError. Task and space checks are the algorithm's own
(``rlaux.algorithms.check_tasks``), run here on the env's spaces.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch as th
from gymnasium import spaces

from rlaux.algorithms import ALGORITHMS, check_tasks
from rlaux.algorithms.settings import ARGUMENTS, PHASIC_FIELDS, AuxSettings, AuxSettingsError, is_int
from rlaux.envs import VEC_ENV_CHOICES, EnvSpec, make_vec_env, resolve_env
from rlaux.errors import ConfigError
from rlaux.presets import load_preset
from rlaux.provenance import code_version
from rlaux.run.hyperparams import algorithm_kwargs, check_hyperparams
from rlaux.run.pretrained import FLAG, load_trained_agent
from rlaux.run_folder import RunFolder, RunRecord
from rlaux.tasks import parse_names, variant_label

DEVICES = ("auto", "cpu", "cuda")
#: Env steps when neither the flag nor the env preset says (rl-zoo3 trains Atari for 10M).
DEFAULT_TIMESTEPS = {"atari": 10_000_000, "minatar": 5_000_000, "miniworld": 2_000_000, "gym": 1_000_000}
#: Flags that may be given with --resume (the others come from the run's config.json).
RESUME_OVERRIDES = ("device", "progress_bar", "verbose")


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
    eval_deterministic: bool = True  # --eval-stochastic: sample actions in evaluations, as some published baselines do
    save_freq: int = 0
    keep_checkpoints: int = 3
    save_replay: bool = False
    max_skipped_updates: int = 10
    hyperparams: dict[str, Any] = field(default_factory=dict)
    progress_bar: bool = True
    verbose: int = 1
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # --env-kwargs: to gymnasium.make, over the preset's
    gym_packages: list[str] = field(default_factory=list)  # --gym-packages: imported first (they register envs)
    env_wrapper: list = field(default_factory=list)  # --env-wrapper: rl-zoo3's env_wrapper, over the preset's
    trained_agent: str | None = None  # -i: a saved model to go on training (rlaux.run.pretrained)
    label: str | None = None  # --label: the variant's name in comparisons (default: from tasks, weights, weighting)


@dataclass
class ResolvedRun:
    """A config with every preset value filled in: what ``config.json`` holds (``rlaux.run_folder``)."""

    config: RunConfig
    env_spec: EnvSpec
    algo: str
    aux: AuxSettings
    hyperparams: dict[str, Any]
    timesteps: int
    n_envs: int
    run_dir: Path

    @property
    def label(self) -> str:
        """The variant name comparisons group runs by (``rlaux.tasks.variant_label``): the weights
        given by flag and the weighting are part of it."""
        if self.config.label:
            return self.config.label
        flagged = {k: v for k, v in self.aux.weights.items() if k in self.config.aux_weights}
        return variant_label(self.aux.tasks, flagged, self.aux.weighting)

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.run_dir)

    def record(self) -> RunRecord:
        """``config.json``: the user's flags exactly as given (``request``; :func:`load_run` rebuilds the
        :class:`RunConfig` from them, so a resumed or evaluated run keeps its label) apart from every value
        the run used (``resolved``), the aux settings as ``AuxSettings.to_json``."""
        resolved = {
            "env": self.config.env,
            "game": self.config.game,
            "seed": self.config.seed,
            "env_id": self.env_spec.env_id,
            "env_spec": self.env_spec.to_dict(),
            "algo": self.algo,
            "aux": list(self.aux.tasks),
            "aux_label": self.label,
            "aux_settings": self.aux.to_json(),
            "hyperparams": self.hyperparams,
            "timesteps": self.timesteps,
            "n_envs": self.n_envs,
            "run_dir": str(self.run_dir),
        }
        return RunRecord(asdict(self.config), resolved, code_version())


# --------------------------------------------------------------------------- flags


def check_flags(config: RunConfig) -> list[str]:
    """The problems of the flag values (types, ranges, choices) that need no preset; [] if none."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    if config.timesteps is not None:
        need(is_int(config.timesteps) and config.timesteps > 0,
             f"--timesteps must be a positive number of env steps, got {config.timesteps!r}")
    if config.n_envs is not None:
        need(is_int(config.n_envs) and config.n_envs >= 1, f"--n-envs must be at least 1, got {config.n_envs!r}")
    need(is_int(config.seed) and config.seed >= 0, f"--seed must be an integer >= 0, got {config.seed!r}")
    need(config.vec_env in VEC_ENV_CHOICES,
         f"--vec-env '{config.vec_env}' is not one of {', '.join(VEC_ENV_CHOICES)}")
    if config.device not in DEVICES:
        problems.append(f"--device '{config.device}' is not one of {', '.join(DEVICES)}")
    elif config.device == "cuda" and not th.cuda.is_available():
        problems.append("--device cuda was asked for, but torch sees no CUDA GPU; use --device auto or cpu")
    for flag, value, low in (("--eval-freq", config.eval_freq, 0), ("--eval-episodes", config.eval_episodes, 1),
                             ("--save-freq", config.save_freq, 0), ("--keep-checkpoints", config.keep_checkpoints, 0)):
        need(is_int(value) and value >= low, f"{flag} must be an integer >= {low}, got {value!r}")
    need(isinstance(config.save_replay, bool), f"--save-replay must be true or false, got {config.save_replay!r}")
    need(isinstance(config.eval_deterministic, bool),
         f"--eval-stochastic must be true or false, got {not config.eval_deterministic!r}")
    need(is_int(config.verbose) and config.verbose in (0, 1, 2), f"--verbose must be 0, 1 or 2, got {config.verbose!r}")
    if config.algo is not None:
        need(config.algo in ALGORITHMS, f"--algo '{config.algo}' is not one of {', '.join(ALGORITHMS)}")
    if config.run_name is not None:
        need(bool(config.run_name) and "/" not in config.run_name and config.run_name not in (".", ".."),
             f"--run-name must be a plain folder name, got {config.run_name!r}")
    need(isinstance(config.env_kwargs, Mapping)
         and all(isinstance(k, str) and k.isidentifier() for k in config.env_kwargs),
         f"--env-kwargs must be name=value pairs with names of keyword arguments, got {config.env_kwargs!r}")
    need(isinstance(config.gym_packages, (list, tuple)) and all(isinstance(m, str) for m in config.gym_packages),
         f"--gym-packages must be module names, got {config.gym_packages!r}")
    return problems


# --------------------------------------------------------------------------- resolve


def resolve(config: RunConfig) -> ResolvedRun:
    """Merge the env preset, the agent preset and the flags; check everything before training.

    Every problem found is reported at once, in one ConfigError: bad flag values, an unknown
    env, agent or aux task, bad aux settings, unknown or out-of-range hyperparameters. Only when
    all of those are right are the tasks checked against the env's spaces, which takes a
    throw-away env of one copy: a bad setting is refused before any env is built.
    """
    problems = check_flags(config)

    def attempt(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as err:
            problems.append(str(err))
            return None

    spec = attempt(resolve_env, config.env, game=config.game, env_kwargs=config.env_kwargs,
                   gym_packages=config.gym_packages, env_wrapper=config.env_wrapper)
    if config.trained_agent is not None:
        return _resolve_trained_agent(config, spec, problems)
    agent = attempt(agent_preset, config.agent or (config.algo if config.algo in ALGORITHMS else None) or "ppo")
    algo = agent["algo"] if agent else (config.algo if config.algo in ALGORITHMS else "ppo")
    if agent and config.algo is not None and config.algo in ALGORITHMS and config.algo != algo:
        problems.append(f"--algo {config.algo} contradicts --agent {config.agent}, which is {algo}")
    aux_spec = config.aux if config.aux is not None else (agent or {}).get("aux", [])
    kind_hyperparams = _hyperparams_for(agent, spec.kind) if agent and spec else {}
    hyperparams = {**kind_hyperparams, **config.hyperparams}
    cls = ALGORITHMS[algo]
    aux = attempt_settings(problems, aux_spec, agent or {}, config, hyperparams, cls.recurrent, cls.phasic)
    problems.extend(check_hyperparams(algo, hyperparams))
    n_envs = config.n_envs or (spec.n_envs if spec else None)
    # Then what needs the env's spaces (a throw-away env of one copy), only once everything else is right.
    if not problems and (aux.tasks or cls.phasic):
        attempt(_check_on_env, cls, aux, spec, hyperparams, n_envs)
    elif not problems and config.env_kwargs:  # bad env kwargs fail here, before anything is written
        attempt(_spaces_of, spec)
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(p.replace("\n", " ") for p in problems)))
    run_dir = run_dir_for(config, spec, algo, list(aux.tasks))
    return ResolvedRun(config, spec, algo, aux, hyperparams, _timesteps(config, spec), n_envs, run_dir)


#: How ``resolve`` names each aux setting in an error: the flag (or preset key) that gives it.
SETTING_FLAGS = {"tasks": "--aux", "weights": "--aux-weight", "weighting": "--aux-weighting",
                 "task_kwargs": "agent preset aux_task_kwargs", "max_skipped_updates": "--max-skipped-updates",
                 **{name: f"--hyperparams {argument}" for name, argument in ARGUMENTS.items()
                    if name not in ("tasks", "weights", "weighting", "task_kwargs", "max_skipped_updates")}}


def attempt_settings(problems: list[str], aux_spec: Any, agent: Mapping[str, Any], config: RunConfig,
                     hyperparams: dict[str, Any], recurrent: bool, phasic: bool = False) -> AuxSettings | None:
    """The run's ``AuxSettings`` from the flags over the agent preset, or None with its problems added (worded
    as flags). The aux settings among ``hyperparams`` (``aux_clip``, ...) move out of it into the settings;
    those of another kind of algorithm (``aux_lstm_state_dtype``, ``ppg_*``) stay, to be refused as unknown.
    A preset's weights, task arguments and weightings count only for the tasks the run has."""
    scalars = {name: hyperparams.pop(argument) for name, argument in ARGUMENTS.items()
               if argument in hyperparams and name not in ("tasks", "weights", "weighting", "task_kwargs",
                                                             "max_skipped_updates")
               and (recurrent or name != "lstm_state_dtype") and (phasic or name not in PHASIC_FIELDS)}
    try:
        names = parse_names(aux_spec)
    except (ConfigError, TypeError):
        names = None  # AuxSettings reports it
    chosen = (lambda table: dict(table)) if names is None else (
        lambda table: {k: v for k, v in table.items() if k in names or k == "*"})
    try:
        return AuxSettings(
            tasks=aux_spec,
            weights={**chosen(agent.get("aux_weights", {})), **config.aux_weights},
            task_kwargs=chosen(agent.get("aux_task_kwargs", {})),
            weighting={**chosen(agent.get("aux_weighting", {})), **config.aux_weighting},
            max_skipped_updates=config.max_skipped_updates,
            **scalars,
        )
    except AuxSettingsError as err:
        problems.extend(p.worded(SETTING_FLAGS) for p in err.problems)
    except ConfigError as err:
        problems.append(str(err))
    return None


def _timesteps(config: RunConfig, spec: EnvSpec) -> int:
    return config.timesteps or int(getattr(spec, "timesteps", None) or DEFAULT_TIMESTEPS.get(spec.kind, 1_000_000))


def _resolve_trained_agent(config: RunConfig, spec: EnvSpec | None, problems: list[str]) -> ResolvedRun:
    """``resolve`` for ``-i``: the saved model's algorithm, aux tasks and weights
    (``rlaux.run.pretrained``); the flags' hyperparameters replace saved ones."""
    where = f"{FLAG} {config.trained_agent}"
    given = [flag for flag, value in (("--agent", config.agent), ("--aux", config.aux),
                                      ("--aux-weight", config.aux_weights), ("--aux-weighting", config.aux_weighting))
             if value is not None and value != {}]
    if given:
        problems.append(f"{where} keeps the model's own aux tasks and weights: drop {', '.join(given)}")
    if "policy_kwargs" in config.hyperparams:
        problems.append(f"{where} keeps the model's network: --hyperparams cannot set policy_kwargs")
    model = None
    try:
        model = load_trained_agent(config.trained_agent, config.algo if config.algo in ALGORITHMS else None)
    except ConfigError as err:
        problems.append(str(err))
    if model is not None:
        problems.extend(check_hyperparams(model.algo_name, {k: v for k, v in config.hyperparams.items()
                                                            if k != "policy_kwargs"}))
        if spec is not None:
            try:
                observation_space, action_space = _spaces_of(spec)
            except ConfigError as err:
                problems.append(str(err))
            else:
                for what, saved, env_space in (("observation", model.observation_space, observation_space),
                                               ("action", model.action_space, action_space)):
                    if saved != env_space:
                        problems.append(f"{where} was trained on {what} space {saved}, but env {spec.env_id} "
                                        f"gives {env_space}")
    if problems:
        raise ConfigError("; ".join(dict.fromkeys(p.replace("\n", " ") for p in problems)))
    algo = model.algo_name
    settings = model.aux_settings
    return ResolvedRun(config, spec, algo, settings, dict(config.hyperparams), _timesteps(config, spec),
                       config.n_envs or spec.n_envs, run_dir_for(config, spec, algo, list(settings.tasks)))


def _spaces_of(spec: EnvSpec) -> tuple[spaces.Space, spaces.Space]:
    """(observation space, action space) of the VecEnv ``spec`` builds (cached per spec)."""
    return _env_spaces(json.dumps(spec.to_dict(), sort_keys=True, default=str))


def _check_on_env(cls: type, settings: AuxSettings, spec: EnvSpec, hyperparams: Mapping[str, Any],
                  n_envs: int) -> None:
    """The algorithm's task checks and its own (``check_run``: PPG's spaces and memory), on the spaces of the
    env ``spec`` builds."""
    observation_space, action_space = _spaces_of(spec)
    if settings.tasks:
        check_tasks(settings.take_tasks(cls.weights_like), observation_space, action_space, cls.recurrent)
    cls.check_run(settings, hyperparams, n_envs, observation_space, action_space)


@functools.lru_cache(maxsize=256)
def _env_spaces(spec_json: str) -> tuple[spaces.Space, spaces.Space]:
    """(observation space, action space) of one env built from an ``EnvSpec`` (as JSON, the cache key:
    a sweep resolves each env once for all its variants and seeds)."""
    spec = EnvSpec(**json.loads(spec_json))
    try:
        venv = make_vec_env(spec, n_envs=1, seed=0, vec_env="dummy")
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure to build the env, as one line
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"cannot make env {spec.env_id!r}: {type(err).__name__}: {first}") from None
    try:
        return venv.observation_space, venv.action_space
    finally:
        venv.close()


def agent_preset(name: str) -> dict[str, Any]:
    """The agent preset ``name`` with its ``base`` presets merged in (hyperparameters per env kind)."""
    preset = load_preset("agents", name)
    if "base" in preset:
        base = agent_preset(preset["base"])
        hyper = {**base.get("hyperparams", {})}
        for kind, values in preset.get("hyperparams", {}).items():
            merged = {**hyper.get(kind, {}), **values}
            if "policy_kwargs" in values:  # key by key, so a preset can add one network option to its base's
                merged["policy_kwargs"] = {**hyper.get(kind, {}).get("policy_kwargs", {}), **values["policy_kwargs"]}
            hyper[kind] = merged
        preset = {**base, **preset, "hyperparams": hyper}
    if preset.get("algo") not in ALGORITHMS:
        raise ConfigError(f"agent preset '{name}' has algo {preset.get('algo')!r}, not one of {', '.join(ALGORITHMS)}")
    return preset


def _hyperparams_for(agent: Mapping[str, Any], kind: str) -> dict[str, Any]:
    table = agent.get("hyperparams", {})
    return dict(table.get(kind, table.get("default", {})))


def run_dir_for(config: RunConfig, spec: EnvSpec, algo: str, aux: list[str]) -> Path:
    """``<log_dir>/<run_name>``, or ``<log_dir>/<env>_<algo>_<tasks>_s<seed>`` numbered ``_2``, ``_3``... if taken."""
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


def load_run(run_dir: str | os.PathLike) -> ResolvedRun:
    """The ResolvedRun that a run folder's ``config.json`` describes (the source of truth on resume): the
    :class:`RunConfig` from the user's request, the rest from the resolved values."""
    folder = RunFolder(run_dir)
    record = folder.read()
    try:
        config = RunConfig(**{f: record.request[f] for f in RunConfig.__dataclass_fields__ if f in record.request})
        spec = EnvSpec(**record["env_spec"])
        resolved = record.resolved
        if "aux_settings" in resolved:
            aux = AuxSettings.from_json(resolved["aux_settings"])
        else:  # format 1
            aux = AuxSettings(tasks=resolved["aux"], weights=resolved.get("aux_weights", {}),
                              task_kwargs=resolved.get("aux_task_kwargs", {}),
                              weighting=resolved.get("aux_weighting", {}),
                              max_skipped_updates=resolved.get("max_skipped_updates", 10))
        return ResolvedRun(config, spec, record["algo"], aux, dict(record["hyperparams"]), int(record["timesteps"]),
                           int(record["n_envs"]), Path(run_dir))
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise ConfigError(f"{folder.config_file}: not a config.json written by rlaux ({type(err).__name__}: {err})") \
            from None


__all__ = [
    "DEFAULT_TIMESTEPS",
    "DEVICES",
    "RESUME_OVERRIDES",
    "ResolvedRun",
    "RunConfig",
    "SETTING_FLAGS",
    "agent_preset",
    "algorithm_kwargs",
    "check_flags",
    "check_hyperparams",
    "load_run",
    "resolve",
    "run_dir_for",
]
