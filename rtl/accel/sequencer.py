"""Layer-controller sequencer: fetch descriptors one by one, check them, hand runnable ones to
the datapath, record per-descriptor start/end cycles, stop on the first error; watchdog.

Program semantics (the hardware's, checked in program order as descriptors arrive; the static
:func:`heatvit.isa.check_program` accepts exactly the programs this runs without error when
``N_live`` stays at ``BEGIN``'s value):

* descriptor 0 must be ``BEGIN`` (else ``CTRL_BAD_PROGRAM``; bits outside its fields:
  ``CTRL_BAD_FIELD``) with ISA major :data:`heatvit.isa.ISA_VERSION` ``[0]``, minor <=
  ours and this config's ID, else ``CTRL_BAD_PROGRAM``; then :class:`.descriptor.DescriptorChecker`'s
  code (``m`` = initial ``N_live`` in range); ``N_live`` := ``m``, ``count`` := ``count``;
* descriptor i >= 1: an undecodable one -> its decode code; a second ``BEGIN`` ->
  ``CTRL_BAD_PROGRAM``; the checker's code on the
  live-clipped shape; ``END`` at i != count - 1, or anything else at i = count - 1 ->
  ``CTRL_BAD_PROGRAM``; ``END`` at count - 1 finishes the program;
* a row descriptor whose live row count is 0 is skipped (its trace record has start = end).

Ports (all streams valid/ready):

* ``start`` (pulse): run the program; ``busy``/``done``/``error``/``error_index`` report it.
* ``fetch`` (out): ``index`` of the next descriptor (the shell reads 32 bytes at
  ``program + 32 * index``); ``desc`` (in): its 8 little-endian words.
* ``exec`` (out): a runnable descriptor's decoded fields (:func:`.descriptor.fields_layout`) and
  index; the datapath then pulses ``exec_done`` (with ``exec_error`` != 0 for a run-time error).
* ``trace`` (out): per descriptor ``(index, opcode, start, end)``: cycles since ``start`` when
  the descriptor was handed over / finished (the shell writes them to the trace buffer).
* ``n_live`` / ``n_tail`` (out, 16 bits): the live token count (``BEGIN``'s ``m``, then each
  ``SELECT``'s ``N'``) every later descriptor is clipped to, and the always-kept package tokens
  at its end (0 at ``BEGIN``; the ``SELECT`` executor's input).
* ``set_live`` (in, sampled with ``exec_done`` when ``exec_error`` = 0): ``n_live`` :=
  ``new_n_live``, ``n_tail`` := ``new_n_tail`` (the ``SELECT`` executor's result), for every
  later descriptor.
* ``progress`` (in): the datapath moved (a DMA or buffer handshake); resets the watchdog.
* ``abort`` (out pulse): the watchdog fired (no handshake, no ``progress`` and no ``exec_done``
  for ``watchdog_cycles``): the datapath must drop the descriptor; error ``TIMEOUT``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode
from heatvit.validate import check_int

from .descriptor import DescriptorChecker, fields_layout

ROW_OPS = tuple(o for o in isa.Op if o not in (isa.Op.BEGIN, isa.Op.END))
"""Descriptors the datapath runs (skipped when their live row count is 0)."""


def trace_layout() -> data.StructLayout:
    return data.StructLayout({"index": 32, "opcode": 32, "start": 32, "end": 32})


class Sequencer(wiring.Component):
    def __init__(self, acc: AcceleratorConfig, watchdog_cycles: int = 1 << 16):
        check_int("Sequencer", "watchdog_cycles", watchdog_cycles, 4, (1 << 32) - 1)
        self.acc, self.watchdog_cycles = acc, watchdog_cycles
        super().__init__({
            "start": In(1), "busy": Out(1), "done": Out(1), "error": Out(8), "error_index": Out(32),
            "n_live": Out(16), "n_tail": Out(16),
            "set_live": In(1), "new_n_live": In(16), "new_n_tail": In(16),
            "fetch": Out(stream.Signature(data.StructLayout({"index": 32}))),
            "desc": In(stream.Signature(data.ArrayLayout(32, isa.DESC_WORDS))),
            "exec": Out(stream.Signature(data.StructLayout({"fields": fields_layout(), "index": 32}))),
            "exec_done": In(1), "exec_error": In(8),
            "trace": Out(stream.Signature(trace_layout())),
            "abort": Out(1), "progress": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.checker = chk = DescriptorChecker(self.acc)
        wiring.connect(m, wiring.flipped(self.desc), chk.i)
        m.d.comb += chk.n_live.eq(self.n_live)

        idx = Signal(32)
        count = Signal(32)
        cycles = Signal(32)
        t_start = Signal(32)
        fields = Signal(fields_layout())
        # idx == count - 1, registered (idx and count are stable from FETCH on; no subtract and
        # 32-bit compare in front of CHECK's decisions)
        at_last = Signal()
        m.d.sync += at_last.eq(idx + 1 == count)
        f = chk.o.payload.fields
        code = chk.o.payload.code
        ok = chk.o.payload
        # idx == 0, registered (idx moves in TRACE and IDLE; FETCH takes a cycle before CHECK)
        first = Signal()
        m.d.sync += first.eq(idx == 0)

        # -- watchdog -----------------------------------------------------------------------------
        quiet = Signal(range(self.watchdog_cycles + 1))
        progress = Signal()
        timeout = Signal()
        m.d.comb += [
            progress.eq(self.progress | (self.fetch.valid & self.fetch.ready) | (self.desc.valid & self.desc.ready)
                        | (self.exec.valid & self.exec.ready) | self.exec_done
                        | (self.trace.valid & self.trace.ready)),
            timeout.eq(quiet == self.watchdog_cycles - 1),
        ]
        with m.If(progress | ~self.busy):
            m.d.sync += quiet.eq(0)
        with m.Elif(~timeout):
            m.d.sync += quiet.eq(quiet + 1)
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)

        def fail(c):
            m.d.sync += [self.error.eq(c), self.error_index.eq(idx)]
            m.next = "FINISH"

        def record(end_now: bool):
            m.d.sync += [self.trace.payload.index.eq(idx), self.trace.payload.opcode.eq(f.opcode),
                         self.trace.payload.start.eq(cycles if end_now else t_start),
                         self.trace.payload.end.eq(cycles)]

        with m.FSM(name="seq") as fsm:
            m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [idx.eq(0), count.eq(0), cycles.eq(0), self.done.eq(0),
                                 self.error.eq(0), self.error_index.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [self.fetch.valid.eq(1), self.fetch.payload.index.eq(idx)]
                with m.If(timeout):
                    fail(ErrorCode.TIMEOUT)
                with m.Elif(self.fetch.ready):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += chk.o.ready.eq(1)
                with m.If(timeout):
                    fail(ErrorCode.TIMEOUT)
                with m.Elif(chk.o.valid):
                    m.d.sync += fields.eq(f)
                    with m.If(first):
                        with m.If((code == ErrorCode.CTRL_BAD_OPCODE) | ~ok.begin):
                            fail(ErrorCode.CTRL_BAD_PROGRAM)
                        with m.Elif(code == ErrorCode.CTRL_BAD_FIELD):
                            fail(code)
                        with m.Elif(~ok.version_ok):
                            fail(ErrorCode.CTRL_BAD_PROGRAM)
                        with m.Elif(code != 0):
                            fail(code)
                        with m.Else():
                            m.d.sync += [count.eq(f.count), self.n_live.eq(f.m), self.n_tail.eq(0)]
                            record(True)
                            m.next = "TRACE"
                    with m.Elif((code == ErrorCode.CTRL_BAD_OPCODE) | (code == ErrorCode.CTRL_BAD_FIELD)):
                        fail(code)
                    with m.Elif(ok.begin):
                        fail(ErrorCode.CTRL_BAD_PROGRAM)
                    with m.Elif(code != 0):
                        fail(code)
                    with m.Elif(ok.end != at_last):
                        fail(ErrorCode.CTRL_BAD_PROGRAM)
                    with m.Elif(ok.end):
                        record(True)
                        m.next = "LAST_TRACE"
                    with m.Elif(ok.skip):
                        record(True)                      # skipped: N_live below its rows
                        m.next = "TRACE"
                    with m.Else():
                        m.d.sync += t_start.eq(cycles)
                        m.next = "EXEC"
            with m.State("EXEC"):
                m.d.comb += [self.exec.valid.eq(1), self.exec.payload.fields.eq(fields),
                             self.exec.payload.index.eq(idx)]
                with m.If(timeout):
                    m.d.comb += self.abort.eq(1)
                    fail(ErrorCode.TIMEOUT)
                with m.Elif(self.exec.ready):
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.exec_done):
                    with m.If(self.exec_error != 0):
                        fail(self.exec_error)
                    with m.Else():
                        with m.If(self.set_live):
                            m.d.sync += [self.n_live.eq(self.new_n_live), self.n_tail.eq(self.new_n_tail)]
                        m.d.sync += [self.trace.payload.index.eq(idx),
                                     self.trace.payload.opcode.eq(fields.opcode),
                                     self.trace.payload.start.eq(t_start), self.trace.payload.end.eq(cycles)]
                        m.next = "TRACE"
                with m.Elif(timeout):
                    m.d.comb += self.abort.eq(1)
                    fail(ErrorCode.TIMEOUT)
            for state, after in (("TRACE", "FETCH"), ("LAST_TRACE", "FINISH")):
                with m.State(state):
                    m.d.comb += self.trace.valid.eq(1)
                    with m.If(self.trace.ready):
                        m.d.sync += idx.eq(idx + 1)
                        m.next = after
                    with m.Elif(timeout):
                        fail(ErrorCode.TIMEOUT)
            with m.State("FINISH"):
                m.d.sync += self.done.eq(1)
                m.next = "IDLE"
        return m
