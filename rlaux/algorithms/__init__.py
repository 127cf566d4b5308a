"""``AuxPPO``, ``AuxA2C`` and ``AuxRecurrentPPO``: SB3's PPO and A2C, and sb3-contrib's
``RecurrentPPO``, with auxiliary tasks.

The subclasses stay thin. They swap in a policy that owns the heads, feed the
replay from a callback at every env step, join the auxiliary losses through an
optimizer step pre-hook (see ``rlaux.objective``) and log the task metrics
after each ``train()``. With no task none of that is installed, and they
behave exactly as SB3's PPO and A2C.

Feeding the replay from a callback's ``_on_step``: there the raw rewards are
still untouched (``collect_rollouts`` adds the bootstrap of truncated episodes
to them in place right after), and the observation acted on, the action and the
episode-start flags are at hand, in time order per env. The rollout buffer is
no use for this: ``get()`` flattens and shuffles it.

For runs that stop and continue (``rlaux.run``) the mixin keeps a small public
state: :meth:`~AuxAlgorithmMixin.request_stop` ends ``learn()`` at the next
iteration boundary, :attr:`~AuxAlgorithmMixin.iterations` counts finished
iterations (saved with the model), :meth:`~AuxAlgorithmMixin.continue_iteration_count`
numbers the logged iterations on from it, and :attr:`~AuxAlgorithmMixin.env_state`
carries the env's state into a checkpoint's model file, and
:meth:`~AuxAlgorithmMixin.rollout_state` is what the next rollout continues from beyond SB3's
own ``_last_obs`` (the LSTM states of ``AuxRecurrentPPO``).

``AuxRecurrentPPO`` is the same mixin on sb3-contrib's ``RecurrentPPO``, whose ``train()`` also
calls ``clip_grad_norm_`` then ``optimizer.step()``: the step pre-hook joins the tasks there
exactly as for PPO. Its replay feeder also stores the LSTM state the policy had at each step;
with UNREAL's LSTM inputs (``policy_kwargs=dict(last_action_reward=True)``) a second feeder
writes each step's reward into the inputs of the next, and the rollout buffer keeps the inputs
of every step for training (:class:`LstmInputsRolloutBuffer`).

Modules, one concern each: :mod:`~rlaux.algorithms.settings` (``AuxSettings``: every aux setting in one frozen
object, checked once; tasks against the spaces), :mod:`~rlaux.algorithms.callbacks` (replay and LSTM-input feeders), :mod:`~rlaux.algorithms.mixin`
(the lifecycle the three classes share), :mod:`~rlaux.algorithms.feedforward` (``AuxPPO``, ``AuxA2C``),
:mod:`~rlaux.algorithms.value_clip` (PPO2's value clip for ``AuxPPO``, ``clip_range_vf_form="max"``),
:mod:`~rlaux.algorithms.recurrent` (``AuxRecurrentPPO`` and its rollout buffers), :mod:`~rlaux.algorithms.phasic`
(``AuxPPG``, Phasic Policy Gradient; docs/ppg.md).
"""

from __future__ import annotations

from rlaux.algorithms.callbacks import LastRewardFeeder, ReplayFeeder, evaluation_reward_feeder, frame_stack_of
from rlaux.algorithms.feedforward import AuxA2C, AuxPPO
from rlaux.algorithms.mixin import AuxAlgorithmMixin
from rlaux.algorithms.phasic import AuxPPG
from rlaux.algorithms.recurrent import (
    AuxRecurrentPPO,
    LstmInputsDictRolloutBuffer,
    LstmInputsRolloutBuffer,
    RecordsLstmInputs,
)
from rlaux.algorithms.settings import AUX_MIN_SEQUENCES, AuxSettings, AuxSettingsError, check_tasks

#: Algorithm names (``--algo``) -> classes.
ALGORITHMS: dict[str, type[AuxAlgorithmMixin]] = {"ppo": AuxPPO, "a2c": AuxA2C, "ppo_lstm": AuxRecurrentPPO,
                                                   "ppg": AuxPPG}

__all__ = ["ALGORITHMS", "AUX_MIN_SEQUENCES", "AuxA2C", "AuxAlgorithmMixin", "AuxPPG", "AuxPPO", "AuxRecurrentPPO",
           "AuxSettings", "AuxSettingsError", "LastRewardFeeder", "LstmInputsDictRolloutBuffer", "LstmInputsRolloutBuffer",
           "RecordsLstmInputs", "ReplayFeeder", "check_tasks", "evaluation_reward_feeder", "frame_stack_of"]
