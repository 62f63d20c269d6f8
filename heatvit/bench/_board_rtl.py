"""Board-scale proof in RTL (issue 13 item 4): DeiT-S encoder blocks on the whole accelerator at
the ``zcu102`` preset (64 x 32 packed), in Verilator, bit-exact with golden, their cycles beside
the cycle models.

One model, one run: a DeiT-S-shaped model (dim 384, 6 heads, MLP 1536, 224 px: 197 tokens) of
random weights with **two** encoder blocks and a token selector before block 1 set to keep
0.343 of the patches (``models.set_keep_ratios``): block 0 runs dense at 197 tokens, block 1
pruned at ~69 (issue 13's last pruning stage), with the patch embedding, the selector and the
head around them.  The logits, the selector's keep mask and the tokens per block are compared
with golden ``forward_int(prune=True)``; the cycles of each part (the CYCLES records of its
descriptors) with

* ``compiler``: :func:`heatvit.compiler.cycles.estimate` (per descriptor the longest of the
  engine, activation load, nonlinear unit and DMA phases, at the live token counts of the
  run's trace);
* ``perf``: the perf bench's model (:func:`heatvit.bench.perf.gemm_cycles`: ``estimate_cycles``
  per GEMM, each weight tile streamed no faster than the DDR and the executor's weight path
  allow) with the simulated DDR's bandwidth (:func:`sim_ddr`: the weight stream's 128-bit ports,
  each a beat per cycle, no wait states) and :func:`.perf.weight_path_bytes_per_cycle`.

Everything here is simulation only; the build (tag :data:`TAG`, DDR model of :data:`DDR_BYTES`)
is its own, not the 16 x 16 e2e build.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from heatvit.config import AcceleratorConfig
from heatvit.golden.vit.config import PruningPlan

TAG = "board"
DDR_BYTES = 1 << 25
"""The DDR model's size: 32 MiB (the two-block DeiT-S image is 4.5 MB at 64 x 32; a whole DeiT-S
image, ~24 MB, fits too)."""
PLAN = PruningPlan(blocks=(1,), keep_ratios=(0.343,))
"""A selector before block 1 keeping issue 13's last stage's ratio: ~69 tokens in block 1."""
MODEL = "deit_small"
DEPTH = 2


def sim_ddr(ports: int = 1):
    """The perf model's DDR term set to the simulated DDR (``heatvit/sim/axi_ddr.v``) of the weight
    stream: ``ports`` ports (``AcceleratorConfig.weight_beats_per_cycle``) of 128 bits, each a beat
    per cycle, no wait states (efficiency 1)."""
    from .perf import DdrModel
    return DdrModel(ports=ports, port_bits=128, ddr_peak_gbytes_per_s=1e9, efficiency=1.0)


def deit_case(acc: AcceleratorConfig, seed: int = 0, *, calib: int = 4, model=MODEL, depth: int = DEPTH,
              plan: PruningPlan = PLAN):
    """The pruned ``model`` (a ``models.vit_config`` name or a ``ViTConfig``) of ``depth`` blocks (random weights, ``seed``), quantized for ``acc``
    on ``calib`` random images, its selectors set to ``plan``'s keep ratios on one more random
    image: (``heatvit.e2e.Case`` with golden ``forward_int(prune=True)`` logits, golden dumps)."""
    from heatvit import compiler
    from heatvit.compiler import models
    from heatvit.e2e import Case
    qm, image = models.random_quantized(acc, model, depth, seed, calib=calib, plan=plan)
    logits, dumps = models.pruned_dumps(qm, image)
    name = f"{model} ({depth} blocks, selectors before {list(plan.blocks)} keeping {list(plan.keep_ratios)}), " \
           f"random weights (seed {seed})"
    return Case(name, acc, compiler.compile_model(qm, acc, prune=bool(plan.blocks)), models.patches(qm, image),
                logits), dumps


def part_of(name: str) -> str:
    """The part a descriptor belongs to: ``blocks.i`` / ``selectors.s`` or ``embed_head``."""
    head = name.split(".")
    return ".".join(head[:2]) if head[0] in ("blocks", "selectors") and len(head) > 1 else "embed_head"


def compare(case, image_result: dict, acc: AcceleratorConfig) -> dict:
    """Measured cycles per part of the program beside the cycle models, from one image's
    ``accel_run`` result: per part (``blocks.0``, ``selectors.0``, ``blocks.1``, ``embed_head``)
    ``tokens``, ``measured`` (its descriptors' CYCLES records summed), ``records`` (the compiler's
    whole-accelerator record model: each descriptor's modelled record plus the gap before it), ``weight_stream_extra`` (what the GEMMs whose weights stream from
    DDR wait for them beyond ``estimate_cycles``: :func:`heatvit.compiler.cycles.weight_stream_extra`), ``span`` (its records
    each with the gap before it, since the previous descriptor's end: the fetch and dispatch;
    the parts' spans add up to the run's, the first descriptor's start to the last one's end), ``compiler`` (the compiler model's
    overlapped estimate), ``gemm_only`` (``estimate_cycles``), ``perf`` (the perf model: GEMMs
    only, bound by :func:`sim_ddr` and the weight path) and each model's error against ``span``."""
    from heatvit.compiler import cycles
    from heatvit.compiler import trace as trace_mod
    from heatvit.isa import Op, WSrc

    from .perf import gemm_cycles, weight_path_bytes_per_cycle
    img = case.image
    tr = trace_mod.read(img, bytes.fromhex(image_result["trace_hex"])) if image_result["trace_hex"] else None
    est = cycles.image_cycles(img, acc, tr)
    bpc = min(sim_ddr(acc.weight_beats_per_cycle).bytes_per_cycle(acc.clock_mhz), weight_path_bytes_per_cycle(acc))
    recs = {int(i): (name, int(s), int(e)) for i, name, _, s, e in image_result["layers"]}
    parts: dict[str, dict] = {}
    prev_end = None
    for e in est:
        name = part_of(e.name)
        p = parts.setdefault(name, {"descriptors": 0, "tokens": 0, "measured": 0, "span": 0, "compiler": 0,
                                    "compiler_serial": 0, "gemm_only": 0, "perf": 0, "records": 0,
                                    "weight_stream_extra": 0})
        _, s, t = recs[e.index]
        p["span"] += t - (s if prev_end is None else prev_end)
        prev_end = t
        p["descriptors"] += 1
        p["measured"] += t - s
        p["compiler"] += e.overlapped
        p["compiler_serial"] += e.serial
        # the whole-accelerator record model: each descriptor's record and the gap before it (its fetch)
        p["records"] += e.cycles + cycles.GAP_CYCLES
        p["gemm_only"] += e.engine
        if e.op == Op.GEMM.name:
            p["perf"] += gemm_cycles(acc.gemm, e.m, e.k, e.n, bpc) if not img.program[e.index].sparse else e.engine
            p["tokens"] = max(p["tokens"], e.m)
            d = img.program[e.index]
            if d.wsrc == WSrc.DDR:
                p["weight_stream_extra"] += cycles.weight_stream_extra(acc, e.m, e.k, e.n, cycles.gemm_tiles(acc, d, img.blob))
    for p in parts.values():
        p["records_stream"] = p["records"] + p["weight_stream_extra"]
        for k in ("records", "records_stream", "compiler", "gemm_only", "perf"):
            p[f"{k}_error"] = round(p["span"] / p[k] - 1, 4) if p[k] else None
    missing = sorted(set(recs) - {e.index for e in est})
    return {"parts": parts, "tokens_per_block": image_result["tokens_per_block"],
            "selects": tr.selects() if tr else [], "records_not_estimated": missing,
            "total": {"cycles": image_result["cycles"], "compiler": sum(e.overlapped for e in est),
                      "gemm_only": sum(e.engine for e in est)}}


