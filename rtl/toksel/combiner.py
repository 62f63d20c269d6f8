"""Score combiner: per-head keep probabilities and head weights -> one keep score per token.

Bit-exact with :func:`heatvit.golden.token_selector.int_selector.combine_scores`; the division
is the reciprocal of ``golden.nonlinear.divide`` (:class:`heatvit.rtl.nonlinear.serial_recip.SerialReciprocal`:
the nonlinear path's table with shift-add Horner steps) plus one shift-add multiply and a
rounding shift: no DSP.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from heatvit.golden.nonlinear import formats as F
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.toksel_config import TokSelConfig

from ..nonlinear.serial_recip import SerialReciprocal, digit_product
from ..nonlinear.units import mant_exp_layout
from . import layouts

PROB_BITS = 8
"""``a`` and ``t`` are unsigned [0, 255] at scale 1/255 (sigmoid and softmax outputs)."""
DEN_BITS = 32
"""Input width of the reciprocal (``golden.nonlinear.divide``'s default ``den_bits``)."""
FIFO_DEPTH = 4
"""Tokens in flight between the two stages.  Stage 2 takes a token every 11 cycles, the reciprocal
one every 12 (``SerialReciprocal.interval``): with the engine's token and one on its output,
two more waiting in its front stages keep the engine fed, so a fuller FIFO only lets stage 1 run
further ahead, never changes when scores leave (16 before; 4 is 10 LUT fewer; the SELECT cycle
tests, 1 to 12 heads, are exact with it)."""
R_DIGIT_BITS = 2
"""Bits of the reciprocal's mantissa multiplied per cycle in stage 2 (9 cycles for 17 bits: a
token's stage 2 then takes 11 cycles, within the reciprocal's interval of 12)."""
RECIP_DIGIT_BITS = 3
"""Bits of the reciprocal's Horner steps multiplied per cycle (:class:`SerialReciprocal`): one
token per ``2 * (ceil(13 / 3) + 1) = 12`` cycles, 449 LUTs (7 bits: 6 cycles, 719 LUTs; yosys at
the default config).  A selector's 197 tokens then take ~2.6k cycles, where its GEMMs take ~30k."""


def reciprocal(nl_cfg: NonlinearConfig | None = None, in_bits: int = DEN_BITS) -> SerialReciprocal:
    """The combiner's reciprocal: ``1/den`` of ``in_bits``, ``RECIP_DIGIT_BITS`` a Horner step
    (its ``(r, e)`` depends only on the value, so any width that holds ``den`` gives golden's)."""
    return SerialReciprocal(nl_cfg or NonlinearConfig(), in_bits, RECIP_DIGIT_BITS)


def exp_range(lo: int, hi: int, nl_cfg: NonlinearConfig | None = None) -> tuple[int, int]:
    """The smallest and largest exponent ``e`` of the reciprocal (golden
    :func:`heatvit.golden.nonlinear.units.reciprocal`, the table the RTL's is) over the inputs
    ``lo .. hi``: a shift by ``e`` then needs only ``(max - min).bit_length()`` bits of ``e - min``
    (fewer multiplexer levels than all of ``e``'s)."""
    import numpy as np

    from heatvit.golden.nonlinear.units import reciprocal as golden_reciprocal
    _, e = golden_reciprocal(np.arange(lo, hi + 1, dtype=np.int64), cfg=nl_cfg or NonlinearConfig())
    return int(e.min()), int(e.max())


def den_bits(cfg: TokSelConfig) -> int:
    """Bits of the combiner's largest ``den = 255 sum_h a`` (``cfg.heads`` heads)."""
    return (255 * 255 * cfg.heads).bit_length()


PORT_RECIP_BITS = 32
"""Input width of the reciprocal outside the combiner (``recip_port``), when ``den`` (and MEAN's
``M``) fit: yosys 0.23 (``synth_xilinx -family xcup -noiopad``, the unit alone, session 9) maps it
at 16 / 18 / 20 / 24 / 26 / 32 input bits to 508 / 569 / 592 / 638 / 640 / 445 LUTs, every one
6.25 logic levels deep (a power-of-two width normalises with the fewest LUTs)."""


def head_pairs(cfg: TokSelConfig) -> data.ArrayLayout:
    """One token: ``heads`` x (head weight ``a``, keep probability ``t``)."""
    return data.ArrayLayout(data.StructLayout({"a": unsigned(PROB_BITS), "t": unsigned(PROB_BITS)}), cfg.heads)


class ScoreCombiner(wiring.Component):
    """``q = min(round(2**b * sum_h a t / (255 * sum_h a)), 2**b - 1)`` per token.

    * ``heads`` (in): one beat per token, ``heads`` pairs ``(a, t)``; a token whose ``a`` are all
      0 uses ``a = 1`` (plain mean over heads).
    * ``scores`` (out): the keep score, UQ0.score_bits: the control unit's ``scores`` stream.

    Two stages, each with one token at a time: ``heads`` cycles (one shift-add product per
    cycle), then 9 cycles for ``num * r`` (shift-add, 2 bits per cycle) after the pipelined
    reciprocal (shift-add, one token per ``SerialReciprocal.interval`` = 12 cycles); throughput one
    token per ``max(heads + 2, 12)`` cycles (a selector of 197 tokens: ~2.4k cycles for DeiT-T,
    ~2.8k for DeiT-B (12 heads: 14 a token), while its GEMMs take 20k-77k).  No DSP.

    ``runtime_heads=True`` (the accelerator's SELECT executor, whose head count is a descriptor
    field): ``n_heads`` (in, 1 .. ``cfg.heads``, held while tokens flow) is the head count; the
    pairs of heads ``n_heads ..`` must be 0, a token takes ``max(n_heads + 2, 12)`` cycles.

    ``recip_port=True`` (the accelerator, where MEAN uses the same reciprocal): no reciprocal
    inside; ``recip_i`` (out) / ``recip_o`` (in) go to a :func:`reciprocal` of ``recip_bits``
    outside (default :func:`den_bits`: a wider input than ``den`` needs only deepens its
    normalisation).
    """

    def __init__(self, cfg: TokSelConfig, nl_cfg: NonlinearConfig | None = None, runtime_heads: bool = False,
                 recip_port: bool = False, recip_bits: int | None = None):
        self.cfg, self.runtime_heads, self.recip_port = cfg, runtime_heads, recip_port
        self.recip_bits = den_bits(cfg) if recip_bits is None else recip_bits
        if self.recip_bits < den_bits(cfg):
            raise ValueError(f"ScoreCombiner: recip_bits must hold den ({den_bits(cfg)} bits), not {recip_bits!r}")
        self.nl_cfg = nl_cfg or NonlinearConfig()
        if self.nl_cfg.lanes != 1:
            raise ValueError(f"ScoreCombiner needs NonlinearConfig.lanes = 1, got {self.nl_cfg.lanes}")
        super().__init__({
            "heads": In(stream.Signature(head_pairs(cfg))),
            "scores": Out(stream.Signature(layouts.score(cfg))),
            **({"n_heads": In(range(cfg.heads + 1))} if runtime_heads else {}),
            **({"recip_i": Out(stream.Signature(data.ArrayLayout(unsigned(self.recip_bits), 1))),
                "recip_o": In(stream.Signature(data.ArrayLayout(mant_exp_layout(self.recip_bits), 1)))}
               if recip_port else {}),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        H, b = cfg.heads, cfg.score_bits
        m = Module()
        if self.recip_port:
            recip_i, recip_o = self.recip_i, self.recip_o
        else:
            m.submodules.recip = recip = reciprocal(self.nl_cfg)
            recip_i, recip_o = recip.i, recip.o
        num_bits = (H * 255 * 255).bit_length()
        r_bits = F.RECIP_FRAC + 1
        digits = -(-r_bits // R_DIGIT_BITS)
        # num waits in a FIFO beside the reciprocal's pipeline (one entry per token in flight).
        m.submodules.nums = nums = SyncFIFOBuffered(width=num_bits, depth=FIFO_DEPTH)

        # Stage 1, one head per cycle: num = sum_h a t (one shift-add multiplier), then
        # 255 * sum_h a goes into the reciprocal and num into the FIFO together.  Every handshake
        # comes from a register (never from decoded FSM state: event-driven simulators may not
        # evaluate that in the first cycle after reset, when the reciprocal's pipeline samples it).
        pairs = self.heads.payload
        held = Signal(head_pairs(cfg))
        collecting = Signal()                  # held holds a token being summed
        pushing = Signal()                     # num and den are ready to go out
        hcount = Signal(range(H + 1))
        sum_bits = (H * 255).bit_length()
        num_a = Signal(num_bits)               # sum_h a t
        num_t = Signal(sum_bits)               # sum_h t  (the num of a token whose a are all 0)
        a_sum = Signal(sum_bits)               # sum_h a
        a_any = Signal()                       # some a != 0: a_sum != 0 (a >= 0), kept beside it
        n_h = self.n_heads if self.runtime_heads else H
        # The product a t in radix 4: four terms {0, t, 2t, 3t} << 2k picked by two bits of a,
        # so the adder sees four terms, not eight.  One head a cycle: the sums of a and of t run
        # beside it, and a token whose a are all 0 (the plain mean: a = 1) takes num = sum t,
        # den = 255 n_heads when it is pushed (no per-head substitution, no H-input adder).
        cur = held[0]
        # 3 t of the head summed in the next cycle, registered (its add is not in front of the
        # product's, issue 13): the taken beat's head 0, or held's head 1 (held shifts by a head
        # a cycle while collecting; it is never taken then)
        t3 = Signal(PROB_BITS + 2)
        t_next = Mux(self.heads.valid & self.heads.ready, pairs[0].t, held[1].t if H > 1 else 0)
        m.d.sync += t3.eq((t_next << 1) + t_next)
        terms = [Mux(cur.a[2 * k + 1], Mux(cur.a[2 * k], t3, cur.t << 1), Mux(cur.a[2 * k], cur.t, 0)) << (2 * k)
                 for k in range(PROB_BITS // 2)]
        head_prod = Signal(2 * PROB_BITS)
        m.d.comb += head_prod.eq(sum(terms[1:], terms[0]))
        num = Signal(num_bits)
        den = Signal(DEN_BITS)
        den_a = Signal(sum_bits)
        # (a_any, not a_sum == 0: the compare is not in front of den's subtract and the
        # reciprocal's normalization behind it, issue 13)
        m.d.comb += [den_a.eq(Mux(a_any, a_sum, n_h)), num.eq(Mux(a_any, num_a, num_t)),
                     den.eq((den_a << 8) - den_a)]                               # 255 * sum a

        m.d.comb += self.heads.ready.eq(~collecting & ~pushing)
        with m.If(self.heads.valid & self.heads.ready):
            m.d.sync += [held.eq(pairs), num_a.eq(0), num_t.eq(0), a_sum.eq(0), a_any.eq(0), hcount.eq(0),
                         collecting.eq(1)]
        with m.If(collecting):
            m.d.sync += [num_a.eq(num_a + head_prod), num_t.eq(num_t + cur.t), a_sum.eq(a_sum + cur.a),
                         a_any.eq(a_any | (cur.a != 0)),
                         held.eq(held.as_value() >> (2 * PROB_BITS)), hcount.eq(hcount + 1)]
            with m.If(hcount == n_h - 1):
                m.d.sync += [collecting.eq(0), pushing.eq(1)]
        push = Signal()
        m.d.comb += [
            push.eq(pushing & recip_i.ready & nums.w_rdy),
            recip_i.valid.eq(pushing & nums.w_rdy),
            recip_i.payload[0].eq(den),
            nums.w_en.eq(push),
            nums.w_data.eq(num),
        ]
        with m.If(push):
            m.d.sync += pushing.eq(0)

        # Stage 2: q = round_half_away(num * r / 2**(16 + e - b)) (16 + e - b > 0: e >= 7), with
        # num * r as shift-add, R_DIGIT_BITS bits of r per cycle.
        mul_busy = Signal()
        done = Signal()                        # q is on the scores port
        r = Signal(digits * R_DIGIT_BITS)
        # den = 255 den_a, den_a in 1 .. 255 H (a_sum, or n_heads >= 1 when it is 0): e stays in
        # e_lo .. e_hi (7 .. 17 at 3 heads), and the output shift takes e - e_lo (4 bits, not 6)
        e_lo, e_hi = exp_range(255, 255 * 255 * H, self.nl_cfg)
        e = Signal(range(e_hi - e_lo + 1))     # e - e_lo
        num2 = Signal(num_bits + digits * R_DIGIT_BITS)
        prod = Signal(num_bits + r_bits + 1)
        dcount = Signal(range(digits + 1))
        part = Signal(num2.shape().width + R_DIGIT_BITS)
        m.d.comb += part.eq(digit_product(num2, r, R_DIGIT_BITS))
        load = Signal()
        m.d.comb += [
            load.eq(~mul_busy & ~done & recip_o.valid & nums.r_rdy),
            recip_o.ready.eq(load),
            nums.r_en.eq(load),
        ]
        # The rounding term 2**(s - 1) of q = round(prod / 2**s), s = e + off >= 1, is the
        # product's initial value (a one-hot decode of e), so the adds of the multiply do the
        # rounding add and the output stage only shifts and clamps.
        off = F.RECIP_FRAC - b
        e_in = recip_o.payload[0].e
        half = Cat(*[(e_in == i + 1 - off) if e_lo <= i + 1 - off <= e_hi else Const(0, 1)
                     for i in range(len(prod))])
        with m.If(load):
            m.d.sync += [r.eq(recip_o.payload[0].r), e.eq(e_in - e_lo), num2.eq(nums.r_data),
                         prod.eq(half), dcount.eq(0), mul_busy.eq(1)]
        with m.If(mul_busy):
            m.d.sync += [prod.eq(prod + part), r.eq(r >> R_DIGIT_BITS), num2.eq(num2 << R_DIGIT_BITS),
                         dcount.eq(dcount + 1)]
            with m.If(dcount == digits - 1):
                m.d.sync += [mul_busy.eq(0), done.eq(1)]
        # q <= 2**b: num <= 255 sum_h a (t <= 255), so num / den <= 1, and the reciprocal's
        # rounding adds far less than one unit of q (golden divide(255 s, 255 s, frac=8) = 256
        # for every s); its bits from b + 2 up are always 0 and the shift leaves them out.
        q = Signal(b + 2)
        m.d.comb += [
            q.eq((prod >> (off + e_lo)) >> e),
            self.scores.valid.eq(done),
            self.scores.payload.score.eq(Mux(q > cfg.score_max, cfg.score_max, q)),
        ]
        with m.If(done & self.scores.ready):
            m.d.sync += done.eq(0)
        return m
