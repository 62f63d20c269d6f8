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


@pytest.mark.parametrize("in_bits", [8, 16])
def test_layernorm_every_row_length_within_one_lsb(in_bits):
    """Short rows with a variance of a few LSBs at scales where N**2 eps / s_x**2 is a fraction
    of the variance's LSB (eps rounded to an integer there was off by up to 16 LSB at N = 2):
    every row length 1..40 and some long ones, s_x over five decades, random gamma/beta and
    output scales; always within 1 LSB."""
    rng = np.random.default_rng(in_bits)
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    for n in list(range(1, 41)) + [64, 197, 768]:
        for sx in np.geomspace(1e-5, 1, 11):
            base = rng.integers(lo + 3, hi - 3, (24, 1))
            x = np.concatenate([base + rng.integers(-1, 2, (24, n)), base[:8] + rng.integers(-3, 4, (8, n)),
                                rng.integers(lo, hi + 1, (4, n))])
            g, b = rng.normal(1, 0.3, n), rng.normal(0, 0.2, n)
            ref = layernorm_ref(x * sx, g, b, 1e-6)
            so = np.abs(ref).max() / 127 * rng.uniform(0.8, 1.2)
            p = NL.layernorm_params(g, b, 1e-6, sx, so, in_bits=in_bits)
            err = _max_lsb(NL.layernorm(x, p), np.clip(round_half_away(ref / so), -128, 127))
            assert err <= 1, f"N = {n}, s_x = {sx:.3g}: {err} LSB"


def test_layernorm_rejects_outputs_wider_than_its_bound():
    with pytest.raises(ValueError, match=r"out_bits = 16 is out of range; allowed \[2, 8\]"):
        NL.layernorm_params(np.ones(4), np.zeros(4), 1e-6, 0.1, 0.1, out_bits=16)
    with pytest.raises(ValueError, match="67-bit variance"):
        NL.layernorm_params(np.ones(4), np.zeros(4), 1e-6, 0.1, 0.1, in_bits=16,
                            cfg=NonlinearConfig(max_dim=4096, layernorm_in_bits=16))


def test_activation_output_scale_finer_than_the_core_is_rejected():
    """A GELU/sigmoid output scale finer than the core's LSB only stretches its steps (8 LSB
    apart at 3.3e-5): rejected, naming the parameter and the limit; zero scales likewise."""
    with pytest.raises(ValueError, match=r"s_out = 3.3e-05 is finer than the GELU core's output LSB 2\*\*-12 = "
                                         r"0.0002441; allowed s_out >= 0.0002441"):
        NL.gelu_params(1e-3, 3.3e-5)
    with pytest.raises(ValueError, match=r"s_out = 1.526e-05 is finer than the sigmoid core's output LSB 2\*\*-15"):
        NL.sigmoid_params(0.01, 2.0 ** -16)
    for fn in (NL.gelu_params, NL.sigmoid_params):
        with pytest.raises(ValueError, match="s_out must be finite and positive, not 0.0"):
            fn(0.01, 0.0)
        with pytest.raises(ValueError, match="s_in must be finite and positive, not 0"):
            fn(0, 0.01)
    # the limit itself is accepted and stays within 1 LSB (the core's own output)
    x = np.arange(-(1 << 15), 1 << 15)
    p = NL.gelu_params(2.0 ** -12, NL.GELU_S_OUT_MIN, out_bits=20, in_bits=16)
    assert _max_lsb(NL.gelu(x, p), gelu_ref(x * 2.0 ** -12) * (1 << 12)) <= 1


def test_numpy_integers_accepted_as_parameters():
    p = NL.softmax_params(0.01, out_max=np.int64(127), in_bits=np.int32(32))
    assert p == NL.softmax_params(0.01, out_max=127) and type(p.out_max) is int
    assert NL.gelu_params(np.float64(0.01), np.float64(0.02), out_bits=np.int16(8), in_bits=np.uint8(16)) == \
        NL.gelu_params(0.01, 0.02, out_bits=8, in_bits=16)
    assert NL.sigmoid_params(0.01, 1 / 255, out_bits=np.int64(8)) == NL.sigmoid_params(0.01, 1 / 255, out_bits=8)
    ln = NL.layernorm_params(np.ones(4), np.zeros(4), np.float32(1e-6), 0.1, 0.1, out_bits=np.int8(8), in_bits=np.int64(8))
    assert ln.out_bits == 8 and type(ln.in_bits) is int
    for bad in (True, 8.0, "8"):
        with pytest.raises(ValueError, match="out_max must be an integer"):
            NL.softmax_params(0.01, out_max=bad)


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
