"""Float32 reference forward pass of the ViT (the accuracy reference, never the hardware).

Same operations, in the same order, as timm's ``VisionTransformer`` (DeiT, no distillation
token): conv patch embedding, class token, position embedding, pre-norm blocks
``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` with exact (erf) GELU, final ``norm``, ``head`` on
the class token.  With ``prune=True`` the model's token selectors run before their blocks
(float selector from the token-selector golden model), one image at a time.

``dump``: pass a dict to receive every intermediate tensor under a stage name
(``embed``, ``blocks.3.attn.softmax``, ``selectors.0.keep``, ``logits``, ...); the integer
forward uses the same names, so a mismatch is localized to one stage.
"""

from __future__ import annotations

import numpy as np

from ..checks import real_array
from ..float_ops import gelu, layer_norm, linear, softmax
from .config import ViTConfig
from .model import ViTModel
from .selector import initial_origin, select_float, track

_F = np.float32


def check_images(cfg: ViTConfig, images) -> np.ndarray:
    """``images`` must be a real array (or PyTorch tensor, bfloat16 included) of shape
    (B, in_chans, image_size, image_size)."""
    arr = real_array("images", images)
    want = (cfg.in_chans, cfg.image_size, cfg.image_size)
    if arr.ndim != 4 or arr.shape[1:] != want:
        raise ValueError(f"images have shape {arr.shape}; expected (B, {want[0]}, {want[1]}, {want[2]}) "
                         f"(in_chans = {cfg.in_chans}, image_size = {cfg.image_size}); "
                         f"images are never resized or re-channelled")
    if arr.shape[0] < 1:
        raise ValueError("images: batch is empty; allowed B >= 1")
    arr = arr.astype(_F)
    if not np.all(np.isfinite(arr)):
        raise ValueError("images contain NaN or infinity")
    return arr


def patchify(cfg: ViTConfig, images: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, num_patches, C*P*P), patch rows in raster order, features in the
    (c, py, px) order of a flattened ``patch_embed.proj.weight``."""
    b, c, p, g = images.shape[0], cfg.in_chans, cfg.patch_size, cfg.grid
    x = images.reshape(b, c, g, p, g, p).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, g * g, c * p * p)


def embed(model: ViTModel, images: np.ndarray, dump: dict | None = None) -> np.ndarray:
    """Patch embedding + class token + position embedding: (B, num_tokens, dim)."""
    cfg, w = model.cfg, model.weights
    patches = patchify(cfg, images)
    pw = w["patch_embed.proj.weight"].reshape(cfg.dim, -1)
    pe = linear(patches, pw, w["patch_embed.proj.bias"])
    x = pe
    cls = np.broadcast_to(w["cls_token"], (x.shape[0], 1, cfg.dim))
    x = (np.concatenate([cls, x], axis=1) + w["pos_embed"]).astype(_F)
    if dump is not None:
        dump.update({"patches": patches, "patch_embed": pe, "embed": x})
    return x


def attention(model: ViTModel, i: int, x: np.ndarray, dump: dict | None = None) -> np.ndarray:
    """Multi-head self-attention of block ``i`` on normalized tokens ``x`` (B, N, D)."""
    cfg, w, p = model.cfg, model.weights, f"blocks.{i}.attn."
    b, n, d = x.shape
    h, dh = cfg.heads, cfg.head_dim
    qkv = linear(x, w[p + "qkv.weight"], w[p + "qkv.bias"])
    qkv = qkv.reshape(b, n, 3, h, dh).transpose(2, 0, 3, 1, 4)          # (3, B, H, N, dh)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ k.transpose(0, 1, 3, 2)) * _F(dh ** -0.5)
    attn = softmax(scores)
    ctx = (attn @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
    out = linear(ctx, w[p + "proj.weight"], w[p + "proj.bias"])
    if dump is not None:
        dump.update({p + "q": q, p + "k": k, p + "v": v, p + "scores": scores, p + "softmax": attn,
                     p + "ctx": ctx, p + "proj": out})
    return out


def block(model: ViTModel, i: int, x: np.ndarray, dump: dict | None = None) -> np.ndarray:
    """Encoder block ``i``: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""
    cfg, w, p = model.cfg, model.weights, f"blocks.{i}."
    n1 = layer_norm(x, w[p + "norm1.weight"], w[p + "norm1.bias"], cfg.eps)
    x1 = (x + attention(model, i, n1, dump)).astype(_F)
    n2 = layer_norm(x1, w[p + "norm2.weight"], w[p + "norm2.bias"], cfg.eps)
    f1 = linear(n2, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])
    h = gelu(f1)
    m = linear(h, w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
    x2 = (x1 + m).astype(_F)
    if dump is not None:
        dump.update({p + "in": x, p + "norm1": n1, p + "res1": x1, p + "norm2": n2, p + "mlp.fc1": f1, p + "mlp.gelu": h,
                     p + "mlp.fc2": m, p + "out": x2})
    return x2


def head(model: ViTModel, x: np.ndarray, dump: dict | None = None) -> np.ndarray:
    cfg, w = model.cfg, model.weights
    xn = layer_norm(x, w["norm.weight"], w["norm.bias"], cfg.eps)
    logits = linear(xn[:, 0], w["head.weight"], w["head.bias"])
    if dump is not None:
        dump.update({"norm": xn, "logits": logits})
    return logits


def forward_float(model: ViTModel, images, *, prune: bool = False, dump: dict | None = None) -> np.ndarray:
    """Logits (B, num_classes) in float32.

    ``prune=False``: the dense model, batched.  ``prune=True``: token selectors before the
    blocks of ``model.plan`` (one image at a time: token counts differ per image); dumps then
    hold lists with one entry per image.
    """
    images = check_images(model.cfg, images)
    if not prune or not model.plan.blocks:
        x = embed(model, images, dump)
        for i in range(model.cfg.depth):
            x = block(model, i, x, dump)
        return head(model, x, dump)
    out = []
    for img in images:
        d = {} if dump is not None else None
        x = embed(model, img[None], d)
        n_pkg, origin = 0, initial_origin(model.cfg)
        for i in range(model.cfg.depth):
            if i in model.plan.blocks:
                s = model.plan.blocks.index(i)
                x, n_pkg, keep = select_float(model, s, x[0], n_pkg)
                origin = track(origin, keep, x.shape[0], s, d)
                x = x[None]
            x = block(model, i, x, d)
        out.append(head(model, x, d)[0])
        if dump is not None:
            for k, v in d.items():
                dump.setdefault(k, []).append(v[0] if isinstance(v, np.ndarray) and v.shape[:1] == (1,) else v)
    return np.stack(out).astype(_F)
