"""yosys resource counts of the systolic array alone: an interior PE, a column, whole arrays,
unpacked (one int8 MAC per DSP48E2) and packed (two).

Part of the resources bench (the leading underscore keeps it off the bench list).  Each subject
is exported with the DSP48E2 primitive (``PRIMITIVES``, as Vivado gets it), then
``synth_xilinx -family xcup -noiopad -flatten``; counts are DSP48E2, LUT, FF and CARRY cells.
An interior PE is one of row 1 (its column sum comes from the row above on PCIN), not
``pe_0_0``, whose cascade input is constant.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

from heatvit.config import GemmConfig

QUICK = [("pe", 4, 4, 1), ("pe", 4, 4, 2), ("array", 4, 4, 1), ("array", 4, 4, 2)]
FULL = QUICK + [("array", 16, 1, 1), ("array", 8, 2, 2), ("array", 8, 8, 1), ("array", 8, 8, 2),
                ("array", 8, 64, 1), ("array", 8, 64, 2), ("array", 16, 16, 1), ("array", 32, 32, 1),
                ("array", 16, 16, 2), ("array", 32, 32, 2)]
"""(kind, rows, cols, dsp_packing); kind ``pe`` is one interior PE of that array."""


def _component(kind: str, cfg: GemmConfig):
    from heatvit.rtl.gemm.pe import ProcessingElement
    from heatvit.rtl.gemm.systolic_array import SystolicArray
    return ProcessingElement(cfg, top=False) if kind == "pe" else SystolicArray(cfg)


def synth_cells(component, top: str, *, timeout: int = 3600) -> tuple[dict[str, int], float]:
    """Flattened cell counts of ``component`` with DSP48E2 primitives, and yosys' wall seconds."""
    from heatvit.rtl.gemm.dsp48e2 import PRIMITIVES
    from heatvit.sim.runner import export_verilog
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{top}.v"
        src.write_text(export_verilog(component, top, platform=PRIMITIVES))
        stat = Path(tmp) / "stat.txt"
        script = (f"read_verilog {src}; synth_xilinx -family xcup -noiopad -flatten -top {top}; "
                  f"tee -q -o {stat} stat")
        t0 = time.monotonic()
        subprocess.run(["yosys", "-q", "-p", script], check=True, capture_output=True, text=True,
                       timeout=timeout)
        seconds = time.monotonic() - t0
        cells = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", stat.read_text(), re.M)}
    return cells, seconds


def measure(subject: tuple[str, int, int, int]) -> dict:
    from .resources import count
    kind, rows, cols, packing = subject
    cfg = GemmConfig(rows=rows, cols=cols, dsp_packing=packing)
    cells, seconds = synth_cells(_component(kind, cfg), f"{kind}_{rows}x{cols}_p{packing}")
    res = count(cells)
    res["CARRY"] = cells.get("CARRY4", 0) + cells.get("CARRY8", 0)
    macs = packing if kind == "pe" else rows * cols
    return {"kind": kind, "rows": rows, "cols": cols, "dsp_packing": packing, "macs": macs,
            "resources": res, "per_mac": {k: round(v / macs, 3) for k, v in res.items()},
            "cells": cells, "synth_seconds": round(seconds, 1)}


def main(quick: bool = False, log=print) -> list[dict]:
    out = []
    for subject in (QUICK if quick else FULL):
        entry = measure(subject)
        r = entry["resources"]
        log(f"  {entry['kind']} {entry['rows']}x{entry['cols']} packing {entry['dsp_packing']}: "
            f"DSP {r['DSP48E2']}, LUT {r['LUT']}, FF {r['FF']}, CARRY {r['CARRY']} "
            f"({entry['synth_seconds']} s)")
        out.append(entry)
    return out


def table(entries: list[dict]) -> str:
    lines = ["| Subject | Array | MACs/DSP | MACs | DSP48E2 | LUT | FF | CARRY | LUT/MAC | FF/MAC |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        r, p = e["resources"], e["per_mac"]
        name = "interior PE" if e["kind"] == "pe" else "array"
        lines.append(f"| {name} | {e['rows']}x{e['cols']} | {e['dsp_packing']} | {e['macs']} | "
                     f"{r['DSP48E2']} | {r['LUT']} | {r['FF']} | {r['CARRY']} | {p['LUT']} | {p['FF']} |")
    return "\n".join(lines)
