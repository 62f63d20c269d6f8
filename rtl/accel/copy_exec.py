"""COPY executor: ``dst[dst_row + i, dst_col + j] = src[src_row + i, src_col + j]`` for
``i < live_m``, ``j < live_n`` (``docs/isa.md``; token gather / copy), int8 words of ``lanes``.

Columns are multiples of ``lanes`` on both sides, so a copy is word for word; the last word of a
row is written with a lane mask (columns ``>= n`` keep their value).  In place safe: when
``src`` and ``dst`` are the same buffer and the destination window starts after the source
(``(dst_row, dst_col) > (src_row, src_col)``), the window is walked backwards (last row, last
word first), otherwise forwards, so no word is overwritten before it is read, whatever the
overlap (the windows are the same shape in one row-major memory, so this is ``memmove``).
Reads run ahead of writes; every stream honours backpressure; ``done`` pulses with the last
write; ``abort`` returns to idle at once; ``error`` is always 0.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring

from heatvit import isa
from heatvit.config import AcceleratorConfig

from .descriptor import fields_layout
from .io_exec import RowCounter, latch_row_shape
from .ports import executor_members


class CopyExecutor(wiring.Component):
    IDLE = ("aux", "dma_rd", "dma_wr")
    """Ports it never drives (left 0); the top routes them all the same (no ``IDLE_PORTS``), but
    :class:`.selector_exec.SelectorExecutor` passes its other executors' values there."""

    def __init__(self, acc: AcceleratorConfig):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"CopyExecutor takes an AcceleratorConfig, not {acc!r}")
        self.acc = acc
        self.lanes = isa.column_align(acc)
        super().__init__(executor_members(acc))

    def elaborate(self, platform):
        m = Module()
        self.logic(m)
        return m

    def logic(self, m: Module):
        """The executor's logic into ``m`` on this component's port signals
        (:class:`.selector_exec.SelectorExecutor` builds it beside SELECT's and MEAN's)."""
        L = self.lanes
        sh = L.bit_length() - 1
        c = Signal(fields_layout())
        busy, start, back = Signal(), Signal(), Signal()
        r_last = Signal(16)     # the last row, registered with the fields
        m.d.comb += [self.cmd.ready.eq(~busy), start.eq(self.cmd.valid & self.cmd.ready)]
        p = self.cmd.payload
        with m.If(start):
            m.d.sync += [c.eq(p), busy.eq(1), r_last.eq(p.live_m - 1),
                         back.eq((p.src == p.dst) & ((p.dst_row > p.src_row)
                                                     | ((p.dst_row == p.src_row) & (p.dst_col > p.src_col))))]
        # words a row, the last word, the last word's lanes (live_n mod L of them, all when 0)
        words, w_last, tail_mask = latch_row_shape(m, start, p.live_n, L, "words", "w_last", "tail_mask")

        def place(cnt: RowCounter):
            """(row, word) offsets in the window of a walk position (backwards when ``back``)."""
            return (Mux(back, r_last - cnt.r, cnt.r)[:16], Mux(back, w_last - cnt.w, cnt.w)[:16])

        rd, wr = RowCounter("rd"), RowCounter("wr")
        rd_on = Signal()
        r_row, r_word = place(rd)
        m.d.comb += [self.src.cmd.valid.eq(rd_on), self.src.cmd.payload.row.eq(c.src_row + r_row),
                     self.src.cmd.payload.word.eq((c.src_col >> sh) + r_word)]
        with m.If(self.src.cmd.valid & self.src.cmd.ready):
            _, end = rd.step(m, words, c.live_m, last=(w_last, r_last))
            with m.If(end):
                m.d.sync += rd_on.eq(0)

        w_row, w_word = place(wr)
        m.d.comb += [
            self.dst.valid.eq(busy & self.src.data.valid), self.src.data.ready.eq(busy & self.dst.ready),
            self.dst.payload.row.eq(c.dst_row + w_row),
            self.dst.payload.word.eq((c.dst_col >> sh) + w_word),
            self.dst.payload.data.eq(self.src.data.payload),
            # the window's last word (w_word == w_last) side by side, no subtract in front of the
            # compare: backwards, w_word = w_last - w is it at w = 0
            self.dst.payload.mask.eq(Mux(Mux(back, wr.w == 0, wr.w == w_last), tail_mask, (1 << L) - 1)),
        ]
        with m.If(self.dst.valid & self.dst.ready):
            _, end = wr.step(m, words, c.live_m, last=(w_last, r_last))
            with m.If(end & ~self.abort):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
        with m.If(busy & (c.live_m == 0) & ~self.abort):
            m.d.comb += self.done.eq(1)
            m.d.sync += busy.eq(0)
        with m.If(start | self.abort):
            m.d.sync += rd_on.eq(~self.abort & (p.live_m != 0))
            rd.reset(m), wr.reset(m)
        with m.If(self.abort):
            m.d.sync += busy.eq(0)
