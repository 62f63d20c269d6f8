"""Resource estimate of the accelerator (shell + GEMM engine) from Debian's yosys.

``yosys synth_xilinx -family xcup -noiopad`` of the exported ``heatvit_shell`` (what Vivado gets
as the module reference, without I/O buffers), counted as DSP48E2 / LUT / FF / BRAM36 beside
the XCZU9EG's totals.  Written to ``build/bench/resources.json`` for the default configuration
and for the largest array that fits: candidates from 64 x 64 down (each derived with
``AcceleratorConfig.with_array``), each predicted from the default's measured per-PE and fixed
costs, the first predicted under ``MAX_UTILIZATION`` synthesized and kept if its measured counts
are under it too.  Quick mode synthesizes a tiny config (:func:`quick_config`: 2 x 2 array,
32-bit AXI) and only predicts the larger arrays derived from it.

These are yosys estimates before place and route; the same flow for every configuration.  The
export instantiates the DSP48E2 primitive (one per PE, ``GemmConfig.dsp_packing`` int8 MACs
each), which yosys keeps as a cell.  ``gemm_array`` in the JSON: the systolic array alone (an
interior PE, a column, whole arrays, packed vs unpacked; :mod:`._gemm_array`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from heatvit.config import AcceleratorConfig
from heatvit.presets import PRESETS
from heatvit.shell_config import ShellConfig

from . import _gemm_array as gemm_array
from . import _yosys
from ._yosys import LUTRAM_LUTS

PART = "xczu9eg-ffvb1156-2-e"
TOTALS = {"DSP48E2": 2520, "LUT": 274080, "FF": 548160, "BRAM36": 912}
MAX_UTILIZATION = 0.8
"""A configuration "fits" when every resource is at most this fraction of the device (headroom
for the PS interconnect, routing and timing closure)."""



def count(cells: dict[str, int]) -> dict[str, float]:
    """Cell counts -> the four device resources (LUT includes LUT-RAM and SRLs)."""
    lut = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    lutram = sum(v * LUTRAM_LUTS[k] for k, v in cells.items() if k in LUTRAM_LUTS)
    ff = sum(v for k, v in cells.items() if re.fullmatch(r"FD[RSCP]E(_1)?", k))
    bram = cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2
    return {"DSP48E2": cells.get("DSP48E2", 0), "LUT": lut + lutram, "LUT_as_memory": lutram,
            "FF": ff, "BRAM36": bram}


def utilization(res: dict) -> dict[str, float]:
    return {k: res[k] / TOTALS[k] for k in TOTALS}


def _load_stat(path: Path) -> dict:
    """yosys 0.23's ``stat -json -top`` prints the design hierarchy as plain text inside the
    JSON; every JSON line has a quote or a bracket, so the other lines are dropped."""
    lines = [ln for ln in path.read_text().splitlines() if re.search(r'["{}\[\]]', ln)]
    return json.loads("\n".join(lines))


def _stat_cells(stat: dict) -> dict[str, int]:
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return {k: int(v) for k, v in design["num_cells_by_type"].items()}


def synthesize(acc: AcceleratorConfig, work: Path) -> dict:
    """Run yosys on one configuration; returns counts, per-PE counts and the wall time."""
    from heatvit.rtl.shell.wrapper import CORE_NAME, export
    if shutil.which("yosys") is None:
        raise RuntimeError("yosys not found: apt-get install yosys (Debian's 0.23 is what CI uses)")
    work.mkdir(parents=True, exist_ok=True)
    core, _ = export(acc, primitives=True)
    (work / f"{CORE_NAME}.v").write_text(core)
    script = (f"read_verilog {CORE_NAME}.v; synth_xilinx -family xcup -noiopad -top {CORE_NAME}; "
              f"tee -q -o stat.json stat -json -top {CORE_NAME}")
    seconds, _ = _yosys.run_logged(script, work, f"the {CORE_NAME} core")
    return summarize(work, seconds)


def summarize(work: Path, seconds: float) -> dict:
    """Counts from a finished yosys run's ``stat.json`` in ``work``."""
    stat = _load_stat(work / "stat.json")
    cells = _stat_cells(stat)
    pe_res = None
    for pe in ("pe_1_0", "pe_0_0"):   # an interior PE (its PCIN is live) if the array has one
        # The PE's module and its submodules (the DSP48E2 wrapper holds the cell).
        mods = [m for name, m in stat["modules"].items() if re.search(rf"\.{pe}(\.|$)", name.strip("\\"))]
        if mods:
            cells_pe: dict[str, int] = {}
            for mod in mods:
                for k, v in mod["num_cells_by_type"].items():
                    if not k.startswith("$paramod") and not k.startswith("\\"):
                        cells_pe[k] = cells_pe.get(k, 0) + int(v)
            pe_res = count(cells_pe)
            break
    out = count(cells)
    cpu = _yosys.log_cpu_seconds((work / "yosys.log").read_text()) if (work / "yosys.log").exists() else None
    return {"resources": out, "utilization": utilization(out), "per_pe": pe_res,
            "cells": cells, "synth_seconds": round(seconds, 1),
            "synth_cpu_seconds": None if cpu is None else round(cpu, 1),
            "fits": all(u <= MAX_UTILIZATION for u in utilization(out).values())}


