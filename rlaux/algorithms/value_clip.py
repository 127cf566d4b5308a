"""PPO's value clipping in PPO2's form, beside SB3's.

Both clip the new value prediction to within ``eps`` of the prediction made when the rollout was collected,
``v_clip = v_old + clip(v - v_old, -eps, eps)``. They differ in the loss:

- ``"clipped"`` (SB3's ``clip_range_vf``): the squared error of the clipped prediction alone,
  ``(v_clip - R)^2``, whose gradient is zero wherever the clip binds;
- ``"max"`` (OpenAI baselines' PPO2, CleanRL, gymnax-blines): the larger of the two squared errors,
  ``max((v - R)^2, (v_clip - R)^2)``, which keeps pulling a prediction that moved away from the return.

The ``"max"`` form joins SB3's ``PPO.train`` without copying it: during ``train()`` SB3 runs with
``clip_range_vf=None`` (so its value loss is ``mean((R - values)^2)``), and the policy's ``evaluate_actions``
returns, for the minibatch being trained on, the values whose squared error is the larger one
(:func:`max_form_values`); the minibatch's ``old_values`` and ``returns`` come from the rollout buffer, which
records it (``rlaux.minibatch``). Scale: SB3's ``vf_coef`` multiplies the squared error; PPO2's code takes
half of it, so PPO2's ``vf_coef`` c is SB3's c / 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch as th

from rlaux.errors import ConfigError
from rlaux.minibatch import current_minibatch

#: The values ``clip_range_vf_form`` takes.
VALUE_CLIP_FORMS = ("clipped", "max")


def check_value_clip_form(form: object, clip_range_vf: object) -> str:
    """``form`` if it is one of :data:`VALUE_CLIP_FORMS` and can act (``"max"`` needs a ``clip_range_vf``)."""
    if form not in VALUE_CLIP_FORMS:
        raise ConfigError(f"clip_range_vf_form must be one of {', '.join(map(repr, VALUE_CLIP_FORMS))}, got {form!r}")
    if form == "max" and clip_range_vf is None:
        raise ConfigError("clip_range_vf_form='max' clips the value loss by clip_range_vf, which is not set: "
                          "give clip_range_vf (e.g. 0.2), or leave clip_range_vf_form out")
    return str(form)


def max_form_values(values: th.Tensor, old_values: th.Tensor, returns: th.Tensor, clip_range: float) -> th.Tensor:
    """Values whose squared error to the returns is PPO2's clipped value loss, step by step.

    :param values: [N] the current predictions v (with their graph).
    :param old_values: [N] the predictions v_old made when the rollout was collected.
    :param returns: [N] the value targets R.
    :param clip_range: eps.
    :return: [N] v where ``(v - R)^2 >= (v_clip - R)^2``, else ``v_clip = v_old + clip(v - v_old, -eps, eps)``;
        so ``(R - result)^2 = max((v - R)^2, (v_clip - R)^2)``, with the gradient of the larger term.
    """
    clipped = old_values + th.clamp(values - old_values, -clip_range, clip_range)
    unclipped_is_larger = (values - returns).square() >= (clipped - returns).square()
    return th.where(unclipped_is_larger, values, clipped)


@contextmanager
def max_form_value_clip(policy: Any, rollout_buffer: Any, clip_range: float) -> Iterator[None]:
    """Within: ``policy.evaluate_actions`` on the observations of the minibatch ``rollout_buffer`` last yielded
    returns :func:`max_form_values` in place of its values (any other call, such as DrAC's on augmented
    observations, is left as it is). SB3's PPO.train must run with ``clip_range_vf=None`` inside."""
    evaluate = policy.evaluate_actions

    def evaluate_actions(obs: Any, actions: th.Tensor, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        values, log_prob, entropy = evaluate(obs, actions, *args, **kwargs)
        batch = current_minibatch(rollout_buffer)
        if batch is not None and obs is batch.observations:
            values = max_form_values(values.flatten(), batch.old_values, batch.returns, clip_range).view_as(values)
        return values, log_prob, entropy

    policy.evaluate_actions = evaluate_actions
    try:
        yield
    finally:
        del policy.evaluate_actions


__all__ = ["VALUE_CLIP_FORMS", "check_value_clip_form", "max_form_value_clip", "max_form_values"]
