"""Row LayerNorm, bit-exact with ``rtl/nonlinear/layernorm.py``.

Per row ``x[0..N-1]`` (signed ``in_bits`` integers at scale ``s_x``), with exact integer moments::

    S1 = sum x_i,  S2 = sum x_i**2
    D  = max((N * S2 - S1**2) * 2**8 + eps_q, 1) = 2**8 N**2 (var + eps) / s_x**2  (exact but eps)
    (r, k) = rsqrt(D)                            1/sqrt(D) ~= r * 2**-(16 + k)
    c_i = N * x_i - S1                           = N (x_i - mean) / s_x        (exact)
    t_i = round_half_away(c_i * r / 2**(16 + k - 12 - 4))   normalised value, Q.12
    y_i = sat_out(round_half_away((t_i * G_i + B_i) / 2**(12 + g_shift)))

with ``G_i = round(gamma_i / s_out * 2**g_shift)`` (signed 18-bit), ``B_i = round(beta_i / s_out *
2**(12 + g_shift))`` and ``eps_q = round(2**8 * N**2 * eps / s_x**2)`` (eps with
``LN_EPS_FRAC`` = 8 fraction bits below the variance's LSB), all from :func:`layernorm_params`.

Accuracy: within 1 LSB of the float LayerNorm (rounded, saturated) for every row length
1 .. ``max_dim``, every input width 2 .. 16 and outputs of up to 8 bits; wider outputs are
rejected (the Q.12 normalised value and the 16-bit rsqrt then dominate: 16 output bits miss by
tens of LSBs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heatvit.nonlinear_config import NonlinearConfig

from ..checks import as_int_array, int_param, scale_param, signed_range
from ..requant import round_shift
from . import formats as F
from .reference import round_half_away
from .units import rsqrt


@dataclass(frozen=True)
class LayerNormParams:
    gamma_q: np.ndarray      # int64 [N], signed LN_GAMMA_BITS
    beta_q: np.ndarray       # int64 [N], signed LN_BETA_BITS
    g_shift: int
    eps_q: int
    out_bits: int
    in_bits: int
    s_x: float
    s_out: float

    @property
    def n(self) -> int:
        return int(self.gamma_q.shape[0])

    @property
    def out_shift(self) -> int:
        return F.LN_NORM_FRAC + self.g_shift


MAX_OUT_BITS = 8
"""Widest output for which the 1 LSB bound holds (and :func:`layernorm_params` accepts)."""


def moments_bits(in_bits: int, dim_bits: int) -> int:
    """Unsigned width of ``D`` (the rsqrt input, eps's fraction bits included) and of ``eps_q``."""
    bits = 2 * (in_bits + dim_bits) + 1 + F.LN_EPS_FRAC
    if bits > 62:
        raise ValueError(f"LayerNorm: {in_bits}-bit inputs with {dim_bits}-bit row lengths need a "
                         f"{bits}-bit variance; allowed <= 62 bits (lower layernorm_in_bits or max_dim)")
    return bits


def layernorm_params(gamma, beta, eps: float, s_x: float, s_out: float, *, out_bits: int = 8,
                     in_bits: int = 8, cfg: NonlinearConfig | None = None) -> LayerNormParams:
    """Quantize float ``gamma``/``beta`` [N] and ``eps`` for inputs at ``s_x`` and outputs at ``s_out``."""
    cfg = cfg or NonlinearConfig()
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if gamma.ndim != 1 or beta.shape != gamma.shape:
        raise ValueError(f"gamma and beta must be 1-D of equal length, got {gamma.shape} and {beta.shape}")
    n = gamma.shape[0]
    if not 1 <= n <= cfg.max_dim:
        raise ValueError(f"row length {n} is out of range; allowed [1, {cfg.max_dim}] (NonlinearConfig.max_dim)")
    if not (np.all(np.isfinite(gamma)) and np.all(np.isfinite(beta))):
        raise ValueError("gamma and beta must be finite")
    s_x, s_out = scale_param("s_x", s_x), scale_param("s_out", s_out)
    eps = float(eps) if isinstance(eps, (int, float, np.integer, np.floating)) else eps
    if not (isinstance(eps, float) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and non-negative, not {eps!r}")
    out_bits = int_param("out_bits", out_bits, 2, MAX_OUT_BITS)     # wider would miss the 1 LSB bound
    in_bits = int_param("in_bits", in_bits, 2, 16)
    g = gamma / s_out
    gmax = float(np.abs(g).max())
    top = (1 << (F.LN_GAMMA_BITS - 1)) - 1
    g_shift = 30 if gmax == 0 else min(30, math.floor(math.log2(top / gmax)))
    if g_shift < 0:
        raise ValueError(f"max |gamma| / s_out = {gmax:.4g} exceeds {top}; use a larger s_out")
    gamma_q = round_half_away(g * (1 << g_shift)).astype(np.int64)
    gamma_q = np.clip(gamma_q, -top, top)
    bq = round_half_away(beta / s_out * float(1 << (F.LN_NORM_FRAC + g_shift)))
    blim = (1 << (F.LN_BETA_BITS - 1)) - 1
    if np.any(np.abs(bq) > blim):
        raise ValueError(f"max |beta| / s_out = {np.abs(beta / s_out).max():.4g} is too large for "
                         f"{F.LN_BETA_BITS}-bit beta at shift {F.LN_NORM_FRAC + g_shift}")
    eps_f = n * n * eps / (s_x * s_x) * (1 << F.LN_EPS_FRAC)
    dmax = (1 << moments_bits(in_bits, cfg.dim_bits)) - 1
    if not eps_f <= dmax // 2:
        raise ValueError(f"eps / s_x**2 = {eps / s_x ** 2:.4g} is too large (eps_q {eps_f:.4g} > {dmax // 2})")
    eps_q = round(eps_f)
    return LayerNormParams(gamma_q, bq.astype(np.int64), g_shift, int(eps_q), out_bits, in_bits,
                           float(s_x), float(s_out))


def layernorm(x, p: LayerNormParams, cfg: NonlinearConfig | None = None) -> np.ndarray:
    """LayerNorm over the last axis of integer ``x`` (length ``p.n``); signed ``p.out_bits`` out."""
    cfg = cfg or NonlinearConfig()
    x = as_int_array("x", x, *signed_range(p.in_bits))
    if x.ndim == 0 or x.shape[-1] != p.n:
        raise ValueError(f"x must have rows of {p.n} elements (last axis), got shape {x.shape}")
    n = p.n
    s1 = x.sum(axis=-1, keepdims=True)
    s2 = (x * x).sum(axis=-1, keepdims=True)
    d = np.maximum(((n * s2 - s1 * s1) << F.LN_EPS_FRAC) + p.eps_q, 1)
    r, k = rsqrt(d, moments_bits(p.in_bits, cfg.dim_bits), cfg)
    c = n * x - s1
    t = round_shift(c * r, F.RSQRT_FRAC + k - F.LN_NORM_FRAC - F.LN_EPS_FRAC // 2)
    y = round_shift(t * p.gamma_q + p.beta_q, p.out_shift)
    lo, hi = signed_range(p.out_bits)
    return np.clip(y, lo, hi)
