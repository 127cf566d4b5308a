"""CURL: contrastive unsupervised representations (Laskin et al. 2020, arXiv:2004.04136).

Two random shifts of the same observation (``rlaux.augment.random_shift``; pad 4
for 84x84 frames, 1 for small ones) give a query and a key. The query goes
through the online encoder and a projection to a small latent, FC -> LayerNorm
(``latent_dim``, 50 as CURL's ``encoder_feature_dim``): z_q [B, D], with
gradient. The key goes through the momentum copies of both: z_k [B, D], no
gradient. The similarity is bilinear, logits = z_q W z_k^T [B, B]; the other
observations of the batch are the negatives; the loss is the mean over the B
queries of the cross-entropy of each row against its own key (InfoNCE,
``functional.info_nce_loss``, which subtracts the row maximum for stability as
CURL's code does).

Scale at initialisation: CURL's code initialises W with ``torch.rand`` (entries
uniform in [0, 1)). On LayerNorm latents of size 50 that gives logits of
standard deviation 8 to 13 and a cross-entropy of 12 to 16 at initialisation on
MinAtar and Atari batches of 32, against log 32 = 3.47 (with no projection, on
NatureCNN's 512 ReLU features, about 130). Here W starts as the identity divided
by D, so the logits start as z_q . z_k / D, within [-1, 1] (a LayerNorm latent
has squared norm about D): the loss starts at about log B and the encoder gets a
gradient from the first step. W is learned from there.

Momentum encoder: deep copies of the policy's whole encoder (``key_encoder``)
and of the projection (``key_projection``) living in the head (so saved and
loaded with the policy) with ``requires_grad=False``, updated by EMA,
key <- (1 - tau) key + tau online, at every loss computation (optimizer step),
before the keys are computed. ``tau`` defaults to 0.005 per optimizer step
(CURL: 0.05 every second update).
"""

from __future__ import annotations

import copy

import torch as th
from torch import nn

from rlaux.augment import auto_pad, random_shift
from rlaux.errors import ConfigError
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask, Metrics, TaskPolicy, update_target
from rlaux.tasks.functional import info_nce_loss


class CURLHead(nn.Module):
    """The projection to the latent, the bilinear matrix W [D, D] and the momentum copies.

    ``projection``: encoder features [B, F] -> Linear -> LayerNorm -> latents [B, D].
    ``key_encoder`` and ``key_projection``: EMA copies of the policy's encoder and of
    ``projection``, without gradient.
    """

    def __init__(self, features_dim: int, latent_dim: int, key_encoder: nn.Module) -> None:
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(features_dim, latent_dim), nn.LayerNorm(latent_dim))
        self.W = nn.Parameter(th.eye(latent_dim) / latent_dim)
        self.key_encoder = key_encoder.requires_grad_(False)
        self.key_projection = copy.deepcopy(self.projection).requires_grad_(False)

    def logits(self, queries: th.Tensor, keys: th.Tensor) -> th.Tensor:
        """z_q W z_k^T: query latents [B, D], key latents [B, D] -> [B, B]."""
        return queries @ self.W @ keys.T


class CURL(AuxTask):
    """``curl``: InfoNCE between two random shifts of each replayed observation.

    :param batch_size: observations per update (each one's negatives are the other B - 1).
    :param tau: momentum encoder EMA rate per optimizer step.
    :param pad: shift amplitude in pixels; ``None``: 4 for frames of 64 px or more, else 1.
    :param latent_dim: D, the size of the projected latents z (CURL: 50).
    """

    name = "curl"
    requires_image = True
    default_weights = {"ppo": 1.0, "a2c": 1.0}

    def __init__(
        self,
        weight: float | None = None,
        batch_size: int = 32,
        tau: float = 0.005,
        pad: int | None = None,
        latent_dim: int = 50,
    ) -> None:
        super().__init__(weight)
        if batch_size < 2:
            raise ConfigError(f"curl needs batch_size >= 2 (the other samples are the negatives), got {batch_size}")
        if not 0.0 <= tau <= 1.0 or (pad is not None and pad < 0):
            raise ConfigError(f"curl needs tau in [0, 1] and pad >= 0, got tau={tau}, pad={pad}")
        if latent_dim < 1:
            raise ConfigError(f"curl needs latent_dim >= 1, got {latent_dim}")
        self.batch_size = batch_size
        self.tau = tau
        self.pad = pad
        self.latent_dim = latent_dim

    def replay_request(self) -> ReplayRequest:
        return ReplayRequest(seq_len=1, batch_size=self.batch_size)

    def build_head(self, policy: TaskPolicy) -> CURLHead:
        return CURLHead(policy.features_dim, self.latent_dim, copy.deepcopy(policy.encoder))

    def loss(self, policy: TaskPolicy, head: CURLHead, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        update_target(head.key_encoder, policy.encoder, self.tau)  # the momentum encoder
        update_target(head.key_projection, head.projection, self.tau)
        obs = batch.obs[:, 0]  # [B, C, H, W]
        pad = self.pad if self.pad is not None else auto_pad(*obs.shape[-2:])
        queries = head.projection(policy.encode(random_shift(obs, pad)))  # [B, D]
        with th.no_grad():
            keys = head.key_projection(head.key_encoder(policy.preprocess(random_shift(obs, pad))))  # [B, D]
        loss, accuracy = info_nce_loss(head.logits(queries, keys))
        return loss, {"accuracy": accuracy.detach()}


__all__ = ["CURL", "CURLHead"]
