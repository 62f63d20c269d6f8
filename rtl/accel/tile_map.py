"""A block-sparse GEMM's tile bitmap (``isa`` ``bitmap`` part) -> the engine's tile descriptors.

The bitmap arrives as DMA beats (``data_width`` bits; bit ``i = nt * KT + kt`` of the part is bit
``i % W`` of beat ``i // W``, ``W = data_width``, :func:`heatvit.isa.pack_bitmap`) before the
weights, so the whole bitmap is kept in a memory of ``ceil(max_k_tiles * max_n_tiles / W)``
words: the engine takes one descriptor per pass, long after the beats have gone by.

* ``start`` (pulse) with ``kt_n`` (KT), ``nt_n`` (NT), ``tiles`` (the descriptor's count) and
  ``beats`` (beats of the bitmap part, a multiple of 64 bytes).
* ``i``: those beats (always ready).  Set bits among the first ``KT * NT`` are counted; bits past
  them are ignored.
* ``checked`` (level, from the cycle after the last beat until the next ``start``) and
  ``mismatch`` (with ``checked``: the count is not ``tiles``; nothing is emitted then).
* ``o``: the tile descriptors of :func:`heatvit.golden.tile_descriptors`
  (:func:`heatvit.rtl.gemm.layouts.tile_desc`): per N tile in order, one ``(kt, last, 0)`` per
  set bit, or ``(0, 1, 1)`` for an N tile with none.
* ``order``: every K tile some N tile uses, once, in the order the descriptors first name it
  (the executor loads those activation tiles in this order, and no others).  A second walk of
  the same bits through a second read port, not held back by ``o``.
* ``busy``: a bitmap is being taken or walked.

Each walk takes one bit per cycle (plus two cycles per memory word, the word then shifted out
of a register a bit a cycle) and starts two cycles after the last beat.  The count is a pipeline
(:data:`COUNT_STAGES`: a beat's bits in groups, the groups' sums, the running count):
``checked`` rises ``COUNT_STAGES + 1`` cycles after the last beat (2 with the former one-cycle
count, so a mismatch's error comes 2 cycles later), and the walks emit nothing until it has
passed, which is no later than they could emit anyway, so the descriptors leave when they did
with a one-cycle count (``heatvit.compiler.cycles.sparse_engine_cycles`` is
unchanged).  The first beat may come the cycle after ``start``.  ``KT * NT`` must not exceed
``max_k_tiles * max_n_tiles`` (the sequencer checks K and N).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.config import AcceleratorConfig

from ..gemm import layouts


def _above(x, c: int):
    """``x > c``, or a constant 0 where ``c`` is ``x``'s largest value (no constant comparison
    in the Verilog: Verilator's ``CMPCONST``)."""
    return x > c if c < (1 << len(x)) - 1 else Const(0, 1)


def _log2(x: int) -> int:
    return x.bit_length() - 1


GROUP = 8
"""Bits of a beat counted together in the count's first stage."""

SUMS = 2
"""The count's second stage sums the whole groups in this many parts (the third adds them)."""

COUNT_STAGES = 3
"""The bitmap count's pipeline: a beat's groups, the sum of those in the grid, the running count (the check reads
the count this many cycles after the last beat; the walks start at the cycle they always did,
two cycles after it, and emit nothing until the check has passed)."""


def _tree_sum(xs):
    """``sum(xs)`` as a balanced tree of two-operand adds (no wider than each level needs)."""
    xs = list(xs)
    while len(xs) > 1:
        xs = [xs[i] + xs[i + 1] if i + 1 < len(xs) else xs[i] for i in range(0, len(xs), 2)]
    return xs[0]


