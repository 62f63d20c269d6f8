"""The ViT's view of the token selector: parameter shapes, GEMM shapes, and the calls into the
token-selector golden model (float and integer)."""

from __future__ import annotations

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
