"""rl-zoo3 integration: AuxPPO, AuxA2C, AuxRecurrentPPO and AuxPPG as ``aux_ppo``, ``aux_a2c``, ``aux_ppo_lstm`` and ``aux_ppg``
in rl-zoo3's train, enjoy, record_video and ``-optimize`` (optional extra: ``pip install "rlaux[zoo]"``).

``python -m rlaux.zoo train|enjoy|record_video [rl-zoo3's flags]`` runs rl-zoo3's own script
after :func:`register`; importing this package registers too, and registers the ALE and
MinAtar gymnasium ids (``MinAtar/<Game>-v1``) through :mod:`rlaux.envs`.

- :mod:`~rlaux.zoo.experiment`: what rl-zoo3 is told (algorithms, samplers, names, experiment manager).
- :mod:`~rlaux.zoo.tuning`: the Optuna samplers (rl-zoo3's RL ranges plus log-uniform aux weights).
- :mod:`~rlaux.zoo.wrappers`: ``env_wrapper: rlaux.zoo.MinAtarImage`` of the zoo files.
- ``hyperparams/aux_ppo.yml``, ``aux_a2c.yml``, ``aux_ppo_lstm.yml``, ``aux_ppg.yml``: the zoo
  files of the presets, read when ``-conf`` is not given.
"""

import sys

from rlaux.errors import ConfigError, import_optional


def _running_as_python_m() -> bool:
    """Whether this process is ``python -m rlaux.zoo`` (Python imports this package before its __main__)."""
    argv = sys.orig_argv
    return "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] == [__name__]


try:
    import_optional("rl_zoo3", "rlaux.zoo")  # a one-line ConfigError naming pip install "rlaux[zoo]"
except ConfigError as err:
    if _running_as_python_m():  # the command line's way: one line on stderr, exit code 2
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise

import rlaux.envs  # noqa: E402, F401  registers the ALE and MinAtar ids
from rlaux.zoo.experiment import (  # noqa: E402
    HYPERPARAMS_DIR,
    ZOO_ALGOS,
    AuxExperimentManager,
    hyperparams_file,
    register,
)
from rlaux.zoo.tuning import (  # noqa: E402
    AUX_WEIGHT_RANGES,
    sample_aux_a2c_params,
    sample_aux_ppg_params,
    sample_aux_ppo_lstm_params,
    sample_aux_ppo_params,
)
from rlaux.zoo.wrappers import MinAtarImage  # noqa: E402

register()

__all__ = [
    "AUX_WEIGHT_RANGES",
    "HYPERPARAMS_DIR",
    "ZOO_ALGOS",
    "AuxExperimentManager",
    "MinAtarImage",
    "hyperparams_file",
    "register",
    "sample_aux_a2c_params",
    "sample_aux_ppg_params",
    "sample_aux_ppo_lstm_params",
    "sample_aux_ppo_params",
]
