"""The update guard: the optimizer step pre-hook that joins the auxiliary gradient, and skips and counts non-finite steps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch as th
from stable_baselines3.common.logger import Logger

from rlaux.objective.metrics import RunningMeans


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


__all__ = ["NonFiniteUpdates", "UpdateGuard"]