def predict(default: dict, rows0: int, cols0: int, rows: int, cols: int) -> dict[str, float]:
    """Scale the default's measured counts: PE costs by the PE count, the rest kept (and the
    per-column/row buffers, a minor term, scaled by the array edge)."""
    pe = default["per_pe"]
    total = default["resources"]
    n0, n = rows0 * cols0, rows * cols
    edge = (rows + cols) / (rows0 + cols0)
    out = {}
    for k in TOTALS:
        fixed = total[k] - pe[k] * n0
        out[k] = pe[k] * n + fixed * max(1.0, edge)
    return out


def candidates(rows0: int, cols0: int):
    """Array sizes ``(rows, cols)`` larger than ``rows0`` x ``cols0``, largest PE count first."""
    sizes = [(r, c) for r in (64, 32, 16) for c in (64, 32, 16)]
    sizes.sort(key=lambda rc: (-(rc[0] * rc[1]), -rc[0]))
    return [(r, c) for r, c in sizes if r * c > rows0 * cols0]


# -- the whole accelerator (rtl/accel/top.py) ---------------------------------------------------------

ACCEL_TOP = "heatvit_accel"
SELECTOR_MODULES = ("exec_select", "exec_gemm.output.router.sigmoid_unit")
"""The selector hardware's own modules (instance paths under the top): the selector executor
(``SelectorExecutor``: SELECT's score combiner + token-selector control unit and MEAN, one
module, one reciprocal; it also hosts COPY, whose few hundred LUTs the build without selectors
has as ``exec_copy``, so they cancel in the with/without difference), the epilogue's
``REQ8_SIGMOID`` row serializer (``SerialAct``; the sigmoid runs on the GELU unit's lane 0, a
``GeluSigmoidUnit``, whose extra LUTs show in the with/without difference, not here).
``AcceleratorConfig.selectors = False`` leaves exactly these out (and the muxing that selects
them, and builds the plain GELU unit)."""


def accelerator_verilog(acc: AcceleratorConfig) -> str:
    """``rtl.accel.top.Accelerator(acc)`` as Verilog (top ``heatvit_accel``), DSP48E2 primitives
    instantiated (as Vivado gets it), prepared for yosys (:func:`._yosys.prepare`: all-zero
    memory initialisers dropped, many-port ROMs marked as logic)."""
    from heatvit.rtl.accel.top import Accelerator
    from heatvit.rtl.gemm.dsp48e2 import PRIMITIVES
    from heatvit.sim.runner import export_verilog
    return _yosys.prepare(export_verilog(Accelerator(acc), ACCEL_TOP, platform=PRIMITIVES))


def _unit(path: str) -> str:
    """A module's instance path -> the unit it is counted under in ``units``."""
    parts = path.lstrip("\\").split(".")[1:]
    if not parts:
        return "top (registers, dispatch, job control)"
    if parts[0] == "exec_gemm" and len(parts) > 1:
        if parts[1] == "output" and len(parts) > 2:
            return ".".join(parts[:4] if parts[2] == "router" and len(parts) > 3 else parts[:3])
        return ".".join(parts[:2])
    return parts[0]


