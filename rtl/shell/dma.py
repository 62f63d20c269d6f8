"""AXI4 master DMA: a burst reader and a burst writer, sharing one AXI4 port.

Both split transfers into INCR bursts of at most ``burst_len`` beats that never cross a 4 KiB
boundary, keep every ``*valid`` asserted with a stable payload until its handshake, and never
make the bus wait on the accelerator:

* the reader requests a burst only when the read FIFO has room for all of it (``rready`` is
  always high);
* the writer issues a write address only when all of that burst's data is already in its FIFO
  (``wvalid`` never drops inside a burst).

Addresses must be aligned to the beat size (the shell refuses unaligned buffers before starting).
"""

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from heatvit.shell_config import AXI_BOUNDARY, ShellConfig

from .axi import BURST_INCR, CACHE_MODIFIABLE_BUFFERABLE
from .gearbox import tagged

BEATS_BITS = 32


def _burst_len(m: Module, cfg: ShellConfig, start, addr, beats, cur, remaining) -> Signal:
    """Beats of the next burst: min(burst_len, remaining, beats left before the 4 KiB line), of
    ``cur`` / ``remaining`` (of ``addr`` / ``beats`` the cycle after ``start``, which loads
    them).  300 MHz (docs/perf.md "Logic depth"): the compares are registered from the cycle
    before and the burst picked from them (one LUT a bit), so the burst follows ``cur`` /
    ``remaining`` a cycle late: a burst is issued with ``valid`` low and sets it, so the cycle
    after an issue issues nothing, and the flags are right by the next one.  No subtraction in
    front of a compare: "the line is nearer than a burst" is the offset's compare with a
    constant, and only then are the beats to the line needed (fewer than ``burst_len``: its
    bits)."""
    page_beats = AXI_BOUNDARY // cfg.data_bytes
    bl = cfg.burst_len
    k = bl.bit_length()
    near = Signal()                     # beats to the line < burst_len
    to_line = Signal(k)                 # the beats to the line, when near
    few = Signal()                      # remaining < burst_len
    fits = Signal()                     # remaining <= the beats to the line (when few and near)
    low = Signal(k)                     # remaining, when few
    a = Signal.like(addr)
    r = Signal.like(remaining)
    m.d.comb += [a.eq(Mux(start, addr, cur)), r.eq(Mux(start, beats, remaining))]
    offset = a[cfg.size_code:12]
    line = Signal(k)
    m.d.comb += line.eq(page_beats % (1 << k) - offset[:k])
    m.d.sync += [near.eq(offset > page_beats - bl) if page_beats >= bl else near.eq(1),
                 to_line.eq(line), few.eq(r < bl), fits.eq(r[:k] <= line), low.eq(r[:k])]
    n = Signal(range(bl + 1))
    m.d.comb += n.eq(Mux(few & (~near | fits), low, Mux(near, to_line, bl)))
    return n


