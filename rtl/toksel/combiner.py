"""Score combiner: per-head keep probabilities and head weights -> one keep score per token.

Bit-exact with :func:`heatvit.golden.token_selector.int_selector.combine_scores`; the division
is the nonlinear path's reciprocal unit (:class:`heatvit.rtl.nonlinear.units.ReciprocalUnit`,
the one implementation of ``golden.nonlinear.divide``) plus one multiply and a rounding shift.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
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
FIFO_DEPTH = 32
"""Tokens in flight; more than the reciprocal's latency, so the pipeline never waits on it."""


def head_pairs(cfg: TokSelConfig) -> data.ArrayLayout:
    """One token: ``heads`` x (head weight ``a``, keep probability ``t``)."""
    return data.ArrayLayout(data.StructLayout({"a": unsigned(PROB_BITS), "t": unsigned(PROB_BITS)}), cfg.heads)


class ScoreCombiner(wiring.Component):
    """``q = min(round(2**b * sum_h a t / (255 * sum_h a)), 2**b - 1)`` per token.

    * ``heads`` (in): one beat per token, ``heads`` pairs ``(a, t)``; a token whose ``a`` are all
      0 uses ``a = 1`` (plain mean over heads).
    * ``scores`` (out): the keep score, UQ0.score_bits: the control unit's ``scores`` stream.

    Pipelined, one token per cycle (latency: the reciprocal's); all products are shift-add, so
    it has no DSP of its own (the embedded reciprocal unit is the nonlinear path's).
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
        num_bits = (H * 255 * 255).bit_length()
        r_bits = F.RECIP_FRAC + 1
        # num waits in a FIFO beside the reciprocal's pipeline (one entry per token in flight).
        m.submodules.nums = nums = SyncFIFOBuffered(width=num_bits, depth=FIFO_DEPTH)

        # Stage 1: sum_h a t (shift-add products: LUTs only) and 255 * sum_h a into the reciprocal.
        pairs = self.heads.payload
        a_sum = sum((p.a for p in pairs), 0)
        unit_a = Signal()
        m.d.comb += unit_a.eq(a_sum == 0)
        prods = []
        for h, p in enumerate(pairs):
            w = Mux(unit_a, 1, p.a)
            terms = [Mux(w[i], p.t << i, 0) for i in range(PROB_BITS)]
            prod = Signal(2 * PROB_BITS, name=f"at{h}")
            m.d.comb += prod.eq(sum(terms[1:], terms[0]))
            prods.append(prod)
        den_a = Signal(DEN_BITS)
        m.d.comb += den_a.eq(Mux(unit_a, H, a_sum))
        take = Signal()
        m.d.comb += [
            self.heads.ready.eq(recip.i.ready & nums.w_rdy),
            take.eq(self.heads.valid & self.heads.ready),
            recip.i.valid.eq(self.heads.valid & nums.w_rdy),
            recip.i.payload[0].eq((den_a << 8) - den_a),        # 255 * sum a, no multiplier
            nums.w_en.eq(take),
            nums.w_data.eq(sum(prods[1:], prods[0])),
        ]

        # Stage 2: q = round_half_away(num * r / 2**(16 + e - b)) (16 + e - b > 0: e >= 7).
        num = nums.r_data
        r = recip.o.payload[0].r
        e = recip.o.payload[0].e
        terms = [Mux(r[i], num << i, 0) for i in range(r_bits)]           # num * r, shift-add
        prod = Signal(num_bits + r_bits)
        m.d.comb += prod.eq(sum(terms[1:], terms[0]))
        q = Signal(prod.shape())
        m.d.comb += q.eq(round_shift_var(prod, e + (F.RECIP_FRAC - b)))
        m.d.comb += [
            self.scores.valid.eq(recip.o.valid),
            self.scores.payload.score.eq(Mux(q > cfg.score_max, cfg.score_max, q)),
            recip.o.ready.eq(self.scores.ready),
            nums.r_en.eq(recip.o.valid & self.scores.ready),
        ]
        return m
