"""Board-scale performance: DeiT-T/S/B at 224 px, dense and pruned, on the ``zcu102`` preset.

Writes ``perf.json``:

* ``pruning_by_array``: DeiT-S GEMM cycles dense and with the pruning plan (selectors before
  blocks 3/6/9 keeping 0.7/0.49/0.343, selector GEMMs included) on 16x16 ... 64x64 arrays, from
  ``GemmConfig.estimate_cycles`` (exact against the RTL: ``testbench/test_gemm.py``,
  ``testbench/test_tileskip.py``), beside ``floor_model_cycles``: the same GEMMs priced with the
  previous engine's exact model, a tile costing ``max(M, 2R + C)`` (weights loaded after the
  previous tile's commit wave had left the array).
* ``board``: the ``zcu102`` preset's whole-design resource estimate (:func:`board_estimate`:
  the array from yosys, the shell + engine's non-array part scaled from the default's measured
  one, the epilogue/softmax/LayerNorm/combiner from their own yosys runs scaled by lanes, and
  BRAM36 from every memory of the elaborated accelerator), each part saying how it was had.
* ``board_search``: the same estimate for packed arrays of 16 ... 64 rows and columns, powers
  of two (what ``GemmConfig`` and the RTL accept) and not, and the largest that fits at 80%.
* ``logic_levels``: yosys' longest combinational path (``synth_xilinx -family xcup -flatten``,
  registered cells removed) of each component that sets the 300 MHz clock (a packed PE, a
  16 x 2 array column, the requantizer, the epilogue router, the activation streamer, the
  softmax and LayerNorm units, the token selector's score combiner): ``levels`` at its deepest
  endpoint (:func:`._yosys.netlist_depth`, a LUT-RAM's write data not a path to its read data),
  beside ``logic_level_budget``; ``ltp -noff``'s path in LUTs, MUXF and CARRY4 cells and
  ``ltp_levels`` (:func:`levels_of`; ``ltp`` walks through a LUT-RAM's write port).
  Quick mode: the packed PE only.
* ``targets``: issue 13's targets, met or not, and what bounds a missed one.
* ``models``: per DeiT-T/S/B, dense and pruned: ``cycles`` (GEMM engine, every GEMM in turn,
  operands on chip, each weight tile streamed from DDR no faster than :class:`DdrModel` allows),
  ``ms_at_300mhz``, ``fps_at_300mhz``, ``mac_utilization`` (MACs / (cycles x MACs per cycle)),
  ``cycle_reduction`` and ``mac_reduction`` (pruned vs dense), ``ddr_gbytes_per_s`` (weight
  bytes / time, average and the busiest GEMM's), and the board's resources.
* ``published``: the other ZCU102 ViT accelerators' reported figures, for comparison.
* ``rtl_board`` (full mode only; quick mode says why not): the board-scale RTL run
  (:mod:`._board_rtl`: a DeiT-S block at 197 tokens and one pruned to ~69 on the whole
  accelerator at the preset, Verilator, bit-exact against golden), each part's measured cycles
  beside the cycle models; the simulation is cached in the output directory by the Verilog's
  sources and the case (a first run builds for ~15 CPU minutes).
* ``weight_path_bytes_per_cycle``: the GEMM executor's weight unpacker's rate
  (:func:`weight_path_bytes_per_cycle`), which caps the modelled weight stream with the DDR
  model (``hp_ports_needed.pruned_ms_by_ports_weight_path_unbounded``: without that cap).

What the cycles leave out: the nonlinear units (LayerNorm, Softmax, GELU) and the token selector's
control, assumed to overlap the GEMM stream (issue 13 item 6 is not done), and the DMA of
activations (they stay in on-chip buffers).  The DDR term is a model: the RTL's cycle model is
validated with the weight stream at one word per cycle.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from heatvit.config import AcceleratorConfig, GemmConfig, ceil_div
from heatvit.golden.gemm import split_shape
from heatvit.golden.vit import latency
from heatvit.golden.vit.config import PruningPlan
from heatvit.presets import PRESETS

from .gemm import DEIT
from .resources import MAX_UTILIZATION, TOTALS

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
    fabric clock (the board preset: its ``weight_beats_per_cycle = 2`` weight ports, 2 x 128 bits
    x 300 MHz = 9.6 GB/s), capped by the PS DDR4 controller's peak (ZCU102: 64-bit DDR4-2400,
    19.2 GB/s), times ``efficiency``: the fraction of that which long sequential read bursts
    sustain, an assumption (0.8), not a measurement; the simulated DDR (heatvit/sim/axi_ddr.v)
    has no wait states, efficiency 1 (``heatvit.bench._board_rtl.sim_ddr``)."""

    ports: int = 4
    port_bits: int = 128
    ddr_peak_gbytes_per_s: float = 19.2
    efficiency: float = 0.8

    def bytes_per_cycle(self, clock_mhz: float) -> float:
        ports = self.ports * self.port_bits / 8 * clock_mhz * 1e6 / 1e9
        return min(ports, self.ddr_peak_gbytes_per_s) * self.efficiency * 1e9 / (clock_mhz * 1e6)


def weight_path_bytes_per_cycle(acc: AcceleratorConfig) -> float:
    """What the GEMM executor's weight unpacker (``BeatWeights``) takes: a word of ``C`` int8 a
    cycle when a beat of the weight path (``acc.weight_path_bytes``: ``weight_beats_per_cycle``
    DMA beats of ``D`` bytes side by side, one AXI HP port each) holds one or more; otherwise a
    beat a cycle (``C / (P D)`` cycles a word).  The board preset: 2 ports of 16 bytes, 32 B/cycle
    = its 32-lane word a cycle (``testbench/test_accel_weight_ports.py::test_weight_ports_rate``;
    one port gave 16 B/cycle, ``test_accel_gemm.py::test_beat_weights_rate``)."""
    return float(min(acc.gemm.cols, acc.weight_path_bytes))


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


