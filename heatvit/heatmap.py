"""Heat map of token pruning: which patches each selector stage kept, for a few test images.

One row per test image: the input, then one panel per selector stage showing the patches still
present after that stage (the digit in warm tones) and the pruned ones (dark blue, the digit
faintly visible), as decided by the integer model (the accelerator's arithmetic) or, with
``--float``, by the float reference.  Written as a PNG by a tiny NumPy + zlib encoder (no
plotting library needed).

    python -m heatvit.heatmap --out build/heatmap.png --images 6
"""

from __future__ import annotations

import argparse
import struct
import zlib
from pathlib import Path

import numpy as np

from .golden.vit import data as vit_data, float_forward as vit_float, int_forward as vit_int
from .golden.vit import model as model_io, quantize

GAP = 4
"""Pixels between panels."""


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 image as an 8-bit RGB PNG."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"write_png: expected an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))          # filter 0 on every row
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def panel(image: np.ndarray, kept: np.ndarray | None, patch: int, scale: int) -> np.ndarray:
    """RGB panel of a (H, W) image in [0, 1]; ``kept``: boolean (grid, grid) mask or None (input)."""
    g = np.clip(image, 0.0, 1.0)
    if kept is None:
        rgb = np.stack([g, g, g], -1)
    else:
        mask = np.kron(kept, np.ones((patch, patch), bool))[..., None]
        warm = np.stack([0.25 + 0.75 * g, 0.1 + 0.8 * g, 0.05 + 0.35 * g], -1)    # kept: digit in orange/yellow
        cold = np.stack([0.05 + 0.15 * g, 0.08 + 0.2 * g, 0.3 + 0.3 * g], -1)      # pruned: dark blue
        rgb = np.where(mask, warm, cold)
        # patch grid lines, so single patches are visible
        rgb = rgb.repeat(scale, 0).repeat(scale, 1)
        step = patch * scale
        rgb[::step, :] *= 0.6
        rgb[:, ::step] *= 0.6
        return (rgb * 255).round().astype(np.uint8)
    return (rgb.repeat(scale, 0).repeat(scale, 1) * 255).round().astype(np.uint8)


def kept_masks(model, images: np.ndarray, use_float: bool) -> list[list[np.ndarray]]:
    """Per image, per selector stage: the (grid, grid) mask of original patches still present."""
    cfg = model.cfg
    if use_float:
        dump: dict = {}
        vit_float.forward_float(model, images, prune=True, dump=dump)
        dumps = [{k: v[j] for k, v in dump.items()} for j in range(len(images))]
    else:
        splits = vit_data.load_splits()
        qm = quantize.quantize_model(model, vit_data.upscale(splits["calib_x"], cfg.image_size))
        dumps = []
        vit_int.forward_int(qm, images, prune=True, dumps=dumps)
    out = []
    for d in dumps:
        masks = []
        for s in range(len(model.plan.blocks)):
            m = np.zeros(cfg.num_patches, bool)
            m[d[f"selectors.{s}.kept_patches"]] = True
            masks.append(m.reshape(cfg.grid, cfg.grid))
        out.append(masks)
    return out


def render(model, images: np.ndarray, *, use_float: bool = False, scale: int = 4) -> np.ndarray:
    """The heat-map picture (uint8 RGB) for ``images`` (B, C, H, W) in [0, 1]."""
    cfg = model.cfg
    if not model.plan.blocks:
        raise ValueError("the model has no token selectors (its pruning plan is empty)")
    masks = kept_masks(model, images, use_float)
    side = cfg.image_size * scale
    cols = 1 + len(model.plan.blocks)
    canvas = np.full((GAP + len(images) * (side + GAP), GAP + cols * (side + GAP), 3), 255, np.uint8)
    for r, (img, ms) in enumerate(zip(images, masks)):
        grey = img.mean(0)
        for c, kept in enumerate([None] + ms):
            y0, x0 = GAP + r * (side + GAP), GAP + c * (side + GAP)
            canvas[y0:y0 + side, x0:x0 + side] = panel(grey, kept, cfg.patch_size, scale)
    return canvas


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="heatvit heatmap", description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=None, help="model .npz (default: the committed digits model)")
    ap.add_argument("--out", type=Path, default=Path("build/heatmap.png"), help="PNG to write")
    ap.add_argument("--images", type=int, default=6, help="how many test images (the first N of the test split)")
    ap.add_argument("--first", type=int, default=0, help="index of the first test image")
    ap.add_argument("--scale", type=int, default=4, help="pixels per input pixel")
    ap.add_argument("--float", dest="use_float", action="store_true",
                    help="decisions of the float reference instead of the integer model")
    args = ap.parse_args(argv)
    splits = vit_data.load_splits()
    n_test = len(splits["test_y"])
    if not 1 <= args.images <= 64 or not 0 <= args.first <= n_test - args.images:
        ap.error(f"--images {args.images} --first {args.first}: allowed 1..64 images within the "
                 f"{n_test} test images")
    if not 1 <= args.scale <= 32:
        ap.error(f"--scale {args.scale}: allowed 1..32")
    model = model_io.load_npz(args.model)
    sel = slice(args.first, args.first + args.images)
    images = vit_data.upscale(splits["test_x"][sel], model.cfg.image_size)
    pic = render(model, images, use_float=args.use_float, scale=args.scale)
    path = write_png(args.out, pic)
    labels = " ".join(str(int(v)) for v in splits["test_y"][sel])
    print(f"wrote {path} ({pic.shape[1]}x{pic.shape[0]}): rows = test images {args.first}.."
          f"{args.first + args.images - 1} (labels {labels}); columns = input, then the patches kept "
          f"after the selectors before blocks {list(model.plan.blocks)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
