"""SB3's PPO and A2C with auxiliary tasks."""

from __future__ import annotations

from typing import Any

from stable_baselines3 import A2C, PPO

from rlaux.algorithms.mixin import AuxAlgorithmMixin
from rlaux.algorithms.value_clip import check_value_clip_form, max_form_value_clip


class AuxPPO(AuxAlgorithmMixin, PPO):
    """SB3 PPO with auxiliary tasks: ``AuxPPO("CnnPolicy", env, aux_tasks=["reward_pred"])``.

    :param clip_range_vf_form: how ``clip_range_vf`` clips the value loss (``rlaux.algorithms.value_clip``):
        ``"clipped"`` (SB3's: the squared error of the clipped prediction) or ``"max"`` (OpenAI baselines' PPO2,
        CleanRL, gymnax-blines: the larger of the clipped and unclipped squared errors).
    """

    algo_name = "ppo"
    weights_like = "ppo"

    def __init__(self, policy: Any, env: Any, *args: Any, clip_range_vf_form: str = "clipped", **kwargs: Any) -> None:
        self.clip_range_vf_form = check_value_clip_form(clip_range_vf_form, kwargs.get("clip_range_vf"))
        super().__init__(policy, env, *args, **kwargs)

    def _minibatch_readers(self) -> list[str]:
        return ["clip_range_vf_form='max'"] if self.clip_range_vf_form == "max" else []

    def train(self) -> None:
        if self.clip_range_vf_form != "max":
            super().train()
            return
        schedule, self.clip_range_vf = self.clip_range_vf, None  # SB3 regresses the values it is handed
        clip_range = schedule(self._current_progress_remaining)
        try:
            with max_form_value_clip(self.policy, self.rollout_buffer, clip_range):
                super().train()
        finally:
            self.clip_range_vf = schedule
        self.logger.record("train/clip_range_vf", clip_range)


class AuxA2C(AuxAlgorithmMixin, A2C):
    """SB3 A2C with auxiliary tasks: ``AuxA2C("CnnPolicy", env, aux_tasks=["reward_pred"])``."""

    algo_name = "a2c"
    weights_like = "a2c"


__all__ = ["AuxA2C", "AuxPPO"]
