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
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import torch as th
from stable_baselines3.common.logger import Logger

from rlaux.errors import ConfigError
from rlaux.minibatch import batch_for
from rlaux.policy import AuxActorCriticPolicy
from rlaux.replay import AuxReplayBuffer, ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask


class NonFiniteUpdates(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient; the weights are the last good ones."""


# ------------------------------------------------------------------------------- guard


class UpdateGuard:
    """Clips SB3's RL gradient and skips optimizer steps whose gradient is not finite (a step pre-hook).

    The owning algorithm sets SB3's own clip aside during ``train()`` (``max_grad_norm = inf``) and
    hands the real threshold to :attr:`max_grad_norm`, so the guard sees the RL gradient before any
    clip: it logs its norm (``train/grad_norm``, the norm SB3's ``clip_grad_norm_`` computes) and,
    with no ``contribute``, clips it exactly as SB3 would (same function, same norm: bit for bit).

    :param max_consecutive: raise ``NonFiniteUpdates`` after this many skips in a row (0: never).
    :param contribute: called before each step whose RL gradient is finite, with the optimizer's
        parameters and the RL gradient's norm; it replaces their gradients by the gradient to step
        (the auxiliary objective joins its own and clips) and returns False when the result is not
        finite, which skips the step too. Without it, the guard clips the RL gradient itself.
    """

    def __init__(
        self,
        optimizer: th.optim.Optimizer,
        max_consecutive: int = 0,
        contribute: Callable[[list[th.Tensor], th.Tensor], bool] | None = None,
    ) -> None:
        self.max_consecutive = max_consecutive
        self.contribute = contribute
        #: The clip of the RL gradient; None while SB3 clips it itself (outside an algorithm's ``train()``).
        self.max_grad_norm: float | None = None
        self.skipped_updates = 0
        self.consecutive = 0
        self.rl_grad_norms = RunningMeans()
        self._handle = optimizer.register_step_pre_hook(self.before_step)

    def detach(self) -> None:
        """Remove the hook from the optimizer."""
        self._handle.remove()

    def state(self) -> dict[str, int]:
        return {"skipped_updates": self.skipped_updates, "consecutive": self.consecutive}

    def load_state(self, state: dict[str, int]) -> None:
        self.skipped_updates = int(state.get("skipped_updates", 0))
        self.consecutive = int(state.get("consecutive", 0))

    def before_step(self, optimizer: th.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """The pre-hook: check the RL gradient, clip it or let ``contribute`` join the auxiliary one,
        skip the step if either is not finite."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        norm = th.nn.utils.get_total_norm(grads)
        if not th.isfinite(norm):
            return self.skip(params)
        self.rl_grad_norms.add("train", {"grad_norm": norm})
        if self.contribute is not None:
            if not self.contribute(params, norm):
                return self.skip(params)
        elif self.max_grad_norm is not None:
            th.nn.utils.clip_grads_with_norm_(params, self.max_grad_norm, norm)
        self.consecutive = 0

    def skip(self, params: Sequence[th.Tensor]) -> None:
        """Drop the gradients (the optimizer then leaves every parameter and its state alone) and count."""
        for p in params:
            p.grad = None
        self.skipped_updates += 1
        self.consecutive += 1
        if self.max_consecutive and self.consecutive >= self.max_consecutive:
            raise NonFiniteUpdates(
                f"{self.consecutive} optimizer steps in a row had a non-finite loss or gradient and were skipped "
                f"({self.skipped_updates} in all); training stopped with the last good weights"
            )

    def record(self, logger: Logger) -> None:
        """Log ``train/grad_norm``, and ``train/skipped_updates`` once an update has been skipped."""
        self.rl_grad_norms.record(logger)
        if self.skipped_updates:
            logger.record("train/skipped_updates", self.skipped_updates)


# ------------------------------------------------------------------------------- mixer


def clip_(grads: Sequence[th.Tensor], max_norm: float, norm: th.Tensor | None = None) -> th.Tensor:
    """Scale ``grads`` in place to total norm at most ``max_norm`` (torch's rule, ``clip_grad_norm_``);
    returns whether the clip changed them (a bool tensor: no host sync)."""
    norm = th.nn.utils.get_total_norm(grads) if norm is None else norm
    coef = th.clamp(max_norm / (norm + 1e-6), max=1.0)
    th._foreach_mul_(list(grads), coef)
    return coef < 1.0


class GradientMixer(Protocol):
    """How the RL and the auxiliary gradients are joined into the gradient the optimizer steps."""

    def mix(self, params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None], rl_norm: th.Tensor,
            max_grad_norm: float) -> th.Tensor:
        """Join them in place. ``params``' ``.grad`` hold the weighted auxiliary gradient (``None`` where
        it has none), ``rl_grads`` SB3's RL gradient of each parameter before any clip and ``rl_norm``
        its norm. Leaves the gradient to step in ``.grad``; returns whether a clip changed the
        auxiliary part (a bool tensor)."""


def _add(params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None]) -> None:
    """``.grad += rl`` for each parameter (``.grad`` may be None)."""
    for p, rl in zip(params, rl_grads, strict=True):
        if rl is not None:
            p.grad = rl if p.grad is None else rl.add_(p.grad)


