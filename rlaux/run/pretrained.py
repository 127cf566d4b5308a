"""A saved model to go on training (rl-zoo3's ``-i/--trained-agent``): loading it, and what it brings.

``train_agent.py -i MODEL.zip --env ... -n N`` trains the AuxPPO/AuxA2C/AuxRecurrentPPO saved in ``MODEL.zip``
for ``N`` more env steps on the env the flags name, in a new run folder. The model keeps its
algorithm, network, aux tasks with their weights and weightings, and its hyperparameters;
``--hyperparams`` given as flags replace some of them (as in rl-zoo3). The new run counts its
steps from 0, as rl-zoo3 does (``reset_num_timesteps``); ``--resume`` continues it as any run.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from rlaux.algorithms import ALGORITHMS, AuxAlgorithmMixin
from rlaux.errors import ConfigError

FLAG = "-i/--trained-agent"


def saved_algo(path: str | os.PathLike) -> str | None:
    """The algorithm (a key of ``ALGORITHMS``) of a model zip: its saved ``algo_name``; for files saved
    before rlaux kept it, ``"ppo"`` or ``"a2c"`` from its attributes (PPO saves ``n_epochs``, A2C does not).
    None where they cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data").decode())
    except Exception:  # noqa: BLE001 - a bad file is reported by the loader
        return None
    if not isinstance(data, dict):
        return None
    if data.get("algo_name") in ALGORITHMS:
        return data["algo_name"]
    return "ppo" if "n_epochs" in data else "a2c"


def load_trained_agent(path: str | os.PathLike, algo: str | None = None, env: Any = None, device: str = "cpu",
                       **kwargs: Any) -> AuxAlgorithmMixin:
    """The model saved in ``path`` (SB3's ``load``: on ``env`` if given, ``kwargs`` replacing
    saved attributes). ``algo`` is checked against the file's. A missing, corrupt or foreign file,
    or an env it cannot play, is a one-line ConfigError."""
    where = f"{FLAG} {path}"
    if not Path(path).is_file():
        raise ConfigError(f"{where}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{where}: not a model file (not a zip archive; truncated or corrupt?)")
    saved = saved_algo(path)
    if algo is not None and saved is not None and algo != saved:
        raise ConfigError(f"--algo {algo} contradicts {where}, which holds an {ALGORITHMS[saved].__name__} model")
    cls = ALGORITHMS[algo or saved or "ppo"]
    try:
        return cls.load(path, env=env, device=device, **kwargs)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - SB3/torch/zip errors of all kinds, space mismatches
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(f"{where}: cannot be loaded as an {cls.__name__} model ({type(err).__name__}: {first})") \
            from None


__all__ = ["FLAG", "load_trained_agent", "saved_algo"]
