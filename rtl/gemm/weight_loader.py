"""Moves weight tiles from the weight stream into the array's shadow registers."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from . import layouts


class WeightLoader(wiring.Component):
    """Fill the shadow weight tile ahead of the array, one tile at a time.

    * ``weights``: stream of words of ``cols`` int8 weights (one reduction index k each),
      ``rows`` words per tile, in the order of :func:`heatvit.golden.pack_weights`.
    * ``start``/``tiles``: begin a GEMM of ``tiles = NT * KT`` weight tiles.
    * ``w_word``/``w_shift``: drive the array's shadow shift chain.
    * ``shadow_full``: a complete tile waits in the shadow registers.
    * ``commit``: the streamer has injected the commit for the waiting tile.  The shadow
      registers may be overwritten only once that commit wave has passed the last PE,
      ``rows + cols - 1`` enabled cycles later.
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        tiles_max = cfg.max_k_tiles * cfg.max_n_tiles
        super().__init__({
            "weights": In(stream.Signature(layouts.weight_word(cfg))),
            "en": In(1),
            "start": In(1),
            "tiles": In(range(tiles_max + 1)),
            "commit": In(1),
            "shadow_full": Out(1),
            "w_word": Out(layouts.weight_word(cfg)),
            "w_shift": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        tiles_left = Signal.like(self.tiles)
        words = Signal(range(cfg.rows + 1))
        wave = Signal(range(cfg.rows + cfg.cols + 1))

        loading = (tiles_left != 0) & ~self.shadow_full & (wave == 0)
        m.d.comb += [
            self.weights.ready.eq(loading),
            self.w_shift.eq(loading & self.weights.valid),
            self.w_word.eq(self.weights.payload),
        ]
        with m.If(self.w_shift):
            with m.If(words == cfg.rows - 1):
                m.d.sync += [words.eq(0), self.shadow_full.eq(1), tiles_left.eq(tiles_left - 1)]
            with m.Else():
                m.d.sync += words.eq(words + 1)

        with m.If(self.commit):
            m.d.sync += [self.shadow_full.eq(0), wave.eq(cfg.rows + cfg.cols - 1)]
        with m.Elif(self.en & (wave != 0)):
            m.d.sync += wave.eq(wave - 1)

        with m.If(self.start):
            m.d.sync += [tiles_left.eq(self.tiles), words.eq(0), self.shadow_full.eq(0)]
        return m
