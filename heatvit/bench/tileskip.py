"""GEMM-engine cycles and weight traffic under static block weight sparsity (tile skipping).

Writes ``tileskip.json``: for the digits model (the committed default, at its full token count)
and DeiT-S (197 tokens) on the ``bench`` preset's array, every weight GEMM of one forward pass
(patch embedding, qkv, proj, fc1, fc2, head; attention GEMMs have no weights and are left out)
at block densities 1.0, 0.7, 0.5, 0.3.  Each layer instance gets its own random tile bitmap with
``round(density * KT * NT)`` tiles set (uniform, seeded; ``seeds`` draws averaged), and the engine GEMMs are the
controller's row chunks (``golden.gemm.split_shape``; each chunk re-streams the weights).

* ``cycles``: ``GemmConfig.estimate_cycles(m, k, n, bitmap)``, the exact cycle model, which
  ``testbench/test_tileskip.py`` checks cycle for cycle against RTL simulation (Verilator and
  Icarus) on every sparsity pattern; mean over ``seeds`` masks.  ``ratio`` = cycles / dense.
* ``weight_bytes``: bytes on the weight stream (``golden.weight_stream_bytes``).
* ``array_busy``: fraction of cycles the array streams rows of a non-zero tile (M rows per
  streamed tile / cycles); what is lost is the per-tile floor ``max(M, 2R + C)`` at small M,
  empty N tiles (M rows each, for bias + requant) and the pipeline fill.
* ``rtl`` (digits): every weight GEMM of one forward pass (41 GEMMs, one mask draw, each layer
  instance its own mask) run in RTL simulation (Verilator, bit-exact against the golden model,
  no stalls) at every density; ``rtl_ratio`` = RTL cycles / dense RTL cycles, and every GEMM's
  RTL cycle count is checked equal to the model's.  Quick mode (CI) runs them on
  :data:`QUICK_RTL_GEMM`, the same 16 x 16 array with the small buffers of the test suite's
  ``16x16`` engine (``testbench/gemm_configs.py``, tag ``16x16``), so it reuses that Verilator
  build instead of compiling the ``bench`` preset's (a 37,824-word activation buffer: ~200 s of
  C++ on CI); every digits GEMM fits those buffers unchunked, so the GEMMs, their cycles and
  the ratios are the full run's.
* ``uneven_ratio``: cycles with the same tile count spread unevenly over the N tiles (per-column
  densities drawn uniformly from [0, 1], rescaled to the count) over the uniform masks' cycles:
  the balance measure (1.0 = the engine does not care how the non-zero tiles are spread).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.golden.gemm import split_shape, weight_stream_bytes
from heatvit.presets import PRESETS

DENSITIES = (1.0, 0.7, 0.5, 0.3)
TARGET_RATIO_AT_HALF = 0.55
QUICK_RTL_GEMM = GemmConfig(rows=16, cols=16, act_buffer_words=1024, max_m=256, max_k=3072, max_n=1024,
                            weight_fifo_depth=32, out_fifo_depth=16)
"""Quick mode's RTL engine: ``testbench/gemm_configs.py``'s ``16x16`` (checked equal by
``testbench/test_tileskip.py``), run under its tag :data:`QUICK_RTL_TAG`, so the build is shared."""
QUICK_RTL_TAG = "16x16"


def weight_layers(vit) -> list[tuple[str, int, int, int, int]]:
    """``(layer, m, k, n, instances)`` of every weight GEMM of one dense forward pass."""
    t, d, hd = vit.num_tokens, vit.dim, vit.hidden
    return [("patch", vit.num_patches, vit.patch_k, d, 1), ("qkv", t, d, 3 * d, vit.depth),
            ("proj", t, d, d, vit.depth), ("fc1", t, d, hd, vit.depth), ("fc2", t, hd, d, vit.depth),
            ("head", 1, d, vit.num_classes, 1)]


def random_bitmap(rng: np.random.Generator, kt: int, nt: int, density: float, uneven: bool = False) -> np.ndarray:
    """A ``(KT, NT)`` bitmap with ``round(density * KT * NT)`` tiles set, uniformly placed or
    (``uneven``) with per-N-tile densities drawn from U[0, 1]."""
    total = int(round(density * kt * nt))
    weights = np.ones((kt, nt))
    if uneven:
        weights = weights * rng.random(nt)[None, :] + 1e-9
    flat = rng.choice(kt * nt, size=total, replace=False, p=(weights / weights.sum()).ravel())
    bitmap = np.zeros(kt * nt, bool)
    bitmap[flat] = True
    return bitmap.reshape(kt, nt)


def instance_masks(g, vit, density: float, seed: int, uneven: bool = False):
    """``(layer, m, k, n, bitmap)`` for every weight-GEMM instance of one forward pass, each
    instance with its own random mask (as a block-pruned model has), drawn in a fixed order."""
    rng = np.random.default_rng([seed, int(density * 1000), int(uneven)])
    for layer, m, k, n, count in weight_layers(vit):
        for _ in range(count):
            yield layer, m, k, n, random_bitmap(rng, -(-k // g.rows), -(-n // g.cols), density, uneven)


def model_figures(g, vit, density, seeds, uneven=False) -> dict:
    """Mean over ``seeds`` mask draws of cycles, weight bytes and busy cycles, per layer."""
    per_layer = {layer: {"M": m, "K": k, "N": n, "instances": count, "cycles": 0.0,
                         "weight_bytes": 0.0, "busy": 0.0}
                 for layer, m, k, n, count in weight_layers(vit)}
    for seed in range(seeds):
        for layer, m, k, n, bitmap in instance_masks(g, vit, density, seed, uneven):
            e = per_layer[layer]
            for mi, _, _ in split_shape(g, m, k, n):
                e["cycles"] += g.estimate_cycles(mi, k, n, bitmap) / seeds
                e["busy"] += mi * int(bitmap.sum()) / seeds
                e["weight_bytes"] += weight_stream_bytes(g, k, n, bitmap) / seeds
    cycles = sum(v["cycles"] for v in per_layer.values())
    return {"cycles": cycles, "weight_bytes": sum(v["weight_bytes"] for v in per_layer.values()),
            "array_busy": round(sum(v["busy"] for v in per_layer.values()) / cycles, 4),
            "layers": per_layer}


def rtl_digits(cfg, vit, tag: str = "bench") -> list[dict]:
    """The digits model's weight GEMMs of one forward pass, every instance with its own mask
    (mask draw seed 0 of :func:`model_figures`), in RTL simulation at every density; each RTL
    cycle count must equal the model's.  ``tag``: the Verilator build's tag."""
    from heatvit.cli import run_shapes

    g = cfg.gemm
    shapes, meta = [], []
    for d in DENSITIES:
        for layer, m, k, n, bitmap in instance_masks(g, vit, d, 0):
            for mi, _, _ in split_shape(g, m, k, n):
                shapes.append({"m": mi, "k": k, "n": n, "bitmap": bitmap.astype(int).tolist()})
                meta.append((d, layer, bitmap))
    measured = run_shapes(cfg, shapes, sim="verilator", tag=tag)
    by_density = {d: 0 for d in DENSITIES}
    for s, (d, layer, bitmap), r in zip(shapes, meta, measured):
        if not r["bit_exact"]:
            raise RuntimeError(f"digits {layer} at density {d}: RTL output differs from the golden model")
        model = g.estimate_cycles(s["m"], s["k"], s["n"], bitmap)
        if r["cycles"] != model:
            raise RuntimeError(f"digits {layer} at density {d}: {r['cycles']} RTL cycles, model {model}")
        by_density[d] += r["cycles"]
    return [{"density": d, "rtl_cycles": c, "rtl_ratio": round(c / by_density[1.0], 4)}
            for d, c in by_density.items()]


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    from heatvit.bench.gemm import DEIT
    from heatvit.golden.vit.model import load_npz

    g = PRESETS["bench"].gemm
    seeds = 2 if quick else 8
    models = {"digits": load_npz().cfg, "DeiT-S": DEIT["DeiT-S"]}
    result = {"array": f"{g.rows}x{g.cols}", "seeds": seeds, "quick": quick, "source": "GemmConfig.estimate_cycles "
              "(exact vs RTL: testbench/test_tileskip.py)", "models": {}}
    for name, vit in models.items():
        dense = model_figures(g, vit, 1.0, 1)
        rows = []
        for d in DENSITIES:
            f = model_figures(g, vit, d, seeds)
            uneven = model_figures(g, vit, d, seeds, uneven=True)
            layers = {k: {**v, "ratio": round(v["cycles"] / dense["layers"][k]["cycles"], 4)}
                      for k, v in f["layers"].items()}
            rows.append({"density": d, "cycles": round(f["cycles"]), "ratio": round(f["cycles"] / dense["cycles"], 4),
                         "weight_bytes": round(f["weight_bytes"]),
                         "weight_bytes_ratio": round(f["weight_bytes"] / dense["weight_bytes"], 4),
                         "array_busy": f["array_busy"],
                         "uneven_ratio": round(uneven["cycles"] / f["cycles"], 4), "layers": layers})
            print(f"{name:7s} density {d:.1f}: {rows[-1]['cycles']:>10d} cycles, {rows[-1]['ratio']:.3f}x dense, "
                  f"weights {rows[-1]['weight_bytes_ratio']:.3f}x, array busy {f['array_busy']:.3f}, "
                  f"uneven/uniform {rows[-1]['uneven_ratio']:.3f}", flush=True)
        half = next(r for r in rows if r["density"] == 0.5)
        result["models"][name] = {"tokens": vit.num_tokens, "densities": rows,
                                  "ratio_at_0.5": half["ratio"],
                                  "meets_target": bool(half["ratio"] <= TARGET_RATIO_AT_HALF)}
    if quick:
        rtl_cfg, tag = AcceleratorConfig(gemm=QUICK_RTL_GEMM), QUICK_RTL_TAG
        if (rtl_cfg.gemm.rows, rtl_cfg.gemm.cols) != (g.rows, g.cols):
            raise ValueError(f"QUICK_RTL_GEMM must have the bench preset's {g.rows} x {g.cols} array")
    else:
        rtl_cfg, tag = PRESETS["bench"], "bench"
    rtl = rtl_digits(rtl_cfg, models["digits"], tag)
    for r in rtl:
        print(f"digits RTL density {r['density']:.1f}: {r['rtl_cycles']} cycles, {r['rtl_ratio']:.3f}x dense", flush=True)
    result["models"]["digits"]["rtl"] = rtl
    result["models"]["digits"]["rtl_ratio_at_0.5"] = next(r["rtl_ratio"] for r in rtl if r["density"] == 0.5)
    result["target_ratio_at_0.5"] = TARGET_RATIO_AT_HALF
    path = out_dir / "tileskip.json"
    path.write_text(json.dumps(result, indent=1))
    return [path]
