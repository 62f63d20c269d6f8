"""Xilinx ZCU102 evaluation board (XCZU9EG-2FFVB1156E), in the style of amaranth-boards.

Pins and I/O standards from Xilinx's ZCU102 board files (UG1182); see ``shared/reference.md``.
The accelerator itself has no board I/O: it talks to the processing system over AXI, and the
Vivado project (:mod:`heatvit.platform.vivado`) builds it inside a block design.  This platform
serves the PL-only flow (Amaranth's ``build``, e.g. a blinky bring-up) and is the single source
of the pins the block design's XDC uses (the "done" LED).

Import as ``heatvit.platform.zcu102`` (never as a top-level ``platform``).
"""

from amaranth.build import Attrs, Clock, DiffPairs, Pins, PinsN, Resource, Subsignal
from amaranth.vendor import XilinxPlatform

__all__ = ["ZCU102Platform", "PART", "BOARD_PART", "LED_PINS", "BUTTON_PINS"]

PART = "xczu9eg-ffvb1156-2-e"
BOARD_PART = "xilinx.com:zcu102:part0:3.4"

# GPIO_LED_0..7 (bank 44, 3.3 V) and the five push buttons N/E/S/W/C (GPIO_SW_*).
LED_PINS = ["AG14", "AF13", "AE13", "AJ14", "AJ15", "AH13", "AH14", "AL12"]
BUTTON_PINS = {"n": "AG15", "e": "AE14", "s": "AE15", "w": "AF15", "c": "AG13"}


class ZCU102Platform(XilinxPlatform):
    device = "xczu9eg"
    package = "ffvb1156"
    speed = "2-e"
    default_clk = "clk125"
    default_rst = "rst"

    resources = [
        # 125 MHz fixed oscillator (CLK_125_P/N).
        Resource("clk125", 0, DiffPairs("G21", "F21", dir="i"), Clock(125e6),
                 Attrs(IOSTANDARD="LVDS_25")),
        # Si570 user clock (USER_SI570_P/N), 300 MHz at power-up.
        Resource("clk300", 0, DiffPairs("AL8", "AL7", dir="i"), Clock(300e6),
                 Attrs(IOSTANDARD="DIFF_SSTL12")),
        # CPU_RESET push button, active high.
        Resource("rst", 0, Pins("AM13", dir="i"), Attrs(IOSTANDARD="LVCMOS33")),
        *[Resource("led", i, Pins(pin, dir="o"), Attrs(IOSTANDARD="LVCMOS33"))
          for i, pin in enumerate(LED_PINS)],
        *[Resource("button", i, Pins(pin, dir="i"), Attrs(IOSTANDARD="LVCMOS33"))
          for i, pin in enumerate(BUTTON_PINS.values())],
        Resource("buttons", 0,
                 *[Subsignal(name, Pins(pin, dir="i")) for name, pin in BUTTON_PINS.items()],
                 Attrs(IOSTANDARD="LVCMOS33")),
    ]
    connectors = []

    def toolchain_program(self, products, name):
        """Program over JTAG with Vivado's hardware manager (``vivado`` on PATH)."""
        import subprocess
        with products.extract(f"{name}.bit") as bitstream_filename:
            tcl = (f"open_hw_manager; connect_hw_server; open_hw_target; "
                   f"set dev [lindex [get_hw_devices xczu9_0] 0]; current_hw_device $dev; "
                   f"set_property PROGRAM.FILE {{{bitstream_filename}}} $dev; program_hw_devices $dev; exit")
            subprocess.check_call(["vivado", "-mode", "batch", "-nojournal", "-nolog", "-source",
                                   "/dev/stdin"], input=tcl.encode())


def pin_constraints(resource: str, number: int = 0) -> list[tuple[str, str]]:
    """``(pin, IOSTANDARD)`` of a single-ended resource, for hand-written XDC (block designs)."""
    res = ZCU102Platform().lookup(resource, number)
    std = res.attrs["IOSTANDARD"]
    return [(pin, std) for pin in res.ios[0].names]
