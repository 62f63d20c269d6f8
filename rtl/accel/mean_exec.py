"""MEAN descriptor executor: the token selector's global feature.

Over the window's ``M = live_m`` rows of ``n = live_n`` channels (``k < n``, checked by the
sequencer)::

    dst[r, c] = src[r, c]                          c < k
    dst[r, c] = divide(sum_i src[i, c], M)         k <= c < n     (the same for every row)

``divide`` is :func:`heatvit.golden.nonlinear.divide` (``round_half_away(sum * r / 2**(16 + e))``
with ``(r, e)`` = ``1/M`` from the golden model's default reciprocal table, as
``heatvit.compiler.interpret`` calls it).  No multiplier: ``1/M`` comes from
:class:`heatvit.rtl.nonlinear.serial_recip.SerialReciprocal` (shift-add Horner steps) and each
lane's ``sum * r`` is a shift-add of ``MUL_DIGIT_BITS`` bits of ``r`` a cycle whose start value is
the rounding add, then the shift by ``16 + e`` (the quotient is always an int8: no clamp) into a
ring of the word's quotients.  Bit-exact with ``Machine._mean``.

Order: ``1/M`` once, then word column by word column (``lanes`` =
:func:`heatvit.isa.column_align` channels): read the column's M words (``src``), write each
row's copied lanes (``c < k``) as it arrives and add every lane into its column sum; then write
the column's mean lanes (``k <= c < n``) to every row.  A write whose lane mask is empty is left
out.  The column sums cover ``sum_lanes`` lanes (default
:func:`heatvit.toksel_config.mean_sum_lanes`: at most 16, so the sums and the divider do not grow
with the array): a wider word column is read in passes (:func:`heatvit.toksel_config.mean_passes`):
pass 0, which writes the copied lanes, then each group of ``sum_lanes`` lanes from the first to the
last one with mean lanes, each summing, dividing and writing its group.  ``dst`` may be the ``src`` window (in place: the column is read whole before its means are
written) or disjoint from it; a partial overlap is undefined.

Cycles from the ``cmd`` handshake to ``done``, no stalls (measured; ``testbench/test_accel_ln.py``
checks it): ``18 + W (M + 2) + W' (M + 10 lanes + 2)``, ``W = ceil(n / lanes)`` columns of which
``W'`` have mean lanes (one divider, 10 cycles a lane: the load and 9 digits; the 18 include the
reciprocal's 16; default config, M = 197, n = 32, k = 16: 775); with passes, per pass ``M + 2``
and for one with mean lanes ``M + 10 sum_lanes + 2``.

``done`` pulses after the last write (``error`` = 0), or at once for ``live_m = 0`` (no error)
and for ``k >= n`` (``CTRL_BAD_SHAPE``, the sequencer's check, repeated so such a descriptor
cannot write outside its window).  ``abort`` resets every register in the next cycle.  ``aux``,
``dma_rd`` and ``dma_wr`` are not used (left idle).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import wiring

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode
from heatvit.golden.nonlinear import formats as F
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.toksel_config import mean_sum_lanes

from ..nonlinear.pipe import negate_if
from ..nonlinear.serial_recip import digit_product
from ..toksel.combiner import exp_range, reciprocal
from . import ports


MUL_DIGIT_BITS = 2
"""Bits of the reciprocal's 17-bit mantissa multiplied per cycle (shift-add: 9 cycles a lane; a
MEAN divides ``lanes`` values per averaged word once per selector, so LUTs matter, not cycles)."""


class MeanExecutor(wiring.Component):
    """The MEAN executor: :func:`heatvit.rtl.accel.ports.executor_members` only.  ``sum_lanes``:
    lanes summed per pass (a divisor of the buffer word's lanes; default
    :func:`heatvit.toksel_config.mean_sum_lanes`)."""

    IDLE_PORTS = ("aux", "dma_rd", "dma_wr")
    """Ports it never uses (always idle): the top does not route them."""

    def __init__(self, acc: AcceleratorConfig, sum_lanes: int | None = None):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"acc must be an AcceleratorConfig, not {acc!r}")
        self.acc = acc
        L = isa.column_align(acc)
        self.sum_lanes = mean_sum_lanes(L) if sum_lanes is None else sum_lanes
        if not isinstance(self.sum_lanes, int) or self.sum_lanes < 1 or L % self.sum_lanes:
            raise ValueError(f"MeanExecutor: sum_lanes must be an int dividing the buffer word's {L} lanes, "
                             f"not {sum_lanes!r}")
        super().__init__(ports.executor_members(acc))

    def elaborate(self, platform):
        m = Module()
        # golden divide() uses the default NonlinearConfig's reciprocal table; its input is
        # M <= max_rows: the reciprocal's (r, e) depends only on the value, so this narrow unit
        # equals golden divide()'s 32-bit one
        m.submodules.recip = recip = reciprocal(in_bits=self.max_rows().bit_length())
        self.logic(m, recip.i, recip.o)
        return ResetInserter(self.abort)(m)

    def max_rows(self) -> int:
        """The tallest token buffer's rows (the sequencer checks every window against its
        buffer: ``live_m`` never exceeds it)."""
        return max(spec.rows for spec in isa.token_buffers(self.acc).values())

    def logic(self, m: Module, recip_i, recip_o):
        """The executor's logic into ``m`` on this component's port signals, without the abort
        reset (:meth:`elaborate` adds it; :class:`.selector_exec.SelectorExecutor` builds it
        into one module beside the SELECT executor's).  ``recip_i`` / ``recip_o``: the
        streams of the score combiner's reciprocal (:func:`heatvit.rtl.toksel.combiner.reciprocal`,
        16 cycles from ``M`` to ``1/M``, so that in the accelerator both use one unit; ``M`` in, ``1/M``
        out; any input width of at least ``max_rows`` bits)."""
        acc = self.acc
        L = isa.column_align(acc)
        log_l = L.bit_length() - 1
        SL = self.sum_lanes
        P = L // SL                                    # passes over a word column
        # a column sum of at most the tallest buffer's rows of int8 (the sequencer checks every
        # window against its buffer: live_m never exceeds it)
        max_rows = self.max_rows()
        sum_bits = (max_rows << 7).bit_length() + 1

        f = Signal(ports.fields_layout())
        code = Signal(8)
        rows, n, k = Signal(range(max_rows + 1)), Signal(16), Signal(16)
        last_row = Signal(range(max_rows + 1))         # rows - 1 (rows >= 1 once started): plain compares
        last_w = Signal(16)                            # the last word column: (n - 1) / lanes (n >= 1)
        # 1/M = r / 2**(16 + ex); M <= max_rows: ex <= 7 at 197 rows (3 bits: fewer levels in
        # the shift by ex below than with all of the reciprocal's exponent)
        r, ex = Signal(F.RECIP_FRAC + 1), Signal(range(exp_range(1, max(1, max_rows), NonlinearConfig())[1] + 1))
        w = Signal(16)                                 # current word column
        rc, dc = (Signal(range(max_rows + 1), name=nm) for nm in ("rc", "dc"))   # dc: the row written (copy, then mean)
        # (reads issued, words received, mean writes)
        issuing = Signal()
        sums = [Signal(signed(sum_bits), name=f"sum{j}") for j in range(SL)]
        q = [Signal(signed(8), name=f"q{j}") for j in range(SL)]  # a ring: lane 0 leaves first
        ps = Signal(range(max(2, P)))                  # the pass: lanes ps SL .. ps SL + SL - 1
        # One divider, lane by lane, on the magnitude (golden's round half away is symmetric):
        # A = floor(|sum| r / 2**16) by shift-add, D bits of r a cycle into an accumulator that
        # shifts right D bits a cycle (exact: the bits it drops are final) except after the last
        # digit (r's bit 16); then |q| = (floor(2 A / 2**ex) + 1) >> 1 = floor((|sum| r +
        # 2**(15+ex)) / 2**(16+ex)) and q = sign * |q|.  A quotient is always an int8 (the mean
        # of int8 values: golden divide(127 M, M) = 127 and divide(-128 M, M) = -128 for every
        # M < 2**16, and it is monotonic in the sum), so no clamp.
        D = MUL_DIGIT_BITS
        assert F.RECIP_FRAC % D == 0
        k_dig = -(-(F.RECIP_FRAC + 1) // D)
        shifted_digits = F.RECIP_FRAC // D
        li = Signal(range(SL + 1))
        dg = Signal(range(k_dig + 1))
        pend, sv = Signal(), Signal()              # a product is complete / shv holds a quotient
        mag = Signal(sum_bits)                     # |sum| of the lane being divided
        sgn = Signal()
        acc_q = Signal(sum_bits + 3)               # A
        rr = Signal(F.RECIP_FRAC + 1)
        shv = Signal(signed(8))
        u = Signal(10)                             # floor(2 A / 2**ex) <= 2 * 128
        qmag = Signal(9)
        m.d.comb += [u.eq((acc_q << 1) >> ex), qmag.eq((u + 1) >> 1)]
        cur = Signal(signed(sum_bits))             # the sum of lane li
        m.d.comb += cur.eq(Array(sums)[li])
        add = Signal(sum_bits + 3)
        m.d.comb += add.eq(acc_q + digit_product(mag, rr, D))
        # Lane j of word column w is channel c = w L + j: copied if c < k, averaged if k <= c < n.
        # The masks are registers, ready before the column starts (none of them is decoded
        # from w in front of the handshakes, issue 13): a two-stage pipeline works on the *next*
        # column, w_pre (stage 1: how many of its lanes lie below k and below n, clamped; stage
        # 2: the thermometer masks and the pass groups), and the column's own registers take
        # its output when w moves (RECIP_WAIT -> READ, NEXT).  w_pre then moves too; the
        # pipeline has settled again before the next move (READ takes at least two cycles).
        w_pre = Signal(16)                             # the column the pipeline works on
        below_k, below_n = Signal(range(L + 1)), Signal(range(L + 1))   # stage 1 (w_pre)
        for below, edge in ((below_k, k), (below_n, n)):
            t = Signal(signed(18), name=f"{below.name}_t")
            m.d.comb += t.eq(edge - (w_pre << log_l))
            m.d.sync += below.eq(Mux(t < 0, 0, Mux(t > L, L, t)))
        nxt_copy, nxt_mean = Signal(L), Signal(L)      # stage 2 (w_pre)
        copy_mask, mean_mask = Signal(L), Signal(L)    # the column w's
        m.d.sync += [nxt_copy.eq(Cat(below_k > j for j in range(L))),
                     nxt_mean.eq(Cat((below_k <= j) & (below_n > j) for j in range(L)))]
        # Passes of a word column: pass 0 (the copied lanes' writes), then each group of SL lanes
        # from the first to the last one with averaged lanes (first_g .. last_g).  ``grp_mean``:
        # which groups have averaged lanes (one bit a group: "this pass divides" is a select of
        # P registered bits, not an OR of the pass's lane mask)
        nxt_any_copy, any_copy = Signal(), Signal()
        nxt_grp, grp_mean = Signal(P), Signal(P)
        m.d.sync += [nxt_any_copy.eq(below_k != 0),
                     nxt_grp.eq(Cat((below_k < (g + 1) * SL) & (below_n > g * SL) & (below_k < below_n)
                                    for g in range(P)))]
        move = Signal()                                # w moves to w_pre: the masks with it
        with m.If(move):
            m.d.sync += [copy_mask.eq(nxt_copy), mean_mask.eq(nxt_mean), any_copy.eq(nxt_any_copy),
                         grp_mean.eq(nxt_grp), w_pre.eq(w_pre + 1)]
        pass_mean = Signal(L)                          # the averaged lanes of this pass
        pass_divides = Signal()                        # pass_mean != 0
        if P > 1:                                      # (one pass: no group indices at all)
            first_g, last_g = Signal(range(P)), Signal(range(P))
            nxt_first, nxt_last = Signal(range(P)), Signal(range(P))
            m.d.sync += [nxt_first.eq(below_k >> (SL.bit_length() - 1)),
                         nxt_last.eq((below_n - 1) >> (SL.bit_length() - 1))]
            with m.If(move):
                m.d.sync += [first_g.eq(nxt_first), last_g.eq(nxt_last)]
            m.d.comb += [pass_mean.eq(mean_mask & (Const((1 << SL) - 1, L) << (ps * SL))),
                         pass_divides.eq(grp_mean.bit_select(ps, 1))]
        else:
            m.d.comb += [pass_mean.eq(mean_mask), pass_divides.eq(grp_mean[0])]

        m.d.comb += [recip_i.payload[0].eq(rows), recip_o.ready.eq(1)]

        # -- reads of the current column ----------------------------------------------------------
        m.d.comb += [self.src.cmd.valid.eq(issuing), self.src.cmd.payload.row.eq(f.src_row + rc),
                     self.src.cmd.payload.word.eq((f.src_col >> log_l) + w)]
        with m.If(self.src.cmd.valid & self.src.cmd.ready):
            m.d.sync += rc.eq(rc + 1)
            with m.If(rc == last_row):
                m.d.sync += issuing.eq(0)

        dst = self.dst.payload
        data = self.src.data.payload
        # dst's data is the src word (the copied lanes) or, while ``means_out``, ``means_word``
        # (:class:`.selector_exec.SelectorExecutor` builds one multiplexer from these)
        self.means_out = Signal(name="means_out")
        self.means_word = Cat(*(q * P))
        lanes = data.word_select(ps, 8 * SL) if P > 1 else data
        # one address for both writers (the copy in READ, the means in WRITE): no multiplexer
        m.d.comb += [dst.row.eq(f.dst_row + dc), dst.word.eq((f.dst_col >> log_l) + w)]
        # The sums are cleared after the FSM's statements (their highest priority after abort), so
        # synthesis makes the clear the flip-flops' synchronous reset with abort (one LUT for
        # all), not a LUT before every sum bit (256 at 16 lanes of 16 bits)
        clear_sums = Signal()
        with m.If(sv):                                 # the quotient into the ring (any state)
            m.d.sync += [*[q[j].eq(q[j + 1]) for j in range(SL - 1)], q[SL - 1].eq(shv), sv.eq(0)]
        with m.FSM(name="mean_exec"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    m.d.sync += [f.eq(p), rows.eq(p.live_m), n.eq(p.live_n), k.eq(p.k), w.eq(0), ps.eq(0),
                                 w_pre.eq(0), last_row.eq(p.live_m - 1), code.eq(0), last_w.eq((p.live_n - 1)[:16] >> log_l)]
                    with m.If(p.live_m == 0):
                        m.next = "DONE"
                    with m.Elif(p.k >= p.live_n):       # (n = 0 included) the sequencer's check, kept here
                        m.d.sync += code.eq(ErrorCode.CTRL_BAD_SHAPE)
                        m.next = "DONE"
                    with m.Else():
                        m.next = "RECIP"
            with m.State("RECIP"):
                m.d.comb += recip_i.valid.eq(1)
                with m.If(recip_i.ready):
                    m.next = "RECIP_WAIT"
            with m.State("RECIP_WAIT"):
                with m.If(recip_o.valid):
                    e_r = recip_o.payload[0].e
                    m.d.sync += [r.eq(recip_o.payload[0].r), ex.eq(e_r),
                                 rc.eq(0), dc.eq(0), issuing.eq(1)]
                    m.d.comb += [clear_sums.eq(1), move.eq(1)]   # w = w_pre = 0 (the reciprocal took 16 cycles)
                    m.next = "READ"
            with m.State("READ"):
                # each row's copied lanes go out as the word arrives; every lane adds to its sum
                need = any_copy & (ps == 0)
                m.d.comb += [
                    self.src.data.ready.eq(self.dst.ready | ~need),
                    self.dst.valid.eq(self.src.data.valid & need),
                    dst.data.eq(data), dst.mask.eq(copy_mask),
                ]
                with m.If(self.src.data.valid & self.src.data.ready):
                    m.d.sync += dc.eq(dc + 1)
                    m.d.sync += [s.eq(s + lanes[8 * j:8 * j + 8].as_signed()) for j, s in enumerate(sums)]
                    with m.If(dc == last_row):
                        m.d.sync += [li.eq(0), dg.eq(0), pend.eq(0), dc.eq(0)]
                        with m.If(pass_divides):
                            m.next = "DIV"
                        with m.Else():
                            m.next = "NEXT"
            with m.State("DIV"):
                with m.If(dg == 0):                    # load the next lane; the finished product is shifted
                    m.d.sync += pend.eq(0)
                    with m.If(pend):
                        m.d.sync += [shv.eq(negate_if(qmag, sgn)), sv.eq(1)]
                    with m.If(li < SL):
                        m.d.sync += [mag.eq(negate_if(cur, cur[-1])), sgn.eq(cur[-1]), acc_q.eq(0), rr.eq(r),
                                     li.eq(li + 1), dg.eq(1)]
                    with m.Else():
                        m.next = "DIV_END"
                with m.Else():
                    m.d.sync += [acc_q.eq(Mux(dg <= shifted_digits, add >> D, add)), rr.eq(rr >> D),
                                 dg.eq(dg + 1)]
                    with m.If(dg == k_dig):
                        m.d.sync += [dg.eq(0), pend.eq(1)]
            with m.State("DIV_END"):                    # the last lane's quotient into the ring (above)
                m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.dst.valid.eq(1), dst.data.eq(self.means_word), self.means_out.eq(1),
                             dst.mask.eq(pass_mean)]
                with m.If(self.dst.ready):
                    m.d.sync += dc.eq(dc + 1)
                    with m.If(dc == last_row):
                        m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += [rc.eq(0), dc.eq(0)]
                m.d.comb += clear_sums.eq(1)
                more = Signal()                        # another pass over this word column
                if P > 1:
                    m.d.comb += more.eq(grp_mean.any() & (ps < last_g))
                with m.If(more):
                    m.d.sync += [ps.eq(Mux(ps < first_g, first_g, ps + 1) if P > 1 else ps + 1), issuing.eq(1)]
                    m.next = "READ"
                with m.Elif(w == last_w):
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += [w.eq(w + 1), ps.eq(0), issuing.eq(1)]
                    m.d.comb += move.eq(1)
                    m.next = "READ"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.error.eq(code)]
                m.next = "IDLE"
        with m.If(clear_sums):
            m.d.sync += [s.eq(0) for s in sums]
