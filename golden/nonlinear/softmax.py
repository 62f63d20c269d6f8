"""Row softmax, bit-exact with ``rtl/nonlinear/softmax.py``.

Per row ``x[0..N-1]`` (signed ``in_bits`` scores at scale ``s_in``, e.g. q.k^T accumulators at
``s_q * s_k / sqrt(d_head)``)::

    m   = max(x)
    z_i = min(round_half_away((m - x_i) * mult / 2**shift), 2**23 - 1)   Q5.18, = (m - x_i) s_in log2(e)
    e_i = pow2_neg(z_i, 22)                     unsigned Q1.22 in [0, 2**22]   (= exp(s_in (x_i - m)))
    S   = sum_i e_i                             >= 2**22 (the maximum contributes exactly 2**22)
    (r, E) = reciprocal(S)                      1/S ~= r * 2**-(16 + E)
    f   = r * out_max                           one product per row
    p_i = min(round_half_away(e_i * f / 2**(16 + E)), out_max)

so ``p_i ~= out_max * softmax(s_in * x)_i``: output scale ``1 / out_max`` (255: uint8; 127: fits an
int8 GEMM operand).  ``mult`` is 24-bit unsigned with ``mult / 2**shift ~= s_in * log2(e) * 2**18``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heatvit.nonlinear_config import NonlinearConfig

from ..checks import as_int_array, int_param, scale_param, signed_range
from ..requant import quantize_multiplier, round_shift
from . import formats as F
from .units import _shift_round, pow2_neg, reciprocal


@dataclass(frozen=True)
class SoftmaxParams:
    mult: int
    shift: int
    out_max: int
    in_bits: int
    s_in: float

    @property
    def s_out(self) -> float:
        return 1.0 / self.out_max


def softmax_params(s_in: float, *, out_max: int = 255, in_bits: int = 32) -> SoftmaxParams:
    """Integer parameters for scores at scale ``s_in`` (any positive float up to ~44)."""
    s_in = scale_param("s_in", s_in)
    out_max = int_param("out_max", out_max, 1, 255)
    in_bits = int_param("in_bits", in_bits, 2, 32)
    scale = s_in * math.log2(math.e) * (1 << F.POW2_IN_FRAC)
    try:
        m, s = quantize_multiplier(scale, mult_bits=F.SOFTMAX_MULT_BITS, max_shift=63)
    except ValueError:
        raise ValueError(f"s_in = {s_in} is too large; allowed s_in <= 44") from None
    if int(m) == 0:
        raise ValueError(f"s_in = {s_in} is too small (every score difference would round to 0)")
    return SoftmaxParams(int(m), int(s), out_max, in_bits, float(s_in))


def softmax_exp(x, p: SoftmaxParams, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """The row's exponentials ``e_i`` (Q1.22), the first half of :func:`softmax`."""
    d = x.max(axis=-1, keepdims=True) - x
    z = np.minimum(_shift_round(d * p.mult, p.shift), (1 << F.POW2_IN_BITS) - 1)
    return pow2_neg(z, F.SOFTMAX_EXP_FRAC, cfg)


def softmax(x, p: SoftmaxParams, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """Softmax over the last axis of integer ``x`` (rows of 1 .. ``cfg.max_tokens``); ints in [0, out_max]."""
    cfg = cfg or NonlinearConfig()
    x = as_int_array("x", x, *signed_range(p.in_bits))
    if x.ndim == 0 or not 1 <= x.shape[-1] <= cfg.max_tokens:
        raise ValueError(f"x must have rows of 1 .. {cfg.max_tokens} scores (last axis), got shape {x.shape}")
    e = softmax_exp(x, p, cfg)
    s = e.sum(axis=-1, keepdims=True)
    r, big_e = reciprocal(s, F.SOFTMAX_EXP_FRAC + 1 + cfg.token_bits, cfg)
    f = r * p.out_max
    return np.minimum(round_shift(e * f, F.RECIP_FRAC + big_e), p.out_max)
