"""The compiler's one binding to the golden ViT code (model files, quantization, patches, the
integer forward); everything else in :mod:`heatvit.compiler` uses only these names and the
golden integer operations (``golden.gemm``, ``golden.requant``, ``golden.nonlinear``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..golden.vit import data as vit_data
from ..golden.vit import float_forward as vit_float
from ..golden.vit import int_forward as vit_int
from ..golden.vit import latency as vit_latency
from ..golden.vit import model as model_io
from ..golden.token_selector import float_selector
from ..golden.vit import quantize
from ..golden.vit.config import PruningPlan, ViTConfig
from ..golden.vit.quantize import QuantizedViT

__all__ = ["QuantizedViT", "ViTConfig", "VIT_SHAPES", "vit_config", "random_model", "load_state_dict",
           "load_model", "from_state_dict", "PruningPlan", "with_threshold", "set_keep_ratios", "pruned_dumps", "calibration_images", "quantize_model", "patches", "forward_int",
           "dense_dumps", "forward_first_tokens", "dense_gemm_cycles"]

from_state_dict = model_io.from_state_dict


def load_model(path: str | Path | None = None):
    """A float model from a ``save_npz`` file of timm-named weights (default: the digits model)."""
    return model_io.load_npz(path)


VIT_SHAPES = {
    "deit_tiny": dict(image_size=224, patch_size=16, in_chans=3, dim=192, depth=12, heads=3, mlp_ratio=4.0,
                      num_classes=1000),
    "deit_small": dict(image_size=224, patch_size=16, in_chans=3, dim=384, depth=12, heads=6, mlp_ratio=4.0,
                       num_classes=1000),
    "deit_base": dict(image_size=224, patch_size=16, in_chans=3, dim=768, depth=12, heads=12, mlp_ratio=4.0,
                      num_classes=1000),
}
"""timm DeiT shapes (no distillation token) by name."""


def vit_config(spec: str) -> ViTConfig:
    """A :class:`ViTConfig` from a name in :data:`VIT_SHAPES`, a JSON object or a JSON file."""
    if spec in VIT_SHAPES:
        return ViTConfig(**VIT_SHAPES[spec])
    text = Path(spec).read_text() if Path(spec).is_file() else spec
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"ViT shape {spec!r} is neither a name ({', '.join(VIT_SHAPES)}), a JSON object "
                         f"nor a JSON file") from None
    if not isinstance(d, dict):
        raise ValueError(f"ViT shape {spec!r}: expected a JSON object of ViTConfig fields")
    return ViTConfig.from_dict(d)


def random_model(cfg: ViTConfig, seed: int, std: float = 0.05, plan: PruningPlan | None = None):
    """A float model of random normal weights (LayerNorm gains around 1), for shape-only runs;
    ``plan``: with token selectors before its blocks, in the training script's initialization
    ranges (``float_selector.random_params``)."""
    rng = np.random.default_rng(seed)
    sd = {k: rng.normal(0.0, std, s).astype(np.float32) for k, s in cfg.state_dict_shapes().items()}
    for k in sd:
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            sd[k] += 1.0
    for i in range(len(plan.blocks) if plan else 0):
        sd.update({f"selectors.{i}.{k}": v for k, v in float_selector.random_params(rng, cfg.dim, cfg.heads).items()})
    return model_io.from_state_dict(cfg, sd, plan, meta={"random_weights_seed": seed, "std": std})


def random_quantized(acc, name: str = "deit_tiny", depth: int | None = None, seed: int = 0, *, calib: int = 4,
                     plan: PruningPlan | None = None):
    """The shape-only case of the benches and tests: :func:`random_model` of the timm-key ViT
    ``name`` (or a ``ViTConfig``; ``depth`` blocks, all by default; ``seed``) quantized for ``acc`` on ``calib``
    random images (``calibration_images(.., seed)``), and one more random image (float, drawn
    from ``seed + 1``).  With ``plan``: its random-init selectors' keep logits shifted to keep
    about ``plan.keep_ratios`` of the patches on that image (:func:`set_keep_ratios`).
    Returns ``(qm, image)``, ``image`` of shape (1, C, H, W)."""
    from . import quantize_for
    cfg = vit_config(name) if isinstance(name, str) else name      # or a ViTConfig
    if depth is not None:
        cfg = dataclasses.replace(cfg, depth=depth)
    qm = quantize_for(random_model(cfg, seed, plan=plan), acc, calib_count=calib, seed=seed)
    image = np.random.default_rng(seed + 1).random((1, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32)
    if plan is not None and plan.blocks:
        qm = set_keep_ratios(qm, image[0], plan.keep_ratios)
    return qm, image


def set_keep_ratios(qm: QuantizedViT, image, ratios) -> QuantizedViT:
    """``qm`` with selector ``s`` keeping about ``ratios[s]`` of the original patch tokens on
    ``image`` (C, H, W): every stage's keep logit (``fc[3]`` bias of channel 0, every head's MLP)
    is shifted by the integer offset (bisection) that brings its kept patches closest to the
    target, stage after stage on the tokens the previous stages left.  For shape-only runs
    (random selectors score every token about 0.5, so one threshold prunes only the first stage)."""
    import dataclasses as dc

    from ..golden.token_selector.int_selector import selector_scores_int
    from ..golden.vit.selector import select_int
    x = vit_int.embed(qm, vit_float.check_images(qm.cfg, np.asarray(image)[None])[0], None)
    sels, n_tail, b0 = list(qm.selectors), 0, 0
    thr, patches = qm.toksel.threshold_q, qm.cfg.num_patches

    def shifted(sel, off):
        mlps = tuple(dc.replace(m, fc=m.fc[:3] + (dc.replace(m.fc[3], bias=m.fc[3].bias + np.array([off, 0])),))
                     for m in sel.mlps)
        return dc.replace(sel, mlps=mlps)

    for s, blk in enumerate(qm.plan.blocks):
        for i in range(b0, blk):
            x = vit_int.block(qm, i, x, None)
        b0 = blk
        want = ratios[s] * patches

        def kept(off):
            q = selector_scores_int(shifted(sels[s], off), x)
            return int((q[1:len(q) - n_tail] > thr).sum())
        lo, hi = -(1 << 24), 1 << 24                         # kept(lo) <= kept(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if kept(mid) < want else (lo, mid)
        off = min((lo, hi), key=lambda o: abs(kept(o) - want))
        sels[s] = shifted(sels[s], off)
        tmp = dc.replace(qm, selectors=sels)
        x, n_tail, _ = select_int(tmp, s, x, n_tail)
    return dc.replace(qm, selectors=sels)


def with_threshold(qm: QuantizedViT, threshold: float) -> QuantizedViT:
    """``qm`` with every selector keeping tokens whose score exceeds ``threshold`` (0, 1)."""
    if qm.toksel is None:
        raise ValueError("the model has no token selectors")
    return dataclasses.replace(qm, toksel=dataclasses.replace(qm.toksel, threshold=threshold))


def load_state_dict(path: str | Path, cfg: ViTConfig):
    """A float model of shape ``cfg`` from a raw timm state dict: ``.npz`` of arrays under timm
    key names, or a PyTorch ``.pth``/``.pt`` file (a state dict, or a checkpoint holding one under
    ``"model"``; needs torch)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"state dict file {path} does not exist")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            sd = {k: z[k] for k in z.files}
    elif path.suffix in (".pth", ".pt"):
        import torch
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(sd, dict) and isinstance(sd.get("model"), dict):
            sd = sd["model"]
    else:
        raise ValueError(f"state dict file {path}: expected .npz, .pth or .pt")
    return model_io.from_state_dict(cfg, sd)