def synthesize_accelerator(acc: AcceleratorConfig, name: str, *, jobs: int = 1, log=print,
                           verilog: str | None = None, also: tuple = ()) -> dict:
    """Hierarchical yosys (:func:`._yosys.hier_cell_counts`) of the whole accelerator: the four
    resources, the device share, resources per unit and of the selector modules
    (:data:`SELECTOR_MODULES`), the Verilog's SHA-256 and yosys' time.  ``verilog``: its
    :func:`accelerator_verilog` if already exported; ``also``: other designs synthesized in
    the same pool (:func:`._yosys.hier_cell_counts`)."""
    import hashlib

    t0 = time.monotonic()
    verilog = accelerator_verilog(acc) if verilog is None else verilog
    export_s = time.monotonic() - t0
    r = _yosys.hier_cell_counts(verilog, ACCEL_TOP, jobs=jobs, log=log, also=also)
    units: dict[str, dict[str, int]] = {}
    selector: dict[str, dict[str, int]] = {}
    for path, mod in r["per_module"].items():
        for bucket, key in ((units, _unit(path)),
                            (selector, next((s for s in SELECTOR_MODULES
                                             if (p := path.lstrip("\\")) == f"{ACCEL_TOP}.{s}"
                                             or p.startswith(f"{ACCEL_TOP}.{s}.")), None))):
            if key is None:
                continue
            cells = bucket.setdefault(key, {})
            for t, v in mod["cells"].items():
                cells[t] = cells.get(t, 0) + mod["instances"] * v
    res = count(r["cells"])
    deepest = r["longest_paths"]["deepest"]
    return {"name": name, "selectors": acc.selectors, "config": acc.to_dict(),
            "logic_levels": {"levels": deepest[0]["levels"] if deepest else None,
                             "module": deepest[0]["module"] if deepest else None, **r["longest_paths"]},
            "verilog_sha256": hashlib.sha256(verilog.encode()).hexdigest(), "verilog_bytes": len(verilog),
            "resources": res, "utilization": utilization(res), "cells": r["cells"],
            "units": {k: count(v) for k, v in sorted(units.items())},
            "selector_modules": {k: count(v) for k, v in selector.items()},
            "modules": r["modules"], "instances": r["instances"], "synthesized_now": r["synthesized_now"],
            "export_s": round(export_s, 1), "synth_wall_s_now": r["wall_s_now"],
            "synth_cpu_s_now": r["cpu_s_now"], "synth_cpu_s": r["cpu_s_all"]}


def selector_share(with_sel: dict, without: dict) -> dict:
    """What the selector hardware costs: the two builds' difference, its share of the whole
    accelerator, and the selector modules' own cells (``own``: DSPs of their own)."""
    a, b = with_sel["resources"], without["resources"]
    own = {k: sum(m[k] for m in with_sel["selector_modules"].values()) for k in TOTALS}
    return {"difference": {k: a[k] - b[k] for k in TOTALS},
            "share_of_accelerator": {k: (a[k] - b[k]) / a[k] if a[k] else 0.0 for k in TOTALS},
            "own_modules": own, "own_modules_share": {k: own[k] / a[k] if a[k] else 0.0 for k in TOTALS},
            "targets": {"own_dsp": 0, "lut_share_max": 0.05},
            "meets": {"own_dsp": own["DSP48E2"] == 0, "lut_share": (a["LUT"] - b["LUT"]) / a["LUT"] <= 0.05}}


def flat_cell_counts(verilog: str, top: str, work: Path) -> dict:
    """One yosys run of the whole design (``synth_xilinx`` does not flatten: the reference that
    :func:`._yosys.hier_cell_counts` must equal): the design's cells by type and the time."""
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{top}.v").write_text(verilog)
    script = f"read_verilog {top}.v; {_yosys.SYNTH} -top {top}; tee -q -o stat.json stat -json -top {top}"
    wall, cpu = _yosys.run_logged(script, work, f"the whole design {top}")
    return {"cells": _stat_cells(_load_stat(work / "stat.json")), "wall_s": round(wall, 1),
            "cpu_s": None if cpu is None else round(cpu, 1)}


def check_config() -> AcceleratorConfig:
    """The small accelerator the hierarchical count is checked on against one whole-design run:
    a 4 x 4 array, 8 tokens of 16 channels, a 32-bit AXI master (testbench ``tiny_acc``)."""
    from heatvit.accel_config import BufferConfig
    acc = AcceleratorConfig().with_array(4, 4)
    return dataclasses.replace(acc, buffers=BufferConfig(max_tokens=8, max_dim=16, max_hidden=16),
                               shell=ShellConfig(data_width=32, burst_len=4))


