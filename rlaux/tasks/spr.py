"""Self-predictive representations, SPR (Schwarzer et al. 2021, arXiv:2007.05929).

From the online latent of s_t, a transition model rolls the latent forward K
steps with the actions taken (K = 5 in the paper); each predicted latent goes
through the online projection g and a predictor q; the target for step k is
the projection of s_{t+k} by a *target* encoder and projection, without
gradient. Loss, summed over the K steps and averaged over the sequences:

    sum_{k=1..K}  2 - 2 cos(q(g(z_hat_{t+k})), g_target(e_target(s_{t+k})))

Latent and transition model, chosen (``transition="auto"``):

* ``"conv"`` (as SPR): SB3 encoders (NatureCNN, MinAtarCNN) end in a flat
  linear layer, so the spatial latent is the encoder's conv feature map
  (``rlaux.networks.conv_trunk``), [N, C, h, w]; the transition model is two
  3x3 convolutions (``hidden`` channels, then C, ReLU after each, padding 1)
  over the latent with the action appended as constant planes (one-hot for
  ``Discrete``, the action vector for ``Box``). The online projection g is *the
  rest of the encoder* (flatten + its linear layer, shared with the policy, as
  SPR uses the first layer of its Q head), the predictor q a linear layer. The
  target is a copy of the conv trunk and of that linear layer.
  SPR's per-sample min-max renormalisation of the latent is left out: the
  latent and the transition model both end in a ReLU.
* ``"mlp"`` (the fallback, for encoders without a known conv trunk, e.g.
  ``MlpPolicy``): the latent is the encoder's flat features; the transition
  model is an MLP on [features, action]; g is a new linear layer of the head.
  The target is a copy of the whole encoder and of g.

Target: with augmentation, the paper's target network is the online network
(tau = 1, a copy each step); without it, an EMA with tau = 0.01. ``tau=None``
picks between the two; it is applied at every loss computation (each
optimizer step), *before* the targets are computed, so that tau = 1 makes the
target exactly the current online network with a stop-gradient. The target
modules are submodules of the head (saved and loaded with the policy) with
``requires_grad=False``: no gradient reaches them and the optimizer never moves
them.

Augmentation: random shift (pad 4 for 84x84 frames, 1 for small frames such as
MinAtar's; ``rlaux.augment``), drawn independently for the online input s_t and
for each target observation; on by default for image observations.

Sequences: K transitions and the observation after the last one, all within one
episode except that the last transition may end it (``allow_episode_end``); a
prediction whose target lies beyond an episode end is masked out.
"""

from __future__ import annotations

import copy

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from rlaux.augment import auto_pad, random_shift
from rlaux.errors import ConfigError
from rlaux.networks import conv_trunk
from rlaux.replay import ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask, Metrics, TaskPolicy, is_image, mlp, update_target
from rlaux.tasks.functional import cosine_prediction_loss

TRANSITIONS = ("auto", "conv", "mlp")


# ----------------------------------------------------------------------- pure functions


def valid_after_dones(dones: th.Tensor) -> th.Tensor:
    """``dones`` [B, K] -> [B, K]: 1 where the target of prediction k+1 (obs k+1) is in s_0's episode."""
    return th.cumprod(1.0 - dones.float(), dim=1)


def action_vector(actions: th.Tensor, action_space: spaces.Space) -> th.Tensor:
    """Actions [N] (Discrete) or [N, *shape] (Box) -> float [N, A]: one-hot or flattened."""
    if isinstance(action_space, spaces.Discrete):
        return F.one_hot(actions.long().view(-1), int(action_space.n)).float()
    return actions.float().flatten(1)


def action_dim(action_space: spaces.Space) -> int:
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.Box):
        return int(th.tensor(action_space.shape).prod())
    raise ConfigError(f"the action space {action_space} is neither Discrete nor Box")