def _add_clipped_rl(params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None], rl_norm: th.Tensor,
                    max_grad_norm: float) -> None:
    """``.grad += clip(g_rl)``: SB3's clip of the RL gradient, then added."""
    clip_([g for g in rl_grads if g is not None], max_grad_norm, rl_norm)
    _add(params, rl_grads)


def _clip_apart(params: Sequence[th.Tensor], head_ids: set[int], max_norm: float) -> th.Tensor:
    """Clip the ``.grad`` of the agent's parameters and of the auxiliary heads (``head_ids``) each to
    ``max_norm`` on its own; returns whether either clip bound."""
    clipped = th.tensor(False)
    for in_heads in (False, True):
        part = [p.grad for p in params if p.grad is not None and (id(p) in head_ids) == in_heads]
        if part:
            clipped = clipped | clip_(part, max_norm)
    return clipped


class ClipEach:
    """``clip(g_rl) + clip(g_aux)``: SB3's clipped RL gradient plus the auxiliary gradient clipped
    to ``max_grad_norm`` on its own (rlaux's rule until the decision record above replaced it)."""

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        aux = [p.grad for p in params if p.grad is not None]
        clipped = clip_(aux, max_grad_norm) if aux else th.tensor(False)
        _add_clipped_rl(params, rl_grads, rl_norm, max_grad_norm)
        return clipped


class ClipSum:
    """``clip(g_rl + g_aux)``: one clip of the whole gradient, as UNREAL and the PyTorch ports do."""

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        _add(params, rl_grads)
        return clip_([p.grad for p in params if p.grad is not None], max_grad_norm)


class ClipHeadsApart:
    """One clip of the sum on the agent's own parameters (shared encoder, policy and value nets),
    and a clip of the auxiliary heads' gradients on their own: a head's large gradient (pixel
    control sums 400 cells) no longer shrinks the RL and encoder step.

    :param head_ids: the ``id`` of each auxiliary head parameter.
    """

    def __init__(self, head_ids: set[int]) -> None:
        self.head_ids = head_ids

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        _add(params, rl_grads)
        return _clip_apart(params, self.head_ids, max_grad_norm)


class RLPlusAux:
    """``clip(g_rl) + g_aux``: SB3's RL step unchanged, plus the weighted auxiliary gradient, which
    scales with the weights; a safety clip at ``aux_max_grad_norm`` bounds the auxiliary gradient of
    the agent's parameters and, apart, of the heads (it should bind rarely: see ``aux/clip_fraction``).

    :param head_ids: the ``id`` of each auxiliary head parameter.
    """

    def __init__(self, head_ids: set[int], aux_max_grad_norm: float) -> None:
        self.head_ids = head_ids
        self.aux_max_grad_norm = aux_max_grad_norm

    def mix(self, params, rl_grads, rl_norm, max_grad_norm):
        clipped = _clip_apart(params, self.head_ids, self.aux_max_grad_norm)
        _add_clipped_rl(params, rl_grads, rl_norm, max_grad_norm)
        return clipped


#: ``aux_clip`` names -> how they join the gradients (``make_mixer``).
GRADIENT_RULES = ("rl_plus_aux", "sum", "heads_apart", "each")


