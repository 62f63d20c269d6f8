"""Requantization: the one rounding rule of the accelerator.

An int32 accumulator ``acc`` (scale ``s_a * s_w[n]``) plus an int32 bias of the same scale
becomes an output of ``out_bits`` (scale ``s_y``) through an integer multiplier and right shift::

    x = acc + bias                                  exact, 33-bit signed
    p = x * mult                                    exact, mult unsigned (mult_bits)
    q = round_half_away_from_zero(p / 2**shift)     = (p + 2**(shift-1) - [p < 0]) >> shift
    y = clamp(q, -2**(out_bits-1), 2**(out_bits-1) - 1)

so ``y ~= (acc + bias) * s_a * s_w[n] / s_y`` with ``mult / 2**shift ~= s_a * s_w[n] / s_y``.
``shift = 0`` means no rounding.  The right shift is arithmetic (floor), which together with
the ``- [p < 0]`` term rounds ties away from zero.  Saturation, not wrap-around, on overflow.
All of this is what rtl/gemm/requantizer.py does bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import as_int_array, signed_range, unsigned_range


def round_shift(p: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Divide int64 ``p`` by ``2**shift`` rounding half away from zero (shift >= 0, elementwise)."""
    p = np.asarray(p, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    neg = ((p < 0) & (shift > 0)).astype(np.int64)
    return np.right_shift(p + half - neg, shift)


def requantize(acc, bias, mult, shift, *, out_bits: int = 8, acc_bits: int = 32,
               bias_bits: int = 32, mult_bits: int = 16, max_shift: int = 49) -> np.ndarray:
    """Requantize ``acc[..., N]`` with per-channel ``bias[N]``, ``mult[N]``, ``shift[N]``.

    Returns int64 values in ``[-2**(out_bits-1), 2**(out_bits-1) - 1]``.  Per-tensor parameters
    may be given as scalars (they broadcast).
    """
    if not 2 <= out_bits <= 32:
        raise ValueError(f"out_bits = {out_bits} is out of range; allowed [2, 32]")
    acc = as_int_array("acc", acc, *signed_range(acc_bits))
    bias = as_int_array("bias", bias, *signed_range(bias_bits))
    mult = as_int_array("mult", mult, *unsigned_range(mult_bits))
    shift = as_int_array("shift", shift, 0, max_shift)
    if acc_bits + 1 + mult_bits + 1 > 63:
        raise ValueError(f"acc_bits + mult_bits = {acc_bits + mult_bits} does not fit int64 arithmetic")
    p = (acc + bias) * mult
    q = round_shift(p, shift)
    lo, hi = signed_range(out_bits)
    return np.clip(q, lo, hi)


def quantize_multiplier(scale, *, mult_bits: int = 16, max_shift: int = 49) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``(mult, shift)`` with ``mult / 2**shift`` closest to each positive real ``scale``.

    ``mult`` is normalized into ``[2**(mult_bits-1), 2**mult_bits)`` where the shift range
    allows, which keeps the relative error below ``2**-mult_bits``.  A scale too large to
    express raises ``ValueError``; one too small becomes ``mult = 0`` (output all zero).
    """
    s = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("scale must be finite and non-negative")
    mults = np.zeros(s.shape, dtype=np.int64)
    shifts = np.zeros(s.shape, dtype=np.int64)
    top = (1 << mult_bits) - 1
    for i, v in enumerate(s.flat):
        if v == 0:
            continue
        e = math.floor(math.log2(v))
        sh = mult_bits - 1 - e                       # puts v * 2**sh in [2**(mb-1), 2**mb)
        sh = min(max(sh, 0), max_shift)
        m = round(v * (1 << sh))
        if m > top:                                   # rounding carried into the next power
            if sh == 0:
                raise ValueError(f"scale {v} needs a multiplier above {top} with shift 0")
            sh -= 1
            m = round(v * (1 << sh))
        if m > top:
            raise ValueError(f"scale {v} cannot be expressed with mult_bits = {mult_bits}")
        mults.flat[i], shifts.flat[i] = m, sh
    return mults.reshape(np.shape(scale)), shifts.reshape(np.shape(scale))
