"""How the auxiliary losses join SB3's RL loss: an optimizer step pre-hook.

SB3's ``PPO.train`` and ``A2C.train`` build the RL loss, call ``backward``, clip
the gradient norm of ``policy.parameters()`` to ``max_grad_norm`` and step
``policy.optimizer``; there is no hook for an extra loss. Rather than copying
those ~100-line methods (as sb3-contrib does), rlaux registers
``torch.optim.Optimizer.register_step_pre_hook`` on the policy's optimizer: just
before each step, it samples the replay, computes ``sum_k lambda_k L_aux_k``,
back-propagates it into the gradients SB3 has just computed, and clips the sum
again. So every optimizer step of PPO (each minibatch) and of A2C (each update)
optimises L_rl + sum_k lambda_k L_aux_k, with one mechanism for both and no SB3
code copied.

Clipping, decided (``ClipEach``, the default ``GradientMixer``; the rule is one
replaceable part): the gradient stepped is ``clip(g_rl) + clip(g_aux)``, each
clipped to ``max_grad_norm`` on its own (so the step's norm is at most twice it).
The first clip is SB3's own, untouched, so with no auxiliary task (or zero
weights) the update is exactly SB3's. Clipping the sum instead,
``clip(clip(g_rl) + g_aux)``, was tried first and rejected by measurement: the
auxiliary heads' gradients (pixel control's Q-learning loss sums 400 cells) can
dominate the norm of the sum, so its clip shrank the RL step with them; with the
auxiliary gradient kept off the encoder by cosine gating, A2C on MinAtar Breakout
then did not learn at all (mean return 0.59 after 40k steps, against 2.2 with the
gate open and 5.9 for plain A2C at 150k).

Numerical faults: when the auxiliary loss or the summed gradient is not
finite, the gradients are dropped (set to ``None``), so the optimizer skips the
update entirely (its moments and step count are left alone: torch's optimizers
pass over parameters whose ``grad`` is ``None``); the skip is counted and logged
as ``aux/skipped_updates`` and ``train/skipped_updates``. Runs without an
auxiliary task get the same guard (``UpdateGuard``: it only reads the gradient
norm, so finite updates are SB3's bit for bit; ``train/skipped_updates`` is
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

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import torch as th
from stable_baselines3.common.logger import Logger

from rlaux.minibatch import batch_for
from rlaux.policy import AuxActorCriticPolicy
from rlaux.replay import AuxReplayBuffer, ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask


class NonFiniteUpdates(RuntimeError):
    """Too many optimizer steps in a row had a non-finite loss or gradient; the weights are the last good ones."""


def finite_norm(grads: Sequence[th.Tensor]) -> bool:
    """Whether the total norm of ``grads`` (a non-empty list of gradients) is finite."""
    return bool(th.isfinite(th.nn.utils.get_total_norm(grads)))


# ------------------------------------------------------------------------------- guard


class UpdateGuard:
    """Skips optimizer steps whose gradient is not finite, and counts them (an optimizer step pre-hook).

    :param max_consecutive: raise ``NonFiniteUpdates`` after this many skips in a row (0: never).
    :param contribute: called before each step whose gradient is finite, with the optimizer's
        parameters; it may change their gradients (the auxiliary objective adds its own) and
        returns False when the result is not finite, which skips the step too.
    """

    def __init__(
        self,
        optimizer: th.optim.Optimizer,
        max_consecutive: int = 0,
        contribute: Callable[[list[th.Tensor]], bool] | None = None,
    ) -> None:
        self.max_consecutive = max_consecutive
        self.contribute = contribute
        self.skipped_updates = 0
        self.consecutive = 0
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
        """The pre-hook: check the gradient, let ``contribute`` add to it, skip the step if either is not finite."""
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grads = [p.grad for p in params if p.grad is not None]
        if grads and not finite_norm(grads):
            return self.skip(params)
        if self.contribute is not None and not self.contribute(params):
            return self.skip(params)
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
        """Log ``train/skipped_updates`` once an update has been skipped."""
        if self.skipped_updates:
            logger.record("train/skipped_updates", self.skipped_updates)


# ------------------------------------------------------------------------------- mixer


class GradientMixer(Protocol):
    """How the RL and the auxiliary gradients are joined into the gradient the optimizer steps."""

    def mix(self, params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None]) -> bool:
        """Join them in place. ``params``' ``.grad`` hold the auxiliary gradient (``None`` where it has
        none), ``rl_grads`` SB3's RL gradient of each parameter (already clipped by SB3). Leaves the
        gradient to step in ``.grad``; returns False when it is not finite."""


class ClipEach:
    """``clip(g_rl) + clip(g_aux)``: the auxiliary gradient clipped to ``max_grad_norm`` on its own,
    then added to SB3's clipped RL gradient (the rule decided in this module's docstring)."""

    def __init__(self, max_grad_norm: float) -> None:
        self.max_grad_norm = max_grad_norm

    def mix(self, params: Sequence[th.Tensor], rl_grads: Sequence[th.Tensor | None]) -> bool:
        aux_grads = [p.grad for p in params if p.grad is not None]
        if aux_grads:
            norm = th.nn.utils.get_total_norm(aux_grads)
            if not th.isfinite(norm):
                return False
            th._foreach_mul_(aux_grads, th.clamp(self.max_grad_norm / norm, max=1.0))
        for p, rl in zip(params, rl_grads, strict=True):
            if rl is not None:
                p.grad = rl if p.grad is None else rl.add_(p.grad)
        return True


# ----------------------------------------------------------------------------- metrics


class RunningMeans:
    """Means of named scalar tensors between two ``record`` calls, summed on ``device`` (no sync per step)."""

    def __init__(self, device: th.device | str) -> None:
        self._sums: dict[str, th.Tensor] = defaultdict(lambda: th.zeros((), device=device))
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, prefix: str, metrics: Mapping[str, th.Tensor]) -> None:
        """Add one value of each metric, under the name ``prefix/key``."""
        for key, value in metrics.items():
            name = f"{prefix}/{key}"
            self._sums[name] = self._sums[name] + value.detach().to(self._sums[name].device, th.float32)
            self._counts[name] += 1

    def __contains__(self, name: str) -> bool:
        return name in self._sums

    def means(self) -> dict[str, float]:
        """Name -> mean of the values added since the last ``record``."""
        return {name: (total / self._counts[name]).item() for name, total in self._sums.items()}

    def record(self, logger: Logger) -> None:
        """Log the means, then start afresh."""
        for name, mean in self.means().items():
            logger.record(name, mean)
        self._sums.clear()
        self._counts.clear()


# --------------------------------------------------------------------------- objective


class AuxiliaryObjective:
    """Adds the weighted auxiliary losses to the RL gradient at every optimizer step.

    :param replay: returns the current replay buffer (``None`` before the first rollout).
    :param max_grad_norm: the clip of the auxiliary gradient (``ClipEach``) when no ``mixer`` is given.
    :param max_consecutive: the guard's limit of skipped steps in a row (``UpdateGuard``).
    :param minibatch: returns the on-policy minibatch of the current step (``rlaux.minibatch``).
    :param mixer: how the RL and auxiliary gradients are joined; default ``ClipEach(max_grad_norm)``.
    """

    def __init__(
        self,
        tasks: Sequence[AuxTask],
        policy: AuxActorCriticPolicy,
        replay: Callable[[], AuxReplayBuffer | None],
        max_grad_norm: float,
        max_consecutive: int = 0,
        minibatch: Callable[[], object] = lambda: None,
        mixer: GradientMixer | None = None,
    ) -> None:
        self.tasks = list(tasks)
        self.policy = policy
        self.replay = replay
        self.minibatch = minibatch
        self.mixer: GradientMixer = mixer if mixer is not None else ClipEach(max_grad_norm)
        self.metrics = RunningMeans(policy.device)
        self.guard = UpdateGuard(policy.optimizer, max_consecutive, contribute=self.add_auxiliary_gradient)

    @property
    def skipped_updates(self) -> int:
        """Optimizer steps the guard skipped (a loss or gradient not finite)."""
        return self.guard.skipped_updates

    def record(self, logger: Logger) -> None:
        """Log the means since the last call (once per ``train()``, aligned with SB3's train/*)."""
        not_computed = [t for t in self.tasks if f"aux/{t.name}/weight" not in self.metrics]
        self.metrics.record(logger)
        for task in not_computed:  # replay not ready this round: show the set weight
            logger.record(f"aux/{task.name}/weight", self.effective_weight(task))
        logger.record("aux/skipped_updates", self.skipped_updates)
        self.guard.record(logger)

    # The auxiliary gradient.

    def add_auxiliary_gradient(self, params: list[th.Tensor]) -> bool:
        """The guard's contribution: replace SB3's RL gradient in ``params`` by RL and auxiliary gradients
        joined by the mixer. False (the step is skipped) when a loss or the gradient is not finite."""
        rl_grads = [p.grad for p in params]  # SB3's, already clipped; set aside while the aux gradient builds
        for p in params:
            p.grad = None
        with th.enable_grad():
            terms = self.task_losses()
            summed = [self.weighted(task, loss) for task, loss in terms if not task.weighting.uses_gradients]
            gated = [(task, loss) for task, loss in terms if task.weighting.uses_gradients]
            total = sum(summed[1:], summed[0]) if summed else None
            if (total is not None and not th.isfinite(total)) or not all(th.isfinite(loss) for _, loss in gated):
                return False
            if gated:
                rl_by_id = {id(p): g for p, g in zip(params, rl_grads)}
                self._add_gated_gradients(gated, rl_by_id, keep_graph=total is not None)
            if total is not None:
                total.backward()
        return self.mixer.mix(params, rl_grads)

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
        aux = {id(p) for name, p in self.policy.named_parameters() if name.startswith("aux_")}
        return [p for p in self.policy.parameters() if p.requires_grad and id(p) not in aux]

    def _add_gated_gradients(
        self, gated: list[tuple[AuxTask, th.Tensor]], rl_grads: dict[int, th.Tensor | None], keep_graph: bool
    ) -> None:
        """Add each task's gradient, its shared-encoder part gated or tracked against the RL gradient
        (``rl_grads``: parameter id -> SB3's clipped RL gradient)."""
        shared = self._shared_parameters()
        shared_ids = {id(p) for p in shared}
        rl = [th.zeros_like(p) if rl_grads.get(id(p)) is None else rl_grads[id(p)] for p in shared]
        rl_norm = th.linalg.vector_norm(th.stack([g.norm() for g in rl]))
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        for i, (task, loss) in enumerate(gated):
            grads = th.autograd.grad(loss, trainable, retain_graph=keep_graph or i < len(gated) - 1, allow_unused=True)
            by_id = {id(p): g for p, g in zip(trainable, grads)}
            aux = [th.zeros_like(p) if by_id[id(p)] is None else by_id[id(p)] for p in shared]
            inner = sum((a * r).sum() for a, r in zip(aux, rl))
            aux_norm = th.linalg.vector_norm(th.stack([a.norm() for a in aux]))
            cosine = float(inner / (aux_norm * rl_norm)) if aux_norm > 0 and rl_norm > 0 else 0.0
            weight = self.effective_weight(task)
            gate = task.weighting.gate(cosine, float(inner), task.weight)
            self.metrics.add(
                f"aux/{task.name}",
                {"weight": th.tensor(weight), "grad_cosine": th.tensor(cosine), "gate": th.tensor(gate),
                 "grad_inner": inner.detach()},
            )
            for p, g in zip(trainable, grads):
                if g is None:
                    continue
                scale = weight * gate if id(p) in shared_ids else weight
                if p.grad is None:
                    p.grad = scale * g
                else:
                    p.grad.add_(g, alpha=scale)


__all__ = ["AuxiliaryObjective", "ClipEach", "GradientMixer", "NonFiniteUpdates", "RunningMeans", "UpdateGuard"]