def calibration_images(cfg: ViTConfig, count: int = 64, seed: int = 0) -> np.ndarray:
    """Calibration images: the committed digits calibration split when the model takes 1-channel
    images (the digits default), else ``count`` uniform random images in [0, 1] from ``seed``."""
    if cfg.in_chans == 1:
        calib = vit_data.load_splits()["calib_x"][:count]
        return vit_data.upscale(calib, cfg.image_size)
    rng = np.random.default_rng(seed)
    return rng.random((count, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32)


def quantize_model(model, calib, gemm_cfg) -> QuantizedViT:
    return quantize.quantize_model(model, calib, gemm_cfg)


def patches(qm: QuantizedViT, images) -> np.ndarray:
    """int8 patches ``(B, num_patches, in_chans * patch**2)`` of float images (host side); a pixel
    outside the model's input range is a ``ValueError`` (``golden.vit.int_forward.quantize_patches``)."""
    return vit_int.quantize_patches(qm, images)


def forward_int(qm: QuantizedViT, images, dumps: list | None = None) -> np.ndarray:
    """Golden dense integer forward (``prune=False``)."""
    return vit_int.forward_int(qm, images, prune=False, dumps=dumps)


def dense_dumps(qm: QuantizedViT, images) -> tuple[np.ndarray, list[dict]]:
    dumps: list = []
    return forward_int(qm, images, dumps), dumps


def pruned_dumps(qm: QuantizedViT, images) -> tuple[np.ndarray, list[dict]]:
    """Golden integer forward with the token selectors (``prune=True``) and its stage dumps."""
    dumps: list = []
    return vit_int.forward_int(qm, images, prune=True, dumps=dumps), dumps


def forward_first_tokens(qm: QuantizedViT, image, tokens: int) -> np.ndarray:
    """Golden dense forward of one (C, H, W) image with only its first ``tokens`` tokens entering
    the blocks (the embedding computes all of them): what a program run with ``N_live = tokens``
    computes."""
    x = vit_int.embed(qm, vit_float.check_images(qm.cfg, np.asarray(image)[None])[0], None)[:tokens]
    for i in range(qm.cfg.depth):
        x = vit_int.block(qm, i, x, None)
    return vit_int.head(qm, x, None)


def dense_gemm_cycles(cfg: ViTConfig, gemm_cfg) -> int:
    """The golden latency model's engine cycles of a dense forward pass (``estimate_cycles`` of
    every GEMM's row chunks)."""
    return vit_latency.cycles(gemm_cfg, cfg, [cfg.num_tokens] * cfg.depth)
