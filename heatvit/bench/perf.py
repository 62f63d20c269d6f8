"""Board-scale performance: DeiT-T/S/B at 224 px, dense and pruned, on the ``zcu102`` preset.

Writes ``perf.json``:

* ``pruning_by_array``: DeiT-S GEMM cycles dense and with the pruning plan (selectors before
  blocks 3/6/9 keeping 0.7/0.49/0.343, selector GEMMs included) on 16x16 ... 64x64 arrays, from
  ``GemmConfig.estimate_cycles`` (exact against the RTL: ``testbench/test_gemm.py``,
  ``testbench/test_tileskip.py``), beside ``floor_model_cycles``: the same GEMMs priced with the
  previous engine's exact model, a tile costing ``max(M, 2R + C)`` (weights loaded after the
  previous tile's commit wave had left the array).
* ``board``: the ``zcu102`` preset's resources (yosys ``synth_xilinx -family xcup -noiopad
  -flatten`` of the exported shell + engine with DSP48E2 primitives) and its longest
  combinational path (yosys ``ltp -noff`` on the flattened netlist: cells on the path, and how
  many of them are LUTs).
* ``models``: per DeiT-T/S/B, dense and pruned: ``cycles`` (GEMM engine, every GEMM in turn,
  operands on chip, each weight tile streamed from DDR no faster than :class:`DdrModel` allows),
  ``ms_at_300mhz``, ``fps_at_300mhz``, ``mac_utilization`` (MACs / (cycles x MACs per cycle)),
  ``cycle_reduction`` and ``mac_reduction`` (pruned vs dense), ``ddr_gbytes_per_s`` (weight
  bytes / time, average and the busiest GEMM's), and the board's resources.
* ``published``: the other ZCU102 ViT accelerators' reported figures, for comparison.

What the cycles leave out: the nonlinear units (LayerNorm, Softmax, GELU) and the token selector's
control, assumed to overlap the GEMM stream (issue 13 item 6 is not done), and the DMA of
activations (they stay in on-chip buffers).  The DDR term is a model: the RTL's cycle model is
validated with the weight stream at one word per cycle.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from heatvit.config import AcceleratorConfig, GemmConfig, ceil_div
from heatvit.golden.gemm import split_shape
from heatvit.golden.vit import latency
from heatvit.golden.vit.config import PruningPlan
from heatvit.presets import PRESETS

from .gemm import DEIT
from .resources import TOTALS, MAX_UTILIZATION, count

PLAN = PruningPlan(blocks=(3, 6, 9), keep_ratios=(0.7, 0.49, 0.343))
"""The pruning plan of issue 13 (SPViT's keep ratios, selectors before blocks 3, 6, 9)."""

ARRAYS = [(16, 16), (32, 32), (32, 64), (64, 32), (64, 64)]

PUBLISHED = [
    {"work": "HeatViT (HPCA 2023)", "model": "DeiT-S", "board": "ZCU102", "precision": "8-bit",
     "pruned": True, "ms": 9.15},
    {"work": "Auto-ViT-Acc (FPL 2022)", "model": "DeiT-S", "board": "ZCU102", "clock_mhz": 150,
     "dsp": 1552, "fps": 99.7},
    {"work": "Auto-ViT-Acc (FPL 2022)", "model": "DeiT-B", "board": "ZCU102", "clock_mhz": 150,
     "dsp": 1552, "fps": 34.0},
    {"work": "Auto-ViT-Acc (FPL 2022)", "model": "DeiT-B", "board": "ZCU102", "clock_mhz": 150,
     "dsp": 1552, "precision": "mixed", "fps": 56.8},
    {"work": "VAQF (2022)", "model": "DeiT-B", "board": "ZCU102", "precision": "8-bit activations",
     "fps": 24.0},
    {"work": "VAQF (2022)", "model": "DeiT-B", "board": "ZCU102", "precision": "6-bit activations",
     "fps": 30.0},
    {"work": "Huang et al.", "model": "ViT-S", "board": "ZCU102", "clock_mhz": 300, "precision": "int8",
     "dsp": 1268, "fps": 89.7},
]


@dataclass(frozen=True)
class DdrModel:
    """DDR bandwidth for the weight stream: ``ports`` AXI HP ports of ``port_bits`` at the
    fabric clock, capped by the PS DDR4 controller's peak (ZCU102: 64-bit DDR4-2400, 19.2 GB/s),
    times ``efficiency`` (the fraction of the peak that long sequential read bursts sustain: an
    assumption, 0.8, not a measurement)."""

    ports: int = 4
    port_bits: int = 128
    ddr_peak_gbytes_per_s: float = 19.2
    efficiency: float = 0.8

    def bytes_per_cycle(self, clock_mhz: float) -> float:
        ports = self.ports * self.port_bits / 8 * clock_mhz * 1e6 / 1e9
        return min(ports, self.ddr_peak_gbytes_per_s) * self.efficiency * 1e9 / (clock_mhz * 1e6)


def gemm_cycles(g: GemmConfig, m: int, k: int, n: int, bytes_per_cycle: float | None) -> int:
    """Engine cycles of one GEMM chunk (``estimate_cycles``), with every weight tile's
    ``rows * cols`` bytes streamed no faster than ``bytes_per_cycle`` (None: one word per cycle,
    what the RTL model assumes)."""
    exact = g.estimate_cycles(m, k, n)
    if bytes_per_cycle is None:
        return exact
    tiles = ceil_div(k, g.rows) * ceil_div(n, g.cols)
    stream = math.ceil(g.rows * g.cols / bytes_per_cycle) if bytes_per_cycle < g.cols else g.rows
    step = max(m, g.min_tile_cycles)
    # The first tile waits for its words; every later one costs the slower of compute and stream.
    return exact + max(0, stream - g.rows) + (tiles - 1) * max(0, stream - step)


def model_run(g: GemmConfig, cfg, plan: PruningPlan, clock_mhz: float, ddr: DdrModel | None) -> dict:
    tokens, selectors = latency.plan_tokens(cfg, plan)
    bpc = ddr.bytes_per_cycle(clock_mhz) if ddr else None
    cycles = macs = weight_bytes = 0
    busiest = 0.0
    for shape in latency.model_gemms(cfg, tokens, selectors):
        macs += shape[0] * shape[1] * shape[2]
        for m, k, n in split_shape(g, *shape):
            c = gemm_cycles(g, m, k, n, bpc)
            wb = ceil_div(k, g.rows) * g.rows * ceil_div(n, g.cols) * g.cols
            cycles += c
            weight_bytes += wb
            busiest = max(busiest, wb / c)
    seconds = cycles / (clock_mhz * 1e6)
    return {"tokens_per_block": tokens, "cycles": cycles, "macs": macs,
            "ms_at_300mhz": round(cycles / 300e3, 4) if clock_mhz == 300 else None,
            "ms": round(seconds * 1e3, 4), "fps": round(1 / seconds, 2),
            "mac_utilization": round(macs / (cycles * g.rows * g.cols), 4),
            "weight_mbytes": round(weight_bytes / 1e6, 3),
            "ddr_gbytes_per_s": round(weight_bytes / seconds / 1e9, 3),
            "ddr_gbytes_per_s_busiest_gemm": round(busiest * clock_mhz * 1e6 / 1e9, 3)}


def pruning_by_array(quick: bool) -> list[dict]:
    cfg = DEIT["DeiT-S"]
    rows = []
    for r, c in (ARRAYS[:2] if quick else ARRAYS):
        g = GemmConfig(rows=r, cols=c, act_buffer_words=ceil_div(3072, r) * 197, max_m=197,
                       max_k=3072, max_n=3072, weight_fifo_depth=2 * r)
        d, p = (latency.plan_cycles(g, cfg, plan) for plan in (PruningPlan(), PLAN))
        fd, fp = (sum(floor_model_cycles(g, *piece) for shape in latency.model_gemms(cfg, *latency.plan_tokens(cfg, plan))
                      for piece in split_shape(g, *shape)) for plan in (PruningPlan(), PLAN))
        dm, pm = latency.plan_macs(cfg, PruningPlan()), latency.plan_macs(cfg, PLAN)
        rows.append({"array": f"{r}x{c}", "dense_cycles": d, "pruned_cycles": p,
                     "cycle_reduction": round(1 - p / d, 4), "mac_reduction": round(1 - pm / dm, 4),
                     "ratio": round((1 - p / d) / (1 - pm / dm), 4),
                     "floor_model_dense_cycles": fd, "floor_model_pruned_cycles": fp,
                     "floor_model_cycle_reduction": round(1 - fp / fd, 4)})
    return rows


def floor_model_cycles(g: GemmConfig, m: int, k: int, n: int) -> int:
    """The previous engine's exact model (weights shifted into one shadow chain per column after
    the previous commit wave had left the array): ``R + (R + C + 1) + 11 + (T - 1) * max(M, 2R +
    C) + M``."""
    tiles = ceil_div(k, g.rows) * ceil_div(n, g.cols)
    return g.rows + g.array_latency + 11 + (tiles - 1) * max(m, 2 * g.rows + g.cols) + m


# -- yosys ------------------------------------------------------------------------------------

def synthesize(acc: AcceleratorConfig, work: Path) -> dict:  # noqa: D401
    """Flattened ``synth_xilinx`` of the exported shell + engine: resources and ``ltp -noff``."""
    from heatvit.rtl.shell.wrapper import CORE_NAME, export
    work.mkdir(parents=True, exist_ok=True)
    core, _ = export(acc, primitives=True)
    (work / f"{CORE_NAME}.v").write_text(core)
    # ltp counts every cell it passes: cut the paths at the cells that register their outputs
    # (flip-flops, SRLs, block RAMs, the DSP48E2s with their P register, the clock buffer) first.
    script = (f"read_verilog {CORE_NAME}.v; synth_xilinx -family xcup -noiopad -flatten -top {CORE_NAME}; "
              f"tee -q -o stat.txt stat; delete t:FD* t:SRL* t:RAMB* t:DSP48E2 t:BUFG*; "
              f"tee -q -o luts.txt select -list t:LUT*; tee -q -o ltp.txt ltp -noff")
    t0 = time.monotonic()
    res = subprocess.run(["yosys", "-q", "-l", "yosys.log", "-p", script], cwd=work, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"yosys failed ({res.returncode}); see {work / 'yosys.log'}:\n{res.stderr[-2000:]}")
    seconds = time.monotonic() - t0
    cells = {k: int(v) for k, v in re.findall(r"^\s+(\w+)\s+(\d+)\s*$", (work / "stat.txt").read_text(), re.M)}
    return {"resources": count(cells), "cells": cells, "synth_seconds": round(seconds, 1),
            "longest_path": longest_path(work / "ltp.txt", work / "luts.txt")}


def longest_path(ltp: Path, luts: Path) -> dict:
    """``ltp -noff``'s longest topological path between registers (its cells: LUTs, carry
    segments and others such as MUXF7/8 or LUT-RAM reads)."""
    text = ltp.read_text()
    length = int(re.search(r"length=(\d+)", text).group(1))
    lut_names = {ln.strip().split("/")[-1] for ln in luts.read_text().splitlines() if ln.strip()}
    via = re.findall(r"\(via (\S+)\)", text)
    kinds = ["LUT" if v in lut_names else ("CARRY" if "carry" in v.lower() else "other") for v in via]
    return {"cells": length, "luts": kinds.count("LUT"), "carry": kinds.count("CARRY"),
            "other": kinds.count("other"), "path": via}


def board_resources(acc: AcceleratorConfig, cache: Path) -> dict:
    """yosys figures of ``acc``, cached in ``cache`` under the config digest and the RTL sources'
    hash (the board configuration's synthesis takes long; the same config on the same RTL
    synthesizes the same)."""
    path = cache / f"perf_synth_{acc.digest()}_{rtl_digest()}.json"
    if path.exists():
        return json.loads(path.read_text())
    if shutil.which("yosys") is None:
        raise RuntimeError("yosys not found: apt-get install yosys (Debian's 0.23)")
    work = Path(tempfile.mkdtemp(prefix="heatvit-perf-"))
    print(f"yosys synth_xilinx -flatten of {acc.gemm.rows}x{acc.gemm.cols} (p{acc.gemm.dsp_packing}) in {work}", flush=True)
    doc = {**synthesize(acc, work), "config_digest": acc.digest(), "rtl_digest": rtl_digest()}
    doc["utilization"] = {k: round(doc["resources"][k] / TOTALS[k], 4) for k in TOTALS}
    doc["fits"] = all(v <= MAX_UTILIZATION for v in doc["utilization"].values())
    path.write_text(json.dumps(doc, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return doc


def rtl_digest() -> str:
    """Hash of the installed RTL sources (rtl/gemm, rtl/shell): a cached synthesis is reused only
    for the same RTL."""
    import hashlib

    import heatvit.rtl as rtl
    h = hashlib.sha256()
    root = Path(rtl.__file__).parent
    for f in sorted(list((root / "gemm").glob("*.py")) + list((root / "shell").glob("*.py"))):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    """Full: the ``zcu102`` preset synthesized (cached) and modelled.  Quick: the same model
    (pure arithmetic) without the synthesis (resources null, `board.skipped` says so)."""
    acc = PRESETS["zcu102"]
    g = acc.gemm
    ddr = DdrModel()
    if quick:
        # A flattened synthesis with the longest-path pass takes minutes even for a tiny array:
        # quick mode (CI) checks the model only and says so.
        board = {"skipped": "quick mode: no synthesis; run `heatvit bench perf` for the resources"}
        res = dict.fromkeys(("DSP48E2", "LUT", "FF", "BRAM36"))
    else:
        board = board_resources(acc, out_dir)
        res = board["resources"]
    models = {}
    for name, cfg in DEIT.items():
        dense = model_run(g, cfg, PruningPlan(), acc.clock_mhz, ddr)
        pruned = model_run(g, cfg, PLAN, acc.clock_mhz, ddr)
        unbounded = {k: model_run(g, cfg, p, acc.clock_mhz, None)
                     for k, p in (("dense", PruningPlan()), ("pruned", PLAN))}
        for run, key in ((dense, "dense"), (pruned, "pruned")):
            run["cycles_without_ddr_bound"] = unbounded[key]["cycles"]
            run["ddr_gbytes_per_s_busiest_gemm_without_bound"] = unbounded[key]["ddr_gbytes_per_s_busiest_gemm"]
            run.update({"dsp": res["DSP48E2"], "lut": res["LUT"], "ff": res["FF"], "bram36": res["BRAM36"]})
        pruned["cycle_reduction"] = round(1 - pruned["cycles"] / dense["cycles"], 4)
        pruned["mac_reduction"] = round(1 - pruned["macs"] / dense["macs"], 4)
        models[name] = {"dense": dense, "pruned": pruned}
        print(f"  {name}: dense {dense['cycles']} cycles ({dense['ms']} ms, {dense['fps']} FPS, "
              f"util {dense['mac_utilization']}), pruned {pruned['cycles']} ({pruned['ms']} ms, "
              f"{pruned['fps']} FPS); cycles -{pruned['cycle_reduction']:.1%}, MACs -{pruned['mac_reduction']:.1%}; "
              f"DDR {pruned['ddr_gbytes_per_s']} GB/s", flush=True)
    # What the 80% DSP rule leaves out: the same model on a 64 x 64 packed array (2048 DSP48E2
    # for the array alone, 81% of the device; cycles only, not synthesized).
    big = PRESETS["zcu102"].with_gemm(rows=64, cols=64, act_buffer_words=ceil_div(3072, 64) * 197,
                                      weight_fifo_depth=128).gemm
    over_budget = {}
    for name, cfg in DEIT.items():
        d, p = (model_run(big, cfg, plan, acc.clock_mhz, ddr) for plan in (PruningPlan(), PLAN))
        over_budget[name] = {"dense_ms": d["ms"], "dense_fps": d["fps"], "pruned_ms": p["ms"],
                             "pruned_fps": p["fps"], "cycle_reduction": round(1 - p["cycles"] / d["cycles"], 4),
                             "dense_mac_utilization": d["mac_utilization"],
                             "ddr_gbytes_per_s_busiest_gemm": p["ddr_gbytes_per_s_busiest_gemm"]}
    port_gbps = ddr.port_bits / 8 * acc.clock_mhz / 1e3 * ddr.efficiency
    average = max(r["ddr_gbytes_per_s"] for m in models.values() for r in m.values())
    busiest = max(r["ddr_gbytes_per_s_busiest_gemm_without_bound"] for m in models.values() for r in m.values())
    by_array = pruning_by_array(quick)
    for row in by_array:
        print(f"  DeiT-S on {row['array']}: cycles -{row['cycle_reduction']:.1%} (floor model "
              f"-{row['floor_model_cycle_reduction']:.1%}), MACs -{row['mac_reduction']:.1%}", flush=True)
    doc = {"config": "zcu102", "resources_of": None if quick else "zcu102", "quick": quick, "array": f"{g.rows}x{g.cols}",
           "dsp_packing": g.dsp_packing, "macs_per_cycle": g.rows * g.cols, "clock_mhz": acc.clock_mhz,
           "plan": {"blocks": list(PLAN.blocks), "keep_ratios": list(PLAN.keep_ratios)},
           "ddr": {**asdict(ddr), "bytes_per_cycle": round(ddr.bytes_per_cycle(acc.clock_mhz), 3),
                   "gbytes_per_s": round(ddr.bytes_per_cycle(acc.clock_mhz) * acc.clock_mhz / 1e3, 3)},
           "hp_ports_needed": {"average": math.ceil(average / port_gbps),
                               "busiest_gemm_unbounded": math.ceil(busiest / port_gbps),
                               "port_gbytes_per_s_at_efficiency": round(port_gbps, 3)},
           "board": {k: v for k, v in board.items() if k != "cells"}, "models": models,
           "over_dsp_budget_64x64_packed": over_budget,
           "pruning_by_array": by_array, "published": PUBLISHED,
           "source": "GemmConfig.estimate_cycles per GEMM (exact against RTL at one weight word per "
                     "cycle) + DdrModel; resources: yosys synth_xilinx -family xcup"}
    out = out_dir / "perf.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return [out]
