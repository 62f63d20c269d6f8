"""Float token selector (HeatViT, after SPViT), NumPy float32.

Parameters: a dict with the key names the training script and :mod:`heatvit.golden.vit.selector`
use (under ``selectors.I.`` in a state dict), for H heads of ``dh = D / H`` channels, HH =
max(1, H // 2), and G MLP instances (G = H: one MLP per head, HeatViT; G = 1: one shared MLP,
SPViT's code):

=================  ============  ================================================
key                shape         meaning
=================  ============  ================================================
norm_weight/bias   (G, dh)       MLP1 LayerNorm
w.0 / b.0          (G, dh, dh)   MLP1 Linear (out, in); then GELU
w.1 / b.1          (G, dh/2, dh) MLP2 Linear; then GELU
w.2 / b.2          (G, dh/4, dh/2)  MLP2 Linear; then GELU
w.3 / b.3          (G, 2, dh/4)  MLP2 Linear to (keep, prune); then softmax
head_fc1.weight    (HH, H)       head weights: Linear(H, HH) -> GELU
head_fc2.weight    (H, HH)       Linear(HH, H) -> sigmoid = a[n, h]
=================  ============  ================================================

After MLP1, channels ``[:dh/2]`` are the token's local feature and channels ``[dh/2:]`` are
replaced by their mean over all current tokens (the global feature; the sequence passed in
is the current one, so "currently kept" tokens are exactly its rows).  The head-weight input
is each token's channel mean within each head's slice.  Combined keep score:
``sum_h a t_keep / sum_h a``.
"""

from __future__ import annotations

import numpy as np

from ..float_ops import gelu, layer_norm, softmax
from .decision import StageResult, stage_float

_F = np.float32

RECORD_KEYS = ("ln", "fc0", "g0", "fc1", "g1", "fc2", "g2", "logits", "mean", "h1", "hg1", "z")
"""Intermediate tensors :func:`selector_scores_float` can record (the integer selector's
requantization points; :func:`calibrate` takes their max |x|)."""