def hier_check(acc: AcceleratorConfig, work: Path) -> dict:
    """:func:`._yosys.hier_cell_counts` vs :func:`flat_cell_counts` of the same Verilog: every
    cell type's count (``equal``), and the four resources of each."""
    verilog = accelerator_verilog(acc)
    flat = flat_cell_counts(verilog, ACCEL_TOP, work)
    hier = _yosys.hier_cell_counts(verilog, ACCEL_TOP, cache=work / "cache")
    diff = {t: hier["cells"].get(t, 0) - flat["cells"].get(t, 0)
            for t in sorted(set(hier["cells"]) | set(flat["cells"]))
            if hier["cells"].get(t, 0) != flat["cells"].get(t, 0)}
    return {"config": acc.to_dict(), "equal": not diff, "difference_hier_minus_flat": diff,
            "flat": count(flat["cells"]), "hier": count(hier["cells"]),
            "flat_cpu_s": flat["cpu_s"], "hier_cpu_s": hier["cpu_s_all"], "modules": hier["modules"],
            "instances": hier["instances"]}


def module_census(acc: AcceleratorConfig) -> dict:
    """No yosys: the accelerator's Verilog with and without selectors split into modules, and how
    many distinct ones a hierarchical run would synthesize (quick mode's check of the export,
    the selector switch and the module keys)."""
    out = {}
    for name, a in (("with selectors", acc), ("without selectors", dataclasses.replace(acc, selectors=False))):
        _, _, counts, todo, _ = _yosys._design(accelerator_verilog(a), ACCEL_TOP)
        sel = [p for p in counts if any(p.lstrip("\\").startswith(f"{ACCEL_TOP}.{s}") for s in SELECTOR_MODULES)]
        out[name] = {"instances": sum(counts.values()), "distinct_modules": len(todo), "selector_instances": len(sel)}
    if out["without selectors"]["selector_instances"] or not out["with selectors"]["selector_instances"]:
        raise RuntimeError(f"selector switch: module census {out}")
    return out


def accelerator_builds(acc: AcceleratorConfig, preset: str, *, jobs: int = 1, log=print,
                       verilogs: tuple[str, str] | None = None) -> dict:
    """The whole accelerator at ``acc`` with and without the selector hardware, hierarchical
    yosys per module (cached, :func:`._yosys.hier_cell_counts`): ``builds`` (two
    :func:`synthesize_accelerator` results) and ``selector`` (:func:`selector_share`).
    ``verilogs``: the two builds' :func:`accelerator_verilog`, if already exported (at the board
    size each export takes minutes)."""
    variants = (("with selectors", acc), ("without selectors", dataclasses.replace(acc, selectors=False)))
    if verilogs is None:
        verilogs = []
        for name, a in variants:
            t0 = time.monotonic()
            verilogs.append(accelerator_verilog(a))
            log(f"  exported the accelerator {name} ({preset} config) in {time.monotonic() - t0:.0f} s", flush=True)
    builds = []
    for i, (name, a) in enumerate(variants):
        log(f"  accelerator {name} ({preset} config): yosys per module", flush=True)
        b = synthesize_accelerator(a, name, jobs=jobs, verilog=verilogs[i],
                                   also=tuple((v, ACCEL_TOP) for v in verilogs[i + 1:]),
                                   log=lambda line: log(line, flush=True))
        log(f"  accelerator {name}: {b['resources']} ({b['synthesized_now']} of {b['modules']} modules "
            f"synthesized now, {b['synth_cpu_s']} s CPU in all); longest path {b['logic_levels']['levels']} "
            f"LUT levels in {b['logic_levels']['module']}", flush=True)
        builds.append(b)
    from .perf import rtl_digest
    return {"preset": preset, "rtl_digest": rtl_digest(), "builds": builds, "selector": selector_share(*builds)}


def accelerator(quick: bool, work: Path, jobs: int = 1) -> dict:
    """Full mode: the hierarchical-vs-whole-design check on :func:`check_config`, then the whole
    accelerator with and without the selector hardware at the default config (the per-module
    cache makes a rerun of unchanged Verilog cheap).  Quick mode (CI): no yosys run, the
    :func:`module_census` of :func:`check_config`."""
    out = {"flow": "hierarchical synth_xilinx -family xcup -noiopad: each distinct module once, its "
                   "children as blackboxes, counted per instance (heatvit.bench._yosys.hier_cell_counts)"}
    if quick:
        out["census"] = module_census(check_config())
        out["skipped"] = ("quick mode: no yosys run of the accelerator (the 4x4 check and the default "
                          "config run in full mode)")
        print(f"  accelerator module census at 4x4: {out['census']}", flush=True)
        return out
    out["check"] = c = hier_check(check_config(), work / "check")
    print(f"  hierarchical vs whole-design run at 4x4: {'equal' if c['equal'] else 'DIFFERENT ' + str(c['difference_hier_minus_flat'])}"
          f" (whole {c['flat_cpu_s']} s CPU, hierarchical {c['hier_cpu_s']} s)", flush=True)
    r = accelerator_builds(AcceleratorConfig(), "default", jobs=jobs)
    out["builds"], out["selector"], out["rtl_digest"] = r["builds"], r["selector"], r["rtl_digest"]
    return out


