"""cocotb tests of every nonlinear unit against the golden model, bit-exact.

Exhaustive over the input domain where it is at most 2**16 values (the GELU and sigmoid tables,
exp, reciprocal and rsqrt of 16-bit inputs), random elsewhere; adversarial softmax and LayerNorm
rows; stall patterns (:data:`heatvit.sim.streams.PATTERNS`) and the handshake monitor
throughout.  ``HEATVIT_QUICK=1`` (Icarus): subsets.
"""

import os
import random

import cocotb
import numpy as np

from heatvit.sim.streams import Idle, checked_test

from heatvit.golden import nonlinear as NL
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.sim.nonlinear_tb import NonlinearTB, assert_equal
from heatvit.sim.runner import config_from_env

QUICK = bool(int(os.environ.get("HEATVIT_QUICK", "0")))


LIGHT = (Idle(0.02), Idle(0.02))
"""Exhaustive sweeps: a stall now and then, so they stay fast."""


async def _setup(dut, stalls="random"):
    cfg = config_from_env(NonlinearConfig)
    rng = random.Random(cocotb.RANDOM_SEED)
    tb = NonlinearTB(dut, cfg, rng, stalls=stalls)
    await tb.reset()
    return tb, np.random.default_rng(rng.getrandbits(32))


def _domain(lo, hi, nprng, quick_n=3000):
    """All of ``[lo, hi)``, or (quick) a random subset plus both ends."""
    if not QUICK:
        return np.arange(lo, hi)
    return np.concatenate([[lo, hi - 1], nprng.integers(lo, hi, quick_n)])


async def _act(tb, nprng, unit, core_frac):
    # 1. the core over its whole table (identity requantization: s_in = 2**-12, s_out = 2**-frac)
    core = NL.gelu_params(2.0 ** -12, 2.0 ** -12, out_bits=20) if unit == "gelu" else \
        NL.sigmoid_params(2.0 ** -12, 2.0 ** -15, out_bits=16)
    if unit == "gelu":                      # table index x + 2**15 for x in [-2**15, 2**15)
        x = _domain(-(1 << 15), 1 << 15, nprng)
    else:                                   # table index |x| < 2**16; negatives by symmetry
        x = np.concatenate([_domain(0, 1 << 16, nprng), -nprng.integers(1, 1 << 16, 3000)])
    got, exp = await tb.elementwise(unit, x, params=core, stalls=LIGHT)
    assert_equal(f"{unit} core (table domain)", x, got, exp)
    x = nprng.integers(-(1 << 19), 1 << 19, 500 if QUICK else 5000)
    got, exp = await tb.elementwise(unit, x, params=core)
    assert_equal(f"{unit} core (outside the table)", x, got, exp)
    # 2. deployment: int32 accumulators at random calibrated scales, int8 / uint8 outputs
    patterns = ["random", "sink-only", "source-only"]
    for i in range(2 if QUICK else 6):
        s_in = float(10 ** nprng.uniform(-6, -1))
        if unit == "gelu":
            p = NL.gelu_params(s_in, float(10 ** nprng.uniform(-2.5, -0.5)))
        else:
            p = NL.sigmoid_params(s_in, 1 / 255, out_bits=8)
        amax = min(2 ** 31 - 1, int(12 / s_in))
        x = np.concatenate([nprng.integers(-amax, amax, 300 if QUICK else 2000), [-2 ** 31, 2 ** 31 - 1, 0]])
        got, exp = await tb.elementwise(unit, x, params=p, stalls=patterns[i % 3])
        assert_equal(f"{unit} s_in={s_in:.3g}", x, got, exp)


@checked_test
async def gelu(dut):
    tb, nprng = await _setup(dut)
    await _act(tb, nprng, "gelu", 12)


@checked_test
async def sigmoid(dut):
    tb, nprng = await _setup(dut)
    await _act(tb, nprng, "sigmoid", 15)


@checked_test
async def exp(dut):
    tb, nprng = await _setup(dut)
    x = _domain(0, 1 << 16, nprng)
    got, e = await tb.elementwise("exp", x, stalls=LIGHT)
    assert_equal("exp", x, got, e)


async def _mant_exp(tb, nprng, unit, bits):
    x = _domain(1, 1 << 16, nprng)
    got, e = await tb.elementwise(unit, x, stalls=LIGHT)
    assert_equal(f"{unit} (16-bit inputs)", x, got, e)
    edges = [1, 2, 3, (1 << bits) - 1] + [1 << k for k in range(bits)] + [(1 << k) - 1 for k in range(2, bits)]
    x = np.concatenate([edges, nprng.integers(1, 1 << bits, 500 if QUICK else 20000)])
    got, e = await tb.elementwise(unit, x, stalls="random")
    assert_equal(f"{unit} ({bits}-bit inputs)", x, got, e)
    for stalls, n in (("heavy", 300), ("long", 100)):
        got, e = await tb.elementwise(unit, x[:n], stalls=stalls)
        assert_equal(f"{unit} ({bits}-bit inputs, {stalls} stalls)", x[:n], got, e)


