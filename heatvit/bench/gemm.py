"""GEMM engine utilization on every DeiT-T/S/B encoder-block GEMM at 197 tokens.

Writes ``gemm.json``: one entry per GEMM (``qkv``, ``qk_t`` and ``attn_v`` per head, ``proj``,
``fc1``, ``fc2``) of each model with ``cycles`` measured in RTL simulation (Verilator, the
``bench`` preset: 16 x 16, every operand set on chip), from the accepted command to the last
output beat, no stalls; ``ideal_cycles = M*K*N / (rows*cols)``; ``utilization = ideal/cycles``.
Every output is checked bit-exactly against the golden model on the way.  ``gemm_summary.json``
adds the geometric mean, the cycle model's agreement and the simulator's speed.  Quick mode: the
block GEMMs of a 10-token ViT on the ``small`` preset (4 x 4), on Icarus when installed.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from heatvit.golden.vit.config import ViTConfig
from heatvit.presets import PRESETS

# DeiT at 224 x 224, patch 16: 196 patches + the class token = 197 tokens.
DEIT = {
    "DeiT-T": ViTConfig(image_size=224, patch_size=16, in_chans=3, dim=192, depth=12, heads=3,
                        mlp_ratio=4.0, num_classes=1000),
    "DeiT-S": ViTConfig(image_size=224, patch_size=16, in_chans=3, dim=384, depth=12, heads=6,
                        mlp_ratio=4.0, num_classes=1000),
    "DeiT-B": ViTConfig(image_size=224, patch_size=16, in_chans=3, dim=768, depth=12, heads=12,
                        mlp_ratio=4.0, num_classes=1000),
}
# Quick mode: a 12 x 12 image in 4 x 4 patches (10 tokens), D = 16, on the ``small`` preset
# (about 1,700 engine cycles in all).
QUICK_MODELS = {"ViT-tiny": ViTConfig(image_size=12, patch_size=4, in_chans=1, dim=16, depth=1, heads=2,
                                      mlp_ratio=2.0, num_classes=10)}
TARGET_MIN, TARGET_GEOMEAN = 0.85, 0.90


def block_gemms(model: str) -> list[dict]:
    """The distinct GEMMs of one encoder block (attention GEMMs: one head's)."""
    v = {**DEIT, **QUICK_MODELS}[model]
    n, d, dh, hd = v.num_tokens, v.dim, v.head_dim, v.hidden
    shapes = [("qkv", n, d, 3 * d), ("qk_t", n, dh, n), ("attn_v", n, n, dh), ("proj", n, d, d),
              ("fc1", n, d, hd), ("fc2", n, hd, d)]
    return [{"model": model, "layer": layer, "M": m, "K": k, "N": nn} for layer, m, k, nn in shapes]


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    from heatvit.cli import run_shapes
    from heatvit.sim.runner import simulator_available

    cfg = PRESETS["small" if quick else "bench"]
    g = cfg.gemm
    sim = "icarus" if quick and simulator_available("icarus") else "verilator"
    entries = [e for model in (QUICK_MODELS if quick else DEIT) for e in block_gemms(model)]
    t0 = time.perf_counter()
    measured = run_shapes(cfg, [{"m": e["M"], "k": e["K"], "n": e["N"]} for e in entries],
                          sim=sim, tag="bench")
    wall = time.perf_counter() - t0
    rows = []
    for e, r in zip(entries, measured):
        if not r["bit_exact"]:
            raise RuntimeError(f"{e['model']} {e['layer']}: RTL output differs from the golden model")
        ideal = g.ideal_cycles(e["M"], e["K"], e["N"])
        rows.append({**e, "rows": g.rows, "cols": g.cols, "cycles": r["cycles"],
                     "ideal_cycles": ideal, "utilization": round(ideal / r["cycles"], 4)})
    util = [r["utilization"] for r in rows]
    sim_cycles = sum(r["sim_cycles"] for r in measured)
    sim_wall = sum(r["wall_s"] for r in measured)
    summary = {
        "quick": quick, "rows": g.rows, "cols": g.cols, "simulator": sim,
        "min_utilization": min(util),
        "geomean_utilization": round(math.exp(sum(map(math.log, util)) / len(util)), 4),
        "targets": {"min": TARGET_MIN, "geomean": TARGET_GEOMEAN},
        "cycle_model_exact": all(r["cycles"] == g.estimate_cycles(r["M"], r["K"], r["N"])
                                 for r in rows),
        "simulated_cycles": sim_cycles,
        "simulation_wall_s": round(sim_wall, 2),
        "sim_cycles_per_s": round(sim_cycles / sim_wall),
        "total_wall_s_incl_build": round(wall, 1),
    }
    summary["meets_targets"] = (summary["min_utilization"] >= TARGET_MIN
                                and summary["geomean_utilization"] >= TARGET_GEOMEAN)
    paths = [out_dir / "gemm.json", out_dir / "gemm_summary.json"]
    paths[0].write_text(json.dumps(rows, indent=1) + "\n")
    paths[1].write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{'model':7} {'layer':7} {'M':>4} {'K':>5} {'N':>5} {'cycles':>9} {'ideal':>9} util")
    for r in rows:
        print(f"{r['model']:7} {r['layer']:7} {r['M']:4} {r['K']:5} {r['N']:5} {r['cycles']:9} "
              f"{r['ideal_cycles']:9.0f} {r['utilization']:.3f}")
    print(f"min {summary['min_utilization']:.3f}, geomean {summary['geomean_utilization']:.3f}; "
          f"Verilator {summary['sim_cycles_per_s']} simulated cycles/s")
    return paths
