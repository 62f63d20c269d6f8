"""Epilogue router: GEMM accumulator rows -> per-channel requantization -> (int8 | GELU | sigmoid |
the softmax row stage) -> token-buffer writes.

The GEMM engine's raw accumulator rows (``cols`` lanes of signed ``acc_bits``, one token of one N
tile) go one of these ways, chosen per GEMM by ``mode`` (:class:`heatvit.isa.Epilogue`):

* ``REQ8``: ``sat8(round_half_away((acc + bias) * mult / 2**shift))`` per channel
  (:func:`heatvit.golden.requantize`, ``out_bits = 8``) -> ``wr``;
* ``REQ16_GELU`` / ``REQ8_GELU``: the same requantizer saturating to 16 / 8 bits, then the GELU
  unit (:class:`heatvit.rtl.nonlinear.units.ActUnit`, per-tensor ``gelu`` parameters, int8 out,
  :func:`heatvit.golden.nonlinear.gelu`) -> ``wr``;
* ``REQ8_SIGMOID``: requantize to int8, then the sigmoid (``sigmoid`` parameters, [0, 255]
  out, :func:`heatvit.golden.nonlinear.sigmoid`) on lane 0 of the GELU unit, one value a cycle
  (:class:`SerialAct`; the selectors' head weights, a few channels: no multiplier of its own)
  -> ``wr`` (the byte holds the uint8 pattern);
  not built when ``acc.selectors`` is False (the descriptor check refuses the epilogue there);
* ``RAW_SOFTMAX``: the raw accumulators (no bias, no requantization) -> ``raw``;
  ``REQ8_SOFTMAX``: the int8 requantized values (sign-extended to ``acc_bits``) -> ``raw``.  The
  softmax needs whole rows: :class:`~heatvit.rtl.accel.softmax_rows.SoftmaxRows` takes ``raw``.

``wr`` is a token-buffer write of ``lanes = isa.column_align(acc)`` int8 (``max(R, C)``; ``C``
divides it): N tile ``nt`` of token ``m`` is row ``dst_row + m``, word ``dst_word + nt * C //
lanes``, lanes ``nt * C % lanes`` on; lane mask = those ``C`` lanes whose channel is ``< n``.
``wr.last`` marks the write of the row tagged ``last``.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.isa import Epilogue

from ..gemm import layouts
from ..nonlinear.pipe import Pipe, round_shift_pipe, saturate
from ..nonlinear.dual_act import GeluSigmoidUnit
from ..nonlinear.units import ActUnit, act_params_layout
from .ports import buffer_write_layout
from .token_buffer import ROW_BITS, WORD_BITS

FC1_BITS = 16
SIGMOID_OUT_BITS = 9
"""The sigmoid unit's signed output width: [0, 255] results (``record_limits`` ``sigmoid``)."""
MODE_BITS = 3
ROUND_STAGES = 2
"""The requantizer's rounding add and shift (:func:`..nonlinear.pipe.round_shift_pipe`), each
registered; the saturation follows in a third stage."""
ROWS_IN_FLIGHT = 32
"""Rows a :class:`SerialAct` holds at once (input, inside its unit, output): more than its unit's
latency, so rows of one value each still enter at one per cycle."""


def row_tag(acc: AcceleratorConfig) -> data.StructLayout:
    g = acc.gemm
    return data.StructLayout({"m": unsigned(max(1, (g.max_m - 1).bit_length())),
                              "nt": unsigned(max(1, (g.max_n_tiles - 1).bit_length())),
                              "last": unsigned(1)})


def acc_row(acc: AcceleratorConfig) -> data.StructLayout:
    """An engine accumulator row: ``acc`` (``cols`` x signed ``acc_bits``) and its :func:`row_tag`."""
    return data.StructLayout({"acc": layouts.acc_word(acc.gemm), "tag": row_tag(acc)})


def write_last_layout(lanes: int) -> data.StructLayout:
    """A token-buffer write (:func:`.ports.buffer_write_layout`) and ``last`` (the GEMM's final write)."""
    return data.StructLayout({**buffer_write_layout(lanes).members, "last": 1})


def param_word(acc: AcceleratorConfig) -> data.StructLayout:
    """A write into the per-channel parameter memory: word ``addr`` (N tile), lane ``mask``
    (channel ``addr * C + lane``), ``cols`` records :func:`heatvit.rtl.gemm.layouts.channel_params`."""
    g = acc.gemm
    return data.StructLayout({"addr": unsigned(max(1, (g.max_n_tiles - 1).bit_length())), "mask": g.cols,
                              "data": data.ArrayLayout(layouts.channel_params(g), g.cols)})


