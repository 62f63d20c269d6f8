"""Moves weight tiles from the weight FIFO into the array's shadow registers, behind the commits."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from . import layouts


class WeightLoader(wiring.Component):
    """Load the next weight tile while the current one streams.

    The array's shadow registers are cut into ``G = cfg.weight_segments`` shift chains of
    ``S = cfg.weight_segment_rows`` rows per column; word ``i`` of a tile goes to segment
    ``i // S`` (``w_seg``).  A tile's load starts ``1 + cfg.weight_load_gap`` enabled cycles after
    the previous tile's commit at the soonest, when the previous load has finished, and only once
    all its ``rows`` words wait in the weight FIFO (``level``), so it then shifts one word per
    enabled cycle without a gap.  Segment j's shifts then always fall after the previous
    commit has passed its last row and before the next commit reaches its first row, so the next
    tile may be committed as soon as its first segment is shifted (``ready``), while the other
    segments are still loading.  A tile therefore costs ``max(M, rows)`` cycles, not the
    ``rows`` shifts plus the whole commit wave.

    * ``weights``: the weight FIFO's read side, words of ``cols`` int8 weights (one reduction
      index k each), ``rows`` words per tile in the order of :func:`heatvit.golden.pack_weights`;
      ``level``: the FIFO's count of words (``weight_fifo_depth > rows``).
    * ``en``: the engine's clock enable; shifts happen only on enabled cycles.
    * ``start``/``tiles``: begin a GEMM of ``tiles`` weight tiles.
    * ``w_word``/``w_shift``/``w_seg``: drive the array's shadow chains (segment ``w_seg``).
    * ``ready``: the next tile may be committed (its first segment is in place, the rest is
      loading or loaded).
    * ``commit``: the streamer injects that tile's commit this cycle.
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        tiles_max = cfg.max_k_tiles * cfg.max_n_tiles
        super().__init__({
            "weights": In(stream.Signature(layouts.weight_word(cfg))),
            "level": In(range(cfg.weight_fifo_depth + 1)),
            "en": In(1),
            "start": In(1),
            "tiles": In(range(tiles_max + 1)),
            "commit": In(1),
            "ready": Out(1),
            "w_word": Out(layouts.weight_word(cfg)),
            "w_shift": Out(1),
            "w_seg": Out(range(cfg.weight_segments)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        R, S, gap_cycles = cfg.rows, cfg.weight_segment_rows, cfg.weight_load_gap
        m = Module()
        tiles_left = Signal.like(self.tiles)
        loading = Signal()                  # words 1 .. R-1 of a tile still to shift
        pending = Signal()                  # a loading/loaded tile not yet committed
        word = Signal(range(R))             # the next word's index in its tile
        gap = Signal(range(max(gap_cycles, 1) + 1))   # >= 1 bit: no zero-width wire in the Verilog

        go = Signal()
        shift = Signal()
        m.d.comb += [
            go.eq(self.en & (tiles_left != 0) & ~loading & ~pending & (gap == 0)
                  & self.weights.valid & (self.level >= R)),
            shift.eq(go | (self.en & loading)),
            self.weights.ready.eq(shift),
            self.w_shift.eq(shift),
            self.w_word.eq(self.weights.payload),
            self.w_seg.eq(word // S),
        ]
        with m.If(shift):
            with m.If(word == R - 1):
                m.d.sync += [word.eq(0), loading.eq(0)]
            with m.Else():
                m.d.sync += [word.eq(word + 1), loading.eq(1)]
            with m.If(word == S - 1):
                m.d.sync += self.ready.eq(1)
        with m.If(go):
            m.d.sync += [pending.eq(1), tiles_left.eq(tiles_left - 1)]

        with m.If(self.commit):
            m.d.sync += [self.ready.eq(0), pending.eq(0), gap.eq(gap_cycles)]
        with m.Elif(self.en & (gap != 0)):
            m.d.sync += gap.eq(gap - 1)

        with m.If(self.start):
            m.d.sync += [tiles_left.eq(self.tiles), word.eq(0), loading.eq(0), pending.eq(0),
                         self.ready.eq(0), gap.eq(0)]
        return m