def measurement_key(case) -> str:
    """Hash of what a run's measurement depends on: the config, the DDR size, every source file
    the Verilog is made from (:data:`heatvit.e2e.NOT_IN_VERILOG` left out) and the case's model
    image and input.  The cycle models are not in it: they are recomputed on a cached run."""
    from heatvit.e2e import verilog_sources_hash
    h = verilog_sources_hash(case.acc, DDR_BYTES)
    h.update(case.blob)
    h.update(np.ascontiguousarray(case.patches, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def run(acc: AcceleratorConfig, workdir: Path, *, seed: int = 0, log: Path | None = None, desc: str = "board",
        cache: Path | None = None) -> dict:
    """Build (cached) and run the two-block case on ``acc``: bit-exactness (logits, keep mask,
    tokens per block against golden), the simulator's build and run times and :func:`compare`.
    ``cache``: a directory where the simulation's result is kept (``board_rtl_<key>.json``,
    :func:`measurement_key`) and reused."""
    from heatvit import e2e
    from heatvit.bench import pruning
    workdir = Path(workdir)
    t0 = time.perf_counter()
    case, dumps = deit_case(acc, seed)
    t_case = time.perf_counter() - t0
    path = None if cache is None else Path(cache) / f"board_rtl_{measurement_key(case)}.json"
    if path is not None and path.is_file():
        res = json.loads(path.read_text())
    else:
        res = e2e.simulate(case, workdir / "case", log=log or workdir / "board.log", desc=desc, ddr_bytes=DDR_BYTES,
                           tag=TAG)
        if path is not None:
            path.write_text(json.dumps(res) + "\n")
    (im,) = res["images"]
    tokens = pruning.golden_tokens(dumps, DEPTH)[0]
    masks = pruning.golden_masks(dumps, len(PLAN.blocks))[0]
    check = pruning.check_image(im, case.logits[0], tokens, masks)
    g = acc.gemm
    return {"model": case.model, "array": f"{g.rows}x{g.cols}", "dsp_packing": g.dsp_packing,
            "config_digest": acc.digest(), "seed": seed, "simulator": "verilator", "ddr_bytes": DDR_BYTES,
            "sim_ddr": dataclasses.asdict(sim_ddr(acc.weight_beats_per_cycle)),
            "bit_exact": check["logits"], "tokens_equal": check["tokens"], "masks_equal": check["masks"],
            "why": check["why"], "golden_tokens_per_block": tokens, "cycles": im["cycles"],
            "sim_wall_s": im["wall_s"], "sim_cpu_s": im["cpu_s"], "sim_cycles_per_cpu_s": im["cycles"] / im["cpu_s"],
            "build_wall_s": res.get("build_wall_s"), "build_cpu_s": res.get("build_cpu_s"),
            "case_s": round(t_case, 1), "total_wall_s": res["total_wall_s"],
            **compare(case, im, acc)}


def cached_run(acc: AcceleratorConfig, out_dir: Path, log=print) -> dict:
    """:func:`run` on ``acc`` with its simulation kept in ``out_dir`` (reused for the same RTL and
    case); the build and simulator output go to ``out_dir/board_rtl.log``."""
    out_dir = Path(out_dir)
    log("  board-scale RTL run (DeiT-S blocks, whole accelerator, Verilator; without a cached run: a long "
        "build) ...", flush=True)
    return run(acc, out_dir / "board_rtl", log=out_dir / "board_rtl.log", cache=out_dir)


if __name__ == "__main__":      # python -m heatvit.bench._board_rtl WORKDIR [CONFIG]: one run, JSON on stdout
    import sys

    from heatvit.presets import load_config
    out = run(load_config(sys.argv[2] if len(sys.argv) > 2 else "zcu102"), Path(sys.argv[1]), cache=Path(sys.argv[1]))
    print(json.dumps(out, indent=1))
