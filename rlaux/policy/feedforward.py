"""SB3's actor-critic policy owning the heads of the auxiliary tasks (the policy composes the tasks: it builds
each one's head on its encoder; a task knows the policy only as ``rlaux.tasks.base.TaskPolicy``)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import CombinedExtractor, NatureCNN
from torch import nn

from rlaux.policy.encoder import resolve_encoder_dtype
from rlaux.replay import ReplayBatch
from rlaux.tasks.base import AuxTask


class AuxActorCriticPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` plus ``aux_heads``, one per auxiliary task that has a head.

    :param aux_tasks: the task objects; each builds its head from this policy.
    :param encoder_dtype: ``"float32"`` (SB3's), ``"bfloat16"``: the features extractor runs under
        ``torch.autocast`` to bfloat16 (mixed precision: weights, optimizer state and everything after
        the features stay float32; the features are cast back to float32), or ``"auto"``: bfloat16 where
        the device computes it natively (:func:`fast_bfloat16`), else float32. The resolved value is in
        :attr:`encoder_dtype`.
    """

    def __init__(self, *args: Any, aux_tasks: Sequence[AuxTask] = (), encoder_dtype: str = "float32",
                 **kwargs: Any) -> None:
        self.aux_tasks = list(aux_tasks)  # read by _build, which super().__init__ calls
        resolve_encoder_dtype(encoder_dtype, th.device("cpu"))  # a bad name fails here
        self._requested_encoder_dtype = encoder_dtype
        self._resolved_encoder_dtype: tuple[th.device, str] | None = None
        super().__init__(*args, **kwargs)

    @property
    def encoder_dtype(self) -> str:
        """``"float32"`` or ``"bfloat16"``: the requested precision, ``"auto"`` resolved for the policy's device."""
        device = self.device
        if self._resolved_encoder_dtype is None or self._resolved_encoder_dtype[0] != device:
            self._resolved_encoder_dtype = (device, resolve_encoder_dtype(self._requested_encoder_dtype, device))
        return self._resolved_encoder_dtype[1]

    def encoder_precision(self) -> AbstractContextManager:
        """The context the encoder runs in: bfloat16 autocast, or nothing for float32."""
        if self.encoder_dtype == "float32":
            return nullcontext()
        return th.autocast(self.device.type, dtype=th.bfloat16)

    def extract_features(self, obs: Any, features_extractor: nn.Module | None = None) -> Any:
        """SB3's feature extraction in :meth:`encoder_precision`, returned as float32 (a no-op for float32)."""
        with self.encoder_precision():
            features = super().extract_features(obs, features_extractor)
        if isinstance(features, tuple):
            return tuple(f.float() for f in features)
        return features.float()

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
        data["encoder_dtype"] = self._requested_encoder_dtype
        return data

    def aux_head(self, name: str) -> nn.Module | None:
        heads = getattr(self, "aux_heads", None)
        return heads[name] if heads is not None and name in heads else None

    #: Whether an LSTM sits between the encoder and the actor/critic heads.
    recurrent = False

    @property
    def core_dim(self) -> int:
        """Width of what the agent's heads read (``core_sequences``): the encoder's features here."""
        return self.features_dim

    @property
    def encoder(self) -> nn.Module:
        """The shared encoder the auxiliary heads sit on (the actor's features extractor)."""
        return self.pi_features_extractor

    def preprocess(self, obs: th.Tensor) -> th.Tensor:
        """Raw observations -> the float input of the encoder (uint8 images scaled to [0, 1]), as SB3 does."""
        return preprocess_obs(obs, self.observation_space, normalize_images=self.normalize_images).float()

    def encode(self, obs: th.Tensor) -> th.Tensor:
        """Encoder features [N, features_dim] of raw observations [N, *obs_shape] (float32)."""
        return self._features(obs, self.pi_features_extractor)

    def _features(self, obs: th.Tensor, extractor: nn.Module) -> th.Tensor:
        """One extractor's features of raw observations, in :meth:`encoder_precision`, returned as float32."""
        with self.encoder_precision():
            features = BasePolicy.extract_features(self, obs, extractor)
        return features.float()

    def encode_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """Features [B, T, features_dim] of every observation of ``batch``, computed once per batch."""

        def compute() -> th.Tensor:
            obs = batch.obs
            return self.encode(obs.flatten(0, 1)).unflatten(0, obs.shape[:2])

        return batch.memo("features", compute)

    def core_sequences(self, batch: ReplayBatch) -> th.Tensor:
        """What the actor's head reads [B, T, core_dim] for every observation of ``batch``: the encoder features."""
        return self.encode_sequences(batch)

    def values_of_sequences(self, batch: ReplayBatch, through_shared_lstm: bool = False) -> th.Tensor:
        """The value head's output [B, T] for every observation of ``batch`` (``through_shared_lstm``: for
        recurrent policies only; a feed-forward policy has no LSTM)."""
        if self.share_features_extractor:
            features = self.encode_sequences(batch).flatten(0, 1)
        else:
            features = self._features(batch.obs.flatten(0, 1), self.vf_features_extractor)
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


# ------------------------------------------------------------------------------ recurrent


__all__ = ["AuxActorCriticCnnPolicy", "AuxActorCriticPolicy", "AuxMultiInputActorCriticPolicy"]
