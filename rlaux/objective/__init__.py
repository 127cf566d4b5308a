"""How the auxiliary losses join SB3's RL loss: an optimizer step pre-hook.

SB3's ``PPO.train`` and ``A2C.train`` build the RL loss, call ``backward``, clip
the gradient norm of ``policy.parameters()`` to ``max_grad_norm`` and step
``policy.optimizer``; there is no hook for an extra loss. Rather than copying
those ~100-line methods (as sb3-contrib does), rlaux registers
``torch.optim.Optimizer.register_step_pre_hook`` on the policy's optimizer: just
before each step, it samples the replay, computes ``sum_k lambda_k L_aux_k``,
back-propagates it beside the gradients SB3 has just computed, and joins the two
(the rule below). So every optimizer step of PPO (each minibatch) and of A2C (each update)
optimises L_rl + sum_k lambda_k L_aux_k, with one mechanism for both and no SB3
code copied.

The RL gradient before any clip: during ``train()`` the algorithm sets SB3's
``max_grad_norm`` to inf (SB3's ``clip_grad_norm_`` then multiplies by exactly 1) and
the guard clips instead, with torch's function on the same norm. So with no task the
update is SB3's bit for bit, and the hook sees the norm SB3 computes
(``train/grad_norm``).

Joining rule, decided by measurement (``aux_clip``; ``GRADIENT_RULES``)::

    g = clip(g_rl, max_grad_norm) + safety(g_aux),   g_aux = sum_k lambda_k grad L_k

(``rl_plus_aux``, the default). SB3's RL step is left as SB3 makes it, and the
auxiliary gradient is added unclipped, so doubling ``lambda_k`` doubles task k's
contribution to every parameter's update, and ``lambda_k = 0`` is no task k. The
safety clip (``aux_max_grad_norm``, 10) bounds the auxiliary gradient of the
agent's parameters and, apart, of the auxiliary heads. It is there for blow-ups,
not for the ordinary regime; ``aux/clip_fraction`` logs how often it binds.

The measurement (``benchmarks/gradient_rules.py``; ``unreal`` at its default
weights, seed 0; MinAtar Breakout, 20k env steps; Atari Breakout, 8k env steps;
medians over optimizer steps; "aux clip": share of steps where a clip changed the
auxiliary gradient; full table in docs/results/gradient-rules):

=====================  ==========  =======  ========  =========
rule                   run         RL clip  aux clip  |g_rl| med
=====================  ==========  =======  ========  =========
each (rlaux before)    A2C MinAtar  39%     86%       0.42
sum                    A2C MinAtar  52%     93%       0.51
heads_apart            A2C MinAtar  64%     96%       0.66
rl_plus_aux            A2C MinAtar  76%     0.4%      0.83
each (rlaux before)    PPO MinAtar  66%     100%      0.67
sum                    PPO MinAtar  92%     100%      1.76
heads_apart            PPO MinAtar  87%     100%      1.58
rl_plus_aux            PPO MinAtar 100%     3.8%      6.87
=====================  ==========  =======  ========  =========

Why not the others. ``each`` (``clip(g_rl) + clip(g_aux)``, rlaux's rule before):
its auxiliary clip binds in 86-100% of steps, so the auxiliary gradient has norm
``max_grad_norm`` whatever the weights, and the weights only set the ratios between
tasks. ``sum`` (``clip(g_rl + g_aux)``, as UNREAL at 40 and the PyTorch ports at 0.5
do): at SB3's 0.5 the RL gradient alone exceeds the threshold in 40-70% of steps,
so the clip of a sum binds in 93-100% of them; lambda then sets the direction of the
step but not its size, and the heads' gradients (pixel control sums 400 cells on
Atari) shrink the RL step with them. ``heads_apart`` (one clip of the sum on the
agent's parameters, one on the heads) removes the second effect, not the first:
still 96-100%. Only a rule that leaves the auxiliary gradient out of SB3's clip
makes lambda mean what it says at ``max_grad_norm`` 0.5, so ``rl_plus_aux`` is it.

What it changes: the weights now matter. Under ``each`` the encoder saw about a
fifth of the auxiliary gradient; now it sees all of it. With PPO at the old default
weights (reward_pred and value_replay 1), the auxiliary encoder gradient (0.77 + 1.18)
outweighed the clipped RL gradient (0.5) and the RL gradient grew (median norm 6.9
against 0.67), and PPO learned worse than under ``each`` (MinAtar Breakout, 300k steps,
3 seeds: final IQM 4.05 against 5.27). So the default weights were swept again under
this rule (docs/results/unreal-weights). At the new defaults (reward_pred and
value_replay 0.25 for A2C, 0.0625 for PPO; pixel_control 0.05), the safety clip bound in
none of the measured steps (A2C and PPO on MinAtar, PPO on Atari). A2C ``unreal`` ends at
8.91 [8.50, 9.52] against 6.12 [5.59, 7.06] for plain A2C; PPO ``unreal`` at
5.56 [5.28, 5.79], level with plain PPO's 6.09 [5.40, 6.99]
(docs/results/gradient-rules).

How much auxiliary work per env step (``aux_env_steps_per_sequence``, ``aux_every``). The
replaying tasks (reward prediction, value replay, pixel and feature control) draw one sequence
per task per 20 collected env steps, UNREAL's rate (one sequence per task per 20-step A3C
update), spread over the optimizer steps: ``round(env steps per optimizer step / 20)`` per
step (``rlaux.tasks.base.sequences_per_update``). The work is then tied to the data, not to
how the algorithm cuts it into minibatches: before, every optimizer step drew a fixed 4 + 2
sequences, so PPO's cost grew with its number of minibatches and A2C paid it every 40 env steps.
Each task's loss is a mean over its sampled steps, so the number of sequences changes the
variance of the auxiliary gradient, not its expected size: the weights keep their meaning.
With many small optimizer steps (PPO), a fixed cost per auxiliary computation (sampling,
Python, small kernels) dominated; so the gradient is computed on one step in k of an update
from k times the sequences and added unchanged on the k - 1 steps after it (``every``;
``aux_every="auto"`` picks the smallest k that draws at least 50 sequences per task, k at
most one epoch's minibatches). Per env
step, the sequences and the expected auxiliary gradient of every step are the same as with
k = 1; what changes is that steps 2..k add a gradient computed up to k - 1 steps earlier (at
most one epoch apart, never across updates; a cycle of k may span an epoch boundary where k
does not divide the minibatches of an epoch). Only where the tasks' gradient does not depend
on the step itself (``can_reuse_gradient``: no task on SB3's minibatch, no gating weighting).
The measurements behind 50: docs/benchmarks.md.

Numerical faults: when the auxiliary loss or the summed gradient is not
finite, the gradients are dropped (set to ``None``), so the optimizer skips the
update entirely (its moments and step count are left alone: torch's optimizers
pass over parameters whose ``grad`` is ``None``); the skip is counted and logged
as ``aux/skipped_updates`` and ``train/skipped_updates``. Runs without an
auxiliary task get the same guard (``UpdateGuard``: it reads the gradient norm
and clips as SB3 does, so finite updates are SB3's bit for bit; ``train/skipped_updates`` is
logged once an update has been skipped). A non-finite RL loss makes a
non-finite gradient, so it is caught the same way. After ``max_consecutive``
skips in a row, ``NonFiniteUpdates`` is raised from the optimizer step, before
any parameter changes: the weights are then the last good ones.

Parts: ``UpdateGuard`` owns the step pre-hook, skips and counts non-finite steps;
``AuxiliaryObjective`` composes a guard (to which it contributes the auxiliary
gradient), a ``GradientMixer`` (how the RL and auxiliary gradients are joined) and
``RunningMeans`` (the logged metrics). Weightings that look at gradients are asked
for their gate through ``Weighting.gate``.

Modules, one concern each: :mod:`~rlaux.objective.guard` (the step pre-hook, skips of non-finite steps),
:mod:`~rlaux.objective.mixing` (the gradient-joining rules), :mod:`~rlaux.objective.metrics` (running means),
:mod:`~rlaux.objective.auxiliary` (the objective itself).
"""

from __future__ import annotations

from rlaux.objective.auxiliary import AuxiliaryObjective, can_reuse_gradient
from rlaux.objective.guard import NonFiniteUpdates, UpdateGuard
from rlaux.objective.metrics import RunningMeans
from rlaux.objective.mixing import (
    GRADIENT_RULES,
    ClipEach,
    ClipHeadsApart,
    ClipSum,
    GradientMixer,
    RLPlusAux,
    clip_,
    make_mixer,
)

__all__ = ["GRADIENT_RULES", "AuxiliaryObjective", "ClipEach", "ClipHeadsApart", "ClipSum", "GradientMixer",
           "NonFiniteUpdates", "RLPlusAux", "RunningMeans", "UpdateGuard", "can_reuse_gradient", "clip_", "make_mixer"]
