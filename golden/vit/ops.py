"""The ViT's calls into the nonlinear and token-selector golden models (the one place they are bound).

Nonlinear functions are issue 3's bit-exact golden models (:mod:`heatvit.golden.nonlinear`);
this module only chooses their formats for the ViT:

* LayerNorm: int8 in (the residual stream's scale), int8 out.
* GELU: the 16-bit fc1 output (fc1's requantizer emits 16 bits at one per-tensor scale, the
  GELU unit's wide input), int8 out.
* Softmax: the raw int32 ``q @ k^T`` accumulators (scale ``s_q * s_k``, ``head_dim**-0.5`` folded
  into q), probabilities in [0, 127] at scale 1/127 (an int8 operand of ``attn @ v``).

The token selector is issue 4's golden model, bound in :mod:`heatvit.golden.vit.selector`.
"""

from __future__ import annotations

from .. import nonlinear as NL

INTEGER_NONLINEAR = True
"""LayerNorm, softmax and GELU are the integer golden models (recorded by the accuracy bench)."""

FC1_BITS = 16
"""Width of the fc1 output feeding the GELU unit."""
GELU_S_OUT_MIN = NL.GELU_S_OUT_MIN
"""Finest GELU output scale (the core's LSB); the quantizer clamps calibrated scales to it."""
SOFTMAX_OUT_MAX = 127
"""Softmax output range [0, 127] (scale 1/127): a signed int8 operand of ``attn @ v``."""


def layer_norm_params(weight, bias, eps, s_in, s_out):
    return NL.layernorm_params(weight, bias, eps, s_in, s_out, out_bits=8, in_bits=8)


def layer_norm(x, p):
    return NL.layernorm(x, p)


def gelu_params(s_in, s_out):
    return NL.gelu_params(s_in, s_out, out_bits=8, in_bits=FC1_BITS)


def gelu(x, p):
    return NL.gelu(x, p)


def softmax_params(s_in):
    """(parameters, output scale) for raw int32 scores at scale ``s_in``."""
    p = NL.softmax_params(s_in, out_max=SOFTMAX_OUT_MAX, in_bits=32)
    return p, p.s_out


def softmax(x, p):
    return NL.softmax(x, p)
