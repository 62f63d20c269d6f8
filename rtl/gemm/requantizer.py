"""Bias, integer multiplier, rounding shift and saturation: accumulators to int8."""

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from ..nonlinear.pipe import Pipe, round_shift_pipe, saturate

from . import layouts


class Requantizer(wiring.Component):
    """``y = sat(round_half_away((acc + bias) * mult / 2**shift))`` per lane, bit-exact with
    :func:`heatvit.golden.requantize`.

    * ``params``: stream of ``(channel, bias int32, mult uint16, shift uint6)``; channel n is
      stored in lane ``n % cols`` at parameter word ``n // cols``.  Always ready.
    * ``acc``/``tag``: a row of ``cols`` signed ``acc_bits`` sums for N tile ``tag.nt``.
    * ``out``/``out_tag``: the int8 row (lanes ``>= tag.lanes`` are zero), ``latency`` = 6
      enabled cycles later: sum, bias, product, rounding add, shift, saturation (one register
      each, so no stage has more than one carry chain).
    """

    latency = 6

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

        tags = [self.tag] + [Signal(layouts.row_tag(cfg), name=f"tag{i}") for i in range(1, self.latency)]
        with m.If(self.en):
            m.d.sync += [t.eq(prev) for t, prev in zip(tags[1:] + [self.out_tag], tags)]

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
            with m.If(self.en):
                m.d.sync += [
                    acc1.eq(self.acc[c]),
                    x2.eq(acc1 + rd.data.bias),
                    mult2.eq(rd.data.mult),
                    shift2.eq(rd.data.shift),
                    p3.eq(x2 * mult2),
                    shift3.eq(shift2),
                ]
            # Stages 4 and 5: the rounding add, the shift (``round_shift_pipe``, as wide as p3);
            # stage 6: saturate, and zero the lanes past the row's width.
            q, _ = round_shift_pipe(Pipe(m, self.en, f"rq{c}"), p3, shift3)
            with m.If(self.en):
                with m.If(tags[-1].lanes <= c):
                    m.d.sync += self.out[c].eq(0)
                with m.Else():
                    m.d.sync += self.out[c].eq(saturate(q, cfg.act_min, cfg.act_max))
        return m
