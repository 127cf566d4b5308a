"""Running means of the logged metrics between two dumps of the logger."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import torch as th
from stable_baselines3.common.logger import Logger


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


__all__ = ["RunningMeans"]
