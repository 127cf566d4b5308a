"""CURL: contrastive unsupervised representations (Laskin et al. 2020, arXiv:2004.04136).

Two random shifts of the same observation (``rlaux.augment.random_shift``; pad 4
for 84x84 frames, 1 for small ones) give a query, encoded by the online encoder
(z_q, with gradient), and a key, encoded by a momentum encoder (z_k, no
gradient). The similarity is bilinear, logits = z_q W z_k^T [B, B]; the other
observations of the batch are the negatives; the loss is the cross-entropy of
each row against its own key (InfoNCE), logits shifted by their row maximum for
stability as in CURL's code.

Momentum encoder: a deep copy of the policy's whole encoder living in the head
(so saved and loaded with the policy) with ``requires_grad=False``, updated by
EMA, key <- (1 - tau) key + tau online, at every loss computation (optimizer
step), before the keys are computed. ``tau`` defaults to 0.005.
"""

from __future__ import annotations

import copy

import torch as th
from torch import nn

from rlaux.augment import auto_pad, random_shift
from rlaux.errors import ConfigError
from rlaux.policy import AuxActorCriticPolicy
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask, Metrics, update_target
from rlaux.tasks.functional import info_nce_loss


class CURLHead(nn.Module):
    """The bilinear matrix W [F, F] and the momentum encoder ``key_encoder``."""

    def __init__(self, features_dim: int, key_encoder: nn.Module) -> None:
        super().__init__()
        self.W = nn.Parameter(th.rand(features_dim, features_dim))  # as CURL's code
        self.key_encoder = key_encoder.requires_grad_(False)

    def logits(self, queries: th.Tensor, keys: th.Tensor) -> th.Tensor:
        """z_q W z_k^T: queries [B, F], keys [B, F] -> [B, B]."""
        return queries @ self.W @ keys.T


class CURL(AuxTask):
    """``curl``: InfoNCE between two random shifts of each replayed observation.

    :param batch_size: observations per update (each one's negatives are the other B - 1).
    :param tau: momentum encoder EMA rate per optimizer step.
    :param pad: shift amplitude in pixels; ``None``: 4 for frames of 64 px or more, else 1.
    """

    name = "curl"
    requires_image = True
    default_weights = {"ppo": 1.0, "a2c": 1.0}

    def __init__(
        self, weight: float | None = None, batch_size: int = 32, tau: float = 0.005, pad: int | None = None
    ) -> None:
        super().__init__(weight)
        if batch_size < 2:
            raise ConfigError(f"curl needs batch_size >= 2 (the other samples are the negatives), got {batch_size}")
        if not 0.0 <= tau <= 1.0 or (pad is not None and pad < 0):
            raise ConfigError(f"curl needs tau in [0, 1] and pad >= 0, got tau={tau}, pad={pad}")
        self.batch_size = batch_size
        self.tau = tau
        self.pad = pad

    def replay_request(self) -> ReplayRequest:
        return ReplayRequest(seq_len=1, batch_size=self.batch_size)

    def build_head(self, policy: AuxActorCriticPolicy) -> CURLHead:
        return CURLHead(policy.features_dim, copy.deepcopy(policy.encoder))

    def loss(self, policy: AuxActorCriticPolicy, head: CURLHead, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        update_target(head.key_encoder, policy.encoder, self.tau)  # the momentum encoder
        obs = batch.obs[:, 0]  # [B, C, H, W]
        pad = self.pad if self.pad is not None else auto_pad(*obs.shape[-2:])
        queries = policy.encode(random_shift(obs, pad))
        with th.no_grad():
            keys = head.key_encoder(policy.preprocess(random_shift(obs, pad)))
        loss, accuracy = info_nce_loss(head.logits(queries, keys))
        return loss, {"accuracy": accuracy.detach()}


__all__ = ["CURL", "CURLHead"]
