"""``rtl.nonlinear.units.leading_one`` (the reciprocal's and rsqrt's normalisation, a tree of
halves since the depth branch) against ``int.bit_length() - 1``: every value of widths 1-13,
and at the units' wider widths 0, 1, all ones, every power of two and its neighbours, and random
values.  Amaranth simulator, combinational.  Seeds: HEATVIT_SEED."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from heatvit.rtl.nonlinear.units import leading_one
from heatvit.sim.runner import pick_seed


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 13, 25, 26, 32, 33, 48])
def test_leading_one(width):
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng = random.Random(seed)
    m = Module()
    x, e = Signal(width), Signal(8)
    m.d.comb += e.eq(leading_one(x, width))
    if width <= 13:
        values = range(1 << width)
    else:
        edges = {v for b in range(width) for v in ((1 << b) - 1, 1 << b, (1 << b) + 1)}
        values = sorted({0, 1, (1 << width) - 1, *(v for v in edges if v < 1 << width),
                         *(rng.getrandbits(width) for _ in range(2000))})

    async def tb(ctx):
        for v in values:
            ctx.set(x, v)
            assert ctx.get(e) == max(0, v.bit_length() - 1), f"seed {seed}: width {width}, x = {v}"

    sim = Simulator(m)
    sim.add_testbench(tb)
    sim.run()
