"""SB3's actor-critic policy, owning the heads of the auxiliary tasks.

The heads are submodules (``aux_heads``), so ``policy.parameters()``, the
optimizer, ``.to(device)``, ``save`` and ``load`` cover them with no extra code.
With no task the policy is exactly SB3's ``ActorCriticPolicy``.

The policy sits below the tasks: it knows them only through ``HeadSource``,
what it asks of a task (its name, its head, whether its weighting is learned).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from torch import nn

from rlaux.replay import ReplayBatch
from rlaux.weighting import Weighting


class HeadSource(Protocol):
    """What the policy needs of an auxiliary task (``rlaux.tasks.AuxTask`` provides it)."""

    @property
    def name(self) -> str:
        """The task's name, the key of its head in ``aux_heads``."""

    @property
    def weighting(self) -> Weighting:
        """How the task's loss is weighted; a ``learned`` weighting gets a log-variance parameter here."""

    def build_head(self, policy: AuxActorCriticPolicy) -> nn.Module | None:
        """The task's head on this policy's encoder, or ``None``."""


class AuxActorCriticPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` plus ``aux_heads``, one per auxiliary task that has a head.

    :param aux_tasks: the task objects; each builds its head from this policy.
    """

    def __init__(self, *args: Any, aux_tasks: Sequence[HeadSource] = (), **kwargs: Any) -> None:
        self.aux_tasks = list(aux_tasks)  # read by _build, which super().__init__ calls
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        if not self.aux_tasks:
            return
        # Heads are made after SB3's own modules and outside its RNG stream, so that
        # the RL part starts from the same weights and draws the same actions as SB3.
        with th.random.fork_rng(devices=[]):
            heads = {task.name: task.build_head(self) for task in self.aux_tasks}
            self.aux_heads = nn.ModuleDict({name: head for name, head in heads.items() if head is not None})
        learned = [t.name for t in self.aux_tasks if t.weighting.learned]
        if learned:  # log-variances of the ``uncertainty`` weighting, optimised with everything else
            self.aux_log_vars = nn.ParameterDict({name: nn.Parameter(th.zeros(())) for name in learned})
        # SB3 made its optimizer before the heads existed: make it again over all parameters.
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["aux_tasks"] = self.aux_tasks
        return data

    def aux_head(self, name: str) -> nn.Module | None:
        heads = getattr(self, "aux_heads", None)
        return heads[name] if heads is not None and name in heads else None

    @property
    def encoder(self) -> nn.Module:
        """The shared encoder the auxiliary heads sit on (the actor's features extractor)."""
        return self.pi_features_extractor

    def preprocess(self, obs: th.Tensor) -> th.Tensor:
        """Raw observations -> the float input of the encoder (uint8 images scaled to [0, 1]), as SB3 does."""
        return preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images).float()

    def encode(self, obs: th.Tensor) -> th.Tensor:
        """Encoder features [N, features_dim] of raw observations [N, *obs_shape]."""
        return BasePolicy.extract_features(self, obs, self.pi_features_extractor)

    def encode_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """Features [B, T, features_dim] of every observation of ``batch``, computed once per batch."""

        def compute() -> th.Tensor:
            obs = batch.obs
            return self.encode(obs.flatten(0, 1)).unflatten(0, obs.shape[:2])

        return batch.memo("features", compute)

    def values_of_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """The value head's output [B, T] for every observation of ``batch``."""
        if self.share_features_extractor:
            features = self.encode_sequences(batch).flatten(0, 1)
        else:
            features = BasePolicy.extract_features(self, batch.obs.flatten(0, 1), self.vf_features_extractor)
        values = self.value_net(self.mlp_extractor.forward_critic(features))
        return values.view(batch.obs.shape[:2])


class AuxActorCriticCnnPolicy(AuxActorCriticPolicy):
    """``CnnPolicy`` with auxiliary heads (NatureCNN encoder by default)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(*args, **kwargs)


class AuxMultiInputActorCriticPolicy(AuxActorCriticPolicy):
    """``MultiInputPolicy`` with auxiliary heads (tasks that need replay do not support Dict spaces)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", CombinedExtractor)
        super().__init__(*args, **kwargs)
