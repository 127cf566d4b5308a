"""Inverse dynamics: predict the action a_t from the encodings of s_t and s_{t+1}.

(Pathak et al. 2017's ICM inverse model, used alone as an auxiliary task.) The
head sees the shared encoder's features of both observations, concatenated,
and outputs action logits (softmax cross-entropy) for a ``Discrete`` action
space, or the action vector (mean squared error) for a ``Box`` one. Both
observations are in the same episode: the transition is sampled with
``allow_episode_end=False`` (after a done, SB3's next observation is the reset
frame of a new episode, and no action leads there).

Box actions are the ones the policy sampled, as stored by the replay (SB3
clips them only when it sends them to the env), so the target is the policy's
own output.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rlaux.errors import ConfigError
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask, Metrics, TaskPolicy, mlp


def inverse_dynamics_loss(output: th.Tensor, actions: th.Tensor, discrete: bool) -> tuple[th.Tensor, th.Tensor | None]:
    """Loss of the head's ``output`` against the taken ``actions``.

    Discrete: ``output`` logits [B, n_actions], ``actions`` [B] integer; returns the mean
    cross-entropy and the accuracy. Continuous: ``output`` [B, D], ``actions`` [B, D];
    returns the MSE (mean over batch and dimensions) and ``None``.
    """
    if discrete:
        target = actions.long().view(-1)
        loss = F.cross_entropy(output, target)
        return loss, (output.argmax(dim=1) == target).float().mean()
    return F.mse_loss(output, actions.float().view(output.shape)), None


class InverseDynamics(AuxTask):
    """``inverse_dynamics``: classify (Discrete) or regress (Box) a_t from features of s_t and s_{t+1}.

    :param hidden: width of the head's hidden layer (0: a single linear layer).
    :param batch_size: transitions per update.
    """

    name = "inverse_dynamics"
    default_weights = {"ppo": 1.0, "a2c": 1.0}

    def __init__(self, weight: float | None = None, hidden: int = 256, batch_size: int = 32) -> None:
        super().__init__(weight)
        if hidden < 0 or batch_size < 1:
            raise ConfigError(f"inverse_dynamics needs hidden >= 0 and batch_size >= 1, got {hidden}, {batch_size}")
        self.hidden = hidden
        self.batch_size = batch_size

    def check(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        super().check(observation_space, action_space)
        if not isinstance(action_space, (spaces.Discrete, spaces.Box)):
            raise ConfigError(f"aux task '{self.name}' needs a Discrete or Box action space, got {action_space}")

    def replay_request(self) -> ReplayRequest:
        return ReplayRequest(seq_len=1, batch_size=self.batch_size, next_obs=True, allow_episode_end=False)

    def build_head(self, policy: TaskPolicy) -> nn.Module:
        space = policy.action_space
        out = int(space.n) if isinstance(space, spaces.Discrete) else int(th.tensor(space.shape).prod())
        return mlp(2 * policy.features_dim, self.hidden, out)

    def loss(self, policy: TaskPolicy, head: nn.Module, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        features = policy.encode_sequences(batch)  # [B, 2, F]
        output = head(features.flatten(1))
        discrete = isinstance(policy.action_space, spaces.Discrete)
        actions = batch.actions[:, 0] if discrete else batch.actions[:, 0].flatten(1)
        loss, accuracy = inverse_dynamics_loss(output, actions, discrete)
        return loss, ({"accuracy": accuracy.detach()} if accuracy is not None else {})


__all__ = ["InverseDynamics", "inverse_dynamics_loss"]
