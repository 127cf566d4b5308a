"""The auxiliary objective: each task's loss on its replay batch, weighted, joined to the RL gradient by the rule."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch as th
from stable_baselines3.common.logger import Logger

from rlaux.minibatch import batch_for
from rlaux.objective.guard import UpdateGuard
from rlaux.objective.metrics import RunningMeans
from rlaux.objective.mixing import GradientMixer, make_mixer
from rlaux.policy import AuxActorCriticPolicy
from rlaux.replay import AuxReplayBuffer, ReplayBatch, ReplayRequest
from rlaux.tasks.base import AuxTask


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


__all__ = ["AuxiliaryObjective", "can_reuse_gradient"]
