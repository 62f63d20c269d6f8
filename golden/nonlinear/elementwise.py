"""Caller-facing GELU and sigmoid: any integer input at a float scale -> integer output at a float scale.

Three integer steps, all bit-exact with the RTL (``rtl/nonlinear/act.py``)::

    xq = sat20(round_half_away(x * in_mult / 2**in_shift))       Q7.12 core input
    g  = gelu_fixed(xq)  |  sigmoid_fixed(xq)                      Q7.12 | Q1.15 core output
    y  = clamp(round_half_away(g * out_mult / 2**out_shift), out_min, out_max)

``in_mult / 2**in_shift ~= s_in * 2**12`` and ``out_mult / 2**out_shift ~= 2**-12 / s_out``
(GELU) or ``2**-15 / s_out`` (sigmoid), 16-bit unsigned multipliers from
:func:`heatvit.golden.quantize_multiplier`.  Use :func:`gelu_params` / :func:`sigmoid_params`;
never build :class:`ActParams` by hand.

Output scales: at least the core's LSB (``s_out >= 2**-12`` for GELU, ``>= 2**-15`` for sigmoid,
:data:`GELU_S_OUT_MIN` / :data:`SIGMOID_S_OUT_MIN`): a finer output scale would only stretch the
core's steps (8 LSB apart at ``s_out = 3.3e-5``), so it is rejected; quantizers clamp their
calibrated GELU/sigmoid output scales to these minima.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heatvit.nonlinear_config import NonlinearConfig

from ..checks import as_int_array, int_param, scale_param, signed_range
from ..requant import quantize_multiplier, round_shift
from . import formats as F
from .units import gelu_fixed, sigmoid_fixed


GELU_S_OUT_MIN = 2.0 ** -F.ACT_FRAC
"""Finest GELU output scale: the LSB of the core's Q7.12 output."""
SIGMOID_S_OUT_MIN = 2.0 ** -F.SIGMOID_FRAC
"""Finest sigmoid output scale: the LSB of the core's Q1.15 output."""


@dataclass(frozen=True)
class ActParams:
    """Integer parameters of one elementwise activation (per tensor)."""
    in_mult: int
    in_shift: int
    out_mult: int
    out_shift: int
    out_min: int
    out_max: int
    in_bits: int
    s_in: float
    s_out: float


def _mult(scale: float, what: str) -> tuple[int, int]:
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"{what} must be finite and positive, got {scale}")
    m, s = quantize_multiplier(scale, mult_bits=F.MULT_BITS)
    if int(m) == 0:
        raise ValueError(f"{what} = {scale:.3g} is too small for a {F.MULT_BITS}-bit multiplier "
                         f"and a shift <= 49")
    return int(m), int(s)


def _params(s_in, s_out, core_frac, out_min, out_max, in_bits, unit) -> ActParams:
    in_bits = int_param("in_bits", in_bits, 2, 32)
    s_in, s_out = scale_param("s_in", s_in), scale_param("s_out", s_out)
    if s_out < 2.0 ** -core_frac:
        raise ValueError(f"s_out = {s_out:.4g} is finer than the {unit} core's output LSB 2**-{core_frac} = "
                         f"{2.0 ** -core_frac:.4g}; allowed s_out >= {2.0 ** -core_frac:.4g}")
    try:
        im, ish = _mult(float(s_in) * (1 << F.ACT_FRAC), "s_in * 2**12")
    except ValueError as e:
        raise ValueError(f"s_in = {s_in}: {e} (allowed s_in <= 16)") from None
    om, osh = _mult((2.0 ** -core_frac) / float(s_out), f"2**-{core_frac} / s_out")
    return ActParams(im, ish, om, osh, out_min, out_max, in_bits, float(s_in), float(s_out))


def gelu_params(s_in: float, s_out: float, *, out_bits: int = 8, in_bits: int = 32) -> ActParams:
    """GELU of signed ``in_bits`` inputs at scale ``s_in`` to signed ``out_bits`` at ``s_out``."""
    out_bits = int_param("out_bits", out_bits, 2, 20)
    lo, hi = signed_range(out_bits)
    return _params(s_in, s_out, F.ACT_FRAC, lo, hi, in_bits, "GELU")


def sigmoid_params(s_in: float, s_out: float = 2.0 ** -15, *, out_bits: int = 16, signed: bool = False,
                   in_bits: int = 32) -> ActParams:
    """Sigmoid of signed ``in_bits`` inputs at ``s_in`` to ``[0, out_max]`` at scale ``s_out``.

    ``out_max = 2**out_bits - 1`` (unsigned) or ``2**(out_bits-1) - 1`` (``signed=True``, e.g. to
    feed an int8 GEMM).  The default (``s_out = 2**-15``, 16 bits) returns the core's Q1.15 exactly.
    """
    out_bits = int_param("out_bits", out_bits, 2, 16)
    hi = (1 << (out_bits - 1)) - 1 if signed else (1 << out_bits) - 1
    return _params(s_in, s_out, F.SIGMOID_FRAC, 0, hi, in_bits, "sigmoid")


def requant_in(x, p: ActParams) -> np.ndarray:
    """Step 1: the input into the core's Q7.12 format (saturating at [-128, 128))."""
    x = as_int_array("x", x, *signed_range(p.in_bits))
    lo, hi = signed_range(F.ACT_BITS)
    return np.clip(round_shift(x * p.in_mult, p.in_shift), lo, hi)


def requant_out(g, p: ActParams) -> np.ndarray:
    """Step 3: core output to the caller's format (saturating)."""
    return np.clip(round_shift(np.asarray(g, np.int64) * p.out_mult, p.out_shift), p.out_min, p.out_max)


def gelu(x, p: ActParams, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """GELU of integer ``x`` (scale ``p.s_in``) as integers at scale ``p.s_out``; see module doc."""
    return requant_out(gelu_fixed(requant_in(x, p), cfg), p)


def sigmoid(x, p: ActParams, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """Sigmoid of integer ``x`` (scale ``p.s_in``) as integers in ``[0, p.out_max]`` at ``p.s_out``."""
    return requant_out(sigmoid_fixed(requant_in(x, p), cfg), p)