def model_run(g: GemmConfig, cfg, plan: PruningPlan, clock_mhz: float, ddr: DdrModel | None,
              path_bpc: float | None = None) -> dict:
    """``path_bpc``: the weight path's own limit (:func:`weight_path_bytes_per_cycle`), if any."""
    tokens, selectors = latency.plan_tokens(cfg, plan)
    bpc = ddr.bytes_per_cycle(clock_mhz) if ddr else None
    if path_bpc is not None:
        bpc = path_bpc if bpc is None else min(bpc, path_bpc)
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
            # the DSP floor: every MAC of the array busy every cycle, MACs / (MACs per cycle x clock)
            "dsp_floor_ms": round(macs / (g.rows * g.cols * clock_mhz * 1e3), 4),
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


# -- board configuration search ---------------------------------------------------------------

RECORDED = {
    "array_32x64_p2": {"DSP48E2": 1024, "LUT": 7199, "FF": 16368, "BRAM36": 0,
                       "how": "measured: yosys 0.23 synth_xilinx -family xcup -noiopad -flatten of "
                              "SystolicArray(32x64, dsp_packing=2) alone with DSP48E2 primitives "
                              "(1,209 s wall, 2026-11-30; docs/perf.md)"},
    "array_32x32_p2": {"DSP48E2": 512, "LUT": 2955, "FF": 7862, "BRAM36": 0,
                       "how": "measured: the same flow, SystolicArray(32x32, dsp_packing=2) "
                              "(resources bench gemm_array; docs/architecture.md)"},
    "default_non_array": {"DSP48E2": 39, "LUT": 11118, "FF": 6701,
                          "how": "measured: heatvit bench resources, default shell + engine (16x16, "
                                 "primitive PE: 295 DSP48E2, 11,526 LUT, 8,738 FF; docs/shell.md) "
                                 "minus its 16x16 unpacked array alone (256, 408, 2,037; "
                                 "docs/architecture.md)"},
}
"""yosys figures measured by earlier runs of the resources bench and of this one (the flows
named in ``how``); the board search scales them (:func:`board_estimate`).  A whole-design
synthesis of the board configuration did not finish on the shared 2-core machine."""

SEARCH = [(r, c) for r in (16, 32, 64) for c in (16, 32, 64)] + [(48, 64), (64, 48), (56, 64), (64, 56)]
"""Arrays the board search prices (packed).  ``GemmConfig`` accepts powers of two only (tile
indices are bit fields of K and N in the streamer and the weight loader); the others are priced
to show what a non-power-of-two array would give, marked ``supported: false``."""

_BRAM_SHAPES = [(512, 72, 1.0), (1024, 36, 1.0), (2048, 18, 1.0), (4096, 9, 1.0), (8192, 4, 1.0),
                (16384, 2, 1.0), (32768, 1, 1.0), (512, 36, 0.5), (1024, 18, 0.5), (2048, 9, 0.5),
                (4096, 4, 0.5), (8192, 2, 0.5), (16384, 1, 0.5)]
"""RAMB36E2 (1) and RAMB18E2 (0.5) depth x width aspect ratios."""


def bram36(width: int, depth: int) -> float:
    """RAMB36 equivalents of a ``depth`` x ``width``-bit memory: the cheapest tiling by one
    aspect ratio; memories of at most 64 words (FIFOs, ROMs) go to LUT-RAM (0)."""
    if depth <= 64:
        return 0.0
    return min(ceil_div(width, w) * ceil_div(depth, d) * cost for d, w, cost in _BRAM_SHAPES)


def memories(acc: AcceleratorConfig) -> list[tuple[str, int, int]]:
    """(path, width bits, depth) of every memory of the whole accelerator
    (:class:`heatvit.rtl.accel.top.Accelerator`) at ``acc``, from its elaborated fragments."""
    from amaranth.hdl import Fragment, Shape
    from amaranth.hdl._mem import MemoryInstance

    from heatvit.rtl.accel.top import Accelerator

    def walk(frag, path):
        if isinstance(frag, MemoryInstance):
            yield path, Shape.cast(frag._data.shape).width, frag._data.depth
        for sub, name, *_ in frag.subfragments:
            yield from walk(sub, f"{path}.{name}")
    return list(walk(Fragment.get(Accelerator(acc), None), "top"))


def cached_memories(acc: AcceleratorConfig, cache: Path, log=print) -> list[tuple[str, int, int]]:
    """:func:`memories` of ``acc``, kept in ``cache`` by the config's digest and the RTL's
    (:func:`rtl_digest`): the elaboration takes minutes at the board size."""
    path = cache / f"perf_memories_{acc.digest()}_{rtl_digest()}.json"
    if path.exists():
        return [tuple(m) for m in json.loads(path.read_text())]
    log("  elaborating the whole accelerator for its memories ...", flush=True)
    mems = memories(acc)
    path.write_text(json.dumps(mems) + "\n")
    return mems


def board_array(rows: int, cols: int) -> dict:
    """A packed ``rows`` x ``cols`` array's yosys figures: DSP48E2 = rows x cols / 2 (the
    packing maps exactly so, ``test_pe.py``), LUT and FF scaled from the recorded 32 x 64
    packed array by MACs (per-MAC LUT grows with the array: 3.11 at 16x16, 2.89 at 32x32, 3.52
    at 32x64, so scaling from the largest measured one is the closer figure)."""
    base = RECORDED["array_32x64_p2"]
    f = rows * cols / (32 * 64)
    measured = (rows, cols) == (32, 64)
    return {"DSP48E2": rows * cols // 2, "LUT": round(base["LUT"] * f), "FF": round(base["FF"] * f),
            "BRAM36": 0, "how": base["how"] if measured else "scaled by MACs from the measured 32x64 packed array"}


