"""Row LayerNorm, bit-exact with ``rtl/nonlinear/layernorm.py``.

Per row ``x[0..N-1]`` (signed ``in_bits`` integers at scale ``s_x``), with exact integer moments::

    S1 = sum x_i,  S2 = sum x_i**2
    D  = max(N * S2 - S1**2 + eps_q, 1)          = N**2 (var + eps) / s_x**2   (exact but eps)
    (r, k) = rsqrt(D)                            1/sqrt(D) ~= r * 2**-(16 + k)
    c_i = N * x_i - S1                           = N (x_i - mean) / s_x        (exact)
    t_i = round_half_away(c_i * r / 2**(16 + k - 12))       normalised value, Q.12
    y_i = sat_out(round_half_away((t_i * G_i + B_i) / 2**(12 + g_shift)))

with ``G_i = round(gamma_i / s_out * 2**g_shift)`` (signed 18-bit), ``B_i = round(beta_i / s_out *
2**(12 + g_shift))`` and ``eps_q = round(N**2 * eps / s_x**2)``, all from :func:`layernorm_params`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from heatvit.nonlinear_config import NonlinearConfig

from ..checks import as_int_array, signed_range
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


def moments_bits(in_bits: int, dim_bits: int) -> int:
    """Unsigned width of ``D`` (the rsqrt input)."""
    return 2 * (in_bits + dim_bits) + 1


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
    for name, v in (("s_x", s_x), ("s_out", s_out)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and positive, got {v}")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and non-negative, got {eps}")
    if not 2 <= out_bits <= 16:
        raise ValueError(f"out_bits = {out_bits} is out of range; allowed [2, 16]")
    if not 2 <= in_bits <= 16:
        raise ValueError(f"in_bits = {in_bits} is out of range; allowed [2, 16]")
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
    eps_q = round(n * n * eps / (s_x * s_x))
    dmax = (1 << moments_bits(in_bits, cfg.dim_bits)) - 1
    if eps_q > dmax // 2:
        raise ValueError(f"eps / s_x**2 = {eps / s_x ** 2:.4g} is too large (eps_q {eps_q} > {dmax // 2})")
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
    d = np.maximum(n * s2 - s1 * s1 + p.eps_q, 1)
    r, k = rsqrt(d, moments_bits(p.in_bits, cfg.dim_bits), cfg)
    c = n * x - s1
    t = round_shift(c * r, F.RSQRT_FRAC + k - F.LN_NORM_FRAC)
    y = round_shift(t * p.gamma_q + p.beta_q, p.out_shift)
    lo, hi = signed_range(p.out_bits)
    return np.clip(y, lo, hi)
