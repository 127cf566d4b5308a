"""Every auxiliary setting of an agent in one frozen object (``AuxSettings``), validated once, and the
tasks' checks against the env's spaces.

The route of a setting: the CLI (``rlaux.run.config.resolve``: flags and presets), rl-zoo3 and a Python
caller (``AuxPPO(aux_weights=...)``) each make one ``AuxSettings``; making it checks every field and
builds the task objects once; the algorithm takes those tasks (``take_tasks``) and reads the rest of
its settings from it; ``config.json`` and the Hub card store ``to_json()``. Problems are reported by the
name of the Python argument (``aux_weights``); ``resolve`` words them as the flags (``--aux-weight``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gymnasium import spaces

from rlaux.errors import ConfigError
from rlaux.objective import GRADIENT_RULES
from rlaux.replay import LSTM_STATE_DTYPES
from rlaux.tasks import TASKS, AuxTask, make_tasks, parse_names
from rlaux.tasks.base import DEFAULT_ENV_STEPS_PER_SEQUENCE, check_weight
from rlaux.weighting import parse_weighting

#: ``aux_every="auto"``: reuse the auxiliary gradient over as many optimizer steps as it takes for each
#: replaying task to draw at least this many sequences at once, k at most one epoch's minibatches (PPO MinAtar unreal,
#: 13 sequences a step: 2.13x plain PPO's wall time at k = 1, 1.79x at 3, 1.69x at 4, 1.71-1.73x at
#: 8 and 16; docs/benchmarks.md).
AUX_MIN_SEQUENCES = 50

#: AuxSettings field -> the keyword argument of ``AuxPPO``/``AuxA2C``/``AuxRecurrentPPO`` (and of rl-zoo3's
#: hyperparameter files) that sets it.
ARGUMENTS: dict[str, str] = {
    "tasks": "aux_tasks",
    "weights": "aux_weights",
    "task_kwargs": "aux_task_kwargs",
    "weighting": "aux_weighting",
    "replay_capacity": "aux_replay_capacity",
    "max_skipped_updates": "max_skipped_updates",
    "clip": "aux_clip",
    "max_grad_norm": "aux_max_grad_norm",
    "env_steps_per_sequence": "aux_env_steps_per_sequence",
    "every": "aux_every",
    "lstm_state_dtype": "aux_lstm_state_dtype",
    "ppg_n_pi": "ppg_n_pi",
    "ppg_aux_epochs": "ppg_aux_epochs",
    "ppg_value_epochs": "ppg_value_epochs",
    "ppg_beta_clone": "ppg_beta_clone",
    "ppg_value_distill_weight": "ppg_value_distill_weight",
    "ppg_aux_minibatch_rollouts": "ppg_aux_minibatch_rollouts",
    "ppg_aux_learning_rate": "ppg_aux_learning_rate",
    "ppg_arch": "ppg_arch",
}

#: The settings of Phasic Policy Gradient (``AuxPPG``, ``--algo ppg``); other algorithms refuse them.
PHASIC_FIELDS = tuple(name for name in ARGUMENTS if name.startswith("ppg_"))

#: PPG's architectures (Cobbe et al. 2021, section 3 and the authors' ``train.py``): ``dual``, separate policy
#: and value networks; ``detach``, one encoder, the value head reads it detached; ``shared``, one encoder
#: trained by both losses.
PPG_ARCHS = ("dual", "detach", "shared")


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: The scalar settings: field -> (is valid, what is expected).
_SCALAR_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "replay_capacity": (lambda v: is_int(v) and v >= 2, "an integer >= 2 (steps per env)"),
    "max_skipped_updates": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: never stop)"),
    "clip": (lambda v: isinstance(v, str) and v in GRADIENT_RULES, f"one of {', '.join(GRADIENT_RULES)}"),
    "max_grad_norm": (lambda v: is_number(v) and v > 0, "a number > 0"),
    "env_steps_per_sequence": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
    "every": (lambda v: v == "auto" or (is_int(v) and v >= 1), "an integer >= 1 or 'auto'"),
    "lstm_state_dtype": (lambda v: v in LSTM_STATE_DTYPES, f"one of {', '.join(LSTM_STATE_DTYPES)}"),
    "ppg_n_pi": (lambda v: is_int(v) and v >= 1, "an integer >= 1 (policy iterations per auxiliary phase)"),
    "ppg_aux_epochs": (lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: no auxiliary phase)"),
    "ppg_value_epochs": (lambda v: v is None or (is_int(v) and v >= 0),
                         "an integer >= 0, or None (value and policy trained together for n_epochs)"),
    "ppg_beta_clone": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "ppg_value_distill_weight": (lambda v: is_number(v) and v >= 0, "a number >= 0"),
    "ppg_aux_minibatch_rollouts": (lambda v: is_int(v) and v >= 1, "an integer >= 1 (env rollouts per minibatch)"),
    "ppg_aux_learning_rate": (lambda v: v is None or (is_number(v) and v > 0),
                              "a number > 0, or None (the policy phase's current learning rate)"),
    "ppg_arch": (lambda v: v in PPG_ARCHS, f"one of {', '.join(PPG_ARCHS)}"),
}


@dataclass(frozen=True)
class SettingProblem:
    """One invalid setting: the ``AuxSettings`` field and what is wrong, worded after the setting's name."""

    field: str
    message: str

    def worded(self, names: Mapping[str, str] | None = None) -> str:
        """The problem in one line, naming the setting as ``names[field]`` (a flag), else by its argument."""
        return f"{(names or {}).get(self.field, ARGUMENTS[self.field])} {self.message}"


