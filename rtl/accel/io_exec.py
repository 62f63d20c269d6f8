"""LOAD and STORE executors: int8 rows between a DDR region and a token-buffer window.

``LOAD`` (``docs/isa.md``): ``dst[dst_row + i, dst_col + j] = DDR[region + addr + i * stride + j]``
for ``i < live_m``, ``j < live_n``; ``STORE``: ``DDR[region + addr + i * stride + j] =
src[src_row + i, src_col + j]`` (``region`` OUTPUT or DEBUG).  ``addr`` is a multiple of 64 and
``stride`` of 16 (checked by the sequencer), so every row starts on an AXI beat
(``ShellConfig.data_bytes`` <= 16); a row is one DMA request of ``ceil(n / data_bytes)`` beats at
offset ``addr + i * stride``.  Buffer words are ``lanes = isa.column_align(acc)`` int8 (lane 0 the
lowest column, like AXI byte lanes); ``dst_col`` / ``src_col`` are multiples of ``lanes``.

* LOAD writes exactly ``n`` columns per row (lane mask on a row's last word); the DDR bytes of a
  row's last beat past ``n`` are read and dropped.
* STORE writes exactly ``n`` bytes per row (byte strobes on a row's last beat); nothing else of
  the region changes.  ``done`` pulses when the last beat is handed to the DMA (the top waits for
  ``DmaPorts.writes_idle`` before it raises ``irq``).

Requests run ahead of the data (the DMA serves one at a time, in order); every stream honours
backpressure; ``abort`` returns to idle at once.  Neither executor raises an error of its own
(``error`` = 0): a bad address is the sequencer's check, a bus error the DMA's.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring

from heatvit import isa
from heatvit.config import AcceleratorConfig

from ..lanes import last_word_lanes
from ..shell.gearbox import Gearbox
from .descriptor import fields_layout
from .ports import executor_members


def _log2(x: int) -> int:
    return x.bit_length() - 1


class RowCounter:
    """Row ``r`` and word ``w`` of a ``rows`` x ``words`` walk (one step per handshake)."""

    def __init__(self, name: str):
        self.r = Signal(16, name=f"{name}_r")
        self.w = Signal(16, name=f"{name}_w")

    def step(self, m: Module, words, rows, *, last=None):
        """Advance by one word; returns ``(end of row, end of walk)`` of the current position.
        ``last``: ``(words - 1, rows - 1)`` as registers, if the caller has them (an equality
        instead of an add and compare)."""
        if last is None:
            eor, eow = self.w + 1 == words, self.r + 1 == rows
        else:
            eor, eow = self.w == last[0], self.r == last[1]
        with m.If(eor):
            m.d.sync += [self.w.eq(0), self.r.eq(self.r + 1)]
        with m.Else():
            m.d.sync += self.w.eq(self.w + 1)
        return eor, eor & eow

    def reset(self, m: Module):
        m.d.sync += [self.r.eq(0), self.w.eq(0)]


def tail_mask(n, lanes: int):
    """Lanes (bytes) of the last ``lanes``-wide word of a row of ``n`` (``n >= 1``): ``n mod
    lanes`` of them, all when that is 0 (:func:`~heatvit.rtl.lanes.last_word_lanes` of ``n - 1``:
    a LUT a lane of ``n``'s low bits, no add chain)."""
    return last_word_lanes(n - 1, lanes)


def latch_row_shape(m: Module, start, n, size: int, count: str, last: str, tail: str):
    """A row of ``n`` int8 in pieces of ``size`` (words of lanes, AXI beats of bytes; a power of
    two), registered when ``start`` is high: returns ``(count, last, tail)``, the pieces a row
    (``ceil(n / size)``), the last piece's index (``(n - 1) // size``, so a walk ends on an
    equality, no add in front of the compare) and its lanes (:func:`tail_mask`).  The three
    signals are called ``count``, ``last`` and ``tail``."""
    sh = _log2(size)
    pieces, last_i, tail_m = Signal(16, name=count), Signal(16, name=last), Signal(size, name=tail)
    with m.If(start):
        m.d.sync += [pieces.eq((n + size - 1) >> sh), last_i.eq((n - 1) >> sh), tail_m.eq(tail_mask(n, size))]
    return pieces, last_i, tail_m


class _RowIO(wiring.Component):
    """Common part: the command latch, ``busy``/``done``, per-row DMA requests (one request of
    ``beats`` beats per row at ``addr + i * stride``)."""

    def __init__(self, acc: AcceleratorConfig):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"{type(self).__name__} takes an AcceleratorConfig, not {acc!r}")
        self.acc = acc
        self.lanes = isa.column_align(acc)
        self.db = acc.shell.data_bytes
        super().__init__(executor_members(acc))

    def _common(self, m: Module, req):
        """Returns the latched fields ``c``, ``busy``, ``clr`` and, registered with the fields,
        the row's ``beats`` and ``words``, the last beat's and word's indices (``b_last``,
        ``w_last``), the last row's (``r_last``) and the last beat's bytes / word's lanes
        (``b_tail``, ``w_tail``: :func:`tail_mask`)."""
        L, db = self.lanes, self.db
        c = Signal(fields_layout())
        busy = Signal()
        start = Signal()
        clr = Signal()
        r_last = Signal(16)
        m.d.comb += [
            self.cmd.ready.eq(~busy), start.eq(self.cmd.valid & self.cmd.ready),
            clr.eq(start | self.abort),
        ]
        p = self.cmd.payload
        with m.If(start):
            m.d.sync += [c.eq(p), busy.eq(1), r_last.eq(p.live_m - 1)]
        beats, b_last, b_tail = latch_row_shape(m, start, p.live_n, db, "beats", "b_last", "b_tail")
        words, w_last, w_tail = latch_row_shape(m, start, p.live_n, L, "words", "w_last", "w_tail")

        # -- one DMA request per row -----------------------------------------------------------
        q_on = Signal()
        q_r = Signal(16)
        q_off = Signal(32)
        m.d.comb += [req.valid.eq(q_on), req.payload.region.eq(c.region),
                     req.payload.offset.eq(q_off), req.payload.beats.eq(beats)]
        with m.If(req.valid & req.ready):
            m.d.sync += [q_off.eq(q_off + c.stride), q_r.eq(q_r + 1)]
            with m.If(q_r + 1 == c.live_m):
                m.d.sync += q_on.eq(0)
        with m.If(start):
            m.d.sync += [q_on.eq(self.cmd.payload.live_m != 0), q_r.eq(0),
                         q_off.eq(self.cmd.payload.addr)]
        with m.If(self.abort):
            m.d.sync += [busy.eq(0), q_on.eq(0)]
        return c, busy, clr, dict(beats=beats, words=words, b_last=b_last, w_last=w_last, r_last=r_last,
                                  b_tail=b_tail, w_tail=w_tail)

    def _finish(self, m: Module, busy, c, last_handshake):
        """``done`` with the last handshake (or at once for a command of 0 rows)."""
        empty = Signal()
        m.d.comb += empty.eq(busy & (c.live_m == 0))
        with m.If((last_handshake | empty) & ~self.abort):
            m.d.comb += self.done.eq(1)
            m.d.sync += busy.eq(0)


    def _regroup(self, m: Module, busy, clr, i, i_per_row, in_width, out_width, o_per_row, r_last, sink):
        """``i`` (``in_width``-bit words, ``i_per_row`` a row) -> ``out_width``-bit words, row by
        row (a row's last input word ends its last output word); the first ``o_per_row`` of a
        row go to ``sink`` (``valid``/``ready``), the rest are dropped.  ``r_last``: the last
        row's index (a register).  Returns (output data, output counter, pulse with the last
        handshake of the command)."""
        m.submodules.gb = gb = ResetInserter(clr)(Gearbox(in_width, out_width))
        b = Signal(16)
        m.d.comb += [gb.i.valid.eq(busy & i.valid), i.ready.eq(busy & gb.i.ready),
                     gb.i.payload.data.eq(i.payload), gb.i.payload.last.eq(b + 1 == i_per_row)]
        with m.If(gb.i.valid & gb.i.ready):
            m.d.sync += b.eq(Mux(b + 1 == i_per_row, 0, b + 1))
        o = RowCounter("o")
        keep = Signal()
        m.d.comb += [keep.eq(o.w < o_per_row),
                     sink.valid.eq(gb.o.valid & keep), gb.o.ready.eq(sink.ready | ~keep)]
        last = Signal()
        with m.If(gb.o.valid & gb.o.ready):
            with m.If(gb.o.payload.last):
                m.d.sync += [o.w.eq(0), o.r.eq(o.r + 1)]
                m.d.comb += last.eq(o.r == r_last)
            with m.Else():
                m.d.sync += o.w.eq(o.w + 1)
        with m.If(clr):
            m.d.sync += b.eq(0)
            o.reset(m)
        return gb.o.payload.data, o, last


