"""Walks the (n tile, k tile, token) loop nest and feeds activation rows into the array."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from . import layouts


class ActivationStreamer(wiring.Component):
    """Issue one activation row per enabled cycle, reading the activation buffer.

    Loop order: for nt in N tiles, for kt in the N tile's weight tiles, for m in tokens; each
    (nt, kt) pair uses one stationary weight tile, whose commit rides on its m = 0 row.  A new
    tile starts only once the weight loader says it may be committed (``tile_ready``: its first
    shadow segment is loaded); otherwise rows issue back to back, so a tile costs
    ``max(M, cfg.min_tile_cycles)`` cycles (``max(M, R)``).

    Dense GEMMs walk every kt.  Sparse GEMMs (``sparse`` at ``start``) walk the ``desc`` stream
    (:func:`layouts.tile_desc`), one beat per non-zero tile, taken on the tile's last row: the
    first beat of an N tile starts its accumulation (``first_k``), the one with ``last`` sends it
    on.  An ``empty`` beat (an N tile with no non-zero weight tile) issues M rows of zero
    activations with no commit and no wait for weights: the array adds nothing, and the rows
    carry the N tile through the accumulator and requantizer (bias + requant of 0).

    * ``start`` with ``m``/``kt``/``nt`` (counts), ``k_last``/``n_last`` (valid lanes in the
      last K tile and last N tile) and ``sparse`` begins a GEMM; ``active`` stays high until
      its last row issues.
    * ``rd_addr``/``rd_en``/``rd_data``: the activation buffer's synchronous read port; word
      ``kt * M + m`` (int8 lanes, reduction offset r in lane r).
    * ``act``/``commit``/``tag``: the row for the array, one cycle after its read, lanes past
      K zeroed; ``tag`` is :func:`layouts.row_tag`.
    * ``gated`` (constructor): the activation buffer fills while the GEMM runs.  ``want_kt`` /
      ``want_m`` name the row the streamer issues next (K tile, token); it issues it only with
      ``act_ok`` high (the word is in the buffer: written in an earlier cycle).  An empty pass
      reads nothing and does not wait.  Ungated, every word must be loaded before ``start``.
    """

    def __init__(self, cfg: GemmConfig, gated: bool = False):
        self.cfg = cfg
        self.gated = gated
        gate = {"want_kt": Out(range(cfg.max_k_tiles + 1)), "want_m": Out(unsigned(cfg.m_bits)),
                "act_ok": In(1)} if gated else {}
        super().__init__({
            **gate,
            "en": In(1),
            "start": In(1),
            "m": In(unsigned(cfg.m_bits)),
            "kt": In(range(cfg.max_k_tiles + 1)),
            "nt": In(range(cfg.max_n_tiles + 1)),
            "k_last": In(range(cfg.rows + 1)),
            "n_last": In(range(cfg.cols + 1)),
            "sparse": In(1),
            "desc": In(stream.Signature(layouts.tile_desc(cfg))),
            "active": Out(1),
            "tile_ready": In(1),
            "commit_taken": Out(1),
            "rd_addr": Out(cfg.act_addr_bits),
            "rd_en": Out(1),
            "rd_data": In(layouts.act_word(cfg)),
            "act": Out(layouts.act_word(cfg)),
            "commit": Out(1),
            "tag": Out(layouts.row_tag(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        # Shape of this GEMM, latched at start.
        n_m = Signal.like(self.m)
        n_kt = Signal.like(self.kt)
        n_nt = Signal.like(self.nt)
        k_last = Signal.like(self.k_last)
        n_last = Signal.like(self.n_last)
        sparse = Signal()
        # Loop counters.
        i_m = Signal.like(self.m)
        i_kt = Signal.like(self.kt)     # dense walk only
        i_nt = Signal.like(self.nt)
        col_first = Signal()            # the next tile is its N tile's first
        addr = Signal(cfg.act_addr_bits)

        # The current weight tile: the dense counter or the head of the descriptor stream
        # (held valid and stable until taken on the tile's last row).
        d_kt = Signal.like(self.kt)
        d_last = Signal()
        d_empty = Signal()
        d_valid = Signal()
        desc = self.desc.payload
        m.d.comb += [
            d_kt.eq(Mux(sparse, desc.kt, i_kt)),
            d_last.eq(Mux(sparse, desc.last | desc.empty, i_kt == n_kt - 1)),
            d_empty.eq(sparse & desc.empty),
            d_valid.eq(~sparse | self.desc.valid),
        ]

        first_m = i_m == 0
        last_m = i_m == n_m - 1
        last_nt = i_nt == n_nt - 1
        issue = Signal()
        act_ok = 1
        if self.gated:
            m.d.comb += [self.want_kt.eq(d_kt), self.want_m.eq(i_m)]
            act_ok = d_empty | self.act_ok
        m.d.comb += [
            issue.eq(self.active & self.en & d_valid & (~first_m | d_empty | self.tile_ready) & act_ok),
            self.commit_taken.eq(issue & first_m & ~d_empty),
            self.desc.ready.eq(sparse & issue & last_m),
            # A tile's first row reads word kt * M; the others follow it.
            self.rd_addr.eq(Mux(first_m, d_kt * n_m, addr)),
            self.rd_en.eq(self.en),
        ]

        with m.If(issue):
            m.d.sync += addr.eq(self.rd_addr + 1)
            with m.If(last_m):
                m.d.sync += [i_m.eq(0), col_first.eq(d_last)]
                with m.If(d_last):
                    m.d.sync += [i_kt.eq(0), i_nt.eq(i_nt + 1)]
                    with m.If(last_nt):
                        m.d.sync += self.active.eq(0)
                with m.Else():
                    m.d.sync += i_kt.eq(i_kt + 1)
            with m.Else():
                m.d.sync += i_m.eq(i_m + 1)

        with m.If(self.start):
            m.d.sync += [n_m.eq(self.m), n_kt.eq(self.kt), n_nt.eq(self.nt),
                         k_last.eq(self.k_last), n_last.eq(self.n_last), sparse.eq(self.sparse),
                         i_m.eq(0), i_kt.eq(0), i_nt.eq(0), col_first.eq(1), self.active.eq(1)]

        # Row bookkeeping, registered in step with the buffer's read latency.
        tag = Signal(layouts.row_tag(cfg))
        lanes_k = Signal(range(cfg.rows + 1))
        commit = Signal()
        with m.If(self.en):
            m.d.sync += [
                tag.valid.eq(issue),
                tag.m.eq(i_m),
                tag.nt.eq(i_nt),
                tag.first_k.eq(col_first),
                tag.last_k.eq(d_last),
                tag.lanes.eq(Mux(last_nt, n_last, cfg.cols)),
                tag.final.eq(last_m & d_last & last_nt),
                lanes_k.eq(Mux(issue & ~d_empty, Mux(d_kt == n_kt - 1, k_last, cfg.rows), 0)),
                commit.eq(self.commit_taken),
            ]
        for r in range(cfg.rows):
            m.d.comb += self.act[r].eq(Mux(lanes_k > r, self.rd_data[r], 0))
        m.d.comb += [self.commit.eq(commit), self.tag.eq(tag)]
        return m