def board_estimate(rows: int, cols: int, mems: list[tuple[str, int, int]] | None = None,
                   levels: dict | None = None, scaling: dict | None = None) -> dict:
    """Whole-design estimate of a packed ``rows`` x ``cols`` board configuration: the array
    (:func:`board_array`), the shell + engine's non-array part (the default's measured
    non-array part x cols / 16: the output lanes, requantizer and accumulator scale with the
    columns; an upper bound, the AXI shell does not), and BRAM36 from the elaborated memories
    (``mems``: the whole accelerator's, token buffers included) or, without them, none.  With
    ``levels`` (the logic-depth runs' cell counts) the units the shell + engine lacks are added:
    the epilogue router (cols lanes), two softmax units, a LayerNorm unit and the score combiner
    (rows lanes), and the engine's requantizer (cols lanes) taken off: the accelerator's engine
    runs raw.  A unit with a second run in ``scaling`` (:func:`_scaling_components`) is priced
    as fixed + per-lane cost; otherwise in proportion to its lanes (an upper bound).  Not
    counted: the sequencer, crossbar, DMA ports and the other executors' control (no yosys run
    of them here)."""
    from .resources import count
    parts = {"array": board_array(rows, cols)}
    rest = RECORDED["default_non_array"]
    parts["shell_engine_non_array"] = {k: round(rest[k] * cols / 16) for k in ("DSP48E2", "LUT", "FF")}
    parts["shell_engine_non_array"].update(BRAM36=0, how="scaled: " + rest["how"] + ", x cols / 16")
    if levels:
        # name: (lanes of the first run, the second run's name, its lanes, lanes on the board, copies).
        # The accelerator's engine runs raw (GemmEngine(raw=True)): the epilogue router's own
        # requantizer replaces the engine's, which the shell + engine figure counts: taken off.
        units = {"requantizer": (2, None, None, cols, -1), "epilogue": (2, "epilogue_4col", 4, cols, 1),
                 "softmax": (1, None, None, 1, 2), "layernorm": (1, None, None, 1, 1),
                 "select_combiner": (4, "select_combiner_8", 8, rows, 1)}
        for name, (l1, second, l2, lanes, copies) in units.items():
            if name not in levels:
                continue
            r1 = count(levels[name]["cells_total"])
            two = (scaling or {}).get(second)
            if two is None:       # proportional: an upper bound (the fixed part scales too)
                cost = {k: r1[k] * lanes / l1 for k in ("DSP48E2", "LUT", "FF")}
                how = f"yosys of {levels[name]['component']}" + (f" x {lanes / l1:g}" if lanes != l1 else "")
            else:                 # fixed + per lane, from two lane counts
                r2 = count(two["cells_total"])
                cost = {k: r1[k] + (r2[k] - r1[k]) / (l2 - l1) * (lanes - l1) for k in ("DSP48E2", "LUT", "FF")}
                how = f"yosys at {l1} and {l2} lanes ({levels[name]['component']}; {two['component']}), fixed + per lane x {lanes}"
            parts[name] = {k: round(v * copies) for k, v in cost.items()}
            parts[name].update(BRAM36=0, how=("scaled: " if lanes != l1 else "measured: ") + how
                               + (f", x {copies}" if copies > 1 else "")
                               + (" (removed: the engine runs raw)" if copies < 0 else ""))
    if mems is not None:
        parts["memories"] = {"DSP48E2": 0, "LUT": 0, "FF": 0,
                             "BRAM36": sum(bram36(w, d) for _, w, d in mems),
                             "how": "estimated: every memory of the elaborated accelerator (token buffers, "
                                    "activation buffer, accumulator, parameters, score memory, FIFOs) tiled "
                                    "into RAMB36E2/RAMB18E2 aspect ratios; <= 64 words as LUT-RAM"}
    total = {k: sum(p[k] for p in parts.values()) for k in TOTALS}
    util = {k: round(total[k] / TOTALS[k], 4) for k in TOTALS}
    return {"array": f"{rows}x{cols}", "dsp_packing": 2, "macs_per_cycle": rows * cols,
            "supported": not (rows & (rows - 1) or cols & (cols - 1)), "parts": parts,
            "total": total, "utilization": util,
            "fits": all(u <= MAX_UTILIZATION for u in util.values()),
            "over": [k for k, u in util.items() if u > MAX_UTILIZATION]}


def board_search(mems, levels, scaling=None) -> dict:
    """Every array of :data:`SEARCH` priced with :func:`board_estimate` (BRAM from ``mems`` of
    the board preset: the buffers are sized by the models, not the array), and the largest
    supported one that fits."""
    rows = [board_estimate(r, c, mems, levels, scaling) for r, c in SEARCH]
    fits = [e for e in rows if e["fits"] and e["supported"]]
    best = max(fits, key=lambda e: (e["macs_per_cycle"], -int(e["array"].split("x")[0])))
    return {"candidates": rows, "largest_supported_fit": best["array"],
            "largest_fit_any_shape": max((e for e in rows if e["fits"]), key=lambda e: e["macs_per_cycle"])["array"]}


