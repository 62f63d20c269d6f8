"""Integer forward pass of the ViT: the exact arithmetic of the accelerator.

Every GEMM (patch embedding, qkv, per-head q@k^T and attn@v, proj, fc1, fc2, head) is the GEMM
golden model (int8 x int8 -> int32 -> requantize -> int8); two feed a nonlinear unit with a
wider result: q@k^T passes its raw int32 accumulators to softmax, fc1's requantizer emits 16
bits for GELU.  LayerNorm, softmax and GELU are the integer nonlinear golden functions (bound in
:mod:`.ops`) and the token selector is the token-selector golden model (bound in :mod:`.selector`).
A GEMM longer than the engine holds runs in row chunks (:func:`row_chunks`).  Residual adds rescale both int8 operands to the output scale with one rounding (:func:`residual_add`).

One image at a time (token counts differ per image once selectors prune).  ``dump``: a dict
that receives every intermediate integer tensor under the same stage names as the float
forward (``embed``, ``blocks.2.attn.softmax``, ...); ``qmodel.scales[name]`` dequantizes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..gemm import gemm_rows, matmul_acc_rows
from ..gemm import row_chunks as engine_row_chunks
from ..linear import QLinear, quantize_float, run_linear
from ..requant import requantize
from . import ops
from .float_forward import check_images, patchify
from .selector import initial_origin, select_int, track

if TYPE_CHECKING:                                   # quantize builds on this layer, not under it
    from .quantize import QuantizedViT


def row_chunks(qm: QuantizedViT, m: int, k: int) -> list[slice]:
    """Row ranges of an ``m x k`` activation operand that fit the engine (``max_m`` tokens and the
    activation buffer's ``ceil(k/R) * m`` words): :func:`heatvit.golden.gemm.row_chunks` for the
    model's GEMM configuration, the one rule every GEMM of the model and its selectors follows."""
    return engine_row_chunks(qm.gemm, m, k)


def linear(qm: QuantizedViT, x: np.ndarray, layer: QLinear, out_bits: int | None = None) -> np.ndarray:
    """One GEMM layer in row chunks; ``out_bits`` wider than the engine's activations: the same
    accumulation and requantizer, saturating to ``out_bits`` (fc1 feeding the GELU unit)."""
    return run_linear(qm.gemm, x, layer, out_bits)


def residual_add(a: np.ndarray, b: np.ndarray, params: tuple[int, int, int]) -> np.ndarray:
    """``y = requantize(a * mult_a + b * mult_b, shift)``: int8 + int8 -> int8 in the output scale,
    one rounding (the requantizer's), saturating."""
    ma, mb, sh = params
    acc = a.astype(np.int64) * ma + b.astype(np.int64) * mb
    return requantize(acc, 0, 1, sh, out_bits=8, mult_bits=1)


def quantize_patches(qm: QuantizedViT, images) -> np.ndarray:
    """Float images (B, C, H, W) -> int8 patches (B, num_patches, C*P*P) at ``scales['patches']``
    (the host-side input conversion).  A pixel outside :attr:`QuantizedViT.input_range` is a
    ``ValueError``, never clipped."""
    images = check_images(qm.cfg, images)
    lo, hi = qm.input_range
    if images.min() <= lo or images.max() >= hi:
        raise ValueError(f"images have pixels in [{images.min():.4g}, {images.max():.4g}]; the quantized model "
                         f"accepts ({lo:.4g}, {hi:.4g}) (input scale {qm.scales['patches']:.4g} from calibration; "
                         f"quantize_model(..., input_amax=A) widens it); pixels are never clipped")
    return quantize_float(patchify(qm.cfg, images), qm.scales["patches"])


def embed(qm: QuantizedViT, image: np.ndarray, dump: dict | None) -> np.ndarray:
    """(C, H, W) float image -> int8 tokens (num_tokens, dim) at scale ``scales['embed']``."""
    patches = quantize_patches(qm, image[None])[0]
    pe = linear(qm, patches, qm.patch_embed)
    x = np.concatenate([qm.cls_row[None], residual_add(pe, qm.pos, qm.add_embed)], axis=0)
    if dump is not None:
        dump.update({"patches": patches, "patch_embed": pe, "embed": x})
    return x


def attention(qm: QuantizedViT, i: int, x: np.ndarray, dump: dict | None) -> np.ndarray:
    blk, cfg, p = qm.blocks[i], qm.cfg, f"blocks.{i}.attn."
    d, dh = cfg.dim, cfg.head_dim
    qkv = linear(qm, x, blk.qkv)
    q, k, v = qkv[:, :d], qkv[:, d:2 * d], qkv[:, 2 * d:]
    scores, probs, ctx = [], [], []
    for h in range(cfg.heads):
        sl = slice(h * dh, (h + 1) * dh)
        s = matmul_acc_rows(qm.gemm, q[:, sl], k[:, sl].T)            # raw int32 scores
        a = ops.softmax(s, blk.softmax)
        c = gemm_rows(qm.gemm, a, v[:, sl], 0, blk.av_mult, blk.av_shift)
        scores.append(s), probs.append(a), ctx.append(c)
    ctx_all = np.concatenate(ctx, axis=1)
    out = linear(qm, ctx_all, blk.proj)
    if dump is not None:
        dump.update({p + "q": q, p + "k": k, p + "v": v, p + "scores": np.stack(scores),
                     p + "softmax": np.stack(probs), p + "ctx": ctx_all, p + "proj": out})
    return out


def block(qm: QuantizedViT, i: int, x: np.ndarray, dump: dict | None) -> np.ndarray:
    blk, p = qm.blocks[i], f"blocks.{i}."
    n1 = ops.layer_norm(x, blk.norm1)
    x1 = residual_add(x, attention(qm, i, n1, dump), blk.add1)
    n2 = ops.layer_norm(x1, blk.norm2)
    f1 = linear(qm, n2, blk.fc1, out_bits=ops.FC1_BITS)
    h = ops.gelu(f1, blk.gelu)
    m = linear(qm, h, blk.fc2)
    x2 = residual_add(x1, m, blk.add2)
    if dump is not None:
        dump.update({p + "in": x, p + "norm1": n1, p + "res1": x1, p + "norm2": n2, p + "mlp.fc1": f1,
                     p + "mlp.gelu": h, p + "mlp.fc2": m, p + "out": x2})
    return x2


def head(qm: QuantizedViT, x: np.ndarray, dump: dict | None) -> np.ndarray:
    xn = ops.layer_norm(x, qm.norm)
    logits = linear(qm, xn[:1], qm.head)[0]
    if dump is not None:
        dump.update({"norm": xn, "logits": logits})
    return logits


def forward_one(qm: QuantizedViT, image: np.ndarray, *, prune: bool, dump: dict | None = None) -> np.ndarray:
    """int8 logits of one (C, H, W) image."""
    x = embed(qm, image, dump)
    n_pkg, origin = 0, initial_origin(qm.cfg)
    for i in range(qm.cfg.depth):
        if prune and i in qm.plan.blocks:
            s = qm.plan.blocks.index(i)
            x, n_pkg, keep = select_int(qm, s, x, n_pkg)
            origin = track(origin, keep, x.shape[0], s, dump)
        x = block(qm, i, x, dump)
    return head(qm, x, dump)


def forward_int(qm: QuantizedViT, images, *, prune: bool = False, dumps: list | None = None) -> np.ndarray:
    """int8 logits (B, num_classes) of the integer model; ``prune`` runs the token selectors.
    ``dumps``: a list that receives one stage dict per image."""
    images = check_images(qm.cfg, images)
    out = []
    for img in images:
        d = {} if dumps is not None else None
        out.append(forward_one(qm, img, prune=prune, dump=d))
        if dumps is not None:
            dumps.append(d)
    return np.stack(out)
