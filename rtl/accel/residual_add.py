"""Residual add: int8 + int8 -> int8 in the output scale, ``lanes`` per cycle.

``y = sat8(round_half_away((a * mult_a + b * mult_b) / 2**shift))``, bit-exact with
:func:`heatvit.golden.vit.int_forward.residual_add` (the requantizer's rounding with one multiplier
per operand; ``(mult_a, mult_b, shift)`` from :func:`heatvit.golden.vit.quantize.add_params`).
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.validate import check_int

from ..nonlinear.pipe import Pipe, round_shift_pipe

SHIFT_BITS = 6


class ResidualAdd(wiring.Component):
    """Enable-gated pipeline of ``latency`` stages (a stalled ``out`` freezes it; nothing is lost):
    the two products' sum, then :func:`~..nonlinear.pipe.round_shift_pipe`'s rounding add, shift
    and clamp, each registered.

    * ``i`` (in): ``a``, ``b``: ``lanes`` x int8 each (``a`` at scale s_a, ``b`` at s_b).
    * ``out`` (out): ``lanes`` x int8 at the output scale s_y.
    * ``mult_a``, ``mult_b`` (unsigned ``mult_bits``), ``shift`` (unsigned 6 bits, 0..63): the
      add's parameters, held constant while a job streams.
    """

    latency = 4

    def __init__(self, lanes: int, mult_bits: int = 16):
        check_int("ResidualAdd", "lanes", lanes, 1, 256)
        check_int("ResidualAdd", "mult_bits", mult_bits, 1, 32)
        self.lanes, self.mult_bits = lanes, mult_bits
        word = data.ArrayLayout(signed(8), lanes)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"a": word, "b": word}))),
            "out": Out(stream.Signature(word)),
            "mult_a": In(mult_bits), "mult_b": In(mult_bits), "shift": In(SHIFT_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        ctl = Pipe(m, en, "v")
        valid = ctl.delay(self.i.valid, self.latency, "v")
        m.d.comb += [en.eq(~self.out.valid | self.out.ready), self.i.ready.eq(en), self.out.valid.eq(valid)]
        sum_shape = signed(8 + self.mult_bits + 2)
        for lane in range(self.lanes):
            pipe = Pipe(m, en, f"l{lane}")
            a, b = self.i.payload.a[lane], self.i.payload.b[lane]
            s = pipe.reg(a * self.mult_a + b * self.mult_b, sum_shape, "sum")
            y, lat = round_shift_pipe(pipe, s, self.shift, lo=-128, hi=127, shape=signed(8), name="y")
            assert 1 + lat == self.latency
            m.d.comb += self.out.payload[lane].eq(y)
        return m
