"""The algorithm-level auxiliary settings, checked in one place, and the tasks against the spaces."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from gymnasium import spaces

from rlaux.errors import ConfigError
from rlaux.objective import GRADIENT_RULES
from rlaux.tasks import AuxTask


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


#: ``aux_every="auto"``: reuse the auxiliary gradient over as many optimizer steps as it takes for each
#: replaying task to draw at least this many sequences at once, k at most one epoch's minibatches (PPO MinAtar unreal,
#: 13 sequences a step: 2.13x plain PPO's wall time at k = 1, 1.79x at 3, 1.69x at 4, 1.71-1.73x at
#: 8 and 16; docs/benchmarks.md).
AUX_MIN_SEQUENCES = 50


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


#: The checks of the algorithm-level auxiliary settings: name -> (is valid, what is expected). One place, used by
#: ``AuxAlgorithmMixin.__init__`` and by ``rlaux.run.config`` (before any env is built or file written).
AUX_SETTING_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "aux_replay_capacity": (lambda v: _is_int(v) and v >= 2, "an integer >= 2 (steps per env)"),
    "max_skipped_updates": (lambda v: _is_int(v) and v >= 0, "an integer >= 0 (0: never stop)"),
    "aux_clip": (lambda v: isinstance(v, str) and v in GRADIENT_RULES, f"one of {', '.join(GRADIENT_RULES)}"),
    "aux_max_grad_norm": (_is_positive_number, "a number > 0"),
    "aux_env_steps_per_sequence": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "aux_every": (lambda v: v == "auto" or (_is_int(v) and v >= 1), "an integer >= 1 or 'auto'"),
}


def aux_setting_problems(**settings: Any) -> list[str]:
    """One line per invalid algorithm-level aux setting among ``settings`` (names of :data:`AUX_SETTING_CHECKS`)."""
    problems = []
    for name, value in settings.items():
        valid, expected = AUX_SETTING_CHECKS[name]
        if not valid(value):
            problems.append(f"{name} must be {expected}, got {value!r}")
    return problems


__all__ = ["AUX_MIN_SEQUENCES", "AUX_SETTING_CHECKS", "aux_setting_problems", "check_tasks"]