BOARD_PRESET = "zcu102"
"""The board configuration whose whole accelerator ``HEATVIT_RESOURCES=board`` synthesizes
(written to ``resources.json`` as ``board``; the perf bench reads it from there)."""


def board(jobs: int = 1, log=print, verilogs: tuple[str, str] | None = None) -> dict:
    """The :data:`BOARD_PRESET` preset's whole accelerator with and without selectors
    (:func:`accelerator_builds`; hours of CPU the first time, cached per module after)."""
    return accelerator_builds(PRESETS[BOARD_PRESET], BOARD_PRESET, jobs=jobs, log=log, verilogs=verilogs)


def write(out_dir: Path, entries: list[dict], arrays: list[dict] | None = None, *, quick: bool = False,
          predicted_only: list[dict] | None = None, accel: dict | None = None) -> Path:
    doc = {"tool": _yosys.version(), "flow": "synth_xilinx -family xcup -noiopad", "part": PART,
           "device_totals": TOTALS, "max_utilization": MAX_UTILIZATION, "quick": quick,
           "configs": entries, "gemm_array": arrays or []}
    if predicted_only:
        doc["predicted_only"] = predicted_only
    if accel is not None:
        doc["accelerator"] = accel
    out = out_dir / "resources.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return out


def quick_config() -> AcceleratorConfig:
    """The smallest useful shell for quick mode: the ``small`` preset on a 2 x 2 array with small
    buffers and a 32-bit AXI master with short bursts (yosys: 42 s of CPU, measured)."""
    acc = PRESETS["small"].with_gemm(rows=2, cols=2, act_buffer_words=64, max_m=16, max_k=64, max_n=16,
                                     weight_fifo_depth=4, out_fifo_depth=4)
    return dataclasses.replace(acc, shell=ShellConfig(data_width=32, burst_len=4, read_outstanding=1,
                                                      addr_width=32, window_size=0x1000_0000))


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    """Full: the default config's shell, then the largest array that fits, the systolic arrays,
    and the whole accelerator (:func:`accelerator`).  Quick: :func:`quick_config` synthesized,
    every larger array derived from it and predicted, none synthesized, and the accelerator's
    hierarchical-count check only.  ``HEATVIT_RESOURCES=accelerator``: the accelerator part
    alone, written into an existing ``resources.json`` (its other parts kept);
    ``HEATVIT_RESOURCES=board``: the board preset's whole accelerator (:func:`board`) alone,
    written there as ``board`` (what the perf bench reports).  ``HEATVIT_YOSYS_JOBS``: yosys
    runs at once (default 1)."""
    work_root = Path(tempfile.mkdtemp(prefix="heatvit-yosys-"))
    part = os.environ.get("HEATVIT_RESOURCES")
    if part in ("accelerator", "board"):
        jobs = int(os.environ.get("HEATVIT_YOSYS_JOBS", "1"))
        if part == "board" and quick:
            raise ValueError("HEATVIT_RESOURCES=board synthesizes the board preset: not in quick mode")
        result = accelerator(quick, work_root / "accel", jobs=jobs) if part == "accelerator" else board(jobs)
        out = out_dir / "resources.json"
        doc = json.loads(out.read_text()) if out.exists() else {"tool": _yosys.version(), "part": PART,
                                                                 "device_totals": TOTALS, "quick": quick}
        doc[part] = result
        out.write_text(json.dumps(doc, indent=1) + "\n")
        shutil.rmtree(work_root, ignore_errors=True)
        return [out]
    acc = quick_config() if quick else AcceleratorConfig()
    name = "quick" if quick else "default"
    entries, predicted_only = [], []
    print(f"yosys synth_xilinx of the {name} config (this takes minutes) in {work_root}", flush=True)
    base = synthesize(acc, work_root / name)
    entries.append({"name": name, "config": acc.to_dict(), **base})
    print(f"  {name}: {base['resources']} in {base['synth_seconds']} s", flush=True)
    if base["per_pe"]:
        g0 = acc.gemm
        for rows, cols in candidates(g0.rows, g0.cols):
            big = acc.with_array(rows, cols)
            pred = predict(base, g0.rows, g0.cols, rows, cols)
            if any(pred[k] / TOTALS[k] > MAX_UTILIZATION for k in TOTALS):
                print(f"  {rows}x{cols}: predicted {pred}: does not fit, skipped", flush=True)
                continue
            if quick:
                predicted_only.append({"array": [rows, cols], "config": big.to_dict(), "predicted": pred})
                continue
            print(f"  {rows}x{cols}: predicted to fit, synthesizing", flush=True)
            res = synthesize(big, work_root / f"{rows}x{cols}")
            entry = {"name": "largest", "config": big.to_dict(), "predicted": pred, **res}
            print(f"  {rows}x{cols}: {res['resources']} in {res['synth_seconds']} s", flush=True)
            if res["fits"]:
                entries.append(entry)
                break
            entries.append({**entry, "name": f"{rows}x{cols} (does not fit)"})
    print("systolic array alone (interior PE, arrays; 1 or 2 MACs per DSP48E2), flattened:", flush=True)
    arrays = gemm_array.main(quick=quick, log=lambda line: print(line, flush=True))
    print("the whole accelerator (rtl/accel/top.py), with and without the selector hardware:", flush=True)
    accel = accelerator(quick, work_root / "accel", jobs=int(os.environ.get("HEATVIT_YOSYS_JOBS", "1")))
    out = write(out_dir, entries, arrays, quick=quick, predicted_only=predicted_only, accel=accel)
    shutil.rmtree(work_root, ignore_errors=True)
    return [out]


