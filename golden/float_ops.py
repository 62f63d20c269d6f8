"""Float32 operations of the float references (the whole ViT and the float token selector).

The same arithmetic as PyTorch / timm (exact erf GELU, biased-variance LayerNorm, max-shifted
softmax), evaluated in NumPy; they measure accuracy and calibrate scales, never the hardware.
Shared by :mod:`heatvit.golden.vit.float_forward` and
:mod:`heatvit.golden.token_selector.float_selector`, so neither imports the other.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), evaluated in float64."""
    x = np.asarray(x, dtype=np.float64)
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return s * (1.0 - poly * np.exp(-a * a))


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU x * Phi(x) (PyTorch's default ``approximate='none'``)."""
    return (0.5 * x * (1.0 + erf(np.asarray(x, dtype=np.float64) / np.sqrt(2.0)))).astype(F32)


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + F32(eps)) * w + b).astype(F32)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(F32)


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (x @ w.T + b).astype(F32)