def split_encoder(encoder: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(conv trunk -> [N, C, h, w], rest: flatten + linear -> [N, F]) of a known encoder, else None.

    The modules are the encoder's own (shared parameters), in new ``nn.Sequential`` wrappers.
    """
    try:
        trunk = conv_trunk(encoder)
    except TypeError:
        return None
    linear = getattr(encoder, "linear", None)
    if not isinstance(linear, nn.Module):
        return None
    return trunk, nn.Sequential(nn.Flatten(), linear)


# -------------------------------------------------------------------------------- head


class SPRHead(nn.Module):
    """Transition model, predictor and the target networks of SPR.

    ``mode`` "conv": ``transition`` maps [N, C + A, h, w] -> [N, C, h, w]; ``target_trunk`` and
    ``target_rest`` copy the encoder's conv trunk and its flatten + linear.
    ``mode`` "mlp": ``transition`` maps [N, F + A] -> [N, F]; ``projection`` is g;
    ``target_trunk`` copies the whole encoder, ``target_rest`` copies g.
    """

    def __init__(
        self,
        mode: str,
        transition: nn.Module,
        predictor: nn.Module,
        target_trunk: nn.Module,
        target_rest: nn.Module,
        projection: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.transition = transition
        self.predictor = predictor
        self.projection = projection
        self.target_trunk = target_trunk.requires_grad_(False)
        self.target_rest = target_rest.requires_grad_(False)

    def step(self, latent: th.Tensor, action: th.Tensor) -> th.Tensor:
        """One transition: latent [N, C, h, w] or [N, F], action [N, A] float -> next latent."""
        if self.mode == "conv":
            planes = action[:, :, None, None].expand(-1, -1, *latent.shape[-2:])
            return self.transition(th.cat([latent, planes], dim=1))
        return self.transition(th.cat([latent, action], dim=1))

    def online_parts(self, policy: TaskPolicy) -> tuple[nn.Module, nn.Module]:
        """(trunk, rest) of the online network, matching ``target_trunk``/``target_rest``."""
        if self.mode == "conv":
            parts = split_encoder(policy.encoder)
            assert parts is not None
            return parts
        return policy.encoder, self.projection

    def update_target(self, policy: TaskPolicy, tau: float) -> None:
        """Move the target trunk and rest toward the online ones by ``tau`` (1: copy them)."""
        trunk, rest = self.online_parts(policy)
        update_target(self.target_trunk, trunk, tau)
        update_target(self.target_rest, rest, tau)


# -------------------------------------------------------------------------------- task


class SPR(AuxTask):
    """``spr``: predict the target projections of K future observations from s_t and the actions.

    :param k: prediction steps K (paper: 5); sequences have K transitions, K + 1 observations.
    :param batch_size: sequences per update (paper: 32).
    :param augment: random-shift augmentation; ``None``: on for image observations.
    :param pad: shift amplitude in pixels; ``None``: 4 for frames of 64 px or more, else 1.
    :param tau: target update rate per optimizer step; ``None``: 1 (a copy) with augmentation,
        0.01 without, as in the paper.
    :param transition: "conv" (SPR's, on the conv feature map), "mlp" (on the flat features),
        or "auto" (conv when the encoder has a known conv trunk and a ``linear`` layer).
    :param hidden: channels (conv) or width (mlp) of the transition model's hidden layer.
    """

    name = "spr"
    # The paper weights SPR 5 against a DQN loss; against PPO/A2C losses (~0.01-1) a sum over
    # K = 5 steps of values in [0, 4] is already large: 1 until a sweep says otherwise.
    default_weights = {"ppo": 1.0, "a2c": 1.0}

    def __init__(
        self,
        weight: float | None = None,
        k: int = 5,
        batch_size: int = 32,
        augment: bool | None = None,
        pad: int | None = None,
        tau: float | None = None,
        transition: str = "auto",
        hidden: int = 64,
    ) -> None:
        super().__init__(weight)
        if k < 1 or batch_size < 1 or hidden < 1 or (pad is not None and pad < 0):
            raise ConfigError(
                f"spr needs k >= 1, batch_size >= 1, hidden >= 1, pad >= 0; got {k}, {batch_size}, {hidden}, {pad}"
            )
        if tau is not None and not 0.0 <= tau <= 1.0:
            raise ConfigError(f"spr tau must be in [0, 1], got {tau}")
        if transition not in TRANSITIONS:
            raise ConfigError(f"spr transition must be one of {', '.join(TRANSITIONS)}, got {transition!r}")
        self.k = k
        self.batch_size = batch_size
        self.augment = augment
        self.pad = pad
        self.tau = tau
        self.transition = transition
        self.hidden = hidden

    def uses_augmentation(self, observation_space: spaces.Space) -> bool:
        return is_image(observation_space) if self.augment is None else bool(self.augment)

    def target_tau(self, observation_space: spaces.Space) -> float:
        if self.tau is not None:
            return self.tau
        return 1.0 if self.uses_augmentation(observation_space) else 0.01

    def check(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        super().check(observation_space, action_space)
        action_dim(action_space)  # raises for other action spaces
        if self.augment and not is_image(observation_space):
            raise ConfigError(
                f"spr augmentation (random shift) needs image observations, got {observation_space}; pass augment=False"
            )

    def replay_request(self) -> ReplayRequest:
        return ReplayRequest(seq_len=self.k, batch_size=self.batch_size, next_obs=True, allow_episode_end=True)

    def build_head(self, policy: TaskPolicy) -> SPRHead:
        encoder, features_dim = policy.encoder, policy.features_dim
        n_act = action_dim(policy.action_space)
        parts = split_encoder(encoder) if is_image(policy.observation_space) else None
        mode = self.transition if self.transition != "auto" else ("conv" if parts is not None else "mlp")
        if mode == "conv":
            if parts is None:
                raise ConfigError(
                    f"spr transition='conv' needs an image encoder with a conv trunk and a `linear` layer, "
                    f"not {type(encoder).__name__}; use transition='mlp'"
                )
            trunk, rest = parts
            with th.no_grad():
                sample = th.as_tensor(policy.observation_space.sample()[None], device=policy.device)
                channels = trunk(policy.preprocess(sample)).shape[1]
            transition = nn.Sequential(
                nn.Conv2d(channels + n_act, self.hidden, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(self.hidden, channels, 3, padding=1),
                nn.ReLU(),
            )
            return SPRHead(
                mode, transition, nn.Linear(features_dim, features_dim), copy.deepcopy(trunk), copy.deepcopy(rest)
            )
        projection = nn.Linear(features_dim, features_dim)
        transition = mlp(features_dim + n_act, self.hidden, features_dim)
        return SPRHead(
            mode,
            transition,
            nn.Linear(features_dim, features_dim),
            copy.deepcopy(encoder),
            copy.deepcopy(projection),
            projection=projection,
        )

    def loss(self, policy: TaskPolicy, head: SPRHead, batch: ReplayBatch) -> tuple[th.Tensor, Metrics]:
        space = policy.observation_space
        head.update_target(policy, self.target_tau(space))
        obs = batch.obs  # [B, K+1, *obs_shape]
        b, n = obs.shape[:2]
        first, future = obs[:, 0], obs[:, 1:].flatten(0, 1)
        if self.uses_augmentation(space):
            pad = self.pad if self.pad is not None else auto_pad(*obs.shape[-2:])
            first, future = random_shift(first, pad), random_shift(future, pad)
        trunk, rest = head.online_parts(policy)
        latent = trunk(policy.preprocess(first))
        predictions = []
        for k in range(n - 1):
            latent = head.step(latent, action_vector(batch.actions[:, k], policy.action_space))
            predictions.append(head.predictor(rest(latent)))
        prediction = th.stack(predictions, dim=1)  # [B, K, F]
        with th.no_grad():
            target = head.target_rest(head.target_trunk(policy.preprocess(future))).unflatten(0, (b, n - 1))
        mask = valid_after_dones(batch.dones)
        loss, mean_cos = cosine_prediction_loss(prediction, target, mask)
        return loss, {"cosine": mean_cos, "valid_share": mask.mean()}


__all__ = [
    "SPR",
    "SPRHead",
    "action_vector",
    "split_encoder",
    "valid_after_dones",
]
