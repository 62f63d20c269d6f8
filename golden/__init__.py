"""Bit-exact NumPy golden models: every integer operation of the accelerator, defined once.

The RTL must match these functions bit for bit; floating-point references exist only to
measure error and accuracy.

Subpackages and modules, by the unit they define:

* :mod:`.requant`, :mod:`.gemm`: the GEMM engine (int8 x int8 -> int32, bias, requantization).
* :mod:`.nonlinear`: GELU, sigmoid, exp, reciprocal, rsqrt tables, Softmax and LayerNorm rows.
* :mod:`.token_selector`: the HeatViT token selector (float and integer), keep decisions,
  compaction and the package token.
* :mod:`.float_ops`, :mod:`.linear`: float32 reference operations and the quantized Linear
  layer, shared by the token selector and the whole ViT.
* :mod:`.vit`: the whole ViT (config, timm state-dict import, float reference, post-training
  quantization, integer forward with token selectors, latency model, data); imported on demand
  (``from heatvit.golden import vit``), never by the unit models.
"""

from .gemm import (apply_tile_mask, check_bitmap, check_operands, check_params, gemm, matmul_acc, pack_activations,
                   pack_outputs, pack_weights, tile_bitmap, tile_counts, tile_descriptors, unpack_outputs,
                   weight_stream_bytes)
from .requant import quantize_multiplier, requantize, round_shift
from . import nonlinear, token_selector  # noqa: E402  (units built on the two above)

__all__ = ["apply_tile_mask", "check_bitmap", "tile_bitmap", "tile_counts", "tile_descriptors",
           "weight_stream_bytes", "check_operands", "check_params", "gemm", "matmul_acc", "pack_activations", "pack_outputs", "pack_weights",
           "unpack_outputs", "quantize_multiplier", "requantize", "round_shift", "nonlinear", "token_selector"]