def target_bounds(models: dict, big_runs: dict, g: GemmConfig, big: GemmConfig, dsp: int | None) -> list[dict]:
    """Issue 13's targets on the board configuration: met or not, and for a missed speed target
    the array it would need (MACs per cycle at the 64 x 64 model's utilization, scaled) and the
    DSP48E2s of that array beside the 80% line."""
    s, b = models["DeiT-S"], models["DeiT-B"]
    line = MAX_UTILIZATION * TOTALS["DSP48E2"]
    rest = None if dsp is None else dsp - g.rows * g.cols // g.dsp_packing

    def floor(run: dict) -> str:
        return (f"{run['macs']:,} MACs / ({g.rows * g.cols:,} MACs/cycle x 300 MHz) = {run['dsp_floor_ms']} ms "
                f"at 100% MAC utilization; ")

    def need(achieved_64: float, target: float, higher_better: bool) -> str:
        factor = target / achieved_64 if higher_better else achieved_64 / target
        macs = big.rows * big.cols * factor
        text = (f"needs ~{macs:,.0f} MACs/cycle ({macs / 2:,.0f} DSP48E2 for the array at 2 MACs each; "
                f"the 64x64 model reaches {achieved_64}); 80% of the DSPs is {line:,.0f}")
        return text + ("" if rest is None else f", the rest of the design takes ~{rest}")
    # the weight stream is the first bound where it lengthens the pruned runs (the numbers decide)
    streamed = all(m["pruned"]["cycles"] > m["pruned"].get("cycles_without_ddr_bound", m["pruned"]["cycles"])
                   for m in (s, b))
    first = "the weight stream (as above), then " if streamed else ""
    fill = "per-GEMM fill (pipeline_fill_cycles), partial tiles"
    return [
        {"target": "cycle_reduction >= 0.9 x mac_reduction (DeiT-S)",
         "value": round(s["pruned"]["cycle_reduction"] / s["pruned"]["mac_reduction"], 4),
         "met": s["pruned"]["cycle_reduction"] >= 0.9 * s["pruned"]["mac_reduction"],
         "bound": ("the weight stream (the weight path's weight_path_bytes_per_cycle and the DDR model's "
                   "ports x width x clock x efficiency): the pruned GEMMs wait for their weight tiles "
                   "(cycles_without_ddr_bound: without it); then " + fill) if streamed else fill},
        {"target": "DeiT-S pruned <= 2.7 ms", "value": s["pruned"]["ms"], "met": s["pruned"]["ms"] <= 2.7,
         "bound": first + "DSPs: " + floor(s["pruned"]) + need(big_runs["DeiT-S"]["pruned_ms"], 2.7, False)},
        {"target": "DeiT-B pruned >= 100 FPS", "value": b["pruned"]["fps"], "met": b["pruned"]["fps"] >= 100,
         "bound": first + "DSPs: " + floor(b["pruned"]) + need(big_runs["DeiT-B"]["pruned_fps"], 100, True)},
        {"target": "mac_utilization >= 0.9 dense",
         "value": {k: m["dense"]["mac_utilization"] for k, m in models.items()},
         "met": all(m["dense"]["mac_utilization"] >= 0.9 for m in models.values()), "bound": ""},
    ]


# -- logic depth ------------------------------------------------------------------------------

LUT_LEVEL_BUDGET = 9
"""LUT levels between two registers that 300 MHz (3.33 ns) leaves on UltraScale+ (-2): a LUT
and its net take about 0.3-0.4 ns, and the clock-to-out, setup and clock skew about 0.6 ns
(a rule of thumb for planning, ~8-10 levels; not a timing analysis)."""


def levels_of(path: dict) -> float:
    """Logic levels of an ``ltp`` path: its LUTs and MUXF7/8/9 (one level each), plus one per
    four CARRY4 (yosys 0.23 maps UltraScale+ carry chains to 4-bit CARRY4; a 16-bit stretch of
    the chain costs about one LUT level)."""
    return path["luts"] + path["other"] + path["carry"] / 4


def _logic_components(acc: AcceleratorConfig) -> list[tuple[str, str, object]]:
    """The components that set the clock, each small enough for yosys here: (name, what it is,
    builder).  Lane counts are cut to 2-4 (a lane's path does not depend on how many there
    are); the array column keeps the board's packing and two packed cascade segments (16 rows),
    so its fabric low-sum adder is on it; the streamer keeps the board's buffer sizes."""
    import dataclasses

    from heatvit.config import NonlinearConfig, TokSelConfig
    g = acc.gemm
    small = GemmConfig(rows=4, cols=4, dsp_packing=g.dsp_packing)
    column = GemmConfig(rows=16, cols=2, dsp_packing=g.dsp_packing)
    nl = NonlinearConfig()

    def pe():
        from heatvit.rtl.gemm.pe import ProcessingElement
        return ProcessingElement(small, top=False)

    def array_column():
        from heatvit.rtl.gemm.systolic_array import SystolicArray
        return SystolicArray(column)

    def requantizer():
        from heatvit.rtl.gemm.requantizer import Requantizer
        return Requantizer(dataclasses.replace(g, cols=2))

    def epilogue():
        from heatvit.rtl.accel.epilogue import EpilogueRouter
        return EpilogueRouter(AcceleratorConfig().with_array(4, 2))

    def streamer():
        from heatvit.rtl.gemm.act_streamer import ActivationStreamer
        return ActivationStreamer(g)

    def softmax():
        from heatvit.rtl.nonlinear.rows import SoftmaxUnit
        return SoftmaxUnit(nl)

    def layernorm():
        from heatvit.rtl.nonlinear.rows import LayerNormUnit
        return LayerNormUnit(nl)

    def combiner():
        from heatvit.rtl.toksel.combiner import ScoreCombiner
        return ScoreCombiner(TokSelConfig(lanes=4))

    pack = f"p{g.dsp_packing}"
    board = f"{g.rows}x{g.cols}"
    return [   # (name, description, builder, the configuration it depends on: the cache key)
        ("pe_packed", f"interior PE, {pack} (4x4 array's row 1)", pe, small),
        ("array_column_16x2", f"SystolicArray 16x2 {pack}: one DSP column pair, two packed cascade segments",
         array_column, column),
        ("requantizer", f"gemm Requantizer (board GemmConfig {board}, 2 lanes)", requantizer, g),
        ("epilogue", "accel EpilogueRouter (default config on a 4x2 array): REQ8/GELU/SIGMOID/SOFTMAX routing",
         epilogue, "4x2"),
        ("act_streamer", f"gemm ActivationStreamer at the board config ({board}, {g.act_buffer_words} words)",
         streamer, g),
        ("softmax", "nonlinear SoftmaxUnit (default NonlinearConfig)", softmax, nl),
        ("layernorm", "nonlinear LayerNormUnit (default NonlinearConfig)", layernorm, nl),
        ("select_combiner", "toksel ScoreCombiner (3 heads, 4 lanes)", combiner, "lanes=4"),
    ]