@checked_test
async def reciprocal(dut):
    tb, nprng = await _setup(dut)
    await _mant_exp(tb, nprng, "recip", 32)


@checked_test
async def rsqrt(dut):
    tb, nprng = await _setup(dut)
    await _mant_exp(tb, nprng, "rsqrt", 40)


def softmax_rows(cfg: NonlinearConfig, nprng, n_random: int):
    """Adversarial rows (all equal, spike, all min, all max, length 1, full length) + random."""
    n, lo, hi = cfg.max_tokens, -(1 << (cfg.softmax_in_bits - 1)), (1 << (cfg.softmax_in_bits - 1)) - 1
    spike = np.full(n, lo)
    spike[nprng.integers(n)] = hi
    rows = [np.zeros(n, int), np.full(n, 1234), spike, np.full(n, lo), np.full(n, hi), np.array([7]),
            np.array([lo]), np.r_[hi, lo], nprng.integers(lo, hi, n, endpoint=True)]
    for _ in range(n_random):
        length = int(nprng.integers(1, n + 1))
        spread = float(10 ** nprng.uniform(0, 3.5))
        rows.append(np.clip(nprng.normal(0, spread, length), lo, hi).astype(np.int64))
    return rows


@checked_test
async def softmax(dut):
    tb, nprng = await _setup(dut)
    cfg = tb.cfg
    for (s_in, out_max), stalls in zip(((0.01, 255), (1e-3, 127), (0.3, 255)), ("random", "sink-only", "source-only")):
        p = NL.softmax_params(s_in, out_max=out_max, in_bits=cfg.softmax_in_bits)
        rows = softmax_rows(cfg, nprng, 3 if QUICK else 12)
        got, e = await tb.softmax(rows, p, stalls=stalls)
        assert_equal(f"softmax s_in={s_in}", np.concatenate(rows), got, e)
    assert int(dut.softmax__overflow.value) == 0, "overflow set by rows within max_tokens"
    # a row longer than max_tokens ends at max_tokens (overflow); the rest is the next row
    long_row = nprng.integers(-1000, 1000, cfg.max_tokens + 3)
    rows = [long_row[:cfg.max_tokens], long_row[cfg.max_tokens:]]
    got, e = await tb.softmax(rows, p, unterminated={0}, stalls="long")
    assert_equal("softmax overlong row", long_row, got, e)
    assert int(dut.softmax__overflow.value) == 1, "overflow not set by an overlong row"


def layernorm_rows(cfg: NonlinearConfig, n: int, nprng, n_random: int):
    lo, hi = -(1 << (cfg.layernorm_in_bits - 1)), (1 << (cfg.layernorm_in_bits - 1)) - 1
    spike = np.full(n, lo)
    spike[nprng.integers(n)] = hi
    rows = [np.zeros(n, int), np.full(n, 5), spike, np.full(n, lo), np.full(n, hi)]
    rows += [nprng.integers(lo, hi, n, endpoint=True) for _ in range(n_random)]
    return np.stack(rows)


@checked_test
async def layernorm(dut):
    tb, nprng = await _setup(dut)
    cfg = tb.cfg
    lengths = [cfg.max_dim, 1, int(nprng.integers(2, cfg.max_dim + 1))]
    for n, stalls in zip(lengths, ("random", "long", "sink-only")):
        tb.stalls = stalls
        gamma, beta = nprng.normal(1, 0.5, n), nprng.normal(0, 0.5, n)
        p = NL.layernorm_params(gamma, beta, 1e-6, float(10 ** nprng.uniform(-2, -0.5)),
                                float(10 ** nprng.uniform(-2, -1)), in_bits=cfg.layernorm_in_bits, cfg=cfg)
        await tb.layernorm_load(p)
        rows = layernorm_rows(cfg, n, nprng, 1 if QUICK else 4)
        got, e = await tb.layernorm(rows, p)
        assert_equal(f"layernorm N={n}", rows, got, e)


