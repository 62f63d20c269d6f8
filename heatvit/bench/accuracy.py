"""Accuracy table of the default model on the held-out digits test split.

Float32 reference, the integer model dense, and the integer model with its token selectors;
the mean fraction of the original patch tokens still present after each selector stage
(threshold decisions of the integer selectors); MACs of one dense forward pass and the mean
MACs per image with pruning (selector GEMMs included), counted from the token counts each
image actually had, and the same for GEMM-engine cycles (``GemmConfig.estimate_cycles`` per
GEMM, operands on chip).  Writes build/bench/accuracy.json, with the model file and its
provenance (training command, seed, library versions, the accelerator config that priced the
selector plan), which it also prints.  ``heatvit bench accuracy --model PATH`` evaluates any
model file (default: the committed ``golden/data/vit_digits.npz`` of the installed package, and
then the committed block-sparse ``vit_digits_sparse.npz``, issue 14, under ``block_sparse``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..golden.vit import data as vit_data, float_forward as vit_float, int_forward as vit_int
from ..golden.vit import latency as vit_latency, model as model_io, ops as vit_ops, quantize
from ..progress import progress

SPARSE_MODEL = "vit_digits_sparse.npz"
"""The committed block-sparse digits model (beside the default one), reported too when no
``--model`` is given."""
CHUNK = 30
"""Images per step of the integer forward passes (one progress step each)."""


def evaluate(model=None, splits=None, *, limit: int | None = None, calib_limit: int | None = None,
             details: dict | None = None) -> dict:
    """Measure the table (``limit`` / ``calib_limit``: first N test / calibration images only,
    for quick runs).  ``details``: a dict that receives the integer model's logits with token
    pruning (``pruned_logits``), their scale (``logits_scale``) and the per-image stage dumps of
    that pass (``dumps``)."""
    model = model or model_io.load_npz()
    splits = splits or vit_data.load_splits()
    cfg = model.cfg
    x = vit_data.upscale(splits["test_x"], cfg.image_size)
    y = np.asarray(splits["test_y"])
    if limit is not None:
        x, y = x[:limit], y[:limit]
    calib = vit_data.upscale(splits["calib_x"][:calib_limit], cfg.image_size)
    t0 = time.perf_counter()
    float_logits = vit_float.forward_float(model, x)
    float_pruned = vit_float.forward_float(model, x, prune=True) if model.plan.blocks else float_logits
    qm = quantize.quantize_model(model, calib)
    dumps: list = []
    int_logits, pruned_logits = [], []
    for i in progress(range(0, len(x), CHUNK), desc="accuracy: integer model", unit="chunk"):
        int_logits.append(vit_int.forward_int(qm, x[i:i + CHUNK]))
        pruned_logits.append(vit_int.forward_int(qm, x[i:i + CHUNK], prune=True, dumps=dumps))
    int_logits, pruned_logits = np.concatenate(int_logits), np.concatenate(pruned_logits)
    wall = time.perf_counter() - t0
    if details is not None:
        details.update(pruned_logits=pruned_logits, logits_scale=qm.scales["logits"], dumps=dumps)

    n_sel = len(model.plan.blocks)
    left = np.array([[len(d[f"selectors.{s}.kept_patches"]) for s in range(n_sel)] for d in dumps], dtype=float)
    tokens = [([d[f"blocks.{i}.in"].shape[0] for i in range(cfg.depth)],
               [d[f"blocks.{b - 1}.out"].shape[0] for b in model.plan.blocks]) for d in dumps]
    macs = [vit_latency.macs(cfg, *t) for t in tokens]
    cycles = [vit_latency.cycles(qm.gemm, cfg, *t) for t in tokens]
    dense_tokens = [cfg.num_tokens] * cfg.depth
    top1 = lambda logits: float(np.mean(np.argmax(logits, axis=1) == y))
    return {
        "n_test": int(len(y)),
        "float_top1": top1(float_logits),
        "int8_top1": top1(int_logits),
        "pruned_int8_top1": top1(pruned_logits),
        "pruned_float_top1": top1(float_pruned),
        "keep_ratio_per_stage": [float(v) for v in (left.mean(axis=0) / cfg.num_patches)] if n_sel else [],
        "selector_blocks": list(model.plan.blocks),
        "target_keep_ratios": list(model.plan.keep_ratios),
        "macs_dense": int(vit_latency.macs(cfg, dense_tokens)),
        "macs_pruned": float(np.mean(macs)),
        "gemm_cycles_dense": int(vit_latency.cycles(qm.gemm, cfg, dense_tokens)),
        "gemm_cycles_pruned": float(np.mean(cycles)),
        "gemm_array": [qm.gemm.rows, qm.gemm.cols],
        "integer_nonlinear": vit_ops.INTEGER_NONLINEAR,
        "wall_s": wall,
    }


def provenance(model) -> dict:
    """What the model's metadata says about how it was made (empty entries for older files)."""
    m = model.meta
    return {"commands": m.get("commands", []), "seed": m.get("seed"), "versions": m.get("versions", {}),
            "latency_config": m.get("latency_config", {}), "recipe": m.get("recipe", {})}


def main(out_dir: Path, quick: bool, model: Path | None = None) -> list[Path]:
    path_in = Path(model) if model is not None else model_io.DEFAULT_MODEL
    loaded = model_io.load_npz(path_in)
    prov = provenance(loaded)
    print(f"model {path_in}: trained by {prov['commands'] or 'unrecorded command'} (seed {prov['seed']}); "
          f"versions {prov['versions'] or 'unrecorded'}; latency priced on {prov['latency_config'] or 'unrecorded config'}",
          flush=True)
    # Quick: 8 test and 32 calibration images (the integer golden forward takes ~1 s per image).
    res = evaluate(loaded, limit=8, calib_limit=32) if quick else evaluate(loaded)
    res["quick"] = quick
    res["mac_reduction"] = 1.0 - res["macs_pruned"] / res["macs_dense"]
    res["model"] = str(path_in)
    res["provenance"] = prov
    sparse = Path(model_io.DEFAULT_MODEL).with_name(SPARSE_MODEL)
    if model is None and sparse.is_file():
        # the committed block-sparse model (issue 14) beside the dense-weight one, measured alike
        sm = model_io.load_npz(sparse)
        s = evaluate(sm, limit=8, calib_limit=32) if quick else evaluate(sm)
        s["mac_reduction"] = 1.0 - s["macs_pruned"] / s["macs_dense"]
        info = sm.meta.get("block_prune", {})
        s.update(model=str(sparse), provenance=provenance(sm), block_prune={k: v for k, v in info.items() if k != "tiles"},
                 qat_epochs=sm.meta.get("recipe", {}).get("qat_epochs", 0),
                 tiles_kept=sum(v[0] for v in info.get("tiles", {}).values()),
                 tiles_total=sum(v[1] for v in info.get("tiles", {}).values()))
        res["block_sparse"] = s
        print(f"block-sparse model {sparse} (density {info.get('density')}, {s['qat_epochs']} quantization-aware "
              f"epochs): int8 {s['int8_top1']:.4f}, with selectors {s['pruned_int8_top1']:.4f} "
              f"(dense-weight model: {res['int8_top1']:.4f}, {res['pruned_int8_top1']:.4f})", flush=True)
    path = Path(out_dir) / "accuracy.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))
    return [path]
