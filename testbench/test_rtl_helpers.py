"""Amaranth-simulator tests of the small RTL helpers the executors share (issue 13's registered
compares): :func:`heatvit.rtl.lanes.last_word_lanes` and :func:`heatvit.rtl.accel.io_exec.tail_mask`
at every row length and lane count, :func:`~heatvit.rtl.accel.io_exec.latch_row_shape`, and
:class:`heatvit.rtl.accel.select_exec.WrapCounter` (its registered ``at_last`` against a plain
counter, every ``last`` from an empty walk up, steps with random gaps).  Seeds: HEATVIT_SEED
(logged)."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from heatvit.rtl.accel.io_exec import latch_row_shape, tail_mask
from heatvit.rtl.accel.select_exec import WrapCounter
from heatvit.rtl.lanes import last_word_lanes
from heatvit.sim.runner import pick_seed


def expected_lanes(n: int, lanes: int) -> int:
    """The last word's lanes of a row of ``n >= 1``: ``n mod lanes`` of them, all when 0."""
    return (1 << ((n - 1) % lanes + 1)) - 1


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16, 64])
def test_last_word_lanes_every_length(lanes):
    """``last_word_lanes(n - 1)`` and ``tail_mask(n)`` for every row length 1 .. 4 lanes + 3 and
    the 16-bit extremes; ``latch_row_shape`` registers the words, the last word and the lanes."""
    m = Module()
    n = Signal(16)
    last = Signal(16)
    via_last, via_n = Signal(lanes), Signal(lanes)
    start = Signal()
    m.d.comb += [last.eq(n - 1), via_last.eq(last_word_lanes(last, lanes)), via_n.eq(tail_mask(n, lanes))]
    count, w_last, tail = latch_row_shape(m, start, n, lanes, "words", "w_last", "w_tail")
    lengths = [*range(1, 4 * lanes + 4), 0xFFFF - lanes, 0xFFFF]

    async def bench(ctx):
        for v in lengths:
            ctx.set(n, v)
            ctx.set(start, 1)
            await ctx.tick()
            ctx.set(start, 0)
            ctx.set(n, (v * 7 + 3) & 0xFFFF)       # latched: a new n after start changes nothing
            await ctx.tick()
            ctx.set(n, v)
            want = expected_lanes(v, lanes)
            assert ctx.get(via_last) == want, f"last_word_lanes({v - 1}, {lanes})"
            assert ctx.get(via_n) == want, f"tail_mask({v}, {lanes})"
            assert (ctx.get(count), ctx.get(w_last), ctx.get(tail)) == (-(-v // lanes), (v - 1) // lanes, want), \
                f"latch_row_shape({v}, {lanes})"

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_last_word_lanes_refuses_other_widths():
    with pytest.raises(ValueError, match="power of two"):
        last_word_lanes(Signal(8), 12)


@pytest.mark.parametrize("last", [-2, -1, 0, 1, 2, 3, 7, 200])
def test_wrap_counter_matches_plain_compare(last):
    """``value`` and ``at_last`` against ``value == last`` of a plain wrapping counter, over
    several wraps, with random cycles without a step and restarts; a ``last`` below 0 never
    ends (as the plain compare)."""
    seed = pick_seed()
    rng = random.Random(seed)
    m = Module()
    cnt = WrapCounter(range(256), "cnt")
    last_m1 = Signal(signed(10))
    single = Signal()
    step, restart = Signal(), Signal()
    with m.If(restart):
        cnt.restart(m, last == 0)
    with m.Elif(step):
        cnt.step(m, last_m1, single)
    m.d.sync += [last_m1.eq(last - 1), single.eq(last == 0)]

    async def bench(ctx):
        ctx.set(restart, 1)
        await ctx.tick()
        ctx.set(restart, 0)
        value = 0
        for i in range(max(3 * (last + 1), 40) + 60):
            assert ctx.get(cnt.value) == value, f"seed {seed}: value at step {i}"
            assert ctx.get(cnt.at_last) == (value == last), f"seed {seed}: at_last at {value}"
            go = rng.random() < 0.7
            again = rng.random() < 0.02
            ctx.set(step, go)
            ctx.set(restart, again)
            await ctx.tick()
            if again:
                value = 0
            elif go:
                value = 0 if value == last else (value + 1) % 256
        ctx.set(step, 0)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