class AuxSettingsError(ConfigError):
    """Invalid auxiliary settings; ``problems`` holds each, ``str()`` names the Python arguments."""

    def __init__(self, problems: list[SettingProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.worded() for p in problems))


@dataclass(frozen=True)
class AuxSettings:
    """The auxiliary settings of one agent, each with its one default (the Python argument in brackets).

    :param tasks: task names, bundles (``unreal``) expanded (``aux_tasks``; a comma-separated string, names
        or task objects are accepted and become names).
    :param weights: task name -> lambda_k, for the tasks whose weight is not the algorithm's default
        (``aux_weights``).
    :param task_kwargs: task name -> constructor arguments (``aux_task_kwargs``).
    :param weighting: task name or ``"*"`` -> a weighting spec of ``rlaux.weighting`` (``aux_weighting``).
    :param replay_capacity: steps kept per env in the auxiliary replay, UNREAL's 2,000 (``aux_replay_capacity``).
    :param max_skipped_updates: stop after this many optimizer steps in a row with a non-finite loss or
        gradient, each skipped; 0: never (``max_skipped_updates``).
    :param clip: how the RL and auxiliary gradients are joined (``aux_clip``; ``rlaux.objective``).
    :param max_grad_norm: the safety clip of the auxiliary gradient under ``rl_plus_aux`` (``aux_max_grad_norm``).
    :param env_steps_per_sequence: one replayed sequence per task per this many collected env steps, UNREAL's
        20 (``aux_env_steps_per_sequence``; ``rlaux.tasks.base.sequences_per_update``).
    :param every: compute the auxiliary gradient on one optimizer step in k and reuse it on the k - 1 that
        follow; ``"auto"``: the smallest k giving each replaying task ``AUX_MIN_SEQUENCES`` (``aux_every``).
    :param lstm_state_dtype: how the replay keeps a recurrent policy's LSTM state per step
        (``aux_lstm_state_dtype``; ``AuxRecurrentPPO`` only).

    Phasic Policy Gradient's settings (``AuxPPG`` only; docs/ppg.md; the paper's defaults):

    :param ppg_n_pi: N_pi, policy-phase iterations (rollouts) per auxiliary phase (32).
    :param ppg_aux_epochs: E_aux, epochs of the auxiliary phase over the N_pi stored rollouts (6).
    :param ppg_value_epochs: E_V, value epochs per rollout, apart from the policy's ``n_epochs`` (E_pi) with an
        optimizer of their own; None: value and policy are trained together, E_V = E_pi (the paper's 1 and 1).
    :param ppg_beta_clone: beta_clone, the weight of KL(pre-phase policy || policy) in the auxiliary phase (1).
    :param ppg_value_distill_weight: the weight of the value network's own regression in the auxiliary
        phase (the authors' ``vf_true_weight``, 1).
    :param ppg_aux_minibatch_rollouts: whole env rollouts of ``n_steps`` per auxiliary minibatch (the authors'
        ``aux_mbsize``, 4: 16 N_pi minibatches an epoch at 64 envs).
    :param ppg_aux_learning_rate: the auxiliary phase's Adam learning rate; None: the policy phase's current one.
    :param ppg_arch: ``dual``, ``detach`` or ``shared`` (:data:`PPG_ARCHS`).

    Making it checks every field and builds the task objects once (a task's constructor checks its own
    arguments); all problems are raised together as one :class:`AuxSettingsError`.
    """

    tasks: tuple[str, ...] = ()
    weights: Mapping[str, float] = field(default_factory=dict)
    task_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    weighting: Mapping[str, str] = field(default_factory=dict)
    replay_capacity: int = 2000
    max_skipped_updates: int = 10
    clip: str = "rl_plus_aux"
    max_grad_norm: float = 10.0
    env_steps_per_sequence: int = DEFAULT_ENV_STEPS_PER_SEQUENCE
    every: int | str = "auto"
    lstm_state_dtype: str = "float16"
    ppg_n_pi: int = 32
    ppg_aux_epochs: int = 6
    ppg_value_epochs: int | None = None
    ppg_beta_clone: float = 1.0
    ppg_value_distill_weight: float = 1.0
    ppg_aux_minibatch_rollouts: int = 4
    ppg_aux_learning_rate: float | None = None
    ppg_arch: str = "dual"
    _built: list[AuxTask] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        problems: list[SettingProblem] = []
        given = self.tasks
        objects = [t for t in ([given] if isinstance(given, AuxTask) else
                               [] if isinstance(given, str) or given is None else list(given))
                   if isinstance(t, AuxTask)]
        names = self._task_names(given, problems)
        object.__setattr__(self, "tasks", tuple(names))
        weights = self._mapping("weights", self.weights, names, problems, self._weight_of)
        task_kwargs = self._mapping("task_kwargs", self.task_kwargs, names, problems, self._kwargs_of)
        weighting = self._mapping("weighting", self.weighting, [*names, "*"], problems, self._weighting_of)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "task_kwargs", task_kwargs)
        object.__setattr__(self, "weighting", weighting)
        for name, (valid, expected) in _SCALAR_CHECKS.items():
            value = getattr(self, name)
            if not valid(value):
                problems.append(SettingProblem(name, f"must be {expected}, got {value!r}"))
        if not problems:
            try:  # the task constructors check their own arguments; the objects are kept for take_tasks
                built = make_tasks([*objects, *[n for n in names if n not in {t.name for t in objects}]],
                                   weights, None, task_kwargs, weighting)
            except ConfigError as err:
                field_name = "task_kwargs" if task_kwargs else "tasks"
                problems.append(SettingProblem(field_name, f"cannot make the tasks: {err}"))
            else:
                object.__setattr__(self, "_built", built)
        if problems:
            raise AuxSettingsError(problems)

    # ------------------------------------------------------------------ field checks

    @staticmethod
    def _task_names(given: Any, problems: list[SettingProblem]) -> list[str]:
        items = [given] if isinstance(given, (str, AuxTask)) else list(given or ())
        names: list[str] = []
        for item in items:
            if isinstance(item, AuxTask):
                names.append(item.name)
                continue
            try:
                names.extend(n for n in parse_names([item] if isinstance(item, str) else item) if n not in names)
            except (ConfigError, TypeError) as err:
                problems.append(SettingProblem("tasks", f"names an {err}"
                                               if isinstance(err, ConfigError) else f"must be task names, got {item!r}"))
        if len(set(names)) != len(names):
            problems.append(SettingProblem("tasks", f"must name distinct tasks, got {names}"))
        return names

    @staticmethod
    def _mapping(name: str, value: Any, allowed: list[str], problems: list[SettingProblem],
                 check: Callable[[str, Any], Any]) -> dict[str, Any]:
        """A copy of the mapping ``value`` with its values checked; keys must be among ``allowed``."""
        if not isinstance(value, Mapping):
            problems.append(SettingProblem(name, f"must be a mapping of task names, got {value!r}"))
            return {}
        checked: dict[str, Any] = {}
        for key, item in value.items():
            if key not in allowed:
                tasks = [a for a in allowed if a != "*"]
                problems.append(SettingProblem(name, f"names '{key}', which is not among the aux tasks {tasks or ['none']}"))
                continue
            try:
                checked[key] = check(key, item)
            except ConfigError as err:
                problems.append(SettingProblem(name, f"{key}={item!r}: {err}"))
        return checked

    @staticmethod
    def _weight_of(name: str, value: Any) -> float:
        try:
            return check_weight(name, value)
        except ConfigError:
            raise ConfigError("must be a finite number >= 0") from None

    @staticmethod
    def _kwargs_of(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError("must be a mapping of argument names to values")
        return dict(value)

    @staticmethod
    def _weighting_of(name: str, value: Any) -> str:
        parse_weighting(value, name)  # raises ConfigError with the valid forms
        return str(value)

    # ------------------------------------------------------------------ use

    @classmethod
    def from_arguments(cls, **arguments: Any) -> AuxSettings:
        """From the keyword arguments of the algorithms (``aux_weights=...``; :data:`ARGUMENTS`)."""
        fields_of = {argument: name for name, argument in ARGUMENTS.items()}
        unknown = sorted(set(arguments) - set(fields_of))
        if unknown:
            raise ConfigError(f"unknown aux setting(s) {', '.join(unknown)}; valid: {', '.join(fields_of)}")
        return cls(**{fields_of[k]: v for k, v in arguments.items() if v is not None or k == "aux_tasks"})

    def to_arguments(self) -> dict[str, Any]:
        """The keyword arguments that make these settings again (:meth:`from_arguments`)."""
        return {ARGUMENTS[f.name]: _plain(getattr(self, f.name)) for f in fields(self) if f.name in ARGUMENTS}

    def to_json(self) -> dict[str, Any]:
        """The settings as JSON values, by field name (``config.json``'s ``aux``; :meth:`from_json`)."""
        return {name: _plain(getattr(self, name)) for name in ARGUMENTS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuxSettings:
        return cls(**{k: v for k, v in data.items() if k in ARGUMENTS})

    def phasic_given(self) -> list[str]:
        """The PPG settings (:data:`PHASIC_FIELDS`) that differ from their defaults, by argument name."""
        defaults = {f.name: f.default for f in fields(self)}
        return [ARGUMENTS[name] for name in PHASIC_FIELDS if getattr(self, name) != defaults[name]]

    def replace(self, **changes: Any) -> AuxSettings:
        """A copy with ``changes`` (field names), checked again."""
        return replace(self, **changes)

    def take_tasks(self, weights_like: str) -> list[AuxTask]:
        """The task objects, with each default weight filled in as ``weights_like`` ("ppo" or "a2c") sets it.
        The objects built when the settings were made, the first time; copies of them after that (so that
        two agents never share a task's state)."""
        tasks = self._built
        if getattr(self, "_taken", False):
            tasks = copy.deepcopy(tasks)
        object.__setattr__(self, "_taken", True)
        for task in tasks:
            task.resolve_weight(weights_like)
        return tasks

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by its fields; a task object of a class outside the registry (a user's own) goes with them."""
        data = self.to_json()
        data["tasks"] = [task if type(task) is not TASKS.get(task.name) else task.name for task in self._built] \
            if self._built else data["tasks"]
        return (_from_json, (data,))


def _from_json(data: Mapping[str, Any]) -> AuxSettings:
    return AuxSettings.from_json(data)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_tasks(tasks: Iterable[AuxTask], observation_space: spaces.Space, action_space: spaces.Space,
                recurrent: bool = False) -> None:
    """Raise ConfigError when a task cannot work with these spaces (``AuxTask.check``, then the
    replay's own need), or, for ``recurrent`` policies, with an LSTM (``not_recurrent_because``).
    The algorithm runs it before it builds any head; ``rlaux.run`` runs it on the env's spaces
    before training."""
    tasks = list(tasks)
    for task in tasks:
        if recurrent and task.not_recurrent_because:
            raise ConfigError(f"aux task '{task.name}' cannot train a recurrent policy (ppo_lstm): it "
                              f"{task.not_recurrent_because}; use it with ppo or a2c")
        task.check(observation_space, action_space)
    if any(t.replay_request() for t in tasks) and isinstance(observation_space, spaces.Dict):
        raise ConfigError("aux tasks that sample the replay need Box observations, not a Dict space")


__all__ = ["ARGUMENTS", "AUX_MIN_SEQUENCES", "PHASIC_FIELDS", "PPG_ARCHS", "AuxSettings", "AuxSettingsError", "SettingProblem", "check_tasks",
           "is_int", "is_number"]
