"""Score combiner: per-head keep probabilities and head weights -> one keep score per token.

Bit-exact with :func:`heatvit.golden.token_selector.int_selector.combine_scores`; the division
is the nonlinear path's reciprocal unit (:class:`heatvit.rtl.nonlinear.units.ReciprocalUnit`,
the one implementation of ``golden.nonlinear.divide``) plus one multiply and a rounding shift.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.golden.nonlinear import formats as F
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.toksel_config import TokSelConfig

from ..nonlinear.pipe import round_shift_var
from ..nonlinear.units import ReciprocalUnit
from . import layouts

PROB_BITS = 8
"""``a`` and ``t`` are unsigned [0, 255] at scale 1/255 (sigmoid and softmax outputs)."""
DEN_BITS = 32
"""Input width of the reciprocal (``golden.nonlinear.divide``'s default ``den_bits``)."""


def head_pairs(cfg: TokSelConfig) -> data.ArrayLayout:
    """One token: ``heads`` x (head weight ``a``, keep probability ``t``)."""
    return data.ArrayLayout(data.StructLayout({"a": unsigned(PROB_BITS), "t": unsigned(PROB_BITS)}), cfg.heads)


class ScoreCombiner(wiring.Component):
    """``q = min(round(2**b * sum_h a t / (255 * sum_h a)), 2**b - 1)`` per token.

    * ``heads`` (in): one beat per token, ``heads`` pairs ``(a, t)``; a token whose ``a`` are all
      0 uses ``a = 1`` (plain mean over heads).
    * ``scores`` (out): the keep score, UQ0.score_bits: the control unit's ``scores`` stream.

    One token in flight (the reciprocal's latency + 3 cycles per token); it runs alongside the
    selector's GEMMs, long before the control unit needs the scores.
    """

    def __init__(self, cfg: TokSelConfig, nl_cfg: NonlinearConfig | None = None):
        self.cfg = cfg
        self.nl_cfg = nl_cfg or NonlinearConfig()
        if self.nl_cfg.lanes != 1:
            raise ValueError(f"ScoreCombiner needs NonlinearConfig.lanes = 1, got {self.nl_cfg.lanes}")
        super().__init__({
            "heads": In(stream.Signature(head_pairs(cfg))),
            "scores": Out(stream.Signature(layouts.score(cfg))),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        H, b = cfg.heads, cfg.score_bits
        m = Module()
        m.submodules.recip = recip = ReciprocalUnit(self.nl_cfg, DEN_BITS)

        pairs = self.heads.payload
        a_sum = sum((p.a for p in pairs), 0)
        all_zero = Signal()
        m.d.comb += all_zero.eq(a_sum == 0)
        num_w = sum((p.a * p.t for p in pairs), 0)        # H small products (tiny LUT multipliers)
        num_u = sum((p.t for p in pairs), 0)
        num_bits = (H * 255 * 255).bit_length()
        num = Signal(num_bits)
        den = Signal(DEN_BITS)
        prod = Signal(num_bits + F.RECIP_FRAC + 1)
        e = Signal(recip.o.payload[0].e.shape())
        q = Signal(b + 1)

        with m.FSM():
            with m.State("START"):         # see TokenSelectorUnit: re-evaluates outputs in Icarus
                m.next = "TAKE"
            with m.State("TAKE"):
                m.d.comb += self.heads.ready.eq(1)
                with m.If(self.heads.valid):
                    m.d.sync += [num.eq(Mux(all_zero, num_u, num_w)),
                                 den.eq(255 * Mux(all_zero, H, a_sum))]
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [recip.i.valid.eq(1), recip.i.payload[0].eq(den)]
                with m.If(recip.i.ready):
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.comb += recip.o.ready.eq(1)
                with m.If(recip.o.valid):
                    m.d.sync += [prod.eq(num * recip.o.payload[0].r), e.eq(recip.o.payload[0].e)]
                    m.next = "ROUND"
            with m.State("ROUND"):
                # q = round_half_away(num * r / 2**(16 + e - b)); 16 + e - b > 0 since e >= 7.
                m.d.sync += q.eq(round_shift_var(prod, e + (F.RECIP_FRAC - b)))
                m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += [self.scores.valid.eq(1),
                             self.scores.payload.score.eq(Mux(q > cfg.score_max, cfg.score_max, q))]
                with m.If(self.scores.ready):
                    m.next = "TAKE"
        return m