class TileMap(wiring.Component):
    """See the module docstring."""

    def __init__(self, acc: AcceleratorConfig):
        self.acc, self.g = acc, acc.gemm
        self.width = acc.shell.data_width
        g = self.g
        bits = self.bits = g.max_k_tiles * g.max_n_tiles
        self.depth = max(2, -(-(-(-bits // 8) // 64) * 64 * 8 // self.width))
        super().__init__({
            "start": In(1),
            "kt_n": In(17), "nt_n": In(17), "tiles": In(layouts.tile_count_bits(g)), "beats": In(16),
            "i": In(stream.Signature(self.width)),
            "checked": Out(1), "mismatch": Out(1),
            "o": Out(stream.Signature(layouts.tile_desc(g))),
            "order": Out(stream.Signature(17)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        W = self.width
        lw = _log2(W)
        m = Module()
        m.submodules.mem = mem = Memory(shape=W, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        # KT - 1 and NT - 1 (-1 for 0, never reached), registered: the walks' last-tile compares
        # and the order ring's end have no subtract in front
        kt_m1, nt_m1 = Signal(signed(18), name="kt_m1"), Signal(signed(18), name="nt_m1")
        tiles = Signal.like(self.tiles)
        beats = Signal(16)
        got = Signal(16)                      # beats taken
        grid = Signal(range(self.bits + 1))   # KT * NT
        count = Signal(range(self.bits + 1))
        taking = Signal()
        walking = Signal()
        ok = Signal()                         # the count is checked and is ``tiles``
        prime = Signal()                      # the cycle after start: full and part from grid
        with m.If(self.start):
            m.d.sync += [kt_m1.eq(self.kt_n - 1), nt_m1.eq(self.nt_n - 1), tiles.eq(self.tiles), beats.eq(self.beats),
                         got.eq(0), grid.eq(self.kt_n * self.nt_n), taking.eq(1),
                         self.checked.eq(0), self.mismatch.eq(0), walking.eq(0), ok.eq(0)]
        m.d.sync += prime.eq(self.start)

        # -- take the beats: store, count the set bits among the first KT * NT ----------------------
        # The first ``KT NT // W`` beats count whole (``full`` of them left), the next one its
        # bits ``b < rem`` (``KT NT % W``, cleared once taken), the rest none.  The count is a
        # pipeline of COUNT_STAGES registered stages.
        beat = self.i.payload
        take = Signal()
        full = Signal(range(self.depth + 1))
        rem = Signal(lw)
        m.d.comb += [self.i.ready.eq(1), take.eq(self.i.valid & taking),
                     wr.addr.eq(got), wr.data.eq(beat), wr.en.eq(take)]
        cur_full, cur_rem = Signal.like(full), Signal.like(rem)
        m.d.comb += [cur_full.eq(Mux(prime, grid >> lw, full)), cur_rem.eq(Mux(prime, grid[:lw], rem))]
        m.d.sync += [full.eq(cur_full), rem.eq(cur_rem)]
        with m.If(take):
            m.d.sync += got.eq(got + 1)
            with m.If(cur_full != 0):
                m.d.sync += full.eq(cur_full - 1)
            with m.Else():
                m.d.sync += rem.eq(0)
        # stage 1: each group's set bits (all of them), whether it counts whole, and the bits of
        # the group the grid ends in (``rem // GROUP``) with the mask of its first ``rem % GROUP``
        lg = _log2(GROUP)
        whole = Signal()
        m.d.comb += whole.eq(cur_full != 0)
        c1_ones = [Signal(range(GROUP + 1), name=f"c1_ones{j}") for j in range(W // GROUP)]
        c1_whole = Signal(W // GROUP)
        c1_part, c1_mask = Signal(GROUP), Signal(GROUP)
        for j, ones in enumerate(c1_ones):
            m.d.sync += [ones.eq(_tree_sum(beat[j * GROUP + i] for i in range(GROUP))),
                         c1_whole[j].eq(take & (whole | _above(cur_rem[lg:], j)))]
        m.d.sync += [c1_part.eq(beat.word_select(cur_rem[lg:], GROUP)),
                     c1_mask.eq(Cat(take & ~whole & _above(cur_rem[:lg], i) for i in range(GROUP)))]
        # stage 2: the whole groups' sums (in SUMS parts) and the end group's masked bits
        per = len(c1_ones) // SUMS
        c2_whole = [Signal(range(per * GROUP + 1), name=f"c2_whole{h}") for h in range(SUMS)]
        c2_part = Signal(range(GROUP + 1))
        for h, part in enumerate(c2_whole):
            m.d.sync += part.eq(_tree_sum(Mux(c1_whole[j], c1_ones[j], 0) for j in range(h * per, (h + 1) * per)))
        m.d.sync += c2_part.eq(_tree_sum((c1_part & c1_mask)[i] for i in range(GROUP)))
        # stage 3: the running count
        m.d.sync += count.eq(_tree_sum([count, *c2_whole, c2_part]))
        # the check: COUNT_STAGES - 1 cycles after the cycle that finds every beat taken
        last = Signal()
        m.d.comb += last.eq(taking & (got == beats) & ~self.start)
        seen_last = Signal(COUNT_STAGES - 1)
        m.d.sync += seen_last.eq(Cat(last, seen_last[:-1]))
        with m.If(last):
            # the walks start now, as if the count were known: nothing leaves before ``ok``
            m.d.sync += [taking.eq(0), walking.eq(1)]
        with m.If(seen_last[-1] & ~self.start):
            m.d.sync += [self.checked.eq(1), self.mismatch.eq(count != tiles), ok.eq(count == tiles)]
            with m.If(count != tiles):
                m.d.sync += walking.eq(0)
        with m.If(self.start):
            m.d.sync += [count.eq(0), c1_whole.eq(0), c1_mask.eq(0), c2_part.eq(0), seen_last.eq(0)] + [p.eq(0) for p in c2_whole]

        # -- walk: (nt, kt) in stream order, one bit per cycle ---------------------------------------
        idx = Signal(range(self.bits + 1))    # nt * KT + kt
        kt, nt = Signal(17), Signal(17)
        have = Signal()                       # word holds word idx >> lw, shifted to bit idx
        word = Signal(W)
        fetched = Signal()                    # a read was issued last cycle
        closing = Signal()                    # the column's bits are done: emit its last descriptor
        pend = Signal()                       # a set bit whose descriptor waits for the next one
        pend_kt = Signal(17)
        m.d.comb += [rd.addr.eq(idx >> lw), rd.en.eq(walking & ~have & ~fetched & ~closing)]
        m.d.sync += fetched.eq(rd.en)
        with m.If(fetched):                   # idx is at a word's first bit
            m.d.sync += [have.eq(1), word.eq(rd.data)]
        bit = word[0]
        o = self.o
        scan = walking & have & ~closing
        # a set bit after a pending one emits the pending one (not last); closing emits the last
        emit = Signal()
        m.d.comb += [
            emit.eq((scan & bit & pend) | (walking & closing)),
            o.payload.kt.eq(Mux(closing & ~pend, 0, pend_kt)),
            o.payload.last.eq(closing),
            o.payload.empty.eq(closing & ~pend),
            o.valid.eq(emit & ok),
        ]
        moved = Signal()
        m.d.comb += moved.eq(Mux(emit, o.valid & o.ready, scan))
        with m.If(moved & scan):
            with m.If(bit):
                m.d.sync += [pend.eq(1), pend_kt.eq(kt)]
            m.d.sync += [idx.eq(idx + 1), word.eq(word >> 1)]
            with m.If(idx[:lw] == W - 1):
                m.d.sync += have.eq(0)
            with m.If(kt == kt_m1):
                m.d.sync += [closing.eq(1), kt.eq(0)]
            with m.Else():
                m.d.sync += kt.eq(kt + 1)
        with m.If(moved & closing):
            m.d.sync += [closing.eq(0), pend.eq(0), nt.eq(nt + 1)]
            with m.If(nt == nt_m1):
                m.d.sync += walking.eq(0)
        with m.If(self.start):
            m.d.sync += [idx.eq(0), kt.eq(0), nt.eq(0), have.eq(0), closing.eq(0), pend.eq(0)]

        # -- the K tiles' first-use order: the same bits in the same order, each new kt once --------
        rd2 = mem.read_port()
        ordering = Signal()
        idx2 = Signal(range(self.bits + 1))
        kt2 = Signal(17)
        have2, fetched2 = Signal(), Signal()
        word2 = Signal(W)
        # the K tiles already named, as a ring of KT bits turning with kt2: seen[0] is kt2's
        # (the bit leaving the head re-enters at KT - 1, ``ring_end`` one-hot)
        L = self.g.max_k_tiles
        seen, ring_end = Signal(L), Signal(L)
        with m.If(prime):
            m.d.sync += ring_end.eq(Cat(kt_m1 == i for i in range(L)))
        with m.If(last):
            m.d.sync += ordering.eq(1)
        with m.If(seen_last[-1] & ~self.start & ((count != tiles) | (count == 0))):
            m.d.sync += ordering.eq(0)
        m.d.comb += [rd2.addr.eq(idx2 >> lw), rd2.en.eq(ordering & ~have2 & ~fetched2)]
        m.d.sync += fetched2.eq(rd2.en)
        with m.If(fetched2):
            m.d.sync += [have2.eq(1), word2.eq(rd2.data)]
        bit2 = word2[0]
        new = Signal()
        m.d.comb += [new.eq(bit2 & ~seen[0]),
                     self.order.payload.eq(kt2), self.order.valid.eq(ordering & have2 & new & ok)]
        with m.If(ordering & have2 & (~new | self.order.valid & self.order.ready)):
            m.d.sync += [idx2.eq(idx2 + 1), word2.eq(word2 >> 1)]
            m.d.sync += seen.eq(Cat(Mux(ring_end[i], seen[0] | new, seen[i + 1] if i + 1 < L else 0)
                                    for i in range(L)))
            with m.If(idx2[:lw] == W - 1):
                m.d.sync += have2.eq(0)
            with m.If(kt2 == kt_m1):
                m.d.sync += kt2.eq(0)
            with m.Else():
                m.d.sync += kt2.eq(kt2 + 1)
            with m.If(idx2 + 1 == grid):
                m.d.sync += ordering.eq(0)
        with m.If(self.start):
            m.d.sync += [idx2.eq(0), kt2.eq(0), have2.eq(0), seen.eq(0), ordering.eq(0)]
        m.d.comb += self.busy.eq(taking | walking | ordering)
        return m
