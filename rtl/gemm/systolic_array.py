"""The R x C mesh of processing elements with its input skew and output deskew."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from . import layouts
from .delay import DelayLine
from .pe import ProcessingElement


class SystolicArray(wiring.Component):
    """Weight-stationary systolic array: one aligned row in, one aligned row out per cycle.

    Timing is lockstep under ``en`` (a global clock enable driven by output backpressure), so
    the internal PE-to-PE wires are plain registers, not streams; the streams live at the
    engine's boundary.

    * ``act``: ``rows`` activations (int8, lane r = reduction offset r) of one token, presented
      aligned; ``commit`` marks the first row of a new weight tile.
    * ``psum``: ``cols`` partial sums (signed ``column_psum_bits``) of the row presented
      ``array_latency = rows + cols`` enabled cycles earlier, aligned.
    * ``w_word``/``w_shift``: one word of ``cols`` weights shifted into the shadow registers
      per asserted cycle, reduction offset 0 first; after ``rows`` shifts the shadow tile is
      complete and the next ``commit`` activates it (a wave that takes ``rows + cols - 1``
      enabled cycles to reach the last PE).
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "act": In(layouts.act_word(cfg)),
            "commit": In(1),
            "w_word": In(layouts.weight_word(cfg)),
            "w_shift": In(1),
            "psum": Out(layouts.psum_word(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        m = Module()
        pes = [[ProcessingElement(cfg) for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]
                m.d.comb += [pes[r][c].en.eq(self.en), pes[r][c].shift.eq(self.w_shift)]

        # Weights shift down: after R shifts, PE row r holds reduction offset R-1-r, so PE row r
        # multiplies activation lane R-1-r.
        for r in range(R):
            # Row r enters r cycles late (input skew), activation and commit together.
            skew = DelayLine(unsigned(cfg.act_bits + 1), r)
            m.submodules[f"skew_{r}"] = skew
            m.d.comb += [skew.en.eq(self.en),
                         skew.i.eq(self.act[R - 1 - r].as_unsigned() | (self.commit << cfg.act_bits))]
            m.d.comb += [pes[r][0].a_in.eq(skew.o[:cfg.act_bits].as_signed()),
                         pes[r][0].commit_in.eq(skew.o[cfg.act_bits])]
            for c in range(1, C):
                m.d.comb += [pes[r][c].a_in.eq(pes[r][c - 1].a_out),
                             pes[r][c].commit_in.eq(pes[r][c - 1].commit_out)]

        for c in range(C):
            m.d.comb += pes[0][c].w_in.eq(self.w_word[c])
            m.d.comb += pes[0][c].psum_in.eq(0)
            for r in range(1, R):
                m.d.comb += [pes[r][c].w_in.eq(pes[r - 1][c].w_out),
                             pes[r][c].psum_in.eq(pes[r - 1][c].psum_out)]
            # Column c finishes c cycles after column 0: delay the others to align the row.
            deskew = DelayLine(signed(cfg.column_psum_bits), C - 1 - c)
            m.submodules[f"deskew_{c}"] = deskew
            m.d.comb += [deskew.en.eq(self.en), deskew.i.eq(pes[R - 1][c].psum_out),
                         self.psum[c].eq(deskew.o)]
        return m
