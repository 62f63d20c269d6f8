"""Softmax row stage of the GEMM output: N-tile-major score rows -> whole rows -> softmax -> buffer writes.

The engine emits a GEMM's rows N-tile major (all ``m_rows`` tokens of N tile 0, then of tile 1
...), but a softmax needs each token's whole row of ``n`` scores.  This stage stores the tiles in
a score memory (``cols`` x signed ``acc_bits`` per word, word ``nt * m_rows + m``), and as soon
as token ``m``'s last tile is in, reads its ``ceil(n / C)`` words back and feeds them as one row
to softmax row unit ``m % units`` (:class:`heatvit.rtl.nonlinear.rows.SoftmaxUnit`, ``L`` scores
per beat); the units' probabilities (uint8, ``[0, out_max]``: [0, 127] for RAW_SOFTMAX, [0, 255] for
REQ8_SOFTMAX) become token-buffer writes of row ``dst_row + m``, columns ``dst_word * lanes + j``
(one write per beat, lane mask = the beat's elements).

Score memory: one word per (token, N tile) of the largest softmax GEMM: ``max_rows`` =
``min(gemm.max_m, buffers.max_tokens)`` tokens (the destination window's rows) by ``max_tiles`` =
``ceil(min(gemm.max_n, nonlinear.max_tokens, buffers.max_tokens) / C)`` tiles (the row's length
is at most the softmax unit's and the ``P`` buffer's width).  All of it is needed: token 0's
last tile arrives in the engine's last N-tile pass, after every other tile of every token.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig, check_row_lanes

from ..gemm import layouts
from ..nonlinear.rows import SoftmaxUnit, softmax_params_layout
from .epilogue import acc_row, write_last_layout
from .token_buffer import ROW_BITS, WORD_BITS


def score_geometry(acc: AcceleratorConfig) -> tuple[int, int]:
    """``(max_rows, max_tiles)`` of the score memory (see the module doc)."""
    g = acc.gemm
    rows = min(g.max_m, acc.buffers.max_tokens)
    cols = isa.softmax_row_limit(acc)
    return rows, -(-cols // g.cols)


class SoftmaxRows(wiring.Component):
    """``start`` (pulse, before a GEMM's first row): rewind; ``m_rows`` (live M), ``n`` (live N,
    1 .. ``max_tiles * C``), ``dst_row``, ``dst_word`` and ``params`` (softmax record) are held
    for the whole GEMM, ``n`` from two cycles before its first row (its tile and beat counts are
    registered).

    * ``i`` (in, always ready): :func:`.epilogue.acc_row` scores (signed ``acc_bits``), N-tile
      major, exactly ``m_rows * ceil(n / C)`` rows.
    * ``o`` (out): :func:`.epilogue.write_last_layout` writes of the probabilities (uint8
      pattern), ``last`` on the GEMM's final write.

    ``units`` softmax units of ``lanes`` scores per beat take the rows in turn (row ``r`` to unit
    ``r % units``).  A unit overlaps consecutive rows and takes a beat every cycle, as fast as this
    stage's reader gives them, so one unit of ``C`` lanes (a score word a beat) is the fastest
    (rows ``ceil(n / C)`` cycles apart); more units only help narrower ones.  Default:
    ``acc.softmax_units`` units of ``acc.softmax_lanes`` lanes (derived from the array, one unit
    of ``C`` lanes up to 16, :class:`heatvit.config.AcceleratorConfig`); ``lanes`` must be a power
    of two up to 16 dividing ``C`` and ``nonlinear.max_tokens``.
    """

    def __init__(self, acc: AcceleratorConfig, units: int | None = None, lanes: int | None = None,
                 row_bits: int = ROW_BITS, word_bits: int = WORD_BITS):
        units = acc.softmax_units if units is None else units
        lanes = acc.softmax_lanes if lanes is None else lanes
        if not isinstance(units, int) or not 1 <= units <= 4:
            raise ValueError(f"SoftmaxRows: units must be 1 .. 4, not {units!r}")
        check_row_lanes("SoftmaxRows", "lanes", lanes, gemm__cols=acc.gemm.cols,
                        nonlinear__max_tokens=acc.nonlinear.max_tokens)
        self.acc, self.g, self.units = acc, acc.gemm, units
        self.lanes = isa.column_align(acc)
        self.L = lanes
        self.max_rows, self.max_tiles = score_geometry(acc)
        self.nl = dataclasses.replace(acc.nonlinear, row_lanes=self.L, softmax_in_bits=acc.gemm.acc_bits)
        super().__init__({
            "start": In(1),
            "m_rows": In(self.g.m_bits), "n": In(self.g.n_bits),
            "dst_row": In(row_bits), "dst_word": In(word_bits),
            "params": In(softmax_params_layout()),
            "i": In(stream.Signature(acc_row(acc))),
            "o": Out(stream.Signature(write_last_layout(self.lanes))),
        })

    def elaborate(self, platform):
        g = self.g
        C, L, lanes = g.cols, self.L, self.lanes
        spw = C // L                                   # softmax beats per score word
        lb = (L - 1).bit_length()
        depth = self.max_rows * self.max_tiles
        m = Module()
        m.submodules.scores = mem = Memory(shape=layouts.acc_word(g), depth=depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(transparent_for=())
        units = []
        for u in range(self.units):
            units.append(SoftmaxUnit(self.nl))
            m.submodules[f"unit{u}"] = units[u]
            m.d.comb += units[u].params.eq(self.params)

        # registered from n (held for the GEMM, its first row comes cycles after start): the
        # last N tile, the last beat of a row (ceil(n / L) - 1) and the scores in that beat
        nt_last = Signal(range(self.max_tiles + 1))
        beat_end = Signal(range(depth * spw + 1))
        tail = Signal(range(L + 1))
        beats = (self.n + L - 1) >> lb
        m.d.sync += [nt_last.eq(((self.n + C - 1) >> (C - 1).bit_length()) - 1), beat_end.eq(beats - 1),
                     tail.eq(self.n - ((beats - 1) << lb))]

        # -- write side: the engine's rows in arrival order; count the tokens that are complete ----
        wa = Signal(range(depth + 1))
        complete = Signal(range(self.max_rows + 1))
        m.d.comb += [self.i.ready.eq(1), wp.addr.eq(wa), wp.data.eq(self.i.payload.acc),
                     wp.en.eq(self.i.valid)]
        with m.If(self.i.valid):
            m.d.sync += wa.eq(wa + 1)
            with m.If(self.i.payload.tag.nt == nt_last):
                m.d.sync += complete.eq(complete + 1)

        # -- read side: words of complete tokens, prefetched one word ahead of the beat split ------
        rr = Signal(range(self.max_rows + 1))          # token of the next word to read
        rw = Signal(range(self.max_tiles + 1))         # its N tile
        ra = Signal(range(depth + self.max_rows + 1))  # its address rw * m_rows + rr
        have = Signal()                                # rp.data holds a word being split
        sub = Signal(range(max(spw, 2)))               # beat within that word
        bcnt = Signal(range(depth * spw + 1))          # beat within the row
        beat_last = Signal()
        word_done = Signal()
        fire = Signal()
        issue = Signal()
        sel = Signal(range(max(self.units, 2)))        # the unit taking the current row
        m.d.comb += [beat_last.eq(bcnt == beat_end),
                     fire.eq(have & Cat(*(u.i.ready for u in units)).bit_select(sel, 1)),
                     word_done.eq(fire & (beat_last | (sub == spw - 1))),
                     issue.eq((rr < self.m_rows) & (rr < complete) & (~have | word_done)),
                     rp.addr.eq(ra), rp.en.eq(issue)]
        with m.If(issue):
            with m.If(rw == nt_last):
                m.d.sync += [rw.eq(0), rr.eq(rr + 1), ra.eq(rr + 1)]
            with m.Else():
                m.d.sync += [rw.eq(rw + 1), ra.eq(ra + self.m_rows)]
        m.d.sync += have.eq(issue | (have & ~word_done))
        with m.If(fire):
            m.d.sync += [sub.eq(Mux(word_done, 0, sub + 1)), bcnt.eq(Mux(beat_last, 0, bcnt + 1))]
            with m.If(beat_last):
                m.d.sync += sel.eq(Mux(sel == self.units - 1, 0, sel + 1))
        beat = Signal.like(units[0].i.payload)
        m.d.comb += [beat.last.eq(beat_last), beat.count.eq(Mux(beat_last, tail, L))]
        with m.Switch(sub):
            for s in range(spw):
                with m.Case(s):
                    m.d.comb += [beat.data[j].eq(rp.data[s * L + j]) for j in range(L)]
        for u, unit in enumerate(units):
            m.d.comb += [unit.i.valid.eq(have & (sel == u)), unit.i.payload.eq(beat)]

        # -- output: one buffer write per probability beat; unit u has rows u, u + units, ... -------
        # fixed priority between the units (each drains one row at a time, so none starves)
        rows_done = Signal(range(self.max_rows + 1))
        w = self.o.payload
        grant = [Signal(name=f"grant{u}") for u in range(self.units)]
        restart = []
        for u, unit in enumerate(units):
            ro = Signal(range(self.max_rows + self.units), name=f"row{u}", init=u)
            ow = Signal(self.o.payload.word.shape(), name=f"word{u}")      # word offset in the row
            off = Signal(range(max(lanes, 2)), name=f"off{u}")             # lane offset in the word
            restart += [ro.eq(u), ow.eq(0), off.eq(0)]
            ob = unit.o.payload
            earlier = Cat(*(x.o.valid for x in units[:u])).any() if u else 0
            m.d.comb += grant[u].eq(unit.o.valid & ~earlier)
            m.d.comb += unit.o.ready.eq(self.o.ready & grant[u])
            cnt = Mux((ob.count == 0) | (ob.count > L), L, ob.count)
            beat_bits = Signal(8 * L, name=f"beat{u}")
            m.d.comb += [beat_bits[8 * j:8 * j + 8].eq(ob.data[j]) for j in range(L)]
            with m.If(grant[u]):
                m.d.comb += [self.o.valid.eq(1), w.row.eq(self.dst_row + ro), w.word.eq(self.dst_word + ow),
                             w.data.eq(beat_bits << (off * 8)), w.mask.eq(((1 << cnt) - 1) << off),
                             w.last.eq(ob.last & (rows_done == self.m_rows - 1))]
                with m.If(self.o.ready):
                    with m.If(ob.last):
                        m.d.sync += [ro.eq(ro + self.units), ow.eq(0), off.eq(0), rows_done.eq(rows_done + 1)]
                    with m.Elif(off == lanes - L):
                        m.d.sync += [ow.eq(ow + 1), off.eq(0)]
                    with m.Else():
                        m.d.sync += off.eq(off + L)

        with m.If(self.start):
            m.d.sync += [wa.eq(0), complete.eq(0), rr.eq(0), rw.eq(0), ra.eq(0), have.eq(0), sub.eq(0),
                         bcnt.eq(0), sel.eq(0), rows_done.eq(0), *restart]
        return m