def _scaling_components() -> list[tuple[str, str, object, object]]:
    """Second points for the units the board estimate scales by lanes (the first points are
    :func:`_logic_components`' runs): with two lane counts, a unit's cost is fixed + per lane."""
    from heatvit.config import TokSelConfig

    def epilogue():
        from heatvit.rtl.accel.epilogue import EpilogueRouter
        return EpilogueRouter(AcceleratorConfig().with_array(4, 4))

    def combiner():
        from heatvit.rtl.toksel.combiner import ScoreCombiner
        return ScoreCombiner(TokSelConfig(lanes=8))
    return [("epilogue_4col", "accel EpilogueRouter (default config on a 4x4 array)", epilogue, "4x4"),
            ("select_combiner_8", "toksel ScoreCombiner (3 heads, 8 lanes)", combiner, "lanes=8")]


def _yosys_cached(cache: Path, name: str, what: str, build, key, log=print) -> dict:
    """:func:`._yosys.logic_levels` of ``build()``, cached in ``cache`` by name, config key and
    RTL hash."""
    import hashlib

    from heatvit.rtl.gemm.dsp48e2 import PRIMITIVES

    from ._yosys import logic_levels as run
    key = hashlib.sha256(repr(key).encode()).hexdigest()[:8]
    path = cache / f"perf_levels_{name}_{key}_{rtl_digest()}.json"
    if path.exists():
        entry = json.loads(path.read_text())
        if "endpoint_levels" in entry:     # (an older entry has only ltp's figure)
            return entry
    log(f"  yosys ltp: {name} ...", flush=True)
    entry = {"component": what, **run(build(), name, platform=PRIMITIVES)}
    path.write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def logic_levels(acc: AcceleratorConfig, cache: Path, quick: bool, log=print) -> dict:
    """yosys' longest combinational path (LUT levels) of each of :func:`_logic_components`,
    cached in ``cache`` by component and RTL hash.  Quick: the packed PE only."""
    out = {}
    for name, what, build, key in _logic_components(acc)[:1 if quick else None]:
        entry = _yosys_cached(cache, name, what, build, key, log)
        entry["ltp_levels"] = levels_of(entry)
        # every endpoint (LUT-RAM write data not a path): the figure held to the budget
        entry["levels"] = entry["endpoint_levels"]
        entry["over_budget"] = entry["levels"] > LUT_LEVEL_BUDGET
        out[name] = entry
        log(f"  {name}: {entry['levels']} levels at the deepest endpoint ({' '.join(entry['endpoint_path'])}); "
            f"ltp: {entry['luts']} LUTs, {entry['other']} MUXF/other, {entry['carry']} CARRY4 = "
            f"{entry['ltp_levels']} levels ({entry['cells']} cells; yosys {entry['synth_seconds']} s)", flush=True)
    return out


