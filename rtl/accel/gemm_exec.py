"""GEMM executor of the layer controller: one ``Op.GEMM`` descriptor from its decoded fields to
the destination buffer writes (``docs/isa.md``; reference: ``heatvit.compiler.interpret``).

On ``cmd`` (the descriptor, :func:`.descriptor.fields_layout`, shape live-clipped) it runs, all
at once:

* the parameter block: one ``dma_rd`` request (region ``MODEL``, offset ``addr``) for its
  epilogue parts and, with ``WSrc.DDR``, its ``weights`` part; the first :func:`param_beats`
  beats go to ``GemmOutput.params``, the rest are the engine's weight stream
  (:class:`.weight_source.BeatWeights`), taken while the engine computes.  With
  ``acc.weight_beats_per_cycle = P > 1`` the ``weights`` part comes instead through the extra
  port ``wdma`` (:class:`.weight_ports.WeightPorts`, ``P`` beats a cycle, the part striped by
  :func:`heatvit.isa.stripe_weights`), requested with the parameter block and taken once the
  parameter (and bitmap) beats are in;
* the activations: ``src`` reads of the window ``src[src_row + m, src_col + k]``, K tile by K
  tile, into the engine's activation buffer (word ``kt * M + m``: ``R`` lanes of the buffer
  word, lanes past ``live_k`` zero); dense, K tiles ``0 .. KT-1``; sparse, only the K tiles
  the bitmap uses, in the order the descriptors first name them (the tile map's ``order``);
* weights from the ``aux`` buffer (``WSrc.BUF`` / ``BUF_T``,
  :class:`.weight_source.BufferWeights`);
* a block-sparse GEMM (``sparse = 1``): the parameter block's ``bitmap`` beats go to the tile
  map (:class:`.tile_map.TileMap`), which checks their count against ``tiles``
  (``TILE_BITMAP_MISMATCH`` otherwise) and walks them into the engine's tile descriptors; the
  ``weights`` beats hold only the ``tiles`` stored tiles, and the engine (``cmd.sparse``) skips
  the others: they are neither read from DDR nor loaded nor computed;
* ``GemmOutput``: the descriptor first, then the parameter beats and the engine's raw
  accumulator rows; its buffer writes are ``dst``.

The engine (:class:`~heatvit.rtl.gemm.engine.GemmEngine`, ``raw=True``, ``gated=True``) gets
its command at once and computes while the activations load: it issues a row only once its
word is written (``act_ok``: the K tile is complete, or it is the tile being written and the
row is in), so a pass may start as soon as its tile's first row is in.  DDR weights enter its
weight port as they arrive; weights from the ``aux`` buffer, weight tile ``t`` only after
activation tile ``t`` (``t >= KT``: all of them) is in (their timing, as measured).  ``done`` pulses once ``GemmOutput`` is done and every
requested beat has arrived; ``error`` (valid with ``done``) is 0, ``GemmOutput``'s code (a
parameter record out of range: ``CTRL_BAD_PARAMS``), the engine's error code,
``TILE_BITMAP_MISMATCH``, or the top's ``dma_error``.  On an error the executor stops requesting, drains what it requested,
resets its units, then pulses ``done``.  ``abort`` resets everything at once (no ``done``).

Extra port (besides :func:`.ports.executor_members`): ``dma_error`` (in, 8 bits): non-zero
(an :class:`~heatvit.errors.ErrorCode`, e.g. ``AXI_READ_ERROR``) when a read of this
executor failed; the executor then ends at once with that code and the top flushes the DMA,
as after ``abort``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode
from heatvit.isa import Epilogue, WSrc

from ..gemm.engine import GemmEngine
from .descriptor import fields_layout
from .gemm_output import GemmOutput
from .ports import DmaRegion, dma_read, executor_members
from .tile_map import TileMap
from .weight_source import BeatWeights, BufferWeights, _log2


def param_bytes(acc: AcceleratorConfig, d) -> int:
    """Bytes of a GEMM's parameter block before its ``bitmap`` / ``weights`` part (its whole
    block without one)."""
    parts = isa.param_block(acc, d)
    for p in ("bitmap", "weights"):
        if p in parts:
            return parts[p][0]
    return isa.param_block_bytes(acc, d)


def _sum3(m: Module, a, b, c, width: int):
    """``a + b + c`` in ``width`` bits with one carry chain: a carry-save layer (one LUT a bit)
    and one add."""
    x, y, z = (Signal(width) for _ in range(3))
    m.d.comb += [x.eq(a), y.eq(b), z.eq(c)]
    return (x ^ y ^ z) + (((x & y) | (x & z) | (y & z)) << 1)[:width]


class GemmExecutor(wiring.Component):
    """See the module docstring.  ``output``: the ``GemmOutput`` class to instantiate (default
    :class:`heatvit.rtl.accel.gemm_output.GemmOutput`); ``fifo_depth``: buffered ``aux``
    words."""

    def __init__(self, acc: AcceleratorConfig, output=None, fifo_depth: int = 8):
        self.acc = acc
        self.output_cls = output
        self.fifo_depth = fifo_depth
        wide = {} if acc.weight_beats_per_cycle == 1 else {
            "wdma": Out(dma_read(acc.weight_beats_per_cycle * acc.shell.data_width))}
        super().__init__({**executor_members(acc), "dma_error": In(8), **wide})

    def elaborate(self, platform):
        acc, g = self.acc, self.acc.gemm
        R, C = g.rows, g.cols
        A = isa.column_align(acc)
        lr, lc, la = _log2(R), _log2(C), _log2(A)
        D = acc.shell.data_bytes
        if 64 % D:
            raise ValueError(f"shell.data_bytes = {D} must divide the parameter alignment 64")
        ld = _log2(D)
        P = acc.weight_beats_per_cycle
        lw = _log2(P * D)                # the weight stream's beat: P DMA beats (wdma when P > 1)
        m = Module()

        flush = Signal()
        out_cls = self.output_cls or GemmOutput
        engine = GemmEngine(g, raw=True, gated=True)
        output = out_cls(acc)
        wbuf = BufferWeights(acc, self.fifo_depth)
        wddr = BeatWeights(acc, P * acc.shell.data_width)
        tmap = TileMap(acc)
        # the tile map's descriptors wait in a FIFO for the engine
        descs = SyncFIFOBuffered(width=tmap.o.payload.shape().size, depth=4)
        for name, unit in (("engine", engine), ("output", output), ("wbuf", wbuf), ("wddr", wddr),
                           ("tmap", tmap), ("descs", descs)):
            m.submodules[name] = ResetInserter(flush)(unit)
        self.engine, self.output = engine, output

        d = Signal(fields_layout())
        active = Signal()
        draining = Signal()
        code = Signal(8)

        # -- start ----------------------------------------------------------------------------------
        a_run = Signal()                 # the activation load's tile sequence is open
        start = Signal()
        m.d.comb += [self.cmd.ready.eq(~active), start.eq(self.cmd.valid & self.cmd.ready)]
        out_cmd_pend = Signal()
        dma_req_pend = Signal()
        dma_left = Signal(40)            # beats requested and not yet received
        beat = Signal(40)                # beats received
        with m.If(start):
            m.d.sync += [d.eq(self.cmd.payload), active.eq(1), a_run.eq(0), out_cmd_pend.eq(1), dma_req_pend.eq(1),
                         beat.eq(0), code.eq(0), draining.eq(0)]
        start_units = Signal()           # one cycle after start: the latched fields are valid
        start_units2 = Signal()          # two: the derived sizes (grid, the parts' beats, their sums) are
        m.d.sync += [start_units.eq(start), start_units2.eq(start_units)]

        # -- derived sizes ------------------------------------------------------------------------------
        # Two register stages (300 MHz, docs/perf.md "Logic depth"): the tile counts and the
        # parameter beats from the command at ``start`` (valid with ``d``, at ``start_units``);
        # the grid, the parts' beats and their sums (carry-save) from those the cycle after
        # (valid at ``start_units2``, the first cycle the DMA request may leave; the tile map
        # and the DDR weight source latch them then).
        ddr = d.wsrc == WSrc.DDR
        sparse = Signal()
        kt_live = Signal(17)
        p_beats = Signal(32)
        b_beats = Signal(32)             # the bitmap part (sparse)
        kt_full, nt_full = Signal(17), Signal(17)
        w_words = Signal(40)
        w_beats = Signal(40)
        pb_beats = Signal(33)            # p_beats + b_beats
        total = Signal(41)               # the one dma_rd request's beats
        a_total = Signal(40)
        wofs = Signal(len(d.addr))       # P > 1: the weights part's offset
        c = self.cmd.payload
        with m.If(start):
            req = Mux(Cat(*(c.epilogue == e for e in isa.REQUANT_EPILOGUES)).any(),
                      ((c.n * isa.REQUANT_RECORD_BYTES + 63) >> 6) << 6, 0)
            m.d.sync += [
                sparse.eq((c.wsrc == WSrc.DDR) & c.sparse),
                kt_full.eq((c.k + R - 1) >> lr), nt_full.eq((c.n + C - 1) >> lc),
                kt_live.eq((c.live_k + R - 1) >> lr),
                p_beats.eq((req + Mux(c.epilogue != Epilogue.REQ8, 64, 0)) >> ld),
            ]
        grid = Signal(34)
        m.d.comb += grid.eq(kt_full * nt_full)
        # the bitmap part up to the weights: a beat boundary (one weight port) or 64 bytes;
        # ceil(ceil(g / 8) / B) = ceil(g / 8B): one add
        b_c = Signal(32)
        m.d.comb += b_c.eq(Mux(sparse, ((grid + 8 * D - 1) >> (3 + ld)) if P == 1
                               else ((grid + 511) >> 9) << (6 - ld), 0))
        w_words_c = Signal(40)
        w_beats_c = Signal(40)
        m.d.comb += [w_words_c.eq(Mux(sparse, d.tiles, grid) * R),
                     w_beats_c.eq(Mux(ddr, ((w_words_c << lc) + P * D - 1) >> lw, 0))]
        with m.If(start_units):
            m.d.sync += [b_beats.eq(b_c), w_words.eq(w_words_c), w_beats.eq(w_beats_c),
                         a_total.eq(kt_live * d.live_m), pb_beats.eq(p_beats + b_c),
                         total.eq(_sum3(m, p_beats, b_c, w_beats_c if P == 1 else 0, len(total))),
                         wofs.eq(_sum3(m, d.addr, p_beats << ld, b_c << ld, len(wofs)))]

        # -- GemmOutput command ------------------------------------------------------------------------
        m.d.comb += [output.cmd.payload.eq(d), output.cmd.valid.eq(out_cmd_pend & ~draining)]
        with m.If(output.cmd.valid & output.cmd.ready):
            m.d.sync += out_cmd_pend.eq(0)

        # -- parameter block (and DDR weights) ---------------------------------------------------------
        m.d.comb += [
            self.dma_rd.req.payload.region.eq(DmaRegion.MODEL),
            self.dma_rd.req.payload.offset.eq(d.addr),
            self.dma_rd.req.payload.beats.eq(total),
            self.dma_rd.req.valid.eq(dma_req_pend & ~start_units & ~draining),
        ]
        with m.If(self.dma_rd.req.valid & self.dma_rd.req.ready):
            m.d.sync += [dma_req_pend.eq(0), dma_left.eq(total)]
        in_params = beat < p_beats
        in_bitmap = ~in_params & (beat < pb_beats)
        dat = self.dma_rd.data
        if P == 1:
            w_in = dat
        else:
            # P > 1: the weights part through the weight ports (wdma, striped: isa.stripe_weights),
            # requested with the parameter block and taken once its params (and bitmap) are in, as
            # they would follow them on one stream.
            w_in = self.wdma.data
            wreq_pend = Signal()
            w_left = Signal(40)
            with m.If(start_units):
                m.d.sync += wreq_pend.eq(ddr)
            m.d.comb += [
                self.wdma.req.payload.region.eq(DmaRegion.MODEL),
                self.wdma.req.payload.offset.eq(wofs),
                self.wdma.req.payload.beats.eq(w_beats),
                self.wdma.req.valid.eq(wreq_pend & ~draining),
                w_in.ready.eq(active & (draining | (~in_params & ~in_bitmap & wddr.i.ready))),
            ]
            with m.If(self.wdma.req.valid & self.wdma.req.ready):
                m.d.sync += [wreq_pend.eq(0), w_left.eq(w_beats)]
            with m.If(w_in.valid & w_in.ready & (w_left != 0)):
                m.d.sync += w_left.eq(w_left - 1)
        m.d.comb += [
            output.params.payload.eq(dat.payload),
            output.params.valid.eq(dat.valid & in_params & ~out_cmd_pend & ~draining),
            tmap.i.payload.eq(dat.payload),
            tmap.i.valid.eq(dat.valid & in_bitmap & ~draining),
            wddr.i.payload.eq(w_in.payload),
            wddr.i.valid.eq(w_in.valid & ~in_params & ~in_bitmap & ~draining),
            dat.ready.eq(active & Mux(draining, 1, Mux(in_params, output.params.ready & ~out_cmd_pend,
                                                         Mux(in_bitmap, tmap.i.ready, wddr.i.ready)))),
            tmap.start.eq(start_units2 & sparse),
            tmap.kt_n.eq(kt_full), tmap.nt_n.eq(nt_full), tmap.tiles.eq(d.tiles), tmap.beats.eq(b_beats),
            wddr.start.eq(start_units2 & ddr),
            wddr.words.eq(w_words),
        ]
        with m.If(dat.valid & dat.ready & (dma_left != 0)):
            m.d.sync += [beat.eq(beat + 1), dma_left.eq(dma_left - 1)]

        # -- activations: src reads (kt, m), K tile by K tile in load order ------------------------------
        # Load order: dense, K tiles 0 .. KT-1; sparse, the K tiles the tile map's descriptors use,
        # in the order they first name them (tmap.order), the unused ones not at all.  Each tile's
        # kt goes through ``tiles_in`` from its first read to its last word, so the data side
        # writes word kt * M + m of the engine's buffer, and the engine reads a word only once it
        # is written (``act_ok``).
        tiles_in = SyncFIFOBuffered(width=17, depth=4)
        m.submodules.tiles_in = ResetInserter(flush)(tiles_in)
        a_issue = Signal()
        a_kt, a_m = Signal(17), Signal(17)
        a_cnt = Signal(17)               # dense: tiles started
        a_words = Signal(40)             # words received
        a_inflight = Signal(range(1 << 12))
        # the first dense tile starts with the fields (start_units), as the reads always have
        nxt_valid, nxt_kt, take = Signal(), Signal(17), Signal()
        cnt = Signal(17)
        m.d.comb += [
            cnt.eq(Mux(start_units, 0, a_cnt)),
            nxt_valid.eq((a_run | start_units) & Mux(sparse, tmap.order.valid & ~start_units & ~start_units2,
                                                     cnt < kt_live)),
            nxt_kt.eq(Mux(sparse, tmap.order.payload, cnt)),
            tmap.order.ready.eq(sparse & take),
            tiles_in.w_data.eq(nxt_kt), tiles_in.w_en.eq(take),
        ]
        src_cmd = self.src.cmd
        m.d.comb += [
            src_cmd.payload.row.eq(d.src_row + a_m),
            src_cmd.payload.word.eq((d.src_col >> la) + ((a_kt << lr) >> la)),
            src_cmd.valid.eq(a_issue & ~draining),
        ]
        tile_end = Signal()
        m.d.comb += tile_end.eq(src_cmd.valid & src_cmd.ready & (a_m == d.live_m - 1))
        # the next tile starts in the cycle after the last read of this one (no gap), or when idle
        m.d.comb += take.eq(nxt_valid & tiles_in.w_rdy & ~draining & (~a_issue | tile_end))
        with m.If(start_units):
            m.d.sync += [a_run.eq(1), a_issue.eq(0), a_cnt.eq(0), a_m.eq(0), a_words.eq(0)]
        with m.If(src_cmd.valid & src_cmd.ready):
            with m.If(a_m == d.live_m - 1):
                m.d.sync += [a_m.eq(0), a_issue.eq(0)]
            with m.Else():
                m.d.sync += a_m.eq(a_m + 1)
        with m.If(take):
            m.d.sync += [a_issue.eq(1), a_kt.eq(nxt_kt), a_m.eq(0), a_cnt.eq(cnt + 1)]
        src_take = Signal()
        m.d.comb += src_take.eq(self.src.data.valid & self.src.data.ready)
        m.d.sync += a_inflight.eq(a_inflight + (src_cmd.valid & src_cmd.ready) - src_take)

        # the data side walks the same tiles: the head of tiles_in is the arriving word's kt
        r_kt, r_m = Signal(17), Signal(17)
        r_done = Signal(17)              # tiles fully written (dense: tiles 0 .. r_done-1)
        full = Signal(g.max_k_tiles)     # K tiles fully written
        m.d.comb += [r_kt.eq(tiles_in.r_data), tiles_in.r_en.eq(src_take & (r_m == d.live_m - 1))]
        with m.If(src_take):
            with m.If(r_m == d.live_m - 1):
                m.d.sync += [r_m.eq(0), r_done.eq(r_done + 1), full.bit_select(r_kt, 1).eq(1)]
            with m.Else():
                m.d.sync += r_m.eq(r_m + 1)
            m.d.sync += a_words.eq(a_words + 1)
        with m.If(start_units):
            m.d.sync += [r_m.eq(0), r_done.eq(0), full.eq(0)]
        sel = Signal(range(max(2, A // R)))
        m.d.comb += sel.eq(r_kt & (A // R - 1)) if A > R else sel.eq(0)
        row = self.src.data.payload.word_select(sel, 8 * R)
        load = engine.act_load
        m.d.comb += [self.src.data.ready.eq(a_inflight != 0), load.valid.eq(src_take & ~draining),
                     load.payload.addr.eq(r_kt * d.live_m + r_m)]
        for r in range(R):
            m.d.comb += load.payload.data[r].eq(Mux((r_kt << lr) + r < d.live_k, row[8 * r:8 * r + 8], 0))
        want = engine.act_want
        m.d.comb += engine.act_ok.eq(full.bit_select(want.kt, 1)
                                     | (tiles_in.r_rdy & (r_kt == want.kt) & (r_m > want.m)))

        # -- weights from the aux buffer ---------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.aux), wbuf.aux)
        m.d.comb += [
            wbuf.start.eq(start_units & ~ddr),
            wbuf.transpose.eq(d.wsrc == WSrc.BUF_T),
            wbuf.row.eq(d.aux_row), wbuf.word.eq(d.aux_col >> la),
            wbuf.k.eq(d.live_k), wbuf.n.eq(d.live_n),
            wbuf.drop.eq(draining),
        ]
        # Weights from the aux buffer: weight tile t (words t*R ..) enters the engine only once
        # activation tile t is in its buffer (tiles t >= KT: once all are), so the engine computes
        # while the rest loads.  Weights from DDR enter as they come: the engine's row gate
        # (act_ok) holds a pass until its rows are written, so the first pass starts while its
        # activation tile still loads.  A sparse GEMM's descriptors come from the tile map.
        w_count = Signal(40)
        all_loaded = ~start_units & ~a_issue & ~nxt_valid & (a_inflight == 0) & (a_words == a_total)
        gate = Signal()
        m.d.comb += gate.eq(ddr | all_loaded | ((w_count >> lr) < r_done))
        m.d.comb += [descs.w_data.eq(tmap.o.payload), descs.w_en.eq(tmap.o.valid), tmap.o.ready.eq(descs.w_rdy),
                     engine.tiles.payload.eq(descs.r_data), engine.tiles.valid.eq(descs.r_rdy),
                     descs.r_en.eq(engine.tiles.ready)]
        wsrc_o = [wddr.o, wbuf.o]
        for i, o in enumerate(wsrc_o):
            with m.If(ddr if i == 0 else ~ddr):
                m.d.comb += [engine.weights.payload.eq(o.payload), engine.weights.valid.eq(o.valid & gate),
                             o.ready.eq(engine.weights.ready & gate)]
        with m.If(engine.weights.valid & engine.weights.ready):
            m.d.sync += w_count.eq(w_count + 1)
        with m.If(start_units):
            m.d.sync += w_count.eq(0)

        # -- engine command (the activations load meanwhile) ----------------------------------------------
        eng_pend = Signal()
        eng_check = Signal()
        with m.If(start_units):
            m.d.sync += eng_pend.eq(1)
        m.d.comb += [
            engine.cmd.payload.m.eq(d.live_m), engine.cmd.payload.k.eq(d.live_k),
            engine.cmd.payload.n.eq(d.live_n), engine.cmd.payload.sparse.eq(sparse),
            engine.cmd.payload.tiles.eq(d.tiles),
            engine.cmd.valid.eq(eng_pend & ~start_units & ~draining),
        ]
        m.d.sync += eng_check.eq(engine.cmd.valid & engine.cmd.ready)
        with m.If(engine.cmd.valid & engine.cmd.ready):
            m.d.sync += eng_pend.eq(0)

        # -- engine rows -> GemmOutput -> dst --------------------------------------------------------------
        wiring.connect(m, engine.out, output.i)
        wiring.connect(m, output.dst, wiring.flipped(self.dst))
        out_done = Signal()
        m.d.comb += output.abort.eq(flush)
        with m.If(output.done & ~draining):
            m.d.sync += [out_done.eq(1), code.eq(output.error)]
        with m.If(start):
            m.d.sync += out_done.eq(0)

        # -- errors, drain, done ------------------------------------------------------------------------
        with m.If(active & ~draining):
            with m.If(self.dma_error != 0):
                m.d.sync += [code.eq(self.dma_error), draining.eq(1), dma_req_pend.eq(0), dma_left.eq(0)]
                if P > 1:     # the top flushes the weight ports too
                    m.d.sync += [wreq_pend.eq(0), w_left.eq(0)]
            with m.Elif(eng_check & (engine.error != 0)):
                m.d.sync += [code.eq(engine.error), draining.eq(1), dma_req_pend.eq(0)]
            with m.Elif(tmap.checked & tmap.mismatch):
                m.d.sync += [code.eq(ErrorCode.TILE_BITMAP_MISMATCH), draining.eq(1)]
        reads_in = (dma_left == 0) & ~dma_req_pend
        if P > 1:
            reads_in &= (w_left == 0) & ~wreq_pend
        drained = reads_in & (a_inflight == 0) & (wbuf.inflight == 0)
        finish = Signal()
        m.d.comb += finish.eq(active & ~start_units & Mux(draining, drained, out_done & reads_in))
        with m.If(finish):
            m.d.sync += [active.eq(0), draining.eq(0)]
        m.d.comb += [self.done.eq(finish), self.error.eq(Mux(finish, code, 0)),
                     flush.eq(self.abort | (finish & draining))]
        with m.If(draining):
            m.d.sync += [a_issue.eq(0), a_run.eq(0), eng_pend.eq(0), out_cmd_pend.eq(0)]
            if P > 1:         # a weight request not yet issued is dropped
                m.d.sync += wreq_pend.eq(0)

        with m.If(self.abort):
            m.d.sync += [active.eq(0), draining.eq(0), dma_req_pend.eq(0), out_cmd_pend.eq(0), a_issue.eq(0),
                         eng_pend.eq(0), dma_left.eq(0), a_inflight.eq(0), out_done.eq(0), a_run.eq(0)]
            if P > 1:
                m.d.sync += [wreq_pend.eq(0), w_left.eq(0)]
        # dma_wr is never used
        return m
