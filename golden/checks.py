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