class EpilogueRouter(wiring.Component):
    """Enable-gated pipeline (a stalled output freezes it; nothing lost or duplicated).

    * ``params`` (in, always ready): writes of the per-channel requantization memory
      (:func:`param_word`).
    * ``i`` (in): ``acc`` (``cols`` x signed ``acc_bits``) and ``tag`` (``m``: token, ``nt``:
      N tile, ``last``).
    * ``mode`` (:class:`~heatvit.isa.Epilogue`), ``n`` (channels), ``dst_row``, ``dst_word``,
      ``act`` (the GELU's parameters, int8 out, or the sigmoid's, signed 9-bit out: the
      epilogue's nonlinear record): held constant while a GEMM streams (``n`` set no later than its
      first row: the lane masks are registered from it).
    * ``wr`` (out): :func:`write_last_layout` (REQ8, REQ16_GELU, REQ8_GELU, REQ8_SIGMOID);
      ``raw`` (out): :func:`acc_row` (RAW_SOFTMAX: the accumulators unchanged; REQ8_SOFTMAX:
      the int8 requantized values, sign-extended).
    """

    def __init__(self, acc: AcceleratorConfig, row_bits: int = ROW_BITS, word_bits: int = WORD_BITS):
        self.acc, self.g = acc, acc.gemm
        g = self.g
        self.lanes = isa.column_align(acc)
        self.lanes_nl = dataclasses.replace(acc.nonlinear, lanes=g.cols)
        self.row_bits, self.word_bits = row_bits, word_bits
        super().__init__({
            "params": In(stream.Signature(param_word(acc))),
            "i": In(stream.Signature(acc_row(acc))),
            "mode": In(MODE_BITS), "n": In(g.n_bits), "dst_row": In(row_bits), "dst_word": In(word_bits),
            "act": In(act_params_layout(SIGMOID_OUT_BITS)),
            "wr": Out(stream.Signature(write_last_layout(self.lanes))),
            "raw": Out(stream.Signature(acc_row(acc))),
        })

    def elaborate(self, platform):
        g = self.g
        C, lanes = g.cols, self.lanes
        m = Module()
        tag_l = row_tag(self.acc)

        # -- per-channel parameter memory (lane-wise, addressed by N tile) -----------------------
        prm = layouts.channel_params(g)
        m.submodules.prm = mem = Memory(shape=data.ArrayLayout(prm, C), depth=g.max_n_tiles, init=[])
        wp = mem.write_port(granularity=1)   # one lane (channel) per enable bit
        rp = mem.read_port(transparent_for=())
        m.d.comb += [self.params.ready.eq(1), wp.addr.eq(self.params.payload.addr),
                     wp.data.eq(self.params.payload.data),
                     wp.en.eq(Mux(self.params.valid, self.params.payload.mask, 0))]

        # -- requantizer pipeline: s0 (input + param read), s1 (product), s2 (rounding add),
        # s3 (shift), s4 (saturate); "2" names the last stage's signals ----------------------------
        en = Signal()
        out_ready = Signal()
        ctl = Pipe(m, en, "req")
        v0 = ctl.reg(self.i.valid, 1, "v")
        a0 = ctl.reg(self.i.payload.acc, layouts.acc_word(g), "a")
        t0 = ctl.reg(self.i.payload.tag, tag_l, "t")
        stages = 1 + ROUND_STAGES + 1
        v2, t2, raw2 = ctl.delay(v0, stages, "v"), ctl.delay(t0, stages, "t"), ctl.delay(a0, stages, "raw")
        m.d.comb += [en.eq(~v2 | out_ready), self.i.ready.eq(en), rp.en.eq(en),
                     rp.addr.eq(self.i.payload.tag.nt)]
        prod_shape = signed(g.acc_bits + 1 + g.mult_bits + 1)
        y16 = Signal(data.ArrayLayout(signed(FC1_BITS), C))
        wide = self.mode == Epilogue.REQ16_GELU
        for lane in range(C):
            p = rp.data[lane]
            prod = Signal(prod_shape, name=f"prod{lane}")
            sh = Signal(g.shift_bits, name=f"shift{lane}")
            with m.If(en):
                m.d.sync += [prod.eq((a0[lane] + p.bias) * p.mult), sh.eq(p.shift)]
            q, lat = round_shift_pipe(Pipe(m, en, f"rq{lane}"), prod, sh)
            assert lat == ROUND_STAGES
            with m.If(en):
                m.d.sync += y16[lane].eq(Mux(wide, saturate(q, -(1 << 15), (1 << 15) - 1),
                                             saturate(q, -128, 127)))

        # -- destination address and lane mask of a row -------------------------------------------
        per_word = lanes // C                 # N tiles per buffer word (powers of two)
        sub_bits = (per_word - 1).bit_length()

        # N tile nt's live lanes, from registers of n (held for the GEMM; its first row comes
        # cycles after it is set): all C below the last tile, the remainder's lanes in it.  A
        # row's lanes are a compare of nt with a register (no subtract-then-compare chain)
        cb = (C - 1).bit_length()
        full_tiles = Signal(max(1, g.n_bits - cb), name="full_tiles")   # n // C
        rem = Signal(range(C), name="rem")                               # n % C
        rem_mask = Signal(C, name="rem_mask")                           # its lanes
        m.d.sync += [full_tiles.eq(self.n >> cb), rem.eq(self.n[:cb]),
                     rem_mask.eq((1 << self.n[:cb]) - 1 if cb else 0)]

        def live(tag):
            """(all C lanes live, the row's live lanes) of a row of tag ``tag`` (rows past the
            last N tile never come)."""
            whole = Signal(name="whole")
            m.d.comb += whole.eq(tag.nt < full_tiles)
            return whole, Mux(whole, (1 << C) - 1, rem_mask)

        def drive_wr(tag, lane_values):
            mask = Signal(C)
            m.d.comb += mask.eq(live(tag)[1])
            w = self.wr.payload
            word = self.dst_word + (tag.nt >> sub_bits)
            row_data = Signal(8 * C)
            for lane, v in enumerate(lane_values):
                m.d.comb += row_data[8 * lane:8 * lane + 8].eq(v)
            if per_word == 1:
                m.d.comb += [w.data.eq(row_data), w.mask.eq(mask)]
            else:
                off = tag.nt[:sub_bits] * C
                m.d.comb += [w.data.eq(row_data << (off * 8)), w.mask.eq(mask << off)]
            m.d.comb += [w.row.eq(self.dst_row + tag.m), w.word.eq(word), w.last.eq(tag.last)]

        # -- GELU and sigmoid paths (one tag FIFO: one mode per GEMM).  With selectors the GELU
        # unit's lane 0 also computes the sigmoid (REQ8_SIGMOID), fed one value a cycle by SerialAct
        sig_mode = self.mode == Epilogue.REQ8_SIGMOID
        if self.acc.selectors:
            m.submodules.gelu_unit = gelu = GeluSigmoidUnit(self.lanes_nl, in_bits=FC1_BITS, out_bits=SIGMOID_OUT_BITS)
            m.d.comb += gelu.sigmoid.eq(sig_mode)
        else:
            m.submodules.gelu_unit = gelu = ActUnit(self.lanes_nl, "gelu", in_bits=FC1_BITS, out_bits=8)
        m.d.comb += [getattr(gelu.params, f).eq(getattr(self.act, f)) for f in act_params_layout(8).members]
        m.submodules.tags = tags = SyncFIFOBuffered(width=tag_l.size, depth=32)
        m.d.comb += [tags.w_data.eq(t2), gelu.i.payload.eq(y16)]
        if self.acc.selectors:     # REQ8_SIGMOID: only token selectors use it
            m.submodules.sigmoid_unit = sig = SerialAct(self.acc, in_bits=8, out_bits=SIGMOID_OUT_BITS)
            m.d.comb += sig.i.payload.count.eq(Mux(live(t2)[0], C, rem))
            for lane in range(C):
                m.d.comb += sig.i.payload.data[lane].eq(y16[lane])
            m.d.comb += [sig.unit_o.payload.eq(gelu.o.payload[0]), sig.unit_o.valid.eq(gelu.o.valid & sig_mode),
                         sig.unit_i.ready.eq(gelu.i.ready & sig_mode)]
            with m.If(sig_mode):
                m.d.comb += [gelu.i.valid.eq(sig.unit_i.valid), gelu.i.payload[0].eq(sig.unit_i.payload),
                             gelu.o.ready.eq(sig.unit_o.ready)]
        t_out = data.View(tag_l, tags.r_data)

        def via(unit, lanes_out):
            m.d.comb += [unit.i.valid.eq(v2 & tags.w_rdy), out_ready.eq(unit.i.ready & tags.w_rdy),
                         tags.w_en.eq(v2 & unit.i.ready)]
            m.d.comb += [self.wr.valid.eq(unit.o.valid), unit.o.ready.eq(self.wr.ready),
                         tags.r_en.eq(unit.o.valid & self.wr.ready)]
            drive_wr(t_out, [lanes_out[lane][:8] for lane in range(C)])

        with m.Switch(self.mode):
            with m.Case(Epilogue.REQ8):
                m.d.comb += [self.wr.valid.eq(v2), out_ready.eq(self.wr.ready)]
                drive_wr(t2, [y16[lane][:8] for lane in range(C)])
            with m.Case(Epilogue.REQ16_GELU, Epilogue.REQ8_GELU):
                via(gelu, gelu.o.payload)
            if self.acc.selectors:
                with m.Case(Epilogue.REQ8_SIGMOID):
                    via(sig, sig.o.payload)
            with m.Default():
                raw_mode = self.mode == Epilogue.RAW_SOFTMAX
                m.d.comb += [self.raw.valid.eq(v2), out_ready.eq(self.raw.ready), self.raw.payload.tag.eq(t2)]
                for lane in range(C):
                    m.d.comb += self.raw.payload.acc[lane].eq(Mux(raw_mode, raw2[lane], y16[lane]))
        return m


