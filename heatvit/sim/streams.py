"""cocotb bus functional models for Amaranth ``lib.stream`` ports (valid/ready/payload), the
stall patterns they run under, and the handshake monitor every testbench attaches.

Amaranth flattens a stream port ``foo`` to ``foo__valid``, ``foo__ready`` and ``foo__payload``.

* Sources and sinks idle (source: valid low; sink: ready low) by an :class:`Idle` behaviour from
  their own seeded ``random.Random``, so any run replays from the cocotb seed.  Named
  :data:`PATTERNS` give both sides at once (``HEATVIT_STALLS=<name>`` forces one everywhere).
* A source drives random junk on the payload whenever its valid is low, so a DUT that looks at
  a payload without valid computes garbage.
* The rules of ``amaranth.lib.stream`` (and AXI): once ``valid`` is high without ``ready`` it
  stays high and the payload stays the same until the handshake.  :class:`StreamSink` checks
  them on the DUT output it drains (inline: no extra task, one payload read per stalled cycle);
  :class:`StreamMonitor` checks them on any set of ports (AXI channels: :mod:`.axi`).  A
  violation fails the running test at once.
* :class:`StreamTB`'s :meth:`~StreamTB.finish` (run after every test by :func:`checked_test`)
  checks that no beat is left over: every source drained, no output beat unread by the test.
"""

from __future__ import annotations

import functools
import os
import random
from collections import deque
from dataclasses import dataclass
from typing import Iterator

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


# -- stall patterns ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Idle:
    """When one side of a stream idles (a source: valid low; a sink: ready low).

    Each cycle outside a long run is idle with probability ``p``; with probability ``long_p``
    a long run of idle cycles starts instead, its length uniform in ``long_range``.
    """

    p: float = 0.0
    long_p: float = 0.0
    long_range: tuple[int, int] = (20, 300)

    def __post_init__(self):
        for name in ("p", "long_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Idle.{name} must be in [0, 1], not {v!r}")
        lo, hi = self.long_range
        if not 1 <= lo <= hi:
            raise ValueError(f"Idle.long_range must be (lo, hi) with 1 <= lo <= hi, not {self.long_range!r}")

    @classmethod
    def of(cls, spec: "Idle | float") -> "Idle":
        """An :class:`Idle` as is, or a plain probability of an idle cycle."""
        return spec if isinstance(spec, Idle) else cls(p=float(spec))

    @property
    def never(self) -> bool:
        return self.p == 0.0 and self.long_p == 0.0

    def cycles(self, rng: random.Random) -> Iterator[bool]:
        """One bool per clock cycle: idle or not."""
        if self.p >= 1.0:
            while True:
                yield True
        while True:
            if self.long_p and rng.random() < self.long_p:
                for _ in range(rng.randint(*self.long_range)):
                    yield True
            else:
                yield bool(self.p) and rng.random() < self.p


PATTERNS: dict[str, tuple[Idle, Idle]] = {
    # name: (every source, every sink)
    "none": (Idle(), Idle()),
    "random": (Idle(0.3), Idle(0.3)),
    "heavy": (Idle(0.65), Idle(0.65)),
    "long": (Idle(0.1, 0.03), Idle(0.1, 0.03)),            # runs of 20-300 idle cycles
    "sink-only": (Idle(), Idle(0.5)),
    "source-only": (Idle(0.5), Idle()),
}
"""The stall patterns of every testbench: ``(source idle, sink idle)`` by name."""


def pattern(name: str) -> tuple[Idle, Idle]:
    """``PATTERNS[name]``, or the pattern ``HEATVIT_STALLS`` names if set (to force one pattern
    on every test)."""
    name = os.environ.get("HEATVIT_STALLS") or name
    if name not in PATTERNS:
        raise ValueError(f"stall pattern must be one of {sorted(PATTERNS)}, not {name!r}")
    return PATTERNS[name]


def _fmt(value) -> str:
    """A sampled value for messages: hex if resolvable (``Logic`` of a 1-bit signal: 0/1)."""
    if not value.is_resolvable:
        return str(value)
    return hex(value.to_unsigned()) if hasattr(value, "to_unsigned") else str(int(value))


def _bit(handle) -> int:
    """A 1-bit signal as 0/1 (X or Z as 0: before reset)."""
    try:
        return int(handle.value)
    except ValueError:
        return 0


# -- monitor -------------------------------------------------------------------------------------

