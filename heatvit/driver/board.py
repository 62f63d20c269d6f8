"""PYNQ back end for the ZCU102 (``pynq`` is imported only here, on first use).

Usage on the board (files from the generated Vivado project: ``heatvit.bit`` + ``heatvit.hwh``)::

    from heatvit.driver.board import open_board
    drv = open_board("heatvit.bit")             # AcceleratorConfig from heatvit_config.json beside it
    y = drv.gemm(a, w, bias, mult, shift)       # blocking; raises HardwareError on a hardware error
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from heatvit.presets import load_config
from heatvit.shell_config import ShellConfig

from .core import GemmDriver


class PynqBackend:
    """Registers through ``pynq.MMIO`` at ``AcceleratorConfig.shell.reg_base``; buffers from ``pynq.allocate``
    (physically contiguous, so the DMA sees one linear range)."""

    def __init__(self, shell: ShellConfig, bitfile: str | Path | None = None, *, poll_s: float = 1e-5):
        import pynq  # noqa: PLC0415 (board only)
        self.pynq = pynq
        self.shell = shell
        self.overlay = pynq.Overlay(str(bitfile)) if bitfile is not None else None
        self.mmio = pynq.MMIO(shell.reg_base, 0x1000)
        self.poll_s = poll_s
        self.buffers = {}

    async def read_reg(self, offset: int) -> int:
        return int(self.mmio.read(offset))

    async def write_reg(self, offset: int, value: int) -> None:
        self.mmio.write(offset, int(value))

    def alloc(self, nbytes: int) -> int:
        import numpy as np
        # Round up to whole beats and 4 KiB so the buffer's address is beat aligned.
        buf = self.pynq.allocate(shape=(max(nbytes, 1) + 4095) // 4096 * 4096, dtype=np.uint8)
        addr = int(buf.physical_address)
        self.buffers[addr] = buf
        return addr

    def _find(self, addr: int, nbytes: int):
        for base, buf in self.buffers.items():
            if base <= addr and addr + nbytes <= base + buf.nbytes:
                return buf, addr - base
        raise ValueError(f"address {addr:#x} (+{nbytes}) is not inside a buffer this driver allocated")

    def write_mem(self, addr: int, data: bytes) -> None:
        import numpy as np
        buf, off = self._find(addr, len(data))
        buf[off:off + len(data)] = np.frombuffer(data, dtype=np.uint8)
        buf.flush()

    def read_mem(self, addr: int, nbytes: int) -> bytes:
        buf, off = self._find(addr, nbytes)
        buf.invalidate()
        return bytes(buf[off:off + nbytes])

    async def pause(self) -> None:
        time.sleep(self.poll_s)


class BlockingDriver:
    """:class:`GemmDriver` with every coroutine method run to completion (for board scripts)."""

    def __init__(self, driver: GemmDriver):
        self.driver = driver

    def __getattr__(self, name):
        attr = getattr(self.driver, name)
        if asyncio.iscoroutinefunction(attr):
            return lambda *a, **kw: asyncio.run(attr(*a, **kw))
        return attr


def open_board(bitfile: str | Path, config_json: str | Path | None = None, *,
               max_polls: int = 1_000_000) -> BlockingDriver:
    """Load the overlay and return a blocking driver; checks MAGIC and CONFIG_ID."""
    bitfile = Path(bitfile)
    cfg_path = Path(config_json) if config_json else bitfile.with_name("heatvit_config.json")
    acc = load_config(cfg_path)
    drv = BlockingDriver(GemmDriver(PynqBackend(acc.shell, bitfile), acc, max_polls=max_polls))
    drv.check_identity()
    return drv
