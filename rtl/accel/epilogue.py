"""Epilogue router: GEMM accumulator rows -> (requant int8 | requant int16 -> GELU | raw int32)
-> token-buffer writes.

The GEMM engine's accumulator rows (``cols`` lanes of signed ``acc_bits``, one token of one N
tile) go one of three ways, chosen per GEMM by ``mode`` (:class:`heatvit.isa.Epilogue`):

* ``REQ8``: ``sat8(round_half_away((acc + bias) * mult / 2**shift))`` per channel
  (:func:`heatvit.golden.requantize`, ``out_bits = 8``) -> ``wr``;
* ``REQ16_GELU``: the same requantizer saturating to 16 bits, then the GELU unit
  (:class:`heatvit.rtl.nonlinear.units.ActUnit`, per-tensor ``gelu`` parameters, int8 out,
  :func:`heatvit.golden.nonlinear.gelu`) -> ``wr``;
* ``RAW_SOFTMAX``: the raw accumulators (no bias, no requantization) -> ``raw`` (the softmax
  stage, which needs whole rows of scores).

Not routed yet: the token selector's ``REQ8_GELU``, ``REQ8_SOFTMAX`` and ``REQ8_SIGMOID`` (added
to the ISA after this unit); any mode other than the two requantizing ones goes to ``raw``.

``wr`` is a :class:`~heatvit.rtl.accel.token_buffer.TokenBuffer` write: row ``dst_row + m``, word
``dst_word + nt``, ``cols`` int8 lanes, lane mask = channels ``< n``.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.config import AcceleratorConfig
from heatvit.isa import Epilogue

from ..gemm import layouts
from ..nonlinear.pipe import round_shift_var, saturate
from ..nonlinear.units import ActUnit, act_params_layout
from .token_buffer import ROW_BITS, WORD_BITS

FC1_BITS = 16


def row_tag(acc: AcceleratorConfig) -> data.StructLayout:
    g = acc.gemm
    return data.StructLayout({"m": unsigned(max(1, (g.max_m - 1).bit_length())),
                              "nt": unsigned(max(1, (g.max_n_tiles - 1).bit_length())),
                              "last": unsigned(1)})


class EpilogueRouter(wiring.Component):
    """Enable-gated pipeline (a stalled output freezes it; nothing lost or duplicated).

    * ``params`` (in, always ready): ``(channel, bias int32, mult uint, shift uint)`` per output
      channel; channel ``c`` is lane ``c % cols`` of parameter word ``c // cols``.
    * ``i`` (in): ``acc`` (``cols`` x signed ``acc_bits``) and ``tag`` (``m``: token, ``nt``:
      N tile, ``last``).
    * ``mode`` (:class:`~heatvit.isa.Epilogue`), ``n`` (channels), ``dst_row``, ``dst_word``,
      ``gelu`` (GELU parameters, int8 out): held constant while a GEMM streams.
    * ``wr`` (out): token-buffer write ``(row, word, data, mask)`` (REQ8, REQ16_GELU);
      ``raw`` (out): ``acc`` + ``tag`` unchanged (RAW_SOFTMAX).
    """

    def __init__(self, acc: AcceleratorConfig, row_bits: int = ROW_BITS, word_bits: int = WORD_BITS):
        self.acc, self.g = acc, acc.gemm
        g = self.g
        C = g.cols
        tag = row_tag(acc)
        self.lanes_nl = dataclasses.replace(acc.nonlinear, lanes=C)
        super().__init__({
            "params": In(stream.Signature(layouts.param_load(g))),
            "i": In(stream.Signature(data.StructLayout({"acc": layouts.acc_word(g), "tag": tag}))),
            "mode": In(2), "n": In(g.n_bits), "dst_row": In(row_bits), "dst_word": In(word_bits),
            "gelu": In(act_params_layout(8)),
            "wr": Out(stream.Signature(data.StructLayout({
                "row": row_bits + 1, "word": word_bits + 1, "data": 8 * C, "mask": C}))),
            "raw": Out(stream.Signature(data.StructLayout({"acc": layouts.acc_word(g), "tag": tag}))),
        })

    def elaborate(self, platform):
        g = self.g
        C = g.cols
        m = Module()
        tag_l = row_tag(self.acc)

        # -- per-channel parameter memory (lane-wise, addressed by N tile) -----------------------
        prm = layouts.channel_params(g)
        m.submodules.prm = mem = Memory(shape=data.ArrayLayout(prm, C), depth=g.max_n_tiles, init=[])
        wp = mem.write_port(granularity=1)   # one lane (channel) per enable bit
        rp = mem.read_port(transparent_for=())
        ch = self.params.payload.channel
        m.d.comb += [self.params.ready.eq(1), wp.addr.eq(ch // C)]
        for lane in range(C):
            m.d.comb += wp.data[lane].eq(self.params.payload.params)
        m.d.comb += wp.en.eq(Mux(self.params.valid, 1 << (ch % C), 0))

        # -- requantizer pipeline: s0 (input + param read), s1 (product), s2 (round, saturate) ----
        en = Signal()
        out_ready = Signal()
        v0, v1, v2 = Signal(), Signal(), Signal()
        m.d.comb += [en.eq(~v2 | out_ready), self.i.ready.eq(en), rp.en.eq(en),
                     rp.addr.eq(self.i.payload.tag.nt)]
        a0 = Signal(layouts.acc_word(g))
        t0, t1, t2 = Signal(tag_l), Signal(tag_l), Signal(tag_l)
        raw1, raw2 = Signal(layouts.acc_word(g)), Signal(layouts.acc_word(g))
        prod_shape = signed(g.acc_bits + 1 + g.mult_bits + 1)
        y16 = Signal(data.ArrayLayout(signed(FC1_BITS), C))
        with m.If(en):
            m.d.sync += [v0.eq(self.i.valid), v1.eq(v0), v2.eq(v1),
                         a0.eq(self.i.payload.acc), t0.eq(self.i.payload.tag), t1.eq(t0), t2.eq(t1),
                         raw1.eq(a0), raw2.eq(raw1)]
        wide = self.mode == Epilogue.REQ16_GELU
        for lane in range(C):
            p = rp.data[lane]
            prod = Signal(prod_shape, name=f"prod{lane}")
            sh = Signal(g.shift_bits, name=f"shift{lane}")
            with m.If(en):
                m.d.sync += [prod.eq((a0[lane] + p.bias) * p.mult), sh.eq(p.shift)]
                q = round_shift_var(prod, sh)
                m.d.sync += y16[lane].eq(Mux(wide, saturate(q, -(1 << 15), (1 << 15) - 1),
                                             saturate(q, -128, 127)))

        # -- destination address and lane mask of the stage-2 row --------------------------------
        def dest(tag):
            left = Signal(signed(g.n_bits + 2))
            mask = Signal(C)
            m.d.comb += left.eq(self.n - tag.nt * C)
            m.d.comb += mask.eq(Mux(left >= C, (1 << C) - 1, (1 << left[:C.bit_length()]) - 1))
            return self.dst_row + tag.m, self.dst_word + tag.nt, mask

        # -- GELU path -----------------------------------------------------------------------------
        m.submodules.gelu_unit = act = ActUnit(self.lanes_nl, "gelu", in_bits=FC1_BITS, out_bits=8)
        m.submodules.tags = tags = SyncFIFOBuffered(width=tag_l.size, depth=16)
        m.d.comb += [act.params.eq(self.gelu), tags.w_data.eq(t2), act.i.payload.eq(y16)]

        with m.Switch(self.mode):
            with m.Case(Epilogue.REQ8):
                row, word, mask = dest(t2)
                m.d.comb += [self.wr.valid.eq(v2), out_ready.eq(self.wr.ready),
                             self.wr.payload.row.eq(row), self.wr.payload.word.eq(word),
                             self.wr.payload.mask.eq(mask)]
                for lane in range(C):
                    m.d.comb += self.wr.payload.data[8 * lane:8 * lane + 8].eq(y16[lane][:8])
            with m.Case(Epilogue.REQ16_GELU):
                m.d.comb += [act.i.valid.eq(v2 & tags.w_rdy), out_ready.eq(act.i.ready & tags.w_rdy),
                             tags.w_en.eq(v2 & act.i.ready)]
                t_out = data.View(tag_l, tags.r_data)
                row, word, mask = dest(t_out)
                m.d.comb += [self.wr.valid.eq(act.o.valid), act.o.ready.eq(self.wr.ready),
                             tags.r_en.eq(act.o.valid & self.wr.ready),
                             self.wr.payload.row.eq(row), self.wr.payload.word.eq(word),
                             self.wr.payload.mask.eq(mask)]
                for lane in range(C):
                    m.d.comb += self.wr.payload.data[8 * lane:8 * lane + 8].eq(act.o.payload[lane])
            with m.Default():
                m.d.comb += [self.raw.valid.eq(v2), out_ready.eq(self.raw.ready),
                             self.raw.payload.acc.eq(raw2), self.raw.payload.tag.eq(t2)]
        return m
