"""The ViT's view of the token selector: parameter shapes, GEMM shapes, and the calls into the
token-selector golden model (float and integer)."""

from __future__ import annotations

import numpy as np

from .vit_config import ViTConfig


def selector_param_shapes(cfg: ViTConfig) -> dict[str, tuple[int, ...]]:
    """Key names (under ``selectors.I.``) and shapes of one selector's float parameters."""
    h, dh = cfg.heads, cfg.head_dim
    hh = max(1, h // 2)
    dims = [(dh, dh), (dh, dh // 2), (dh // 2, dh // 4), (dh // 4, 2)]
    shapes = {"norm_weight": (h, dh), "norm_bias": (h, dh)}
    for i, (k, o) in enumerate(dims):
        shapes[f"w.{i}"] = (h, o, k)
        shapes[f"b.{i}"] = (h, o)
    shapes.update({"head_fc1.weight": (hh, h), "head_fc1.bias": (hh,),
                   "head_fc2.weight": (h, hh), "head_fc2.bias": (h,)})
    return shapes


def selector_gemm_shapes(cfg: ViTConfig, n: int) -> list[tuple[int, int, int]]:
    """GEMMs ``(m, k, n)`` of one selector on ``n`` tokens: the per-head MLPs and the head-weight MLP."""
    h, dh = cfg.heads, cfg.head_dim
    hh = max(1, h // 2)
    per_head = [(n, dh, dh), (n, dh, dh // 2), (n, dh // 2, dh // 4), (n, dh // 4, 2)]
    return per_head * h + [(n, h, hh), (n, hh, h)]


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def selector_scores(cfg: ViTConfig, p: dict, x: np.ndarray) -> np.ndarray:
    """Float selector on tokens ``x`` (N, D): (keep, prune) scores (N, 2), as TokenSelector."""
    from .vit_float import gelu, layer_norm, softmax
    n = x.shape[0]
    h, dh = cfg.heads, cfg.head_dim
    half = dh // 2
    t = []
    for j in range(h):
        xh = x[:, j * dh:(j + 1) * dh]
        y = layer_norm(xh, p["norm_weight"][j], p["norm_bias"][j], cfg.eps)
        y = gelu(y @ p["w.0"][j].T + p["b.0"][j])
        y = np.concatenate([y[:, :half], np.broadcast_to(y[:, half:].mean(0), (n, half))], axis=1)
        for i in (1, 2, 3):
            y = (y @ p[f"w.{i}"][j].T + p[f"b.{i}"][j]).astype(np.float32)
            if i < 3:
                y = gelu(y)
        t.append(softmax(y))
    t = np.stack(t, axis=1)                                            # (N, H, 2)
    m = x.reshape(n, h, dh).mean(-1)
    a = _sigmoid(gelu(m @ p["head_fc1.weight"].T + p["head_fc1.bias"]) @ p["head_fc2.weight"].T + p["head_fc2.bias"])
    return ((a[..., None] * t).sum(1) / a.sum(1)[:, None]).astype(np.float32)


THRESHOLD = 0.5
"""A patch token is kept when its combined keep score exceeds this (issue 4's default)."""


def select_tokens(model, s: int, x: np.ndarray, n_fixed_tail: int = 0):
    """Decisions of selector ``s`` on tokens ``x`` (N, D): (keep mask (N,), package weights of the
    pruned tokens or None).  The class token (row 0) and the last ``n_fixed_tail`` rows (earlier
    package tokens) are always kept; a patch token is kept when its keep score > THRESHOLD."""
    score = selector_scores(model.cfg, model.selectors[s], x)
    n = x.shape[0]
    keep = score[:, 0] > THRESHOLD
    keep[0] = True
    keep[n - n_fixed_tail:] = True
    if keep.all():
        return keep, None
    w = score[~keep, 0].astype(np.float64)
    return keep, (w / max(w.sum(), 1e-12)).astype(np.float32)


def select_float(model, s: int, x: np.ndarray, n_fixed_tail: int = 0):
    """Float selector ``s``: (kept tokens in order then the package token of the pruned ones,
    package rows now at the tail, keep mask over the input rows)."""
    keep, w = select_tokens(model, s, x, n_fixed_tail)
    if w is None:
        return x, n_fixed_tail, keep
    pkg = (w[:, None] * x[~keep]).sum(0).astype(np.float32)
    return np.concatenate([x[keep], pkg[None]], axis=0), n_fixed_tail + 1, keep


CLS, PACKAGE = -1, -2
"""Origins of rows that are not patch tokens (see :func:`track`)."""


def initial_origin(cfg: ViTConfig) -> np.ndarray:
    """Origin of each token row before any selector: the class token, then patches 0..P-1."""
    return np.arange(-1, cfg.num_patches)


def track(origin: np.ndarray, keep: np.ndarray, n_out: int, s: int, dump: dict | None) -> np.ndarray:
    """Origins after selector ``s``: the kept rows in order, then package rows up to ``n_out``.
    Dumps the keep mask and the original patch indices still present (``kept_patches``)."""
    new = np.concatenate([origin[keep], np.full(n_out - int(keep.sum()), PACKAGE)])
    if dump is not None:
        dump[f"selectors.{s}.keep"] = keep
        dump[f"selectors.{s}.kept_patches"] = new[new >= 0]
    return new