def accelerator_table(accel: dict) -> str:
    """Markdown: the whole accelerator with and without selectors (``doc["accelerator"]``), the
    selector hardware's difference and own modules, and the resources per unit."""
    fmt = lambda v: f"{v:,.1f}" if v % 1 else f"{v:,.0f}"   # noqa: E731
    keys = ("LUT", "FF", "DSP48E2", "BRAM36")
    lines = ["| build | LUT | FF | DSP48E2 | BRAM36 |", "|---|---|---|---|---|",
             "| XCZU9EG | " + " | ".join(fmt(TOTALS[k]) for k in keys) + " |"]
    for b in accel.get("builds", []):
        r, u = b["resources"], b["utilization"]
        lines.append(f"| accelerator {b['name']} | " + " | ".join(f"{fmt(r[k])} ({100 * u[k]:.1f} %)" for k in keys) + " |")
    sel = accel.get("selector")
    if sel:
        d, sh, own = sel["difference"], sel["share_of_accelerator"], sel["own_modules"]
        lines.append("| selector hardware (difference) | " + " | ".join(f"{fmt(d[k])} ({100 * sh[k]:.2f} %)" for k in keys) + " |")
        lines.append("| selector modules' own cells | " + " | ".join(fmt(own[k]) for k in keys) + " |")
    if accel.get("builds"):
        units = accel["builds"][0]["units"]
        lines += ["", "Per unit (accelerator with selectors):", "", "| unit | LUT | FF | DSP48E2 | BRAM36 |",
                  "|---|---|---|---|---|"]
        for name, r in sorted(units.items(), key=lambda kv: -kv[1]["LUT"]):
            lines.append(f"| {name} | " + " | ".join(fmt(r[k]) for k in keys) + " |")
    return "\n".join(lines)


def table(doc: dict) -> str:
    """Markdown table of a resources.json document."""
    lines = ["| Config | Array | DSP48E2 | LUT | FF | BRAM36 | yosys wall / CPU |", "|---|---|---|---|---|---|---|"]
    lines.append(f"| XCZU9EG total | | {TOTALS['DSP48E2']} | {TOTALS['LUT']} | {TOTALS['FF']} | {TOTALS['BRAM36']} | |")
    for e in doc.get("configs", []):
        r, u, g = e["resources"], e["utilization"], e["config"]["gemm"]
        cell = lambda k: f"{r[k]:g} ({100 * u[k]:.1f}%)"
        lines.append(f"| {e['name']} | {g['rows']}x{g['cols']} | {cell('DSP48E2')} | {cell('LUT')} | "
                     f"{cell('FF')} | {cell('BRAM36')} | {e['synth_seconds']:.0f} s / {e['synth_cpu_seconds']} s |")
    if doc.get("gemm_array"):
        lines += ["", "Systolic array alone:", "", gemm_array.table(doc["gemm_array"])]
    if doc.get("accelerator", {}).get("builds"):
        lines += ["", "The whole accelerator:", "", accelerator_table(doc["accelerator"])]
    return "\n".join(lines)
