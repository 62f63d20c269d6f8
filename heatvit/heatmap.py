"""Heat map of token pruning: which patches each selector stage kept, for a few test images.

One row per test image: the input (titled with its true and predicted class), then one panel per
selector stage showing the patches still present after that stage (the digit in warm tones) and
the pruned ones (dark blue, the digit faintly visible), each titled with the stage and the tokens
it kept, as decided by the integer model (the accelerator's arithmetic) or, with ``--float``, by
the float reference; a legend explains the colours.  Drawn with matplotlib (the ``plot`` extra).

``--rtl``: the keep masks the hardware wrote.  The model's pruned program (``heatvit compile
--prune`` for the ``small`` preset) runs on the whole accelerator in Verilator
(``heatvit_accel_fastsim`` through the driver); each panel is drawn from the SELECT records of
that run's TRACE region, and compared with golden ``forward_int(prune=True)`` of the same
quantized model: the figure's title says on how many images every mask is equal, and a panel
whose mask differs is outlined in red and titled so (they must not differ).

    heatvit heatmap --out build/heatmap.png --images 6 [--model PATH] [--float | --rtl]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .golden.vit import data as vit_data, float_forward as vit_float, int_forward as vit_int
from .golden.vit import model as model_io, quantize
from .plot import new_figure, save



def warm(g):
    """Colour of a kept patch at grey level ``g`` in [0, 1]: the digit in orange/yellow."""
    return np.stack([0.25 + 0.75 * g, 0.1 + 0.8 * g, 0.05 + 0.35 * g], -1)


def cold(g):
    """Colour of a pruned patch: dark blue, the digit faintly visible."""
    return np.stack([0.05 + 0.15 * g, 0.08 + 0.2 * g, 0.3 + 0.3 * g], -1)


def panel(image: np.ndarray, kept: np.ndarray | None, patch: int) -> np.ndarray:
    """(H, W, 3) float RGB panel of a (H, W) image in [0, 1]; ``kept``: boolean (grid, grid)
    mask (warm = kept, dark blue = pruned, patch grid lines) or None (the input, grey)."""
    g = np.clip(image, 0.0, 1.0)
    if kept is None:
        return np.stack([g, g, g], -1)
    mask = np.kron(kept, np.ones((patch, patch), bool))[..., None]
    return np.where(mask, warm(g), cold(g))


RTL_PRESET = "small"
"""The accelerator configuration ``--rtl`` simulates (the one the digits e2e tests build)."""


def grid_masks(cfg, kept_patches) -> list[np.ndarray]:
    """(grid, grid) masks of the original patch indices ``kept_patches`` of every stage."""
    out = []
    for kp in kept_patches:
        m = np.zeros(cfg.num_patches, bool)
        m[np.asarray(kp, dtype=np.int64)] = True
        out.append(m.reshape(cfg.grid, cfg.grid))
    return out


def decisions(model, images: np.ndarray, use_float: bool) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """(logits (B, classes), per image per selector stage the (grid, grid) mask of original
    patches still present) of the pruned model: integer (PTQ on the committed calibration
    images) or, with ``use_float``, the float reference."""
    cfg = model.cfg
    if use_float:
        dump: dict = {}
        logits = vit_float.forward_float(model, images, prune=True, dump=dump)
        dumps = [{k: v[j] for k, v in dump.items()} for j in range(len(images))]
    else:
        splits = vit_data.load_splits()
        qm = quantize.quantize_model(model, vit_data.upscale(splits["calib_x"], cfg.image_size))
        dumps = []
        logits = vit_int.forward_int(qm, images, prune=True, dumps=dumps)
    stages = len(model.plan.blocks)
    return np.asarray(logits), [grid_masks(cfg, [d[f"selectors.{s}.kept_patches"] for s in range(stages)])
                                for d in dumps]


def rtl_decisions(model, images: np.ndarray, workdir: Path | None = None) -> dict:
    """The pruned program of ``model`` on the whole accelerator in Verilator (``RTL_PRESET``):
    ``logits`` (RTL), ``masks`` (per image per stage, from the TRACE region the RTL wrote),
    ``golden_masks`` and ``golden_logits`` (``forward_int(prune=True)`` of the same quantized
    model), ``equal`` (per image: every mask equal), ``run`` (:func:`heatvit.bench.pruning.run_pruned`)."""
    import tempfile

    from . import compiler
    from .bench.pruning import run_pruned
    from .presets import PRESETS
    acc = PRESETS[RTL_PRESET]
    qm = compiler.quantize_for(model, acc)
    with tempfile.TemporaryDirectory() as tmp:
        run = run_pruned(qm, acc, images, Path(workdir or tmp), tag=RTL_PRESET)
    stages = len(model.plan.blocks)
    masks = [grid_masks(model.cfg, tr.kept_patches) for tr in run["traces"]]
    gold = [grid_masks(model.cfg, [d[f"selectors.{s}.kept_patches"] for s in range(stages)]) for d in run["dumps"]]
    return {"logits": np.array([r["logits"] for r in run["result"]["images"]]), "masks": masks,
            "golden_masks": gold, "golden_logits": run["logits"],
            "equal": [len(m) == len(g) and all(np.array_equal(a, b) for a, b in zip(m, g)) for m, g in zip(masks, gold)],
            "run": run}


def render(model, images: np.ndarray, labels, *, use_float: bool = False, first: int = 0, rtl: dict | None = None):
    """The heat-map figure (a matplotlib ``Figure``) for ``images`` (B, C, H, W) in [0, 1] with
    true classes ``labels``: one row per image, input then one panel per selector stage.
    ``rtl``: an :func:`rtl_decisions` result for these images (the masks the RTL wrote)."""
    from matplotlib.patches import Patch
    cfg = model.cfg
    if not model.plan.blocks:
        raise ValueError("the model has no token selectors (its pruning plan is empty)")
    if len(labels) != len(images):
        raise ValueError(f"render: {len(labels)} labels for {len(images)} images")
    if rtl is not None and use_float:
        raise ValueError("render: rtl masks and use_float exclude each other")
    if rtl is not None:
        if len(rtl["masks"]) != len(images):
            raise ValueError(f"render: rtl masks of {len(rtl['masks'])} images for {len(images)} images")
        logits, masks = rtl["logits"], rtl["masks"]
    else:
        logits, masks = decisions(model, images, use_float)
    pred = logits.argmax(1)
    rows, cols = len(images), 1 + len(model.plan.blocks)
    fig = new_figure(figsize=(2.0 * cols + 0.4, 2.1 * rows + 1.0), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    edges = np.arange(0, cfg.image_size + 1, cfg.patch_size) - 0.5
    for r, (img, ms) in enumerate(zip(images, masks)):
        grey = img.mean(0)
        ok = "" if pred[r] == labels[r] else " (wrong)"
        for c, kept in enumerate([None] + ms):
            ax = axes[r, c]
            ax.imshow(panel(grey, kept, cfg.patch_size), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if kept is None:
                ax.set_title(f"#{first + r}: true {int(labels[r])}, pred {int(pred[r])}{ok}", fontsize=8)
            else:
                for e in edges:                         # patch grid
                    ax.axhline(e, color="black", lw=0.3, alpha=0.5)
                    ax.axvline(e, color="black", lw=0.3, alpha=0.5)
                differs = rtl is not None and not np.array_equal(kept, rtl["golden_masks"][r][c - 1])
                ax.set_title(f"stage {c} (block {model.plan.blocks[c - 1]}): kept {int(kept.sum())}/"
                             f"{cfg.num_patches}" + ("\nDIFFERS from golden" if differs else ""), fontsize=8,
                             color="red" if differs else "black")
                if differs:
                    for side in ax.spines.values():
                        side.set_edgecolor("red")
                        side.set_linewidth(2.5)
    if rtl is not None:
        same = sum(rtl["equal"])
        how = (f"RTL: keep masks from the accelerator's TRACE region, Verilator, {RTL_PRESET} preset; "
               f"equal to golden on {same}/{len(images)} images")
    else:
        how = "float reference" if use_float else "integer model"
    fig.suptitle(f"Token pruning ({how}): patches present after each selector stage", fontsize=10)
    fig.legend(handles=[Patch(color=warm(np.float64(g)), label=f"kept patch ({what})")
                        for g, what in ((0.0, "background"), (1.0, "ink"))]
               + [Patch(color=cold(np.float64(g)), label=f"pruned patch ({what})")
                  for g, what in ((0.0, "background"), (1.0, "ink"))],
               loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="heatvit heatmap", description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None,
                    help="model .npz, e.g. a retrained build/train/vit_digits.npz (default: the committed digits model)")
    ap.add_argument("--out", type=Path, default=Path("build/heatmap.png"), help="PNG to write")
    ap.add_argument("--images", type=int, default=6, help="how many test images (the first N of the test split)")
    ap.add_argument("--first", type=int, default=0, help="index of the first test image")
    ap.add_argument("--dpi", type=int, default=100, help="PNG resolution")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--float", dest="use_float", action="store_true",
                     help="decisions of the float reference instead of the integer model")
    how.add_argument("--rtl", action="store_true",
                     help=f"keep masks the accelerator wrote: the pruned program on the whole accelerator in "
                          f"Verilator ({RTL_PRESET} preset, minutes per image), compared with golden's")
    args = ap.parse_args(argv)
    splits = vit_data.load_splits()
    n_test = len(splits["test_y"])
    if not 1 <= args.images <= 64 or not 0 <= args.first <= n_test - args.images:
        ap.error(f"--images {args.images} --first {args.first}: allowed 1..64 images within the "
                 f"{n_test} test images")
    if not 20 <= args.dpi <= 600:
        ap.error(f"--dpi {args.dpi}: allowed 20..600")
    model = model_io.load_npz(args.model)
    sel = slice(args.first, args.first + args.images)
    images = vit_data.upscale(splits["test_x"][sel], model.cfg.image_size)
    labels = splits["test_y"][sel]
    rtl = rtl_decisions(model, images) if args.rtl else None
    fig = render(model, images, labels, use_float=args.use_float, first=args.first, rtl=rtl)
    path = save(fig, args.out, dpi=args.dpi)
    if rtl is not None:
        bad = [args.first + i for i, ok in enumerate(rtl["equal"]) if not ok]
        print(f"RTL keep masks equal to golden's on {len(images) - len(bad)}/{len(images)} images"
              + (f"; DIFFERENT on test images {bad}" if bad else ""))
        if bad:
            return 1
    print(f"wrote {path}: rows = test images {args.first}..{args.first + args.images - 1} (true "
          f"{' '.join(str(int(v)) for v in labels)}); columns = input, then the patches kept after the "
          f"selectors before blocks {list(model.plan.blocks)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
