"""How the RL and auxiliary gradients are joined: the rules of ``aux_clip`` (``GRADIENT_RULES``) and the clip they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch as th

from rlaux.errors import ConfigError


def clip_(grads: Sequence[th.Tensor], max_norm: float, norm: th.Tensor | None = None) -> th.Tensor:
    """Scale ``grads`` in place to total norm at most ``max_norm`` (torch's rule, ``clip_grad_norm_``);
    returns whether the clip changed them (a bool tensor: no host sync)."""
    norm = th.nn.utils.get_total_norm(grads) if norm is None else norm
    coef = th.clamp(max_norm / (norm + 1e-6), max=1.0)
    th._foreach_mul_(list(grads), coef)
    return coef < 1.0


class GradientMixer(Protocol):
    """How the RL and the auxiliary gradients are joined into the gradient the optimizer steps."""

    def mix(self, params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None], rl_norm: th.Tensor,
            max_grad_norm: float) -> th.Tensor:
        """Join them in place. ``params``' ``.grad`` hold the weighted auxiliary gradient (``None`` where
        it has none), ``rl_grads`` SB3's RL gradient of each parameter before any clip and ``rl_norm``
        its norm. Leaves the gradient to step in ``.grad``; returns whether a clip changed the
        auxiliary part (a bool tensor)."""


def _add(params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None]) -> None:
    """``.grad += rl`` for each parameter (``.grad`` may be None)."""
    for p, rl in zip(params, rl_grads, strict=True):
        if rl is not None:
            p.grad = rl if p.grad is None else rl.add_(p.grad)


def _add_clipped_rl(params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None], rl_norm: th.Tensor,
                    max_grad_norm: float) -> None:
    """``.grad += clip(g_rl)``: SB3's clip of the RL gradient, then added."""
    clip_([g for g in rl_grads if g is not None], max_grad_norm, rl_norm)
    _add(params, rl_grads)


def _clip_apart(params: Sequence[th.Tensor], head_ids: set[int], max_norm: float) -> th.Tensor:
    """Clip the ``.grad`` of the agent's parameters and of the auxiliary heads (``head_ids``) each to
    ``max_norm`` on its own; returns whether either clip bound."""
    clipped = th.tensor(False)
    for in_heads in (False, True):
        part = [p.grad for p in params if p.grad is not None and (id(p) in head_ids) == in_heads]
        if part:
            clipped = clipped | clip_(part, max_norm)
    return clipped


class ClipEach:
    """``clip(g_rl) + clip(g_aux)``: SB3's clipped RL gradient plus the auxiliary gradient clipped
    to ``max_grad_norm`` on its own (rlaux's rule until the decision record above replaced it)."""

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        aux = [p.grad for p in params if p.grad is not None]
        clipped = clip_(aux, max_grad_norm) if aux else th.tensor(False)
        _add_clipped_rl(params, rl_grads, rl_norm, max_grad_norm)
        return clipped


class ClipSum:
    """``clip(g_rl + g_aux)``: one clip of the whole gradient, as UNREAL and the PyTorch ports do."""

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        _add(params, rl_grads)
        return clip_([p.grad for p in params if p.grad is not None], max_grad_norm)


class ClipHeadsApart:
    """One clip of the sum on the agent's own parameters (shared encoder, policy and value nets),
    and a clip of the auxiliary heads' gradients on their own: a head's large gradient (pixel
    control sums 400 cells) no longer shrinks the RL and encoder step.

    :param head_ids: the ``id`` of each auxiliary head parameter.
    """

    def __init__(self, head_ids: set[int]) -> None:
        self.head_ids = head_ids

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        _add(params, rl_grads)
        return _clip_apart(params, self.head_ids, max_grad_norm)


class RLPlusAux:
    """``clip(g_rl) + g_aux``: SB3's RL step unchanged, plus the weighted auxiliary gradient, which
    scales with the weights; a safety clip at ``aux_max_grad_norm`` bounds the auxiliary gradient of
    the agent's parameters and, apart, of the heads (it should bind rarely: see ``aux/clip_fraction``).

    :param head_ids: the ``id`` of each auxiliary head parameter.
    """

    def __init__(self, head_ids: set[int], aux_max_grad_norm: float) -> None:
        self.head_ids = head_ids
        self.aux_max_grad_norm = aux_max_grad_norm

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        clipped = _clip_apart(params, self.head_ids, self.aux_max_grad_norm)
        _add_clipped_rl(params, rl_grads, rl_norm, max_grad_norm)
        return clipped


#: ``aux_clip`` names -> how they join the gradients (``make_mixer``).
GRADIENT_RULES = ("rl_plus_aux", "sum", "heads_apart", "each")


def make_mixer(rule: str, head_ids: set[int], aux_max_grad_norm: float) -> GradientMixer:
    """The mixer named ``rule`` (one of ``GRADIENT_RULES``)."""
    if rule == "rl_plus_aux":
        return RLPlusAux(head_ids, aux_max_grad_norm)
    if rule == "sum":
        return ClipSum()
    if rule == "heads_apart":
        return ClipHeadsApart(head_ids)
    if rule == "each":
        return ClipEach()
    raise ConfigError(f"unknown aux_clip rule {rule!r}; valid: {', '.join(GRADIENT_RULES)}")


# ----------------------------------------------------------------------------- metrics


__all__ = ["ClipEach", "ClipHeadsApart", "ClipSum", "GRADIENT_RULES", "GradientMixer", "RLPlusAux", "clip_", "make_mixer"]
