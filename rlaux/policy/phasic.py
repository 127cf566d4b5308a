"""The policy of Phasic Policy Gradient (``AuxPPG``): SB3's actor-critic with an auxiliary value head on the
policy's latent, and PPG's three architectures (Cobbe et al. 2021; the authors' ``PhasicValueModel``).

- ``dual``: separate policy and value networks (SB3's ``share_features_extractor=False``); the auxiliary value
  head sits on the policy network, the only place value knowledge can reach the policy.
- ``detach``: one encoder; the critic reads it detached, so the value loss never trains the encoder (it trains
  the critic's own layers and head).
- ``shared``: one encoder trained by both losses (PPO's usual layout, with the auxiliary phase added).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.torch_layers import CombinedExtractor, MlpExtractor, NatureCNN
from torch import nn

from rlaux.policy.feedforward import AuxActorCriticPolicy


class DetachedCriticMlpExtractor(MlpExtractor):
    """SB3's ``MlpExtractor`` whose critic reads the shared features detached (PPG's ``detach``): the state
    dict and layers are SB3's; only the critic's input stops the gradient."""

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.value_net(features.detach())


class PhasicActorCriticPolicy(AuxActorCriticPolicy):
    """``AuxActorCriticPolicy`` plus ``aux_value_net``, PPG's auxiliary value head on the actor's latent.

    :param detach_critic: the critic reads the shared encoder detached (PPG's ``detach`` architecture).

    The head is made after SB3's modules and outside SB3's RNG stream, so the actor and critic start from the
    weights PPO's policy would have; it is initialised as SB3 initialises the value head (orthogonal, gain 1,
    zero bias) where ``ortho_init`` is on. The authors' code uses a row-normalised linear layer of norm 0.1 for
    all three heads; rlaux keeps SB3's initialisation so that PPG and PPO differ only by PPG's phases.
    """

    def __init__(self, *args: Any, detach_critic: bool = False, **kwargs: Any) -> None:
        self.detach_critic = detach_critic  # read by _build_mlp_extractor, which super().__init__ calls
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        if not self.detach_critic:
            super()._build_mlp_extractor()
            return
        self.mlp_extractor = DetachedCriticMlpExtractor(
            self.features_dim, net_arch=self.net_arch, activation_fn=self.activation_fn, device=self.device)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        with th.random.fork_rng(devices=[]):
            self.aux_value_net = nn.Linear(self.mlp_extractor.latent_dim_pi, 1)
            if self.ortho_init:
                self.init_weights(self.aux_value_net, gain=1.0)
        self.aux_value_net.to(self.device)
        # SB3 (and the task heads) made the optimizer before this head existed: make it again over all parameters.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["detach_critic"] = self.detach_critic
        return data

    def phasic_forward(self, obs: th.Tensor) -> tuple[Distribution, th.Tensor, th.Tensor]:
        """For raw observations [N, *obs_shape]: the action distribution, the auxiliary value [N] (the policy
        network's) and the value [N] (the critic's), in one pass of each encoder."""
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        distribution = self._get_action_dist_from_latent(latent_pi)
        return distribution, self.aux_value_net(latent_pi).flatten(), self.value_net(latent_vf).flatten()


class PhasicActorCriticCnnPolicy(PhasicActorCriticPolicy):
    """PPG's ``CnnPolicy`` (NatureCNN encoder by default)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(*args, **kwargs)


class PhasicMultiInputActorCriticPolicy(PhasicActorCriticPolicy):
    """PPG's ``MultiInputPolicy``; PPG's store keeps Box observations only, so ``AuxPPG`` refuses Dict spaces."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(*args, **kwargs)


def distribution_parameters(distribution: Distribution) -> th.Tensor:
    """The parameters that fix an SB3 action distribution, one row per state [N, P] (Categorical: the logits;
    diagonal Gaussian: the means, then the log standard deviations), to keep as the pre-phase policy."""
    inner = distribution.distribution
    if isinstance(inner, th.distributions.Categorical):
        return inner.logits
    if isinstance(inner, th.distributions.Normal):
        return th.cat([inner.loc, inner.scale.log().expand_as(inner.loc)], dim=1)
    raise TypeError(f"no stored form for {type(distribution).__name__}")


def kl_from_parameters(parameters: th.Tensor, distribution: Distribution) -> th.Tensor:
    """KL(old || new) per state [N]: ``old`` from :func:`distribution_parameters`, ``new`` the policy's now."""
    inner = distribution.distribution
    if isinstance(inner, th.distributions.Categorical):
        old: th.distributions.Distribution = th.distributions.Categorical(logits=parameters)
        return th.distributions.kl_divergence(old, inner)
    mean, log_std = parameters.chunk(2, dim=1)
    old = th.distributions.Normal(mean, log_std.exp())
    return th.distributions.kl_divergence(old, inner).sum(dim=1)


def parameter_width(action_space: Any) -> int:
    """Width P of :func:`distribution_parameters` for an action space (Discrete: n; Box: 2 x dims)."""
    from gymnasium import spaces

    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    return 2 * int(np.prod(action_space.shape))


__all__ = ["DetachedCriticMlpExtractor", "PhasicActorCriticCnnPolicy", "PhasicActorCriticPolicy",
           "PhasicMultiInputActorCriticPolicy", "distribution_parameters", "kl_from_parameters", "parameter_width"]
