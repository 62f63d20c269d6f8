"""The GEMM engine: buffers, tile sequencing, the systolic array and the output stage."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig
from heatvit.errors import ErrorCode

from . import layouts
from .accumulator import Accumulator
from .act_streamer import ActivationStreamer
from .delay import DelayLine
from .requantizer import Requantizer
from .systolic_array import SystolicArray
from .weight_loader import WeightLoader


class GemmEngine(wiring.Component):
    """``Y[M, N] = requant(A[M, K] @ W[K, N] + bias)`` on a ``rows`` x ``cols`` systolic array.

    Streams (every one valid/ready; layouts in :mod:`.layouts`, data orders in
    :mod:`heatvit.golden.gemm`):

    * ``act_load`` (in): ``(addr, rows x int8)`` writes into the activation buffer
      (``act_buffer_words`` words).  Always ready.  Load before ``cmd``; do not overwrite a
      running GEMM's words.
    * ``param_load`` (in): ``(channel, bias int32, mult uint16, shift uint6)``.  Always ready.
    * ``cmd`` (in): ``(m, k, n, sparse, tiles)``.  Accepted when idle.  An invalid command is
      dropped, ``error`` holds its :class:`~heatvit.errors.ErrorCode` until the next command
      and no output appears.
    * ``weights`` (in): ``T * rows`` words of ``cols`` int8 weights for the accepted GEMM:
      dense, all ``T = NT * KT`` tiles; sparse, the ``T = tiles`` non-zero tiles only
      (:func:`heatvit.golden.pack_weights` with a bitmap).
    * ``tiles`` (in, sparse GEMMs only): the tile descriptors of
      :func:`heatvit.golden.tile_descriptors` (:func:`.layouts.tile_desc`), one per non-zero
      tile plus one per all-zero N tile; they must agree with ``cmd.tiles``.  Zero tiles are
      not streamed, loaded or computed.
    * ``out`` (out): ``NT * M`` beats of ``cols`` int8 (per-tensor output scale), N tile major;
      ``last`` on the final beat.  Backpressure stalls the whole pipeline; nothing is dropped.

    ``raw=True`` (the layer controller's GEMM executor): no requantizer and no ``param_load``;
    ``out`` carries the raw accumulator rows (:func:`.layouts.raw_beat`: ``acc``, ``cols`` signed
    ``acc_bits`` lanes, lanes of channels ``>= N`` hold sums of zero weights; ``tag``: token
    ``m``, N tile ``nt``, ``last`` on the final row), same order and backpressure.

    ``gated=True`` (the GEMM executor): the activation buffer may fill while the GEMM runs; the
    engine names the next row it reads (``act_want``: K tile ``kt``, token ``m``; word
    ``kt * M + m``) and issues it only once ``act_ok`` says that word has been written (in an
    earlier cycle).  Ungated (default), every word must be in the buffer before ``cmd``.

    ``busy`` is high from an accepted command until its last beat has been taken.
    """

    def __init__(self, cfg: GemmConfig, raw: bool = False, gated: bool = False):
        self.cfg = cfg
        self.raw = raw
        self.gated = gated
        gate = {"act_want": Out(data.StructLayout({"kt": range(cfg.max_k_tiles + 1), "m": unsigned(cfg.m_bits)})),
                "act_ok": In(1)} if gated else {}
        super().__init__({
            **gate,
            "act_load": In(stream.Signature(layouts.act_load(cfg))),
            **({} if raw else {"param_load": In(stream.Signature(layouts.param_load(cfg)))}),
            "cmd": In(stream.Signature(layouts.command(cfg))),
            "weights": In(stream.Signature(layouts.weight_word(cfg))),
            "tiles": In(stream.Signature(layouts.tile_desc(cfg))),
            "out": Out(stream.Signature(layouts.raw_beat(cfg) if raw else layouts.out_beat(cfg))),
            "busy": Out(1),
            "error": Out(4),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        R, C = cfg.rows, cfg.cols
        log_r, log_c = (R - 1).bit_length(), (C - 1).bit_length()
        m = Module()

        # -- activation buffer ------------------------------------------------------------------
        m.submodules.act_mem = act_mem = Memory(shape=layouts.act_word(cfg),
                                                depth=cfg.act_buffer_words, init=[])
        act_wr = act_mem.write_port()
        act_rd = act_mem.read_port()
        m.d.comb += [
            self.act_load.ready.eq(1),
            act_wr.addr.eq(self.act_load.payload.addr),
            act_wr.data.eq(self.act_load.payload.data),
            act_wr.en.eq(self.act_load.valid),
        ]

        # -- datapath ----------------------------------------------------------------------------
        beat_layout = layouts.raw_beat(cfg) if self.raw else layouts.out_beat(cfg)
        m.submodules.out_fifo = out_fifo = SyncFIFOBuffered(
            width=beat_layout.size, depth=cfg.out_fifo_depth)
        m.submodules.weight_fifo = weight_fifo = SyncFIFOBuffered(
            width=layouts.weight_word(cfg).size, depth=cfg.weight_fifo_depth)
        m.submodules.loader = loader = WeightLoader(cfg)
        m.submodules.streamer = streamer = ActivationStreamer(cfg, self.gated)
        m.submodules.array = array = SystolicArray(cfg)
        m.submodules.tag_delay = tag_delay = DelayLine(layouts.row_tag(cfg), cfg.array_latency)
        m.submodules.accumulator = accumulator = Accumulator(cfg)
        units = [loader, streamer, array, tag_delay, accumulator]
        if not self.raw:
            m.submodules.requantizer = requantizer = Requantizer(cfg)
            units.append(requantizer)

        # The whole pipeline advances in lockstep while the output FIFO has room.
        en = Signal()
        m.d.comb += en.eq(out_fifo.w_rdy)
        for unit in units:
            m.d.comb += unit.en.eq(en)

        m.d.comb += [
            weight_fifo.w_data.eq(self.weights.payload),
            weight_fifo.w_en.eq(self.weights.valid),
            self.weights.ready.eq(weight_fifo.w_rdy),
            loader.weights.payload.eq(weight_fifo.r_data),
            loader.weights.valid.eq(weight_fifo.r_rdy),
            weight_fifo.r_en.eq(loader.weights.ready),
            loader.commit.eq(streamer.commit_taken),
            loader.level.eq(weight_fifo.r_level),
            streamer.tile_ready.eq(loader.ready),
            act_rd.addr.eq(streamer.rd_addr),
            act_rd.en.eq(streamer.rd_en),
            streamer.rd_data.eq(act_rd.data),
            array.act.eq(streamer.act),
            array.commit.eq(streamer.commit),
            array.w_word.eq(loader.w_word),
            array.w_shift.eq(loader.w_shift),
            array.w_seg.eq(loader.w_seg),
            tag_delay.i.eq(streamer.tag),
            accumulator.psum.eq(array.psum),
            accumulator.tag.eq(tag_delay.o),
        ]
        wiring.connect(m, wiring.flipped(self.tiles), streamer.desc)
        if self.gated:
            m.d.comb += [self.act_want.kt.eq(streamer.want_kt), self.act_want.m.eq(streamer.want_m),
                         streamer.act_ok.eq(self.act_ok)]

        out_beat = Signal(beat_layout)
        if self.raw:
            out_tag = accumulator.out_tag
            m.d.comb += [
                out_beat.acc.eq(accumulator.out),
                out_beat.tag.m.eq(out_tag.m),
                out_beat.tag.nt.eq(out_tag.nt),
                out_beat.tag.last.eq(out_tag.final),
            ]
        else:
            out_tag = requantizer.out_tag
            m.d.comb += [
                requantizer.acc.eq(accumulator.out),
                requantizer.tag.eq(accumulator.out_tag),
                out_beat.data.eq(requantizer.out),
                out_beat.last.eq(out_tag.final),
            ]
            wiring.connect(m, wiring.flipped(self.param_load), requantizer.params)
        m.d.comb += [
            out_fifo.w_data.eq(out_beat),
            out_fifo.w_en.eq(en & out_tag.valid),
            self.out.payload.eq(out_fifo.r_data),
            self.out.valid.eq(out_fifo.r_rdy),
            out_fifo.r_en.eq(self.out.ready),
        ]

        # -- command decode ----------------------------------------------------------------------
        cmd = self.cmd.payload
        kt = Signal(range(cfg.max_k_tiles + 1))
        nt = Signal(range(cfg.max_n_tiles + 1))
        words = Signal(unsigned(len(kt) + cfg.m_bits))
        grid = Signal(unsigned(len(kt) + len(nt)))
        code = Signal(4)
        m.d.comb += [
            kt.eq((cmd.k + (R - 1)) >> log_r),
            nt.eq((cmd.n + (C - 1)) >> log_c),
            words.eq(kt * cmd.m),
            grid.eq(kt * nt),
        ]
        with m.If((cmd.m == 0) | (cmd.k == 0) | (cmd.n == 0)):
            m.d.comb += code.eq(ErrorCode.ZERO_DIMENSION)
        with m.Elif(cmd.m > cfg.max_m):
            m.d.comb += code.eq(ErrorCode.M_TOO_LARGE)
        with m.Elif(cmd.k > cfg.max_k):
            m.d.comb += code.eq(ErrorCode.K_TOO_LARGE)
        with m.Elif(cmd.n > cfg.max_n):
            m.d.comb += code.eq(ErrorCode.N_TOO_LARGE)
        with m.Elif(words > cfg.act_buffer_words):
            m.d.comb += code.eq(ErrorCode.ACT_BUFFER_OVERFLOW)
        with m.Elif(cmd.sparse & (cmd.tiles > grid)):
            m.d.comb += code.eq(ErrorCode.TILE_COUNT_TOO_LARGE)

        accept = self.cmd.valid & self.cmd.ready
        start = Signal()
        m.d.comb += [
            self.cmd.ready.eq(~self.busy),
            start.eq(accept & (code == 0)),
            loader.start.eq(start),
            loader.tiles.eq(Mux(cmd.sparse, cmd.tiles, grid)),
            streamer.start.eq(start),
            streamer.m.eq(cmd.m),
            streamer.kt.eq(kt),
            streamer.nt.eq(nt),
            streamer.sparse.eq(cmd.sparse),
            streamer.k_last.eq(((cmd.k - 1) & (R - 1)) + 1),
            streamer.n_last.eq(((cmd.n - 1) & (C - 1)) + 1),
        ]
        with m.If(accept):
            m.d.sync += self.error.eq(code)
        with m.If(start):
            m.d.sync += self.busy.eq(1)
        with m.Elif(self.out.valid & self.out.ready
                    & (self.out.payload.tag.last if self.raw else self.out.payload.last)):
            m.d.sync += self.busy.eq(0)
        return m
