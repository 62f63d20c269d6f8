"""One processing element of the weight-stationary systolic array: one DSP48E2."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from .dsp48e2 import A_BITS, B_BITS, DSP48E2, P_BITS, Dsp48e2Config


def pe_dsp_config(*, top: bool, restart: bool, head: bool | None = None) -> Dsp48e2Config:
    """The DSP48E2 attributes of a PE: ``top``, the first row of its column (no column sum
    above); ``head`` (default ``top``), the first row of a weight-load segment (weights from the
    A port, not ACIN); ``restart``, its column sum starts from the C port (a packed segment's
    first row) instead of adding ``PCIN``.

    Weight word on A: A1 is the shadow register (its chain is ACOUT -> ACIN, ``ACASCREG = 1``),
    A2 the active one.  Activation on B (B2, ``BREG = 1``).  M and P registered.
    """
    head = top if head is None else head
    base = Dsp48e2Config(areg=2, acascreg=1, a_input="DIRECT" if head else "CASCADE",
                         breg=1, bcascreg=1, b_input="DIRECT", mreg=1)
    if restart:
        return base.replace(w="c")
    return base if top else base.replace(z="pcin")


class ProcessingElement(wiring.Component):
    """``lanes = cfg.dsp_packing`` adjacent columns of one array row in one DSP48E2.

    The PE computes ``psum_out = psum_in + a * w`` where ``w`` is the active weight word: one
    int8 weight (``lanes = 1``) or the pair ``w_hi * 2^k + w_lo`` (``lanes = 2``, k =
    ``cfg.packing_shift``; :class:`~.systolic_array.SystolicArray` packs and unpacks).  The
    weight word is double-buffered in the DSP's A1 (shadow) and A2 (active) registers, the
    activation is the B2 register, the product the M register and the partial sum the P
    register; no fabric adders.  The fabric holds only the activation/commit pipeline that
    passes them to the right.

    Ports (all advance only while ``en`` is high, except the shadow shift):

    * ``a_in``/``a_out``: activation, signed ``act_bits``; ``a_out`` is ``a_in`` delayed by
      ``lanes`` enabled cycles (one per column the PE stands for).
    * ``commit_in``/``commit_out``: travels with the activation; when set, the shadow weight
      word becomes the active one in the cycle the activation enters the DSP.
    * ``psum_in``/``psum_out``: signed 48-bit column sum (the PCIN/PCOUT cascade);
      ``psum_out`` is one M and one P register after the activation entered B2.  A ``top`` or
      ``restart`` PE ignores ``psum_in``; a ``restart`` PE starts from ``c_in`` (signed 48-bit,
      the C port) instead, a ``top`` one that does not restart from 0.
    * ``w_in``/``w_out``: signed 30-bit shadow weight word chain (A port on a ``head`` PE, the
      first row of a weight-load segment, else ACIN; ACOUT), enabled by ``shift`` (the caller
      gates it with ``en``).
    """

    def __init__(self, cfg: GemmConfig, *, top: bool, restart: bool = False, head: bool | None = None):
        if not isinstance(cfg, GemmConfig):
            raise TypeError(f"ProcessingElement needs a GemmConfig, not {cfg!r}")
        if cfg.act_bits > B_BITS:
            raise ValueError(f"ProcessingElement: act_bits = {cfg.act_bits} exceeds the DSP48E2's "
                             f"{B_BITS}-bit B port")
        self.cfg = cfg
        self.top = bool(top)
        self.restart = bool(restart)
        self.head = self.top if head is None else bool(head)
        super().__init__({
            "en": In(1),
            "shift": In(1),
            "a_in": In(signed(cfg.act_bits)),
            "commit_in": In(1),
            "psum_in": In(signed(P_BITS)),
            "c_in": In(signed(P_BITS)),
            "w_in": In(signed(A_BITS)),
            "a_out": Out(signed(cfg.act_bits)),
            "commit_out": Out(1),
            "psum_out": Out(signed(P_BITS)),
            "w_out": Out(signed(A_BITS)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        m.submodules.dsp = dsp = DSP48E2(pe_dsp_config(top=self.top, restart=self.restart, head=self.head))
        m.d.comb += [
            (dsp.A if self.head else dsp.ACIN).eq(self.w_in),
            self.w_out.eq(dsp.ACOUT),
            dsp.CEA1.eq(self.shift),
            dsp.CEA2.eq(self.en & self.commit_in),
            dsp.B.eq(self.a_in),
            dsp.CEB2.eq(self.en),
            dsp.CEM.eq(self.en),
            dsp.CEP.eq(self.en),
            self.psum_out.eq(dsp.PCOUT),
        ]
        if self.restart:
            m.d.comb += dsp.C.eq(self.c_in)
        elif not self.top:
            m.d.comb += dsp.PCIN.eq(self.psum_in)

        a, commit = self.a_in, self.commit_in
        for lane in range(cfg.dsp_packing):
            a_reg = Signal(signed(cfg.act_bits), name=f"a{lane}")
            commit_reg = Signal(name=f"commit{lane}")
            with m.If(self.en):
                m.d.sync += [a_reg.eq(a), commit_reg.eq(commit)]
            a, commit = a_reg, commit_reg
        m.d.comb += [self.a_out.eq(a), self.commit_out.eq(commit)]
        return m
