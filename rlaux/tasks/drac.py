"""DrAC: data-regularised actor-critic (Raileanu et al. 2021, arXiv:2006.12862).

On the on-policy minibatch SB3 is training on (``uses_minibatch``; see
``rlaux.minibatch``), with aug = a random shift (``rlaux.augment``; pad 4 for
84x84 frames, 1 for small ones):

    G_V  = 0.5 * (V(s) - V(aug(s)))^2          V(s) detached
    G_pi = - log pi(a | aug(s))                 a ~ pi(. | s), drawn without gradient
    L    = mean over the minibatch of G_V + G_pi

as in the authors' code (``auto-drac``: ``value_loss_aug + action_loss_aug``, the
sum weighted 0.1, ``aug_coef``). G_pi is the sampled estimate of
KL(pi(.|s) || pi(.|aug(s))) up to the entropy of pi(.|s), which has no gradient
here. Actions are drawn from the current policy with torch's global RNG, as are
the shifts: adding ``drac`` changes the random stream of the rest of training.
"""

from __future__ import annotations

import torch as th
from torch import nn

from rlaux.augment import auto_pad, random_shift
from rlaux.errors import ConfigError
from rlaux.tasks.base import AuxTask, Metrics, TaskPolicy


def drac_loss(
    values: th.Tensor, values_aug: th.Tensor, log_prob_aug: th.Tensor
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """``values`` [N] (detached here), ``values_aug`` [N], ``log_prob_aug`` [N] -> (loss, G_V, G_pi) means."""
    value_loss = 0.5 * (values.detach() - values_aug).pow(2).mean()
    policy_loss = -log_prob_aug.mean()
    return value_loss + policy_loss, value_loss, policy_loss


class DrAC(AuxTask):
    """``drac``: value and policy invariance to random shifts, on the training minibatch.

    :param pad: shift amplitude in pixels; ``None``: 4 for frames of 64 px or more, else 1.
    """

    name = "drac"
    requires_image = True
    uses_minibatch = True
    trains_actor_critic = True  # the actor's and critic's own layers
    default_weights = {"ppo": 0.1, "a2c": 0.1}  # the paper's alpha_r
    not_recurrent_because = "asks the policy for actions and values of single observations, without an LSTM state"

    def __init__(self, weight: float | None = None, pad: int | None = None) -> None:
        super().__init__(weight)
        if pad is not None and pad < 0:
            raise ConfigError(f"drac pad must be >= 0, got {pad}")
        self.pad = pad

    def loss(self, policy: TaskPolicy, head: nn.Module | None, batch) -> tuple[th.Tensor, Metrics]:
        obs = batch.observations  # [N, C, H, W] float, as SB3's rollout buffer stores it
        with th.no_grad():
            actions = policy.get_distribution(obs).get_actions()
            values = policy.predict_values(obs).flatten()
        pad = self.pad if self.pad is not None else auto_pad(*obs.shape[-2:])
        values_aug, log_prob_aug, _ = policy.evaluate_actions(random_shift(obs, pad), actions)
        loss, value_loss, policy_loss = drac_loss(values, values_aug.flatten(), log_prob_aug)
        return loss, {"value_loss": value_loss.detach(), "policy_loss": policy_loss.detach()}


__all__ = ["DrAC", "drac_loss"]