class _Port:
    __slots__ = ("name", "valid", "ready", "payload", "held", "beats", "cycle")

    def __init__(self, name, valid, ready, payload):
        self.name, self.valid, self.ready, self.payload = name, valid, ready, tuple(payload)
        self.held = None          # payload on offer without ready at the last edge
        self.beats = 0

    def sample(self):
        return tuple(_fmt(h.value) for h in self.payload)


class _Rules:
    """Keeps the stream-rule violations found; with ``strict`` the first one raises
    ``AssertionError`` in the checking task, which fails the running cocotb test."""

    strict: bool
    violations: list[str]

    def _flag(self, cycle: int, msg: str) -> None:
        msg = f"stream rule broken at cycle {cycle}: {msg}"
        self.violations.append(msg)
        if self.strict:
            raise AssertionError(msg)


class StreamMonitor(_Rules):
    """Valid/ready rules on every watched port, checked at every rising edge of ``clk``.

    A port is ``(valid, ready, payload signals)``.  After an edge with ``valid && !ready``, the
    next edge must see ``valid`` still high and every payload signal unchanged; a port may not
    be left holding a beat at the end (:meth:`check_idle`).  Cycles in reset (``reset`` at
    ``reset_active``) are ignored.
    With ``strict`` (the default) the first violation raises ``AssertionError`` in the
    monitor's task, which fails the running cocotb test; otherwise violations are only listed
    in :attr:`violations`.
    """

    def __init__(self, clk, *, reset=None, reset_active: int = 1, strict: bool = True):
        import cocotb
        self.clk, self.reset, self.reset_active, self.strict = clk, reset, reset_active, strict
        self.ports: dict[str, _Port] = {}
        self.violations: list[str] = []
        self.cycle = 0
        self._task = cocotb.start_soon(self._run())

    def watch(self, name: str, valid, ready, payload) -> None:
        self.ports[name] = _Port(name, valid, ready, payload)

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if self.reset is not None and _bit(self.reset) == self.reset_active:
                for p in self.ports.values():
                    p.held = None
                continue
            for p in list(self.ports.values()):
                if not _bit(p.valid):
                    if p.held is not None:
                        self._flag(self.cycle, f"{p.name}: valid dropped before the handshake ({p.held} on offer)")
                    p.held = None
                    continue
                if p.held is not None:
                    now = p.sample()
                    if now != p.held:
                        self._flag(self.cycle, f"{p.name}: payload changed while valid && !ready: {p.held} -> {now}")
                if _bit(p.ready):
                    p.beats += 1
                    p.held = None
                elif p.held is None:
                    p.held = p.sample()

    def check_idle(self, names=None) -> None:
        """No watched port has ``valid`` high now (no beat left on offer)."""
        busy = [n for n in (names or self.ports) if _bit(self.ports[n].valid)]
        if busy:
            raise AssertionError(f"beat left over at the end: valid still high on {busy}")

    def stop(self):
        self._task.cancel()


# -- sources and sinks ---------------------------------------------------------------------------

