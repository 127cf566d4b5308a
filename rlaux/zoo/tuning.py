"""Optuna samplers of rl-zoo3's ``-optimize`` for ``aux_ppo``, ``aux_a2c`` and ``aux_ppo_lstm``.

Each samples the RL hyperparameters with rl-zoo3's own sampler (``sample_ppo_params``,
``sample_a2c_params``, ``sample_ppo_lstm_params``: same names, ranges and conversions; rl-zoo3's
RecurrentPPO sampler is its PPO one, the LSTM's size stays the file's), then one weight per configured
aux task, log-uniform in :data:`AUX_WEIGHT_RANGES`, as the trial parameter
``aux_weight_<task>``. The sampled values are merged into the configured ones: the sampled
``net_arch``/``activation_fn`` into the file's ``policy_kwargs`` (which keep, e.g., the MinAtar
encoder), the sampled weights into its ``aux_weights``.

rl-zoo3 calls a sampler with the trial only, not with the configuration it merges the result
into; :class:`rlaux.zoo.experiment.AuxExperimentManager` makes the configured hyperparameters
visible to the sampler (:func:`configured_hyperparams`) for the duration of each trial.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import (
    convert_onpolicy_params,
    sample_a2c_params,
    sample_ppo_lstm_params,
    sample_ppo_params,
)

from rlaux.errors import ConfigError
from rlaux.tasks import parse_names

#: Task name -> (low, high) of its log-uniform weight. UNREAL's reward prediction and value
#: replay weigh about as much as the RL loss; pixel and feature control, summed over many
#: cells or features, about a hundredth of it. Every task of ``rlaux.tasks.TASKS`` has one.
AUX_WEIGHT_RANGES: dict[str, tuple[float, float]] = {
    "reward_pred": (0.01, 1.0),
    "value_replay": (0.01, 1.0),
    "pixel_control": (0.001, 0.1),
    "feature_control": (0.001, 0.1),
    "spr": (0.1, 10.0),
    "curl": (0.1, 10.0),
    "inverse_dynamics": (0.1, 10.0),
    "drac": (0.01, 1.0),
    "deep_supervision": (0.03, 3.0),
}

#: Prefix of the trial parameters that hold aux weights: ``aux_weight_reward_pred``, ...
WEIGHT_PARAM_PREFIX = "aux_weight_"

_CONFIGURED: ContextVar[Mapping[str, Any] | None] = ContextVar("rlaux_zoo_configured", default=None)

Sampler = Callable[[optuna.Trial, int, int, dict], dict[str, Any]]


@contextlib.contextmanager
def configured_hyperparams(hyperparams: Mapping[str, Any]) -> Iterator[None]:
    """Within this block, the aux samplers merge into ``hyperparams`` (the preprocessed
    hyperparameters of the zoo file, which rl-zoo3's objective updates with the sample)."""
    token = _CONFIGURED.set(hyperparams)
    try:
        yield
    finally:
        _CONFIGURED.reset(token)


def sample_aux_weights(trial: optuna.Trial, tasks: Any) -> dict[str, float]:
    """One log-uniform weight per task named by ``tasks`` (an ``aux_tasks`` value: names, a
    comma-separated string, bundles), as trial parameters ``aux_weight_<task>``."""
    weights = {}
    for name in parse_names(tasks):
        low, high = AUX_WEIGHT_RANGES[name]
        weights[name] = trial.suggest_float(f"{WEIGHT_PARAM_PREFIX}{name}", low, high, log=True)
    return weights


def _merge_into_configured(sampled: dict[str, Any], trial: optuna.Trial, algo: str) -> dict[str, Any]:
    configured = _CONFIGURED.get()
    if configured is None:
        raise ConfigError(
            f"the {algo} sampler needs the configured aux tasks: run the study with python -m rlaux.zoo train "
            f"--algo {algo} -optimize (rlaux.zoo's experiment manager), not with rl_zoo3.train"
        )
    sampled = dict(sampled)
    sampled["policy_kwargs"] = {**(configured.get("policy_kwargs") or {}), **sampled.get("policy_kwargs", {})}
    weights = sample_aux_weights(trial, configured.get("aux_tasks"))
    if weights:
        sampled["aux_weights"] = {**(configured.get("aux_weights") or {}), **weights}
    return sampled


def sample_aux_ppo_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's PPO sample, plus the weights of the configured aux tasks."""
    return _merge_into_configured(sample_ppo_params(trial, n_actions, n_envs, additional_args), trial, "aux_ppo")


def sample_aux_a2c_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's A2C sample, plus the weights of the configured aux tasks."""
    return _merge_into_configured(sample_a2c_params(trial, n_actions, n_envs, additional_args), trial, "aux_a2c")


def sample_aux_ppo_lstm_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict
) -> dict[str, Any]:
    """rl-zoo3's RecurrentPPO sample, plus the weights of the configured aux tasks."""
    sampled = sample_ppo_lstm_params(trial, n_actions, n_envs, additional_args)
    return _merge_into_configured(sampled, trial, "aux_ppo_lstm")


