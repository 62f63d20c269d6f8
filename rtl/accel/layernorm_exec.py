"""LAYERNORM descriptor executor: ``dst = LayerNorm(src)`` over ``live_m`` rows of ``n`` channels.

Bit-exact with ``heatvit.compiler.interpret`` (``Machine._layernorm``: ``golden.nonlinear.layernorm``
with the descriptor's parameter block).  Steps of one descriptor:

1. ``dma_rd``: one request for the whole parameter block (:func:`heatvit.isa.param_block`:
   ``ln`` record at ``addr``, ``gamma`` n x int32 at ``addr + 64``, ``beta`` n x int64 at the next
   64-byte boundary; region MODEL), :func:`param_beats` beats of ``acc.shell.data_width`` bits,
   little-endian.  The beats are cut into 64-bit chunks (one per cycle); gamma pairs go to a
   staging memory, each beta is joined with its gamma and written to the LayerNorm unit's
   ``affine`` port.
2. Every record value is checked against :func:`heatvit.isa.record_limits` (``ln``: g_shift,
   n, out_bits, in_bits, every gamma and beta), the record's ``n`` against the descriptor's,
   and ``eps_q`` against the unit's variance width (at most ``2**(moments_bits - 1) - 1``, the
   compiler's ``layernorm_params`` limit).  Any failure: the block is still read to its end, no
   row is read or written, and ``done`` pulses with ``error = CTRL_BAD_PARAMS``.
3. ``src``: the window's ``live_m`` rows, ``ceil(n / lanes)`` words each (lanes =
   :func:`heatvit.isa.column_align`), regrouped into beats of ``row_lanes`` for
   :class:`heatvit.rtl.nonlinear.rows.LayerNormUnit`; its int8 results are regrouped into words
   and written to ``dst`` (lane mask: channels ``>= n`` of a row's last word are not written).
   ``dst`` may be the same window as ``src`` (a row is read whole before it is written) or
   disjoint from it; a partial overlap (another row or column offset in the same buffer) is
   undefined (rows are written as they are computed).

``done`` pulses after the last write (``error`` = 0), or at once for ``live_m = 0`` (no
error) and for ``n = 0`` or ``n > nonlinear.max_dim`` (``CTRL_BAD_SHAPE``, the sequencer's
check, repeated so such a descriptor cannot hang the executor).  ``abort``
resets every register (and the units) in the next cycle; memories keep their contents.
``aux`` and ``dma_wr`` are not used (left idle).

Cycles from the ``cmd`` handshake to ``done``, no stalls (measured, ``testbench/test_accel_ln.py``
checks it)::

    P * max(1, 64 / data_width) + (M + 1) * B' + 6 + layernorm_row_latency,
    B' = ceil(n / min(lanes, row_lanes))

(:func:`cycles`).  ``P = param_block_bytes / 8`` (64-bit chunks of the parameter block, one per
cycle), ``B'`` the cycles a row takes to enter the LayerNorm unit, whose rows follow each other
``B'`` cycles apart (it overlaps a row's statistics with the previous row's output), and
``layernorm_row_latency`` the unit's one-row latency beyond ``2B``
(:func:`heatvit.rtl.nonlinear.rows.layernorm_row_latency`, 25 at the shipped tables).
``row_lanes`` is the unit's (``acc.layernorm_lanes``: at most one buffer word).  With
``row_lanes > lanes`` (a unit beat of several words: only by an explicit ``row_lanes``) a row can
take up to one cycle more.  Default config, DeiT-T (n = 192, M = 197): 2,703 cycles (2,699 before
the unit's moment stages, 6,816 when
the unit took ``B' + 21`` a row; 13,353 with the 4-lane unit it had before that).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig, check_row_lanes
from heatvit.errors import ErrorCode
from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.layernorm import moments_bits

from ..nonlinear.pipe import outside
from ..nonlinear.rows import LayerNormUnit, layernorm_row_latency
from . import ports
from .ports import DmaRegion

CHUNK_BITS = 64
"""The parameter block is parsed in 64-bit chunks (one beta, two gammas, two record words)."""


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def cycles(acc: AcceleratorConfig, m: int, n: int, row_lanes: int | None = None) -> int:
    """The executor's cycles on ``m`` rows of ``n`` channels, no stalls (the module docstring's
    formula; ``row_lanes`` default ``acc.layernorm_lanes``)."""
    row_lanes = acc.layernorm_lanes if row_lanes is None else row_lanes
    p = isa.param_block_bytes(acc, isa.Descriptor(isa.Op.LAYERNORM, n=n)) // 8
    b = _ceil(n, min(isa.column_align(acc), row_lanes))
    nl = dataclasses.replace(acc.nonlinear, row_lanes=row_lanes)
    return p * max(1, CHUNK_BITS // acc.shell.data_width) + (m + 1) * b + 6 + layernorm_row_latency(nl)


def param_beats(acc: AcceleratorConfig, n: int) -> int:
    """DMA beats of a LAYERNORM parameter block for ``n`` channels (the request's ``beats``)."""
    return isa.param_block_bytes(acc, isa.Descriptor(isa.Op.LAYERNORM, n=n)) // acc.shell.data_bytes


class Regroup(wiring.Component):
    """Rows of ``length`` elements, carried in words of ``w_in`` elements, re-cut into words of
    ``w_out`` elements (``w_in``, ``w_out``: powers of two).

    * ``length`` (in, hold stable while rows flow): elements per row, 1 .. ``2**len_bits - 1``.
    * ``i``: ``ceil(length / w_in)`` words per row; element ``j`` of a row in lane ``j mod w_in``
      of word ``j // w_in`` (lanes past the row's end in its last word are ignored).
    * ``o``: ``data`` (``w_out`` elements, same order; lanes past the row's end unspecified) and
      ``last`` (the row's last word), ``ceil(length / w_out)`` words per row.

    One ``min(w_in, w_out)``-element chunk moves per cycle; the output is registered
    (backpressure honoured, no combinational path from ``i`` to ``o``).
    """

    def __init__(self, shape, w_in: int, w_out: int, len_bits: int):
        for name, v in (("w_in", w_in), ("w_out", w_out)):
            if not isinstance(v, int) or v < 1 or v & (v - 1):
                raise ValueError(f"Regroup: {name} must be a power of two, not {v!r}")
        self.shape, self.w_in, self.w_out, self.len_bits = shape, w_in, w_out, len_bits
        super().__init__({
            "length": In(len_bits),
            "i": In(stream.Signature(data.ArrayLayout(shape, w_in))),
            "o": Out(stream.Signature(data.StructLayout({"data": data.ArrayLayout(shape, w_out), "last": 1}))),
        })

    def elaborate(self, platform):
        m = Module()
        g = min(self.w_in, self.w_out)
        s, t = self.w_in // g, self.w_out // g
        ew = data.ArrayLayout(self.shape, 1).size
        cb = g * ew                                    # chunk bits
        nch = Signal(self.len_bits)                    # chunks per row
        m.d.comb += nch.eq((self.length + (g - 1)) >> (g.bit_length() - 1))
        c = Signal(self.len_bits)                      # chunk index in the row
        last = Signal()
        m.d.comb += last.eq(c + 1 >= nch)
        raw_in = self.i.payload.as_value()
        chunk = Signal(cb)
        sub_end = Signal()
        if s == 1:
            m.d.comb += [chunk.eq(raw_in), sub_end.eq(1)]
        else:
            sub = Signal(range(s))
            m.d.comb += [chunk.eq(raw_in.word_select(sub, cb)), sub_end.eq(sub == s - 1)]
        gb = Signal(self.w_out * ew)
        ov, olast = Signal(), Signal()
        free = Signal()
        take = Signal()
        m.d.comb += [
            free.eq(~ov | self.o.ready),
            take.eq(self.i.valid & free),
            self.i.ready.eq(free & (sub_end | last)),
            self.o.valid.eq(ov), self.o.payload.data.eq(gb), self.o.payload.last.eq(olast),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += ov.eq(0)
        with m.If(take):
            m.d.sync += c.eq(Mux(last, 0, c + 1))
            if s > 1:
                m.d.sync += sub.eq(Mux(sub_end | last, 0, sub + 1))
            if t == 1:
                m.d.sync += [gb.eq(chunk), ov.eq(1), olast.eq(last)]
            else:
                gk = Signal(range(t))
                m.d.sync += gb.word_select(gk, cb).eq(chunk)
                with m.If((gk == t - 1) | last):
                    m.d.sync += [gk.eq(0), ov.eq(1), olast.eq(last)]
                with m.Else():
                    m.d.sync += gk.eq(gk + 1)
        return m


class LayerNormExecutor(wiring.Component):
    """The LAYERNORM executor: :func:`heatvit.rtl.accel.ports.executor_members` only (see the
    module docstring for the protocol on each port).  ``row_lanes``: channels per beat of its
    LayerNorm unit (default ``acc.layernorm_lanes``, one buffer word; a power of two up to 16
    dividing ``nonlinear.max_dim``)."""

    def __init__(self, acc: AcceleratorConfig, row_lanes: int | None = None):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"acc must be an AcceleratorConfig, not {acc!r}")
        if acc.nonlinear.layernorm_in_bits < 8:
            raise ValueError(f"acc.nonlinear.layernorm_in_bits must be >= 8 (int8 token buffers), "
                             f"not {acc.nonlinear.layernorm_in_bits!r}")
        row_lanes = acc.layernorm_lanes if row_lanes is None else row_lanes
        check_row_lanes("LayerNormExecutor", "row_lanes", row_lanes, nonlinear__max_dim=acc.nonlinear.max_dim)
        self.acc, self.row_lanes = acc, row_lanes
        super().__init__(ports.executor_members(acc))

    def elaborate(self, platform):
        acc = self.acc
        RL = self.row_lanes
        nl = dataclasses.replace(acc.nonlinear, row_lanes=RL)
        L = isa.column_align(acc)
        log_l = L.bit_length() - 1
        dw = acc.shell.data_width
        max_n = nl.max_dim
        nbits = max_n.bit_length()
        m = Module()

        m.submodules.ln = ln = LayerNormUnit(nl)
        m.submodules.rg_in = rg_in = Regroup(signed(8), L, RL, nbits)
        m.submodules.rg_out = rg_out = Regroup(unsigned(8), RL, L, nbits)
        blk_words_bits = (isa.param_block_bytes(acc, isa.Descriptor(isa.Op.LAYERNORM, n=max_n)) // 4).bit_length()
        m.submodules.rg_dma = rg_dma = Regroup(unsigned(32), dw // 32, CHUNK_BITS // 32, blk_words_bits)

        f = Signal(ports.fields_layout())
        n = Signal(range(max_n + 1))                   # channels (checked <= max_dim by the sequencer)
        rows = Signal(16)
        blk_bytes = Signal(blk_words_bits + 2)
        beta_at = Signal(blk_words_bits)               # first beta chunk
        g_end = Signal(blk_words_bits + 1)             # past the last gamma chunk
        beta_end = Signal(blk_words_bits + 1)          # past the last beta chunk
        n15 = Signal(range(max_n + 16))                # n + 15: a gamma chunk's upper half is live below it
        words_m1, rows_m1 = Signal(16), Signal(16)     # words - 1, rows - 1 (the counters' last values)
        # registered from the command with n (300 MHz, docs/perf.md "Logic depth": no add in
        # front of the chunk compares)
        with m.If(self.cmd.valid & self.cmd.ready):
            pn = self.cmd.payload.live_n
            b_at = 8 + (((pn + 15) >> 4) << 3)
            m.d.sync += [blk_bytes.eq(64 + (((pn * 4) + 63) >> 6 << 6) + (((pn * 8) + 63) >> 6 << 6)),
                         beta_at.eq(b_at), beta_end.eq(b_at + pn), g_end.eq(8 + ((pn + 1) >> 1)),
                         n15.eq(pn + 15), words_m1.eq((pn - 1) >> log_l),
                         rows_m1.eq(self.cmd.payload.live_m - 1)]
        m.d.comb += [rg_in.length.eq(n), rg_out.length.eq(n), rg_dma.length.eq(blk_bytes >> 2)]

        # -- parameter block: record words, gamma staging, beta + gamma -> affine ------------------
        g_shift, eps_lo, eps_hi, n_rec, out_bits, in_bits = (Signal(32, name=nm) for nm in isa.LN_RECORD)
        bad = Signal()                                 # a gamma or beta out of range (sticky)
        bad_now = Signal()                             # ... in this cycle's chunk
        bad_last = Signal()                            # ... in the previous cycle's (registered: the
        m.d.sync += bad_last.eq(bad_now)               # range compares are not in front of the OR)
        with m.If(bad_last):
            m.d.sync += bad.eq(1)
        j = Signal(blk_words_bits)                     # chunk index
        gmem = Memory(shape=data.ArrayLayout(signed(F.LN_GAMMA_BITS), 2), depth=_ceil(max_n, 2), init=[])
        m.submodules.gmem = gmem
        gw, gr = gmem.write_port(), gmem.read_port()
        lims = isa.record_limits(acc)["ln"]
        ch = rg_dma.o.payload.data.as_value()
        lo, hi = ch[:32], ch[32:]
        bv, bi, bval = Signal(), Signal(range(max_n)), Signal(signed(F.LN_BETA_BITS))
        m.d.comb += [ln.affine.valid.eq(bv), ln.affine.payload.index.eq(bi),
                     ln.affine.payload.gamma.eq(gr.data[bi[0]]), ln.affine.payload.beta.eq(bval)]
        m.d.sync += bv.eq(0)

        def out_of(v, name):
            return outside(v, *lims[name])

        loading = Signal()
        # whether chunk j is a gamma / beta chunk and a gamma chunk's upper half is live
        # (2 (j - 8) + 1 < n  <=>  2 j < n + 15), registered as j moves (decided for j + 1)
        g_in, b_in, hi_live = Signal(), Signal(), Signal()
        j1 = Signal(blk_words_bits + 1)
        m.d.comb += j1.eq(j + 1)
        with m.If(rg_dma.o.valid & loading):
            m.d.sync += [j.eq(j + 1), g_in.eq((j1 >= 8) & (j1 < g_end)), b_in.eq((j1 >= beta_at) & (j1 < beta_end)),
                         hi_live.eq(Cat(0, j1) < n15)]
            with m.Switch(j):
                with m.Case(0):
                    m.d.sync += [g_shift.eq(lo), eps_lo.eq(hi)]
                with m.Case(1):
                    m.d.sync += [eps_hi.eq(lo), n_rec.eq(hi)]
                with m.Case(2):
                    m.d.sync += [out_bits.eq(lo), in_bits.eq(hi)]
            gi = (j - 8)[:blk_words_bits]
            with m.If(g_in):
                m.d.comb += [gw.addr.eq(gi), gw.data[0].eq(lo), gw.data[1].eq(hi), gw.en.eq(1)]
                with m.If(out_of(lo.as_signed(), "gamma") | (hi_live & out_of(hi.as_signed(), "gamma"))):
                    m.d.comb += bad_now.eq(1)
            bix = (j - beta_at)[:blk_words_bits]
            with m.If(b_in):
                m.d.comb += [gr.addr.eq(bix >> 1), gr.en.eq(1)]
                m.d.sync += [bv.eq(1), bi.eq(bix), bval.eq(ch.as_signed())]
                with m.If(out_of(ch.as_signed(), "beta")):
                    m.d.comb += bad_now.eq(1)

        eps = Signal(64)
        eps_max = ((1 << moments_bits(8, nl.dim_bits)) - 1) // 2
        record_bad = Signal()
        # the record words' checks, registered: the words come first in the block (chunks 0-2),
        # many cycles before CHECK (300 MHz, docs/perf.md "Logic depth")
        words_bad = Signal()
        m.d.sync += words_bad.eq(out_of(g_shift, "g_shift") | out_of(n_rec, "n") | (n_rec != n)
                                 | out_of(out_bits, "out_bits") | out_of(in_bits, "in_bits") | (eps > eps_max))
        m.d.comb += [
            eps.eq(eps_hi << 32 | eps_lo),
            record_bad.eq(bad | bad_last | words_bad),
            ln.params.length.eq(n), ln.params.eps.eq(eps), ln.params.out_shift.eq(F.LN_NORM_FRAC + g_shift),
        ]

        # -- rows: src reads -> regroup -> LayerNorm unit -> regroup -> dst writes -----------------
        rr, rw = Signal(16), Signal(16)                # next read: row, word
        reading = Signal()
        m.d.comb += [
            self.src.cmd.valid.eq(reading),
            self.src.cmd.payload.row.eq(f.src_row + rr), self.src.cmd.payload.word.eq((f.src_col >> log_l) + rw),
        ]
        with m.If(self.src.cmd.valid & self.src.cmd.ready):
            with m.If(rw == words_m1):
                m.d.sync += [rw.eq(0), rr.eq(rr + 1)]
                with m.If(rr == rows_m1):
                    m.d.sync += reading.eq(0)
            with m.Else():
                m.d.sync += rw.eq(rw + 1)
        wiring.connect(m, wiring.flipped(self.src.data), rg_in.i)
        m.d.comb += [ln.i.valid.eq(rg_in.o.valid), rg_in.o.ready.eq(ln.i.ready)]
        m.d.comb += [ln.i.payload[k].eq(rg_in.o.payload.data[k]) for k in range(RL)]
        m.d.comb += [rg_out.i.valid.eq(ln.o.valid), ln.o.ready.eq(rg_out.i.ready)]
        m.d.comb += [rg_out.i.payload[k].eq(ln.o.payload.data[k]) for k in range(RL)]

        orow, oword = Signal(16), Signal(16)
        m.d.comb += [
            self.dst.valid.eq(rg_out.o.valid), rg_out.o.ready.eq(self.dst.ready),
            self.dst.payload.row.eq(f.dst_row + orow), self.dst.payload.word.eq((f.dst_col >> log_l) + oword),
            self.dst.payload.data.eq(rg_out.o.payload.data),
            # lane k is written iff oword L + k < n (the bits side by side, no add or wide shift)
            self.dst.payload.mask.eq(Cat(*((Cat(Const(k, log_l), oword) if log_l else oword) < n for k in range(L)))),
        ]
        wrote_last = Signal()
        m.d.comb += wrote_last.eq(self.dst.valid & self.dst.ready & (oword == words_m1) & (orow == rows_m1))
        with m.If(self.dst.valid & self.dst.ready):
            with m.If(oword == words_m1):
                m.d.sync += [oword.eq(0), orow.eq(orow + 1)]
            with m.Else():
                m.d.sync += oword.eq(oword + 1)

        # -- control -------------------------------------------------------------------------------
        code = Signal(8)
        m.d.comb += [self.dma_rd.req.payload.region.eq(DmaRegion.MODEL), self.dma_rd.req.payload.offset.eq(f.addr),
                     self.dma_rd.req.payload.beats.eq(blk_bytes >> (acc.shell.data_bytes.bit_length() - 1))]
        m.d.comb += [rg_dma.i.valid.eq(self.dma_rd.data.valid & loading),
                     self.dma_rd.data.ready.eq(rg_dma.i.ready & loading),
                     rg_dma.i.payload.eq(self.dma_rd.data.payload), rg_dma.o.ready.eq(loading)]
        with m.FSM(name="ln_exec"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    m.d.sync += [f.eq(p), n.eq(p.live_n), rows.eq(p.live_m), rr.eq(0), rw.eq(0), orow.eq(0),
                                 oword.eq(0), j.eq(0), bad.eq(0), bad_last.eq(0), code.eq(0),
                                 g_in.eq(0), b_in.eq(0), hi_live.eq(1)]
                    with m.If(p.live_m == 0):
                        m.next = "DONE"
                    with m.Elif((p.live_n == 0) | (p.live_n > max_n)):     # the sequencer's check, kept here
                        m.d.sync += code.eq(ErrorCode.CTRL_BAD_SHAPE)
                        m.next = "DONE"
                    with m.Else():
                        m.next = "REQ"
            with m.State("REQ"):
                m.d.comb += self.dma_rd.req.valid.eq(1)
                with m.If(self.dma_rd.req.ready):
                    m.d.sync += loading.eq(1)
                    m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(rg_dma.o.valid & rg_dma.o.payload.last):
                    m.d.sync += loading.eq(0)
                    m.next = "CHECK"
            with m.State("CHECK"):                    # the last affine write happens in this cycle
                with m.If(record_bad):
                    m.d.sync += code.eq(ErrorCode.CTRL_BAD_PARAMS)
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += reading.eq(1)
                    m.next = "ROWS"
            with m.State("ROWS"):
                with m.If(wrote_last):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.error.eq(code)]
                m.next = "IDLE"
        return ResetInserter(self.abort)(m)
