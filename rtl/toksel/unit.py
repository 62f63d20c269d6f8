"""The token-selector control unit (see docs/token_selector.md and
:mod:`heatvit.golden.token_selector.decision`, which it matches bit for bit)."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.errors import ErrorCode
from heatvit.toksel_config import TOKEN_BITS, TokSelConfig, package_lanes as default_package_lanes
from heatvit.validate import check_int

from . import layouts

# Error codes (heatvit.errors.ErrorCode): n_tokens 0 or above max_tokens; n_tail >= n_tokens.
TOKSEL_BAD_TOKENS = int(ErrorCode.TOKSEL_BAD_TOKENS)
TOKSEL_BAD_TAIL = int(ErrorCode.TOKSEL_BAD_TAIL)

QUOTIENT_BITS = TOKEN_BITS
"""Quotient bits of the package divider: |average| <= 128 < 2**8."""

PKG_DRAIN = 2
"""Cycles between a chunk's last token word and its package division (state ``DRAIN``): the
weighted sums' two product register stages drain into the ring (issue 13)."""


def radix4_product(x, w, w3):
    """``w * x`` for int8 ``x`` (its 8 bits) and unsigned ``w`` (``w3 = 3 w``): ``w (x + 128) -
    128 w``, with ``x + 128`` (``x`` with its sign bit inverted) in four radix-4 digits each
    picking ``0, w, 2 w`` or ``3 w``.  Four terms, not eight: yosys maps the eight-term shift-add
    (``digit_product``) of an 8 x 8 product and its accumulate to 280 LUTs, this to 159."""
    xu = Cat(x[:TOKEN_BITS - 1], ~x[TOKEN_BITS - 1])
    terms = [Mux(xu[2 * k + 1], Mux(xu[2 * k], w3, w << 1), Mux(xu[2 * k], w, 0)) << (2 * k)
             for k in range(TOKEN_BITS // 2)]
    return (terms[0] + terms[1]) + (terms[2] + terms[3]) - (w << (TOKEN_BITS - 1))


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
      token at ``k * N' + N' - 1``, written after chunk k's last token word was taken and its
      division finished, before chunk k + 1 streams.  ``last`` marks the final write.  Every
      address is written once and never exceeds the word being read, so the gather may run in
      place.  A word on offer stays on offer, unchanged, until taken.
    * ``result`` (out): one beat per command after the last write: ``n_tokens = N'`` (kept +
      package), ``n_tail`` (+1 if a package token was added), ``n_kept``, ``error``.

    Package token per channel: ``acc = sum q_n x_n`` over pruned tokens (shift-add, no
    multiplier, ``package_lanes`` = ``G`` lanes a cycle (default
    :func:`heatvit.toksel_config.package_lanes`) with the whole weight: a pruned word
    takes ``lanes / G`` cycles; the lanes and the weight, then the products, are registered
    before the add, so the sums trail the words by two cycles), ``S = sum q_n`` (plain mean if
    S = 0); after each chunk's last token word (and ``PKG_DRAIN`` = 2 cycles) one bit-serial
    restoring divider computes ``sign(acc) * floor((2|acc| + S) / 2S)``
    lane by lane (9 cycles per lane), then the package word is written (one cycle), and the
    next chunk streams.  The lane sums are a ring of registers the adders and the divider read
    at its head (no per-lane multiplexers).  No DSPs.

    ``busy`` is high from an accepted command until its ``result`` has been taken.

    ``runtime_chunks=True`` (the accelerator's SELECT executor, whose token width is a descriptor
    field): ``cmd`` also carries ``chunks`` (token words per token, 1 .. ``cfg.chunks``; ``cfg.dim``
    is then the widest token) and every ``writes`` beat its address's parts ``chunk`` and ``pos``
    (:func:`.layouts.command`, :func:`.layouts.write_beat`) instead of ``addr``.  Otherwise
    ``chunks = cfg.chunks``.

    ``pkg_port=True`` (the SELECT executor, which has the token word it passes in): ``writes``
    has no ``data``; a gather write's data is the ``tokens`` word taken in the same cycle, and
    while ``pkg_write`` is high the beat on offer is the package word, on ``pkg`` (the user's
    one multiplexer picks the data: a ``data`` field driven here would be a second one, and
    its LUTs stay in this module even unread: 128 at 16 lanes, 512 at the board's 64).
    """

    def __init__(self, cfg: TokSelConfig, runtime_chunks: bool = False, package_lanes: int | None = None,
                 pkg_port: bool = False):
        if package_lanes is None:
            package_lanes = default_package_lanes(cfg.lanes)
        check_int("TokenSelectorUnit", "package_lanes", package_lanes, 1, cfg.lanes)
        if cfg.lanes % package_lanes:
            raise ValueError(f"TokenSelectorUnit: package_lanes must divide lanes = {cfg.lanes}, "
                             f"not {package_lanes!r}")
        self.cfg, self.runtime_chunks, self.package_lanes = cfg, runtime_chunks, package_lanes
        self.pkg_port = pkg_port
        extra = {"pkg": Out(layouts.token_word(cfg)), "pkg_write": Out(1)} if pkg_port else {}
        super().__init__({
            **extra,
            "cmd": In(stream.Signature(layouts.command(cfg, chunks=runtime_chunks))),
            "scores": In(stream.Signature(layouts.score(cfg))),
            "tokens": In(stream.Signature(layouts.token_word(cfg))),
            "writes": Out(stream.Signature(layouts.write_beat(cfg, positions=runtime_chunks,
                                                              data_field=not pkg_port))),
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
        # N - 1 and N - n_tail, registered with the command (compares, no subtract, in front
        # of the decisions and the read address)
        last_idx = Signal(signed(cb + 1))
        tail_from = Signal(signed(cb + 1))
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
        last_chunk_i = Signal(signed(cfg.chunks.bit_length() + 1))    # chunks - 1, registered with the command
        last_chunk = Signal()
        m.d.comb += last_chunk.eq(chunk == last_chunk_i)

        # -- per-token decisions -----------------------------------------------------------------
        # A block RAM (one synchronous read port): it reads at idx's next value, so its data
        # is entry idx in every cycle (no LUT-RAM, none of its read multiplexers).  idx is
        # written only through idx_next.
        m.submodules.entries = mem = Memory(shape=layouts.entry(cfg), depth=cfg.max_tokens, init=[],
                                            attrs={"ram_style": "block"})
        wr = mem.write_port()
        rd = mem.read_port()
        idx_next = Signal(cb)
        m.d.comb += [idx_next.eq(idx), rd.addr.eq(idx_next)]
        m.d.sync += idx.eq(idx_next)
        ent = rd.data

        # -- package accumulators (a ring) and the divider -------------------------------------
        # The L lane sums are a ring of registers: a pruned token's word takes L / G steps, each
        # adding G lanes' products to the ring's first G registers and rotating the ring by G
        # (a register's input is its neighbour's output: no multiplexer).  After the word the
        # ring is back in lane order.  The divider reads the ring's head the same way (lane by
        # lane, G at a time) and rotates zeros in, and its quotients go into the ``pkg`` ring.
        G = self.package_lanes
        steps = L // G
        acc = [Signal(signed(cfg.package_acc_bits), name=f"acc{i}") for i in range(L)]
        pkg = [Signal(signed(TOKEN_BITS), name=f"pkg{i}") for i in range(L)]
        step = Signal(range(max(2, steps)))    # which G lanes of the pruned word this cycle
        last_step = Signal()                   # step == steps - 1: a register moved with step
        if steps == 1:
            m.d.comb += last_step.eq(1)
        weight = Signal(cfg.score_bits)
        m.d.comb += weight.eq(Mux(unit_w, 1, ent.weight))
        x_sel = self.tokens.payload.as_value().word_select(step, TOKEN_BITS * G) if steps > 1 \
            else self.tokens.payload.as_value()
        rotate = Signal()                      # the acc ring moves by G
        acc_in = [Signal(signed(cfg.package_acc_bits), name=f"acc_in{j}") for j in range(G)]
        clear = Signal()
        with m.If(clear):
            m.d.sync += [a.eq(0) for a in acc]
        with m.Elif(rotate):
            m.d.sync += [acc[i].eq(acc[i + G]) for i in range(L - G)]
            m.d.sync += [acc[L - G + j].eq(acc_in[j]) for j in range(G)]
        # The products in two register stages (issue 13: the lane select, the product and the
        # accumulate were one cycle, 19 LUT levels at 64 lanes): stage 1 registers the G lanes
        # picked by ``step`` and the token's weight (and 3 weight), stage 2 the products, and
        # the ring adds them in the cycle after (``feed`` -> ``fed1`` -> ``fed2``: the ring
        # moves two cycles after the step, the same steps in the same order).  A chunk's
        # package then waits PKG_DRAIN cycles (DRAIN) for the last products.
        feed = Signal()                        # a pruned word's step this cycle
        fed1, fed2 = Signal(), Signal()
        x_r = Signal(TOKEN_BITS * G)
        w_r = Signal(cfg.score_bits)
        w3_r = Signal(cfg.score_bits + 2)      # 3 weight, shared by the G lanes
        m.d.sync += [fed1.eq(feed), fed2.eq(fed1), x_r.eq(x_sel), w_r.eq(weight),
                     w3_r.eq(weight + (weight << 1))]
        sums = []
        for j in range(G):
            # weight * x (LUT adders, never a DSP), the whole weight in one cycle
            x = x_r[TOKEN_BITS * j:TOKEN_BITS * (j + 1)]
            prod = Signal(signed(TOKEN_BITS + cfg.score_bits + 1), name=f"prod{j}")
            m.d.sync += prod.eq(radix4_product(x, w_r, w3_r))
            sums.append(acc[j] + prod)
        with m.If(fed2):
            m.d.comb += [rotate.eq(1), *[a.eq(v) for a, v in zip(acc_in, sums)]]

        rem = Signal(cfg.package_acc_bits + 2)
        dsh = Signal(cfg.weight_sum_bits + 1 + QUOTIENT_BITS)
        quo = Signal(QUOTIENT_BITS)
        neg = Signal()
        qbit = Signal(range(QUOTIENT_BITS + 1))
        lane_i = Signal(range(L + 1))
        sub = Signal(range(max(2, G)))         # which of the ring's first G registers
        head = Signal(signed(cfg.package_acc_bits))
        m.d.comb += head.eq(Array(acc[:G])[sub] if G > 1 else acc[0])
        mag = Signal(cfg.package_acc_bits)
        m.d.comb += mag.eq(Mux(head < 0, -head, head))
        ge = Signal()
        m.d.comb += ge.eq(rem >= dsh)
        quo_next = Signal(QUOTIENT_BITS)
        m.d.comb += quo_next.eq(Cat(ge, quo))           # shift the next quotient bit in

        if self.pkg_port:
            m.d.comb += [self.pkg[i].eq(pkg[i]) for i in range(L)]

        def finish_chunk():
            m.d.sync += pos.eq(0)
            m.d.comb += idx_next.eq(0)
            if not self.runtime_chunks:
                m.d.sync += base.eq(base + n_out)
            with m.If(last_chunk):
                m.next = "RESULT"
            with m.Else():
                m.d.sync += chunk.eq(chunk + 1)
                m.next = "GATHER"

        wp = self.writes.payload

        def address():
            if self.runtime_chunks:
                m.d.comb += [wp.chunk.eq(chunk), wp.pos.eq(pos)]
            else:
                m.d.comb += wp.addr.eq(base + pos)
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
                    m.d.comb += [clear.eq(1), idx_next.eq(0)]
                    m.d.sync += step.eq(0)
                    if steps > 1:
                        m.d.sync += last_step.eq(0)
                    m.d.sync += [n_tok.eq(c.n_tokens), n_tail.eq(c.n_tail), thr.eq(c.threshold),
                                 last_idx.eq(c.n_tokens - 1), tail_from.eq(c.n_tokens - c.n_tail),
                                 n_kept.eq(0), n_pruned.eq(0), wsum.eq(0), chunk.eq(0),
                                 base.eq(0), pos.eq(0), has_pkg.eq(0), n_out.eq(0),
                                 last_chunk_i.eq((c.chunks if self.runtime_chunks else cfg.chunks) - 1)]
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
                    keep.eq((idx == 0) | (idx >= tail_from) | (q > thr)),
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
                    with m.If(idx == last_idx):
                        m.d.comb += idx_next.eq(0)
                        m.next = "DECIDED"
                    with m.Else():
                        m.d.comb += idx_next.eq(idx + 1)

            with m.State("DECIDED"):
                m.d.sync += [
                    has_pkg.eq(n_pruned != 0),
                    n_out.eq(n_kept + (n_pruned != 0)),
                    unit_w.eq(wsum == 0),
                    divisor.eq(Mux(wsum == 0, n_pruned, wsum)),
                ]
                m.next = "GATHER"

            with m.State("GATHER"):
                last_token = idx == last_idx
                m.d.comb += wp.last.eq(last_chunk & last_token & ~has_pkg)
                if not self.pkg_port:
                    m.d.comb += wp.data.eq(self.tokens.payload)
                address()
                taken = Signal()
                with m.If(ent.keep):
                    m.d.comb += [self.writes.valid.eq(self.tokens.valid),
                                 self.tokens.ready.eq(self.writes.ready),
                                 taken.eq(self.tokens.valid & self.writes.ready)]
                    with m.If(taken):
                        m.d.sync += pos.eq(pos + 1)
                with m.Else():
                    m.d.comb += [self.tokens.ready.eq(last_step),
                                 taken.eq(self.tokens.valid & last_step)]
                    with m.If(self.tokens.valid):
                        m.d.comb += feed.eq(1)
                        m.d.sync += step.eq(Mux(last_step, 0, step + 1))
                        if steps > 1:
                            m.d.sync += last_step.eq(~last_step & (step == steps - 2))
                with m.If(taken):
                    with m.If(last_token):
                        with m.If(has_pkg):
                            m.d.sync += [lane_i.eq(0), sub.eq(0), qbit.eq(0)]
                            m.next = "DRAIN"
                        with m.Else():
                            finish_chunk()
                    with m.Else():
                        m.d.comb += idx_next.eq(idx + 1)

            # The last pruned step's products reach the ring PKG_DRAIN cycles after it was
            # taken (fed1 and fed2 are empty when DIV_LOAD reads the ring's head); always
            # PKG_DRAIN cycles, whether the chunk's last token was pruned or kept.
            with m.State("DRAIN"):
                m.d.sync += qbit.eq(qbit + 1)
                with m.If(qbit == PKG_DRAIN - 1):
                    m.next = "DIV_LOAD"

            # The chunk's package word: rem = 2|acc| + S divided by 2S << 7 .. 2S << 0
            # (restoring, MSB first), lane by lane (9 cycles a lane), then written.
            with m.State("DIV_LOAD"):
                m.d.sync += [rem.eq((mag << 1) + divisor), dsh.eq(divisor << QUOTIENT_BITS),
                             neg.eq(head < 0), quo.eq(0), qbit.eq(0)]
                m.next = "DIV_STEP"
            with m.State("DIV_STEP"):
                with m.If(ge):
                    m.d.sync += rem.eq(rem - dsh)
                m.d.sync += [quo.eq(quo_next), dsh.eq(dsh >> 1), qbit.eq(qbit + 1)]
                with m.If(qbit == QUOTIENT_BITS - 1):
                    m.d.sync += [pkg[i].eq(pkg[i + 1]) for i in range(L - 1)]
                    m.d.sync += [pkg[L - 1].eq(Mux(neg, -quo_next, quo_next)), lane_i.eq(lane_i + 1)]
                    if G > 1:
                        m.d.sync += sub.eq(Mux(sub == G - 1, 0, sub + 1))
                        m.d.comb += rotate.eq(sub == G - 1)     # acc_in = 0: the ring empties
                    else:
                        m.d.comb += rotate.eq(1)
                    with m.If(lane_i == L - 1):
                        m.next = "PKG_WRITE"
                    with m.Else():
                        m.next = "DIV_LOAD"
            with m.State("PKG_WRITE"):
                m.d.comb += [self.writes.valid.eq(1), wp.last.eq(last_chunk)]
                if self.pkg_port:
                    m.d.comb += self.pkg_write.eq(1)
                else:
                    m.d.comb += [wp.data[i].eq(pkg[i]) for i in range(L)]
                address()
                with m.If(self.writes.ready):
                    finish_chunk()

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

