"""Reward prediction (UNREAL, Jaderberg et al. 2016, sec. 3.2).

From the encoder features of k = 3 consecutive observations, classify the sign
of the reward that follows the last one (negative, zero, positive) with a
softmax cross-entropy. Sequences are sampled so that half of them end in a
rewarding step, whatever the rate of rewards in the buffer. It trains the
feedforward encoder only.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from torch import nn

from rlaux.errors import ConfigError
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask, Metrics, TaskPolicy, check_batch_size, mlp

NEGATIVE, ZERO, POSITIVE = 0, 1, 2


def reward_classes(rewards: th.Tensor, threshold: float = 0.0) -> th.Tensor:
    """Sign classes of ``rewards`` [B]: 0 negative, 1 zero (|r| <= threshold), 2 positive. Long [B]."""
    classes = th.full_like(rewards, ZERO, dtype=th.long)
    classes[rewards > threshold] = POSITIVE
    classes[rewards < -threshold] = NEGATIVE
    return classes


def reward_prediction_loss(logits: th.Tensor, rewards: th.Tensor, threshold: float = 0.0) -> tuple[th.Tensor, th.Tensor]:
    """Softmax cross-entropy of ``logits`` [B, 3] against the sign of ``rewards`` [B].

    Returns the mean loss and the classification accuracy (both scalars).
    """
    target = reward_classes(rewards, threshold)
    loss = F.cross_entropy(logits, target)
    accuracy = (logits.argmax(dim=1) == target).float().mean()
    return loss, accuracy


class RewardPrediction(AuxTask):
    """``reward_pred``: 3-way reward-sign classification from k stacked feature vectors.

    :param n_frames: k, the observations whose features are concatenated (3 in the paper).
    :param hidden: width of the head's hidden layer (paper: 128); 0 for a single linear
        layer as in miyosuda/unreal.
    :param batch_size: sequences per optimizer step; None (default): one per ``env_steps_per_sequence``
        collected env steps (UNREAL's rate, ``rlaux.tasks.base.sequences_per_update``).
    :param reward_threshold: a step is rewarding when |r| > this.
    """

    name = "reward_pred"
    # Swept under rlaux's gradient rule (docs/results/unreal-weights): 0.25 for A2C, 0.0625 for PPO.
    default_weights = {"ppo": 0.0625, "a2c": 0.25}

    def __init__(
        self,
        weight: float | None = None,
        n_frames: int = 3,
        hidden: int = 128,
        batch_size: int | None = None,
        reward_threshold: float = 0.0,
    ) -> None:
        super().__init__(weight)
        check_batch_size(self.name, batch_size)
        if n_frames < 1 or hidden < 0 or reward_threshold < 0:
            raise ConfigError(
                f"reward_pred needs n_frames >= 1, hidden >= 0, reward_threshold >= 0; "
                f"got n_frames={n_frames}, hidden={hidden}, reward_threshold={reward_threshold}"
            )
        self.n_frames = n_frames
        self.hidden = hidden
        self.batch_size = batch_size
        self.reward_threshold = reward_threshold

    def replay_request(self) -> ReplayRequest:
        return ReplayRequest(
            seq_len=self.n_frames,
            batch_size=self.sequences,
            skewed=True,
            reward_threshold=self.reward_threshold,
        )

    def build_head(self, policy: TaskPolicy) -> nn.Module:
        return mlp(self.n_frames * policy.features_dim, self.hidden, 3)

    def loss(self, policy: TaskPolicy, head: nn.Module, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        features = policy.encode_sequences(batch)  # [B, T, F]
        logits = head(features[:, -self.n_frames :].flatten(1))
        loss, accuracy = reward_prediction_loss(logits, batch.rewards[:, -1], self.reward_threshold)
        metrics = {
            "accuracy": accuracy.detach(),
            "rewarding_share": th.tensor(batch.rewarding_share),
            "uniform_fallback": th.tensor(float(batch.skew_fallback)),
        }
        return loss, metrics
