"""The layer controller's DMA: region bases and arbitration of the executors' DMA clients.

``n_read`` :func:`.ports.dma_read` clients and ``n_write`` :func:`.ports.dma_write` clients
share one :class:`~heatvit.rtl.shell.dma.DmaReader` and one
:class:`~heatvit.rtl.shell.dma.DmaWriter` on one AXI4 master ``m_axi``
(:func:`~heatvit.rtl.shell.axi.axi4_signature`; INCR bursts of at most ``burst_len`` beats, split
at 4 KiB lines by the reader/writer).

* ``base``: one 64-bit byte address per :class:`.ports.DmaRegion` (``base[DmaRegion.MODEL]``
  ...), held by the top's registers.  A request's address is ``base[region] + offset``.
* Arbitration, per direction: one request at a time, served to completion (a read: all its
  beats handed to the client; a write: all its beats taken and all its write addresses
  sent, so its last W beats overlap the next request), round robin over the clients
  with a pending ``req`` (the client after the last one served first).  Read data goes to the
  client that asked, in order.  A write's ``strb`` (one bit per byte) goes to ``WSTRB`` beat by
  beat, so a client writes exactly the bytes it owns.  A write's next request may start while
  earlier write responses are still due.
* Per request, three cycles before its transfer starts (300 MHz: each register to register,
  docs/perf.md "Logic depth"): IDLE takes it and registers its region's base, CHECK registers
  the address (base + offset) and the end (base + offset + bytes, carry-save), VERIFY decides
  the error code from those by compares with constants and starts the reader / writer.
* Errors: ``error`` (:class:`~heatvit.errors.ErrorCode`, sticky, the first one wins until
  ``clear``): ``ADDRESS_OUT_OF_WINDOW`` for a request outside ``[window_base, window_end)`` or
  naming no region, ``UNALIGNED_ADDRESS`` for an address that is not a multiple of the beat size
  (the request is refused: nothing is read or written; a refused read still returns its beats,
  as zeros, and a refused write still takes its beats, so no client hangs), ``AXI_READ_ERROR`` /
  ``AXI_WRITE_ERROR`` for a non-OKAY ``RRESP`` / ``BRESP``.
* ``abort`` (pulse): drop every request in flight (read data still due is discarded; write
  bursts whose address was sent are completed, as AXI requires, nothing more is written); no
  request is accepted until the bus is quiet again (``idle``).  Reset every client with it.
* ``writes_idle``: high when no write is being served and every write burst has its B
  response (raise the job's ``irq`` only then).  ``idle``: both directions quiet.
  ``progress``: a pulse on any AXI or client handshake (watchdog).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode
from heatvit.validate import check_int

from ..shell.axi import axi4_signature
from ..shell.dma import DmaReader, DmaWriter, connect_axi
from . import ports
from .ports import BEATS_BITS, DmaRegion

BASE_BITS = 64

IDLE, CHECK, VERIFY, DATA, DRAIN = range(5)


def _round_robin(m: Module, valids: list, last, name: str):
    """(any, grant index): the first valid client after ``last`` (wrapping)."""
    n = len(valids)
    grant = Signal(range(max(n, 2)), name=f"{name}_grant")
    any_ = Signal(name=f"{name}_any")
    m.d.comb += any_.eq(Cat(*valids).any())
    if n == 1:
        return any_, grant
    with m.Switch(last):
        for s in range(n):
            with m.Case(s):
                order = [(s + 1 + k) % n for k in range(n)]
                with m.If(valids[order[0]]):
                    m.d.comb += grant.eq(order[0])
                for i in order[1:]:
                    with m.Elif(valids[i]):
                        m.d.comb += grant.eq(i)
    return any_, grant


class DmaPorts(wiring.Component):
    """``rd[i]`` / ``wr[i]``: the clients (connect an executor's ``dma_rd`` / ``dma_wr`` to
    them); ``m_axi``: the AXI4 master; ``base``, ``abort``, ``clear``, ``error``, ``idle``,
    ``writes_idle``, ``progress`` as in the module docstring."""

    def __init__(self, acc: AcceleratorConfig, n_read: int, n_write: int):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"DmaPorts takes an AcceleratorConfig, not {acc!r}")
        check_int("DmaPorts", "n_read", n_read, 1, 16)
        check_int("DmaPorts", "n_write", n_write, 1, 16)
        self.acc, self.n_read, self.n_write = acc, n_read, n_write
        s = acc.shell
        super().__init__({
            "base": In(data.ArrayLayout(BASE_BITS, len(DmaRegion))),
            "rd": In(ports.dma_read(s.data_width)).array(n_read),
            "wr": In(ports.dma_write(s.data_width)).array(n_write),
            "m_axi": Out(axi4_signature(s)),
            "abort": In(1), "clear": In(1),
            "error": Out(8), "idle": Out(1), "writes_idle": Out(1), "progress": Out(1),
        })

    def _check(self, m: Module, req, base, state, name: str):
        """(address, error code) of a latched request: 0 = inside the window and aligned.  Two
        register stages (300 MHz, docs/perf.md "Logic depth"): ``base`` (the request's region
        base, registered when the request is taken) plus the offset, and the end (base, offset
        and the bytes, added carry-save), are registered in CHECK; the window and alignment
        compares (against constants) decide the code in VERIFY, from those registers."""
        s = self.acc.shell
        addr = Signal(BASE_BITS + 1, name=f"{name}_addr")
        end = Signal(BASE_BITS + 2, name=f"{name}_end")
        bad_region = Signal(name=f"{name}_bad_region")
        code = Signal(8, name=f"{name}_code")
        with m.If(state == CHECK):
            w = BASE_BITS + 2
            a, b = base.as_unsigned(), req.offset
            c = (req.beats << s.size_code)[:w]
            sum_ = Signal(w, name=f"{name}_csa_sum")
            carry = Signal(w, name=f"{name}_csa_carry")
            m.d.comb += [sum_.eq(a ^ b ^ c), carry.eq(((a & b) | (a & c) | (b & c)) << 1)]
            m.d.sync += [addr.eq(a + b), end.eq(sum_ + carry), bad_region.eq(req.region >= len(DmaRegion))]
        below = (addr < s.window_base) if s.window_base else Const(0, 1)    # (no constant compare)
        off_window = bad_region | below | (end > s.window_end)
        with m.If(off_window):
            m.d.comb += code.eq(ErrorCode.ADDRESS_OUT_OF_WINDOW)
        with m.Elif(addr[:s.size_code] != 0 if s.size_code else Const(0)):
            m.d.comb += code.eq(ErrorCode.UNALIGNED_ADDRESS)
        return addr, code

    def _accept(self, m: Module, clients, any_, grant, req, base, owner, state):
        """Take the granted client's request and its region's base (IDLE -> CHECK)."""
        with m.If(any_ & ~self.abort):
            for i, p in enumerate(clients):
                with m.If(grant == i):
                    m.d.comb += p.req.ready.eq(1)
                    m.d.sync += req.eq(p.req.payload)
                    with m.Switch(p.req.payload.region):
                        for r in DmaRegion:
                            with m.Case(r):
                                m.d.sync += base.eq(self.base[r])
            m.d.sync += [owner.eq(grant), state.eq(CHECK)]

    def elaborate(self, platform):
        s = self.acc.shell
        m = Module()
        m.submodules.reader = rd = DmaReader(s)
        m.submodules.writer = wr = DmaWriter(s)
        connect_axi(m, self.m_axi, rd, wr, s)   # WSTRB: overridden below, per beat
        wr_flush = Signal()
        strb = SyncFIFOBuffered(width=s.data_bytes, depth=max(4, 2 * s.burst_len))  # DmaWriter's depth
        m.submodules.strb = ResetInserter(wr_flush)(strb)
        m.d.comb += [rd.clear.eq(self.clear), wr.clear.eq(self.clear), wr.flush.eq(wr_flush),
                     wr.last_strb.eq(-1)]

        r_checking, w_checking = Signal(), Signal()
        # -- reads -------------------------------------------------------------------------------
        r_req = Signal(ports.dma_request())
        r_owner = Signal(range(max(self.n_read, 2)))
        r_left = Signal(BEATS_BITS)
        r_zero = Signal()
        r_base = Signal(BASE_BITS)
        r_state = Signal(range(5))
        r_addr, r_code = self._check(m, r_req, r_base, r_state, "rd")
        r_any, r_grant = _round_robin(m, [p.req.valid for p in self.rd], r_owner, "rd")
        r_deliver = Signal()
        r_quiet = Signal()
        with m.Switch(r_state):
            with m.Case(IDLE):
                m.d.comb += r_quiet.eq(rd.idle)
                self._accept(m, self.rd, r_any, r_grant, r_req, r_base, r_owner, r_state)
            with m.Case(CHECK):
                m.d.sync += r_state.eq(VERIFY)
            with m.Case(VERIFY):
                m.d.sync += [r_left.eq(r_req.beats), r_zero.eq(r_code != 0)]
                m.d.comb += [rd.addr.eq(r_addr), rd.beats.eq(r_req.beats),
                             rd.start.eq((r_code == 0) & (r_req.beats != 0) & ~self.abort)]
                m.d.comb += r_checking.eq(1)
                m.d.sync += r_state.eq(DATA)
            with m.Case(DATA):
                m.d.comb += r_deliver.eq(r_left != 0)
                with m.If(r_left == 0):
                    m.d.sync += r_state.eq(IDLE)
            with m.Case(DRAIN):
                m.d.comb += [rd.flush.eq(1)]
                with m.If(rd.idle):
                    m.d.sync += r_state.eq(IDLE)
        with m.If(self.abort):
            m.d.comb += [rd.abort.eq(1), rd.flush.eq(1)]
            m.d.sync += [r_left.eq(0), r_state.eq(DRAIN)]
        r_beat = Signal()
        for i, p in enumerate(self.rd):
            with m.If(r_deliver & (r_owner == i)):
                m.d.comb += [p.data.valid.eq(r_zero | rd.data.valid),
                             p.data.payload.eq(rd.data.payload.data & ~r_zero.replicate(s.data_width)),
                             rd.data.ready.eq(~r_zero & p.data.ready),
                             r_beat.eq(p.data.valid & p.data.ready)]
        with m.If(r_beat):
            m.d.sync += r_left.eq(r_left - 1)

        # -- writes ------------------------------------------------------------------------------
        w_req = Signal(ports.dma_request())
        w_owner = Signal(range(max(self.n_write, 2)))
        w_in = Signal(BEATS_BITS)     # beats still to take from the client
        w_cov = Signal(BEATS_BITS)    # beats not yet covered by an accepted write address
        w_sink = Signal()
        w_base = Signal(BASE_BITS)
        w_state = Signal(range(5))
        w_addr, w_code = self._check(m, w_req, w_base, w_state, "wr")
        w_any, w_grant = _round_robin(m, [p.req.valid for p in self.wr], w_owner, "wr")
        w_take = Signal()
        w_quiet = Signal()
        w_sent = Signal()
        m.d.comb += w_sent.eq(wr.w.valid & wr.w.ready)
        with m.Switch(w_state):
            with m.Case(IDLE):
                m.d.comb += w_quiet.eq(wr.idle)
                self._accept(m, self.wr, w_any, w_grant, w_req, w_base, w_owner, w_state)
            with m.Case(CHECK):
                m.d.sync += w_state.eq(VERIFY)
            with m.Case(VERIFY):
                bad = w_code != 0
                m.d.sync += [w_in.eq(w_req.beats), w_cov.eq(Mux(bad, 0, w_req.beats)), w_sink.eq(bad)]
                m.d.comb += [wr.addr.eq(w_addr), wr.beats.eq(w_req.beats),
                             wr.start.eq(~bad & (w_req.beats != 0) & ~self.abort)]
                m.d.comb += w_checking.eq(1)
                m.d.sync += w_state.eq(DATA)
            with m.Case(DATA):
                m.d.comb += w_take.eq(w_in != 0)
                # every address sent: the next request may start while this one's W beats
                # still leave the writer's FIFO (its next address waits for them)
                with m.If((w_in == 0) & (w_cov == 0)):
                    m.d.sync += w_state.eq(IDLE)
            with m.Case(DRAIN):
                m.d.comb += wr.abort.eq(1)
                with m.If(wr.idle):
                    m.d.comb += wr_flush.eq(1)
                    m.d.sync += w_state.eq(IDLE)
        with m.If(self.abort):
            m.d.comb += wr.abort.eq(1)
            m.d.sync += [w_in.eq(0), w_cov.eq(0), w_state.eq(DRAIN)]
        w_beat = Signal()
        for i, p in enumerate(self.wr):
            with m.If(w_take & (w_owner == i)):
                m.d.comb += [
                    wr.data.payload.data.eq(p.data.payload.data),
                    wr.data.payload.last.eq(w_in == 1),      # the request's last beat (not read)
                    wr.data.valid.eq(~w_sink & p.data.valid & strb.w_rdy),
                    p.data.ready.eq(w_sink | (wr.data.ready & strb.w_rdy)),
                    w_beat.eq(p.data.valid & p.data.ready),
                    strb.w_data.eq(p.data.payload.strb),
                    strb.w_en.eq(~w_sink & p.data.valid & wr.data.ready & strb.w_rdy),
                ]
        with m.If(w_beat):
            m.d.sync += w_in.eq(w_in - 1)
        with m.If(wr.aw.valid & wr.aw.ready & (w_cov != 0)):
            m.d.sync += w_cov.eq(w_cov - (wr.aw.len + 1))
        m.d.comb += [self.m_axi.wstrb.eq(strb.r_data), strb.r_en.eq(w_sent)]

        # -- errors, status ----------------------------------------------------------------------
        with m.If(self.error == 0):
            with m.If(r_checking & (r_code != 0)):
                m.d.sync += self.error.eq(r_code)
            with m.Elif(w_checking & (w_code != 0)):
                m.d.sync += self.error.eq(w_code)
            with m.Elif(rd.error):
                m.d.sync += self.error.eq(ErrorCode.AXI_READ_ERROR)
            with m.Elif(wr.error):
                m.d.sync += self.error.eq(ErrorCode.AXI_WRITE_ERROR)
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        m.d.comb += [
            # quiet once the error code of the last response is in ``error``
            self.writes_idle.eq(w_quiet & ~(wr.error & (self.error == 0))),
            self.idle.eq(r_quiet & w_quiet & ~((rd.error | wr.error) & (self.error == 0))),
            self.progress.eq(rd.progress | wr.progress | r_beat | w_beat),
        ]
        return m