class SerialAct(wiring.Component):
    """Rows of ``C = gemm.cols`` lanes through one lane of an elementwise unit: each row's first
    ``count`` values (1 .. C) go to the unit one per cycle (``unit_i``) and its results
    (``unit_o``, in order) leave as one row again (lanes at or past ``count``: what an earlier
    row left there; the router's lane mask, channels below ``n``, leaves them unwritten.  Not
    clearing them saves a LUT per output bit: 144 at 16 x 16, 288 at the board's 32 columns).  For
    epilogues of few channels (REQ8_SIGMOID: the selector's head weights, ``n = heads``), where
    ``C`` lanes of a unit of their own would be multipliers that are nearly always idle: the
    router lends it lane 0 of the GELU unit (:class:`~heatvit.rtl.nonlinear.dual_act.GeluSigmoidUnit`).

    * ``i``: ``data`` (``C`` x signed ``in_bits``) and ``count``; ``o``: ``C`` x signed ``out_bits``.
    * ``unit_i`` (out): one signed ``in_bits`` value; ``unit_o`` (in): its result, signed
      ``out_bits``, in the same order (the unit may hold up to ``ROWS_IN_FLIGHT - 2`` rows).

    A row of ``count`` values takes ``count`` cycles to enter; the next row may enter in the cycle
    after its last value.  Backpressure on ``o`` stalls the unit (nothing lost).
    """

    def __init__(self, acc: AcceleratorConfig, *, in_bits: int, out_bits: int):
        self.C = acc.gemm.cols
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"data": data.ArrayLayout(signed(in_bits), self.C),
                                                        "count": unsigned(self.C.bit_length())}))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(out_bits), self.C))),
            "unit_i": Out(stream.Signature(signed(in_bits))),
            "unit_o": In(stream.Signature(signed(out_bits))),
        })

    def elaborate(self, platform):
        C = self.C
        m = Module()
        ui, uo = self.unit_i, self.unit_o
        # input side: the row being fed, its count, the next lane
        row = Signal.like(self.i.payload.data)
        cnt_in = Signal(range(C + 1))
        k = Signal(range(C + 1))
        busy = Signal()
        last_in = Signal()
        lane_bits = max(1, (C - 1).bit_length())
        count = Signal(range(C + 1))                 # the input row's count, 0 meaning 1
        m.d.comb += count.eq(Mux(self.i.payload.count == 0, 1, self.i.payload.count))
        # the counts of the rows accepted and not yet collected, in order
        m.submodules.counts = counts = SyncFIFOBuffered(width=C.bit_length(), depth=ROWS_IN_FLIGHT)
        m.d.comb += [ui.valid.eq(busy), ui.payload.eq(row[k[:lane_bits]]),
                     last_in.eq(ui.ready & (k + 1 >= cnt_in)),
                     self.i.ready.eq((~busy | last_in) & counts.w_rdy)]
        with m.If(busy & ui.ready):
            m.d.sync += k.eq(k + 1)
            with m.If(last_in):
                m.d.sync += busy.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [row.eq(self.i.payload.data), cnt_in.eq(count), k.eq(0), busy.eq(1)]
        m.d.comb += [counts.w_data.eq(count), counts.w_en.eq(self.i.valid & self.i.ready)]
        # output side: collect a row's results, then hold it until taken
        out = Signal.like(self.o.payload)
        j = Signal(range(C + 1))
        full = Signal()
        m.d.comb += [uo.ready.eq(~full | self.o.ready), self.o.valid.eq(full), self.o.payload.eq(out)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += full.eq(0)
        with m.If(uo.valid & uo.ready):              # after the take: a row may start in its cycle
            m.d.sync += [out[j[:lane_bits]].eq(uo.payload), j.eq(j + 1)]
            with m.If(j + 1 >= counts.r_data):
                m.d.sync += [full.eq(1), j.eq(0)]
                m.d.comb += counts.r_en.eq(1)
        return m
