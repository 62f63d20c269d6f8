"""Register map of the accelerator shell's AXI4-Lite slave (32-bit registers, byte offsets).

Shared by the gateware (rtl/shell/regs.py), the host driver and docs/shell.md.  No Amaranth
imports: the board driver imports this on a PYNQ image.
"""

from __future__ import annotations

MAGIC_VALUE = 0x48564954   # "HVIT"
VERSION_VALUE = 0x0001_0001  # major 1, minor 1 (1.1: ERROR_FLAGS; ERROR prefers corrupting errors)

# name: (offset, access, description)
REGISTERS: dict[str, tuple[int, str, str]] = {
    "MAGIC":       (0x000, "ro", "0x48564954 ('HVIT')"),
    "VERSION":     (0x004, "ro", "major << 16 | minor"),
    "CONFIG_ID":   (0x008, "ro", "first 8 hex digits of AcceleratorConfig.digest()"),
    "GEOMETRY":    (0x00C, "ro", "rows | cols << 8 | AXI beat bytes << 16 | (burst_len - 1) << 24"),
    "CTRL":        (0x010, "wo", "bit 0: start (write 1); reads 0"),
    "STATUS":      (0x014, "ro", "bit 0 busy, bit 1 done, bit 2 error, bits 15:8 error code"),
    "ERROR":       (0x018, "ro", "the job's error code (heatvit.errors): the first one raised since the last "
                                 "accepted start, except that START_WHILE_BUSY gives way to any later code"),
    "CYCLES":      (0x01C, "ro", "clock cycles of the last job, start to last write response"),
    "M":           (0x020, "rw", "rows of A and Y (tokens)"),
    "K":           (0x024, "rw", "reduction length"),
    "N":           (0x028, "rw", "output channels"),
    "ACT_LO":      (0x030, "rw", "activation buffer address, bits 31:0"),
    "ACT_HI":      (0x034, "rw", "activation buffer address, bits 63:32"),
    "WGT_LO":      (0x038, "rw", "weight buffer address, bits 31:0"),
    "WGT_HI":      (0x03C, "rw", "weight buffer address, bits 63:32"),
    "PRM_LO":      (0x040, "rw", "parameter buffer address, bits 31:0"),
    "PRM_HI":      (0x044, "rw", "parameter buffer address, bits 63:32"),
    "OUT_LO":      (0x048, "rw", "output buffer address, bits 31:0"),
    "OUT_HI":      (0x04C, "rw", "output buffer address, bits 63:32"),
    "WIN_BASE_LO": (0x050, "ro", "DMA window base, bits 31:0"),
    "WIN_BASE_HI": (0x054, "ro", "DMA window base, bits 63:32"),
    "WIN_SIZE_LO": (0x058, "ro", "DMA window size in bytes, bits 31:0"),
    "WIN_SIZE_HI": (0x05C, "ro", "DMA window size in bytes, bits 63:32"),
    "MAX_M":       (0x060, "ro", "GemmConfig.max_m"),
    "MAX_K":       (0x064, "ro", "GemmConfig.max_k"),
    "MAX_N":       (0x068, "ro", "GemmConfig.max_n"),
    "ACT_WORDS":   (0x06C, "ro", "GemmConfig.act_buffer_words"),
    "WATCHDOG":    (0x070, "ro", "AcceleratorConfig.shell.watchdog_cycles"),
    "ERROR_FLAGS": (0x074, "ro", "bit n set: error code n was raised since the last accepted start"),
}

OFFSET = {name: off for name, (off, _, _) in REGISTERS.items()}

STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1
STATUS_ERROR = 1 << 2
STATUS_CODE_SHIFT = 8

# Buffer name -> (low register, high register); the order the driver and docs list them in.
BUFFERS = {"act": ("ACT_LO", "ACT_HI"), "wgt": ("WGT_LO", "WGT_HI"),
           "prm": ("PRM_LO", "PRM_HI"), "out": ("OUT_LO", "OUT_HI")}

PARAM_RECORD_BYTES = 8
"""One output channel's parameters in DDR: bias int32 (bytes 0-3), mult uint (bytes 4-6, low
``mult_bits`` used), shift uint8 (byte 7, low ``shift_bits`` used), all little-endian."""


def config_id(digest: str) -> int:
    """The CONFIG_ID register value of an ``AcceleratorConfig.digest()``."""
    return int(digest[:8], 16)


def geometry(rows: int, cols: int, data_bytes: int, burst_len: int) -> int:
    return rows | cols << 8 | data_bytes << 16 | (burst_len - 1) << 24


def markdown_table() -> str:
    """The register map as a Markdown table (docs/shell.md embeds it; a test keeps them equal)."""
    lines = ["| Offset | Name | Access | Meaning |", "|---|---|---|---|"]
    for name, (off, acc, desc) in REGISTERS.items():
        cell = desc.replace("|", "\\|")   # a literal | would end the Markdown cell
        lines.append(f"| `0x{off:03X}` | `{name}` | {acc} | {cell} |")
    return "\n".join(lines)
