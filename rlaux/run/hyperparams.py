"""The algorithm hyperparameters of a run (``--hyperparams``, presets): their checks, and the SB3 keyword
arguments they become (``lin_<x>`` schedules, TOML-friendly ``policy_kwargs``)."""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Mapping
from typing import Any

from stable_baselines3.common.utils import LinearSchedule

from rlaux.algorithms import ALGORITHMS
from rlaux.algorithms.settings import is_int, is_number
from rlaux.algorithms.value_clip import check_value_clip_form
from rlaux.errors import ConfigError
from rlaux.networks import sb3_policy_kwargs

#: Keys that flags or rlaux set; a hyperparameter may not name them.
_RESERVED = {"policy", "env", "seed", "device", "verbose", "tensorboard_log", "aux_tasks", "aux_weights",
             "aux_task_kwargs", "aux_weighting", "aux_settings", "_init_setup_model", "max_skipped_updates"}
_POS_INT = ("n_steps", "batch_size", "n_epochs", "stats_window_size", "sde_sample_freq")
_UNIT = ("gamma", "gae_lambda", "rms_prop_eps")
_NON_NEG = ("ent_coef", "vf_coef", "target_kl")
_POS_OR_SCHEDULE = ("learning_rate", "clip_range", "clip_range_vf", "max_grad_norm")
_SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")
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
        elif key in _POS_INT and not (is_int(value) and value >= 1 if key != "sde_sample_freq" else is_int(value)):
            problems.append(f"{where} must be a positive integer")
        elif key in _UNIT and not (is_number(value) and 0 <= value <= 1):
            problems.append(f"{where} must be a number in [0, 1]")
        elif key in _NON_NEG and value is not None and not (is_number(value) and value >= 0):
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
            problems.append(_policy_kwargs_problem(value))
    if algo in ("ppo", "ppo_lstm") and is_int(hyperparams.get("batch_size")) and hyperparams["batch_size"] == 1 \
            and hyperparams.get("normalize_advantage", True):
        problems.append("hyperparameter batch_size=1 cannot normalise advantages (PPO needs batch_size > 1)")
    if "clip_range_vf_form" in hyperparams and not problems:
        try:
            check_value_clip_form(hyperparams["clip_range_vf_form"], hyperparams.get("clip_range_vf"))
        except ConfigError as err:
            problems.append(f"hyperparameter {err}")
    if not problems:
        try:
            algorithm_kwargs(hyperparams)
        except ConfigError as err:
            problems.append(str(err))
    return problems


def _policy_kwargs_problem(value: Any) -> str:
    """What is wrong with a ``policy_kwargs`` hyperparameter that did not parse to a dict."""
    if not isinstance(value, str):
        return f"hyperparameter policy_kwargs must be a dict, got a {type(value).__name__} ({value!r})"
    text = value.strip()
    if not (text.startswith("dict(") or text.startswith("{")):
        return (f"hyperparameter policy_kwargs={text!r} is not a dict: write dict(name=value, ...) or "
                "{'name': value, ...}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        return f"hyperparameter policy_kwargs={text!r} does not parse ({err.msg} at column {err.offset})"
    names = sorted({ast.unparse(n) for n in ast.walk(tree)
                    if isinstance(n, (ast.Name, ast.Attribute, ast.Call)) and ast.unparse(n) != "dict"
                    and not (isinstance(n, ast.Call) and ast.unparse(n.func) == "dict")})
    names = [n for n in names if not any(other.startswith(n + ".") for other in names)]
    return (f"hyperparameter policy_kwargs={text!r}: only literals are read, not {', '.join(names) or 'expressions'}; "
            "name classes as strings (activation_fn='relu', features_extractor='shared_mlp', "
            "optimizer_class='RMSpropTFLike')")


def algorithm_kwargs(hyperparams: Mapping[str, Any], policy_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """TOML/JSON-friendly hyperparameters -> SB3 keyword arguments.

    ``lin_<x>`` (rl-zoo3s notation) becomes SB3s ``LinearSchedule`` from ``x`` down to 0; ``policy_kwargs`` (e.g. the env preset's) and the
    hyperparameters' own ``policy_kwargs``, which win key by key, go through
    ``rlaux.networks.sb3_policy_kwargs``.
    """
    kwargs = dict(hyperparams)
    for key in _SCHEDULES:
        value = kwargs.get(key)
        if isinstance(value, str) and value.startswith("lin_"):
            kwargs[key] = LinearSchedule(float(value[4:]), 0.0, 1.0)  # from the value down to 0
    merged = {**(policy_kwargs or {}), **kwargs.pop("policy_kwargs", {})}
    if merged:
        kwargs["policy_kwargs"] = sb3_policy_kwargs(merged)
    return kwargs


__all__ = ["algorithm_kwargs", "check_hyperparams"]