class DmaReader(wiring.Component):
    """Reads ``beats`` beats from ``addr`` and streams them out on ``data``.

    ``start`` (a pulse while ``idle``) begins a transfer.  ``abort`` stops issuing requests and
    discards the data of requests already in flight; ``idle`` rises when none remain.
    ``error`` is set by any non-OKAY ``RRESP`` (sticky until ``clear``, at the next job).
    """

    def __init__(self, cfg: ShellConfig):
        self.cfg = cfg
        super().__init__({
            "ar": Out(wiring.Signature({
                "id": Out(cfg.id_width), "addr": Out(cfg.addr_width), "len": Out(8),
                "valid": Out(1), "ready": In(1)})),
            "r": In(wiring.Signature({
                "data": Out(cfg.data_width), "resp": Out(2), "valid": Out(1), "ready": In(1)})),
            "start": In(1), "addr": In(cfg.addr_width), "beats": In(BEATS_BITS),
            "abort": In(1), "flush": In(1), "clear": In(1),
            "data": Out(stream.Signature(tagged(cfg.data_width))),
            "idle": Out(1), "error": Out(1), "progress": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        depth = cfg.read_fifo_depth
        fifo = SyncFIFOBuffered(width=cfg.data_width, depth=depth)
        m.submodules.fifo = ResetInserter(self.flush)(fifo)

        cur = Signal(cfg.addr_width)
        remaining = Signal(BEATS_BITS)
        reserved = Signal(range(depth + 2))   # beats requested, not yet arrived
        dropping = Signal()
        n = _burst_len(m, cfg, self.start, self.addr, self.beats, cur, remaining)
        room = Signal(range(2 * depth + 2))
        m.d.comb += room.eq(depth - fifo.level - reserved)

        issue = Signal()
        m.d.comb += issue.eq(~self.ar.valid & (remaining != 0) & ~self.abort & ~dropping & (n <= room))
        with m.If(issue):
            m.d.sync += [self.ar.valid.eq(1), self.ar.addr.eq(cur), self.ar.len.eq(n - 1),
                         cur.eq(cur + (n << cfg.size_code)), remaining.eq(remaining - n)]
        with m.If(self.ar.valid & self.ar.ready):
            m.d.sync += self.ar.valid.eq(0)

        beat = Signal()
        m.d.comb += [beat.eq(self.r.valid & self.r.ready), self.r.ready.eq(1)]
        # the issue picks between two sums (no product of it and n in front of an add)
        m.d.sync += reserved.eq(Mux(issue, reserved + n - beat, reserved - beat))
        m.d.comb += [
            fifo.w_data.eq(self.r.data),
            fifo.w_en.eq(beat & ~dropping),
            self.data.payload.data.eq(fifo.r_data),
            self.data.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.data.ready),
            self.idle.eq((remaining == 0) & ~self.ar.valid & (reserved == 0)),
            self.progress.eq(beat | (self.ar.valid & self.ar.ready)),
        ]
        with m.If(beat & (self.r.resp != 0)):
            m.d.sync += self.error.eq(1)
        with m.If(self.abort):
            m.d.sync += [dropping.eq(1), remaining.eq(0)]
        with m.If(self.start):
            m.d.sync += [cur.eq(self.addr), remaining.eq(self.beats), dropping.eq(0)]
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        return m


class DmaWriter(wiring.Component):
    """Writes ``beats`` beats taken from ``data`` to ``addr``.

    The final beat's byte strobes are ``last_strb`` (the rest of the buffer is never written);
    every other beat writes all lanes.  ``abort`` issues no further bursts (a burst whose address
    was sent is completed from its buffered data, as AXI requires); ``idle`` rises when every
    write response is in.  ``error`` is set by any non-OKAY ``BRESP`` (sticky until ``clear``).
    """

    def __init__(self, cfg: ShellConfig):
        self.cfg = cfg
        super().__init__({
            "aw": Out(wiring.Signature({
                "addr": Out(cfg.addr_width), "len": Out(8), "valid": Out(1), "ready": In(1)})),
            "w": Out(wiring.Signature({
                "data": Out(cfg.data_width), "strb": Out(cfg.data_bytes), "last": Out(1),
                "valid": Out(1), "ready": In(1)})),
            "b": In(wiring.Signature({"resp": Out(2), "valid": Out(1), "ready": In(1)})),
            "start": In(1), "addr": In(cfg.addr_width), "beats": In(BEATS_BITS),
            "last_strb": In(cfg.data_bytes), "abort": In(1), "flush": In(1), "clear": In(1),
            "data": In(stream.Signature(tagged(cfg.data_width))),
            "idle": Out(1), "error": Out(1), "progress": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        depth = max(4, 2 * cfg.burst_len)
        fifo = SyncFIFOBuffered(width=cfg.data_width, depth=depth)
        m.submodules.fifo = ResetInserter(self.flush)(fifo)

        cur = Signal(cfg.addr_width)
        remaining = Signal(BEATS_BITS)      # beats not yet covered by a write address
        left = Signal(BEATS_BITS)           # beats not yet sent on W
        in_burst = Signal(range(cfg.burst_len + 1))
        outstanding = Signal(16)            # write responses still due
        n = _burst_len(m, cfg, self.start, self.addr, self.beats, cur, remaining)
        m.d.comb += [
            fifo.w_data.eq(self.data.payload.data),
            fifo.w_en.eq(self.data.valid),
            self.data.ready.eq(fifo.w_rdy),
        ]

        # Address: only when the whole burst is buffered and the previous burst's data is sent.
        aw_ok = Signal()
        m.d.comb += aw_ok.eq(~self.aw.valid & (in_burst == 0) & (remaining != 0) & ~self.abort
                             & (fifo.level >= n))
        aw_done = Signal()
        m.d.comb += aw_done.eq(self.aw.valid & self.aw.ready)
        with m.If(aw_ok):
            m.d.sync += [self.aw.valid.eq(1), self.aw.addr.eq(cur), self.aw.len.eq(n - 1),
                         in_burst.eq(n), cur.eq(cur + (n << cfg.size_code)), remaining.eq(remaining - n)]
        with m.If(aw_done):
            m.d.sync += self.aw.valid.eq(0)

        # Data: the beats of the current burst, straight from the FIFO (never starved).
        w_done = Signal()
        m.d.comb += [
            self.w.valid.eq((in_burst != 0) & fifo.r_rdy),
            self.w.data.eq(fifo.r_data),
            self.w.last.eq(in_burst == 1),
            self.w.strb.eq(-1),
            w_done.eq(self.w.valid & self.w.ready),
            fifo.r_en.eq(w_done),
        ]
        with m.If(left == 1):
            m.d.comb += self.w.strb.eq(self.last_strb)
        with m.If(w_done):
            m.d.sync += [in_burst.eq(in_burst - 1), left.eq(left - 1)]

        b_done = Signal()
        m.d.comb += [self.b.ready.eq(1), b_done.eq(self.b.valid & self.b.ready)]
        m.d.sync += outstanding.eq(outstanding + aw_done - b_done)
        with m.If(b_done & (self.b.resp != 0)):
            m.d.sync += self.error.eq(1)
        m.d.comb += [
            self.idle.eq((remaining == 0) & (in_burst == 0) & ~self.aw.valid & (outstanding == 0)),
            self.progress.eq(aw_done | w_done | b_done),
        ]
        with m.If(self.abort):
            m.d.sync += remaining.eq(0)
        with m.If(self.start):
            m.d.sync += [cur.eq(self.addr), remaining.eq(self.beats), left.eq(self.beats)]
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        return m


def connect_axi(m: Module, ax, rd: DmaReader, wr: DmaWriter, cfg) -> None:
    """Drive the AXI4 master pins ``ax`` from one reader and one writer (ID 0, INCR bursts)."""
    for p in ("aw", "ar"):
        m.d.comb += [getattr(ax, p + "size").eq(cfg.size_code), getattr(ax, p + "burst").eq(BURST_INCR),
                     getattr(ax, p + "cache").eq(CACHE_MODIFIABLE_BUFFERABLE),
                     getattr(ax, p + "id").eq(0), getattr(ax, p + "lock").eq(0),
                     getattr(ax, p + "prot").eq(0), getattr(ax, p + "qos").eq(0)]
    m.d.comb += [
        ax.araddr.eq(rd.ar.addr), ax.arlen.eq(rd.ar.len), ax.arvalid.eq(rd.ar.valid),
        rd.ar.ready.eq(ax.arready),
        rd.r.data.eq(ax.rdata), rd.r.resp.eq(ax.rresp), rd.r.valid.eq(ax.rvalid),
        ax.rready.eq(rd.r.ready),
        ax.awaddr.eq(wr.aw.addr), ax.awlen.eq(wr.aw.len), ax.awvalid.eq(wr.aw.valid),
        wr.aw.ready.eq(ax.awready),
        ax.wdata.eq(wr.w.data), ax.wstrb.eq(wr.w.strb), ax.wlast.eq(wr.w.last),
        ax.wvalid.eq(wr.w.valid), wr.w.ready.eq(ax.wready),
        wr.b.resp.eq(ax.bresp), wr.b.valid.eq(ax.bvalid), ax.bready.eq(wr.b.ready),
    ]
