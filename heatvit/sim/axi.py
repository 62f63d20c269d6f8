"""The stream rules on AXI: the handshake monitor of :mod:`heatvit.sim.streams` on every channel
of an AXI4 or AXI4-Lite port, and the stall patterns applied to cocotbext-axi models.

Every AXI channel is a valid/ready stream whose payload is the channel's other signals; the
monitor checks that a beat on offer (``valid && !ready``) stays on offer, unchanged, until its
handshake (AXI4 A3.2.1), whoever drives it: the DUT's ``m_axi`` address and write channels, the
memory model's responses, the register master's requests.
"""

from __future__ import annotations

import random

from cocotb.triggers import RisingEdge

from .streams import _LIVE, Idle, StreamMonitor, pattern

# Channel payload signals (cocotbext-axi's names; optional ones are watched when present).
AXI4 = {
    "aw": ("awid", "awaddr", "awlen", "awsize", "awburst", "awlock", "awcache", "awprot", "awqos",
           "awregion", "awuser"),
    "w": ("wdata", "wstrb", "wlast", "wuser"),
    "b": ("bid", "bresp", "buser"),
    "ar": ("arid", "araddr", "arlen", "arsize", "arburst", "arlock", "arcache", "arprot", "arqos",
           "arregion", "aruser"),
    "r": ("rid", "rdata", "rresp", "rlast", "ruser"),
}
AXI_LITE = {"aw": ("awaddr", "awprot"), "w": ("wdata", "wstrb"), "b": ("bresp",),
            "ar": ("araddr", "arprot"), "r": ("rdata", "rresp")}


def watch_axi(monitor: StreamMonitor, dut, prefix: str, channels: dict = AXI4) -> None:
    """Watch every channel ``<prefix>_<ch>valid/ready`` with its payload signals."""
    for ch, fields in channels.items():
        payload = [getattr(dut, f"{prefix}_{f}") for f in fields if hasattr(dut, f"{prefix}_{f}")]
        monitor.watch(f"{prefix}_{ch}", getattr(dut, f"{prefix}_{ch}valid"), getattr(dut, f"{prefix}_{ch}ready"),
                      payload)


class AxiWatch:
    """The monitor on every channel of the ``masters`` (AXI4) and ``slaves`` (AXI4-Lite)
    ports of ``dut``, ignoring cycles in reset; a :func:`heatvit.sim.streams.checked_test`
    ends with :meth:`finish` (no beat left on offer on any channel)."""

    def __init__(self, dut, clk, reset, *, reset_active: int = 0, axi4=("m_axi",), lite=("s_axi",),
                 strict: bool = True):
        self.clk = clk
        self.monitor = StreamMonitor(clk, reset=reset, reset_active=reset_active, strict=strict)
        for prefix in axi4:
            watch_axi(self.monitor, dut, prefix, AXI4)
        for prefix in lite:
            watch_axi(self.monitor, dut, prefix, AXI_LITE)
        _LIVE.append(self)

    async def finish(self, drain_cycles: int = 32):
        for _ in range(drain_cycles):
            await RisingEdge(self.clk)
        self.monitor.check_idle()


BACKEND_SOURCES = frozenset({"ram.r", "ram.b", "lite.aw", "lite.w", "lite.ar"})
"""The channel models of :meth:`heatvit.driver.sim.CocotbBackend.channels` that drive valid."""


def set_axi_pattern(channels: dict, name: str, rng: random.Random, *,
                    sources: frozenset[str] = BACKEND_SOURCES) -> None:
    """Stall pattern ``name`` (:data:`heatvit.sim.streams.PATTERNS`) on cocotbext-axi channel
    models: ``channels`` maps a name to a model with ``set_pause_generator``; the models named in
    ``sources`` drive valid (they get the pattern's source idling), the others drive ready."""
    import cocotb
    src, sink = pattern(name)
    for ch_name, ch in channels.items():
        idle: Idle = src if ch_name in sources else sink
        if idle.never:
            ch.clear_pause_generator()
            ch.pause = False
        else:
            ch.set_pause_generator(idle.cycles(random.Random(rng.getrandbits(32))))
    cocotb.log.info(f"AXI stall pattern {name} (seed {cocotb.RANDOM_SEED})")
