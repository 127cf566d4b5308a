"""SB3's actor-critic policy and sb3-contrib's recurrent one, owning the heads of the auxiliary tasks.

The heads are submodules (``aux_heads``), so ``policy.parameters()``, the
optimizer, ``.to(device)``, ``save`` and ``load`` cover them with no extra code.
With no task the policy is exactly SB3's ``ActorCriticPolicy`` (or sb3-contrib's
``RecurrentActorCriticPolicy``).

Tasks read the agent through a few calls that both kinds of policy answer:
``encode``/``encode_sequences`` (the encoder's features, feed-forward),
``core_sequences`` and ``core_dim`` (what the agent's own heads read: the encoder
features here, the LSTM output in a recurrent policy) and ``values_of_sequences``
(the agent's value head, through the critic's LSTM in a recurrent policy).

The policy sits above the tasks and composes them: it builds each task's head on its
encoder. A task knows the policy only as ``rlaux.tasks.base.TaskPolicy``, the calls
above, so a task's loss runs on tensors and a small stand-in.

Modules: :mod:`~rlaux.policy.feedforward` (``AuxActorCriticPolicy`` and its CNN and multi-input forms), :mod:`~rlaux.policy.recurrent` (the recurrent policies, ``lstm_pass``),
:mod:`~rlaux.policy.encoder` (the bfloat16 encoder).
"""

from __future__ import annotations

from rlaux.policy.encoder import ENCODER_DTYPES, fast_bfloat16, resolve_encoder_dtype
from rlaux.policy.feedforward import (
    AuxActorCriticCnnPolicy,
    AuxActorCriticPolicy,
    AuxMultiInputActorCriticPolicy,
)
from rlaux.policy.recurrent import (
    AuxRecurrentActorCriticCnnPolicy,
    AuxRecurrentActorCriticPolicy,
    AuxRecurrentMultiInputActorCriticPolicy,
    lstm_pass,
)

__all__ = ["ENCODER_DTYPES", "AuxActorCriticCnnPolicy", "AuxActorCriticPolicy", "AuxMultiInputActorCriticPolicy",
           "AuxRecurrentActorCriticCnnPolicy", "AuxRecurrentActorCriticPolicy", "AuxRecurrentMultiInputActorCriticPolicy",
           "fast_bfloat16", "lstm_pass", "resolve_encoder_dtype"]