class LoadExecutor(_RowIO):
    """LOAD: ``dma_rd`` beats -> words of ``lanes`` int8 -> ``dst`` writes (lane-masked)."""

    def elaborate(self, platform):
        L, db = self.lanes, self.db
        m = Module()
        c, busy, clr, r = self._common(m, self.dma_rd.req)
        # the first ``words`` words of a row are written, the rest of its last beat dropped
        word, o, last = self._regroup(m, busy, clr, self.dma_rd.data, r["beats"], 8 * db, 8 * L, r["words"],
                                      r["r_last"], self.dst)
        m.d.comb += [
            self.dst.payload.row.eq(c.dst_row + o.r),
            self.dst.payload.word.eq((c.dst_col >> _log2(L)) + o.w),
            self.dst.payload.data.eq(word),
            self.dst.payload.mask.eq(Mux(o.w == r["w_last"], r["w_tail"], (1 << L) - 1)),
        ]
        self._finish(m, busy, c, last)
        return m


class StoreExecutor(_RowIO):
    """STORE: ``src`` reads -> words of ``lanes`` int8 -> AXI beats -> ``dma_wr`` (byte strobes)."""

    def elaborate(self, platform):
        L, db = self.lanes, self.db
        m = Module()
        c, busy, clr, r = self._common(m, self.dma_wr.req)

        # buffer reads, row by row
        rd = RowCounter("rd")
        rd_on = Signal()
        m.d.comb += [self.src.cmd.valid.eq(rd_on), self.src.cmd.payload.row.eq(c.src_row + rd.r),
                     self.src.cmd.payload.word.eq((c.src_col >> _log2(L)) + rd.w)]
        with m.If(self.src.cmd.valid & self.src.cmd.ready):
            _, end = rd.step(m, r["words"], c.live_m, last=(r["w_last"], r["r_last"]))
            with m.If(end):
                m.d.sync += rd_on.eq(0)
        with m.If(clr):
            m.d.sync += rd_on.eq(~self.abort & (self.cmd.payload.live_m != 0))
            rd.reset(m)

        # the first ``beats`` beats of a row are written, the rest of its last word dropped
        wd = self.dma_wr.data
        beat, o, last = self._regroup(m, busy, clr, self.src.data, r["words"], 8 * L, 8 * db, r["beats"],
                                      r["r_last"], wd)
        m.d.comb += [wd.payload.data.eq(beat),
                     wd.payload.strb.eq(Mux(o.w == r["b_last"], r["b_tail"], (1 << db) - 1))]
        self._finish(m, busy, c, last)
        return m
