"""cocotb tests that the stream rules of heatvit.sim.streams are enforced: each fault of
``FaultyStream`` (testbench/test_stream_monitor.py) is caught, the correct register passes under
every stall pattern.  Run through testbench/test_stream_monitor.py."""

import json
import os
import random

import cocotb
from cocotb.triggers import ClockCycles

from heatvit.sim.streams import PATTERNS, StreamMonitor, StreamSource, StreamTB, checked_test

FAULTS = json.loads(os.environ["HEATVIT_FAULTS"])


class RegisterTB(StreamTB):
    SOURCES = {"src": "i"}
    SINKS = {"sink": "o"}


async def _start(dut, fault: str, *, strict: bool = True, stalls: str = "random"):
    tb = RegisterTB(dut, random.Random(cocotb.RANDOM_SEED), strict=strict)
    dut.fault.value = FAULTS[fault]
    tb.set_pattern(stalls)
    await tb.reset()
    return tb


@checked_test
async def correct_register_passes(dut):
    """Fault 0: every stall pattern, no violation, every beat through unchanged, none left over."""
    tb = await _start(dut, "none")
    for name in PATTERNS:
        tb.set_pattern(name)
        beats = [random.getrandbits(16) for _ in range(30)]
        tb.src.send(beats)
        assert await tb.sink.recv(len(beats), timeout_cycles=20000) == beats, name
    assert not tb.violations


async def _violations(dut, fault: str) -> tuple[list[str], list[str]]:
    """(what the sink saw, what a separate StreamMonitor on the same port saw)."""
    tb = await _start(dut, fault, strict=False, stalls="heavy")
    mon = StreamMonitor(dut.clk, reset=dut.rst, strict=False)
    mon.watch("o", dut.o__valid, dut.o__ready, [dut.o__payload])
    tb.src.send(range(1, 41))
    await ClockCycles(dut.clk, 600)
    mon.stop()
    return tb.violations, mon.violations


@cocotb.test()
async def payload_change_is_caught(dut):
    """Fault 1: the payload counts up while stalled."""
    for found in await _violations(dut, "payload"):
        assert found and all("payload changed while valid && !ready" in v for v in found), found


@cocotb.test()
async def withdrawn_valid_is_caught(dut):
    """Fault 2: valid drops after two stalled cycles."""
    for found in await _violations(dut, "drop"):
        assert found and all("valid dropped before the handshake" in v for v in found), found


@checked_test(expect_fail=True)
async def strict_monitor_fails_the_test(dut):
    """The default (strict) monitor fails the running test at the first violation: this test
    must fail."""
    tb = await _start(dut, "payload", stalls="heavy")
    tb.src.send(range(1, 41))
    await tb.sink.recv(40, timeout_cycles=5000)


@cocotb.test()
async def leftover_beat_is_caught(dut):
    """Fault 3: each beat comes out twice; the test reads one, finish() finds the other."""
    tb = await _start(dut, "extra", stalls="none")
    tb.src.send([0x1234])
    assert await tb.sink.recv(1, timeout_cycles=100) == [0x1234]
    try:
        await tb.finish()
    except AssertionError as e:
        assert "left over" in str(e), e
    else:
        raise AssertionError("finish() did not see the extra beat")


@cocotb.test()
async def late_read_is_caught_by_junk(dut):
    """Fault 4: the payload is read the cycle after the handshake.  The source drives junk on
    the payload while valid is low, so this shows up; a source that kept the last payload
    would hide it when beats come one at a time."""
    tb = await _start(dut, "late", stalls="none")
    tb.src.stop()
    for junk in (False, True):
        src = StreamSource(dut, "i", dut.clk, rng=random.Random(1), junk=junk).start()
        got = []
        for v in (0x1111, 0x2222, 0x3333):
            src.send([v])
            got += await tb.sink.recv(1, timeout_cycles=100)
        if junk:
            assert got != [0x1111, 0x2222, 0x3333], "junk payload did not expose the late read"
        else:
            assert got == [0x1111, 0x2222, 0x3333], got
        src.stop()