def rtl_digest() -> str:
    """Hash of the installed RTL sources (every rtl/ subpackage): a cached synthesis is reused
    only for the same RTL."""
    import hashlib

    import heatvit.rtl as rtl
    h = hashlib.sha256()
    root = Path(rtl.__file__).parent
    for f in sorted(root.rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def board_rtl(acc: AcceleratorConfig, out_dir: Path, quick: bool) -> dict:
    """The board-scale RTL run (:mod:`._board_rtl`: a DeiT-S block at 197 tokens and one pruned to
    ~69 on the whole accelerator at ``acc``, Verilator, cached by source digest), or why not:
    quick mode (CI) never builds it, nor does ``HEATVIT_PERF_RTL=0``."""
    import os

    from heatvit.sim.runner import simulator_available

    from . import _board_rtl
    if quick:
        return {"skipped": "quick mode: the board-scale RTL run is the full bench's (`heatvit bench perf`)"}
    if os.environ.get("HEATVIT_PERF_RTL") == "0":
        return {"skipped": "HEATVIT_PERF_RTL=0"}
    if not simulator_available("verilator"):
        return {"skipped": "verilator not installed"}
    res = _board_rtl.cached_run(acc, out_dir)
    print(f"  RTL {res['array']}: {res['model']}: bit-exact {res['bit_exact']}, tokens {res['tokens_per_block']}, "
          f"{res['cycles']:,} cycles", flush=True)
    def err(e):
        return "" if e is None else f" ({e:+.2%})"
    for name, p in res["parts"].items():
        print(f"    {name:>12} ({p['tokens']} tokens): {p['span']:,} cycles; compiler model {p['compiler']:,}"
              f"{err(p['compiler_error'])}, perf model (GEMMs, 1 port) {p['perf']:,}{err(p['perf_error'])}", flush=True)
    return res


def measured_board(acc: AcceleratorConfig, out_dir: Path, log=print) -> dict | None:
    """The board preset's whole accelerator synthesized with and without selectors
    (:func:`.resources.board`: hierarchical yosys, cached per module): taken from
    ``out_dir/resources.json`` (``board``, written by ``HEATVIT_RESOURCES=board heatvit bench
    resources``) when it is of this config and RTL (:func:`rtl_digest`), else synthesized now
    and written there; None with ``HEATVIT_PERF_SYNTH=0`` (the estimate is then reported)."""
    import os

    from . import resources
    path = out_dir / "resources.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    b = doc.get("board")
    if (b and b.get("rtl_digest") == rtl_digest()
            and b["builds"][0]["config"] == json.loads(json.dumps(acc.to_dict()))):
        log(f"  the board's whole accelerator: synthesized, from {path}", flush=True)
        return b
    if os.environ.get("HEATVIT_PERF_SYNTH") == "0":
        return None
    log("  synthesizing the board's whole accelerator (hierarchical yosys; hours of CPU when nothing "
        "is cached) ...", flush=True)
    b = resources.board(jobs=int(os.environ.get("HEATVIT_YOSYS_JOBS", "1")), log=log)
    doc = json.loads(path.read_text()) if path.exists() else {"tool": None, "part": resources.PART,
                                                               "device_totals": TOTALS}
    doc["board"] = b
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return b


def board_resources(b: dict) -> dict:
    """perf.json's ``board_measured``: the synthesized board accelerator (:func:`measured_board`)
    with selectors (what the models' ``dsp``/``lut``/``ff``/``bram36`` are), its device share,
    whether it fits at :data:`.resources.MAX_UTILIZATION`, its deepest module's longest
    combinational path, the build without selectors and the selector hardware's share."""
    w, wo = b["builds"]
    util = {k: round(v, 4) for k, v in w["utilization"].items()}
    return {"how": "measured: yosys 0.23 synth_xilinx -family xcup -noiopad of the whole accelerator "
                   "(rtl/accel/top.py) at the preset, hierarchically (each distinct module once, "
                   "heatvit.bench._yosys.hier_cell_counts; HEATVIT_RESOURCES=board heatvit bench resources)",
            "resources": {k: w["resources"][k] for k in (*TOTALS, "LUT_as_memory")}, "utilization": util,
            "fits": all(u <= MAX_UTILIZATION for u in util.values()),
            "over": [k for k, u in util.items() if u > MAX_UTILIZATION],
            "headroom_to_80_percent": {k: round(MAX_UTILIZATION * TOTALS[k] - w["resources"][k], 1) for k in TOTALS},
            "logic_levels": w["logic_levels"], "logic_level_budget": LUT_LEVEL_BUDGET,
            "without_selectors": {"resources": {k: wo["resources"][k] for k in TOTALS},
                                  "utilization": {k: round(v, 4) for k, v in wo["utilization"].items()}},
            "selector": b["selector"], "units": w["units"], "modules": w["modules"], "instances": w["instances"],
            "synth_cpu_s": w["synth_cpu_s"], "verilog_sha256": w["verilog_sha256"], "rtl_digest": b["rtl_digest"]}


CANDIDATES = [(64, 48), (96, 32), (64, 64)]
"""Packed arrays larger than the preset that the board question needs (issue 13 deliverable 3:
the largest that fits): 3,072 MACs two ways (DeiT's 192/384/768 divide 48 and 32) and the next
power of two.  ``GemmConfig`` refuses the first two (rows and columns are powers of two: tile
indices are bit fields of K and N), so they are modelled with :func:`unchecked_gemm`."""


def unchecked_gemm(base: GemmConfig, rows: int, cols: int) -> GemmConfig:
    """``base`` on a ``rows`` x ``cols`` array without ``GemmConfig``'s power-of-two check: only
    for pricing shapes the RTL does not build (``estimate_cycles`` is arithmetic in R and C)."""
    import copy
    g = copy.copy(base)
    object.__setattr__(g, "rows", rows)
    object.__setattr__(g, "cols", cols)
    return g


def scale_units(units: dict, rows0: int, cols0: int, rows: int, cols: int) -> dict:
    """The measured per-unit resources (:func:`.resources.synthesize_accelerator` ``units``) of a
    ``rows0`` x ``cols0`` accelerator scaled to ``rows`` x ``cols``: the GEMM engine (the array,
    its accumulators and skew) by MACs, the GEMM output path's per-column units (requantizer,
    GELU/sigmoid lanes, router) by columns, the softmax row unit and everything else kept (its
    lanes are capped at ``MAX_ROW_LANES``; the token buffers' words are ``max(R, C)`` wide, the
    same for these shapes).  BRAM36 is kept (the buffers are sized by the models)."""
    out = dict.fromkeys(TOTALS, 0.0)
    for name, u in units.items():
        if name == "exec_gemm.engine":
            f = rows * cols / (rows0 * cols0)
        elif name.startswith("exec_gemm.output") and not name.startswith("exec_gemm.output.softmax"):
            f = cols / cols0
        else:
            f = 1.0
        for k in TOTALS:
            out[k] += u[k] * (1.0 if k == "BRAM36" else f)
    return {k: round(v, 1) for k, v in out.items()}


def candidate_arrays(acc: AcceleratorConfig, measured: dict | None) -> list[dict]:
    """Each of :data:`CANDIDATES`: the models' DeiT-S/B dense and pruned figures (as the preset's,
    with ``ceil(C / 16)`` weight ports so its weight word keeps up, capped by the DDR model), and,
    with the preset's measured resources, its resources scaled from them (:func:`scale_units`)
    and whether that fits at 80%."""
    g0 = acc.gemm
    rows = []
    for r, c in CANDIDATES:
        supported = not (r & (r - 1) or c & (c - 1)) and max(r, c) <= 64
        g = unchecked_gemm(g0, r, c)
        ports = ceil_div(c, acc.shell.data_width // 8)
        ddr = DdrModel(ports=ports)
        entry = {"array": f"{r}x{c}", "macs_per_cycle": r * c, "array_dsp48e2": r * c // 2,
                 "supported_by_rtl": supported, "weight_ports": ports}
        for name in ("DeiT-S", "DeiT-B"):
            d, p = (model_run(g, DEIT[name], plan, acc.clock_mhz, ddr, float(min(c, ports * acc.shell.data_width // 8)))
                    for plan in (PruningPlan(), PLAN))
            entry[name] = {"dense_ms": d["ms"], "dense_fps": d["fps"], "pruned_ms": p["ms"], "pruned_fps": p["fps"],
                           "dense_mac_utilization": d["mac_utilization"],
                           "cycle_reduction": round(1 - p["cycles"] / d["cycles"], 4),
                           "ddr_gbytes_per_s_pruned": p["ddr_gbytes_per_s"]}
        if measured:
            res = scale_units(measured["units"], g0.rows, g0.cols, r, c)
            util = {k: round(res[k] / TOTALS[k], 4) for k in TOTALS}
            entry.update(resources=res, utilization=util, fits=all(u <= MAX_UTILIZATION for u in util.values()),
                         over=[k for k, u in util.items() if u > MAX_UTILIZATION],
                         non_array_dsp48e2=round(res["DSP48E2"] - r * c // 2, 1))
        rows.append(entry)
    return rows


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    """Full: the ``zcu102`` preset synthesized (cached) and modelled.  Quick: the same model
    (pure arithmetic) without the synthesis (resources null, `board.skipped` says so)."""
    acc = PRESETS["zcu102"]
    g = acc.gemm
    ddr = DdrModel(ports=acc.weight_beats_per_cycle)      # the weight stream's own HP ports
    have_yosys = shutil.which("yosys") is not None
    levels = logic_levels(acc, out_dir, quick) if have_yosys else {}
    if quick:
        # The whole accelerator's elaboration (its memories) takes minutes at the board size:
        # quick mode (CI) checks the model, and the logic depth of one packed PE, only.
        board = {"skipped": "quick mode: no resource estimate; run `heatvit bench perf`"}
        search = None
        res = dict.fromkeys(("DSP48E2", "LUT", "FF", "BRAM36"))
        measured = None
    else:
        mems = cached_memories(acc, out_dir)
        scaling = {c[0]: _yosys_cached(out_dir, *c) for c in _scaling_components()} if have_yosys else {}
        measured = board_resources(b) if have_yosys and (b := measured_board(acc, out_dir)) else None
        board = board_estimate(g.rows, g.cols, mems, levels, scaling)
        board["memories"] = [{"path": p, "width": w, "depth": d, "bram36": bram36(w, d)} for p, w, d in mems]
        search = board_search(mems, levels, scaling)
        res = measured["resources"] if measured else board["total"]
        if measured:
            u = measured["utilization"]
            print("  measured (yosys, whole accelerator): " + ", ".join(
                f"{k} {measured['resources'][k]:,.1f} ({u[k]:.1%})" for k in TOTALS)
                + f"; fits at 80%: {measured['fits']}; longest path {measured['logic_levels']['levels']} "
                f"LUT levels ({measured['logic_levels']['module']})", flush=True)
        for e in search["candidates"]:
            print(f"  {e['array']:>6} p2: DSP {e['total']['DSP48E2']} ({e['utilization']['DSP48E2']:.1%}), "
                  f"LUT {e['total']['LUT']} ({e['utilization']['LUT']:.1%}), FF {e['utilization']['FF']:.1%}, "
                  f"BRAM36 {e['total']['BRAM36']} ({e['utilization']['BRAM36']:.1%})"
                  f"{'' if e['supported'] else ' [not a power of two]'}{' fits' if e['fits'] else ''}", flush=True)
    path = weight_path_bytes_per_cycle(acc)
    models = {}
    for name, cfg in DEIT.items():
        dense = model_run(g, cfg, PruningPlan(), acc.clock_mhz, ddr, path)
        pruned = model_run(g, cfg, PLAN, acc.clock_mhz, ddr, path)
        unbounded = {k: model_run(g, cfg, p, acc.clock_mhz, None)
                     for k, p in (("dense", PruningPlan()), ("pruned", PLAN))}
        # the simulated DDR (no wait states: efficiency 1), what the RTL runs see
        sim = {k: model_run(g, cfg, p, acc.clock_mhz, DdrModel(ports=ddr.ports, efficiency=1.0), path)
               for k, p in (("dense", PruningPlan()), ("pruned", PLAN))}
        for run, key in ((dense, "dense"), (pruned, "pruned")):
            run["cycles_without_ddr_bound"] = unbounded[key]["cycles"]
            run.update({f"{k}_at_ddr_efficiency_1": sim[key][k] for k in ("cycles", "ms", "fps")})
            run["ddr_gbytes_per_s_busiest_gemm_without_bound"] = unbounded[key]["ddr_gbytes_per_s_busiest_gemm"]
            run.update({"dsp": res["DSP48E2"], "lut": res["LUT"], "ff": res["FF"], "bram36": res["BRAM36"]})
            run["device_share"] = None if res["DSP48E2"] is None else {
                k: round(res[k] / TOTALS[k], 4) for k in TOTALS}
        pruned["cycle_reduction"] = round(1 - pruned["cycles"] / dense["cycles"], 4)
        pruned["mac_reduction"] = round(1 - pruned["macs"] / dense["macs"], 4)
        models[name] = {"dense": dense, "pruned": pruned}
        print(f"  {name}: dense {dense['cycles']} cycles ({dense['ms']} ms, {dense['fps']} FPS, "
              f"util {dense['mac_utilization']}), pruned {pruned['cycles']} ({pruned['ms']} ms, "
              f"{pruned['fps']} FPS); cycles -{pruned['cycle_reduction']:.1%}, MACs -{pruned['mac_reduction']:.1%} "
              f"(ratio {pruned['cycle_reduction'] / pruned['mac_reduction']:.3f}); DDR {dense['ddr_gbytes_per_s']} / "
              f"{pruned['ddr_gbytes_per_s']} GB/s; at DDR efficiency 1: {dense['ms_at_ddr_efficiency_1']} / "
              f"{pruned['ms_at_ddr_efficiency_1']} ms; DSP floor {dense['dsp_floor_ms']} / {pruned['dsp_floor_ms']} ms",
              flush=True)
    # What the 80% DSP rule leaves out: the same model on a 64 x 64 packed array (2048 DSP48E2
    # for the array alone, 81% of the device; cycles only, not synthesized).
    big = PRESETS["zcu102"].with_gemm(rows=64, cols=64).gemm
    over_budget = {}
    for name, cfg in DEIT.items():
        # (the weight path's limit left out: what the DSPs bound, once the weights keep up; a
        # 64-int8 word a cycle would take 4 weight ports, capped by the DDR)
        d, p = (model_run(big, cfg, plan, acc.clock_mhz, DdrModel(ports=4)) for plan in (PruningPlan(), PLAN))
        over_budget[name] = {"dense_ms": d["ms"], "dense_fps": d["fps"], "pruned_ms": p["ms"],
                             "pruned_fps": p["fps"], "cycle_reduction": round(1 - p["cycles"] / d["cycles"], 4),
                             "dense_mac_utilization": d["mac_utilization"],
                             "ddr_gbytes_per_s_busiest_gemm": p["ddr_gbytes_per_s_busiest_gemm"]}
    cands = candidate_arrays(acc, measured)
    for e in cands:
        print(f"  candidate {e['array']} ({e['macs_per_cycle']:,} MACs, {e['weight_ports']} weight ports"
              f"{'' if e['supported_by_rtl'] else ', not built by the RTL'}): DeiT-S pruned {e['DeiT-S']['pruned_ms']} ms, "
              f"DeiT-B pruned {e['DeiT-B']['pruned_fps']} FPS"
              + (f"; scaled from the measured units: DSP {e['utilization']['DSP48E2']:.1%}, LUT {e['utilization']['LUT']:.1%}"
                 f", BRAM {e['utilization']['BRAM36']:.1%}: {'fits' if e['fits'] else 'over ' + ', '.join(e['over'])}"
                 if 'resources' in e else ""), flush=True)
    targets = target_bounds(models, over_budget, g, big, res["DSP48E2"])
    for t in targets:
        print(f"  target {t['target']}: {'met' if t['met'] else 'missed'} ({t['value']}); {t['bound']}", flush=True)
    port_gbps = ddr.port_bits / 8 * acc.clock_mhz / 1e3 * ddr.efficiency
    average = max(r["ddr_gbytes_per_s"] for m in models.values() for r in m.values())
    busiest = max(r["ddr_gbytes_per_s_busiest_gemm_without_bound"] for m in models.values() for r in m.values())
    # What the shell's one HP port costs today, and what each further port buys back.
    by_ports = {n: {name: model_run(g, cfg, PLAN, acc.clock_mhz, DdrModel(ports=n), path)["ms"] for name, cfg in DEIT.items()}
                for n in (1, 2, 3, 4)}
    by_ports_unpacker_fixed = {n: {name: model_run(g, cfg, PLAN, acc.clock_mhz, DdrModel(ports=n))["ms"]
                                   for name, cfg in DEIT.items()} for n in (1, 2, 3, 4)}
    rtl = board_rtl(acc, out_dir, quick)
    by_array = pruning_by_array(quick)
    for row in by_array:
        print(f"  DeiT-S on {row['array']}: cycles -{row['cycle_reduction']:.1%} (floor model "
              f"-{row['floor_model_cycle_reduction']:.1%}), MACs -{row['mac_reduction']:.1%}", flush=True)
    source = None if quick else (measured["how"] if measured else
                                 "estimated (board_estimate: no synthesis of the whole accelerator found)")
    doc = {"config": "zcu102", "resources_of": None if quick else "zcu102", "resources_source": source,
           "board_measured": measured, "quick": quick, "array": f"{g.rows}x{g.cols}",
           "dsp_packing": g.dsp_packing, "macs_per_cycle": g.rows * g.cols, "clock_mhz": acc.clock_mhz,
           "plan": {"blocks": list(PLAN.blocks), "keep_ratios": list(PLAN.keep_ratios)},
           "weight_beats_per_cycle": acc.weight_beats_per_cycle,
           "hp_ports": {"weights": acc.weight_beats_per_cycle, "shell": 1,
                        "note": "the GEMM weight stream on its own AXI HP ports (m_axi_w); parameters, "
                                "LOAD/STORE, descriptors and records on the shell's one (m_axi)"},
           "ddr": {**asdict(ddr), "bytes_per_cycle": round(ddr.bytes_per_cycle(acc.clock_mhz), 3),
                   "gbytes_per_s": round(ddr.bytes_per_cycle(acc.clock_mhz) * acc.clock_mhz / 1e3, 3)},
           "hp_ports_needed": {"average": math.ceil(average / port_gbps),
                               "busiest_gemm_unbounded": math.ceil(busiest / port_gbps),
                               "port_gbytes_per_s_at_efficiency": round(port_gbps, 3),
                               "pruned_ms_by_ports": by_ports,
                               "pruned_ms_by_ports_weight_path_unbounded": by_ports_unpacker_fixed},
           "weight_path_bytes_per_cycle": round(path, 3),
           "board": {k: v for k, v in board.items() if k != "cells"}, "models": models,
           "over_dsp_budget_64x64_packed": over_budget, "candidate_arrays": cands, "targets": targets,
           "board_search": search, "logic_levels": levels or {"skipped": "yosys not found"},
           "logic_level_budget": LUT_LEVEL_BUDGET,
           "pruning_by_array": by_array, "published": PUBLISHED, "rtl_board": rtl,
           "source": "GemmConfig.estimate_cycles per GEMM (exact against RTL at one weight word per "
                     "cycle) + DdrModel; resources: yosys synth_xilinx -family xcup"}
    out = out_dir / "perf.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return [out]
