"""The ViT's calls into the nonlinear and token-selector golden models (one place to bind them).

PROVISIONAL: until the integer nonlinear golden (issue 3) and token-selector golden (issue 4)
land, LayerNorm / softmax / GELU are evaluated in float on the dequantized input and
re-quantized to the output scale, and the selector runs the float selector on dequantized
tokens.  ``INTEGER_NONLINEAR`` says which binding is active; benches record it.
"""

from __future__ import annotations

import numpy as np

from . import vit_float
from .quantize import quantize_float

INTEGER_NONLINEAR = False


def layer_norm_params(weight, bias, eps, s_in, s_out):
    return {"weight": np.asarray(weight, np.float32), "bias": np.asarray(bias, np.float32), "eps": float(eps),
            "s_out": float(s_out)}


def layer_norm(x, s_in, p):
    y = vit_float.layer_norm(x.astype(np.float32) * np.float32(s_in), p["weight"], p["bias"], p["eps"])
    return quantize_float(y, p["s_out"])


def gelu_params(s_in, s_out):
    return {"s_out": float(s_out)}


def gelu(x, s_in, p):
    return quantize_float(vit_float.gelu(x.astype(np.float32) * np.float32(s_in)), p["s_out"])


def softmax_params(s_in):
    """(parameters, output scale): probabilities in [0, 127] at scale 1/127."""
    return {}, 1.0 / 127


def softmax(x, s_in, p):
    return quantize_float(vit_float.softmax(x.astype(np.float32) * np.float32(s_in)), 1.0 / 127)


def selector_params(model, s, qm):
    return {"model": model, "index": s}


def select_int(qm, s, x, n_pkg):
    """Integer selector ``s`` on int8 tokens: (tokens, package rows at the tail, keep mask)."""
    from .vit_selector import select_tokens
    p = qm.selectors[s]
    name = f"blocks.{qm.plan.blocks[s] - 1}.out"
    xf = x.astype(np.float32) * np.float32(qm.scales[name])
    keep, pkg_w = select_tokens(p["model"], s, xf, n_pkg)
    if pkg_w is None:
        return x, n_pkg, keep
    pkg = quantize_float((pkg_w[:, None] * xf[~keep]).sum(0), qm.scales[name])
    return np.concatenate([x[keep], pkg[None]], axis=0), n_pkg + 1, keep
