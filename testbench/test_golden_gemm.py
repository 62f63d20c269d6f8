"""Properties of the golden numerics contract: requantizer, GEMM, layouts, bad input."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from heatvit import golden
from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.presets import load_config

CFG = GemmConfig(rows=4, cols=4, act_buffer_words=4096, max_m=64, max_k=3072, max_n=256)

acc32 = st.integers(-(2**31), 2**31 - 1)
bias32 = st.integers(-(2**31), 2**31 - 1)
mult16 = st.integers(0, 2**16 - 1)
shift = st.integers(0, 49)


def _reference(acc, bias, mult, sh, bits=8):
    """Exact rational arithmetic: round half away from zero, then saturate."""
    v = Fraction((acc + bias) * mult, 2**sh)
    mag = abs(v)
    q = int(mag) + (1 if mag - int(mag) >= Fraction(1, 2) else 0)
    q = q if v >= 0 else -q
    return max(-(2 ** (bits - 1)), min(2 ** (bits - 1) - 1, q))


@settings(max_examples=2000, deadline=None)
@given(acc32, bias32, mult16, shift)
def test_requantize_matches_exact_rational_rounding(acc, bias, mult, sh):
    got = int(golden.requantize(np.array([acc]), np.array([bias]), np.array([mult]), np.array([sh]))[0])
    assert got == _reference(acc, bias, mult, sh)


@settings(max_examples=500, deadline=None)
@given(st.lists(acc32, min_size=2, max_size=40), bias32, mult16, shift)
def test_requantize_is_monotonic(accs, bias, mult, sh):
    accs = np.sort(np.array(accs, dtype=np.int64))
    out = golden.requantize(accs, bias, mult, sh)
    assert np.all(np.diff(out) >= 0)


@settings(max_examples=500, deadline=None)
@given(st.integers(-128, 127), st.integers(0, 20), st.integers(0, 2**10))
def test_requantize_exact_on_representable_values(y, sh, mult_pow):
    # acc * mult / 2**shift == y exactly -> output is y, no rounding.
    mult = 1 << (mult_pow % 16)
    num = y * (1 << sh)
    assume(num % mult == 0)
    acc = num // mult
    assume(-(2**31) <= acc < 2**31)
    assert int(golden.requantize(np.array([acc]), 0, mult, sh)[0]) == y


@settings(max_examples=300, deadline=None)
@given(acc32, bias32, mult16, shift)
def test_requantize_saturates_never_wraps(acc, bias, mult, sh):
    got = int(golden.requantize(np.array([acc]), bias, mult, sh)[0])
    exact = Fraction((acc + bias) * mult, 2**sh)
    if exact > 127:
        assert got == 127
    elif exact < -128:
        assert got == -128


def test_round_half_away_from_zero_ties():
    p = np.array([3, -3, 1, -1, 5, -5, 2, -2])
    assert golden.round_shift(p, 1).tolist() == [2, -2, 1, -1, 3, -3, 1, -1]
    assert golden.round_shift(np.array([6, -6]), 2).tolist() == [2, -2]   # 1.5 -> 2, -1.5 -> -2


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-7, 100.0))
def test_quantize_multiplier_relative_error(scale):
    mult, sh = golden.quantize_multiplier(scale, mult_bits=16)
    approx = int(mult) / 2 ** int(sh)
    assert abs(approx - scale) / scale <= 2**-15
    assert 0 < int(mult) < 2**16


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 40), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_gemm_matches_integer_reference_and_layouts_roundtrip(m, k, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k))
    w = rng.integers(-128, 128, (k, n))
    acc = golden.matmul_acc(CFG, a, w)
    ref = np.array([[sum(int(a[i, t]) * int(w[t, j]) for t in range(k)) for j in range(n)] for i in range(m)])
    assert np.array_equal(acc, ref)
    # Output layout round trip; activation/weight images hold the matrices, zero-padded.
    y = golden.gemm(CFG, a, w, 0, 1, 7)
    assert np.array_equal(golden.unpack_outputs(CFG, golden.pack_outputs(CFG, y), m, n), y)
    pa = golden.pack_activations(CFG, a)
    kt = -(-k // CFG.rows)
    for t in range(kt):
        block = pa[t * m:(t + 1) * m]
        width = min(CFG.rows, k - t * CFG.rows)
        assert np.array_equal(block[:, :width], a[:, t * CFG.rows:t * CFG.rows + width])
        assert not block[:, width:].any()
    pw = golden.pack_weights(CFG, w)
    assert pw.shape == (-(-n // CFG.cols) * kt * CFG.rows, CFG.cols)


def test_extreme_accumulators_at_k_3072():
    a = np.full((1, 3072), -128)
    w = np.full((3072, 2), -128)
    assert int(golden.matmul_acc(CFG, a, w)[0, 0]) == 3072 * 16384
    w[:, 1] = 127
    assert int(golden.matmul_acc(CFG, a, w)[0, 1]) == -3072 * 128 * 127


# -- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,needle", [
    ({"rows": 0}, "rows"), ({"cols": 65}, "cols"), ({"rows": 6}, "power of two"),
    ({"act_bits": 9}, "act_bits"), ({"weight_bits": 1}, "weight_bits"),
    ({"max_k": 200000}, "max_k"), ({"act_buffer_words": 10, "max_k": 3072}, "act_buffer_words"),
    ({"rows": 4.0}, "rows"),
])
def test_invalid_config_names_the_parameter(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        GemmConfig(**kwargs)


def test_golden_rejects_wrong_dtype_shape_and_range():
    a = np.zeros((2, 3), dtype=np.int64)
    w = np.zeros((3, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="a must be an integer array"):
        golden.gemm(CFG, a.astype(np.float32), w, 0, 1, 0)
    with pytest.raises(ValueError, match=r"a has values in \[200, 200\]; allowed range \[-128, 127\]"):
        golden.gemm(CFG, np.full((2, 3), 200), w, 0, 1, 0)
    with pytest.raises(ValueError, match="K dimensions differ"):
        golden.gemm(CFG, a, np.zeros((4, 2), dtype=np.int64), 0, 1, 0)
    with pytest.raises(ValueError, match="w must have 2 dimension"):
        golden.gemm(CFG, a, np.zeros(3, dtype=np.int64), 0, 1, 0)
    with pytest.raises(ValueError, match="gemm.M"):
        golden.gemm(CFG, np.zeros((65, 3), dtype=np.int64), w, 0, 1, 0)
    with pytest.raises(ValueError, match="activation buffer"):
        golden.gemm(GemmConfig(rows=4, cols=4, act_buffer_words=800, max_m=64, max_k=3072),
                    np.zeros((2, 3072), dtype=np.int64), np.zeros((3072, 1), dtype=np.int64), 0, 1, 0)
    with pytest.raises(ValueError, match="shift"):
        golden.gemm(CFG, a, w, 0, 1, 99)
    with pytest.raises(ValueError, match=r"bias must be a scalar or have shape \(2,\)"):
        golden.gemm(CFG, a, w, np.zeros(3, dtype=np.int64), 1, 0)
    with pytest.raises(ValueError, match="mult"):
        golden.requantize(np.array([1]), 0, -1, 0)


def test_config_round_trip_and_bad_files(tmp_path):
    for name in ("default", "small", "bench"):
        cfg = load_config(name)
        assert AcceleratorConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.toksel.lanes == cfg.gemm.rows   # derived when left out
    with pytest.raises(ValueError, match="toksel.lanes = 16 must equal gemm.rows = 4"):
        AcceleratorConfig(gemm=load_config("small").gemm, toksel=load_config("default").toksel)
    with pytest.raises(ValueError, match="AcceleratorConfig: unknown keys"):
        AcceleratorConfig.from_dict({"gemm": {}, "shel": {}})
    with pytest.raises(ValueError, match="NonlinearConfig.*row_lanes"):
        AcceleratorConfig.from_dict({"nonlinear": {"row_lanes": 3}})
    p = tmp_path / "c.json"
    p.write_text('{"gemm": {"rows": 16, "colz": 4}}')
    with pytest.raises(ValueError, match="colz"):
        load_config(p)
    p.write_text("not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(p)
    with pytest.raises(ValueError, match="neither a preset"):
        load_config("no-such-config")
