"""pytest driver: the handshake monitor and the stream BFMs of heatvit.sim.streams catch what
they promise to (testbench/monitor/tb_monitor.py), on a small stream register with faults that
can be switched on: a payload that changes while stalled, a valid withdrawn before its
handshake, an extra output beat, a payload read one cycle after its handshake."""

import json
from pathlib import Path

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.sim.runner import run_testbench

FAULTS = {"none": 0, "payload": 1, "drop": 2, "extra": 3, "late": 4}


class FaultyStream(wiring.Component):
    """A one-beat stream register (``i`` -> ``o``, 16-bit payload) with the fault ``fault``
    selects (:data:`FAULTS`); fault 0 is a correct register."""

    i: In(stream.Signature(16))
    o: Out(stream.Signature(16))
    fault: In(3)

    def elaborate(self, platform):
        m = Module()
        full, late, again = Signal(), Signal(), Signal()
        data = Signal(16)
        age = Signal(4)
        f = self.fault
        m.d.comb += [self.i.ready.eq(~full & ~late), self.o.valid.eq(full), self.o.payload.eq(data)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += data.eq(self.i.payload)
            with m.If(f == FAULTS["late"]):
                m.d.sync += late.eq(1)         # reads the payload again one cycle later
            with m.Else():
                m.d.sync += full.eq(1)
        with m.If(late):
            m.d.sync += [data.eq(self.i.payload), late.eq(0), full.eq(1)]
        with m.If(full & ~self.o.ready):
            m.d.sync += age.eq(age + 1)
            with m.If(f == FAULTS["payload"]):
                m.d.sync += data.eq(data + 1)
            with m.If((f == FAULTS["drop"]) & (age == 2)):
                m.d.sync += [full.eq(0), age.eq(0)]
        with m.If(full & self.o.ready):
            m.d.sync += age.eq(0)
            with m.If((f == FAULTS["extra"]) & ~again):
                m.d.sync += again.eq(1)        # the same beat once more
            with m.Else():
                m.d.sync += [full.eq(0), again.eq(0)]
        return m


def test_stream_monitor():
    run_testbench(FaultyStream(), toplevel="faulty_stream", test_module="tb_monitor",
                  test_dir=Path(__file__).parent / "monitor", sim="icarus",
                  env={"HEATVIT_FAULTS": json.dumps(FAULTS)})
