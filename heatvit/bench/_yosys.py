"""Debian yosys (0.23) ``synth_xilinx -family xcup`` runs shared by the benchmarks.

Not a benchmark itself (the leading underscore keeps :func:`heatvit.bench.available` from
listing it).  ``LUTRAM_LUTS`` is how many LUTs each LUT-RAM/SRL primitive occupies, so every
bench counts LUTs the same way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

LUTRAM_LUTS = {"RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM32M": 4,
               "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X1S": 1, "RAM64X1S": 1,
               "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1}


def available() -> bool:
    return shutil.which("yosys") is not None


def version() -> str:
    return subprocess.run(["yosys", "-V"], capture_output=True, text=True).stdout.strip()


def cell_counts(component, top: str, *, timeout: int = 1800) -> dict[str, int]:
    """Cells by type after ``synth_xilinx -family xcup`` of ``component`` exported as ``top``."""
    from heatvit.sim.runner import export_verilog
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(export_verilog(component, top))
        stat = Path(tmp) / "stat.txt"
        script = f"read_verilog {src}; synth_xilinx -family xcup -top {top}; tee -q -o {stat} stat"
        subprocess.run(["yosys", "-q", "-p", script], check=True, capture_output=True, text=True,
                       timeout=timeout)
        return {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", stat.read_text(), re.M)}
