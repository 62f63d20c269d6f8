"""cocotb back end: cocotbext-axi ``AxiRam`` as DDR, ``AxiLiteMaster`` for the registers.

The DUT is the thin top (``aclk``, ``aresetn``, ``s_axi_*``, ``m_axi_*``).  ``stall`` > 0 makes
every AXI channel of both buses pause at random (valid gaps on the channels the models drive,
ready stalls on those they receive), from a seeded ``random.Random``.
"""

from __future__ import annotations

import itertools
import logging
import random
import warnings

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from heatvit.shell_config import ShellConfig


# cocotbext-axi 0.1.28 reads cocotb's deprecated Event.data on every AXI-Lite read.
warnings.filterwarnings("ignore", message="The data field will be removed", category=DeprecationWarning)


def _pauses(rng: random.Random, p: float):
    while True:
        yield rng.random() < p


class CocotbBackend:
    def __init__(self, dut, shell: ShellConfig, *, stall: float = 0.0, rng: random.Random | None = None,
                 align: int | None = None):
        self.dut, self.shell = dut, shell
        self.rng = rng or random.Random(0)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.aclk, dut.aresetn,
                          reset_active_level=False, size=shell.window_end)
        self.lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        for model in (self.ram.write_if, self.ram.read_if, self.lite.write_if, self.lite.read_if):
            model.log.setLevel(logging.WARNING)   # one INFO line per transaction otherwise
        self.align = align or shell.data_bytes
        self.next_free = shell.window_base
        self.set_stall(stall)
        # Byte ranges [lo, hi) whose reads / writes the model answers with SLVERR.
        self.poisoned: dict[str, list[tuple[int, int]]] = {"read": [], "write": []}
        for kind, model in (("read", self.ram.read_if), ("write", self.ram.write_if)):
            inner = getattr(model, f"_{kind}")
            setattr(model, f"_{kind}", self._poisonable(kind, inner))

    def _poisonable(self, kind, inner):
        async def access(address, arg):
            n = arg if kind == "read" else len(arg)
            if any(lo < address + n and address < hi for lo, hi in self.poisoned[kind]):
                raise OSError(f"poisoned {kind} at {address:#x}")   # -> SLVERR
            return await inner(address, arg)
        return access

    def channels(self):
        """Every channel model of both buses (for pause generators)."""
        w, r = self.ram.write_if, self.ram.read_if
        lw, lr = self.lite.write_if, self.lite.read_if
        return {"ram.aw": w.aw_channel, "ram.w": w.w_channel, "ram.b": w.b_channel,
                "ram.ar": r.ar_channel, "ram.r": r.r_channel,
                "lite.aw": lw.aw_channel, "lite.w": lw.w_channel, "lite.b": lw.b_channel,
                "lite.ar": lr.ar_channel, "lite.r": lr.r_channel}

    def set_stall(self, p: float, only: str | None = None):
        for name, ch in self.channels().items():
            if only is not None and name != only:
                continue
            if p >= 1.0:
                ch.set_pause_generator(itertools.repeat(True))
            elif p > 0:
                ch.set_pause_generator(_pauses(random.Random(self.rng.getrandbits(32)), p))
            else:
                ch.clear_pause_generator()
                ch.pause = False

    # -- Backend protocol --------------------------------------------------------------------
    async def read_reg(self, offset: int) -> int:
        data = await self.lite.read(offset, 4)
        return int.from_bytes(data.data, "little")

    async def write_reg(self, offset: int, value: int) -> None:
        await self.lite.write(offset, int(value).to_bytes(4, "little"))

    def alloc(self, nbytes: int) -> int:
        addr = -(-self.next_free // self.align) * self.align
        if addr + nbytes > self.shell.window_end:
            raise MemoryError(f"simulated DDR window exhausted ({nbytes} bytes requested)")
        self.next_free = addr + nbytes
        return addr

    def write_mem(self, addr: int, data: bytes) -> None:
        self.ram.write(addr, data)

    def read_mem(self, addr: int, nbytes: int) -> bytes:
        return bytes(self.ram.read(addr, nbytes))

    async def pause(self) -> None:
        await ClockCycles(self.dut.aclk, 16)


class AxiMonitor:
    """Records every AR/AW burst of the DUT's AXI4 master and flags 4 KiB crossings."""

    def __init__(self, dut, shell: ShellConfig):
        self.dut, self.shell = dut, shell
        self.bursts = {"ar": [], "aw": []}
        self.violations: list[str] = []
        self._task = cocotb.start_soon(self._run())

    async def _run(self):
        dut, nb = self.dut, self.shell.data_bytes
        while True:
            await RisingEdge(dut.aclk)
            for ch in ("ar", "aw"):
                if int(getattr(dut, f"m_axi_{ch}valid").value) and int(getattr(dut, f"m_axi_{ch}ready").value):
                    addr = int(getattr(dut, f"m_axi_{ch}addr").value)
                    beats = int(getattr(dut, f"m_axi_{ch}len").value) + 1
                    self.bursts[ch].append((addr, beats))
                    if (addr & 0xFFF) + beats * nb > 0x1000:
                        self.violations.append(f"{ch} burst {addr:#x} x {beats} crosses 4 KiB")
                    if beats > self.shell.burst_len:
                        self.violations.append(f"{ch} burst of {beats} > burst_len")

    def count(self) -> int:
        return len(self.bursts["ar"]) + len(self.bursts["aw"])


async def start(dut, acc, *, stall: float = 0.0, rng: random.Random | None = None,
                period_ns: int = 10, max_polls: int | None = 100_000):
    """Clock, reset, models and a driver for the thin top of ``acc`` (an
    :class:`~heatvit.config.AcceleratorConfig`): ``(backend, driver, monitor)``."""
    from heatvit.driver.core import GemmDriver
    Clock(dut.aclk, period_ns, unit="ns").start()
    dut.aresetn.value = 0
    backend = CocotbBackend(dut, acc.shell, stall=stall, rng=rng)
    await ClockCycles(dut.aclk, 5)
    dut.aresetn.value = 1
    await ClockCycles(dut.aclk, 2)
    return backend, GemmDriver(backend, acc, max_polls=max_polls), AxiMonitor(dut, acc.shell)