def make_mixer(rule: str, head_ids: set[int], aux_max_grad_norm: float) -> GradientMixer:
    """The mixer named ``rule`` (one of ``GRADIENT_RULES``)."""
    if rule == "rl_plus_aux":
        return RLPlusAux(head_ids, aux_max_grad_norm)
    if rule == "sum":
        return ClipSum()
    if rule == "heads_apart":
        return ClipHeadsApart(head_ids)
    if rule == "each":
        return ClipEach()
    raise ConfigError(f"unknown aux_clip rule {rule!r}; valid: {', '.join(GRADIENT_RULES)}")


# ----------------------------------------------------------------------------- metrics


class RunningMeans:
    """Means of named scalar tensors between two ``record`` calls. Each sum stays on its values' device
    (a GPU tensor's on the GPU, a CPU scalar's on the CPU), so adding never waits for the GPU."""

    def __init__(self) -> None:
        self._sums: dict[str, th.Tensor] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, prefix: str, metrics: Mapping[str, th.Tensor]) -> None:
        """Add one value of each metric, under the name ``prefix/key``."""
        for key, value in metrics.items():
            name = f"{prefix}/{key}"
            value = value.detach().to(th.float32)
            self._sums[name] = value.clone() if name not in self._sums else self._sums[name] + value
            self._counts[name] += 1

    def __contains__(self, name: str) -> bool:
        return name in self._sums

    def means(self) -> dict[str, float]:
        """Name -> mean of the values added since the last ``record``."""
        by_device: dict[th.device, list[str]] = defaultdict(list)
        for name, total in self._sums.items():
            by_device[total.device].append(name)
        means: dict[str, float] = {}
        for names in by_device.values():  # one host read per device, not one per metric
            values = th.stack([self._sums[name] / self._counts[name] for name in names]).tolist()
            means.update(zip(names, values))
        return {name: means[name] for name in self._sums}

    def record(self, logger: Logger) -> None:
        """Log the means, then start afresh."""
        for name, mean in self.means().items():
            logger.record(name, mean)
        self._sums.clear()
        self._counts.clear()


# --------------------------------------------------------------------------- objective


def can_reuse_gradient(tasks: Sequence[AuxTask]) -> bool:
    """Whether the auxiliary gradient of ``tasks`` may be computed on one optimizer step in k and reused on
    the others (``AuxiliaryObjective.every``): every task samples the replay (not SB3's minibatch of the
    step), and no weighting looks at the step's RL gradient or learns its own weight."""
    return bool(tasks) and all(
        task.replay_request() is not None and not task.uses_minibatch and not task.weighting.uses_gradients
        and not task.weighting.learned for task in tasks
    )


