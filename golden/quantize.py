"""Post-training quantization of the golden ViT (float weights -> the integer model's parameters).

Scheme (the accelerator's, see docs/architecture.md):

* Weights: int8, symmetric, one scale per output channel (``max|w_row| / 127``).
* Activations: int8, symmetric, one scale per tensor, calibrated as ``max|x| / 127`` over a
  calibration set run through the float model (``calib_images``); a few tensors have fixed
  scales set by their operator (softmax output, selector scores).
* Biases: int32 at scale ``s_in * s_w[n]``.  Every GEMM ends in ``requantize`` with
  ``(mult, shift) = quantize_multiplier(s_in * s_w[n] / s_out)`` (per channel).
* q, k, v come out of one qkv GEMM with three output scales (per-channel multipliers); the
  attention scale ``head_dim**-0.5`` is folded into q's multiplier.
* Residual adds rescale both int8 operands to the output scale with one shared shift and one
  rounding (see :func:`add_params`).

Float-to-int conversion of weights and inputs (host side) rounds half away from zero, like
the hardware's one integer rounding rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .requant import quantize_multiplier

QMAX = 127


def quantize_float(x, scale, bits: int = 8) -> np.ndarray:
    """``clamp(round_half_away(x / scale))`` as int64 (host-side float -> int conversion)."""
    s = np.asarray(scale, dtype=np.float64)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("scale must be finite and positive")
    v = np.asarray(x, dtype=np.float64) / s
    q = np.trunc(v + np.copysign(0.5, v))
    lim = (1 << (bits - 1)) - 1
    return np.clip(q, -lim - 1, lim).astype(np.int64)


def act_scale(amax: float) -> float:
    """Per-tensor scale for a tensor whose calibrated max |x| is ``amax``."""
    return max(float(amax), 1e-8) / QMAX


@dataclass
class QLinear:
    """One GEMM layer: ``y = requantize(x @ w + bias, mult, shift)``, all integers.

    ``w`` int8 (K, N); ``bias`` int32 (N,) at scale ``s_in * s_w``; ``mult``/``shift`` per
    channel; ``s_in``/``s_out`` the activation scales (floats, for dequantizing dumps)."""

    w: np.ndarray
    bias: np.ndarray
    mult: np.ndarray
    shift: np.ndarray
    s_in: float
    s_out: np.ndarray | float
    s_w: np.ndarray = field(repr=False, default=None)


def quantize_linear(weight: np.ndarray, bias: np.ndarray | None, s_in: float, s_out, *,
                    mult_bits: int = 16, max_shift: int = 49) -> QLinear:
    """Quantize a float ``Linear`` (``weight`` (N, K), timm layout) for input scale ``s_in`` and
    output scale(s) ``s_out`` (scalar or per output channel)."""
    weight = np.asarray(weight, dtype=np.float64)
    n = weight.shape[0]
    s_w = np.maximum(np.abs(weight).max(axis=1), 1e-12) / QMAX
    w_q = quantize_float(weight / s_w[:, None], 1.0).T          # (K, N)
    s_acc = s_in * s_w
    b = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)
    b_q = quantize_float(b, s_acc, bits=32)
    s_out_arr = np.broadcast_to(np.asarray(s_out, dtype=np.float64), (n,))
    mult, shift = quantize_multiplier(s_acc / s_out_arr, mult_bits=mult_bits, max_shift=max_shift)
    return QLinear(w_q, b_q, mult, shift, float(s_in), s_out, s_w)


def scale_params(ratio: float, *, mult_bits: int = 16, max_shift: int = 49) -> tuple[int, int]:
    """``(mult, shift)`` for a per-tensor rescale by ``ratio`` (e.g. q@k^T accumulators)."""
    m, s = quantize_multiplier(ratio, mult_bits=mult_bits, max_shift=max_shift)
    return int(m), int(s)


def add_params(s_a: float, s_b: float, s_y: float, *, mult_bits: int = 16) -> tuple[int, int, int]:
    """Residual add ``y = a + b`` of int8 ``a`` (scale s_a), ``b`` (s_b) into scale ``s_y``:
    ``(mult_a, mult_b, shift)`` with ``mult_x / 2**shift ~= s_x / s_y``, the larger multiplier
    normalized into ``[2**(mult_bits-1), 2**mult_bits)``."""
    ra, rb = s_a / s_y, s_b / s_y
    top = max(ra, rb)
    shift = max(0, mult_bits - 1 - math.floor(math.log2(top)))
    ma, mb = round(ra * (1 << shift)), round(rb * (1 << shift))
    if max(ma, mb) >= (1 << mult_bits):
        shift -= 1
        ma, mb = round(ra * (1 << shift)), round(rb * (1 << shift))
    if shift < 0 or max(ma, mb) >= (1 << mult_bits):
        raise ValueError(f"residual add: scale ratios {ra:.3g}, {rb:.3g} need a multiplier above "
                         f"{(1 << mult_bits) - 1}")
    return ma, mb, shift


def calibrate(dumps: list[dict], names: list[str] | None = None) -> dict[str, float]:
    """Max |x| of every dumped stage over all calibration dumps (a dump value may be an array
    or a list of per-image arrays)."""
    amax: dict[str, float] = {}
    for d in dumps:
        for k, v in d.items():
            if names is not None and k not in names:
                continue
            vals = v if isinstance(v, list) else [v]
            m = max(float(np.abs(np.asarray(a, dtype=np.float64)).max()) for a in vals if np.size(a))
            amax[k] = max(amax.get(k, 0.0), m)
    return amax
