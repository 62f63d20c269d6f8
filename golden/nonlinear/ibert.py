"""I-BERT's integer kernels (Kim et al., ICML 2021), the baseline of the error table.

Integer-only, as published: ``i_poly`` with ``q_b = floor(b / S)``, ``q_c = floor(c / (a S**2))``;
i-GELU with a = -0.2888, b = -1.769 (erf, clipped at -b); i-exp with exp(p) ~ 0.3585 (p + 1.353)**2
+ 0.344 after ``x = -z ln2 + p`` and a right shift by ``z``; softmax with ``floor(2**32 / sum)``
style normalisation; LayerNorm with an integer (floor) square root.  Each result is an integer at
I-BERT's own output scale; the bench converts it to our output format with one exact rounding
(which flatters I-BERT: its hardware would need a requantizer there too).
"""

from __future__ import annotations

import math

import numpy as np

GELU_A, GELU_B = -0.2888, -1.769
EXP_A, EXP_B, EXP_C = 0.3585, 1.353, 0.344


def i_poly(q, s, a, b, c):
    """``a (x + b)**2 + c`` on integer ``q`` at scale ``s``: (integer, scale)."""
    q_b = math.floor(b / s)
    q_c = math.floor(c / (a * s * s))
    return (np.asarray(q, np.int64) + q_b) ** 2 + q_c, a * s * s


def i_erf(q, s):
    q = np.asarray(q, np.int64)
    q_b = math.floor(GELU_B / s)
    q_abs = np.minimum(np.abs(q), -q_b)
    q_l, s_l = i_poly(q_abs, s, GELU_A, GELU_B, 1.0)
    return np.sign(q) * q_l, s_l


def i_gelu(q, s):
    """GELU(q s) ~= result * scale."""
    q = np.asarray(q, np.int64)
    q_erf, s_erf = i_erf(q, s / math.sqrt(2.0))
    q_1 = math.floor(1.0 / s_erf)
    return q * (q_erf + q_1), s * s_erf / 2.0


def i_exp(q, s):
    """exp(q s) for q <= 0 ~= result * scale."""
    q = np.asarray(q, np.int64)
    q_ln2 = math.floor(math.log(2.0) / s)
    z = (-q) // q_ln2
    p = q + z * q_ln2
    q_l, s_l = i_poly(p, s, EXP_A, EXP_B, EXP_C)
    return np.right_shift(q_l, np.minimum(z, 62)), s_l


def softmax(x, s, out_max: int = 255):
    """Rows of integer scores at scale ``s``: ``floor(e_i * floor(2**32 out_max / sum) / 2**32)``."""
    x = np.asarray(x, np.int64)
    e, _ = i_exp(x - x.max(axis=-1, keepdims=True), s)
    e = e.astype(object)
    total = e.sum(axis=-1, keepdims=True)
    factor = (2 ** 32 * out_max) // total
    return np.asarray((e * factor) // 2 ** 32, dtype=np.int64)


def isqrt_floor(v):
    """I-BERT's integer Newton square root (floor) of non-negative integers."""
    return np.array([math.isqrt(int(t)) for t in np.asarray(v).ravel()], dtype=np.int64).reshape(np.shape(v))


def layernorm(x, gamma, beta, eps, s_x, s_out, out_bits: int = 8):
    """I-BERT-style LayerNorm of integer rows: integer mean/variance, floor sqrt, 2**31/std factor."""
    x = np.asarray(x, np.int64)
    n = x.shape[-1]
    mean = np.floor_divide(x.sum(axis=-1, keepdims=True) * 2 + n, 2 * n)     # rounded integer mean
    c = x - mean
    var = (c * c).sum(axis=-1, keepdims=True) // n + round(eps / (s_x * s_x))
    std = np.maximum(isqrt_floor(var), 1)
    factor = (1 << 31) // std
    normed = (c * factor).astype(np.float64) / 2 ** 31
    y = normed * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)
    lim = 1 << (out_bits - 1)
    return np.clip(np.trunc(y / s_out + np.copysign(0.5, y)), -lim, lim - 1).astype(np.int64)