def mlp_dims(head_dim: int) -> list[tuple[int, int]]:
    """``(in, out)`` of the four selector-MLP Linear layers."""
    dh = head_dim
    return [(dh, dh), (dh, dh // 2), (dh // 2, dh // 4), (dh // 4, 2)]


def param_shapes(dim: int, heads: int, shared: bool = False) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of one selector's float parameters."""
    if heads < 1 or dim % heads or (dim // heads) % 4:
        raise ValueError(f"dim = {dim}, heads = {heads}: need heads >= 1 dividing dim with dim/heads a multiple of 4")
    dh, g, hh = dim // heads, 1 if shared else heads, max(1, heads // 2)
    shapes = {"norm_weight": (g, dh), "norm_bias": (g, dh)}
    for i, (k, o) in enumerate(mlp_dims(dh)):
        shapes[f"w.{i}"] = (g, o, k)
        shapes[f"b.{i}"] = (g, o)
    shapes.update({"head_fc1.weight": (hh, heads), "head_fc1.bias": (hh,),
                   "head_fc2.weight": (heads, hh), "head_fc2.bias": (heads,)})
    return shapes


def check_params(p: dict, dim: int, heads: int) -> bool:
    """Validate keys and shapes; return whether the MLP is shared (leading dimension 1)."""
    g = np.shape(p.get("norm_weight", ()))[:1]
    shared = g == (1,) and heads != 1
    want = param_shapes(dim, heads, shared)
    missing, extra = sorted(set(want) - set(p)), sorted(set(p) - set(want))
    if missing or extra:
        raise ValueError(f"selector parameters: missing keys {missing}, unexpected keys {extra}")
    for k, shape in want.items():
        if np.shape(p[k]) != shape:
            raise ValueError(f"selector parameter {k!r} has shape {np.shape(p[k])}; expected {shape} "
                             f"(dim {dim}, heads {heads}, {'shared' if shared else 'per-head'} MLP)")
    return shared


def random_params(rng: np.random.Generator, dim: int, heads: int, shared: bool = False) -> dict:
    """Random parameters in the training script's initialization ranges (for tests)."""
    p = {}
    for k, shape in param_shapes(dim, heads, shared).items():
        fan_in = shape[-1]
        if k.startswith("norm_weight"):
            p[k] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(_F)
        elif k.startswith("w.") or k.endswith(".weight"):
            p[k] = (rng.standard_normal(shape) * fan_in ** -0.5).astype(_F)
        else:
            p[k] = (0.1 * rng.standard_normal(shape)).astype(_F)
    return p


def selector_scores_float(p: dict, x, heads: int, eps: float = 1e-6, record: dict | None = None) -> np.ndarray:
    """Per-token (keep, prune) scores (N, 2) of tokens ``x`` (N, D); ``record`` collects the
    intermediates named in :data:`RECORD_KEYS` (stacked over heads where per head)."""
    x = np.asarray(x, dtype=_F)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, D), got {x.shape}")
    n, d = x.shape
    shared = check_params(p, d, heads)
    dh = d // heads
    half = dh // 2
    rec = {k: [] for k in RECORD_KEYS[:8]}
    t = []
    for j in range(heads):
        i = 0 if shared else j
        y = layer_norm(x[:, j * dh:(j + 1) * dh], p["norm_weight"][i], p["norm_bias"][i], eps)
        rec["ln"].append(y)
        y = (y @ p["w.0"][i].T + p["b.0"][i]).astype(_F)
        rec["fc0"].append(y)
        y = gelu(y)
        rec["g0"].append(y)
        y = np.concatenate([y[:, :half], np.broadcast_to(y[:, half:].mean(0), (n, half))], axis=1)
        for layer in (1, 2, 3):
            y = (y @ p[f"w.{layer}"][i].T + p[f"b.{layer}"][i]).astype(_F)
            if layer < 3:
                rec[f"fc{layer}"].append(y)
                y = gelu(y)
                rec[f"g{layer}"].append(y)
        rec["logits"].append(y)
        t.append(softmax(y))
    t = np.stack(t, axis=1)                                              # (N, H, 2)
    m = x.reshape(n, heads, dh).mean(-1)
    h1 = (m @ p["head_fc1.weight"].T + p["head_fc1.bias"]).astype(_F)
    hg1 = gelu(h1)
    z = (hg1 @ p["head_fc2.weight"].T + p["head_fc2.bias"]).astype(_F)
    a = (1.0 / (1.0 + np.exp(-z.astype(np.float64)))).astype(_F)
    if record is not None:
        for k, v in rec.items():
            record[k] = np.stack(v, axis=1)
        record.update({"mean": m, "h1": h1, "hg1": hg1, "z": z})
    return ((a[..., None] * t).sum(1) / a.sum(1)[:, None]).astype(_F)


def select_float(p: dict, x, heads: int, n_tail: int = 0, threshold: float = 0.5, eps: float = 1e-6) -> StageResult:
    """One float selector stage: scores, threshold decision, compaction and package token."""
    score = selector_scores_float(p, x, heads, eps)
    return stage_float(x, score[:, 0], n_tail, threshold)


def calibrate(p: dict, xs, heads: int, eps: float = 1e-6) -> dict[str, float]:
    """Max |x| of every recorded intermediate over the calibration token sets ``xs`` (each
    (N_i, D) float, the tokens the selector sees), plus ``"x"`` for the input itself."""
    amax = {k: 0.0 for k in RECORD_KEYS + ("x",)}
    for x in xs:
        rec: dict = {}
        selector_scores_float(p, x, heads, eps, record=rec)
        rec["x"] = np.asarray(x)
        for k, v in rec.items():
            amax[k] = max(amax[k], float(np.abs(v).max()))
    return amax
