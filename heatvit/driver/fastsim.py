"""Fast simulation back end: the DDR is an HDL model inside the simulator, Python waits on ``irq``.

The DUT is ``heatvit_fastsim`` (:mod:`heatvit.sim.fast_top`): the shell's thin top with its AXI4
master wired to the Verilog DDR model.  While a job runs no Python code runs per clock cycle:

* registers: a small AXI4-Lite master that drives the ``s_axi_*`` pins for the few cycles of one
  register access and then sleeps (no background coroutines);
* memory: a host-side shadow of the model's contents.  ``write_mem`` updates the shadow and
  marks beats dirty; before the next register write the dirty beats go to the model in one
  ``$readmemh`` (pin ``ddr_load``).  When a job has finished (``irq`` high), the first register
  read copies back every beat the job wrote (the model tracks the range, pin ``ddr_dump`` runs
  ``$writememh``), so ``read_mem`` answers from an exact shadow;
* waiting: ``pause`` returns at once if ``irq`` is high, else waits for its rising edge (or a
  timer of ``poll_cycles``, so the driver's poll bound still applies).

The clock is cocotb's GPI clock (driven from C, not Python).  Same :class:`~heatvit.driver.core.Backend`
protocol as the cocotbext-axi back end, so ``GemmDriver`` runs unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, First, ReadOnly, RisingEdge, Timer

from heatvit.rtl.shell import regmap
from heatvit.shell_config import ShellConfig
from heatvit.sim.fast_top import DEFAULT_DDR_BYTES, DUMP_FILE, LOAD_FILE, ddr_depth_log2


class FastSimBackend:
    """:class:`~heatvit.driver.core.Backend` on ``heatvit_fastsim``."""

    def __init__(self, dut, shell: ShellConfig, *, ddr_bytes: int = DEFAULT_DDR_BYTES, period_ns: int = 10,
                 poll_cycles: int = 1 << 20, workdir: str | Path | None = None):
        self.dut, self.shell = dut, shell
        self.nb = shell.data_bytes
        # The model's size is a build parameter: pass the ddr_bytes given to export_fast.
        depth = 1 << ddr_depth_log2(shell, ddr_bytes)
        self.base = shell.window_base
        self.end = self.base + depth * self.nb
        self.shadow = np.zeros(depth * self.nb, dtype=np.uint8)
        self.dirty: list[tuple[int, int]] = []     # beat ranges [lo, hi) to send to the model
        self.stale = False                          # a job ran since the last copy-back
        self.period_ns, self.poll_cycles = period_ns, poll_cycles
        self.workdir = Path(workdir or os.getcwd())
        self.next_free = self.base
        self.loads = self.dumps = 0
        self.last_written: tuple[int, int] | None = None   # beat range the last job wrote

    # -- memory ------------------------------------------------------------------------------
    def _beats(self, addr: int, nbytes: int) -> tuple[int, int]:
        if addr < self.base or addr + nbytes > self.end:
            raise ValueError(f"[{addr:#x}, {addr + nbytes:#x}) is outside the simulated DDR "
                             f"[{self.base:#x}, {self.end:#x})")
        return (addr - self.base) // self.nb, -(-(addr - self.base + nbytes) // self.nb)

    def alloc(self, nbytes: int) -> int:
        addr = -(-self.next_free // self.nb) * self.nb
        if addr + nbytes > self.end:
            raise MemoryError(f"simulated DDR exhausted: {nbytes} bytes requested at {addr:#x}, "
                              f"model ends at {self.end:#x}")
        self.next_free = addr + nbytes
        return addr

    def write_mem(self, addr: int, data: bytes) -> None:
        lo, hi = self._beats(addr, len(data))
        off = addr - self.base
        self.shadow[off:off + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        if hi > lo:
            self.dirty.append((lo, hi))

    def read_mem(self, addr: int, nbytes: int) -> bytes:
        if self.stale:
            raise RuntimeError("read_mem after a job before any register read: the job's writes "
                               "are not copied back yet (read STATUS first)")
        self._beats(addr, nbytes)
        off = addr - self.base
        return self.shadow[off:off + nbytes].tobytes()

    @staticmethod
    def _merge(ranges):
        out = []
        for lo, hi in sorted(ranges):
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return out

    def _hex(self, lo: int, hi: int) -> str:
        words = self.shadow[lo * self.nb:hi * self.nb].reshape(-1, self.nb)[:, ::-1]
        text = words.tobytes().hex()
        w = 2 * self.nb
        return "\n".join(text[i:i + w] for i in range(0, len(text), w))

    async def _pulse(self, pin) -> None:
        await FallingEdge(self.dut.aclk)
        pin.value = 1
        await FallingEdge(self.dut.aclk)
        pin.value = 0

    async def flush(self) -> None:
        """Send the dirty beats to the model (one ``$readmemh``)."""
        if not self.dirty:
            return
        parts = [f"@{lo:x}\n{self._hex(lo, hi)}" for lo, hi in self._merge(self.dirty)]
        (self.workdir / LOAD_FILE).write_text("\n".join(parts) + "\n")
        await self._pulse(self.dut.ddr_load)
        self.dirty = []
        self.loads += 1

    async def copy_back(self) -> None:
        """Copy every beat written over AXI since the last copy-back into the shadow."""
        dut = self.dut
        await ReadOnly()
        written, lo, hi = int(dut.ddr_written.value), int(dut.ddr_wr_lo.value), int(dut.ddr_wr_hi.value)
        await FallingEdge(dut.aclk)
        self.last_written = (lo, hi) if written else None
        if not written:
            return
        dut.ddr_dump_lo.value, dut.ddr_dump_hi.value = lo, hi
        await self._pulse(dut.ddr_dump)
        text = (self.workdir / DUMP_FILE).read_text()
        digits = "".join(t for line in text.splitlines() if (t := line.split("//")[0].strip())
                         and not t.startswith("@"))
        words = np.frombuffer(bytes.fromhex(digits), dtype=np.uint8).reshape(-1, self.nb)
        if len(words) != hi - lo + 1:
            raise RuntimeError(f"DDR dump has {len(words)} beats, expected {hi - lo + 1}")
        self.shadow[lo * self.nb:(hi + 1) * self.nb] = words[:, ::-1].reshape(-1)
        self.dumps += 1

    # -- registers (AXI4-Lite, pin level, sampled at the falling edge) --------------------------
    async def write_reg(self, offset: int, value: int) -> None:
        await self.flush()
        d, clk = self.dut, self.dut.aclk
        await FallingEdge(clk)
        d.s_axi_awaddr.value, d.s_axi_awprot.value, d.s_axi_awvalid.value = offset, 0, 1
        d.s_axi_wdata.value, d.s_axi_wstrb.value, d.s_axi_wvalid.value = int(value) & 0xFFFF_FFFF, 0xF, 1
        d.s_axi_bready.value = 1
        aw, w = True, True
        while aw or w:
            aw_hs, w_hs = aw and int(d.s_axi_awready.value), w and int(d.s_axi_wready.value)
            await RisingEdge(clk)
            if aw_hs:
                d.s_axi_awvalid.value, aw = 0, False
            if w_hs:
                d.s_axi_wvalid.value, w = 0, False
            await FallingEdge(clk)
        while not int(d.s_axi_bvalid.value):
            await FallingEdge(clk)
        await RisingEdge(clk)
        d.s_axi_bready.value = 0
        if offset == regmap.OFFSET["CTRL"] and value & 1:      # CTRL.start: the job will write DDR
            self.stale = True

    async def read_reg(self, offset: int) -> int:
        d, clk = self.dut, self.dut.aclk
        await FallingEdge(clk)
        d.s_axi_araddr.value, d.s_axi_arprot.value, d.s_axi_arvalid.value = offset, 0, 1
        d.s_axi_rready.value = 1
        while not int(d.s_axi_arready.value):
            await FallingEdge(clk)
        await RisingEdge(clk)
        d.s_axi_arvalid.value = 0
        await FallingEdge(clk)
        while not int(d.s_axi_rvalid.value):
            await FallingEdge(clk)
        data = int(d.s_axi_rdata.value)
        await RisingEdge(clk)
        d.s_axi_rready.value = 0
        if self.stale and int(d.irq.value):
            await self.copy_back()
            self.stale = False
        return data

    async def pause(self) -> None:
        """Return when ``irq`` is high (at once if it already is), or after ``poll_cycles``."""
        await ReadOnly()
        if int(self.dut.irq.value):
            return
        await First(RisingEdge(self.dut.irq), Timer(self.poll_cycles * self.period_ns, unit="ns"))


async def open_backend(dut, acc, *, ddr_bytes: int = DEFAULT_DDR_BYTES, period_ns: int = 10) -> FastSimBackend:
    """Clock and reset of a fast-simulation top (``heatvit_fastsim`` or ``heatvit_accel_fastsim``)
    and its :class:`FastSimBackend`."""
    Clock(dut.aclk, period_ns, unit="ns").start()
    for pin in ("s_axi_awvalid", "s_axi_wvalid", "s_axi_bready", "s_axi_arvalid", "s_axi_rready",
                "ddr_load", "ddr_dump"):
        getattr(dut, pin).value = 0
    dut.ddr_dump_lo.value = dut.ddr_dump_hi.value = 0
    dut.aresetn.value = 0
    await ClockCycles(dut.aclk, 5)
    dut.aresetn.value = 1
    await ClockCycles(dut.aclk, 3)      # the tops register aresetn once (heatvit.sim.fast_top)
    return FastSimBackend(dut, acc.shell, ddr_bytes=ddr_bytes, period_ns=period_ns)


async def start(dut, acc, *, ddr_bytes: int = DEFAULT_DDR_BYTES, period_ns: int = 10,
                max_polls: int | None = 1000):
    """Clock, reset and a :class:`GemmDriver` on ``heatvit_fastsim``: ``(backend, driver)``."""
    from heatvit.driver.core import GemmDriver
    backend = await open_backend(dut, acc, ddr_bytes=ddr_bytes, period_ns=period_ns)
    return backend, GemmDriver(backend, acc, max_polls=max_polls)
