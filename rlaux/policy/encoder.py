"""The encoder's precision: bfloat16 autocast where the device computes it natively (``encoder_dtype``)."""

from __future__ import annotations

import torch as th

from rlaux.errors import ConfigError

#: ``encoder_dtype`` values: the precision of the encoder's forward and backward passes.
ENCODER_DTYPES = ("float32", "bfloat16", "auto")


def fast_bfloat16(device: th.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: a CUDA GPU that supports it, or a CPU
    with AMX or AVX512-BF16 (elsewhere torch emulates bfloat16, slower than float32)."""
    if device.type == "cuda":
        return th.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(th.cpu._is_amx_tile_supported() or th.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def resolve_encoder_dtype(encoder_dtype: str, device: th.device) -> str:
    """``"auto"`` -> ``"bfloat16"`` where :func:`fast_bfloat16`, else ``"float32"``; checks the name."""
    if encoder_dtype not in ENCODER_DTYPES:
        raise ConfigError(f"unknown encoder_dtype {encoder_dtype!r}; valid: {', '.join(ENCODER_DTYPES)}")
    if encoder_dtype == "auto":
        return "bfloat16" if fast_bfloat16(device) else "float32"
    return encoder_dtype


__all__ = ["ENCODER_DTYPES", "fast_bfloat16", "resolve_encoder_dtype"]
