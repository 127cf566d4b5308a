"""Runs: from flags and presets to a trained agent in a run folder, and on from a checkpoint.

- :mod:`rlaux.run.config`: ``RunConfig`` (the flags), ``resolve`` (checks and merges them with
  the presets into a ``ResolvedRun``, the run's ``config.json``), ``load_run``.
- :mod:`rlaux.run.model`: ``build_model``, the AuxPPO/AuxA2C/AuxRecurrentPPO of a resolved run.
- :mod:`rlaux.run.pretrained`: a saved model to go on training (``-i/--trained-agent``).
- :mod:`rlaux.run.train`: ``train`` and ``resume``.
- :mod:`rlaux.run.checkpoint`: the checkpoint layout, saving, checking and loading.
- :mod:`rlaux.run.env_state`: RNG states, env state and Monitor files a checkpoint keeps.
- :mod:`rlaux.run.logs`: SB3's log writers, also for a continued run.
- :mod:`rlaux.run.signals`: stopping on SIGINT/SIGTERM at an iteration boundary.
- :mod:`rlaux.run.tracking`: tracking a run with Weights & Biases (``--track``).
"""

from rlaux.run.config import (
    DEVICES,
    RESUME_OVERRIDES,
    ResolvedRun,
    RunConfig,
    algorithm_kwargs,
    load_run,
    resolve,
)
from rlaux.run.model import build_model
from rlaux.run.train import resume, train

__all__ = [
    "DEVICES",
    "RESUME_OVERRIDES",
    "ResolvedRun",
    "RunConfig",
    "algorithm_kwargs",
    "build_model",
    "load_run",
    "resolve",
    "resume",
    "train",
]
