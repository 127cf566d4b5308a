"""Feature extractors (encoders) named in presets.

Presets name an encoder with a string (TOML has no classes):
``policy_kwargs = {features_extractor = "minatar_cnn"}``; :data:`FEATURE_EXTRACTORS`
maps those names to SB3 ``BaseFeaturesExtractor`` classes (see
``rlaux.envs.sb3_policy_kwargs``).

Every encoder here exposes its convolutional trunk so that feature control can
read an intermediate feature map: :func:`conv_feature_maps` returns
``[B, C, H, W]`` for both :class:`MinAtarCNN` (its ``conv``) and SB3's
``NatureCNN`` (its ``cnn`` minus the final Flatten).
"""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn


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


FEATURE_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "minatar_cnn": MinAtarCNN,
    "nature_cnn": NatureCNN,
}


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


__all__ = ["FEATURE_EXTRACTORS", "MinAtarCNN", "NatureCNN", "conv_feature_maps", "conv_trunk"]
