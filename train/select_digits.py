"""Choose a digits model among trained candidates on the validation split (never the test split).

Run from the repository root with the package installed (the ``train`` extra)::

    python train/select_digits.py CANDIDATE.npz [CANDIDATE.npz ...] [--min-mac-reduction 0.6] [--json OUT] [--cache DIR]

Every candidate (a model file written by ``train/train_digits.py``) is measured on the 144
validation images of ``train_digits.make_splits`` (the images the training scripts validate on;
the 360 test images are not read) the way ``heatvit bench accuracy`` measures the test split:
the float reference and the golden integer forward (post-training quantization on the committed
128 calibration images), with every token and with the model's token selectors; and the MACs
per image with token and weight pruning combined (:func:`pruned_macs`: every GEMM's ``m k n``
from the tokens each image kept, an encoder Linear's times its share of stored ``R x C`` weight
tiles at ``--config``'s array, as the sparsity bench counts them on the compiled program).

The rule, fixed before any candidate was measured: among the candidates whose MAC reduction
against the dense model (dense weights, every token) is at least ``--min-mac-reduction``, the
highest validation int8 top-1 with token pruning (the deployed model and the accuracy target's
metric: 144 images, so one image is 0.69 points and ties are common); ties go to the lower
cross-entropy of those int8 logits (dequantized at the logits' scale: a continuous measure of
the same forward pass), then to the larger MAC reduction, then to the earlier candidate on the
command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from heatvit.bench.accuracy import evaluate
from heatvit.golden.vit import data as vit_data, latency as vit_latency, model as model_io

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_digits  # noqa: E402  (the splits the training used)

ENCODER_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
MEASURE_VERSION = 1
"""Version of :func:`measure`'s fields (the ``--cache`` key): raise it when the measurement changes."""


def tile_share(w: np.ndarray, rows: int, cols: int) -> float:
    """Share of the ``rows x cols`` tiles of ``W = w.T`` (K x N, zero-padded) holding a non-zero."""
    wt = np.asarray(w).T
    k, n = wt.shape
    kt, nt = -(-k // rows), -(-n // cols)
    pad = np.zeros((kt * rows, nt * cols), dtype=bool)
    pad[:k, :n] = wt != 0
    return float(pad.reshape(kt, rows, nt, cols).any(axis=(1, 3)).mean())


def pruned_macs(model, tokens_per_block, selector_tokens, rows: int, cols: int) -> float:
    """MACs of one forward pass: :func:`heatvit.golden.vit.latency.macs` at the image's token
    counts, less each encoder Linear's ``m k n`` times its share of all-zero tiles."""
    sd = model.state_dict()
    total = float(vit_latency.macs(model.cfg, tokens_per_block, selector_tokens))
    for i, m in enumerate(tokens_per_block):
        for lin in ENCODER_LINEARS:
            w = np.asarray(sd[f"blocks.{i}.{lin}.weight"])
            n, k = w.shape
            total -= m * k * n * (1.0 - tile_share(w, rows, cols))
    return total


def measure(path: Path, val_x: np.ndarray, val_y: np.ndarray, calib_x: np.ndarray, rows: int, cols: int) -> dict:
    model = model_io.load_npz(path)
    cfg = model.cfg
    out: dict = {}
    res = evaluate(model, {"test_x": val_x, "test_y": val_y, "calib_x": calib_x}, details=out)
    z = out["pruned_logits"].astype(np.float64) * out["logits_scale"]
    z -= z.max(axis=1, keepdims=True)
    nll = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(val_y)), val_y]))
    dumps = out["dumps"]
    macs = [pruned_macs(model, [d[f"blocks.{i}.in"].shape[0] for i in range(cfg.depth)],
                        [d[f"blocks.{b - 1}.out"].shape[0] for b in model.plan.blocks], rows, cols) for d in dumps]
    dense = vit_latency.macs(cfg, [cfg.num_tokens] * cfg.depth)
    info = model.meta.get("block_prune", {})
    return {"model": str(path), "n_val": res["n_test"],
            "val_float_top1": res["float_top1"], "val_int8_top1": res["int8_top1"],
            "val_pruned_float_top1": res["pruned_float_top1"], "val_pruned_int8_top1": res["pruned_int8_top1"],
            "val_pruned_int8_correct": int(round(res["pruned_int8_top1"] * res["n_test"])),
            "val_pruned_int8_nll": nll,
            "keep_ratio_per_stage": res["keep_ratio_per_stage"], "target_keep_ratios": res["target_keep_ratios"],
            "macs": float(np.mean(macs)), "macs_dense": float(dense), "mac_reduction": 1 - float(np.mean(macs)) / dense,
            "density": info.get("density"), "commands": model.meta.get("commands", [])}


