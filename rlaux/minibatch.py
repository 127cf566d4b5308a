"""The on-policy minibatch SB3 is training on, for tasks that need it (DrAC, deep supervision).

``PPO.train`` iterates ``rollout_buffer.get(batch_size)`` and takes one optimizer
step per yielded ``RolloutBufferSamples``; ``A2C.train`` takes one step on the
single ``get(None)`` batch (the whole rollout). The optimizer step pre-hook that
adds the auxiliary losses (``rlaux.objective``) runs inside that loop, so the
minibatch of the current step is the last one the buffer yielded. The buffer
classes here record it (``current_minibatch``) in ``_get_samples`` and forget
it at ``reset`` (the start of each rollout). Nothing else changes: the data, the
shuffling and the RNG draws are SB3's.

A task that sets ``uses_minibatch = True`` gets ``loss(policy, head, minibatch)``
with the ``RolloutBufferSamples`` (or ``DictRolloutBufferSamples``) of the
current optimizer step: ``observations`` (float tensors as SB3 stores them,
images in [0, 255]), ``actions`` (float; [N, 1] for Discrete), ``old_values``,
``old_log_prob``, ``advantages``, ``returns``, all on the policy's device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer

from rlaux.errors import ConfigError


class RecordsMinibatch:
    """Mixin for SB3 rollout buffers: keeps the last yielded minibatch in ``current_minibatch``."""

    current_minibatch: Any = None

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self.current_minibatch = None

    def _get_samples(self, *args: Any, **kwargs: Any) -> Any:
        samples = super()._get_samples(*args, **kwargs)  # type: ignore[misc]
        self.current_minibatch = samples
        return samples


class MinibatchRolloutBuffer(RecordsMinibatch, RolloutBuffer):
    """SB3's ``RolloutBuffer`` that records the minibatch it last yielded."""


class MinibatchDictRolloutBuffer(RecordsMinibatch, DictRolloutBuffer):
    """SB3's ``DictRolloutBuffer`` that records the minibatch it last yielded."""


def uses_minibatch(task: object) -> bool:
    return bool(getattr(task, "uses_minibatch", False))


def rollout_buffer_class_for(
    tasks: Iterable[object], user_class: type[RolloutBuffer] | None, observation_space: spaces.Space,
    readers: Iterable[str] = (),
) -> type[RolloutBuffer] | None:
    """The ``rollout_buffer_class`` an algorithm needs for ``tasks`` and other ``readers`` of the minibatch
    (named for the error, e.g. ``clip_range_vf_form='max'``).

    Nothing uses the minibatch: ``user_class`` unchanged (SB3's own choice when ``None``).
    Otherwise: ``user_class`` if it already records the minibatch (a subclass of
    ``RecordsMinibatch``); a recording buffer of the right kind when ``None``; ConfigError
    for any other user-supplied class (the task could not see the minibatch).
    """
    needy = [*(f"aux task {getattr(t, 'name', repr(t))}" for t in tasks if uses_minibatch(t)), *readers]
    if not needy:
        return user_class
    if user_class is None:
        return MinibatchDictRolloutBuffer if isinstance(observation_space, spaces.Dict) else MinibatchRolloutBuffer
    if issubclass(user_class, RecordsMinibatch):
        return user_class
    raise ConfigError(
        f"{' and '.join(needy)} {'needs' if len(needy) == 1 else 'need'} the training minibatch, which rollout_buffer_class="
        f"{user_class.__name__} does not record: drop rollout_buffer_class, or mix "
        "rlaux.minibatch.RecordsMinibatch into it (class MyBuffer(RecordsMinibatch, YourBuffer))"
    )


def batch_for(
    task: object,
    replay: Any,
    minibatch: Any,
    batches: dict,
    device: Any,
) -> Any:
    """The batch ``task.loss`` gets at this optimizer step, or ``None`` to skip the task.

    Minibatch tasks: ``minibatch`` (``None`` outside ``train()``). Replay tasks: a batch for
    their ``replay_request()`` from ``replay`` (``AuxReplayBuffer`` or ``None``), drawn once
    per distinct request and shared through ``batches`` (request -> ReplayBatch).
    """
    if uses_minibatch(task):
        return minibatch
    request = task.replay_request()  # type: ignore[attr-defined]
    if replay is None or request is None or not replay.can_sample(request):
        return None
    if request not in batches:
        batches[request] = replay.sample(request, device)
    return batches[request]


def current_minibatch(rollout_buffer: object) -> Any:
    """The minibatch of the current optimizer step (``None`` outside ``train()`` or when not recorded)."""
    return getattr(rollout_buffer, "current_minibatch", None)


__all__ = [
    "MinibatchDictRolloutBuffer",
    "MinibatchRolloutBuffer",
    "RecordsMinibatch",
    "batch_for",
    "current_minibatch",
    "rollout_buffer_class_for",
    "uses_minibatch",
]
