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
import time
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


REGISTERED = "t:FD* t:SRL* t:RAMB* t:DSP48E2 t:BUFG*"
"""Cells whose outputs are registered: ``ltp`` counts every cell it passes, so these are deleted
before it runs and its longest path is then register to register (or port to register)."""


def logic_levels(component, top: str, *, platform=None, timeout: int = 3600) -> dict:
    """Longest combinational path of ``component`` exported as ``top``: ``synth_xilinx -family
    xcup -noiopad -flatten``, the registered cells (:data:`REGISTERED`) deleted, then ``ltp
    -noff``.  Returns the path's cell count, its LUTs (the LUT levels), its carry-chain cells,
    its other cells (MUXF7/8, LUT-RAM reads), the cells in path order, the design's cell counts
    and yosys' wall seconds.  The ports count as registers (each component's inputs and
    outputs are registered by its neighbours in the designs that use it)."""
    from heatvit.sim.runner import export_verilog
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / f"{top}.v").write_text(export_verilog(component, top, platform=platform))
        script = (f"read_verilog {top}.v; synth_xilinx -family xcup -noiopad -flatten -top {top}; "
                  f"tee -q -o stat.txt stat; delete {REGISTERED}; "
                  f"tee -q -o luts.txt select -list t:LUT*; tee -q -o ltp.txt ltp -noff")
        t0 = time.monotonic()
        res = subprocess.run(["yosys", "-q", "-p", script], cwd=work, capture_output=True, text=True,
                             timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"yosys failed on {top} ({res.returncode}):\n{res.stderr[-2000:]}")
        seconds = time.monotonic() - t0
        cells = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", (work / "stat.txt").read_text(), re.M)}
        path = longest_path((work / "ltp.txt").read_text(), (work / "luts.txt").read_text())
    return {**path, "cells_total": cells, "synth_seconds": round(seconds, 1)}


def longest_path(ltp: str, luts: str) -> dict:
    """``ltp -noff``'s report -> its length in cells, how many are LUTs (``luts``: the output of
    ``select -list t:LUT*``), carry-chain cells and others, and the cells in order."""
    found = re.search(r"length=(\d+)", ltp)
    if found is None:                       # no combinational cell left at all
        return {"cells": 0, "luts": 0, "carry": 0, "other": 0, "path": []}
    lut_names = {ln.strip().split("/")[-1] for ln in luts.splitlines() if ln.strip()}
    via = re.findall(r"\(via (\S+)\)", ltp)
    kinds = ["LUT" if v in lut_names else ("CARRY" if "carry" in v.lower() else "other") for v in via]
    return {"cells": int(found.group(1)), "luts": kinds.count("LUT"), "carry": kinds.count("CARRY"),
            "other": kinds.count("other"), "path": via}
