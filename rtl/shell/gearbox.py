"""Width conversion between AXI beats and engine words (both powers of two, whole bytes)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


def tagged(width: int) -> data.StructLayout:
    """A word of ``width`` bits plus ``last`` (the final word of a transfer)."""
    return data.StructLayout({"data": width, "last": 1})


class Gearbox(wiring.Component):
    """Splits wide words into narrow ones or gathers narrow words into wide ones.

    Lane order is little-endian (lane 0 in the least significant bits), matching AXI byte lanes.
    Splitting: every input word gives ``in_width / out_width`` outputs; ``last`` goes on the
    final one.  Gathering: ``out_width / in_width`` inputs make one output; an input with
    ``last`` completes the output early (upper lanes zero), so a transfer's tail is flushed.
    Put it under a ``ResetInserter`` to drop a partly used word between transfers.
    """

    def __init__(self, in_width: int, out_width: int):
        for w in (in_width, out_width):
            if w <= 0 or w & (w - 1):
                raise ValueError(f"Gearbox widths must be powers of two, got {in_width}, {out_width}")
        self.in_width, self.out_width = in_width, out_width
        super().__init__({"i": In(stream.Signature(tagged(in_width))),
                          "o": Out(stream.Signature(tagged(out_width)))})

    def elaborate(self, platform):
        m = Module()
        iw, ow = self.in_width, self.out_width
        if iw == ow:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
        if iw > ow:
            k = iw // ow
            buf = Signal(iw)
            last = Signal()
            full = Signal()
            idx = Signal(range(k))
            final = Signal()
            m.d.comb += [
                final.eq(idx == k - 1),
                self.o.valid.eq(full),
                self.o.payload.data.eq(buf.word_select(idx, ow)),
                self.o.payload.last.eq(last & final),
                self.i.ready.eq(~full | (self.o.ready & final)),
            ]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += idx.eq(idx + 1)
                with m.If(final):
                    m.d.sync += [full.eq(0), idx.eq(0)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [buf.eq(self.i.payload.data), last.eq(self.i.payload.last),
                             full.eq(1), idx.eq(0)]
            return m
        k = ow // iw
        buf = Signal(ow)
        last = Signal()
        full = Signal()
        idx = Signal(range(k))
        m.d.comb += [
            self.o.valid.eq(full),
            self.o.payload.data.eq(buf),
            self.o.payload.last.eq(last),
            self.i.ready.eq(~full | self.o.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            # Starting a new word (idx 0) clears the lanes a flushed word left behind.
            with m.If(idx == 0):
                m.d.sync += buf.eq(self.i.payload.data)
            with m.Else():
                m.d.sync += buf.word_select(idx, iw).eq(self.i.payload.data)
            m.d.sync += [idx.eq(idx + 1), last.eq(self.i.payload.last)]
            with m.If((idx == k - 1) | self.i.payload.last):
                m.d.sync += [full.eq(1), idx.eq(0)]
        return m
