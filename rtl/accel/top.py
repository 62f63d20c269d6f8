"""The whole accelerator: one ``CTRL.start`` runs a whole program (docs/isa.md) from DDR.

``Accelerator(acc)`` has the shell's ports: ``s_axi`` (AXI4-Lite slave, the register map of
:mod:`.regmap`), ``m_axi`` (AXI4 master, ``acc.shell``) and ``irq`` (level: the last job is
done).  Inside:

* :class:`.sequencer.Sequencer` fetches descriptor ``i`` through the DMA (region ``PROGRAM``,
  32 bytes at ``32 i``), checks it, and hands runnable ones to the executor of their opcode;
* the executors (:data:`EXECUTORS`: opcode -> class, each with
  :func:`.ports.executor_members`); the active one's ``src``/``aux``/``dst`` go through
  :class:`.crossbar.BufferCrossbar` to the :class:`.token_buffer.TokenBuffers` the descriptor
  names, its ``dma_rd``/``dma_wr`` to :class:`.dma_ports.DmaPorts` (region bases from the
  registers).  An opcode whose executor is not built in answers ``CTRL_UNSUPPORTED_OP``;
* with ``acc.weight_beats_per_cycle = P > 1``: ``m_axi_w[0 .. P-1]`` (AXI4 masters, reads only,
  one AXI HP port each), :class:`.weight_ports.WeightPorts`, the GEMM executor's ``wdma``: its
  DDR weights at ``P`` beats a cycle.  Their errors, idle and progress count as the DMA's;
* per-descriptor cycle records (sequencer ``trace``) go to the ``CYCLES`` region through
  :class:`.cycle_trace.CycleTrace`, 16 bytes at ``16 i``: index, opcode, start, end (uint32 LE;
  cycles since start);
* the watchdog's ``abort`` resets the executors, flushes the crossbar and the DMA;
* ``done`` / ``irq`` rise only once the program has ended (or failed) and every DMA write of
  the job has its response.  ``ERROR``: a DMA error (AXI error, address outside the window)
  if any, else the program's first failing descriptor's code (``ERROR_INDEX``: its index),
  else ``START_WHILE_BUSY`` if a start came while busy.  The next start works after any error.
"""

from __future__ import annotations

import importlib

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode

from ..shell.axi import axi4_signature, axi_lite_signature
from ..shell.regmap import geometry
from ..shell.regs import AxiLiteRegisters
from . import ports, regmap
from .add_unit import AddExecutor
from .crossbar import BufferCrossbar
from .cycle_trace import CycleTrace
from .dma_ports import DmaPorts
from .ports import DmaRegion
from .sequencer import Sequencer
from .token_buffer import TokenBuffers
from .weight_ports import WeightPorts

EXECUTORS: dict[isa.Op, tuple[str, str]] = {
    isa.Op.ADD: ("heatvit.rtl.accel.top", "AddOp"),
    isa.Op.LOAD: ("heatvit.rtl.accel.io_exec", "LoadExecutor"),
    isa.Op.STORE: ("heatvit.rtl.accel.io_exec", "StoreExecutor"),
    isa.Op.COPY: ("heatvit.rtl.accel.selector_exec", "SelectorExecutor"),
    isa.Op.GEMM: ("heatvit.rtl.accel.gemm_exec", "GemmExecutor"),
    isa.Op.LAYERNORM: ("heatvit.rtl.accel.layernorm_exec", "LayerNormExecutor"),
    isa.Op.SELECT: ("heatvit.rtl.accel.selector_exec", "SelectorExecutor"),
    isa.Op.MEAN: ("heatvit.rtl.accel.selector_exec", "SelectorExecutor"),
}
"""Opcode -> (module, class) of its executor; one instance per class (a class may serve several
opcodes).  A class that cannot be imported is left out (:func:`executor_classes`)."""


def executor_classes(table: dict | None = None) -> tuple[dict[isa.Op, type], dict[isa.Op, str]]:
    """``(available, missing)``: the executor class of every opcode whose module imports, and
    for the others why not."""
    available, missing = {}, {}
    for op, (mod, cls) in (EXECUTORS if table is None else table).items():
        try:
            available[op] = getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError) as e:
            missing[op] = f"{mod}.{cls}: {e}"
    return available, missing


