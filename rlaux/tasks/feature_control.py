"""Feature control (UNREAL, Jaderberg et al. 2016, sec. 3.1).

"Learn a separate policy for maximally activating each of the units in a
specific hidden layer": pixel control with the cells replaced by the feature
maps of the encoder's last convolutional layer (``rlaux.networks.conv_trunk``:
``NatureCNN.cnn`` without its Flatten, ``MinAtarCNN.conv``, or any encoder with a
``conv`` attribute), [N, K, h, w]. The pseudo-reward of map k is the absolute
change of its mean activation between consecutive observations; one Q function
per map (a dueling FC head on the shared features, Q: [N, K, n_actions]) learns
it by n-step Q-learning with gamma 0.9 over replayed sequences that do not cross
an episode end, bootstrapped with the online head (detached).

The controlled features come from a slowly updated *target* copy of the conv
trunk (the paper's authors found that necessary), not from the encoder being
trained: otherwise the encoder could earn pseudo-reward by rescaling itself.
Update rule, chosen: an exponential moving average, target <- (1 - tau) target +
tau online, applied every ``target_update_interval`` optimizer steps (just before the step; a
batch reused over k steps by ``aux_every`` counts k, and moves the target as k EMA steps at
once, 1 - (1 - tau)^k), with tau = 0.01 by default, a time
constant of ~100 optimizer steps (~6 PPO rollouts with SB3's Atari settings).
``tau=1`` with an interval N is a hard copy every N steps.

The target is a submodule of the head, so ``save``/``load`` and ``.to(device)``
cover it; its parameters have ``requires_grad=False`` and never get a gradient,
so the optimizer (which holds all ``policy.parameters()``) never changes them.
"""

from __future__ import annotations

import copy

import torch as th
from gymnasium import spaces
from torch import nn

from rlaux.errors import ConfigError
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask, Metrics, TaskPolicy, check_batch_size, task_conv_trunk, update_target
from rlaux.tasks.functional import dueling, masked_mean, n_step_q_loss


def feature_control_rewards(feature_maps: th.Tensor) -> th.Tensor:
    """Pseudo-rewards of feature maps [*L, T+1, K, h, w] -> [*L, T, K]: |mean_{t+1} - mean_t| per map."""
    means = feature_maps.mean(dim=(-2, -1))
    return (means[..., 1:, :] - means[..., :-1, :]).abs()


class FeatureControlHead(nn.Module):
    """Dueling Q head, shared features [N, F] -> [N, n_maps, n_actions], plus the target conv trunk."""

    def __init__(self, features_dim: int, n_maps: int, n_actions: int, target: nn.Module, hidden: int = 256) -> None:
        super().__init__()
        self.n_maps, self.n_actions = n_maps, n_actions
        self.body = nn.Sequential(nn.Linear(features_dim, hidden), nn.ReLU()) if hidden > 0 else nn.Identity()
        width = hidden if hidden > 0 else features_dim
        self.value = nn.Linear(width, n_maps)
        self.advantage = nn.Linear(width, n_maps * n_actions)
        self.target = target.requires_grad_(False)
        self.register_buffer("calls", th.zeros((), dtype=th.long))

    def forward(self, features: th.Tensor) -> th.Tensor:
        h = self.body(features)
        value = self.value(h).unsqueeze(-1)  # [N, K, 1]
        advantage = self.advantage(h).view(-1, self.n_maps, self.n_actions)
        return dueling(value, advantage, dim=-1)


