"""The RTL rounding helpers (rtl/nonlinear/pipe.py) against golden's rounding function.

``round_shift_var`` (one cycle) and ``round_shift_pipe`` (rounding add, shift, clamp in registered
stages) are checked bit for bit against :func:`heatvit.golden.round_shift` (then ``np.clip``):
exhaustively for narrow values (every value, every shift amount the shift signal can hold, far
past the width), and at the widths the units use (51-bit requantizer products, the softmax's
output products) for the extremes and hypothesis-drawn values, every shift 0..max each.  The
pipeline runs with its enable toggling (stalls must hold every stage).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from heatvit.golden import round_shift
from heatvit.rtl.nonlinear.pipe import Pipe, round_shift_const, round_shift_pipe, round_shift_var


GOLDEN_MAX_SHIFT = 62
"""golden works in int64: ``2**(shift-1)`` stays positive up to shift 63, and the products it
rounds have at most 51 bits.  Past that (only a 7-bit shift, e.g. the softmax's ``16 + E``, gets
there) the reference is the same formula in Python integers, checked equal to golden below it."""


def exact(v: int, s: int) -> int:
    return v if s == 0 else (v + (1 << (s - 1)) - (v < 0)) >> s


def golden(values, shifts, offset=0, lo=None, hi=None):
    shifts = np.asarray(shifts, np.int64) + offset
    ok = shifts <= GOLDEN_MAX_SHIFT
    q = np.array([exact(int(v), int(s)) for v, s in zip(values, shifts)], dtype=object)
    g = round_shift(np.asarray(values, np.int64)[ok], shifts[ok])
    assert [int(x) for x in g] == list(q[ok]), "the Python reference disagrees with golden"
    q[ok] = [int(x) for x in g]
    if lo is not None or hi is not None:
        q = np.clip(np.array(q, dtype=object), lo, hi)
    return [int(v) for v in q]


def run(width: int, is_signed: bool, sh_bits: int, pairs, *, offset=0, lo=None, hi=None, seed=1):
    """Feed ``pairs`` of (value, sh) through both helpers; returns (one-cycle results, pipelined
    results) in input order."""
    shape = signed(width) if is_signed else unsigned(width)
    m = Module()
    value, sh, en, valid = Signal(shape), Signal(unsigned(sh_bits)), Signal(), Signal()
    comb = Signal(shape.width + 2 if is_signed else shape.width + 1, name="comb")
    m.d.comb += comb.eq(round_shift_var(value, sh, offset))
    pipe = Pipe(m, en, "p")
    out, lat = round_shift_pipe(pipe, value, sh, offset=offset, lo=lo, hi=hi)
    v_out = pipe.delay(valid, lat, "v")
    assert lat == (2 if lo is None and hi is None else 3)
    comb_got, pipe_got = [], []
    rng = random.Random(seed)

    async def bench(ctx):
        i = 0
        while len(pipe_got) < len(pairs):
            stall = rng.random() < 0.2
            feed = not stall and i < len(pairs)
            ctx.set(en, not stall)
            ctx.set(valid, feed)
            if feed:
                ctx.set(value, pairs[i][0])
                ctx.set(sh, pairs[i][1])
                comb_got.append(ctx.get(comb.as_signed() if is_signed else comb))
                i += 1
            await ctx.tick()
            # a beat reaches the output register `lat` enabled cycles after it entered
            if not stall and ctx.get(v_out):
                pipe_got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return comb_got, pipe_got


def check(width, is_signed, sh_bits, pairs, **kw):
    comb, piped = run(width, is_signed, sh_bits, pairs, **kw)
    values, shifts = [p[0] for p in pairs], [p[1] for p in pairs]
    exp_plain = golden(values, shifts, kw.get("offset", 0))
    exp = golden(values, shifts, kw.get("offset", 0), kw.get("lo"), kw.get("hi"))
    bad = [(v, s, c, e) for v, s, c, e in zip(values, shifts, comb, exp_plain) if c != e]
    assert not bad, f"round_shift_var W={width} signed={is_signed}: (value, sh, got, want) {bad[:8]}"
    bad = [(v, s, g, e) for v, s, g, e in zip(values, shifts, piped, exp) if g != e]
    assert not bad, f"round_shift_pipe W={width} signed={is_signed}: (value, sh, got, want) {bad[:8]}"


def every(width, is_signed, sh_bits):
    lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if is_signed else (0, 1 << width)
    return [(v, s) for v in range(lo, hi) for s in range(1 << sh_bits)]


@pytest.mark.parametrize("width,is_signed,sh_bits,offset", [
    (1, False, 3, 0), (1, True, 3, 0), (2, True, 3, 0), (3, False, 4, 0), (3, True, 4, 0),
    (5, True, 4, 0), (6, False, 4, 0), (7, True, 4, 2), (6, True, 3, 5), (8, True, 4, 0)])
def test_exhaustive(width, is_signed, sh_bits, offset):
    """Every value of the width x every shift the shift signal holds (up to 2**sh_bits - 1 +
    offset, several times the width)."""
    check(width, is_signed, sh_bits, every(width, is_signed, sh_bits), offset=offset)


@pytest.mark.parametrize("width,is_signed,lo,hi", [(8, True, -128, 127), (9, True, -20, 3),
                                                   (7, False, None, 100), (6, True, -5, None)])
def test_exhaustive_clamped(width, is_signed, lo, hi):
    check(width, is_signed, 4, every(width, is_signed, 4), lo=lo, hi=hi)


def extremes(width, is_signed):
    if is_signed:
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        pts = {lo, lo + 1, -1, 0, 1, hi - 1, hi}
        for k in range(width - 1):
            pts |= {(1 << k), (1 << k) - 1, (1 << k) + 1, -(1 << k), -(1 << k) - 1, -(1 << k) + 1,
                    3 << k if (3 << k) <= hi else hi, -(3 << k) if -(3 << k) >= lo else lo}
    else:
        hi = (1 << width) - 1
        pts = {0, 1, hi - 1, hi}
        for k in range(width):
            pts |= {(1 << k), (1 << k) - 1, min(hi, (1 << k) + 1), min(hi, 3 << k)}
    return sorted(pts)


@pytest.mark.parametrize("width,is_signed,sh_bits,offset,lo,hi", [
    (51, True, 6, 0, -128, 127),        # gemm requantizer: 33-bit x 16-bit products, int8 out
    (50, True, 6, 0, -(1 << 15), (1 << 15) - 1),   # accel epilogue, 16-bit GELU input
    (41, False, 6, 16, None, 255),      # softmax output: e * f >> (16 + E)
    (40, False, 6, 0, None, 0xffff),    # softmax exponent argument
    (27, True, 6, 0, -128, 127)])
def test_wide_extremes(width, is_signed, sh_bits, offset, lo, hi):
    """Values around every power of two and both ends, at every shift amount."""
    pairs = [(v, s) for v in extremes(width, is_signed) for s in range(1 << sh_bits)]
    check(width, is_signed, sh_bits, pairs, offset=offset, lo=lo, hi=hi)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-(1 << 50), (1 << 50) - 1), min_size=1, max_size=16),
       st.integers(0, 2 ** 32 - 1))
def test_wide_random(values, seed):
    """Hypothesis-drawn 51-bit values at every shift 0..63, with the int8 clamp."""
    pairs = [(v, s) for v in values for s in range(64)]
    check(51, True, 6, pairs, lo=-128, hi=127, seed=seed)


@pytest.mark.parametrize("width,is_signed", [(1, True), (1, False), (4, True), (7, False), (9, True)])
def test_const_shift_exhaustive(width, is_signed):
    """``round_shift_const`` (the Horner steps and the units' output stages): every value of the
    width at every constant shift 0 .. width + 2."""
    shape = signed(width) if is_signed else unsigned(width)
    shifts = list(range(width + 3))
    m = Module()
    value = Signal(shape)
    outs = []
    for w in shifts:
        q = round_shift_const(value, w)
        o = Signal(signed(len(q) + 1), name=f"q{w}")
        m.d.comb += o.eq(q)
        outs.append(o)
    lo, hi = (-(1 << (width - 1)), 1 << (width - 1)) if is_signed else (0, 1 << width)
    got = {}

    async def bench(ctx):
        for v in range(lo, hi):
            ctx.set(value, v)
            got[v] = [ctx.get(o) for o in outs]

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for w_i, w in enumerate(shifts):
        want = golden(list(range(lo, hi)), [w] * (hi - lo))
        have = [got[v][w_i] for v in range(lo, hi)]
        bad = [(v, h, x) for v, h, x in zip(range(lo, hi), have, want) if h != x]
        assert not bad, f"round_shift_const W={width} signed={is_signed} w={w}: (value, got, want) {bad[:8]}"


@pytest.mark.parametrize("is_signed", [False, True])
def test_outside_every_value(is_signed):
    """``pipe.outside(v, lo, hi)`` is ``v < lo or v > hi`` for every 6-bit value and bound pair
    around the shape's range, and leaves out the compares the shape decides (none at all for the
    full range, so no constant compare reaches the Verilog)."""
    from amaranth.hdl import Const

    from heatvit.rtl.nonlinear.pipe import outside
    shape = signed(6) if is_signed else unsigned(6)
    vmin, vmax = (-32, 31) if is_signed else (0, 63)
    assert isinstance(outside(Signal(shape), vmin, vmax), Const)
    bounds = [(lo, hi) for lo in (vmin - 1, vmin, vmin + 1, 0, 5) for hi in (vmax + 1, vmax, vmax - 1, 7)]
    v = Signal(shape)
    outs = [outside(v, lo, hi) for lo, hi in bounds]
    m = Module()
    flags = Signal(len(bounds))
    m.d.comb += flags.eq(Cat(*outs))

    async def bench(ctx):
        for x in range(vmin, vmax + 1):
            ctx.set(v, x)
            got = ctx.get(flags)
            for i, (lo, hi) in enumerate(bounds):
                assert (got >> i) & 1 == int(x < lo or x > hi), (x, lo, hi)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
