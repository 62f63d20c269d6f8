"""The token-selector control unit (see docs/token_selector.md and
:mod:`heatvit.golden.token_selector.decision`, which it matches bit for bit)."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.errors import ErrorCode
from heatvit.toksel_config import TOKEN_BITS, TokSelConfig

from . import layouts

# Error codes (heatvit.errors.ErrorCode): n_tokens 0 or above max_tokens; n_tail >= n_tokens.
TOKSEL_BAD_TOKENS = int(ErrorCode.TOKSEL_BAD_TOKENS)
TOKSEL_BAD_TAIL = int(ErrorCode.TOKSEL_BAD_TAIL)

MAC_BITS = 4
"""Weight bits multiplied per cycle: a pruned token's beat takes ceil(score_bits / MAC_BITS) cycles."""
QUOTIENT_BITS = TOKEN_BITS
"""Quotient bits of the package divider: |average| <= 128 < 2**8."""


class TokenSelectorUnit(wiring.Component):
    """Keep decisions, order-preserving gather and the weighted package token of one stage.

    Streams (valid/ready; layouts in :mod:`.layouts`):

    * ``cmd`` (in): ``(n_tokens N, n_tail, threshold)``; accepted when idle.  A bad command
      (N = 0 or N > ``max_tokens``: error 24; ``n_tail >= N``: error 25) consumes nothing else and
      answers at once with a ``result`` carrying the error code.
    * ``scores`` (in): N beats, token order, the combined keep score UQ0.``score_bits``.  Token
      0 (class) and the last ``n_tail`` tokens are kept whatever their score; the others are
      kept iff ``score > threshold``.  Ready only while the unit takes scores (after a
      good command, until the N-th score).
    * ``tokens`` (in): after the scores, ``chunks * N`` words of ``lanes`` int8 channels, chunk
      major (word ``k * N + n``: the GEMM activation-buffer order).
    * ``writes`` (out): the compacted sequence of N' tokens, per chunk k: each kept token at
      ``addr = k * N' + position`` (original order), and, if anything was pruned, the package
      token at ``k * N' + N' - 1``; that word is written while chunk k + 1 streams (slotted
      between its kept-token writes), the last chunk's before ``result``.  ``last`` marks the
      final write.  Every address is written once and never exceeds the word being read, so
      the gather may run in place.  A word on offer stays on offer, unchanged, until taken: a
      package word that is ready while a kept-token word waits for ``ready`` waits behind it.
    * ``result`` (out): one beat per command after the last write: ``n_tokens = N'`` (kept +
      package), ``n_tail`` (+1 if a package token was added), ``n_kept``, ``error``.

    Package token per channel: ``acc = sum q_n x_n`` over pruned tokens (shift-add, no
    multiplier, ``MAC_BITS`` weight bits per cycle), ``S = sum q_n`` (plain mean if S = 0); at
    the end of each chunk the sums move to a shadow bank, where a shared bit-serial restoring
    divider computes ``sign(acc) * floor((2|acc| + S) / 2S)`` lane by lane (9 cycles per lane)
    while the next chunk streams.  No DSPs.

    ``busy`` is high from an accepted command until its ``result`` has been taken.

    ``runtime_chunks=True`` (the accelerator's SELECT executor, whose token width is a descriptor
    field): ``cmd`` also carries ``chunks`` (token words per token, 1 .. ``cfg.chunks``; ``cfg.dim``
    is then the widest token) and every ``writes`` beat its address's parts ``chunk`` and ``pos``
    (:func:`.layouts.command`, :func:`.layouts.write_beat`).  Otherwise ``chunks = cfg.chunks``.
    """

    def __init__(self, cfg: TokSelConfig, runtime_chunks: bool = False):
        self.cfg, self.runtime_chunks = cfg, runtime_chunks
        super().__init__({
            "cmd": In(stream.Signature(layouts.command(cfg, chunks=runtime_chunks))),
            "scores": In(stream.Signature(layouts.score(cfg))),
            "tokens": In(stream.Signature(layouts.token_word(cfg))),
            "writes": Out(stream.Signature(layouts.write_beat(cfg, positions=runtime_chunks))),
            "result": Out(stream.Signature(layouts.result(cfg))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        L = cfg.lanes
        cb = cfg.count_bits
        m = Module()

        # -- command state -----------------------------------------------------------------------
        n_tok = Signal(cb)
        n_tail = Signal(cb)
        thr = Signal(cfg.score_bits)
        error = Signal(layouts.ERROR_BITS)
        idx = Signal(cb)                       # token index in the current phase / chunk
        n_kept = Signal(cb)
        n_pruned = Signal(cb)
        wsum = Signal(cfg.weight_sum_bits)
        has_pkg = Signal()
        unit_w = Signal()                      # every pruned score was 0: plain mean
        divisor = Signal(cfg.weight_sum_bits)  # S
        n_out = Signal(cb)
        chunk = Signal(range(cfg.chunks))
        base = Signal(cfg.addr_bits)           # chunk * N'
        pos = Signal(cb)                       # next kept position in this chunk
        n_chunks = Signal(range(cfg.chunks + 1))
        last_chunk = Signal()
        m.d.comb += last_chunk.eq(chunk == n_chunks - 1)

        # -- per-token decisions -----------------------------------------------------------------
        m.submodules.entries = mem = Memory(shape=layouts.entry(cfg), depth=cfg.max_tokens, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        m.d.comb += rd.addr.eq(idx)
        ent = rd.data

        # -- package accumulators and divider ----------------------------------------------------
        acc = Array(Signal(signed(cfg.package_acc_bits), name=f"acc{i}") for i in range(L))
        pkg = Array(Signal(signed(TOKEN_BITS), name=f"pkg{i}") for i in range(L))
        digits = -(-cfg.score_bits // MAC_BITS)
        digit = Signal(range(max(2, digits)))  # which MAC_BITS-bit digit of the weight this cycle
        last_digit = Signal()
        m.d.comb += last_digit.eq(digit == digits - 1)
        weight = Signal(digits * MAC_BITS)
        m.d.comb += weight.eq(Mux(unit_w, 1, ent.weight))
        w_digit = Signal(MAC_BITS)
        m.d.comb += w_digit.eq(weight.word_select(digit, MAC_BITS))
        products = []
        for lane in range(L):
            x = self.tokens.payload[lane]
            # w_digit * x as a sum of shifted copies of x (LUT adders, never a DSP), placed at
            # digit * MAC_BITS: one pruned beat takes ``digits`` cycles.
            terms = [Mux(w_digit[i], x << i, 0) for i in range(MAC_BITS)]
            part = Signal(signed(TOKEN_BITS + MAC_BITS + 1), name=f"part{lane}")
            m.d.comb += part.eq(sum(terms[1:], terms[0]))
            prod = Signal(signed(TOKEN_BITS + digits * MAC_BITS + 1), name=f"prod{lane}")
            with m.Switch(digit):
                for d in range(digits):
                    with m.Case(d):
                        m.d.comb += prod.eq(part << (d * MAC_BITS))
            products.append(prod)

        # The divider works on a shadow copy of the accumulators, so chunk k's package token is
        # normalized while chunk k + 1 streams; its write is slotted between kept-token writes.
        shadow = Array(Signal(signed(cfg.package_acc_bits), name=f"shadow{i}") for i in range(L))
        rem = Signal(cfg.package_acc_bits + 2)
        dsh = Signal(cfg.weight_sum_bits + 1 + QUOTIENT_BITS)
        quo = Signal(QUOTIENT_BITS)
        neg = Signal()
        step = Signal(range(QUOTIENT_BITS + 1))
        lane_i = Signal(range(L + 1))
        pkg_addr = Signal(cfg.addr_bits)
        pkg_chunk = Signal.like(chunk)
        pkg_pos = Signal.like(pos)
        pkg_last = Signal()
        head = Signal(signed(cfg.package_acc_bits))
        m.d.comb += head.eq(shadow[lane_i])
        mag = Signal(cfg.package_acc_bits)
        m.d.comb += mag.eq(Mux(head < 0, -head, head))
        ge = Signal()
        m.d.comb += ge.eq(rem >= dsh)
        quo_next = Signal(QUOTIENT_BITS)
        m.d.comb += quo_next.eq(Cat(ge, quo))           # shift the next quotient bit in
        div_start = Signal()
        div_idle = Signal()
        pkg_pending = Signal()
        kept_held = Signal()          # a kept-token word was on offer and not taken at the last edge
        m.d.sync += kept_held.eq(self.writes.valid & ~self.writes.ready & ~pkg_pending)

        with m.FSM(name="divider"):
            with m.State("START"):         # see the main FSM's START
                m.next = "IDLE"
            with m.State("IDLE"):
                m.d.comb += div_idle.eq(1)
                with m.If(div_start):
                    m.d.sync += lane_i.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                # rem = 2|acc| + S, divided by 2S << 7 .. 2S << 0 (restoring, MSB first).
                m.d.sync += [rem.eq((mag << 1) + divisor), dsh.eq(divisor << QUOTIENT_BITS),
                             neg.eq(head < 0), quo.eq(0), step.eq(0)]
                m.next = "STEP"
            with m.State("STEP"):
                with m.If(ge):
                    m.d.sync += rem.eq(rem - dsh)
                m.d.sync += [quo.eq(quo_next), dsh.eq(dsh >> 1), step.eq(step + 1)]
                with m.If(step == QUOTIENT_BITS - 1):
                    m.d.sync += [pkg[lane_i].eq(Mux(neg, -quo_next, quo_next)), lane_i.eq(lane_i + 1)]
                    with m.If(lane_i == L - 1):
                        m.next = "WRITE"
                    with m.Else():
                        m.next = "LOAD"
            with m.State("WRITE"):
                # The package word takes the writes port only when no kept-token word is on
                # offer there: a word offered and not taken stays until its handshake.
                m.d.comb += pkg_pending.eq(~kept_held)
                with m.If(self.writes.ready & ~kept_held):
                    m.next = "IDLE"

        def finish_chunk():
            m.d.sync += [pos.eq(0), base.eq(base + n_out), idx.eq(0)]
            with m.If(last_chunk):
                m.next = "DRAIN"
            with m.Else():
                m.d.sync += chunk.eq(chunk + 1)
                m.next = "GATHER"

        # The writes port: a pending package word has priority over kept tokens.
        wp = self.writes.payload
        with m.If(pkg_pending):
            m.d.comb += [self.writes.valid.eq(1), wp.addr.eq(pkg_addr), wp.last.eq(pkg_last)]
            m.d.comb += [wp.data[i].eq(pkg[i]) for i in range(L)]
            if self.runtime_chunks:
                m.d.comb += [wp.chunk.eq(pkg_chunk), wp.pos.eq(pkg_pos)]

        m.d.comb += self.busy.eq(1)
        with m.FSM():
            with m.State("START"):
                # One cycle after reset; also makes every combinational output re-evaluate in
                # event-driven simulators (Icarus) that skip always @* blocks at time 0.
                m.next = "IDLE"

            with m.State("IDLE"):
                m.d.comb += [self.busy.eq(0), self.cmd.ready.eq(1)]
                c = self.cmd.payload
                with m.If(self.cmd.valid):
                    m.d.sync += [n_tok.eq(c.n_tokens), n_tail.eq(c.n_tail), thr.eq(c.threshold),
                                 idx.eq(0), n_kept.eq(0), n_pruned.eq(0), wsum.eq(0), chunk.eq(0),
                                 base.eq(0), pos.eq(0), has_pkg.eq(0), n_out.eq(0),
                                 n_chunks.eq(c.chunks if self.runtime_chunks else cfg.chunks)]
                    with m.If((c.n_tokens == 0) | (c.n_tokens > cfg.max_tokens)):
                        m.d.sync += error.eq(TOKSEL_BAD_TOKENS)
                        m.next = "RESULT"
                    with m.Elif(c.n_tail >= c.n_tokens):
                        m.d.sync += error.eq(TOKSEL_BAD_TAIL)
                        m.next = "RESULT"
                    with m.Else():
                        m.d.sync += error.eq(0)
                        m.next = "SCORE"

            with m.State("SCORE"):
                m.d.comb += self.scores.ready.eq(1)
                q = self.scores.payload.score
                keep = Signal()
                m.d.comb += [
                    keep.eq((idx == 0) | (idx >= n_tok - n_tail) | (q > thr)),
                    wr.addr.eq(idx),
                    wr.data.keep.eq(keep),
                    wr.data.weight.eq(q),
                    wr.en.eq(self.scores.valid),
                ]
                with m.If(self.scores.valid):
                    with m.If(keep):
                        m.d.sync += n_kept.eq(n_kept + 1)
                    with m.Else():
                        m.d.sync += [n_pruned.eq(n_pruned + 1), wsum.eq(wsum + q)]
                    with m.If(idx == n_tok - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "DECIDED"
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)

            with m.State("DECIDED"):
                m.d.sync += [
                    has_pkg.eq(n_pruned != 0),
                    n_out.eq(n_kept + (n_pruned != 0)),
                    unit_w.eq(wsum == 0),
                    divisor.eq(Mux(wsum == 0, n_pruned, wsum)),
                ]
                m.next = "GATHER"

            with m.State("GATHER"):
                last_token = idx == n_tok - 1
                with m.If(~pkg_pending):
                    m.d.comb += [
                        wp.addr.eq(base + pos),
                        wp.data.eq(self.tokens.payload),
                        wp.last.eq(last_chunk & last_token & ~has_pkg),
                    ]
                    if self.runtime_chunks:
                        m.d.comb += [wp.chunk.eq(chunk), wp.pos.eq(pos)]
                taken = Signal()
                with m.If(ent.keep):
                    with m.If(~pkg_pending):
                        m.d.comb += [self.writes.valid.eq(self.tokens.valid),
                                     self.tokens.ready.eq(self.writes.ready)]
                    m.d.comb += taken.eq(self.tokens.valid & self.writes.ready & ~pkg_pending)
                    with m.If(taken):
                        m.d.sync += pos.eq(pos + 1)
                with m.Else():
                    m.d.comb += [self.tokens.ready.eq(last_digit),
                                 taken.eq(self.tokens.valid & last_digit)]
                    with m.If(self.tokens.valid):
                        m.d.sync += [acc[i].eq(acc[i] + products[i]) for i in range(L)]
                        m.d.sync += digit.eq(Mux(last_digit, 0, digit + 1))
                with m.If(taken):
                    with m.If(last_token):
                        with m.If(has_pkg):
                            m.next = "HANDOFF"
                        with m.Else():
                            finish_chunk()
                    with m.Else():
                        m.d.sync += idx.eq(idx + 1)

            with m.State("HANDOFF"):
                # Hand the chunk's sums to the divider once it is free (it normally is: a chunk
                # streams for N cycles, the divider needs 9 * lanes + 1).
                with m.If(div_idle):
                    m.d.comb += div_start.eq(1)
                    m.d.sync += [shadow[i].eq(acc[i]) for i in range(L)]
                    m.d.sync += [acc[i].eq(0) for i in range(L)]
                    m.d.sync += [pkg_addr.eq(base + pos), pkg_last.eq(last_chunk), pkg_chunk.eq(chunk),
                                 pkg_pos.eq(pos)]
                    finish_chunk()

            with m.State("DRAIN"):
                with m.If(div_idle):
                    m.next = "RESULT"

            with m.State("RESULT"):
                rp = self.result.payload
                m.d.comb += [
                    self.result.valid.eq(1),
                    rp.n_tokens.eq(n_out),
                    rp.n_tail.eq(Mux(error != 0, 0, n_tail + has_pkg)),
                    rp.n_kept.eq(n_kept),
                    rp.error.eq(error),
                ]
                with m.If(self.result.ready):
                    m.next = "IDLE"
        return m

