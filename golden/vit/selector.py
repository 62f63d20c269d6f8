"""The ViT's view of the token selector: parameter shapes, GEMM shapes, the calls into the
token-selector golden model (issue 4, :mod:`heatvit.golden.token_selector`, which holds every
selector operation and design choice), and the bookkeeping of which original patches remain."""

from __future__ import annotations

import math

import numpy as np

from heatvit.toksel_config import TokSelConfig

from ..token_selector import float_selector as FS
from ..token_selector import int_selector as IS
from .config import ViTConfig

THRESHOLD = 0.5
"""A patch token is kept when its combined keep score exceeds this (issue 4's default)."""


def selector_param_shapes(cfg: ViTConfig) -> dict[str, tuple[int, ...]]:
    """Key names (under ``selectors.I.``) and shapes of one selector's float parameters
    (one MLP per head, HeatViT)."""
    return FS.param_shapes(cfg.dim, cfg.heads)


def selector_gemm_shapes(cfg: ViTConfig, n: int) -> list[tuple[int, int, int]]:
    """GEMMs ``(m, k, n)`` of one selector on ``n`` tokens, before any selector is quantized
    (the same list as ``IntSelector.gemm_shapes(n)``; a test checks it)."""
    h, dh = cfg.heads, cfg.head_dim
    hh = max(1, h // 2)
    per_head = [(n, k, o) for k, o in FS.mlp_dims(dh)]
    return per_head * h + [(n, cfg.dim, h), (n, h, hh), (n, hh, h)]


def toksel_config(cfg: ViTConfig, n_selectors: int, gemm_rows: int):
    """The token-selector configuration of this model (threshold :data:`THRESHOLD`)."""
    return TokSelConfig(max_tokens=cfg.num_tokens + n_selectors, dim=cfg.dim, heads=cfg.heads,
                        lanes=math.gcd(gemm_rows, cfg.dim), threshold=THRESHOLD)


def select_float(model, s: int, x: np.ndarray, n_tail: int = 0):
    """Float selector ``s`` on tokens ``x`` (N, D): (kept tokens in order then the package token,
    package rows now at the tail, keep mask over the input rows)."""
    res = FS.select_float(model.selectors[s], x, model.cfg.heads, n_tail, THRESHOLD, model.cfg.eps)
    return res.tokens, res.n_tail, res.keep


def quantize_selector(model, s: int, tokens: list, s_x: float, gemm_cfg):
    """Integer parameters of selector ``s`` for int8 tokens at scale ``s_x``, calibrated on
    ``tokens`` (the float tokens it saw on the calibration images)."""
    p = model.selectors[s]
    amax = FS.calibrate(p, tokens, model.cfg.heads, model.cfg.eps)
    return IS.quantize_selector(p, amax, heads=model.cfg.heads, s_x=s_x, eps=model.cfg.eps, gemm_cfg=gemm_cfg)


def select_int(qm, s: int, x: np.ndarray, n_tail: int = 0):
    """Integer selector ``s`` on int8 tokens (bit-exact): as :func:`select_float`."""
    res = IS.select_int(qm.toksel, qm.selectors[s], x, n_tail)
    return res.tokens, res.n_tail, res.keep


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
