"""Post-training quantization of the golden ViT (float weights -> the integer model's parameters).

Scheme (the accelerator's, see docs/architecture.md):

* Weights: int8, symmetric, one scale per output channel (``max|w_row| / 127``).
* Activations: int8, symmetric, one scale per tensor, calibrated as ``max|x| / 127`` over a
  calibration set run through the float model (``calib_images``); a few tensors have fixed
  scales set by their operator (softmax output, selector scores), and GELU outputs are never
  finer than the GELU core's LSB (2**-12).
* Input pixels: the same rule (``s = max|pixel| / 127`` over the calibration images, or
  ``input_amax / 127`` if given), stored as ``scales["patches"]``; the integer forward accepts
  pixels in :attr:`QuantizedViT.input_range` and rejects images outside it (never clips).
* Biases: int32 at scale ``s_in * s_w[n]``.  Every GEMM ends in ``requantize`` with
  ``(mult, shift) = quantize_multiplier(s_in * s_w[n] / s_out)`` (per channel).
* q, k, v come out of one qkv GEMM with three output scales (per-channel multipliers); the
  attention scale ``head_dim**-0.5`` is folded into q's multiplier.
* Two GEMMs feed a nonlinear unit a wider result (formats in :mod:`heatvit.golden.vit.ops`):
  ``q @ k^T`` passes its raw int32 accumulators (scale ``s_q * s_k``) to softmax, and fc1's
  requantizer saturates to 16 bits (one per-tensor scale) for GELU.
* Token selectors: :func:`heatvit.golden.token_selector.int_selector.quantize_selector`,
  calibrated on the float tokens each selector sees in the pruned calibration pass.
* Residual adds rescale both int8 operands to the output scale with one shared shift and one
  rounding (see :func:`add_params`).

Float-to-int conversion of weights and inputs (host side) rounds half away from zero, like
the hardware's one integer rounding rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...config import DEFAULT
from ..checks import scale_param
from ..linear import QMAX, QLinear, act_scale, quantize_float, quantize_linear
from ..requant import quantize_multiplier
from . import ops
from .float_forward import forward_float
from .selector import quantize_selector, toksel_config

__all__ = ["QMAX", "QLinear", "QBlock", "QuantizedViT", "act_scale", "add_params", "calibrate",
           "calibration_dump", "quantize_float", "quantize_linear", "quantize_model", "scale_params"]


def scale_params(ratio: float, *, mult_bits: int = 16, max_shift: int = 49) -> tuple[int, int]:
    """``(mult, shift)`` for a per-tensor rescale by ``ratio`` (e.g. q@k^T accumulators)."""
    m, s = quantize_multiplier(ratio, mult_bits=mult_bits, max_shift=max_shift)
    return int(m), int(s)


def add_params(s_a: float, s_b: float, s_y: float, *, mult_bits: int = 16) -> tuple[int, int, int]:
    """Residual add ``y = a + b`` of int8 ``a`` (scale s_a), ``b`` (s_b) into scale ``s_y``:
    ``(mult_a, mult_b, shift)`` with ``mult_x / 2**shift ~= s_x / s_y``, the larger multiplier
    normalized into ``[2**(mult_bits-1), 2**mult_bits)``."""
    ra, rb = s_a / s_y, s_b / s_y
    top = max(ra, rb)
    shift = max(0, mult_bits - 1 - math.floor(math.log2(top)))
    ma, mb = round(ra * (1 << shift)), round(rb * (1 << shift))
    if max(ma, mb) >= (1 << mult_bits):
        shift -= 1
        ma, mb = round(ra * (1 << shift)), round(rb * (1 << shift))
    if shift < 0 or max(ma, mb) >= (1 << mult_bits):
        raise ValueError(f"residual add: scale ratios {ra:.3g}, {rb:.3g} need a multiplier above "
                         f"{(1 << mult_bits) - 1}")
    return ma, mb, shift


def calibrate(dumps: list[dict], names: list[str] | None = None) -> dict[str, float]:
    """Max |x| of every dumped stage over all calibration dumps (a dump value may be an array
    or a list of per-image arrays)."""
    amax: dict[str, float] = {}
    for d in dumps:
        for k, v in d.items():
            if names is not None and k not in names:
                continue
            vals = v if isinstance(v, list) else [v]
            m = max(float(np.abs(np.asarray(a, dtype=np.float64)).max()) for a in vals if np.size(a))
            amax[k] = max(amax.get(k, 0.0), m)
    return amax


@dataclass
class QBlock:
    """Integer parameters of one encoder block (nonlinear parameter objects from vit.ops)."""

    norm1: object
    qkv: QLinear
    softmax: object
    av_mult: int
    av_shift: int
    proj: QLinear
    add1: tuple[int, int, int]
    norm2: object
    fc1: QLinear
    gelu: object
    fc2: QLinear
    add2: tuple[int, int, int]


@dataclass
class QuantizedViT:
    """The integer model: every tensor int8/int32, every rescale a (mult, shift) pair.

    ``scales[name]`` is the float scale of the integer tensor dumped under ``name`` (the
    float forward's stage names), used to dequantize dumps and by the nonlinear functions."""

    cfg: object
    plan: object
    gemm: object
    scales: dict[str, float]
    patch_embed: QLinear
    pos: np.ndarray
    add_embed: tuple[int, int, int]
    cls_row: np.ndarray
    blocks: list[QBlock]
    norm: object
    head: QLinear
    selectors: list = field(default_factory=list)
    """Integer selector parameters, one per selector (token-selector golden ``IntSelector``)."""
    toksel: object = None
    """The token-selector configuration (``TokSelConfig``) when the model has selectors."""

    @property
    def input_range(self) -> tuple[float, float]:
        """Open interval of the pixel values the integer forward accepts: those that round into
        int8 at ``s = scales["patches"]``, ``(-128.5 s, 127.5 s)``."""
        s = self.scales["patches"]
        return -128.5 * s, 127.5 * s


def calibration_dump(model, calib_images, *, prune: bool) -> dict:
    """Every float stage over the calibration images (dense, or with selectors: lists per image)."""
    dump: dict = {}
    forward_float(model, calib_images, prune=prune, dump=dump)
    return dump


def quantize_model(model, calib_images, gemm_cfg=None, *, input_amax: float | None = None) -> QuantizedViT:
    """Post-training quantization of a float :class:`~heatvit.golden.vit.model.ViTModel`.

    Activation scales come from the float model on ``calib_images`` (dense pass; when the model
    has selectors, the pruned pass too, taking the larger range of each stage).  The input
    scale is calibrated the same way, or set by ``input_amax`` (the largest |pixel| the model
    must accept, e.g. 2.7 for DeiT's mean/std-normalized images)."""
    gemm_cfg = gemm_cfg or DEFAULT.gemm
    cfg, w = model.cfg, model.weights
    amax = calibrate([calibration_dump(model, calib_images, prune=False)])
    pruned = calibration_dump(model, calib_images, prune=True) if model.plan.blocks else {}
    for k, v in calibrate([{k: v for k, v in pruned.items() if not k.startswith("selectors.")}]).items():
        amax[k] = max(amax.get(k, 0.0), v)
    kw = dict(mult_bits=gemm_cfg.mult_bits, max_shift=gemm_cfg.max_shift)
    if input_amax is not None:
        amax["patches"] = scale_param("input_amax", input_amax)
    sc = {k: act_scale(v) for k, v in amax.items()}
    pos = w["pos_embed"][0]
    sc["pos"] = act_scale(np.abs(pos[1:]).max())

    pe = quantize_linear(w["patch_embed.proj.weight"].reshape(cfg.dim, -1), w["patch_embed.proj.bias"],
                         sc["patches"], sc["patch_embed"], **kw)
    add_embed = add_params(sc["patch_embed"], sc["pos"], sc["embed"])
    cls_row = quantize_float(w["cls_token"][0, 0] + pos[0], sc["embed"])
    pos_q = quantize_float(pos[1:], sc["pos"])

    dh = cfg.head_dim
    blocks = []
    prev = "embed"
    for i in range(cfg.depth):
        p, a = f"blocks.{i}.", f"blocks.{i}.attn."
        sc[p + "in"] = sc[prev]
        s_q = sc[a + "q"] * dh ** -0.5                # q carries the attention scale
        s_qkv = np.concatenate([np.full(cfg.dim, s_q), np.full(cfg.dim, sc[a + "k"]), np.full(cfg.dim, sc[a + "v"])])
        qkv_w = w[p + "attn.qkv.weight"].astype(np.float64).copy()
        qkv_b = w[p + "attn.qkv.bias"].astype(np.float64).copy()
        qkv_w[:cfg.dim] *= dh ** -0.5
        qkv_b[:cfg.dim] *= dh ** -0.5
        sc[p + "mlp.fc1"] = act_scale(amax[p + "mlp.fc1"], ops.FC1_BITS)
        sc[a + "scores"] = s_q * sc[a + "k"]          # raw q @ k^T accumulators
        sc[p + "mlp.gelu"] = max(sc[p + "mlp.gelu"], ops.GELU_S_OUT_MIN)
        sm_params, s_p = ops.softmax_params(sc[a + "scores"])
        sc[a + "softmax"] = s_p
        blocks.append(QBlock(
            norm1=ops.layer_norm_params(w[p + "norm1.weight"], w[p + "norm1.bias"], cfg.eps,
                                            sc[p + "in"], sc[p + "norm1"]),
            qkv=quantize_linear(qkv_w, qkv_b, sc[p + "norm1"], s_qkv, **kw),
            softmax=sm_params, av_mult=0, av_shift=0,
            proj=quantize_linear(w[p + "attn.proj.weight"], w[p + "attn.proj.bias"], sc[a + "ctx"], sc[a + "proj"], **kw),
            add1=add_params(sc[p + "in"], sc[a + "proj"], sc[p + "res1"]),
            norm2=ops.layer_norm_params(w[p + "norm2.weight"], w[p + "norm2.bias"], cfg.eps,
                                            sc[p + "res1"], sc[p + "norm2"]),
            fc1=quantize_linear(w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"], sc[p + "norm2"], sc[p + "mlp.fc1"], **kw),
            gelu=ops.gelu_params(sc[p + "mlp.fc1"], sc[p + "mlp.gelu"]),
            fc2=quantize_linear(w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"], sc[p + "mlp.gelu"], sc[p + "mlp.fc2"], **kw),
            add2=add_params(sc[p + "res1"], sc[p + "mlp.fc2"], sc[p + "out"]),
        ))
        blk = blocks[-1]
        blk.av_mult, blk.av_shift = scale_params(s_p * sc[a + "v"] / sc[a + "ctx"], **kw)
        prev = p + "out"
    last = f"blocks.{cfg.depth - 1}.out"
    norm = ops.layer_norm_params(w["norm.weight"], w["norm.bias"], cfg.eps, sc[last], sc["norm"])
    head = quantize_linear(w["head.weight"], w["head.bias"], sc["norm"], sc["logits"], **kw)
    qm = QuantizedViT(cfg, model.plan, gemm_cfg, sc, pe, pos_q, add_embed, cls_row, blocks, norm, head)
    if model.plan.blocks:
        qm.toksel = toksel_config(cfg, len(model.plan.blocks), gemm_cfg.rows)
        for s, b in enumerate(model.plan.blocks):
            name = f"blocks.{b - 1}.out"                   # the tokens the selector sees
            qm.selectors.append(quantize_selector(model, s, pruned[name], sc[name], gemm_cfg))
    return qm
