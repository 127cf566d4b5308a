"""SB3's PPO and A2C with auxiliary tasks."""

from __future__ import annotations

from stable_baselines3 import A2C, PPO

from rlaux.algorithms.mixin import AuxAlgorithmMixin


class AuxPPO(AuxAlgorithmMixin, PPO):
    """SB3 PPO with auxiliary tasks: ``AuxPPO("CnnPolicy", env, aux_tasks=["reward_pred"])``."""

    algo_name = "ppo"
    weights_like = "ppo"


class AuxA2C(AuxAlgorithmMixin, A2C):
    """SB3 A2C with auxiliary tasks: ``AuxA2C("CnnPolicy", env, aux_tasks=["reward_pred"])``."""

    algo_name = "a2c"
    weights_like = "a2c"


__all__ = ["AuxA2C", "AuxPPO"]
