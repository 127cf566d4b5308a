"""Deep supervision: RL losses on an intermediate layer (GoogLeNet's auxiliary classifiers,
Szegedy et al. 2015; the intermediate-layer losses of Al-Rfou et al. 2018).

A small policy/value head reads the encoder's conv feature map
(``rlaux.networks.conv_trunk``: NatureCNN's convs, MinAtarCNN's conv), [N, C, h, w]
-> flatten -> Linear ``hidden`` -> ReLU -> an action distribution of SB3's kind
for the action space (``make_proba_distribution``) and a value. It is trained on
the same RL targets as the agent, from the on-policy minibatch SB3 is training
on (``uses_minibatch``; ``rlaux.minibatch``):

    L = -mean(A * log pi_aux(a | s)) + value_coef * mean((V_aux(s) - R)^2)

with the minibatch's actions a, advantages A (normalised per minibatch when
``normalize_advantage``, as PPO does by default) and returns R (SB3's value
loss is this MSE). Its gradient reaches the conv layers directly, which is the
point; the head is thrown away at deployment.

Schedule: GoogLeNet weights its auxiliary losses 0.3 (the default weight here);
Al-Rfou et al. drop theirs as training goes on. The loss is multiplied by
``max(0, 1 - progress / decay_fraction)``, where ``progress`` in [0, 1] is the
share of training done (set on the task by the algorithm before each
``train()``, from SB3's ``_current_progress_remaining``): it falls linearly to 0
at ``decay_fraction`` of training and stays 0 after. ``decay_fraction=None``
keeps it constant. The logged ``aux/deep_supervision/loss`` is the decayed loss;
``policy_loss`` and ``value_loss`` are undecayed, ``decay`` is the factor.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution, make_proba_distribution
from torch import nn

from rlaux.errors import ConfigError
from rlaux.tasks.base import AuxTask, Metrics, TaskPolicy, task_conv_trunk


def decay_factor(progress: float, decay_fraction: float | None) -> float:
    """max(0, 1 - progress / decay_fraction); 1 when ``decay_fraction`` is None."""
    if decay_fraction is None:
        return 1.0
    return max(0.0, 1.0 - float(progress) / decay_fraction)


def policy_gradient_loss(log_prob: th.Tensor, advantages: th.Tensor, normalize: bool = True) -> th.Tensor:
    """-mean(A * log pi(a|s)) for ``log_prob``, ``advantages`` [N]; A normalised when ``normalize`` and N > 1."""
    if normalize and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return -(advantages.detach() * log_prob).mean()


class DeepSupervisionHead(nn.Module):
    """Conv feature maps [N, C, h, w] -> (SB3 distribution over actions, values [N])."""

    def __init__(self, in_dim: int, hidden: int, action_space: spaces.Space) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, hidden), nn.ReLU())
        self.dist = make_proba_distribution(action_space)
        if isinstance(self.dist, DiagGaussianDistribution):
            self.action_net, self.log_std = self.dist.proba_distribution_net(hidden, log_std_init=0.0)
        else:
            self.action_net = self.dist.proba_distribution_net(hidden)
        self.value_net = nn.Linear(hidden, 1)

    def forward(self, maps: th.Tensor):
        h = self.body(maps)
        if isinstance(self.dist, DiagGaussianDistribution):
            dist = self.dist.proba_distribution(self.action_net(h), self.log_std)
        else:
            dist = self.dist.proba_distribution(self.action_net(h))
        return dist, self.value_net(h).flatten()


class DeepSupervision(AuxTask):
    """``deep_supervision``: policy-gradient and value losses on a head over the conv feature map.

    :param hidden: width of the head's hidden layer.
    :param value_coef: weight of the value MSE within the task's loss (SB3's vf_coef default).
    :param normalize_advantage: normalise the minibatch advantages.
    :param decay_fraction: the loss falls linearly to 0 at this share of training (None: no decay).
    """

    name = "deep_supervision"
    requires_image = True
    uses_minibatch = True
    default_weights = {"ppo": 0.3, "a2c": 0.3}  # GoogLeNet's auxiliary classifiers
    not_recurrent_because = "trains on SB3's on-policy minibatch, which sb3-contrib's recurrent rollout buffer does not show"

    def __init__(
        self,
        weight: float | None = None,
        hidden: int = 128,
        value_coef: float = 0.5,
        normalize_advantage: bool = True,
        decay_fraction: float | None = 1.0,
    ) -> None:
        super().__init__(weight)
        if hidden < 1 or value_coef < 0:
            raise ConfigError(f"deep_supervision needs hidden >= 1 and value_coef >= 0, got {hidden}, {value_coef}")
        if decay_fraction is not None and not 0.0 < decay_fraction <= 1.0:
            raise ConfigError(f"deep_supervision decay_fraction must be in (0, 1] or None, got {decay_fraction}")
        self.hidden = hidden
        self.value_coef = value_coef
        self.normalize_advantage = normalize_advantage
        self.decay_fraction = decay_fraction

    def build_head(self, policy: TaskPolicy) -> DeepSupervisionHead:
        with th.no_grad():
            sample = th.as_tensor(policy.observation_space.sample()[None], device=policy.device)
            in_dim = task_conv_trunk(self.name, policy.encoder)(policy.preprocess(sample)).flatten(1).shape[1]
        return DeepSupervisionHead(in_dim, self.hidden, policy.action_space)

    def loss(self, policy: TaskPolicy, head: DeepSupervisionHead, batch) -> tuple[th.Tensor, Metrics]:
        decay = decay_factor(self.progress, self.decay_fraction)
        if decay == 0.0:  # schedule over: no forward pass, a zero loss that touches only the head
            zero = sum(p.sum() for p in head.parameters()) * 0.0
            return zero, {"decay": th.zeros(())}
        maps = task_conv_trunk(self.name, policy.encoder)(policy.preprocess(batch.observations))
        dist, values = head(maps)
        actions = batch.actions
        if isinstance(policy.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        policy_loss = policy_gradient_loss(dist.log_prob(actions), batch.advantages.flatten(), self.normalize_advantage)
        value_loss = F.mse_loss(values, batch.returns.flatten())
        loss = decay * (policy_loss + self.value_coef * value_loss)
        return loss, {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(), "decay": th.tensor(decay)}


__all__ = ["DeepSupervision", "DeepSupervisionHead", "decay_factor", "policy_gradient_loss"]
