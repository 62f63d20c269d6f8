"""cocotb bus functional models for Amaranth ``lib.stream`` ports (valid/ready/payload).

Amaranth flattens a stream port ``foo`` to ``foo__valid``, ``foo__ready`` and ``foo__payload``.
Every model inserts random gaps (source: valid low; sink: ready low) with a given probability
from its own seeded ``random.Random``, so any run replays from the cocotb seed.
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np
from cocotb.triggers import Event, RisingEdge


def pack_lanes(values, bits: int) -> int:
    """Pack signed integers into one unsigned word, lane 0 in the least significant bits."""
    word = 0
    mask = (1 << bits) - 1
    for i, v in enumerate(values):
        word |= (int(v) & mask) << (i * bits)
    return word


def unpack_lanes(word: int, bits: int, lanes: int) -> np.ndarray:
    """Inverse of :func:`pack_lanes` (signed lanes)."""
    out = np.empty(lanes, dtype=np.int64)
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    for i in range(lanes):
        v = (word >> (i * bits)) & mask
        out[i] = v - (1 << bits) if v >= half else v
    return out


def pack_fields(fields: list[tuple[int, int]]) -> int:
    """Pack ``(value, width)`` pairs, first pair least significant (Amaranth StructLayout order)."""
    word, pos = 0, 0
    for value, width in fields:
        word |= (int(value) & ((1 << width) - 1)) << pos
        pos += width
    return word


class StreamSource:
    """Drives ``<prefix>__valid``/``__payload`` from a queue of integer payloads."""

    def __init__(self, dut, prefix: str, clk, *, gap: float = 0.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.gap = gap
        self.rng = rng or random.Random(0)
        self.queue: deque[int] = deque()
        self.sent = 0
        self.handshake_cycles: list[int] = []
        self._edges = 0
        self.now = lambda: self._edges
        self.idle = Event()
        self.valid.value = 0
        self._task = None

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.queue.clear()
        self.valid.value = 0

    def send(self, payloads):
        self.queue.extend(int(p) for p in payloads)
        self.idle.clear()

    async def wait_idle(self):
        if self.queue or int(self.valid.value):
            await self.idle.wait()

    async def _run(self):
        driving = False
        while True:
            await RisingEdge(self.clk)
            self._edges += 1
            if driving and int(self.ready.value):
                self.queue.popleft()
                self.sent += 1
                self.handshake_cycles.append(self.now())
                driving = False
            if not driving:
                if self.queue and not (self.gap and self.rng.random() < self.gap):
                    self.payload.value = self.queue[0]
                    self.valid.value = 1
                    driving = True
                else:
                    self.valid.value = 0
                    if not self.queue:
                        self.idle.set()


class StreamSink:
    """Drives ``<prefix>__ready`` with random stalls and collects accepted payloads."""

    def __init__(self, dut, prefix: str, clk, *, stall: float = 0.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.clk = clk
        self.stall = stall
        self.rng = rng or random.Random(1)
        self.received: list[int] = []
        self.handshake_cycles: list[int] = []
        self.cycle = 0
        self.now = lambda: self.cycle
        self.ready.value = 0
        self._task = None

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.ready.value = 0

    async def _run(self):
        self.ready.value = int(not (self.stall and self.rng.random() < self.stall))
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if int(self.ready.value) and int(self.valid.value):
                self.received.append(self.payload.value.to_unsigned())
                self.handshake_cycles.append(self.now())
            self.ready.value = int(not (self.stall and self.rng.random() < self.stall))

    async def wait_count(self, n: int, timeout_cycles: int | None = None):
        """Wait until ``n`` payloads arrived; fail after ``timeout_cycles`` clock cycles."""
        waited = 0
        while len(self.received) < n:
            await RisingEdge(self.clk)
            waited += 1
            if timeout_cycles is not None and waited > timeout_cycles:
                raise TimeoutError(f"{len(self.received)} of {n} beats after {waited} cycles")


class StreamTB:
    """Base of the per-DUT testbench classes: clock, cycle counter, reset, one seeded BFM per
    stream port, and random gaps/stalls on all of them.

    Subclasses name their ports: ``SOURCES``/``SINKS`` map an attribute name to the port's
    prefix (``{"act": "act_load"}`` makes ``self.act`` drive ``act_load__*``).  BFMs are built in
    that order from ``rng``, so a seed replays the same stimulus, gaps and stalls.
    """

    SOURCES: dict[str, str] = {}
    SINKS: dict[str, str] = {}

    def __init__(self, dut, rng: random.Random, *, gap: float = 0.0, stall: float = 0.0,
                 period_ns: int = 10):
        import cocotb
        from cocotb.clock import Clock

        self.dut, self.rng = dut, rng
        self.clk = dut.clk
        self.now = 0
        self.gap, self.stall = gap, stall
        dut.rst.value = 1                     # held until reset(): no X reaches an FSM
        Clock(dut.clk, period_ns, unit="ns").start()
        cocotb.start_soon(self._count())
        self._make_bfms()

    def _make_bfms(self):
        mk = lambda: random.Random(self.rng.getrandbits(32))
        self._sources = [StreamSource(self.dut, port, self.clk, gap=self.gap, rng=mk()).start()
                         for port in self.SOURCES.values()]
        self._sinks = [StreamSink(self.dut, port, self.clk, stall=self.stall, rng=mk()).start()
                       for port in self.SINKS.values()]
        for name, bfm in zip([*self.SOURCES, *self.SINKS], [*self._sources, *self._sinks]):
            setattr(self, name, bfm)
            bfm.now = lambda: self.now

    async def _count(self):
        while True:
            await RisingEdge(self.clk)
            self.now += 1

    def set_gaps(self, gap: float, stall: float):
        """Probability of an idle cycle on every source (``gap``) and sink (``stall``)."""
        self.gap, self.stall = gap, stall
        for src in self._sources:
            src.gap = gap
        for sink in self._sinks:
            sink.stall = stall

    async def reset(self, cycles: int = 3):
        """Synchronous reset; stops and rebuilds every BFM so no stale beat survives it."""
        for bfm in (*self._sources, *self._sinks):
            bfm.stop()
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.clk)
        self._make_bfms()