@checked_test
async def row_lengths(dut):
    """Every row length 1 .. max (a sample of them on the full config), rows of mixed lengths back
    to back (Softmax) under every stall pattern, bit-exact."""
    tb, nprng = await _setup(dut)
    cfg = tb.cfg
    p = NL.softmax_params(0.02, out_max=255, in_bits=cfg.softmax_in_bits)
    lo, hi = -(1 << (cfg.softmax_in_bits - 1)), (1 << (cfg.softmax_in_bits - 1)) - 1
    lengths = list(range(1, cfg.max_tokens + 1))
    if not QUICK and len(lengths) > 40:
        lengths = sorted(set(lengths[:12] + lengths[-4:] + nprng.choice(lengths, 16, replace=False).tolist()))
    for i, stalls in enumerate(("none", "random", "heavy", "sink-only", "source-only")):
        order = nprng.permutation(lengths)
        rows = [nprng.integers(lo, hi, int(n), endpoint=True) if i % 2 else
                np.clip(nprng.normal(0, 3000, int(n)), lo, hi).astype(np.int64) for n in order]
        got, e = await tb.softmax(rows, p, stalls=stalls)
        assert_equal(f"softmax lengths ({stalls})", np.concatenate(rows), got, e)
    lengths = list(range(1, cfg.max_dim + 1))
    if not QUICK and len(lengths) > 40:
        lengths = sorted(set(lengths[:8] + lengths[-2:] + nprng.choice(lengths, 6, replace=False).tolist()))
    elif QUICK:
        lengths = sorted(set(lengths[:6] + lengths[-2:] + nprng.choice(lengths, 6, replace=False).tolist()))
    stalls = ("none", "random", "heavy", "long", "sink-only", "source-only")
    for i, n in enumerate(lengths):
        tb.stalls = stalls[i % len(stalls)]
        gamma, beta = nprng.normal(1, 0.5, n), nprng.normal(0, 0.5, n)
        lp = NL.layernorm_params(gamma, beta, 1e-6, float(10 ** nprng.uniform(-2, -0.5)),
                                 float(10 ** nprng.uniform(-2, -1)), in_bits=cfg.layernorm_in_bits, cfg=cfg)
        await tb.layernorm_load(lp)
        rows = layernorm_rows(cfg, n, nprng, 2)
        got, e = await tb.layernorm(rows, lp)
        assert_equal(f"layernorm N={n} ({tb.stalls})", rows, got, e)


@checked_test
async def row_cycles(dut):
    """Back-to-back rows of B beats without stalls take B cycles each (Softmax and LayerNorm); one
    row alone, first input beat to last output beat: ``2B +`` :func:`layernorm_row_latency`
    (LayerNorm), ``3B +`` :func:`softmax_row_latency` (Softmax): the figures of
    docs/nonlinear.md and of the units' docstrings."""
    from heatvit.rtl.nonlinear.rows import layernorm_row_latency, softmax_row_latency
    tb, nprng = await _setup(dut, "none")
    cfg, L = tb.cfg, tb.cfg.row_lanes
    sizes = sorted({1, 2, 3, cfg.max_tokens // L, cfg.max_dim // L})
    p = NL.softmax_params(0.01, in_bits=cfg.softmax_in_bits)
    for b in (b for b in sizes if b * L <= cfg.max_tokens):
        rows = [nprng.integers(-3000, 3000, b * L) for _ in range(4)]
        got, e = await tb.softmax(rows, p)
        assert_equal(f"softmax B={b}", np.concatenate(rows), got, e)
        ends = [tb.last_sink.handshake_cycles[(r + 1) * b - 1] for r in range(4)]
        periods = np.diff(ends).tolist()
        cocotb.log.info(f"softmax B={b}: one row {ends[0]} cycles, then {periods}")
        assert periods == [b] * 3, f"softmax B={b}: {periods} cycles per row, want B"
        assert ends[0] == 3 * b + softmax_row_latency(cfg), f"softmax B={b}: one row {ends[0]} cycles"
    for b in (b for b in sizes if b * L <= cfg.max_dim):
        n = b * L
        lp = NL.layernorm_params(np.ones(n), np.zeros(n), 1e-6, 0.05, 0.05, in_bits=cfg.layernorm_in_bits, cfg=cfg)
        await tb.layernorm_load(lp)
        rows = layernorm_rows(cfg, n, nprng, 0)[:4]
        got, e = await tb.layernorm(rows, lp)
        assert_equal(f"layernorm B={b}", rows, got, e)
        ends = [tb.last_sink.handshake_cycles[(r + 1) * b - 1] for r in range(4)]
        periods = np.diff(ends).tolist()
        cocotb.log.info(f"layernorm B={b}: one row {ends[0]} cycles, then {periods}")
        assert periods == [b] * 3, f"layernorm B={b}: {periods} cycles per row, want B"
        assert ends[0] == 2 * b + layernorm_row_latency(cfg), f"layernorm B={b}: one row {ends[0]} cycles"
