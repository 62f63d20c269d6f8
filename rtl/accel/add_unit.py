"""ADD descriptor executor: ``dst = residual_add(src, aux)`` over a window of two token buffers.

Walks the ``m`` x ``ceil(n / lanes)`` words of the window (token-major: row by row, word by word)
on two read ports (``src``, ``aux``), joins the words, runs them through
:class:`.residual_add.ResidualAdd` and writes ``dst`` words with a lane mask (channels ``>= n``
of the last word of a row are not written).  Every stream honours backpressure; ``done`` pulses
after the last write.  ``dst`` may be ``src`` (in place): a word is read before it is written.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .residual_add import SHIFT_BITS, ResidualAdd
from .token_buffer import ROW_BITS, WORD_BITS


def addr_layout() -> data.StructLayout:
    return data.StructLayout({"row": ROW_BITS + 1, "word": WORD_BITS + 1})


def add_command(mult_bits: int) -> data.StructLayout:
    """One ADD: windows in words (``*_word`` = column / lanes), ``m`` rows of ``n`` channels."""
    return data.StructLayout({
        "src_row": ROW_BITS, "src_word": WORD_BITS, "aux_row": ROW_BITS, "aux_word": WORD_BITS,
        "dst_row": ROW_BITS, "dst_word": WORD_BITS, "m": 16, "n": 16,
        "mult_a": mult_bits, "mult_b": mult_bits, "shift": SHIFT_BITS})


class _Walker:
    """Row/word counters over an m x words window."""

    def __init__(self, m: Module, name: str):
        self.r = Signal(16, name=f"{name}_r")
        self.w = Signal(16, name=f"{name}_w")
        self.m = m

    def step(self, last_w, last_r, on_end):
        """One step; ``last_w`` / ``last_r``: the last word and row (registers: no add in front of
        the compares, 300 MHz, docs/perf.md "Logic depth")."""
        m = self.m
        with m.If(self.w == last_w):
            m.d.sync += [self.w.eq(0), self.r.eq(self.r + 1)]
            with m.If(self.r == last_r):
                on_end()
        with m.Else():
            m.d.sync += self.w.eq(self.w + 1)

    def reset(self):
        self.m.d.sync += [self.r.eq(0), self.w.eq(0)]


class AddExecutor(wiring.Component):
    def __init__(self, lanes: int, mult_bits: int = 16):
        self.lanes, self.mult_bits = lanes, mult_bits
        word = 8 * lanes
        super().__init__({
            "cmd": In(stream.Signature(add_command(mult_bits))),
            "rd_a_cmd": Out(stream.Signature(addr_layout())), "rd_a": In(stream.Signature(word)),
            "rd_b_cmd": Out(stream.Signature(addr_layout())), "rd_b": In(stream.Signature(word)),
            "wr": Out(stream.Signature(data.StructLayout({**addr_layout().members, "data": word,
                                                          "mask": lanes}))),
            "done": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        L = self.lanes
        m = Module()
        m.submodules.add = add = ResidualAdd(L, self.mult_bits)
        c = Signal(add_command(self.mult_bits))
        last_w, last_r = Signal(16), Signal(16)       # words - 1, m - 1
        m.d.comb += [add.mult_a.eq(c.mult_a), add.mult_b.eq(c.mult_b), add.shift.eq(c.shift)]
        a_w, b_w, o_w = _Walker(m, "a"), _Walker(m, "b"), _Walker(m, "o")
        a_on, b_on = Signal(), Signal()
        m.d.comb += [self.cmd.ready.eq(~self.busy), self.done.eq(0)]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [c.eq(self.cmd.payload), last_w.eq((self.cmd.payload.n + (L - 1)) // L - 1),
                         last_r.eq(self.cmd.payload.m - 1),
                         self.busy.eq(self.cmd.payload.m != 0), a_on.eq(self.cmd.payload.m != 0),
                         b_on.eq(self.cmd.payload.m != 0)]
            a_w.reset(), b_w.reset(), o_w.reset()

        # -- read commands -------------------------------------------------------------------------
        for walker, on, port, row, wd in ((a_w, a_on, self.rd_a_cmd, c.src_row, c.src_word),
                                          (b_w, b_on, self.rd_b_cmd, c.aux_row, c.aux_word)):
            m.d.comb += [port.valid.eq(on), port.payload.row.eq(row + walker.r),
                         port.payload.word.eq(wd + walker.w)]
            def stop(on=on):
                m.d.sync += on.eq(0)
            with m.If(port.valid & port.ready):
                walker.step(last_w, last_r, stop)

        # -- join, add, write ----------------------------------------------------------------------
        both = Signal()
        m.d.comb += [
            both.eq(self.rd_a.valid & self.rd_b.valid),
            add.i.valid.eq(both),
            add.i.payload.a.eq(self.rd_a.payload), add.i.payload.b.eq(self.rd_b.payload),
            self.rd_a.ready.eq(both & add.i.ready), self.rd_b.ready.eq(both & add.i.ready),
        ]
        lb = L.bit_length() - 1
        if L == 1 << lb:      # lane k is written iff w L + k < n: the bits side by side, no multiply or add
            mask = Cat(*((Cat(Const(k, lb), o_w.w) if lb else o_w.w) < c.n for k in range(L)))
        else:
            left = Signal(17)
            m.d.comb += left.eq(c.n - o_w.w * L)
            mask = Mux(left >= L, (1 << L) - 1, (1 << left[:L.bit_length()]) - 1)
        m.d.comb += [
            self.wr.valid.eq(add.out.valid), add.out.ready.eq(self.wr.ready),
            self.wr.payload.data.eq(add.out.payload),
            self.wr.payload.row.eq(c.dst_row + o_w.r), self.wr.payload.word.eq(c.dst_word + o_w.w),
            self.wr.payload.mask.eq(mask),
        ]
        with m.If(self.wr.valid & self.wr.ready):
            def finish():
                m.d.sync += self.busy.eq(0)
                m.d.comb += self.done.eq(1)
            o_w.step(last_w, last_r, finish)
        return m
