"""The compiler's one binding to the golden ViT code (model files, quantization, patches, the
integer forward); everything else in :mod:`heatvit.compiler` uses only these names and the
golden integer operations (``golden.gemm``, ``golden.requant``, ``golden.nonlinear``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..golden.linear import quantize_float
from ..golden.vit import data as vit_data
from ..golden.vit import float_forward as vit_float
from ..golden.vit import int_forward as vit_int
from ..golden.vit import latency as vit_latency
from ..golden.vit import model as model_io
from ..golden.vit import ops as vit_ops
from ..golden.vit import quantize
from ..golden.vit.config import ViTConfig
from ..golden.vit.quantize import QuantizedViT

__all__ = ["QuantizedViT", "ViTConfig", "FC1_BITS", "SOFTMAX_OUT_MAX", "load_model", "from_state_dict",
           "calibration_images", "quantize_model", "patches", "forward_int", "dense_dumps", "forward_first_tokens", "dense_gemm_cycles"]

FC1_BITS = vit_ops.FC1_BITS
SOFTMAX_OUT_MAX = vit_ops.SOFTMAX_OUT_MAX
from_state_dict = model_io.from_state_dict


def load_model(path: str | Path | None = None):
    """A float model from a ``save_npz`` file of timm-named weights (default: the digits model)."""
    return model_io.load_npz(path)


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
    """int8 patches ``(B, num_patches, in_chans * patch**2)`` of float images (host side)."""
    imgs = vit_float.check_images(qm.cfg, images)
    return quantize_float(vit_float.patchify(qm.cfg, imgs), qm.scales["patches"])


def forward_int(qm: QuantizedViT, images, dumps: list | None = None) -> np.ndarray:
    """Golden dense integer forward (``prune=False``)."""
    return vit_int.forward_int(qm, images, prune=False, dumps=dumps)


def dense_dumps(qm: QuantizedViT, images) -> tuple[np.ndarray, list[dict]]:
    dumps: list = []
    return forward_int(qm, images, dumps), dumps


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
