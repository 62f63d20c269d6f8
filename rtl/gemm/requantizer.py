"""Bias, integer multiplier, rounding shift and saturation: accumulators to int8."""

from amaranth.hdl import Const, Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from . import layouts


class Requantizer(wiring.Component):
    """``y = sat(round_half_away((acc + bias) * mult / 2**shift))`` per lane, bit-exact with
    :func:`heatvit.golden.requantize`.

    * ``params``: stream of ``(channel, bias int32, mult uint16, shift uint6)``; channel n is
      stored in lane ``n % cols`` at parameter word ``n // cols``.  Always ready.
    * ``acc``/``tag``: a row of ``cols`` signed ``acc_bits`` sums for N tile ``tag.nt``.
    * ``out``/``out_tag``: the int8 row (lanes ``>= tag.lanes`` are zero), ``latency`` = 4
      enabled cycles later.
    """

    latency = 4

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "params": In(stream.Signature(layouts.param_load(cfg))),
            "acc": In(layouts.acc_word(cfg)),
            "tag": In(layouts.row_tag(cfg)),
            "out": Out(layouts.out_word(cfg)),
            "out_tag": Out(layouts.row_tag(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        C = cfg.cols
        lane_bits = (C - 1).bit_length()
        m.d.comb += self.params.ready.eq(1)

        tag1, tag2, tag3 = (Signal(layouts.row_tag(cfg), name=f"tag{i}") for i in (1, 2, 3))
        with m.If(self.en):
            m.d.sync += [tag1.eq(self.tag), tag2.eq(tag1), tag3.eq(tag2), self.out_tag.eq(tag3)]

        for c in range(C):
            mem = Memory(shape=layouts.channel_params(cfg), depth=cfg.max_n_tiles, init=[])
            m.submodules[f"params_{c}"] = mem
            wr = mem.write_port()
            rd = mem.read_port()
            channel = self.params.payload.channel
            m.d.comb += [
                wr.addr.eq(channel >> lane_bits),
                wr.data.eq(self.params.payload.params),
                wr.en.eq(self.params.valid & ((channel & (C - 1)) == c)),
                rd.addr.eq(self.tag.nt),
                rd.en.eq(self.en),
            ]
            # Stage 1: register the sum; parameters arrive from the read port.
            acc1 = Signal(signed(cfg.acc_bits), name=f"acc1_{c}")
            # Stage 2: add the bias.
            x2 = Signal(signed(cfg.biased_bits), name=f"x2_{c}")
            mult2 = Signal(unsigned(cfg.mult_bits), name=f"mult2_{c}")
            shift2 = Signal(unsigned(cfg.shift_bits), name=f"shift2_{c}")
            # Stage 3: multiply.
            p3 = Signal(signed(cfg.product_bits), name=f"p3_{c}")
            shift3 = Signal(unsigned(cfg.shift_bits), name=f"shift3_{c}")
            # Stage 4: round half away from zero, shift, saturate.
            half = Signal(unsigned(cfg.product_bits), name=f"half_{c}")
            rounded = Signal(signed(cfg.product_bits + 1), name=f"rounded_{c}")
            m.d.comb += [
                half.eq((Const(1, 1) << shift3) >> 1),
                rounded.eq((p3 + half - ((p3 < 0) & (shift3 != 0))) >> shift3),
            ]
            with m.If(self.en):
                m.d.sync += [
                    acc1.eq(self.acc[c]),
                    x2.eq(acc1 + rd.data.bias),
                    mult2.eq(rd.data.mult),
                    shift2.eq(rd.data.shift),
                    p3.eq(x2 * mult2),
                    shift3.eq(shift2),
                ]
                with m.If(tag3.lanes <= c):
                    m.d.sync += self.out[c].eq(0)
                with m.Elif(rounded > cfg.act_max):
                    m.d.sync += self.out[c].eq(cfg.act_max)
                with m.Elif(rounded < cfg.act_min):
                    m.d.sync += self.out[c].eq(cfg.act_min)
                with m.Else():
                    m.d.sync += self.out[c].eq(rounded)
        return m