class AuxiliaryObjective:
    """Adds the weighted auxiliary losses to the RL gradient at every optimizer step.

    :param replay: returns the current replay buffer (``None`` before the first rollout).
    :param max_consecutive: the guard's limit of skipped steps in a row (``UpdateGuard``).
    :param minibatch: returns the on-policy minibatch of the current step (``rlaux.minibatch``).
    :param aux_clip: how the RL and auxiliary gradients are joined (``GRADIENT_RULES``; decided above).
    :param aux_max_grad_norm: the safety clip of the auxiliary gradient (``rl_plus_aux``).
    """

    def __init__(
        self,
        tasks: Sequence[AuxTask],
        policy: AuxActorCriticPolicy,
        replay: Callable[[], AuxReplayBuffer | None],
        max_consecutive: int = 0,
        minibatch: Callable[[], object] = lambda: None,
        aux_clip: str = "rl_plus_aux",
        aux_max_grad_norm: float = 10.0,
    ) -> None:
        self.tasks = list(tasks)
        self.policy = policy
        self.replay = replay
        self.minibatch = minibatch
        self.head_ids = {id(p) for name, p in policy.named_parameters() if name.startswith("aux_")}
        self.mixer: GradientMixer = make_mixer(aux_clip, self.head_ids, aux_max_grad_norm)
        self.metrics = RunningMeans()
        self.guard = UpdateGuard(policy.optimizer, max_consecutive, contribute=self.add_auxiliary_gradient)
        self._measure_tasks = True
        #: Compute the auxiliary gradient on one optimizer step in ``every`` of an update and reuse it on the
        #: others (only where ``can_reuse_gradient``; the algorithm sets it from its ``aux_every``).
        self.every = 1
        self._step = 0
        self._held: list[th.Tensor | None] | None = None

    @property
    def skipped_updates(self) -> int:
        """Optimizer steps the guard skipped (a loss or gradient not finite)."""
        return self.guard.skipped_updates

    def begin_update(self) -> None:
        """Called at the start of each ``train()``: its first step measures each task's encoder gradient
        (``aux/<task>/encoder_grad_norm``: one backward pass per task there, one for all tasks on the
        other steps)."""
        self._measure_tasks = True
        self._step = 0
        self._held = None  # a held gradient never outlives its update (checkpoints fall between updates)

    def record(self, logger: Logger) -> None:
        """Log the means since the last call (once per ``train()``, aligned with SB3's train/*)."""
        not_computed = [t for t in self.tasks if f"aux/{t.name}/weight" not in self.metrics]
        self.metrics.record(logger)
        for task in not_computed:  # replay not ready this round: show the set weight
            logger.record(f"aux/{task.name}/weight", self.effective_weight(task))
        logger.record("aux/skipped_updates", self.skipped_updates)
        self.guard.record(logger)

    # The auxiliary gradient.

    def add_auxiliary_gradient(self, params: list[th.Tensor], rl_norm: th.Tensor) -> bool:
        """The guard's contribution: replace SB3's RL gradient in ``params`` by RL and auxiliary gradients
        joined by the mixer. False (the step is skipped) when a loss or the gradient is not finite."""
        rl_grads = [p.grad for p in params]  # SB3's, before any clip; set aside while the aux gradient builds
        reuse = self._held is not None and self._step % self.every != 0
        self._step += 1
        if reuse:  # the gradient computed on the last of every ``every`` steps, with ``every`` times the sequences
            for p, held in zip(params, self._held, strict=True):
                p.grad = None if held is None else held.clone()
            return self._mix(params, rl_grads, rl_norm)
        for p in params:
            p.grad = None
        with th.enable_grad():
            terms = self.task_losses()
            if terms and not th.isfinite(th.stack([loss.detach() for _, loss in terms])).all():  # one host sync
                return False
            if self._measure_tasks or any(task.weighting.uses_gradients for task, _ in terms):
                self._add_task_by_task(terms, {id(p): g for p, g in zip(params, rl_grads)})
                self._measure_tasks = not terms
            elif terms:
                weighted = [self.weighted(task, loss) for task, loss in terms]
                sum(weighted[1:], weighted[0]).backward()
        aux = [p.grad for p in params if p.grad is not None]
        if aux:
            aux_norm = th.nn.utils.get_total_norm(aux)
            if not th.isfinite(aux_norm):
                return False
            self.metrics.add("aux", {"grad_norm": aux_norm})
        if self.every > 1:
            self._held = [None if p.grad is None else p.grad.clone() for p in params]
        return self._mix(params, rl_grads, rl_norm)

    def _mix(self, params: list[th.Tensor], rl_grads: list[th.Tensor | None], rl_norm: th.Tensor) -> bool:
        """Join the auxiliary gradient in ``.grad`` with SB3's RL gradient (the mixer) and log whether a clip bound."""
        clipped = self.mixer.mix(params, rl_grads, rl_norm, self.guard.max_grad_norm or math.inf)
        self.metrics.add("aux", {"clip_fraction": clipped})
        return True

    def task_losses(self) -> list[tuple[AuxTask, th.Tensor]]:
        """Each task's unweighted loss on fresh batches (one replay batch per distinct request)."""
        replay, minibatch = self.replay(), self.minibatch()
        if replay is None and minibatch is None:
            return []
        batches: dict[ReplayRequest, ReplayBatch] = {}
        terms = []
        for task in self.tasks:
            batch = batch_for(task, replay, minibatch, batches, self.policy.device)
            if batch is None:
                continue
            loss, metrics = task.loss(self.policy, self.policy.aux_head(task.name), batch)
            self.metrics.add(f"aux/{task.name}", {"loss": loss.detach(), **metrics})
            terms.append((task, loss))
        return terms

    def effective_weight(self, task: AuxTask) -> float:
        return task.weighting.weight(task.weight, task.progress)

    def weighted(self, task: AuxTask, loss: th.Tensor) -> th.Tensor:
        """lambda_k L_k as the task's weighting sets it (Kendall's form for ``uncertainty``)."""
        weight = self.effective_weight(task)
        if task.weighting.learned:
            log_var = self.policy.aux_log_vars[task.name]
            effective = weight * 0.5 * th.exp(-log_var.detach())
            self.metrics.add(f"aux/{task.name}", {"weight": effective, "log_variance": log_var.detach()})
            return weight * (0.5 * th.exp(-log_var) * loss + 0.5 * log_var)
        self.metrics.add(f"aux/{task.name}", {"weight": th.tensor(float(weight))})
        return weight * loss

    def loss(self) -> th.Tensor | None:
        """sum_k lambda_k L_aux_k on fresh replay batches, or None (no gradient gating: for inspection)."""
        weighted = [self.weighted(task, loss) for task, loss in self.task_losses()]
        return sum(weighted[1:], weighted[0]) if weighted else None

    def _shared_parameters(self) -> list[th.Tensor]:
        """The shared encoder's parameters (all RL parameters when the encoder has none, as with MLPs)."""
        shared = [p for p in self.policy.encoder.parameters() if p.requires_grad]
        if shared:
            return shared
        return [p for p in self.policy.parameters() if p.requires_grad and id(p) not in self.head_ids]

    def _add_task_by_task(self, terms: list[tuple[AuxTask, th.Tensor]], rl_grads: dict[int, th.Tensor | None]) -> None:
        """Add each task's weighted gradient, one backward pass per task: logs the part that reaches the
        shared encoder, and gates or tracks that part against the RL gradient for weightings that ask
        (``rl_grads``: parameter id -> SB3's RL gradient)."""
        shared = self._shared_parameters()
        shared_ids = {id(p) for p in shared}
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        rl = [th.zeros_like(p) if rl_grads.get(id(p)) is None else rl_grads[id(p)] for p in shared]
        for i, (task, loss) in enumerate(terms):
            gated = task.weighting.uses_gradients
            objective = loss if gated else self.weighted(task, loss)
            grads = th.autograd.grad(objective, trainable, retain_graph=i < len(terms) - 1, allow_unused=True)
            by_id = {id(p): g for p, g in zip(trainable, grads)}
            aux = [th.zeros_like(p) if by_id[id(p)] is None else by_id[id(p)] for p in shared]
            aux_norm = th.nn.utils.get_total_norm(aux)
            shared_scale = other_scale = 1.0
            if gated:
                shared_scale = other_scale = self.effective_weight(task)
                shared_scale *= self._gate(task, aux, aux_norm, rl)
            self.metrics.add(f"aux/{task.name}", {"encoder_grad_norm": shared_scale * aux_norm})
            for p, g in zip(trainable, grads):
                if g is None:
                    continue
                scale = shared_scale if id(p) in shared_ids else other_scale
                if p.grad is None:
                    p.grad = scale * g  # a new tensor: autograd.grad may return an expanded one
                else:
                    p.grad.add_(g, alpha=scale)

    def _gate(self, task: AuxTask, aux: list[th.Tensor], aux_norm: th.Tensor, rl: list[th.Tensor]) -> float:
        """The task's gate on the shared encoder from its gradient's agreement with the RL gradient."""
        inner = sum((a * r).sum() for a, r in zip(aux, rl))
        rl_norm = th.nn.utils.get_total_norm(rl)
        cosine = float(inner / (aux_norm * rl_norm)) if aux_norm > 0 and rl_norm > 0 else 0.0
        gate = task.weighting.gate(cosine, float(inner), task.weight)
        self.metrics.add(
            f"aux/{task.name}",
            {"weight": th.tensor(self.effective_weight(task)), "grad_cosine": th.tensor(cosine),
             "gate": th.tensor(gate), "grad_inner": inner.detach()},
        )
        return gate


__all__ = [
    "GRADIENT_RULES", "can_reuse_gradient", "AuxiliaryObjective", "ClipEach", "ClipHeadsApart", "ClipSum", "GradientMixer", "NonFiniteUpdates",
    "RLPlusAux", "RunningMeans", "UpdateGuard", "make_mixer",
]