class _Bfm:
    """What a source and a sink share: the port's signals, a seeded ``rng``, the idle-cycle
    generator and the task."""

    def __init__(self, dut, prefix: str, clk, rng: random.Random):
        self.valid = getattr(dut, f"{prefix}__valid")
        self.ready = getattr(dut, f"{prefix}__ready")
        self.payload = getattr(dut, f"{prefix}__payload")
        self.name = prefix
        self.clk = clk
        self.rng = rng
        self._task = None

    def _idle_from(self, spec: Idle | float) -> Idle:
        idle = Idle.of(spec)
        self._idle_cycles = idle.cycles(random.Random(self.rng.getrandbits(32)))
        return idle

    def start(self):
        import cocotb
        self._task = cocotb.start_soon(self._run())
        return self

    def _cancel(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None


class StreamSource(_Bfm):
    """Drives ``<prefix>__valid``/``__payload`` from a queue of integer payloads; random junk on
    the payload while valid is low."""

    def __init__(self, dut, prefix: str, clk, *, gap: Idle | float = 0.0, rng: random.Random | None = None,
                 junk: bool = True):
        super().__init__(dut, prefix, clk, rng or random.Random(0))
        self._junk = random.Random(self.rng.getrandbits(32)) if junk else None
        self._width = len(self.payload)
        self.gap = gap
        self.queue: deque[int] = deque()
        self.sent = 0
        self.handshake_cycles: list[int] = []
        self._edges = 0
        self.now = lambda: self._edges
        self.idle = Event()
        self.driving = False
        self._quiet = False
        self.valid.value = 0

    @property
    def gap(self) -> Idle:
        return self._gap

    @gap.setter
    def gap(self, spec: Idle | float) -> None:
        self._gap = self._idle_from(spec)

    def stop(self):
        self._cancel()
        self.queue.clear()
        self.driving = False
        self.valid.value = 0

    def send(self, payloads):
        self.queue.extend(int(p) for p in payloads)
        self.idle.clear()

    async def wait_idle(self):
        if self.queue or self.driving:
            await self.idle.wait()

    async def _run(self):
        while True:
            await RisingEdge(self.clk)
            self._edges += 1
            if self.driving and _bit(self.ready):
                self.queue.popleft()
                self.sent += 1
                self.handshake_cycles.append(self.now())
                self.driving = False
            pause = next(self._idle_cycles)
            if not self.driving:
                if self.queue and not pause:
                    self.payload.value = self.queue[0]
                    self.valid.value = 1
                    self.driving = True
                    self._quiet = False
                else:
                    if not self._quiet:           # junk once per idle stretch: cheap, and enough
                        self.valid.value = 0
                        if self._junk is not None:
                            self.payload.value = self._junk.getrandbits(self._width)
                        self._quiet = True
                    if not self.queue:
                        self.idle.set()


class StreamSink(_Bfm, _Rules):
    """Drives ``<prefix>__ready`` with stalls and collects accepted payloads.

    ``received`` holds every accepted payload; the test takes them with :meth:`recv` (or
    :meth:`take`), and whatever it never took is a left-over beat at :meth:`StreamTB.finish`.
    """

    def __init__(self, dut, prefix: str, clk, *, stall: Idle | float = 0.0, rng: random.Random | None = None,
                 strict: bool = True):
        super().__init__(dut, prefix, clk, rng or random.Random(1))
        self.strict = strict
        self.violations: list[str] = []
        self.stall = stall
        self.received: list[int] = []
        self.handshake_cycles: list[int] = []
        self.consumed = 0
        self.cycle = 0
        self.now = lambda: self.cycle
        self.ready.value = 0

    @property
    def stall(self) -> Idle:
        return self._stall

    @stall.setter
    def stall(self, spec: Idle | float) -> None:
        self._stall = self._idle_from(spec)

    def stop(self):
        self._cancel()
        self.ready.value = 0

    async def _run(self):
        # The handshake monitor of the DUT's output, inline: the sink reads valid every cycle
        # anyway, so the rules cost one payload read per stalled cycle and no task of their own.
        ready = int(not next(self._idle_cycles))
        self.ready.value = ready
        held = None                               # payload on offer without ready at the last edge
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            valid = _bit(self.valid)
            if held is not None:
                if not valid:
                    self._flag(self.now(), f"{self.name}: valid dropped before the handshake ({_fmt(held)} on offer)")
                elif (now := self.payload.value) != held:
                    self._flag(self.now(), f"{self.name}: payload changed while valid && !ready: {_fmt(held)} -> {_fmt(now)}")
            if not valid:
                held = None
            elif ready:
                self.received.append(self.payload.value.to_unsigned())
                self.handshake_cycles.append(self.now())
                held = None
            elif held is None:
                held = self.payload.value
            nxt = int(not next(self._idle_cycles))
            if nxt != ready:                      # writes cost more than the comparison
                self.ready.value = ready = nxt

    @property
    def unread(self) -> int:
        return len(self.received) - self.consumed

    async def wait_count(self, n: int, timeout_cycles: int | None = None):
        """Wait until ``n`` payloads arrived in all; fail after ``timeout_cycles`` clock cycles."""
        waited = 0
        while len(self.received) < n:
            await RisingEdge(self.clk)
            waited += 1
            if timeout_cycles is not None and waited > timeout_cycles:
                raise TimeoutError(f"{self.name}: {len(self.received)} of {n} beats after {waited} cycles")

    def take(self, n: int | None = None) -> list[int]:
        """The next ``n`` (default: all) unread payloads, marked read."""
        n = self.unread if n is None else n
        if n > self.unread:
            raise AssertionError(f"{self.name}: {n} beats wanted, {self.unread} arrived")
        out = self.received[self.consumed:self.consumed + n]
        self.consumed += n
        return out

    async def recv(self, n: int, timeout_cycles: int | None = None) -> list[int]:
        """Wait for ``n`` more payloads and take them."""
        await self.wait_count(self.consumed + n, timeout_cycles)
        return self.take(n)


# -- testbench base ------------------------------------------------------------------------------

_LIVE: list["StreamTB"] = []


def checked_test(func=None, **kwargs):
    """``cocotb.test`` that also runs :meth:`StreamTB.finish` on every testbench the test made
    (no beat left over), after the test body returned without error."""
    import cocotb

    def deco(f):
        @functools.wraps(f)
        async def wrapper(dut, *a, **k):
            _LIVE.clear()
            await f(dut, *a, **k)
            for tb in list(_LIVE):
                await tb.finish()
            _LIVE.clear()
        return cocotb.test(**kwargs)(wrapper)

    return deco(func) if func is not None else deco


class StreamTB:
    """Base of the per-DUT testbench classes: clock, cycle counter, reset, one seeded BFM per
    stream port, a stall pattern on all of them, and the stream rules on every port: each
    DUT output's :class:`StreamSink` checks them inline (strict: the first violation fails the
    test), each DUT input is driven by a :class:`StreamSource`, which keeps them by
    construction, and :meth:`finish` checks that no beat is left over.

    Subclasses name their ports: ``SOURCES``/``SINKS`` map an attribute name to the port's
    prefix (``{"act": "act_load"}`` makes ``self.act`` drive ``act_load__*``).  BFMs are built in
    that order from ``rng``, so a seed replays the same stimulus, gaps and stalls.
    """

    SOURCES: dict[str, str] = {}
    SINKS: dict[str, str] = {}

    def __init__(self, dut, rng: random.Random, *, gap: Idle | float = 0.0, stall: Idle | float = 0.0,
                 period_ns: int = 10, strict: bool = True):
        import cocotb
        from cocotb.clock import Clock

        self.dut, self.rng = dut, rng
        self.clk = dut.clk
        self.period_ns, self.strict = period_ns, strict
        self.gap, self.stall = Idle.of(gap), Idle.of(stall)
        dut.rst.value = 1                     # held until reset(): no X reaches an FSM
        Clock(dut.clk, period_ns, unit="ns").start()
        self._make_bfms()
        _LIVE.append(self)

    def _make_bfms(self):
        mk = lambda: random.Random(self.rng.getrandbits(32))
        self._sources = [StreamSource(self.dut, port, self.clk, gap=self.gap, rng=mk()).start()
                         for port in self.SOURCES.values()]
        self._sinks = [StreamSink(self.dut, port, self.clk, stall=self.stall, rng=mk(), strict=self.strict).start()
                       for port in self.SINKS.values()]
        for name, bfm in zip([*self.SOURCES, *self.SINKS], [*self._sources, *self._sinks]):
            setattr(self, name, bfm)
            bfm.now = lambda: self.now

    @property
    def now(self) -> int:
        """Clock cycles since simulation start (no task of its own: from the simulation time)."""
        from cocotb.simtime import get_sim_time
        return int(get_sim_time("ns") // self.period_ns)

    @property
    def violations(self) -> list[str]:
        """Stream-rule violations seen on the DUT's outputs (non-strict testbenches)."""
        return [v for sink in self._sinks for v in sink.violations]

    def set_gaps(self, gap: Idle | float, stall: Idle | float):
        """Idle behaviour of every source (``gap``) and sink (``stall``)."""
        self.gap, self.stall = Idle.of(gap), Idle.of(stall)
        for src in self._sources:
            src.gap = self.gap
        for sink in self._sinks:
            sink.stall = self.stall

    def set_pattern(self, name: str):
        """One of :data:`PATTERNS` on every port (logged, with the seed that replays it)."""
        import cocotb
        self.set_gaps(*pattern(name))
        cocotb.log.info(f"stall pattern {os.environ.get('HEATVIT_STALLS') or name} "
                        f"(seed {cocotb.RANDOM_SEED})")

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

    async def finish(self, drain_cycles: int = 32):
        """No beat left over: every source drained, and with every sink ready for
        ``drain_cycles`` cycles no output beat arrives that the test did not take."""
        stuck = {s.name: len(s.queue) for s in self._sources if s.queue}
        if stuck:
            raise AssertionError(f"beats never taken by the DUT: {stuck}")
        for sink in self._sinks:
            sink.stall = Idle()
        for _ in range(drain_cycles):
            await RisingEdge(self.clk)
        extra = {s.name: s.unread for s in self._sinks if s.unread}
        if extra:
            raise AssertionError(f"beats left over at the end (output the test never read): {extra}")
        on_offer = [b.name for b in (*self._sources, *self._sinks) if _bit(b.valid)]
        if on_offer:
            raise AssertionError(f"beat left over at the end: valid still high on {on_offer}")
