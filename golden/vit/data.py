"""The digits data set of the default model: committed splits and the 8x8 -> 32x32 upscaling.

scikit-learn's handwritten digits are 8x8 images with 17 grey levels (0..16).  The default model
sees them bilinearly upscaled to 32x32 (4x4 patches -> 64 patch tokens + class token, enough
tokens for pruning to matter), scaled to [0, 1].  The held-out test split and a calibration
subset of the training split are committed in ``data/digits_splits.npz`` (raw 8x8 uint8), written by
``train/train_digits.py`` (stratified split, seed in the file's ``provenance``), so the accuracy
bench needs neither scikit-learn nor a download.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SPLITS = Path(__file__).resolve().parents[1] / "data" / "digits_splits.npz"
"""Committed splits: ``test_x``/``test_y``, ``calib_x``/``calib_y`` (uint8 8x8 images, labels)."""

SRC = 8
"""Side of the source images."""
LEVELS = 16
"""Largest source grey level."""


def interp_matrix(src: int, dst: int) -> np.ndarray:
    """(dst, src) bilinear interpolation weights, half-pixel centres (align_corners=False),
    edges clamped: ``U @ img @ U.T`` resizes a (src, src) image to (dst, dst)."""
    if src < 1 or dst < 1:
        raise ValueError(f"interp_matrix: src = {src}, dst = {dst}; allowed >= 1")
    pos = (np.arange(dst) + 0.5) * src / dst - 0.5
    pos = np.clip(pos, 0, src - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src - 1)
    frac = pos - lo
    u = np.zeros((dst, src))
    u[np.arange(dst), lo] += 1 - frac
    u[np.arange(dst), hi] += frac
    return u


def upscale(images8, size: int = 32) -> np.ndarray:
    """uint8 (B, 8, 8) grey levels 0..16 -> float32 (B, 1, size, size) in [0, 1]."""
    x = np.asarray(images8)
    if x.ndim != 3 or x.shape[1:] != (SRC, SRC):
        raise ValueError(f"digit images have shape {x.shape}; expected (B, {SRC}, {SRC})")
    if not np.issubdtype(x.dtype, np.integer) or x.size and (x.min() < 0 or x.max() > LEVELS):
        raise ValueError(f"digit images must be integers in [0, {LEVELS}]")
    u = interp_matrix(SRC, size)
    up = np.einsum("ij,bjk,lk->bil", u, x.astype(np.float64), u) / LEVELS
    return up[:, None].astype(np.float32)


def load_splits(path: str | Path | None = None) -> dict:
    """The committed splits as a dict of arrays plus ``provenance`` (a dict)."""
    path = Path(path) if path is not None else SPLITS
    if not path.is_file():
        raise ValueError(f"digits splits file {path} does not exist (run train/train_digits.py)")
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files if k != "provenance"}
        out["provenance"] = json.loads(str(z["provenance"])) if "provenance" in z.files else {}
    return out