def sample_aux_ppg_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """rl-zoo3's PPO sample (its ``n_epochs`` is PPG's E_pi), PPG's N_pi, E_aux and beta_clone around the paper's
    32, 6 and 1, and the weights of the configured aux tasks."""
    sampled = sample_ppo_params(trial, n_actions, n_envs, additional_args)
    sampled["ppg_n_pi"] = trial.suggest_categorical("ppg_n_pi", [4, 8, 16, 32])
    sampled["ppg_aux_epochs"] = trial.suggest_categorical("ppg_aux_epochs", [2, 3, 6, 9])
    sampled["ppg_beta_clone"] = trial.suggest_float("ppg_beta_clone", 0.1, 10.0, log=True)
    return _merge_into_configured(sampled, trial, "aux_ppg")


_PPG_PARAMS = ("ppg_n_pi", "ppg_aux_epochs", "ppg_beta_clone")


def convert_aux_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A finished trial's parameters -> hyperparameters (rl-zoo3's ``--trial-id``): rl-zoo3's
    on-policy conversion, and ``aux_weights`` from the ``aux_weight_<task>`` parameters."""
    rl_params = {k: v for k, v in params.items() if not k.startswith(WEIGHT_PARAM_PREFIX) and k not in _PPG_PARAMS}
    weights = {k[len(WEIGHT_PARAM_PREFIX):]: v for k, v in params.items() if k.startswith(WEIGHT_PARAM_PREFIX)}
    hyperparams = convert_onpolicy_params(rl_params)
    hyperparams.update({k: v for k, v in params.items() if k in _PPG_PARAMS})
    if weights:
        hyperparams["aux_weights"] = weights
    return hyperparams


#: rl-zoo3 algo name -> sampler, for ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER``.
SAMPLERS: dict[str, Sampler] = {"aux_ppo": sample_aux_ppo_params, "aux_a2c": sample_aux_a2c_params,
                                "aux_ppo_lstm": sample_aux_ppo_lstm_params, "aux_ppg": sample_aux_ppg_params}
#: rl-zoo3 algo name -> converter, for ``rl_zoo3.hyperparams_opt.HYPERPARAMS_CONVERTER``.
CONVERTERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {algo: convert_aux_params for algo in SAMPLERS}

__all__ = [
    "AUX_WEIGHT_RANGES",
    "CONVERTERS",
    "SAMPLERS",
    "WEIGHT_PARAM_PREFIX",
    "configured_hyperparams",
    "convert_aux_params",
    "sample_aux_a2c_params",
    "sample_aux_ppg_params",
    "sample_aux_ppo_lstm_params",
    "sample_aux_ppo_params",
    "sample_aux_weights",
]
