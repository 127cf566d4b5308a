"""The agent of a resolved run: AuxPPO, AuxA2C or AuxRecurrentPPO with the run's tasks, presets and
flags, or the saved model it goes on training (``-i``, :mod:`rlaux.run.pretrained`)."""

from __future__ import annotations

from stable_baselines3.common.vec_env import VecEnv

from rlaux.algorithms import ALGORITHMS, AuxAlgorithmMixin
from rlaux.run.config import ResolvedRun, algorithm_kwargs
from rlaux.run.pretrained import load_trained_agent


def build_model(run: ResolvedRun, env: VecEnv) -> AuxAlgorithmMixin:
    """The model of a resolved run, on ``env``: new, or loaded from ``-i``. The env preset's policy
    name is the algorithm's counterpart (``CnnPolicy`` -> ``CnnLstmPolicy`` for ``ppo_lstm``)."""
    if run.config.trained_agent is not None:
        model = load_trained_agent(run.config.trained_agent, run.algo, env=env, device=run.config.device,
                                   seed=run.config.seed, max_skipped_updates=run.config.max_skipped_updates, verbose=0,
                                   **algorithm_kwargs(run.hyperparams))
        model.set_random_seed(run.config.seed)
        return model
    cls = ALGORITHMS[run.algo]
    kwargs = algorithm_kwargs(run.hyperparams, run.env_spec.policy_kwargs)
    return cls(
        cls.env_policies.get(run.env_spec.policy, run.env_spec.policy),
        env,
        aux_settings=run.aux,
        seed=run.config.seed,
        device=run.config.device,
        verbose=0,
        **kwargs,
    )


__all__ = ["build_model"]
