"""Bit-exact golden models of the elementwise units (fixed-point in, fixed-point out).

Formats in :mod:`.formats`; every function validates its input range and raises ``ValueError``
naming the parameter.  Each is exactly what the matching RTL unit in ``rtl/nonlinear`` computes.
"""

from __future__ import annotations

import numpy as np

from heatvit.nonlinear_config import NonlinearConfig

from ..checks import as_int_array, signed_range, unsigned_range
from ..requant import round_shift
from . import formats as F
from .ppoly import evaluate
from .tables import table


def _shift_round(p, sh):
    """round_half_away(p / 2**sh) for sh >= 0, with shifts >= 62 giving 0 (p < 2**61)."""
    sh = np.asarray(sh, dtype=np.int64)
    big = sh >= 62
    return np.where(big, 0, round_shift(p, np.where(big, 0, sh)))


def gelu_fixed(x, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """GELU on signed 20-bit Q7.12 ``x``; result signed Q7.12 (same format).

    ``x >= 8``: ``x`` (GELU(x) = x to within 2**-40 there); ``x < -8``: 0; otherwise the table
    at index ``x + 2**15``, rounded from its guard bits.
    """
    x = as_int_array("x", x, *signed_range(F.ACT_BITS))
    half = 1 << (F.GELU_TABLE_BITS - 1)
    u = np.clip(x + half, 0, (1 << F.GELU_TABLE_BITS) - 1)
    y = round_shift(evaluate(table("gelu", cfg), u), F.GUARD)
    return np.where(x >= half, x, np.where(x < -half, 0, y))


def sigmoid_fixed(x, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """Sigmoid on signed 20-bit Q7.12 ``x``; result unsigned Q1.15 in ``[0, 2**15]``.

    The table covers ``|x| < 16`` (index ``min(|x|, 2**16 - 1)``); negative inputs use
    ``sigmoid(-x) = 1 - sigmoid(x)`` exactly (``2**15 - y``).
    """
    x = as_int_array("x", x, *signed_range(F.ACT_BITS))
    u = np.minimum(np.abs(x), (1 << F.SIGMOID_TABLE_BITS) - 1)
    y = np.minimum(round_shift(evaluate(table("sigmoid", cfg), u), F.GUARD), 1 << F.SIGMOID_FRAC)
    return np.where(x < 0, (1 << F.SIGMOID_FRAC) - y, y)


def pow2_neg(z, out_frac: int = F.POW2_FRAC, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """``2**-(z / 2**18)`` for unsigned 23-bit Q5.18 ``z``, as unsigned Q1.``out_frac``.

    ``k = z >> 18``, ``f = z mod 2**18``; the table gives ``2**-f`` (Q1.22 + guard bits), then one
    rounding shift by ``k + guard + 22 - out_frac``.  Result in ``[0, 2**out_frac]``.
    """
    if not 0 <= out_frac <= F.POW2_FRAC:
        raise ValueError(f"out_frac = {out_frac} is out of range; allowed [0, {F.POW2_FRAC}]")
    z = as_int_array("z", z, *unsigned_range(F.POW2_IN_BITS))
    k = z >> F.POW2_IN_FRAC
    f = z & ((1 << F.POW2_IN_FRAC) - 1)
    p = evaluate(table("pow2", cfg), f)
    return _shift_round(p, k + F.GUARD + F.POW2_FRAC - out_frac)


def exp_z(x) -> np.ndarray:
    """The exp unit's range reduction: Q4.12 ``x`` -> ``z = x * log2(e)`` in Q5.18 (rounded)."""
    return round_shift(np.asarray(x, np.int64) * F.LOG2E_Q, F.LOG2E_FRAC + F.EXP_IN_FRAC - F.POW2_IN_FRAC)


def exp_neg(x, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """``exp(-x)`` for unsigned 16-bit Q4.12 ``x`` (x in [0, 16)), as unsigned Q1.15 in [0, 2**15]."""
    x = as_int_array("x", x, *unsigned_range(F.EXP_IN_BITS))
    return pow2_neg(exp_z(x), F.EXP_OUT_FRAC, cfg)


def _normalize(x, in_bits: int, name: str):
    """Leading-one position ``e`` and the ``MANT_BITS`` fraction bits (truncated) of ``x >= 1``."""
    x = as_int_array(name, x, 1, (1 << in_bits) - 1)
    e = np.zeros(x.shape, dtype=np.int64)
    v = x.copy()
    for b in (32, 16, 8, 4, 2, 1):             # floor(log2 x), exact for x < 2**63
        big = v >= (1 << b)
        e += np.where(big, b, 0)
        v = np.where(big, v >> b, v)
    mb = F.MANT_BITS
    mant = np.where(e >= mb, x >> np.maximum(e - mb, 0), x << np.maximum(mb - e, 0))
    return x, e, mant


def reciprocal(x, in_bits: int = 32, cfg: NonlinearConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``1/x`` for unsigned ``x`` in ``[1, 2**in_bits)`` as ``(r, e)``: ``1/x ~= r * 2**-(16 + e)``.

    ``e = floor(log2 x)``; ``r`` in ``[2**15, 2**16]`` is the table's ``1/m`` at the mantissa
    ``m = x / 2**e`` truncated to 18 fraction bits.
    """
    if not 1 <= in_bits <= 62:
        raise ValueError(f"in_bits = {in_bits} is out of range; allowed [1, 62]")
    x, e, mant = _normalize(x, in_bits, "x")
    u = mant - (1 << F.MANT_BITS)
    r = round_shift(evaluate(table("reciprocal", cfg), u), F.GUARD)
    return r, e


def rsqrt(x, in_bits: int = 32, cfg: NonlinearConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``1/sqrt(x)`` for unsigned ``x`` in ``[1, 2**in_bits)`` as ``(r, k)``: ``~= r * 2**-(16 + k)``.

    ``e = floor(log2 x)``, ``k = e >> 1``; the mantissa ``m = x / 2**(2k)`` in ``[1, 4)`` is
    truncated to 18 fraction bits; ``r`` in ``[2**15, 2**16]``.
    """
    if not 1 <= in_bits <= 62:
        raise ValueError(f"in_bits = {in_bits} is out of range; allowed [1, 62]")
    x, e, mant = _normalize(x, in_bits, "x")
    odd = e & 1
    # one more fraction bit of x when e is odd: m in [2, 4)
    mb = F.MANT_BITS
    sh = e - odd - mb
    m2 = np.where(sh >= 0, x >> np.maximum(sh, 0), x << np.maximum(-sh, 0))
    u = m2 - (1 << mb)
    r = round_shift(evaluate(table("rsqrt", cfg), u), F.GUARD)
    return r, e >> 1


def divide(num, den, frac: int = 0, den_bits: int = 32, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """``round(num / den * 2**frac)`` through the reciprocal unit (``num`` signed, ``den >= 1``).

    ``q = round_half_away(num * r / 2**(16 + e - frac))`` with ``(r, e) = reciprocal(den)``;
    ``|num| < 2**40`` and ``frac <= 16``.  Relative error <= 2**-16 of the exact quotient, plus
    the final rounding.
    """
    if not 0 <= frac <= 16:
        raise ValueError(f"frac = {frac} is out of range; allowed [0, 16]")
    num = as_int_array("num", num, -(1 << 40), (1 << 40) - 1)
    r, e = reciprocal(den, den_bits, cfg)
    return _shift_round(num * r, F.RECIP_FRAC + e - frac)
