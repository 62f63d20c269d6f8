"""Accumulates the array's per-tile partial sums across reduction tiles."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from . import layouts


class Accumulator(wiring.Component):
    """Read-modify-write of one ``cols``-lane int32 accumulator row per enabled cycle.

    The accumulator buffer holds ``max_m`` rows (one per token) of ``cols`` signed
    ``acc_bits`` lanes for the current N tile.  For a row with tag ``(m, first_k, last_k)``:
    ``sum = (first_k ? 0 : acc[m]) + psum``; if ``last_k`` the sum goes out on ``out``/``out_tag``
    (two enabled cycles later), otherwise it is written back to ``acc[m]``.  The same ``m`` is
    never read and written in the same cycle (the passes of one N tile are at least
    ``min_tile_cycles >= 2`` cycles apart).

    * ``psum``: ``cols`` column partial sums, signed ``column_psum_bits``; ``tag``: its row tag.
    * ``out``: ``cols`` sums, signed ``acc_bits``; ``out_tag``: the row tag (``valid`` set only
      on rows of the last K tile).
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "psum": In(layouts.psum_word(cfg)),
            "tag": In(layouts.row_tag(cfg)),
            "out": Out(layouts.acc_word(cfg)),
            "out_tag": Out(layouts.row_tag(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.acc_mem = acc_mem = Memory(shape=layouts.acc_word(cfg), depth=cfg.max_m, init=[])
        rd = acc_mem.read_port()
        wr = acc_mem.write_port()

        # Stage A: issue the read, register the partial sums.
        psum_a = Signal(layouts.psum_word(cfg))
        tag_a = Signal(layouts.row_tag(cfg))
        m.d.comb += [rd.addr.eq(self.tag.m), rd.en.eq(self.en)]
        with m.If(self.en):
            m.d.sync += [psum_a.eq(self.psum), tag_a.eq(self.tag)]

        # Stage B: add, then write back or send on.
        total = Signal(layouts.acc_word(cfg))
        for c in range(cfg.cols):
            m.d.comb += total[c].eq(Mux(tag_a.first_k, 0, rd.data[c]) + psum_a[c])
        m.d.comb += [
            wr.addr.eq(tag_a.m),
            wr.data.eq(total),
            wr.en.eq(self.en & tag_a.valid & ~tag_a.last_k),
        ]
        with m.If(self.en):
            m.d.sync += [self.out.eq(total), self.out_tag.eq(tag_a),
                         self.out_tag.valid.eq(tag_a.valid & tag_a.last_k)]
        return m
