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

Each walk takes one bit per cycle (plus two cycles per memory word) and starts once the count
has been checked.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.config import AcceleratorConfig

from ..gemm import layouts


def _log2(x: int) -> int:
    return x.bit_length() - 1


class TileMap(wiring.Component):
    """See the module docstring."""

    def __init__(self, acc: AcceleratorConfig):
        self.acc, self.g = acc, acc.gemm
        self.width = acc.shell.data_width
        g = self.g
        bits = g.max_k_tiles * g.max_n_tiles
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

        kt_n, nt_n = Signal(17), Signal(17)
        tiles = Signal.like(self.tiles)
        beats = Signal(16)
        got = Signal(16)                      # beats taken
        left = Signal(40)                     # bitmap bits not yet counted
        count = Signal(40)
        grid = Signal(40)                     # KT * NT
        taking = Signal()
        walking = Signal()
        with m.If(self.start):
            m.d.sync += [kt_n.eq(self.kt_n), nt_n.eq(self.nt_n), tiles.eq(self.tiles), beats.eq(self.beats),
                         got.eq(0), left.eq(self.kt_n * self.nt_n), grid.eq(self.kt_n * self.nt_n), count.eq(0), taking.eq(1),
                         self.checked.eq(0), self.mismatch.eq(0), walking.eq(0)]

        # -- take the beats: store, count the set bits among the first KT * NT ----------------------
        beat = self.i.payload
        ones = Signal(range(W + 1))
        m.d.comb += ones.eq(sum(Mux(b < left, beat[b], 0) for b in range(W)))
        m.d.comb += [self.i.ready.eq(1), wr.addr.eq(got), wr.data.eq(beat),
                     wr.en.eq(self.i.valid & taking)]
        with m.If(self.i.valid & taking):
            m.d.sync += [got.eq(got + 1), count.eq(count + ones), left.eq(Mux(left > W, left - W, 0))]
        with m.If(taking & (got == beats) & ~self.start):
            m.d.sync += [taking.eq(0), self.checked.eq(1), self.mismatch.eq(count != tiles),
                         walking.eq(count == tiles)]

        # -- walk: (nt, kt) in stream order, one bit per cycle ---------------------------------------
        idx = Signal(40)                      # nt * KT + kt
        kt, nt = Signal(17), Signal(17)
        have = Signal()                       # rd.data holds word idx >> lw
        fetched = Signal()                    # a read was issued last cycle
        closing = Signal()                    # the column's bits are done: emit its last descriptor
        pend = Signal()                       # a set bit whose descriptor waits for the next one
        pend_kt = Signal(17)
        m.d.comb += [rd.addr.eq(idx >> lw), rd.en.eq(walking & ~have & ~fetched & ~closing)]
        m.d.sync += fetched.eq(rd.en)
        with m.If(fetched):
            m.d.sync += have.eq(1)
        bit = rd.data.bit_select(idx[:lw], 1)
        o = self.o
        scan = walking & have & ~closing
        # a set bit after a pending one emits the pending one (not last); closing emits the last
        emit = Signal()
        m.d.comb += [
            emit.eq((scan & bit & pend) | (walking & closing)),
            o.payload.kt.eq(Mux(closing & ~pend, 0, pend_kt)),
            o.payload.last.eq(closing),
            o.payload.empty.eq(closing & ~pend),
            o.valid.eq(emit),
        ]
        moved = Signal()
        m.d.comb += moved.eq(Mux(emit, o.valid & o.ready, scan))
        with m.If(moved & scan):
            with m.If(bit):
                m.d.sync += [pend.eq(1), pend_kt.eq(kt)]
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx[:lw] == W - 1):
                m.d.sync += have.eq(0)
            with m.If(kt == kt_n - 1):
                m.d.sync += [closing.eq(1), kt.eq(0)]
            with m.Else():
                m.d.sync += kt.eq(kt + 1)
        with m.If(moved & closing):
            m.d.sync += [closing.eq(0), pend.eq(0), nt.eq(nt + 1)]
            with m.If(nt == nt_n - 1):
                m.d.sync += walking.eq(0)
        with m.If(self.start):
            m.d.sync += [idx.eq(0), kt.eq(0), nt.eq(0), have.eq(0), closing.eq(0), pend.eq(0)]

        # -- the K tiles' first-use order: the same bits in the same order, each new kt once --------
        rd2 = mem.read_port()
        ordering = Signal()
        idx2 = Signal(40)
        kt2 = Signal(17)
        have2, fetched2 = Signal(), Signal()
        seen = Signal(self.g.max_k_tiles)
        with m.If(taking & (got == beats) & ~self.start):
            m.d.sync += ordering.eq((count == tiles) & (count != 0))
        m.d.comb += [rd2.addr.eq(idx2 >> lw), rd2.en.eq(ordering & ~have2 & ~fetched2)]
        m.d.sync += fetched2.eq(rd2.en)
        with m.If(fetched2):
            m.d.sync += have2.eq(1)
        bit2 = rd2.data.bit_select(idx2[:lw], 1)
        new = Signal()
        m.d.comb += [new.eq(bit2 & ~seen.bit_select(kt2, 1)),
                     self.order.payload.eq(kt2), self.order.valid.eq(ordering & have2 & new)]
        with m.If(ordering & have2 & (~new | self.order.ready)):
            m.d.sync += idx2.eq(idx2 + 1)
            with m.If(new):
                m.d.sync += seen.bit_select(kt2, 1).eq(1)
            with m.If(idx2[:lw] == W - 1):
                m.d.sync += have2.eq(0)
            with m.If(kt2 == kt_n - 1):
                m.d.sync += kt2.eq(0)
            with m.Else():
                m.d.sync += kt2.eq(kt2 + 1)
            with m.If(idx2 + 1 == grid):
                m.d.sync += ordering.eq(0)
        with m.If(self.start):
            m.d.sync += [idx2.eq(0), kt2.eq(0), have2.eq(0), seen.eq(0), ordering.eq(0)]
        m.d.comb += self.busy.eq(taking | walking | ordering)
        return m
