"""The agent of a resolved run: AuxPPO or AuxA2C with the run's tasks, presets and flags, or
the saved model it goes on training (``-i``, :mod:`rlaux.run.pretrained`)."""

from __future__ import annotations

from stable_baselines3.common.vec_env import VecEnv

from rlaux.algorithms import ALGORITHMS, AuxA2C, AuxPPO
from rlaux.run.config import ResolvedRun, algorithm_kwargs
from rlaux.run.pretrained import load_trained_agent


def build_model(run: ResolvedRun, env: VecEnv) -> AuxPPO | AuxA2C:
    """The AuxPPO/AuxA2C of a resolved run, on ``env``: new, or loaded from ``-i``."""
    if run.config.trained_agent is not None:
        model = load_trained_agent(run.config.trained_agent, run.algo, env=env, device=run.config.device,
                                   seed=run.config.seed, max_skipped_updates=run.config.max_skipped_updates, verbose=0,
                                   **algorithm_kwargs(run.hyperparams))
        model.set_random_seed(run.config.seed)
        return model
    kwargs = algorithm_kwargs(run.hyperparams, run.env_spec.policy_kwargs)
    return ALGORITHMS[run.algo](
        run.env_spec.policy,
        env,
        aux_tasks=run.aux,
        aux_weights={k: v for k, v in run.aux_weights.items() if k in run.aux},
        aux_task_kwargs=run.aux_task_kwargs,
        aux_weighting=run.aux_weighting,
        max_skipped_updates=run.config.max_skipped_updates,
        seed=run.config.seed,
        device=run.config.device,
        verbose=0,
        **kwargs,
    )


__all__ = ["build_model"]
