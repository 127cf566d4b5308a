"""The pure maths the auxiliary tasks share: returns, Q-learning, similarity losses.

Functions of tensors only (no task, policy or replay), in the style of rlax:
each docstring gives the shapes. Task modules import from here and from
``rlaux.tasks.base``, never from one another.

Shape letters: B sequences (or samples), T steps, A actions, D feature size,
E any trailing dims (e.g. the cells of pixel control's grid), K prediction steps.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F


def n_step_returns(rewards: th.Tensor, dones: th.Tensor, bootstrap: th.Tensor, gamma: float) -> th.Tensor:
    """Discounted n-step returns, computed backwards from the last step.

    ``rewards`` [T, B, *E], ``dones`` [T, B] or [T, B, *E] (1 where the episode ended at step t;
    broadcast over E), ``bootstrap`` [B, *E] (the value after the last step). Returns
    [T, B, *E] with ``R_t = r_t + gamma * (1 - done_t) * R_{t+1}`` and ``R_T = bootstrap``.
    """
    if rewards.dim() < 2:
        raise ValueError(f"rewards must be [T, B, ...], got shape {tuple(rewards.shape)}")
    if bootstrap.shape != rewards.shape[1:]:
        raise ValueError(
            f"bootstrap {tuple(bootstrap.shape)} must have the shape of rewards[0] {tuple(rewards.shape[1:])}"
        )
    if dones.shape[:2] != rewards.shape[:2] or dones.dim() > rewards.dim():
        raise ValueError(
            f"dones {tuple(dones.shape)} must be [T, B] or [T, B, ...] like rewards {tuple(rewards.shape)}"
        )
    not_done = 1.0 - dones.to(rewards.dtype)
    not_done = not_done.reshape(*not_done.shape, *([1] * (rewards.dim() - not_done.dim())))
    returns = []
    ret = bootstrap.to(rewards.dtype)
    for t in range(rewards.shape[0] - 1, -1, -1):
        ret = rewards[t] + gamma * not_done[t] * ret
        returns.append(ret)
    returns.reverse()
    return th.stack(returns)


def n_step_q_loss(
    q: th.Tensor, actions: th.Tensor, rewards: th.Tensor, dones: th.Tensor, gamma: float, mask: th.Tensor | None = None
) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """n-step Q-learning over sequences, one control problem per element of E.

    ``q`` [B, T+1, A, *E] (Q of every observation, the last one bootstraps),
    ``actions`` [B, T] (integer), ``rewards`` [B, T, *E] (the reward of each transition),
    ``dones`` [B, T] (only the last step may be 1), ``mask`` [B, T] (1: a step to learn from;
    default all). Target for Q(s_t, a_t): the n-step return bootstrapped with
    max_a Q(s_T, a) (detached).

    A sequence whose last step ends its episode has no reward for that step when the
    reward is computed from the next observation (the replay keeps no terminal
    observation), so that step is dropped and the earlier ones bootstrap from
    max_a Q(s_{T-1}) instead: nothing crosses the episode end.

    Returns (loss, q_taken [B, T, *E], targets [B, T, *E]); the loss is 0.5 * squared TD
    error summed over E and averaged over the steps to learn from.
    """
    b, t1, _ = q.shape[:3]
    extra = q.shape[3:]
    mask = th.ones(dones.shape, device=q.device) if mask is None else mask
    max_q = q.detach().max(dim=2).values  # [B, T+1, *E]
    ended = dones[:, -1].bool()
    if ended.any():
        rewards = rewards.clone()
        rewards[ended, -1] = max_q[ended, -2]  # R_{T-1} := max_a Q(s_{T-1}, a); done cuts s_T
        mask = mask.clone()
        mask[ended, -1] = 0.0
    index = actions.long().reshape(b, t1 - 1, 1, *([1] * len(extra))).expand(b, t1 - 1, 1, *extra)
    q_taken = q[:, :-1].gather(2, index).squeeze(2)  # [B, T, *E]
    targets = n_step_returns(rewards.transpose(0, 1), dones.transpose(0, 1), max_q[:, -1], gamma).transpose(0, 1)
    td = targets - q_taken
    per_step = 0.5 * td.pow(2).flatten(2).sum(dim=2)  # [B, T]
    loss = (per_step * mask).sum() / mask.sum().clamp(min=1.0)
    return loss, q_taken, targets


def dueling(value: th.Tensor, advantage: th.Tensor, dim: int = 1) -> th.Tensor:
    """Dueling combination Q = V + A - mean_a A, the actions along ``dim``.

    ``value`` has size 1 along ``dim`` (e.g. [N, 1, *E]), ``advantage`` size A there
    (e.g. [N, A, *E]); returns Q with the shape of ``advantage``.
    """
    return value + advantage - advantage.mean(dim=dim, keepdim=True)


def masked_mean(x: th.Tensor, mask: th.Tensor) -> th.Tensor:
    """Mean of ``x`` [B, T, *E] over the steps where ``mask`` [B, T] is 1 and all their elements.

    Scalar; 0 when the mask is all 0.
    """
    mask = mask.reshape(*mask.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def cosine_prediction_loss(
    predictions: th.Tensor, targets: th.Tensor, mask: th.Tensor | None = None
) -> tuple[th.Tensor, th.Tensor]:
    """SPR's loss: ``predictions``, ``targets`` [B, K, D]; ``mask`` [B, K] (1: the step counts).

    Returns the sum over k of the (masked) mean over b of 2 - 2 cos(prediction, target), and
    the mean cosine over the unmasked (b, k) (detached; 0 when all are masked).
    """
    cos = (F.normalize(predictions, dim=-1) * F.normalize(targets, dim=-1)).sum(-1)  # [B, K]
    if mask is None:
        mask = th.ones_like(cos)
    count = mask.sum(0)
    per_step_loss = ((2.0 - 2.0 * cos) * mask).sum(0) / count.clamp(min=1.0)
    mean_cos = (cos.detach() * mask).sum() / mask.sum().clamp(min=1.0)
    return per_step_loss.sum(), mean_cos


def info_nce_loss(logits: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """InfoNCE (contrastive cross-entropy) of ``logits`` [B, B], the positives on the diagonal.

    Row i scores query i against every key; its own key i is the positive, the other B - 1 are
    negatives. The logits are shifted by their (detached) row maximum for stability, which leaves
    the loss unchanged. Returns (mean cross-entropy, accuracy: share of rows whose maximum is on
    the diagonal), both scalars.
    """
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    labels = th.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels), (logits.argmax(dim=1) == labels).float().mean()


__all__ = [
    "cosine_prediction_loss",
    "dueling",
    "info_nce_loss",
    "masked_mean",
    "n_step_q_loss",
    "n_step_returns",
]
