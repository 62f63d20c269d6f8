"""One processing element of the weight-stationary systolic array."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig


class ProcessingElement(wiring.Component):
    """``psum_out <= psum_in + a * w`` with a stationary, double-buffered weight.

    Maps onto one DSP48E2: the activation is the A1 register, the active weight the B2
    register, the shadow weight the B1 register (its shift chain is the BCOUT -> BCIN cascade
    down the column) and the partial sum the P register on the PCOUT -> PCIN cascade.

    Ports (all advance only while ``en`` is high, except the shadow shift):

    * ``a_in``/``a_out``: activation, signed ``act_bits``, passed one PE to the right per cycle.
    * ``commit_in``/``commit_out``: travels with the activation; when set, the shadow weight
      becomes the active weight in the same cycle the activation is registered.
    * ``psum_in``/``psum_out``: signed ``column_psum_bits`` partial sum, passed down.
    * ``w_in``/``w_out``: shadow-weight shift chain (signed ``weight_bits``), enabled by ``shift``.
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "shift": In(1),
            "a_in": In(signed(cfg.act_bits)),
            "commit_in": In(1),
            "psum_in": In(signed(cfg.column_psum_bits)),
            "w_in": In(signed(cfg.weight_bits)),
            "a_out": Out(signed(cfg.act_bits)),
            "commit_out": Out(1),
            "psum_out": Out(signed(cfg.column_psum_bits)),
            "w_out": Out(signed(cfg.weight_bits)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        a = Signal(signed(cfg.act_bits))
        commit = Signal()
        w_shadow = Signal(signed(cfg.weight_bits))
        w_active = Signal(signed(cfg.weight_bits))
        psum = Signal(signed(cfg.column_psum_bits))

        with m.If(self.shift):
            m.d.sync += w_shadow.eq(self.w_in)
        with m.If(self.en):
            m.d.sync += [a.eq(self.a_in), commit.eq(self.commit_in),
                         psum.eq(self.psum_in + a * w_active)]
            with m.If(self.commit_in):
                m.d.sync += w_active.eq(w_shadow)

        m.d.comb += [self.a_out.eq(a), self.commit_out.eq(commit),
                     self.psum_out.eq(psum), self.w_out.eq(w_shadow)]
        return m