def choose(rows: list[dict], min_mac_reduction: float) -> dict | None:
    """The module docstring's rule (``rows`` in command-line order)."""
    ok = [(i, r) for i, r in enumerate(rows) if r["mac_reduction"] >= min_mac_reduction]
    if not ok:
        return None
    return max(ok, key=lambda ir: (ir[1]["val_pruned_int8_top1"], -ir[1]["val_pruned_int8_nll"],
                                   ir[1]["mac_reduction"], -ir[0]))[1]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path, help="candidate model files")
    ap.add_argument("--min-mac-reduction", type=float, default=0.6,
                    help="smallest MAC reduction against the dense model a candidate must reach (default 0.6)")
    ap.add_argument("--config", default="default", help="accelerator config whose array sets the tile (default: default)")
    ap.add_argument("--json", type=Path, default=None, help="write the table and the choice here")
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep each candidate's measurement here, keyed by the file's sha256, MEASURE_VERSION and the tile (a "
                         "candidate is measured once; candidates can be measured in batches)")
    args = ap.parse_args(argv)
    missing = [str(p) for p in args.models if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"candidate model files not found: {missing}")
    if not 0 <= args.min_mac_reduction < 1:
        raise ValueError(f"--min-mac-reduction must be in [0, 1), not {args.min_mac_reduction!r}")
    from heatvit.presets import load_config
    acc = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        val_x, val_y = train_digits.make_splits(Path(tmp))["val"]
    calib_x = vit_data.load_splits()["calib_x"]
    rows = []
    for p in args.models:
        key = hashlib.sha256(p.read_bytes()).hexdigest()[:24] + f"-v{MEASURE_VERSION}-{acc.gemm.rows}x{acc.gemm.cols}"
        hit = args.cache / f"{key}.json" if args.cache else None
        if hit is not None and hit.is_file():
            r = {**json.loads(hit.read_text()), "model": str(p)}
        else:
            r = measure(p, val_x, val_y, calib_x, acc.gemm.rows, acc.gemm.cols)
            if hit is not None:
                hit.parent.mkdir(parents=True, exist_ok=True)
                hit.write_text(json.dumps(r) + "\n")
        rows.append(r)
        print(f"{p}: val int8 {r['val_int8_top1']:.4f} / with tokens pruned {r['val_pruned_int8_top1']:.4f} "
              f"({r['val_pruned_int8_correct']}/{r['n_val']}, cross-entropy {r['val_pruned_int8_nll']:.4f}), float {r['val_float_top1']:.4f} / "
              f"{r['val_pruned_float_top1']:.4f}, keep {[round(k, 3) for k in r['keep_ratio_per_stage']]}, "
              f"MACs -{r['mac_reduction']:.1%}", flush=True)
    best = choose(rows, args.min_mac_reduction)
    print(f"chosen (validation, MAC reduction >= {args.min_mac_reduction:.0%}): "
          f"{best['model'] if best else 'none reaches the MAC bound'}", flush=True)
    doc = {"rule": __doc__.split("The rule, ")[1].split("\n\n")[0].replace("\n", " "),
           "min_mac_reduction": args.min_mac_reduction, "candidates": rows, "chosen": best and best["model"]}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


if __name__ == "__main__":
    main()
