"""A quantized Linear layer: host-side float -> int conversion and one GEMM-engine layer.

Shared by the whole-model quantizer (:mod:`heatvit.golden.vit.quantize`) and the integer token
selector (:mod:`heatvit.golden.token_selector.int_selector`), so neither imports the other.

* Weights: int8, symmetric, one scale per output channel (``max|w_row| / 127``).
* Biases: int32 at scale ``s_in * s_w[n]``; the layer ends in ``requantize`` with
  ``(mult, shift) = quantize_multiplier(s_in * s_w[n] / s_out)`` (per channel).
* Float-to-int conversion of weights and inputs rounds half away from zero, like the
  hardware's one integer rounding rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import GemmConfig
from .gemm import gemm_rows
from .requant import quantize_multiplier

QMAX = 127
"""Largest int8 magnitude used by symmetric scales."""


def quantize_float(x, scale, bits: int = 8) -> np.ndarray:
    """``clamp(round_half_away(x / scale))`` as int64 (host-side float -> int conversion)."""
    s = np.asarray(scale, dtype=np.float64)
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        raise ValueError("scale must be finite and positive")
    v = np.asarray(x, dtype=np.float64) / s
    q = np.trunc(v + np.copysign(0.5, v))
    lim = (1 << (bits - 1)) - 1
    return np.clip(q, -lim - 1, lim).astype(np.int64)


def act_scale(amax: float, bits: int = 8) -> float:
    """Per-tensor scale for a signed ``bits`` tensor whose calibrated max |x| is ``amax``."""
    return max(float(amax), 1e-8) / ((1 << (bits - 1)) - 1)


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


def run_linear(cfg: GemmConfig, x: np.ndarray, layer: QLinear, out_bits: int | None = None) -> np.ndarray:
    """``layer`` on int8 activations ``x`` (M, K) as the engine runs it: split into row chunks
    that fit (:func:`heatvit.golden.gemm.row_chunks`); ``out_bits`` as in
    :func:`heatvit.golden.gemm.gemm_rows`."""
    return gemm_rows(cfg, x, layer.w, layer.bias, layer.mult, layer.shift, out_bits=out_bits)
