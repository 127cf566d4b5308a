"""AuxPPO, AuxA2C and AuxRecurrentPPO inside rl-zoo3: its algorithm table, samplers, expression names and
experiment manager.

rl-zoo3 has no plugin entry point. Its documented way to add an algorithm is to put it
into its ``ALGOS`` table before a script builds its parser (the ``--algo`` choices are read
from it then); :func:`register` does that, and everything else rl-zoo3 looks an algorithm
up in, once per process:

- ``rl_zoo3.ALGOS`` (one dict, shared by train, enjoy, record_video and the experiment
  manager): ``aux_ppo`` -> :class:`rlaux.AuxPPO`, ``aux_a2c`` -> :class:`rlaux.AuxA2C`,
  ``aux_ppo_lstm`` -> :class:`rlaux.AuxRecurrentPPO` (sb3-contrib's RecurrentPPO, rl-zoo3's
  ``ppo_lstm``; enjoy and record_video carry its LSTM states as for ``ppo_lstm``);
- ``HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER`` (``-optimize``, ``--trial-id``):
  :mod:`rlaux.zoo.tuning`;
- the names a zoo file's ``policy_kwargs`` expression may use: rl-zoo3 evaluates that string
  in the namespace of ``rl_zoo3.exp_manager`` (``-params`` values in that of
  ``rl_zoo3.utils``), so rlaux's encoders (``MinAtarCNN``, ``NatureCNN``) are added to both;
- ``rl_zoo3.train.ExperimentManager``: :class:`AuxExperimentManager`, which reads the
  hyperparameter files shipped here when ``-conf`` is not given, and lets the aux samplers
  see the configured aux tasks.

The hyperparameter keys of the aux algorithms (``aux_tasks``, ``aux_weights``, ``aux_task_kwargs``,
``aux_weighting``, ``aux_replay_capacity``, ``max_skipped_updates``, ``aux_lstm_state_dtype``) need
nothing: rl-zoo3 passes every key it does not know itself to the algorithm's constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import rl_zoo3.exp_manager
import rl_zoo3.train
import rl_zoo3.utils
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
from rl_zoo3.utils import ALGOS
from stable_baselines3.common.base_class import BaseAlgorithm

from rlaux.algorithms import AuxA2C, AuxPPG, AuxPPO, AuxRecurrentPPO
from rlaux.algorithms.settings import ARGUMENTS, AuxSettings
from rlaux.networks import FEATURE_EXTRACTORS
from rlaux.zoo.tuning import CONVERTERS, SAMPLERS, configured_hyperparams

#: rl-zoo3 algo name -> rlaux algorithm.
ZOO_ALGOS: dict[str, type[BaseAlgorithm]] = {"aux_ppo": AuxPPO, "aux_a2c": AuxA2C, "aux_ppo_lstm": AuxRecurrentPPO,
                                             "aux_ppg": AuxPPG}

#: The zoo hyperparameter files shipped with rlaux: ``<algo>.yml``.
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"

#: Class names a ``policy_kwargs`` expression may use, besides rl-zoo3's own (``nn``, ``RMSpropTFLike``, ...).
POLICY_KWARGS_NAMES: dict[str, type] = {cls.__name__: cls for cls in FEATURE_EXTRACTORS.values()}

#: Keys of a trial's converted parameters that update (rather than replace) the file's values.
_MERGED_TRIAL_KEYS = ("policy_kwargs", "aux_weights")


def hyperparams_file(algo: str) -> Path:
    """The shipped zoo hyperparameter file of ``algo`` (a key of ``ZOO_ALGOS``)."""
    return HYPERPARAMS_DIR / f"{algo}.yml"


class AuxExperimentManager(ExperimentManager):
    """rl-zoo3's ExperimentManager, which, for the aux algorithms:

    - reads ``rlaux/zoo/hyperparams/<algo>.yml`` when no ``-conf`` is given (rl-zoo3 would
      look in its own folder);
    - runs each Optuna trial with the configured hyperparameters visible to the aux samplers
      (:func:`rlaux.zoo.tuning.configured_hyperparams`);
    - with ``--trial-id``, merges the trial's ``policy_kwargs`` and ``aux_weights`` into the
      file's (rl-zoo3 replaces them, which would drop e.g. the MinAtar encoder), unless
      ``-params`` sets them.

    For other algorithms it is rl-zoo3's.
    """

    def __init__(self, args: Any, algo: str, *more: Any, config: str | None = None, **kwargs: Any) -> None:
        self._trial_updates: dict[str, dict[str, Any]] = {}
        if config is None and algo in ZOO_ALGOS:
            config = str(hyperparams_file(algo))
        super().__init__(args, algo, *more, config=config, **kwargs)

    def objective(self, trial: optuna.Trial) -> float:
        with configured_hyperparams(self._hyperparams):
            return super().objective(trial)

    def load_trial(self, storage: str, study_name: str, trial_id: int | None = None, convert: bool = True) -> dict[str, Any]:
        params = super().load_trial(storage, study_name, trial_id, convert)
        if convert and self.algo in ZOO_ALGOS:
            # merged once the file's policy_kwargs expression is evaluated (_preprocess_hyperparams)
            self._trial_updates = {key: params.pop(key) for key in _MERGED_TRIAL_KEYS if key in params}
        return params

    def _preprocess_hyperparams(self, hyperparams: dict[str, Any]) -> tuple[Any, ...]:
        processed, *rest = super()._preprocess_hyperparams(hyperparams)
        for key, update in self._trial_updates.items():
            if key not in (self.custom_hyperparams or {}):
                processed[key] = {**(processed.get(key) or {}), **update}
        if self.algo in ZOO_ALGOS:  # every aux setting checked here, before rl-zoo3 makes a folder or an env
            AuxSettings.from_arguments(**{k: v for k, v in processed.items() if k in ARGUMENTS.values()})
        return (processed, *rest)


def register() -> None:
    """Make rl-zoo3 know ``aux_ppo``, ``aux_a2c`` and ``aux_ppo_lstm`` (idempotent); before its scripts build
    their parsers."""
    ALGOS.update(ZOO_ALGOS)
    HYPERPARAMS_SAMPLER.update(SAMPLERS)
    HYPERPARAMS_CONVERTER.update(CONVERTERS)
    for module in (rl_zoo3.exp_manager, rl_zoo3.utils):
        for name, cls in POLICY_KWARGS_NAMES.items():
            setattr(module, name, cls)
    rl_zoo3.train.ExperimentManager = AuxExperimentManager


__all__ = ["HYPERPARAMS_DIR", "POLICY_KWARGS_NAMES", "ZOO_ALGOS", "AuxExperimentManager", "hyperparams_file",
           "register"]
