"""The GEMM engine's weight stream from a token buffer (``WSrc.BUF`` / ``WSrc.BUF_T``) or from
DDR beats (``WSrc.DDR``), in the order of :func:`heatvit.golden.pack_weights`.

Weight word ``(nt, kt, r)`` (``rows`` words per tile, tiles N-tile major) holds ``W[kt*R + r,
nt*C + c]`` in lane ``c`` (signed int8, :func:`heatvit.rtl.gemm.layouts.weight_word`).
Positions past the live ``K`` / ``N`` are zero, as ``pack_weights`` pads them; the buffer is
never read outside the descriptor's window.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig

from ..gemm import layouts
from .ports import buffer_read
from .token_buffer import ROW_BITS, WORD_BITS


def _log2(x: int) -> int:
    if x < 1 or x & (x - 1):
        raise ValueError(f"{x} must be a power of two")
    return x.bit_length() - 1


def _at(tile, bits: int, j):
    """``(tile << bits) + j`` for ``j < 2**bits`` (an int or a counter that stays below it): the
    two side by side, no add."""
    if isinstance(j, int):
        return Cat(Const(j, bits), tile) if bits else tile
    return Cat(j[:bits], tile) if bits else tile


class BufferWeights(wiring.Component):
    """Weights read from the ``aux`` token buffer through a ``buffer_read`` port.

    * ``start`` (pulse, idle only) with ``transpose``, ``row`` (``aux_row``), ``word``
      (``aux_col // column_align``), ``k``, ``n`` (the live shape, >= 1) begins a stream.
      ``transpose`` = 0 (``WSrc.BUF``): ``W[k, n] = aux[row + k, col + n]``, one buffer read per
      weight word; ``transpose`` = 1 (``WSrc.BUF_T``): ``W[k, n] = aux[row + n, col + k]``, per
      tile ``C`` buffer reads (one per output channel, ``R`` lanes each) transposed into ``R``
      weight words.
    * ``aux``: buffer reads; at most ``depth`` words are requested and not yet consumed, all of
      which fit the internal FIFO, so ``aux.data`` is ready whenever a read is outstanding (the
      top may share one buffer between ``src`` and ``aux`` without a deadlock).
    * ``o``: the weight words.
    * ``drop`` (level): stop requesting, discard returned words and the output.
    * ``busy``: a stream is under way; ``inflight``: buffer reads requested and not returned.
    """

    def __init__(self, acc: AcceleratorConfig, depth: int = 8):
        self.acc, self.g = acc, acc.gemm
        self.depth = depth
        self.lanes = isa.column_align(acc)
        super().__init__({
            "start": In(1), "transpose": In(1),
            "row": In(ROW_BITS), "word": In(WORD_BITS),
            "k": In(16), "n": In(16),
            "aux": Out(buffer_read(self.lanes)),
            "o": Out(stream.Signature(layouts.weight_word(acc.gemm))),
            "drop": In(1),
            "busy": Out(1),
            "inflight": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        g, A = self.g, self.lanes
        R, C = g.rows, g.cols
        lr, lc, la = _log2(R), _log2(C), _log2(A)
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8 * A, depth=self.depth)

        tr = Signal()
        row0 = Signal(ROW_BITS)
        word0 = Signal(WORD_BITS)
        k, n = Signal(16), Signal(16)
        kt_last, nt_last = Signal(17), Signal(17)       # the last K / N tile: KT - 1, NT - 1
        with m.If(self.start):
            m.d.sync += [tr.eq(self.transpose), row0.eq(self.row), word0.eq(self.word),
                         k.eq(self.k), n.eq(self.n),
                         kt_last.eq((self.k - 1) >> lr), nt_last.eq((self.n - 1) >> lc)]

        # -- requests: (nt, kt, j) with j < R (BUF) or j < C (BUF_T); reads past K / N skipped ----
        i_nt, i_kt, i_j = Signal(17), Signal(17), Signal(17)
        issuing = Signal()
        pending = Signal(range(self.depth + 1))     # requested, not yet popped from the FIFO
        j_end = Mux(tr, C, R)
        # tile * size + j with j < size: the bits side by side, no add (300 MHz, docs/perf.md)
        i_col, i_row = _at(i_nt, lc, i_j), _at(i_kt, lr, i_j)
        need = Signal()                  # i_col < n (BUF_T) / i_row < k (BUF): as c_need below
        i_j1 = Signal(17)
        m.d.comb += i_j1.eq(i_j + 1)
        cmd = self.aux.cmd.payload
        m.d.comb += [
            cmd.row.eq(row0 + Mux(tr, i_col, i_row)),
            # BUF: the word holding columns nt*C ..; BUF_T: the word holding columns kt*R ..
            cmd.word.eq(word0 + Mux(tr, (i_kt << lr) >> la, (i_nt << lc) >> la)),
            self.aux.cmd.valid.eq(issuing & need & ~self.drop & (pending < self.depth)),
        ]
        advance = issuing & ~self.drop & (~need | self.aux.cmd.ready & self.aux.cmd.valid)
        with m.If(advance):
            m.d.sync += need.eq(Mux(tr, _at(i_nt, lc, i_j1) < n, _at(i_kt, lr, i_j1) < k))
            with m.If(i_j == j_end - 1):
                m.d.sync += [i_j.eq(0), need.eq(1)]
                with m.If(i_kt == kt_last):
                    m.d.sync += [i_kt.eq(0), i_nt.eq(i_nt + 1)]
                    with m.If(i_nt == nt_last):
                        m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += i_kt.eq(i_kt + 1)
            with m.Else():
                m.d.sync += i_j.eq(i_j + 1)

        # -- returned words: always taken into the FIFO (room for every pending request) ----------
        returned = Signal()
        m.d.comb += [self.aux.data.ready.eq(self.inflight != 0),
                     returned.eq(self.aux.data.valid & self.aux.data.ready),
                     fifo.w_data.eq(self.aux.data.payload), fifo.w_en.eq(returned & ~self.drop)]
        issued = self.aux.cmd.valid & self.aux.cmd.ready
        inflight = self.inflight
        m.d.sync += inflight.eq(inflight + issued - returned)

        # -- consumer: (nt, kt, j); BUF: one word per j; BUF_T: collect C rows, then emit R words ---
        c_nt, c_kt, c_j = Signal(17), Signal(17), Signal(17)
        consuming = Signal()
        emit = Signal()                  # BUF_T: the tile block is full, emitting its R words
        block = Signal(layouts.act_word(g).size * C)   # C rows of R int8 (BUF_T)
        c_need = Signal()
        need_r = Signal()
        c_row = _at(c_kt, lr, c_j)     # j < R (BUF)
        # c_need = column (c_nt << lc) + c_j < n (BUF_T) / c_row < k (BUF) as a register, decided a step ahead
        # (300 MHz, docs/perf.md): j = 0 of a tile always counts (kt < KT, nt < NT), j + 1 is
        # compared while j is out.
        c_j1 = Signal(17)
        m.d.comb += c_j1.eq(c_j + 1)
        need_next = Mux(tr, _at(c_nt, lc, c_j1) < n, _at(c_kt, lr, c_j1) < k)
        m.d.comb += c_need.eq(need_r)
        head = fifo.r_data
        w = self.o.payload
        pop = Signal()
        step = Signal()                  # advance (nt, kt, j) of the consumer
        # BUF: lanes nt*C .. of the word; channels past N zero.
        bsel = Signal(range(max(2, A // C)))
        m.d.comb += bsel.eq(c_nt & (A // C - 1)) if A > C else bsel.eq(0)
        buf_word = head.word_select(bsel, 8 * C)
        # BUF_T: lanes kt*R .. of the word (R int8), into row j of the block.
        tsel = Signal(range(max(2, A // R)))
        m.d.comb += tsel.eq(c_kt & (A // R - 1)) if A > R else tsel.eq(0)
        t_row = head.word_select(tsel, 8 * R)

        with m.If(~tr):
            for c in range(C):
                m.d.comb += w[c].eq(Mux(c_need & (_at(c_nt, lc, c) < n), buf_word[8 * c:8 * c + 8], 0))
            m.d.comb += [self.o.valid.eq(consuming & (~c_need | fifo.r_rdy)),
                         pop.eq(c_need & self.o.ready & self.o.valid),
                         step.eq(self.o.valid & self.o.ready)]
        with m.Else():
            for c in range(C):
                lane = block[8 * (R * c) + 0:8 * (R * c + R)].word_select(c_j[:max(1, lr)] if R > 1 else 0, 8)
                m.d.comb += w[c].eq(Mux(c_row < k, lane, 0))
            m.d.comb += [self.o.valid.eq(consuming & emit),
                         pop.eq(consuming & ~emit & c_need & fifo.r_rdy),
                         step.eq(Mux(emit, self.o.valid & self.o.ready, consuming & (~c_need | fifo.r_rdy)))]
            with m.If(consuming & ~emit & step):
                for c in range(C):
                    with m.If(c_j[:max(1, lc)] == c if C > 1 else 1):      # j < C here
                        m.d.sync += block[8 * R * c:8 * R * (c + 1)].eq(Mux(c_need, t_row, 0))
        m.d.comb += fifo.r_en.eq(pop | (self.drop & fifo.r_rdy))
        m.d.sync += pending.eq(pending + issued - fifo.r_en)

        c_end = Mux(tr & ~emit, C, R)
        with m.If(step & ~self.drop):
            m.d.sync += need_r.eq(need_next)
            with m.If(c_j == c_end - 1):
                m.d.sync += [c_j.eq(0), need_r.eq(1)]
                with m.If(tr & ~emit):
                    m.d.sync += emit.eq(1)
                with m.Else():
                    m.d.sync += emit.eq(0)
                    with m.If(c_kt == kt_last):
                        m.d.sync += [c_kt.eq(0), c_nt.eq(c_nt + 1)]
                        with m.If(c_nt == nt_last):
                            m.d.sync += consuming.eq(0)
                    with m.Else():
                        m.d.sync += c_kt.eq(c_kt + 1)
            with m.Else():
                m.d.sync += c_j.eq(c_j + 1)
        with m.If(self.drop):
            m.d.sync += [issuing.eq(0), consuming.eq(0)]

        with m.If(self.start):
            m.d.sync += [i_nt.eq(0), i_kt.eq(0), i_j.eq(0), issuing.eq(1), need.eq(1),
                         c_nt.eq(0), c_kt.eq(0), c_j.eq(0), consuming.eq(1), emit.eq(0), need_r.eq(1)]
        m.d.comb += self.busy.eq(issuing | consuming)
        return m


class BeatWeights(wiring.Component):
    """Weight words unpacked from DMA beats (``width`` bits, default ``shell.data_width``; byte
    ``i`` at bits ``8i``): the ``weights`` part of a parameter block, ``C`` int8 per word in byte
    order.  The wide weight path (:mod:`.weight_ports`) gives ``weight_beats_per_cycle`` beats at
    once: ``width = weight_beats_per_cycle * data_width``.

    * ``start`` (pulse) with ``words`` (count of weight words to emit, ``NT * KT * R``).
    * ``i``: the beats, exactly ``ceil(words * C / data_bytes)``; the bytes past the last word
      in the final beat are dropped.
    * ``o``: the weight words.

    Without stalls it takes a beat a cycle when ``C > D`` (``C / D`` cycles a word, the next
    word's first beat taken as the full word leaves) and emits a word a cycle when ``C <= D``.
    """

    def __init__(self, acc: AcceleratorConfig, width: int | None = None):
        self.acc, self.g = acc, acc.gemm
        self.width = acc.shell.data_width if width is None else width
        super().__init__({
            "start": In(1), "words": In(32),
            "i": In(stream.Signature(self.width)),
            "o": Out(stream.Signature(layouts.weight_word(acc.gemm))),
        })

    def elaborate(self, platform):
        C, D = self.g.cols, self.width // 8
        m = Module()
        left = Signal(32)
        with m.If(self.start):
            m.d.sync += left.eq(self.words)
        if D >= C:
            per = D // C
            idx = Signal(range(max(2, per)))
            m.d.comb += [self.o.payload.eq(self.i.payload.word_select(idx, 8 * C) if per > 1 else self.i.payload),
                         self.o.valid.eq(self.i.valid & (left != 0)),
                         self.i.ready.eq(self.o.ready & (left != 0) & ((idx == per - 1) | (left == 1)))]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += left.eq(left - 1)
                m.d.sync += idx.eq(Mux((idx == per - 1) | (left == 1), 0, idx + 1))
            with m.If(self.start):
                m.d.sync += idx.eq(0)
        else:
            per = C // D
            acc = Signal(8 * C)
            got = Signal(range(per + 1))
            full = got == per
            # A beat is taken in the cycle the full word leaves (it starts the next word: ``got``
            # becomes 1), so a word costs C / D cycles; never past the last word, so the next
            # GEMM's beats stay in the DMA until its ``start``.
            m.d.comb += [self.o.payload.eq(acc), self.o.valid.eq(full & (left != 0)),
                         self.i.ready.eq((left != 0) & (~full | (self.o.ready & (left != 1))))]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += [left.eq(left - 1), got.eq(0)]
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [acc.eq((acc >> (8 * D)) | (self.i.payload << (8 * (C - D)))),
                             got.eq(Mux(full, 1, got + 1))]
            with m.If(self.start):
                m.d.sync += got.eq(0)
        return m
