"""SELECT executor: the score combiner and the token-selector control unit (``rtl/toksel``) on
the live tokens of a token buffer, in-place compaction, the new ``N_live`` / ``N_tail``, and the
stage's trace record (docs/isa.md "Token selectors").

Per descriptor (``N = live_m`` tokens, ``D = live_n`` channels, ``H = heads``, ``A`` = one buffer
word = :func:`heatvit.isa.column_align` int8, ``U = toksel.lanes`` = the array's rows):

1. **Command.**  The control unit gets ``(n_tokens = N, n_tail = N_tail, threshold, chunks =
   D / U)``.  A command it refuses (``TOKSEL_BAD_TOKENS``, ``TOKSEL_BAD_TAIL``) ends the
   descriptor with that ``error`` at once: nothing is read, written or traced.  ``H`` above
   ``max_heads`` (the combiner's width): ``CTRL_BAD_FIELD``; ``D`` above the unit's widest
   token (the widest buffer, at most 4096): ``CTRL_BAD_SHAPE``; both before anything else.
2. **Scores.**  Per token n: ``ceil(H / A)`` ``aux`` words of head weights (``a_h`` = byte
   ``a_col + h`` of row n), then ``H`` words of keep probabilities (``t_h`` = byte ``aux_col +
   h A``), all uint8, into one combiner beat (heads ``H ..`` zero); its score stream feeds the
   unit.
3. **Tokens.**  Only after the unit has taken the N-th score (so ``src`` data never waits for
   ``aux`` data): ``src`` rows 0 .. N-1, chunk major (token word ``k N + n`` = row n, channels
   ``src_col + k U ..``: buffer word ``src_col / A + k // (A / U)``, lanes ``(k mod A/U) U ..``).
   The unit's writes (token word ``k N' + pos``) go to ``dst`` row ``pos``, word ``dst_col / A +
   k // (A / U)`` with the lane mask of that chunk.  In place (``dst = src``): the unit writes a
   word only after it has taken the token word at the same or a later address, i.e. after that
   word's read has returned, so however far reads run ahead and however long any stream stalls,
   no read can see a word this descriptor already wrote (a later chunk's lanes of a shared
   buffer word are never written before they are read: masked writes).
4. **Result and trace.**  The unit's result gives ``N'``, the new tail and the kept count; the
   keep bit of token n is whether the unit passed chunk 0's word of token n to ``writes``.
   The record (:func:`heatvit.isa.pack_trace_record`: ``N | N' << 16``, ``n_kept | N_tail' <<
   16``, keep mask LSB first, zero-padded to ``trace_record_bytes(m)``) goes to
   :attr:`.ports.DmaRegion.TRACE` at byte offset ``addr`` through ``dma_wr``, all strobes set.
5. **Done.**  ``done`` pulses after the record's last beat, with ``error = 0`` and ``set_live``
   high: ``new_n_live = N'`` and ``new_n_tail`` (valid with ``set_live``) are the sequencer's
   next ``N_live`` / ``N_tail``.  ``done`` with ``error != 0`` leaves ``set_live`` low.

Extra ports beside :func:`.ports.executor_members`: ``n_tail`` (in, 16 bits: the sequencer's
current ``N_tail``, sampled when ``cmd`` is taken), ``set_live`` (out, pulse with ``done``),
``new_n_live`` / ``new_n_tail`` (out, 16 bits unsigned).  ``abort`` resets every register
(combiner and unit included) to idle.  ``src``/``aux``/``dst`` words are ``A`` int8, lane 0
the lowest column; ``aux`` bytes are read as unsigned.
"""

from __future__ import annotations

import dataclasses
import math

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode

from ..toksel import ScoreCombiner, TokenSelectorUnit
from ..toksel.combiner import PORT_RECIP_BITS, den_bits, head_pairs, reciprocal
from . import ports
from .descriptor import fields_layout


class WrapCounter:
    """``value`` counts 0 .. ``last`` and wraps to 0; ``at_last`` (``value == last``) is a
    register decided a step ahead, so the wrap and whatever else it drives have no compare in
    front of them (issue 13).  ``last`` comes as registers: ``last - 1`` (the compare one step
    ahead) and ``last == 0``; a ``last`` below 0 (an empty walk) never ends, as a plain
    ``value == last`` would not."""

    def __init__(self, shape, name: str):
        self.value = Signal(shape, name=name)
        self.at_last = Signal(name=f"{name}_at_last")

    def restart(self, m: Module, single):
        """Back to 0 (``single``: ``last == 0``, from the command's fields)."""
        m.d.sync += [self.value.eq(0), self.at_last.eq(single)]

    def step(self, m: Module, last_m1, single):
        """One count (``last_m1``, ``single``: ``last - 1`` and ``last == 0`` as registers)."""
        with m.If(self.at_last):
            self.restart(m, single)
        with m.Else():
            m.d.sync += [self.value.eq(self.value + 1), self.at_last.eq(self.value == last_m1)]


