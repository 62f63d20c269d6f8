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

from ..nonlinear.pipe import round_shift_var, saturate

SHIFT_BITS = 6


class ResidualAdd(wiring.Component):
    """Two-stage, enable-gated pipeline (a stalled ``out`` freezes it; nothing is lost).

    * ``i`` (in): ``a``, ``b``: ``lanes`` x int8 each (``a`` at scale s_a, ``b`` at s_b).
    * ``out`` (out): ``lanes`` x int8 at the output scale s_y.
    * ``mult_a``, ``mult_b`` (unsigned ``mult_bits``), ``shift`` (unsigned 6 bits, 0..63): the
      add's parameters, held constant while a job streams.
    """

    latency = 2

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
        v1, v2 = Signal(), Signal()
        m.d.comb += [en.eq(~self.out.valid | self.out.ready), self.i.ready.eq(en),
                     self.out.valid.eq(v2)]
        sum_shape = signed(8 + self.mult_bits + 2)
        with m.If(en):
            m.d.sync += [v1.eq(self.i.valid), v2.eq(v1)]
        for lane in range(self.lanes):
            s = Signal(sum_shape, name=f"sum{lane}")
            a, b = self.i.payload.a[lane], self.i.payload.b[lane]
            with m.If(en):
                m.d.sync += s.eq(a * self.mult_a + b * self.mult_b)
                m.d.sync += self.out.payload[lane].eq(saturate(round_shift_var(s, self.shift), -128, 127))
        return m
