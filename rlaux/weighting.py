"""How much weight each auxiliary loss gets, and when (``--aux-weighting``).

Each task carries a weighting (default ``Fixed``): its effective weight at an
update is ``weighting.weight(task.weight, progress)``, with ``progress`` the share
of training done. Some weightings look at gradients:

- ``cosine`` / ``cosine_weighted`` (Du et al. 2018, "Adapting Auxiliary Losses Using
  Gradient Similarity"): on the shared encoder's parameters, the task's gradient is
  added only when its cosine similarity with the RL gradient is positive
  (``cosine``), or scaled by ``max(0, cos)`` (``cosine_weighted``). The task's own
  head always gets its gradient.
- ``olaux`` (Lin et al. 2019, "Adaptive Auxiliary Task Weighting for Reinforcement
  Learning"): every ``every`` updates, ``w <- max(0, w + beta * mean <g_aux, g_rl>)``
  with the inner products taken on the shared encoder over those updates.
- ``uncertainty`` (Kendall et al. 2018): a learned log-variance ``s`` per task (a
  parameter of the policy, ``aux_log_vars``); the task contributes
  ``w * (0.5 * exp(-s) * L + 0.5 * s)``, so its effective weight is ``w * 0.5 * exp(-s)``.

Schedules: ``linear:start:end:fraction`` and ``cosine:start:end:fraction`` go from
``start`` to ``end`` over the first ``fraction`` of training and stay at ``end``;
``warmup:start:end:fraction`` is the linear ramp named for its use as a curriculum
(e.g. ``warmup:0:1:0.2`` brings a task in over the first 20%). Scheduled values
multiply the task's weight.

The gradient here is SB3's clipped RL gradient (the pre-hook sees it after
``clip_grad_norm_``): the cosine is unaffected by the clip; olaux's inner products
are those of the clipped gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from rlaux.errors import ConfigError

SCHEDULES = ("linear", "cosine", "warmup")
NAMES = ("fixed", "cosine", "cosine_weighted", "olaux", "uncertainty")


@dataclass
class Weighting:
    """Fixed weight: the task's own ``weight``, at every update.

    The base of all weightings. ``uses_gradients``: the objective computes the task's
    gradient on its own and calls ``gate`` at each update; ``learned``: the policy holds
    a learned log-variance for the task (``aux_log_vars``).
    """

    uses_gradients: ClassVar[bool] = False
    learned: ClassVar[bool] = False

    def weight(self, base: float, progress: float) -> float:
        """The effective weight at this update: ``base`` is the task's weight, ``progress`` the share
        of training done, in [0, 1]."""
        return base

    def gate(self, cosine: float, inner: float, base: float) -> float:
        """The factor on the task's shared-encoder gradient at this update (its own head's gradient is
        never gated). Called for weightings with ``uses_gradients`` only, once per optimizer step, with
        the ``cosine`` and the ``inner`` product of the task's encoder gradient with the RL gradient, and
        the task's weight ``base``. Default: 1 (no gate)."""
        return 1.0

    def __str__(self) -> str:
        return "fixed"


Fixed = Weighting


@dataclass
class Schedule(Weighting):
    """``kind:start:end:fraction``: a factor going from ``start`` to ``end`` over ``fraction`` of training."""

    kind: str = "linear"
    start: float = 1.0
    end: float = 0.0
    fraction: float = 1.0

    def factor(self, progress: float) -> float:
        x = min(1.0, max(0.0, progress) / self.fraction) if self.fraction > 0 else 1.0
        if self.kind == "cosine":
            return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * x))
        return self.start + (self.end - self.start) * x

    def weight(self, base: float, progress: float) -> float:
        return base * self.factor(progress)

    def __str__(self) -> str:
        return f"{self.kind}:{self.start:g}:{self.end:g}:{self.fraction:g}"


@dataclass
class CosineGate(Weighting):
    """Du et al. 2018: keep the task's encoder gradient only where it agrees with the RL gradient."""

    weighted: bool = False
    uses_gradients: ClassVar[bool] = True

    def gate(self, cosine: float, inner: float, base: float) -> float:
        """1 where ``cosine`` > 0, else 0; ``max(0, cosine)`` when ``weighted``."""
        return max(0.0, cosine) if self.weighted else float(cosine > 0)

    def __str__(self) -> str:
        return "cosine_weighted" if self.weighted else "cosine"


@dataclass
class OLAux(Weighting):
    """Lin et al. 2019: ``w <- max(0, w + beta * mean <g_aux, g_rl>)`` every ``every`` updates."""

    beta: float = 0.1
    every: int = 10
    uses_gradients: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.current: float | None = None
        self._inner: list[float] = []

    def weight(self, base: float, progress: float) -> float:
        return base if self.current is None else self.current

    def observe(self, base: float, inner: float) -> None:
        """Record one update's inner product; adapt the weight every ``every`` updates."""
        self._inner.append(inner)
        if len(self._inner) >= self.every:
            now = base if self.current is None else self.current
            self.current = max(0.0, now + self.beta * sum(self._inner) / len(self._inner))
            self._inner.clear()

    def gate(self, cosine: float, inner: float, base: float) -> float:
        """Record the ``inner`` product (``observe``); the gradient itself is not gated: 1."""
        self.observe(base, inner)
        return 1.0

    def __str__(self) -> str:
        return f"olaux:{self.beta:g}:{self.every}"


@dataclass
class Uncertainty(Weighting):
    """Kendall et al. 2018: a learned log-variance ``s``; contributes ``w * (0.5 exp(-s) L + 0.5 s)``."""

    learned: ClassVar[bool] = True

    def __str__(self) -> str:
        return "uncertainty"


def parse_weighting(spec: str, task: str = "*") -> Weighting:
    """``fixed``, ``cosine``, ``cosine_weighted``, ``olaux[:beta[:every]]``, ``uncertainty``
    or a schedule ``linear|cosine|warmup:start:end:fraction``."""
    name, *args = spec.strip().split(":")
    try:
        if args and name in SCHEDULES:
            if len(args) != 3:
                raise ValueError
            start, end, fraction = (float(a) for a in args)
            if not 0 < fraction <= 1 or start < 0 or end < 0:
                raise ValueError
            return Schedule(name, start, end, fraction)
        if name == "olaux":
            beta = float(args[0]) if args else 0.1
            every = int(args[1]) if len(args) > 1 else 10
            if len(args) > 2 or beta < 0 or every < 1:
                raise ValueError
            return OLAux(beta, every)
        if args:
            raise ValueError
        if name == "fixed":
            return Fixed()
        if name in ("cosine", "cosine_weighted"):
            return CosineGate(weighted=name == "cosine_weighted")
        if name == "uncertainty":
            return Uncertainty()
    except ValueError:
        pass
    raise ConfigError(
        f"'{spec}' is not a weighting (for {'all tasks' if task == '*' else task}): use one of "
        f"{', '.join(NAMES)}, olaux:BETA:EVERY or a schedule linear|cosine|warmup:START:END:FRACTION "
        f"(weights >= 0, 0 < FRACTION <= 1)"
    )
