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

    One token in flight: ``heads`` cycles of shift-add products, the reciprocal's latency, 17
    cycles of shift-add ``num * r``, and a few more per token; it runs alongside the selector's
    GEMMs, before the control unit needs the scores.  No DSP of its own (the reciprocal unit is
    the nonlinear path's).
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
        num_bits = (H * 255 * 255).bit_length()
        r_bits = F.RECIP_FRAC + 1
        held = Signal(head_pairs(cfg))        # shifts down one head per MAC cycle
        unit_a = Signal()                     # every a was 0: plain mean (a = 1)
        num = Signal(num_bits)
        den = Signal(DEN_BITS)
        count = Signal(range(max(H, r_bits) + 1))
        r = Signal(r_bits)
        num_sh = Signal(num_bits + r_bits)
        prod = Signal(num_bits + r_bits + 1)
        e = Signal(recip.o.payload[0].e.shape())
        q = Signal(b + 1)

        # a * t of the current head as shift-add (LUTs only; the combiner adds no DSP of its own).
        cur = held[0]
        w = Signal(PROB_BITS)
        m.d.comb += w.eq(Mux(unit_a, 1, cur.a))
        terms = [Mux(w[i], cur.t << i, 0) for i in range(PROB_BITS)]
        head_prod = Signal(2 * PROB_BITS)
        m.d.comb += head_prod.eq(sum(terms[1:], terms[0]))

        # The reciprocal's handshakes come from registers, not from the FSM state: its pipeline
        # samples them in the first cycle after reset, when an event-driven simulator may not have
        # evaluated state-decoding logic yet.
        sending = Signal()
        waiting = Signal()
        m.d.comb += [recip.i.valid.eq(sending), recip.i.payload[0].eq(den), recip.o.ready.eq(waiting)]
        den_a = Signal(DEN_BITS)
        m.d.comb += den_a.eq(Mux(a_sum == 0, H, a_sum))

        with m.FSM():
            with m.State("START"):         # see TokenSelectorUnit: re-evaluates outputs in Icarus
                m.next = "TAKE"
            with m.State("TAKE"):
                m.d.comb += self.heads.ready.eq(1)
                with m.If(self.heads.valid):
                    m.d.sync += [held.eq(pairs), unit_a.eq(a_sum == 0), num.eq(0), count.eq(0),
                                 den.eq((den_a << 8) - den_a)]          # 255 * sum a, no multiplier
                    m.next = "MAC"
            with m.State("MAC"):
                m.d.sync += [num.eq(num + head_prod), held.eq(held.as_value() >> (2 * PROB_BITS)),
                             count.eq(count + 1)]
                with m.If(count == H - 1):
                    m.d.sync += sending.eq(1)
                    m.next = "SEND"
            with m.State("SEND"):
                with m.If(recip.i.ready):
                    m.d.sync += [sending.eq(0), waiting.eq(1)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(recip.o.valid):
                    m.d.sync += waiting.eq(0)
                    m.d.sync += [r.eq(recip.o.payload[0].r), e.eq(recip.o.payload[0].e),
                                 num_sh.eq(num), prod.eq(0), count.eq(0)]
                    m.next = "MUL"
            with m.State("MUL"):
                # prod = num * r, one bit of r per cycle (shift-add).
                with m.If(r[0]):
                    m.d.sync += prod.eq(prod + num_sh)
                m.d.sync += [r.eq(r >> 1), num_sh.eq(num_sh << 1), count.eq(count + 1)]
                with m.If(count == r_bits - 1):
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