DEIT_B_HEADS = 12
"""``max_heads`` for DeiT-S/B programs (6 / 12 heads): ``SelectExecutor(acc, max_heads=12)``
(tested bit-exact and cycle-exact in ``testbench/test_accel_select.py``).  The default stays
``acc.toksel.heads``; a descriptor's run-time head count sets its cycles
(:func:`heatvit.compiler.cycles.select_cycles`), not this width."""


class SelectExecutor(wiring.Component):
    """The ``SELECT`` descriptor (see the module docstring).  ``max_heads``: the most heads a
    descriptor may name (the combiner's width; default ``acc.toksel.heads``; ``DEIT_B_HEADS``
    for DeiT-S/B)."""

    IDLE_PORTS = ("dma_rd",)
    """Ports it never uses (always idle): the top does not route them."""

    def __init__(self, acc: AcceleratorConfig, max_heads: int | None = None):
        self.acc = acc
        self.lanes = isa.column_align(acc)
        ts = acc.toksel
        if self.lanes % ts.lanes:
            raise ValueError(f"SelectExecutor: toksel.lanes = {ts.lanes} must divide one buffer word "
                             f"(column_align = {self.lanes} int8)")
        self.ratio = self.lanes // ts.lanes
        self.max_heads = ts.heads if max_heads is None else max_heads
        if not isinstance(self.max_heads, int) or not 1 <= self.max_heads <= 255:
            raise ValueError(f"SelectExecutor: max_heads must be an int in [1, 255], not {max_heads!r}")
        # The unit's widest token: the widest buffer (a descriptor's window is checked against
        # its buffer), in whole unit words and a multiple of 4 (TokSelConfig's head_dim rule),
        # at most TokSelConfig's 4096 (wider descriptors: CTRL_BAD_SHAPE).
        step = math.lcm(ts.lanes, 4)
        widest = min(max(s.cols for s in isa.token_buffers(acc).values()), 4096) // step * step
        self.unit_cfg = dataclasses.replace(ts, dim=max(widest, step), heads=1)
        self.comb_cfg = dataclasses.replace(ts, dim=4 * self.max_heads * ts.lanes, heads=self.max_heads)
        self.max_m = ts.max_tokens
        self.record_beats = isa.trace_record_bytes(self.max_m) // acc.shell.data_bytes
        super().__init__({
            **ports.executor_members(acc),
            "n_tail": In(16),
            "set_live": Out(1), "new_n_live": Out(16), "new_n_tail": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.recip = recip = reciprocal(in_bits=max(PORT_RECIP_BITS, den_bits(self.comb_cfg)))
        self.logic(m, recip.i, recip.o)
        return ResetInserter({"sync": self.abort})(m)

    def logic(self, m: Module, recip_i, recip_o):
        """The executor's logic (combiner and unit as submodules of ``m``) on this component's
        port signals, without the abort reset (:meth:`elaborate` adds it;
        :class:`.selector_exec.SelectorExecutor` builds it into one module beside MEAN's).
        ``recip_i`` / ``recip_o``: the streams of the combiner's reciprocal
        (:func:`heatvit.rtl.toksel.combiner.reciprocal`, at least :func:`~heatvit.rtl.toksel.combiner.den_bits`
        of ``comb_cfg`` wide)."""
        acc, A, U, ratio, H = self.acc, self.lanes, self.acc.toksel.lanes, self.ratio, self.max_heads
        width = acc.shell.data_width
        m.submodules.combiner = comb = ScoreCombiner(self.comb_cfg, runtime_heads=True, recip_port=True,
                                                     recip_bits=len(recip_i.payload[0]))
        m.d.comb += [recip_i.valid.eq(comb.recip_i.valid), recip_i.payload.eq(comb.recip_i.payload),
                     comb.recip_i.ready.eq(recip_i.ready), comb.recip_o.valid.eq(recip_o.valid),
                     comb.recip_o.payload.eq(recip_o.payload), recip_o.ready.eq(comb.recip_o.ready)]
        m.submodules.unit = unit = TokenSelectorUnit(self.unit_cfg, runtime_chunks=True, pkg_port=True)
        wiring.connect(m, comb.scores, unit.scores)

        f = Signal(fields_layout())
        # N (live_m <= m <= max_m: the sequencer refuses a SELECT of more tokens)
        n_tok = Signal(range(self.max_m + 1))
        # N - 2 and N == 1, registered with the command: the walks over the N tokens end on
        # registered flags (WrapCounter)
        tok_m2 = Signal(signed(len(n_tok) + 1))
        one_tok = Signal()
        n_tail = Signal(16)
        heads = Signal(8)
        n_awords = Signal(8)                    # ceil(H / A) head-weight words per token
        # set in COMMAND, read from SCORE on: ceil(H / A) - 1, H - 1 and a token's last aux word
        awords_m1 = Signal(signed(9))
        heads_m1 = Signal(signed(9))
        j_last = Signal(signed(10))             # ceil(H / A) + H - 1
        chunks = Signal(range(self.unit_cfg.chunks + 1))   # D / U
        err = Signal(8)
        res_n = Signal(16)
        res_tail = Signal(16)
        res_kept = Signal(16)
        keep = Signal(self.max_m)
        m.d.comb += comb.n_heads.eq(heads)

        # -- scores: aux reads (issuer) and the combiner beat they fill (collector) --------------
        scoring = Signal()
        si_n = Signal(range(self.max_m + 1))
        si_j = Signal(9)
        a_word0 = f.a_col // A
        t_word0 = f.aux_col // A
        aux_c = self.aux.cmd
        m.d.comb += [
            aux_c.valid.eq(scoring & (si_n < n_tok)),
            aux_c.payload.row.eq(si_n),
            aux_c.payload.word.eq(Mux(si_j < n_awords, a_word0 + si_j, t_word0 + si_j - n_awords)),
        ]
        last_j = Signal()
        m.d.comb += last_j.eq(si_j == j_last)
        with m.If(aux_c.valid & aux_c.ready):
            m.d.sync += si_j.eq(Mux(last_j, 0, si_j + 1))
            with m.If(last_j):
                m.d.sync += si_n.eq(si_n + 1)

        # a token's aux words: sc_j counts its ceil(H / A) head-weight words, then (sc_in_t)
        # sc_h its H probability words; every compare is against a constant or a register
        sc_j = Signal(9)
        sc_h = Signal(9)
        sc_in_t = Signal()
        pairs = Signal(head_pairs(self.comb_cfg))
        full = Signal()
        aux_d = self.aux.data
        m.d.comb += aux_d.ready.eq(scoring & ~full)
        with m.If(aux_d.valid & aux_d.ready):
            with m.If(~sc_in_t):
                for h in range(H):
                    with m.If((h < heads) & (sc_j == h // A)):
                        m.d.sync += pairs[h].a.eq(aux_d.payload.word_select(h % A, 8))
                with m.If(sc_j == awords_m1):
                    m.d.sync += [sc_j.eq(0), sc_in_t.eq(1)]
                with m.Else():
                    m.d.sync += sc_j.eq(sc_j + 1)
            with m.Else():
                for h in range(H):
                    with m.If(sc_h == h):
                        m.d.sync += pairs[h].t.eq(aux_d.payload[:8])
                with m.If(sc_h == heads_m1):
                    m.d.sync += [sc_h.eq(0), sc_in_t.eq(0), full.eq(1)]
                with m.Else():
                    m.d.sync += sc_h.eq(sc_h + 1)
        m.d.comb += [comb.heads.valid.eq(full), comb.heads.payload.eq(pairs)]
        # pairs are cleared after every other statement (their highest priority after abort): the
        # clear is then the flip-flops' synchronous reset with abort, not a LUT before each bit
        clear_pairs = Signal()
        with m.If(comb.heads.valid & comb.heads.ready):
            m.d.sync += full.eq(0)
            m.d.comb += clear_pairs.eq(1)
        scored = WrapCounter(range(self.max_m + 1), "scored")   # scores the unit has taken
        with m.If(unit.scores.valid & unit.scores.ready):
            scored.step(m, tok_m2, one_tok)

        # -- tokens: src reads (issuer), the unit's token stream (consumer), dst writes ----------
        gathering = Signal()
        ti = WrapCounter(range(self.max_m + 1), "ti_n")
        ti_n = ti.value
        ti_k = Signal(range(self.unit_cfg.chunks + 1))
        ti_w = Signal(range(self.unit_cfg.chunks + 1))  # buffer word offset of chunk ti_k
        ti_s = Signal(range(max(ratio, 2)))     # its sub-word
        src_c = self.src.cmd
        m.d.comb += [
            src_c.valid.eq(gathering & (ti_k < chunks)),
            src_c.payload.row.eq(ti_n),
            src_c.payload.word.eq(f.src_col // A + ti_w),
        ]
        with m.If(src_c.valid & src_c.ready):
            ti.step(m, tok_m2, one_tok)
            with m.If(ti.at_last):
                m.d.sync += ti_k.eq(ti_k + 1)
                if ratio > 1:
                    m.d.sync += [ti_s.eq(Mux(ti_s == ratio - 1, 0, ti_s + 1)),
                                 ti_w.eq(Mux(ti_s == ratio - 1, ti_w + 1, ti_w))]
                else:
                    m.d.sync += ti_w.eq(ti_w + 1)

        tc = WrapCounter(range(self.max_m + 1), "tc_n")
        tc_k = Signal(range(self.unit_cfg.chunks + 1))
        tc_s = Signal(range(max(ratio, 2)))
        src_d = self.src.data
        m.d.comb += [
            unit.tokens.valid.eq(gathering & src_d.valid),
            src_d.ready.eq(gathering & unit.tokens.ready),
            unit.tokens.payload.eq(src_d.payload.word_select(tc_s, 8 * U) if ratio > 1 else src_d.payload),
        ]
        with m.If(unit.tokens.valid & unit.tokens.ready):
            tc.step(m, tok_m2, one_tok)
            with m.If(tc.at_last):
                m.d.sync += tc_k.eq(tc_k + 1)
                if ratio > 1:
                    m.d.sync += tc_s.eq(Mux(tc_s == ratio - 1, 0, tc_s + 1))

        w = unit.writes
        dst = self.dst
        # dst's data: the token word or, while ``pkg_out``, ``pkg_word``, each repeated in every
        # unit word of the buffer word (the mask picks one); in the lanes the mask picks the
        # token word equals the src word it comes from (:class:`.selector_exec.SelectorExecutor`
        # builds one multiplexer from the src word and these)
        self.pkg_out = unit.pkg_write
        self.pkg_word = Cat(*([unit.pkg.as_value()] * ratio))
        m.d.comb += [
            dst.valid.eq(w.valid),
            w.ready.eq(dst.ready),
            dst.payload.row.eq(w.payload.pos),
            dst.payload.word.eq(f.dst_col // A + (w.payload.chunk // ratio if ratio > 1 else w.payload.chunk)),
            # the gathered token word as it passes into the unit, or the unit's package word
            dst.payload.data.eq(Mux(self.pkg_out, self.pkg_word,
                                    Cat(*([unit.tokens.payload.as_value()] * ratio)))),
        ]
        lane_mask = Const((1 << U) - 1, A)
        m.d.comb += dst.payload.mask.eq(lane_mask << (U * (w.payload.chunk % ratio)) if ratio > 1 else lane_mask)
        # A kept token's chunk-0 word goes to ``writes`` in the cycle the unit takes it (chunk 0
        # never carries a package write): that write is the token's keep bit.  The bits shift
        # into the mask from its top (no decoder per token); after the gather, zeros shift in
        # until ``max_m`` bits have entered, which leaves token n's bit at bit n.
        shifted = Signal(range(self.max_m + 1))
        shift_keep = Signal()
        keep_bit = Signal()
        with m.If(unit.tokens.valid & unit.tokens.ready & (tc_k == 0)):
            m.d.comb += [shift_keep.eq(1), keep_bit.eq(w.valid)]
        with m.If(shift_keep):
            m.d.sync += [keep.eq(Cat(keep[1:], keep_bit)), shifted.eq(shifted + 1)]

        # -- the trace record -------------------------------------------------------------------
        record = Signal(self.record_beats * width)
        m.d.comb += record.eq(Cat(n_tok, Const(0, 16 - len(n_tok)), res_n, res_kept, res_tail, keep))
        beat = Signal(range(self.record_beats + 1))
        # the record's beats (trace_record_bytes(m) / data_bytes) and its last beat, registered
        # in COMMAND from the latched fields (no add chain in front of the DMA request or the
        # last-beat compare)
        rec_beats = Signal(16)
        rec_last = Signal(16)
        m_tok = f.m[:(self.max_m).bit_length()]    # m <= max_m (the sequencer's check)
        f_beats = (((8 + ((m_tok + 7) >> 3) + 63) >> 6) << 6) >> (acc.shell.data_bytes.bit_length() - 1)
        wr = self.dma_wr
        m.d.comb += [
            wr.req.payload.region.eq(ports.DmaRegion.TRACE),
            wr.req.payload.offset.eq(f.addr),
            wr.req.payload.beats.eq(rec_beats),
            wr.data.payload.data.eq(record.word_select(beat, width)),
            wr.data.payload.strb.eq((1 << acc.shell.data_bytes) - 1),
        ]
        last_beat = Signal()
        m.d.comb += last_beat.eq(beat == rec_last)

        with m.FSM(name="select"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    p = self.cmd.payload
                    m.d.sync += [
                        f.eq(p), n_tok.eq(p.live_m), n_tail.eq(self.n_tail), heads.eq(p.heads),
                        tok_m2.eq(p.live_m[:len(n_tok)] - 2), one_tok.eq(p.live_m == 1),
                        n_awords.eq((p.heads + A - 1) // A), chunks.eq(p.live_n // U),
                        err.eq(0), shifted.eq(0), full.eq(0),
                        si_n.eq(0), si_j.eq(0), sc_j.eq(0), sc_h.eq(0), sc_in_t.eq(0),
                        ti_k.eq(0), ti_w.eq(0), ti_s.eq(0), tc_k.eq(0), tc_s.eq(0), beat.eq(0),
                    ]
                    for cnt in (scored, ti, tc):
                        cnt.restart(m, p.live_m == 1)
                    m.d.comb += clear_pairs.eq(1)
                    with m.If(p.heads > H):
                        m.d.sync += err.eq(ErrorCode.CTRL_BAD_FIELD)
                        m.next = "DONE"
                    with m.Elif(p.live_n > self.unit_cfg.dim):
                        m.d.sync += err.eq(ErrorCode.CTRL_BAD_SHAPE)
                        m.next = "DONE"
                    with m.Else():
                        m.next = "COMMAND"
            with m.State("COMMAND"):
                # from the registered head count (no add chain behind the command port); read
                # from SCORE on
                m.d.sync += [awords_m1.eq(n_awords - 1), heads_m1.eq(heads - 1), j_last.eq(n_awords + heads - 1),
                             rec_beats.eq(f_beats), rec_last.eq(f_beats - 1)]
                c = unit.cmd.payload
                m.d.comb += [unit.cmd.valid.eq(1), c.n_tokens.eq(n_tok), c.n_tail.eq(n_tail),
                             c.threshold.eq(f.threshold), c.chunks.eq(chunks)]
                with m.If(unit.cmd.ready):
                    m.next = "ACCEPTED"
            with m.State("ACCEPTED"):
                # The unit now takes scores, or refuses the command with a result at once.
                m.d.comb += unit.result.ready.eq(1)
                with m.If(unit.result.valid):
                    m.d.sync += err.eq(unit.result.payload.error)
                    m.next = "DONE"
                with m.Elif(unit.scores.ready):
                    m.next = "SCORE"
            with m.State("SCORE"):
                m.d.comb += scoring.eq(1)
                with m.If(unit.scores.valid & unit.scores.ready & scored.at_last):
                    m.next = "GATHER"
            with m.State("GATHER"):
                m.d.comb += [gathering.eq(1), unit.result.ready.eq(1)]
                with m.If(unit.result.valid):
                    r = unit.result.payload
                    m.d.sync += [res_n.eq(r.n_tokens), res_tail.eq(r.n_tail), res_kept.eq(r.n_kept),
                                 err.eq(r.error)]
                    m.next = "RESULT"
            with m.State("RESULT"):
                with m.If(err != 0):
                    m.next = "DONE"
                with m.Elif(shifted != self.max_m):
                    m.d.comb += shift_keep.eq(1)            # the mask's alignment: max_m - N cycles
                with m.Else():
                    m.next = "TRACE_REQ"
            with m.State("TRACE_REQ"):
                m.d.comb += wr.req.valid.eq(1)
                with m.If(wr.req.ready):
                    m.next = "TRACE_DATA"
            with m.State("TRACE_DATA"):
                m.d.comb += wr.data.valid.eq(1)
                with m.If(wr.data.ready):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(last_beat):
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1), self.error.eq(err), self.set_live.eq(err == 0),
                             self.new_n_live.eq(res_n), self.new_n_tail.eq(res_tail)]
                m.next = "IDLE"
        with m.If(clear_pairs):
            m.d.sync += pairs.eq(0)
