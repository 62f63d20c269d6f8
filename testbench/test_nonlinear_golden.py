"""Golden nonlinear models against float64 references: exhaustive where the domain allows."""

import numpy as np
import pytest

from heatvit.golden import nonlinear as NL
from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear import tables
from heatvit.golden.nonlinear.reference import (gelu_ref, layernorm_ref, round_half_away, sigmoid_ref,
                                                 softmax_ref)
from heatvit.nonlinear_config import NonlinearConfig


def _max_lsb(y, ref):
    return float(np.abs(np.asarray(y, np.float64) - round_half_away(ref)).max())


def test_gelu_sigmoid_exhaustive():
    x = np.arange(-(1 << (F.ACT_BITS - 1)), 1 << (F.ACT_BITS - 1))
    xf = x / (1 << F.ACT_FRAC)
    assert _max_lsb(NL.gelu_fixed(x), gelu_ref(xf) * (1 << F.ACT_FRAC)) <= 1
    assert _max_lsb(NL.sigmoid_fixed(x), sigmoid_ref(xf) * (1 << F.SIGMOID_FRAC)) <= 1


def test_exp_pow2_exhaustive():
    x = np.arange(1 << F.EXP_IN_BITS)
    assert _max_lsb(NL.exp_neg(x), np.exp(-x / (1 << F.EXP_IN_FRAC)) * (1 << F.EXP_OUT_FRAC)) <= 1
    z = np.arange(1 << F.POW2_IN_BITS)
    assert _max_lsb(NL.pow2_neg(z), np.exp2(-z / (1 << F.POW2_IN_FRAC)) * (1 << F.POW2_FRAC)) <= 1


def test_reciprocal_rsqrt():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.arange(1, 1 << 16), rng.integers(1, 1 << 32, 200_000), [(1 << 32) - 1]])
    r, e = NL.reciprocal(x)
    assert _max_lsb(r, 2.0 ** (16 + e) / x) <= 1
    r, k = NL.rsqrt(x)
    assert _max_lsb(r, 2.0 ** (16 + k) / np.sqrt(x)) <= 1
    q = NL.divide(np.array([7, -7, 1000]), np.array([2, 2, 3]), frac=0)
    assert q.tolist() == [4, -4, 333]


def test_softmax_random_and_adversarial():
    rng = np.random.default_rng(1)
    for s_in, spread, n in [(1e-3, 4000, 197), (0.1, 30, 50), (3e-6, 2_000_000, 256)]:
        p = NL.softmax_params(s_in)
        x = np.clip(rng.normal(0, spread, (500, n)), -2**31, 2**31 - 1).astype(np.int64)
        assert _max_lsb(NL.softmax(x, p), softmax_ref(x * s_in) * 255) <= 1
    p = NL.softmax_params(0.01, out_max=127)
    for row in (np.zeros(256, int), np.full(256, 2**31 - 1), np.full(256, -2**31),
                np.r_[2**31 - 1, np.full(255, -2**31)], np.array([5])):
        assert _max_lsb(NL.softmax(row, p), softmax_ref(row * 0.01) * 127) <= 1


def test_layernorm_random_and_adversarial():
    rng = np.random.default_rng(2)
    for n, sx, so in [(192, 0.05, 0.04), (768, 0.02, 0.05), (7, 0.1, 0.02)]:
        g, b = rng.normal(1, 0.3, n), rng.normal(0, 0.5, n)
        p = NL.layernorm_params(g, b, 1e-6, sx, so)
        x = rng.integers(-128, 128, (300, n))
        rows = [x, np.zeros((1, n), int), np.full((1, n), 127), np.full((1, n), -128),
                np.r_[[127], np.full(n - 1, -128)][None]]
        for xr in rows:
            ref = np.clip(round_half_away(layernorm_ref(xr * sx, g, b, 1e-6) / so), -128, 127)
            assert _max_lsb(NL.layernorm(xr, p), ref) <= 1


def test_table_error_names_where_and_how_much():
    with pytest.raises(NL.TableError, match=r"gelu: .* misses it by [0-9.e-]+ LSB .* at x = "):
        tables.build("gelu", NonlinearConfig(max_segments_log2=2, max_degree=1))


def test_bad_inputs():
    with pytest.raises(ValueError, match="x has values"):
        NL.gelu_fixed([1 << 19])
    with pytest.raises(ValueError, match="integer array"):
        NL.exp_neg(np.array([0.5]))
    with pytest.raises(ValueError, match="allowed range"):
        NL.reciprocal([0])
    with pytest.raises(ValueError, match="rows of 1 .. 256"):
        NL.softmax(np.zeros(257, int), NL.softmax_params(0.1))
    with pytest.raises(ValueError, match="s_in"):
        NL.gelu_params(100.0, 0.1)
    with pytest.raises(ValueError, match="rows of 4"):
        NL.layernorm(np.zeros(5, int), NL.layernorm_params(np.ones(4), np.zeros(4), 1e-6, 0.1, 0.1))
    with pytest.raises(ValueError, match="max_degree"):
        NonlinearConfig(max_degree=9)
