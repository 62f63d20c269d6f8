"""Configuration of the accelerator shell: the AXI4 DMA master and the AXI4-Lite registers.

The ``shell`` section of :class:`heatvit.config.AcceleratorConfig` (one digest, one JSON file for
the RTL, the driver and the Vivado project).  A frozen dataclass like
:class:`heatvit.config.GemmConfig`: every constraint is checked in
``__post_init__`` with a :class:`ValueError` naming the parameter and its allowed range, derived
quantities are properties.  The defaults target the ZCU102: the DMA master on the PS's
``S_AXI_HP0_FPD`` (128-bit data, 49-bit addresses, of which the low 40 are used), the registers
on ``M_AXI_HPM0_FPD`` at ``0xA000_0000``, and a DMA window over the low 2 GiB of DDR.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .validate import check_int as _check_int

# AXI4 bursts may not cross a 4 KiB address boundary (AMBA AXI spec A3.4.1).
AXI_BOUNDARY = 4096
# The AXI4-Lite register file decodes this many address bits (a 4 KiB register window).
REG_ADDR_BITS = 12


@dataclass(frozen=True)
class ShellConfig:
    """The AXI shell around the accelerator."""

    data_width: int = 128
    """AXI4 master data width in bits (32, 64 or 128: what the Zynq MPSoC HP ports accept)."""
    addr_width: int = 40
    """AXI4 master address width in bits."""
    id_width: int = 1
    """AXI4 master ID width (the shell uses ID 0 for every transaction)."""
    window_base: int = 0
    """Lowest byte address the DMA may touch (4 KiB aligned)."""
    window_size: int = 0x8000_0000
    """Size in bytes of the DMA window (a multiple of 4 KiB); every buffer must lie inside it."""
    burst_len: int = 16
    """Longest AXI4 burst in beats (1..256); bursts are also split at 4 KiB boundaries."""
    read_outstanding: int = 2
    """Read bursts in flight; the read FIFO holds ``burst_len * read_outstanding`` beats, and a
    burst is requested only when its data has room, so ``rready`` never stalls the bus."""
    watchdog_cycles: int = 1 << 16
    """A job aborts with ``TIMEOUT`` after this many cycles without any DMA or engine progress."""
    reg_base: int = 0xA000_0000
    """Address of the register file on the PS's ``M_AXI_HPM0_FPD`` (used by the Vivado script
    and the board driver; the hardware itself decodes only the low 12 bits)."""

    def __post_init__(self):
        own = "ShellConfig"
        _check_int(own, "data_width", self.data_width, 32, 128)
        if self.data_width not in (32, 64, 128):
            raise ValueError(f"{own}.data_width = {self.data_width} is not supported; allowed 32, 64, 128")
        _check_int(own, "addr_width", self.addr_width, 32, 64)
        _check_int(own, "id_width", self.id_width, 1, 16)
        _check_int(own, "burst_len", self.burst_len, 1, 256)
        _check_int(own, "read_outstanding", self.read_outstanding, 1, 16)
        _check_int(own, "watchdog_cycles", self.watchdog_cycles, 64, (1 << 32) - 1)
        top = 1 << self.addr_width
        _check_int(own, "window_base", self.window_base, 0, top - AXI_BOUNDARY)
        _check_int(own, "window_size", self.window_size, AXI_BOUNDARY, top - self.window_base)
        for name in ("window_base", "window_size"):
            if getattr(self, name) % AXI_BOUNDARY:
                raise ValueError(f"{own}.{name} = {getattr(self, name):#x} is not a multiple of "
                                 f"{AXI_BOUNDARY:#x} (4 KiB)")
        _check_int(own, "reg_base", self.reg_base, 0, (1 << 48) - 1)
        if self.reg_base % AXI_BOUNDARY:
            raise ValueError(f"{own}.reg_base = {self.reg_base:#x} is not 4 KiB aligned")

    # -- derived quantities ------------------------------------------------------------------
    @property
    def data_bytes(self) -> int:
        """Bytes per AXI4 beat; every buffer address must be a multiple of this."""
        return self.data_width // 8

    @property
    def size_code(self) -> int:
        """``AxSIZE``: log2 of the bytes per beat."""
        return self.data_bytes.bit_length() - 1

    @property
    def window_end(self) -> int:
        return self.window_base + self.window_size

    @property
    def read_fifo_depth(self) -> int:
        return self.burst_len * self.read_outstanding

    def check_gemm(self, gemm) -> None:
        """Raise ``ValueError`` unless the shell can carry ``gemm``'s words in whole bytes."""
        for name in ("act_bits", "weight_bits"):
            if getattr(gemm, name) != 8:
                raise ValueError(f"GemmConfig.{name} = {getattr(gemm, name)}: the shell moves int8 "
                                 f"operands in byte lanes; allowed 8")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

