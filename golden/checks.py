"""Argument checks shared by every golden function.

Golden functions accept only integer NumPy arrays whose values already lie in the documented
range of their format; anything else raises ``ValueError`` naming the parameter, so a wrong
dtype or an out-of-range value can never be silently truncated into a plausible wrong answer.
"""

from __future__ import annotations

import numpy as np


def as_int_array(name: str, x, lo: int, hi: int, ndim: int | None = None) -> np.ndarray:
    """Return ``x`` as an int64 array after checking dtype, rank and value range ``[lo, hi]``."""
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size:
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            raise ValueError(f"{name} has values in [{amin}, {amax}]; allowed range [{lo}, {hi}]")
    return arr.astype(np.int64)


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def unsigned_range(bits: int) -> tuple[int, int]:
    return 0, (1 << bits) - 1


def int_param(name: str, value, lo: int, hi: int) -> int:
    """A scalar integer parameter (``int`` or a NumPy integer, never ``bool``) in ``[lo, hi]``, as ``int``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} = {int(value)} is out of range; allowed [{lo}, {hi}]")
    return int(value)


def scale_param(name: str, value) -> float:
    """A positive finite real scale (Python or NumPy number), as ``float``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, not {value!r}")
    v = float(value)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be finite and positive, not {value!r}")
    return v


def real_array(name: str, value) -> np.ndarray:
    """``value`` as a real NumPy array (integer or float dtype): NumPy arrays and sequences as they
    are, PyTorch tensors (detected without importing torch) detached and moved to the CPU, those
    of a dtype NumPy lacks (bfloat16) widened to float32 first.  Anything else names ``name``."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        t = value.detach().cpu()
        try:
            value = t.numpy()
        except (TypeError, RuntimeError):
            if not (hasattr(t, "is_floating_point") and t.is_floating_point()):
                raise ValueError(f"{name}: tensor of dtype {getattr(t, 'dtype', '?')} has no NumPy "
                                 f"equivalent; expected a real tensor") from None
            value = t.float().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot be read as a numeric array ({e})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    return arr
