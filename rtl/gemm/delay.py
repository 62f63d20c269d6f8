"""An enable-gated delay line (shift register) for any shape."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class DelayLine(wiring.Component):
    """``o`` is ``i`` delayed by ``depth`` enabled cycles (``depth = 0`` is a wire).

    Used for the input skew and output deskew of the systolic array and for the row tags
    that travel beside it; the payload shape is the caller's.
    """

    def __init__(self, shape, depth: int):
        if depth < 0:
            raise ValueError(f"DelayLine depth = {depth}; allowed >= 0")
        self.depth = depth
        super().__init__({"en": In(1), "i": In(shape), "o": Out(shape)})

    def elaborate(self, platform):
        m = Module()
        prev = self.i
        for stage in range(self.depth):
            reg = Signal.like(self.i, name=f"stage{stage}")
            with m.If(self.en):
                m.d.sync += reg.eq(prev)
            prev = reg
        m.d.comb += self.o.eq(prev)
        return m
