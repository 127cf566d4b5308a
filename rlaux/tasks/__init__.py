"""Auxiliary tasks: one module each, and the registry that names them."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from rlaux.errors import ConfigError
from rlaux.tasks.base import (
    AuxTask,
    ParameterFreeEncoderWarning,
    SharedEncoderDefault,
    check_weight,
    warn_if_encoder_is_parameter_free,
)
from rlaux.tasks.curl import CURL
from rlaux.tasks.deep_supervision import DeepSupervision
from rlaux.tasks.drac import DrAC
from rlaux.tasks.feature_control import FeatureControl
from rlaux.tasks.inverse_dynamics import InverseDynamics
from rlaux.tasks.pixel_control import PixelControl
from rlaux.tasks.reward_prediction import RewardPrediction
from rlaux.tasks.spr import SPR
from rlaux.tasks.value_replay import ValueReplay
from rlaux.weighting import Weighting, parse_weighting

#: Task name -> class. A new task is one module plus one entry here.
TASKS: dict[str, type[AuxTask]] = {
    RewardPrediction.name: RewardPrediction,
    ValueReplay.name: ValueReplay,
    PixelControl.name: PixelControl,
    FeatureControl.name: FeatureControl,
    SPR.name: SPR,
    CURL.name: CURL,
    InverseDynamics.name: InverseDynamics,
    DrAC.name: DrAC,
    DeepSupervision.name: DeepSupervision,
}

#: Names that stand for several tasks.
BUNDLES: dict[str, tuple[str, ...]] = {
    "unreal": ("reward_pred", "value_replay", "pixel_control"),
}


def available() -> list[str]:
    return sorted([*TASKS, *BUNDLES])


def parse_names(spec: str | Iterable[str] | None) -> list[str]:
    """``"reward_pred,pixel_control"``, ``"none"``, a bundle or a list -> task names (bundles expanded)."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (i.strip() for i in items):
        if item in ("", "none"):
            continue
        expanded = BUNDLES.get(item, (item,))
        for name in expanded:
            if name not in TASKS:
                raise ConfigError(f"unknown aux task '{name}': choose from {', '.join(available())} or 'none'")
            if name not in names:
                names.append(name)
    return names


def variant_label(
    tasks: str | Iterable[str] | None,
    flagged_weights: Mapping[str, float] | None = None,
    weighting: Mapping[str, str] | None = None,
) -> str:
    """The one name of an agent variant, as runs record it (``aux_label``) and comparisons group by.

    The task names (bundles expanded), '+'-joined, or "none"; then the weights a user set
    explicitly, in brackets; then the weighting after '@'::

        variant_label("unreal", {"pixel_control": 0.05}, {"*": "cosine"})
        == "reward_pred+value_replay+pixel_control[pixel_control=0.05]@cosine"
    """
    names = parse_names(tasks)
    if not names:
        return "none"
    label = "+".join(names)
    flagged = {k: v for k, v in sorted((flagged_weights or {}).items()) if k in names}
    if flagged:
        label += "[" + ",".join(f"{k}={float(v):g}" for k, v in flagged.items()) + "]"
    if weighting:
        label += "@" + ",".join(v if k == "*" else f"{k}={v}" for k, v in sorted(weighting.items()))
    return label


def make_tasks(
    tasks: str | Iterable[str | AuxTask] | None,
    weights: Mapping[str, float] | None = None,
    algo: str | None = "ppo",
    task_kwargs: Mapping[str, Mapping] | None = None,
    weightings: Mapping[str, str | Weighting] | None = None,
) -> list[AuxTask]:
    """Build task objects from names (or pass task objects through), with weights for ``algo``.

    ``weights`` maps task names to lambda_k and overrides the defaults; ``task_kwargs``
    maps task names to constructor arguments; ``weightings`` maps task names (or ``"*"``
    for all) to a weighting (``rlaux.weighting``: "cosine", "linear:1:0:0.5", ...).
    """
    weights = dict(weights or {})
    task_kwargs = task_kwargs or {}
    items = [tasks] if isinstance(tasks, (str, AuxTask)) else list(tasks or [])
    built: list[AuxTask] = []
    for item in items:
        if isinstance(item, AuxTask):
            built.append(item)
        else:
            built.extend(TASKS[name](**dict(task_kwargs.get(name, {}))) for name in parse_names(item))
    names = [t.name for t in built]
    if len(set(names)) != len(names):
        raise ConfigError(f"aux tasks must be distinct, got {names}")
    for name, value in weights.items():
        if name not in names:
            raise ConfigError(f"aux_weights names '{name}', which is not among the aux tasks {names or ['none']}")
        weight = check_weight(name, value)
        next(t for t in built if t.name == name).weight = weight
    for task in built if algo is not None else ():  # None: the defaults are filled in later
        task.resolve_weight(algo)
    for name, spec in (weightings or {}).items():
        if name != "*" and name not in names:
            raise ConfigError(f"aux_weighting names '{name}', which is not among the aux tasks {names or ['none']}")
        weighting = spec if isinstance(spec, Weighting) else parse_weighting(spec, name)
        for task in built:
            if name in ("*", task.name) and not (name == "*" and task.name in (weightings or {})):
                task.weighting = copy.deepcopy(weighting)
    return built


__all__ = [
    "AuxTask",
    "BUNDLES",
    "TASKS",
    "ParameterFreeEncoderWarning",
    "SharedEncoderDefault",
    "available",
    "make_tasks",
    "parse_names",
    "variant_label",
    "warn_if_encoder_is_parameter_free",
]
