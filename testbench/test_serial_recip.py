"""Amaranth-simulator test of rtl/nonlinear/serial_recip.py (the multiplier-free reciprocal of the
score combiner and the MEAN executor): bit-exact with golden ``reciprocal`` on every edge value
(0 treated as 1, 1, each power of two and its neighbours, the largest input) and random values
of every magnitude, with random gaps on both streams; without gaps, its documented latency and
interval.  Seeds: HEATVIT_SEED."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from heatvit.golden.nonlinear import reciprocal
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.rtl.nonlinear.serial_recip import SerialReciprocal
from heatvit.sim.runner import pick_seed

from accel.streams import recv, send


def edge_values(in_bits: int) -> list[int]:
    vals = {0, 1, 2, 3, (1 << in_bits) - 1}
    for b in range(1, in_bits):
        vals |= {(1 << b) - 1, 1 << b, (1 << b) + 1}
    return sorted(v for v in vals if v < (1 << in_bits))


def run(dut, xs, seed, gap):
    got, ticks = [], {}

    async def source(ctx):
        await send(ctx, dut.i, [[x] for x in xs], random.Random(seed), gap)

    async def sink(ctx):
        got.extend(await recv(ctx, dut.o, len(xs), random.Random(seed + 1), gap))

    async def clock(ctx):
        n = 0
        while len(got) < len(xs):
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready) and "first" not in ticks:
                ticks["first"] = n
            await ctx.tick()
            n += 1
        ticks["end"] = n

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_testbench(clock, background=True)
    sim.run()
    return [(int(p[0].r), int(p[0].e)) for p in got], ticks


@pytest.mark.parametrize("in_bits,digit_bits", [(32, 7), (32, 4), (17, 13), (10, 1)])
@pytest.mark.parametrize("gap", [0.0, 0.4])
def test_serial_reciprocal(in_bits, digit_bits, gap):
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng = random.Random(seed)
    cfg = NonlinearConfig()
    xs = edge_values(in_bits)
    xs += [rng.randrange(1 << rng.randint(1, in_bits)) for _ in range(300)]
    dut = SerialReciprocal(cfg, in_bits, digit_bits)
    got, ticks = run(dut, xs, seed, gap)
    r, e = reciprocal(np.maximum(np.array(xs, dtype=np.int64), 1), in_bits, cfg)
    want = list(zip(r.tolist(), e.tolist()))
    bad = [(x, g, w) for x, g, w in zip(xs, got, want) if g != w]
    assert not bad, f"seed {seed}: (x, RTL (r, e), golden) {bad[:5]} ({len(bad)} of {len(xs)} differ)"
    if gap == 0.0:
        # the first result after the front stages, the engine's load and one interval; then one a interval
        assert ticks["first"] == dut.latency, f"latency {ticks['first']} != {dut.latency}"
        assert ticks["end"] == dut.latency + 1 + (len(xs) - 1) * dut.interval, \
            f"{ticks['end']} cycles for {len(xs)} values (interval {dut.interval})"


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects():
    with pytest.raises(ValueError, match="digit_bits"):
        SerialReciprocal(NonlinearConfig(), 32, 0)
    with pytest.raises(ValueError, match="in_bits"):
        SerialReciprocal(NonlinearConfig(), 0)