class FeatureControl(AuxTask):
    """``feature_control``: n-step Q-learning of one control policy per conv feature map.

    :param gamma: the control policies' discount (as pixel control: 0.9).
    :param tau: EMA rate of the target conv trunk (1: hard copy).
    :param target_update_interval: optimizer steps between target updates (a reused batch counts its k steps).
    :param hidden: width of the Q head's hidden layer (0: none).
    :param seq_len: steps per replayed sequence.
    :param batch_size: sequences per optimizer step; None (default): one per ``env_steps_per_sequence``
        collected env steps (UNREAL's rate, ``rlaux.tasks.base.sequences_per_update``).
    """

    name = "feature_control"
    requires_image = True
    # No public implementation and the same loss normalisation: pixel control's value (not swept).
    default_weights = {"ppo": 0.05, "a2c": 0.05}

    def __init__(
        self,
        weight: float | None = None,
        gamma: float = 0.9,
        tau: float = 0.01,
        target_update_interval: int = 1,
        hidden: int = 256,
        seq_len: int = 20,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(weight)
        if not 0.0 <= gamma <= 1.0 or not 0.0 <= tau <= 1.0:
            raise ConfigError(f"feature_control needs gamma and tau in [0, 1], got gamma={gamma}, tau={tau}")
        check_batch_size(self.name, batch_size)
        if target_update_interval < 1 or hidden < 0 or seq_len < 1:
            raise ConfigError(
                "feature_control needs target_update_interval >= 1, hidden >= 0, seq_len >= 1; got "
                f"{target_update_interval}, {hidden}, {seq_len}"
            )
        self.gamma = gamma
        self.tau = tau
        self.target_update_interval = target_update_interval
        self.hidden = hidden
        self.seq_len = seq_len
        self.batch_size = batch_size

    def check(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        super().check(observation_space, action_space)
        if not isinstance(action_space, spaces.Discrete):
            raise ConfigError(f"aux task '{self.name}' needs a Discrete action space (Q-learning), got {action_space}")

    def replay_request(self) -> ReplayRequest:
        # Equal to pixel control's request for a feed-forward policy, so the two share one batch and its encoder
        # pass. With a recurrent policy pixel control also asks for the LSTM window (it reads the LSTM output)
        # while feature control reads the encoder alone, so the two sample apart there.
        return ReplayRequest(
            seq_len=self.seq_len, batch_size=self.sequences, next_obs=True, allow_episode_end=True, min_len=1
        )

    def build_head(self, policy: TaskPolicy) -> nn.Module:
        target = copy.deepcopy(task_conv_trunk(self.name, policy.encoder))
        with th.no_grad():
            sample = th.as_tensor(policy.observation_space.sample()[None], device=policy.device)
            maps = target(policy.preprocess(sample))
        if maps.dim() != 4:
            raise ConfigError(
                f"feature_control needs conv feature maps [N, K, h, w], the encoder's trunk gives {tuple(maps.shape)}"
            )
        return FeatureControlHead(policy.features_dim, maps.shape[1], int(policy.action_space.n), target, self.hidden)

    def pseudo_rewards(self, policy: TaskPolicy, head: FeatureControlHead, batch: ReplayBatch) -> th.Tensor:
        """[B, T, K] pseudo-rewards from the target trunk (no gradient)."""
        obs = batch.obs
        with th.no_grad():
            maps = head.target(policy.preprocess(obs.flatten(0, 1)))
            return feature_control_rewards(maps.unflatten(0, obs.shape[:2]))

    def loss(
        self, policy: TaskPolicy, head: FeatureControlHead, batch: ReplayBatch
    ) -> tuple[th.Tensor, Metrics]:
        rewards = self.pseudo_rewards(policy, head, batch)  # [B, T, K]
        features = policy.encode_sequences(batch)
        q = head(features.flatten(0, 1)).unflatten(0, features.shape[:2])  # [B, T+1, K, A]
        q = q.transpose(2, 3)  # [B, T+1, A, K]: actions on dim 2 as n_step_q_loss expects
        loss, _, _ = n_step_q_loss(q, batch.actions, rewards, batch.dones, self.gamma, batch.mask)
        # Counted in optimizer steps: a batch reused over k steps (aux_every) stands for k of them, so the
        # target moves as k EMA steps toward the same online trunk, 1 - (1 - tau)^k, not one.
        before = int(head.calls)
        head.calls += self.steps_per_batch
        due = int(head.calls) // self.target_update_interval - before // self.target_update_interval
        if due:
            update_target(head.target, task_conv_trunk(self.name, policy.encoder), 1.0 - (1.0 - self.tau) ** due)
        metrics = {
            "mean_max_q": masked_mean(q[:, :-1].detach().max(dim=2).values, batch.mask),
            "mean_pseudo_reward": masked_mean(rewards, batch.mask * (1 - batch.dones)),
        }
        return loss, metrics


__all__ = ["FeatureControl", "FeatureControlHead", "feature_control_rewards"]
