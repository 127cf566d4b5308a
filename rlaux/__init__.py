"""rlaux: UNREAL-style auxiliary tasks for Stable-Baselines3 PPO and A2C, and sb3-contrib's RecurrentPPO."""

from rlaux.algorithms import ALGORITHMS, AuxA2C, AuxPPG, AuxPPO, AuxRecurrentPPO, AuxSettings
from rlaux.errors import ConfigError
from rlaux.policy import (
    AuxActorCriticCnnPolicy,
    AuxActorCriticPolicy,
    AuxRecurrentActorCriticCnnPolicy,
    AuxRecurrentActorCriticPolicy,
)
from rlaux.replay import AuxReplayBuffer, ReplayBatch, ReplayRequest
from rlaux.tasks import TASKS, AuxTask, make_tasks

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "TASKS",
    "AuxA2C",
    "AuxActorCriticCnnPolicy",
    "AuxActorCriticPolicy",
    "AuxPPG",
    "AuxPPO",
    "AuxRecurrentActorCriticCnnPolicy",
    "AuxRecurrentActorCriticPolicy",
    "AuxRecurrentPPO",
    "AuxReplayBuffer",
    "AuxSettings",
    "AuxTask",
    "ConfigError",
    "ReplayBatch",
    "ReplayRequest",
    "make_tasks",
]
