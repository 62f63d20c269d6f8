"""An enable-gated delay line (shift register) for any shape."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class DelayLine(wiring.Component):
    """``o`` is ``i`` delayed by ``depth`` enabled cycles (``depth = 0`` is a wire).

    Used for the input skew and output deskew of the systolic array and for the row tags
    that travel beside it; the payload shape is the caller's.  ``reset_less`` stages keep no
    reset, so synthesis may pack a long line into shift-register LUTs (SRL16E/SRLC32E): for
    data whose validity travels elsewhere (the array's skew and deskew; the tags reset).
    """

    def __init__(self, shape, depth: int, *, reset_less: bool = False):
        if depth < 0:
            raise ValueError(f"DelayLine depth = {depth}; allowed >= 0")
        self.depth = depth
        self.reset_less = bool(reset_less)
        super().__init__({"en": In(1), "i": In(shape), "o": Out(shape)})

    def elaborate(self, platform):
        m = Module()
        prev = self.i
        for stage in range(self.depth):
            reg = Signal.like(self.i, name=f"stage{stage}", reset_less=self.reset_less)
            with m.If(self.en):
                m.d.sync += reg.eq(prev)
            prev = reg
        m.d.comb += self.o.eq(prev)
        return m
