"""Bit-exact NumPy golden models: every integer operation of the accelerator, defined once.

The RTL must match these functions bit for bit; floating-point references exist only to
measure error and accuracy.
"""

from .gemm import check_operands, check_params, gemm, matmul_acc, pack_activations, pack_outputs, pack_weights, unpack_outputs
from .requant import quantize_multiplier, requantize, round_shift

__all__ = ["check_operands", "check_params", "gemm", "matmul_acc", "pack_activations", "pack_outputs", "pack_weights",
           "unpack_outputs", "quantize_multiplier", "requantize", "round_shift"]
