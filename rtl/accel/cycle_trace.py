"""Per-descriptor cycle records to DDR: the sequencer's ``trace`` stream -> DmaRegion.CYCLES.

Each record of :func:`.sequencer.trace_layout` (``index``, ``opcode``, ``start``, ``end``: cycles
since the job's start) is written as 16 bytes, four little-endian uint32 in that order, at
offset ``16 * index`` of the CYCLES region: one ``dma_wr`` request of ``16 / data_bytes`` beats,
all bytes strobed.  A FIFO of ``depth`` records sits in front, so the sequencer waits only when
the DMA is busy for longer than ``depth`` descriptors.  ``idle``: no record buffered or being
sent (the top raises ``irq`` when this and ``DmaPorts.writes_idle`` are high).  ``abort``
(pulse) drops every buffered record at once (reset ``DmaPorts`` with it).
"""

from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from heatvit.config import AcceleratorConfig
from heatvit.validate import check_int

from .ports import DmaRegion, dma_write
from .sequencer import trace_layout

RECORD_BYTES = 16


class CycleTrace(wiring.Component):
    def __init__(self, acc: AcceleratorConfig, depth: int = 4):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"CycleTrace takes an AcceleratorConfig, not {acc!r}")
        check_int("CycleTrace", "depth", depth, 1, 64)
        self.acc, self.depth = acc, depth
        super().__init__({
            "trace": In(stream.Signature(trace_layout())),
            "dma_wr": Out(dma_write(acc.shell.data_width)),
            "abort": In(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        db = self.acc.shell.data_bytes
        beats = RECORD_BYTES // db
        m = Module()
        fifo = SyncFIFOBuffered(width=8 * RECORD_BYTES, depth=self.depth)
        m.submodules.fifo = ResetInserter(self.abort)(fifo)
        m.d.comb += [fifo.w_data.eq(self.trace.payload.as_value()), fifo.w_en.eq(self.trace.valid),
                     self.trace.ready.eq(fifo.w_rdy)]

        rec = fifo.r_data.bit_select(0, 8 * RECORD_BYTES)
        sending = Signal()          # the head's request is accepted; its beats go out
        b = Signal(range(max(beats, 2)))    # a beat index even for one-beat records (never 0 bits wide)
        req, wd = self.dma_wr.req, self.dma_wr.data
        m.d.comb += [
            req.valid.eq(fifo.r_rdy & ~sending),
            req.payload.region.eq(DmaRegion.CYCLES),
            req.payload.offset.eq(rec[:32] * RECORD_BYTES),
            req.payload.beats.eq(beats),
            wd.valid.eq(sending),
            wd.payload.data.eq(rec.word_select(b, 8 * db) if beats > 1 else rec),
            wd.payload.strb.eq(-1),
            self.idle.eq((fifo.level == 0) & ~sending),
        ]
        with m.If(req.valid & req.ready):
            m.d.sync += [sending.eq(1), b.eq(0)]
        with m.If(wd.valid & wd.ready):
            m.d.sync += b.eq(b + 1)
            with m.If(b == beats - 1):
                m.d.sync += sending.eq(0)
                m.d.comb += fifo.r_en.eq(1)
        with m.If(self.abort):
            m.d.sync += sending.eq(0)
        return m
