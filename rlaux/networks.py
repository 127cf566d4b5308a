"""Feature extractors (encoders) named in presets.

Presets name an encoder with a string (TOML has no classes):
``policy_kwargs = {features_extractor = "minatar_cnn"}``; :data:`FEATURE_EXTRACTORS`
maps those names to SB3 ``BaseFeaturesExtractor`` classes, and
:func:`sb3_policy_kwargs` turns such TOML-friendly policy kwargs into SB3's.

Every image encoder here exposes its convolutional trunk so that feature control
can read an intermediate feature map: :func:`conv_feature_maps` returns
``[B, C, H, W]`` for both :class:`MinAtarCNN` (its ``conv``) and SB3's
``NatureCNN`` (its ``cnn`` minus the final Flatten). :class:`SharedMLP` is the
encoder for vector observations (SB3's ``MlpPolicy`` only flattens them).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn

from rlaux.errors import ConfigError


class MinAtarCNN(BaseFeaturesExtractor):
    """The MinAtar paper's encoder (Young & Tian 2019) for small images such as 10x10.

    conv 16 3x3 stride 1 -> ReLU -> flatten -> Linear ``features_dim`` -> ReLU.

    Input: channel-first ``[B, C, H, W]`` float (SB3 divides uint8 images by 255
    before calling ``forward`` when ``normalize_images`` is True).

    Attributes:
        conv: ``nn.Sequential`` of the convolutional part; its output
            ``[B, n_filters, H-2, W-2]`` is the feature map feature control reads.
        linear: the fully connected part (Linear + ReLU) after flattening.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 128,
        n_filters: int = 16,
        kernel_size: int = 3,
        normalized_image: bool = False,
    ) -> None:
        assert isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 3, (
            f"MinAtarCNN needs a channel-first image Box [C, H, W], got {observation_space}"
        )
        super().__init__(observation_space, features_dim)
        assert is_image_space(observation_space, check_channels=False, normalized_image=normalized_image), (
            f"MinAtarCNN needs an image space (uint8 in [0, 255], channel-first), got {observation_space}; "
            "pass normalized_image=True for float images already in [0, 1]"
        )
        n_input_channels = observation_space.shape[0]
        self.conv = nn.Sequential(
            nn.Conv2d(n_input_channels, n_filters, kernel_size=kernel_size, stride=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            sample = torch.as_tensor(observation_space.sample()[None]).float()
            n_flatten = self.conv(sample).flatten(1).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.conv(observations).flatten(1))


#: ``activation_fn`` names a preset may use.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}


class SharedMLP(BaseFeaturesExtractor):
    """An MLP encoder for vector observations, shared by the actor, the critic and the auxiliary heads.

    flatten -> (Linear -> activation) per width in ``net_arch``; ``features_dim`` is the last width.
    SB3's ``MlpPolicy`` only flattens vector observations (``FlattenExtractor``, no parameters) and
    gives the actor and the critic separate MLPs, so auxiliary heads on its encoder shape nothing the
    policy uses; with this extractor they train the layers the actor and critic read. SB3 still puts
    its ``net_arch`` (by default two 64-unit layers each for actor and critic) on top;
    ``net_arch=[]`` in ``policy_kwargs`` leaves linear action and value layers on the shared trunk.

    Input: ``[B, *obs_shape]`` float (SB3 one-hot encodes discrete observations first) ->
    ``[B, net_arch[-1]]``. Preset name: ``"shared_mlp"``.

    :param net_arch: widths of the hidden layers (default two of 64, as SB3's MlpPolicy).
    :param activation_fn: an ``nn.Module`` class or a name of :data:`ACTIVATIONS` (default tanh, as SB3's).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        net_arch: Sequence[int] = (64, 64),
        activation_fn: str | type[nn.Module] = "tanh",
    ) -> None:
        widths = list(net_arch)
        if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            raise ConfigError(f"shared_mlp net_arch must be a non-empty list of positive integers, got {net_arch!r}")
        if isinstance(activation_fn, str):
            if activation_fn.lower() not in ACTIVATIONS:
                raise ConfigError(
                    f"unknown shared_mlp activation_fn {activation_fn!r}; valid choices: {', '.join(ACTIVATIONS)}"
                )
            activation_fn = ACTIVATIONS[activation_fn.lower()]
        super().__init__(observation_space, widths[-1])
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip([get_flattened_obs_dim(observation_space), *widths[:-1]], widths):
            layers += [nn.Linear(n_in, n_out), activation_fn()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.mlp(observations)


FEATURE_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "minatar_cnn": MinAtarCNN,
    "nature_cnn": NatureCNN,
    "shared_mlp": SharedMLP,
}


#: Policy kwargs that only rlaux's policies take (``rlaux.policy``); SB3's own policies reject them.
RLAUX_POLICY_KWARGS = ("encoder_dtype", "lstm_one_pass")


def without_rlaux_kwargs(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``policy_kwargs`` for SB3's own policies: :data:`RLAUX_POLICY_KWARGS` left out (e.g. to run a
    preset with vanilla SB3, as the benchmarks do)."""
    return {k: v for k, v in policy_kwargs.items() if k not in RLAUX_POLICY_KWARGS}


def sb3_policy_kwargs(toml_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` from TOML-friendly ones (an env preset's ``policy_kwargs``, or a
    ``policy_kwargs`` hyperparameter).

    ``features_extractor = "<name>"`` becomes ``features_extractor_class`` (names in
    :data:`FEATURE_EXTRACTORS`); ``activation_fn = "relu" | "tanh" | ...`` the torch.nn class;
    ``optimizer_class = "RMSpropTFLike" | "<torch.optim class>"`` the optimizer class. Classes
    given as such, and every other key, pass through unchanged. Errors are ConfigError, one line.
    """
    kwargs = copy.deepcopy(dict(toml_kwargs))
    name = kwargs.pop("features_extractor", None)
    if name is not None:
        if isinstance(name, str):
            key = name.lower()
            if key not in FEATURE_EXTRACTORS:
                raise ConfigError(
                    f"unknown features_extractor {name!r}; valid choices: {', '.join(sorted(FEATURE_EXTRACTORS))}"
                )
            kwargs["features_extractor_class"] = FEATURE_EXTRACTORS[key]
        else:
            kwargs["features_extractor_class"] = name
    activation = kwargs.get("activation_fn")
    if isinstance(activation, str):
        if activation.lower() not in ACTIVATIONS:
            raise ConfigError(f"unknown activation_fn {activation!r}; valid choices: {', '.join(ACTIVATIONS)}")
        kwargs["activation_fn"] = ACTIVATIONS[activation.lower()]
    optimizer = kwargs.get("optimizer_class")
    if isinstance(optimizer, str):
        if optimizer == "RMSpropTFLike":
            kwargs["optimizer_class"] = RMSpropTFLike
        elif isinstance(getattr(torch.optim, optimizer, None), type):
            kwargs["optimizer_class"] = getattr(torch.optim, optimizer)
        else:
            raise ConfigError(f"optimizer_class '{optimizer}' is neither RMSpropTFLike nor a torch.optim class")
    return kwargs


def conv_trunk(extractor: nn.Module) -> nn.Module:
    """The convolutional part of a known encoder, whose output is ``[B, C, H, W]``.

    MinAtarCNN: ``extractor.conv``. NatureCNN: ``extractor.cnn`` without its Flatten.
    Raises TypeError for encoders without a known conv trunk.
    """
    if isinstance(extractor, MinAtarCNN):
        return extractor.conv
    if isinstance(extractor, NatureCNN):
        layers = list(extractor.cnn)
        if layers and isinstance(layers[-1], nn.Flatten):
            layers = layers[:-1]
        return nn.Sequential(*layers)
    conv = getattr(extractor, "conv", None)
    if isinstance(conv, nn.Module):
        return conv
    raise TypeError(
        f"{type(extractor).__name__} has no known convolutional trunk; give it a `conv` attribute "
        "(an nn.Module returning [B, C, H, W])"
    )


def conv_feature_maps(extractor: nn.Module, observations: torch.Tensor) -> torch.Tensor:
    """Run the conv trunk of ``extractor`` on preprocessed observations: ``[B, C, H, W]``."""
    return conv_trunk(extractor)(observations)


__all__ = [
    "ACTIVATIONS",
    "FEATURE_EXTRACTORS",
    "MinAtarCNN",
    "NatureCNN",
    "SharedMLP",
    "conv_feature_maps",
    "conv_trunk",
    "sb3_policy_kwargs",
]