class AddOp(wiring.Component):
    """The ADD executor (:class:`.add_unit.AddExecutor`) on :func:`.ports.executor_members`:
    columns become word indices (multiples of ``isa.column_align``), rows and width the
    descriptor's live shape; ``abort`` resets it.  Never raises an error (the sequencer's
    checks cover every ADD field)."""

    def __init__(self, acc: AcceleratorConfig):
        self.acc, self.lanes = acc, isa.column_align(acc)
        super().__init__(ports.executor_members(acc))

    def elaborate(self, platform):
        m = Module()
        L = self.lanes
        m.submodules.add = add = ResetInserter(self.abort)(AddExecutor(L))
        f = self.cmd.payload
        word = (lambda col: col >> (L.bit_length() - 1)) if L & (L - 1) == 0 else (lambda col: col // L)
        c = add.cmd.payload
        m.d.comb += [
            c.src_row.eq(f.src_row), c.src_word.eq(word(f.src_col)),
            c.aux_row.eq(f.aux_row), c.aux_word.eq(word(f.aux_col)),
            c.dst_row.eq(f.dst_row), c.dst_word.eq(word(f.dst_col)),
            c.m.eq(f.live_m), c.n.eq(f.live_n),
            c.mult_a.eq(f.add_mult_a), c.mult_b.eq(f.add_mult_b), c.shift.eq(f.add_shift),
            add.cmd.valid.eq(self.cmd.valid), self.cmd.ready.eq(add.cmd.ready),
            self.done.eq(add.done), self.error.eq(0),
        ]
        wiring.connect(m, add.rd_a_cmd, wiring.flipped(self.src.cmd))
        wiring.connect(m, wiring.flipped(self.src.data), add.rd_a)
        wiring.connect(m, add.rd_b_cmd, wiring.flipped(self.aux.cmd))
        wiring.connect(m, wiring.flipped(self.aux.data), add.rd_b)
        wiring.connect(m, add.wr, wiring.flipped(self.dst))
        return m


class DescriptorFetch(wiring.Component):
    """Sequencer ``fetch`` (index) -> a DMA read of 32 bytes at ``PROGRAM + 32 index`` ->
    ``desc`` (8 words, little-endian)."""

    def __init__(self, acc: AcceleratorConfig):
        self.width = acc.shell.data_width
        self.beats = isa.DESC_BYTES * 8 // self.width
        super().__init__({
            "fetch": In(stream.Signature(data.StructLayout({"index": 32}))),
            "desc": Out(stream.Signature(data.ArrayLayout(32, isa.DESC_WORDS))),
            "dma": Out(ports.dma_read(self.width)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.dma.req.payload
        m.d.comb += [self.dma.req.valid.eq(self.fetch.valid), self.fetch.ready.eq(self.dma.req.ready),
                     p.region.eq(DmaRegion.PROGRAM), p.offset.eq(self.fetch.payload.index * isa.DESC_BYTES),
                     p.beats.eq(self.beats)]
        words = Signal(isa.DESC_BYTES * 8)
        got = Signal(range(self.beats + 1))
        full = Signal()
        m.d.comb += [self.dma.data.ready.eq(~full), self.desc.valid.eq(full),
                     self.desc.payload.as_value().eq(words)]
        with m.If(self.dma.data.valid & self.dma.data.ready):
            m.d.sync += words.eq(Cat(words[self.width:], self.dma.data.payload))
            with m.If(got == self.beats - 1):
                m.d.sync += [got.eq(0), full.eq(1)]
            with m.Else():
                m.d.sync += got.eq(got + 1)
        with m.If(self.desc.valid & self.desc.ready):
            m.d.sync += full.eq(0)
        return m


class AccelRegisters(AxiLiteRegisters):
    """The accelerator's registers (:mod:`.regmap`)."""

    INPUTS = {"busy": 1, "done": 1, "error": 8, "error_index": 32, "error_flags": 64, "cycles": 32,
              "n_live": 16, "descriptors": 32}

    def __init__(self, acc: AcceleratorConfig, watchdog_cycles: int):
        self.acc, self.watchdog_cycles = acc, watchdog_cycles
        super().__init__(regmap.REGISTERS, self.INPUTS)

    def _read_values(self) -> dict[str, object]:
        g, s = self.acc.gemm, self.acc.shell
        values = {
            "MAGIC": regmap.MAGIC_VALUE, "VERSION": regmap.VERSION_VALUE, "CONFIG_ID": isa.config_id(self.acc),
            "GEOMETRY": geometry(g.rows, g.cols, s.data_bytes, s.burst_len),
            "CTRL": 0, "STATUS": (self.busy | self.done << 1 | (self.error != 0) << 2 | self.error << 8),
            "ERROR": self.error, "CYCLES": self.cycles, "ERROR_INDEX": self.error_index,
            "ERROR_FLAGS": self.error_flags[:32], "ERROR_FLAGS_HI": self.error_flags[32:], "N_LIVE": self.n_live, "DESCRIPTORS": self.descriptors,
            "WATCHDOG": self.watchdog_cycles,
        }
        for name in self.rw:
            values[name] = getattr(self.regs, name)
        return values


def mux_tree(values: list, sel) -> Value:
    """``values[sel]`` as a balanced tree of 2:1 multiplexers on the bits of ``sel`` (LUT6s
    and MUXF7/8 after synthesis, not a chain of one multiplexer per value); indices beyond
    ``values`` give 0."""
    vals = list(values)
    for b in range(max(1, (len(vals) - 1).bit_length())):
        vals += [Const(0, Value.cast(vals[0]).shape().width)] * (len(vals) % 2)
        vals = [Mux(sel[b], vals[2 * k + 1], vals[2 * k]) for k in range(len(vals) // 2)]
    return vals[0]


EXEC_PORTS = ("src", "aux", "dst", "dma_rd", "dma_wr")
"""The executor ports the top routes from the active executor."""


class Accelerator(wiring.Component):
    """See the module docstring.  ``executors``: an opcode -> (module, class) table replacing
    :data:`EXECUTORS` (tests; ``acc.selectors = False`` leaves out :data:`heatvit.isa.SELECTOR_OPS`); ``watchdog_cycles``: cycles without any handshake (DMA, buffers, sequencer) before
    ``TIMEOUT`` (default ``acc.shell.watchdog_cycles``)."""

    def __init__(self, acc: AcceleratorConfig, *, executors: dict | None = None,
                 watchdog_cycles: int | None = None):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"Accelerator takes an AcceleratorConfig, not {acc!r}")
        self.acc = acc
        self.watchdog_cycles = acc.shell.watchdog_cycles if watchdog_cycles is None else watchdog_cycles
        self.classes, self.missing = executor_classes(executors)
        if not acc.selectors:       # the dense-only build: no token-selector executors
            for op in isa.SELECTOR_OPS:
                if self.classes.pop(op, None) is not None:
                    self.missing[op] = "left out: AcceleratorConfig.selectors = False"
            # a class that also serves selector opcodes: its dense-only class for the others
            self.classes = {op: getattr(cls, "DENSE", cls) for op, cls in self.classes.items()}
        super().__init__({
            "s_axi": In(axi_lite_signature()),
            "m_axi": Out(axi4_signature(acc.shell)),
            # the GEMM weight stream's own AXI HP ports (acc.weight_beats_per_cycle > 1)
            **({} if acc.weight_beats_per_cycle == 1 else
               {"m_axi_w": Out(axi4_signature(acc.shell)).array(acc.weight_beats_per_cycle)}),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        acc = self.acc
        m = Module()
        m.submodules.regs = regs = AccelRegisters(acc, self.watchdog_cycles)
        wiring.connect(m, wiring.flipped(self.s_axi), regs.axi)
        m.submodules.seq = seq = Sequencer(acc, watchdog_cycles=self.watchdog_cycles)
        m.submodules.bufs = bufs = TokenBuffers.from_config(acc)
        m.submodules.xbar = xbar = BufferCrossbar.from_config(acc)
        wiring.connect(m, xbar.bufs, bufs)
        # DMA clients: read 0 = descriptor fetch, 1 = the active executor; write 0 = cycle
        # records, 1 = the active executor.
        m.submodules.dma = dma = DmaPorts(acc, 2, 2)
        wiring.connect(m, wiring.flipped(self.m_axi), dma.m_axi)
        for r in DmaRegion:
            lo, hi = regmap.base_registers(r.name)
            m.d.comb += dma.base[r].eq(Cat(getattr(regs.regs, lo), getattr(regs.regs, hi)))
        # The DMA's error code, idle and progress: the shell's master and the weight ports together.
        dma_error, dma_idle, dma_progress = Signal(8), Signal(), Signal()
        wports = None
        if acc.weight_beats_per_cycle > 1:
            m.submodules.wports = wports = WeightPorts(acc)
            for i in range(acc.weight_beats_per_cycle):
                wiring.connect(m, wiring.flipped(self.m_axi_w[i]), wports.m_axi[i])
            m.d.comb += [wports.base.eq(dma.base), wports.abort.eq(dma.abort), wports.clear.eq(dma.clear),
                         dma_error.eq(Mux(dma.error != 0, dma.error, wports.error)),
                         dma_idle.eq(dma.idle & wports.idle), dma_progress.eq(dma.progress | wports.progress)]
        else:
            m.d.comb += [dma_error.eq(dma.error), dma_idle.eq(dma.idle), dma_progress.eq(dma.progress)]
        # cleanup: the program ended with an error (any state, e.g. a fetch that timed out):
        # executors, crossbar, DMA and the fetch / cycle-record units drop what is left.
        cleanup = Signal()
        fetch = DescriptorFetch(acc)
        m.submodules.fetch = ResetInserter(cleanup)(fetch)
        wiring.connect(m, seq.fetch, fetch.fetch)
        wiring.connect(m, fetch.desc, seq.desc)
        wiring.connect(m, fetch.dma, dma.rd[0])
        m.submodules.cycles = ctw = CycleTrace(acc)
        m.d.comb += ctw.abort.eq(cleanup)
        wiring.connect(m, seq.trace, ctw.trace)
        wiring.connect(m, ctw.dma_wr, dma.wr[0])

        # -- executors -------------------------------------------------------------------------------
        instances: list = []
        index_of: dict[isa.Op, int] = {}
        by_class: dict[type, int] = {}
        for op, cls in self.classes.items():
            if cls not in by_class:
                by_class[cls] = len(instances)
                inst = cls(acc)
                m.submodules[getattr(cls, "INSTANCE", f"exec_{op.name.lower()}")] = inst
                instances.append(inst)
            index_of[op] = by_class[cls]
        none = len(instances)
        self.executors = {op: instances[i] for op, i in index_of.items()}   # for testbenches
        self.xbar, self.dma = xbar, dma
        bus = ports.executor_signature(acc).create(path=("xbus",))
        wiring.connect(m, bus.src, xbar.src)
        wiring.connect(m, bus.aux, xbar.aux)
        wiring.connect(m, bus.dst, xbar.dst)
        wiring.connect(m, bus.dma_rd, dma.rd[1])
        wiring.connect(m, bus.dma_wr, dma.wr[1])

        ex = seq.exec.payload.fields
        # The watchdog's abort, one cycle late: executors may derive ``done`` from ``abort`` and
        # the sequencer derives ``abort`` from ``exec_done`` (it has stopped listening by then).
        abort = Signal()
        m.d.sync += abort.eq(seq.abort)
        pick = Signal(range(none + 1))
        active = Signal(range(none + 1), init=none)
        ids = Signal(data.StructLayout({"src": 4, "aux": 4, "dst": 4}))
        m.d.comb += pick.eq(none)
        with m.Switch(ex.opcode):
            for op, i in index_of.items():
                with m.Case(op):
                    m.d.comb += pick.eq(i)
        unsupported = Signal()
        for i, inst in enumerate(instances):
            m.d.comb += [inst.cmd.payload.eq(ex), inst.cmd.valid.eq(seq.exec.valid & (pick == i)),
                         inst.abort.eq(abort | cleanup)]
            with m.If(pick == i):
                m.d.comb += seq.exec.ready.eq(inst.cmd.ready)
        with m.If(pick == none):
            m.d.comb += seq.exec.ready.eq(1)
        with m.If(seq.exec.valid & seq.exec.ready):
            m.d.sync += [active.eq(pick), ids.src.eq(ex.src), ids.aux.eq(ex.aux), ids.dst.eq(ex.dst),
                         unsupported.eq(pick == none)]
        with m.Else():
            m.d.sync += unsupported.eq(0)
        # Buffer ids: the descriptor's while it is handed over, then the latched ones.
        handing = seq.exec.valid
        m.d.comb += [xbar.src_buf.eq(Mux(handing, ex.src, ids.src)), xbar.aux_buf.eq(Mux(handing, ex.aux, ids.aux)),
                     xbar.dst_buf.eq(Mux(handing, ex.dst, ids.dst))]
        flat_bus = [(p, mem, v) for p, mem, v in bus.signature.flatten(bus) if p[0] in EXEC_PORTS]
        flats = [[v for p, _, v in inst.signature.flatten(inst) if p[0] in EXEC_PORTS] for inst in instances]
        for j, (p, mem, bv) in enumerate(flat_bus):
            # Ports an executor never uses (its ``IDLE_PORTS``) are not routed: it holds them idle,
            # and the bus then reads 0 from it (as it would), without a multiplexer input.
            users = [i for i, inst in enumerate(instances) if p[0] not in getattr(inst, "IDLE_PORTS", ())]
            if mem.flow == Out:
                # the active executor's output: one multiplexer tree on ``active``'s bits
                width = Value.cast(bv).shape().width
                m.d.comb += bv.eq(mux_tree([Value.cast(flats[i][j]) if i in users else Const(0, width)
                                            for i in range(none + 1)], active))
            else:
                # valid / ready to the active executor only; payloads to every user (each reads
                # a payload only with its valid)
                for i in users:
                    m.d.comb += flats[i][j].eq(bv if p[-1] == "payload" else bv & (active == i))
        for i, inst in enumerate(instances):
            with m.If((active == i) & inst.done):
                m.d.comb += [seq.exec_done.eq(1), seq.exec_error.eq(inst.error)]
        with m.If(unsupported):
            m.d.comb += [seq.exec_done.eq(1), seq.exec_error.eq(ErrorCode.CTRL_UNSUPPORTED_OP)]
        # Executors' extra ports: the DMA's error code (GEMM), N_tail in and N_live/N_tail out (SELECT).
        for i, inst in enumerate(instances):
            members = inst.signature.members
            if "dma_error" in members:
                m.d.comb += inst.dma_error.eq(Mux(active == i, dma_error, 0))
            if "wdma" in members:
                wiring.connect(m, inst.wdma, wports.rd)
            if "n_tail" in members:
                m.d.comb += inst.n_tail.eq(seq.n_tail)
            if "set_live" in members:
                with m.If(active == i):
                    m.d.comb += [seq.set_live.eq(inst.set_live), seq.new_n_live.eq(inst.new_n_live),
                                 seq.new_n_tail.eq(inst.new_n_tail)]
        # After a failed descriptor (its executor is idle again) the DMA and crossbar drop what
        # it left behind, as after the watchdog's abort.
        failed = Signal()
        m.d.sync += failed.eq(seq.exec_done & (seq.exec_error != 0))
        # The crossbar also starts every descriptor empty: a word an earlier executor asked for
        # and never took cannot reach the next one.
        dispatch = seq.exec.valid & seq.exec.ready
        m.d.comb += [xbar.flush.eq(abort | failed | cleanup | dispatch), dma.abort.eq(abort | failed | cleanup)]
        # The watchdog counts cycles without any datapath handshake (a long GEMM keeps moving).
        m.d.comb += seq.progress.eq(dma_progress | Cat(*(p.valid & p.ready for p in (
            xbar.src.cmd, xbar.src.data, xbar.aux.cmd, xbar.aux.data, xbar.dst))).any())

        # -- job control -----------------------------------------------------------------------------
        done = Signal()
        cycles = Signal(32)
        dma_err = Signal(8)
        n_desc = Signal(32)
        late_start = Signal()
        busy = Signal()
        error = Signal(8)
        m.d.comb += [
            self.irq.eq(done), regs.done.eq(done), regs.busy.eq(busy), regs.cycles.eq(cycles),
            regs.error_index.eq(seq.error_index), regs.n_live.eq(seq.n_live), regs.descriptors.eq(n_desc),
            error.eq(Mux(dma_err != 0, dma_err, Mux(seq.error != 0, seq.error,
                                                     Mux(late_start, ErrorCode.START_WHILE_BUSY, 0)))),
            regs.error.eq(error),
            regs.error_flags.eq(Mux(seq.error != 0, Const(1, 64) << seq.error, 0)
                                | Mux(dma_err != 0, Const(1, 64) << dma_err, 0)
                                | Mux(late_start, 1 << ErrorCode.START_WHILE_BUSY, 0)),
        ]
        with m.If(ctw.trace.valid & ctw.trace.ready):
            m.d.sync += n_desc.eq(n_desc + 1)
        with m.If(dma_error != 0):
            with m.If(dma_err == 0):
                m.d.sync += dma_err.eq(dma_error)
        with m.FSM(name="job") as fsm:
            m.d.comb += busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                with m.If(regs.start):
                    m.d.comb += [seq.start.eq(1), dma.clear.eq(1)]
                    m.d.sync += [done.eq(0), cycles.eq(0), dma_err.eq(0), late_start.eq(0), n_desc.eq(0)]
                    m.next = "START"
            with m.State("START"):                 # the sequencer is busy from the next cycle
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(~seq.busy):
                    m.d.comb += cleanup.eq(seq.error != 0)
                    m.next = "DRAIN"
            with m.State("DRAIN"):                 # every cycle record written, every write answered
                with m.If(ctw.idle & dma_idle & ~ctw.trace.valid):
                    m.d.sync += done.eq(1)
                    m.next = "IDLE"
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(regs.start):
                m.d.sync += late_start.eq(1)
        return m
