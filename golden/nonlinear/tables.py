"""The coefficient tables of every instance, generated and verified on first use (cached).

Each target is given in the table's nominal output units (float64); see :mod:`.formats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from heatvit.nonlinear_config import NonlinearConfig

from . import formats as F
from .ppoly import Table, fit_table
from .reference import gelu_ref, sigmoid_ref


def _gelu_target(u):
    x = (np.asarray(u, dtype=np.float64) - (1 << (F.GELU_TABLE_BITS - 1))) / (1 << F.ACT_FRAC)
    return gelu_ref(x) * (1 << F.ACT_FRAC)


def _sigmoid_target(u):
    return sigmoid_ref(np.asarray(u, dtype=np.float64) / (1 << F.ACT_FRAC)) * (1 << F.SIGMOID_FRAC)


def _pow2_target(u):
    return np.exp2(-np.asarray(u, dtype=np.float64) / (1 << F.POW2_IN_FRAC)) * (1 << F.POW2_FRAC)


def _recip_target(u):
    return (1 << F.RECIP_FRAC) / (1.0 + np.asarray(u, dtype=np.float64) / (1 << F.MANT_BITS))


def _rsqrt_target(u):
    return (1 << F.RSQRT_FRAC) / np.sqrt(1.0 + np.asarray(u, dtype=np.float64) / (1 << F.MANT_BITS))


@dataclass(frozen=True)
class Spec:
    name: str
    target: object
    in_bits: int
    domain: int
    describe: object


SPECS = {
    "gelu": Spec("gelu", _gelu_target, F.GELU_TABLE_BITS, 1 << F.GELU_TABLE_BITS,
                 lambda u: f"x = {(u - (1 << 15)) / (1 << F.ACT_FRAC):.6g} (index {u})"),
    "sigmoid": Spec("sigmoid", _sigmoid_target, F.SIGMOID_TABLE_BITS, 1 << F.SIGMOID_TABLE_BITS,
                    lambda u: f"|x| = {u / (1 << F.ACT_FRAC):.6g} (index {u})"),
    "pow2": Spec("pow2", _pow2_target, F.POW2_IN_FRAC, 1 << F.POW2_IN_FRAC,
                 lambda u: f"f = {u / (1 << F.POW2_IN_FRAC):.8g} (index {u})"),
    "reciprocal": Spec("reciprocal", _recip_target, F.MANT_BITS, 1 << F.MANT_BITS,
                       lambda u: f"mantissa = {1 + u / (1 << F.MANT_BITS):.8g} (index {u})"),
    "rsqrt": Spec("rsqrt", _rsqrt_target, F.MANT_BITS + 2, 3 << F.MANT_BITS,
                  lambda u: f"mantissa = {1 + u / (1 << F.MANT_BITS):.8g} (index {u})"),
}


def build(name: str, cfg: NonlinearConfig | None = None, *, bound: float = F.TABLE_BOUND,
          seg_bits: int | None = None, degree: int | None = None) -> Table:
    """Generate the table of instance ``name`` within ``cfg``'s budget (raises TableError)."""
    cfg = cfg or NonlinearConfig()
    sp = SPECS[name]
    return fit_table(sp.name, sp.target, in_bits=sp.in_bits, out_frac=F.GUARD, bound=bound,
                     max_seg_bits=cfg.max_segments_log2, max_degree=cfg.max_degree, domain=sp.domain,
                     seg_bits=seg_bits, degree=degree, describe=sp.describe)


@lru_cache(maxsize=None)
def _cached(name: str, max_seg: int, max_deg: int) -> Table:
    return build(name, NonlinearConfig(max_segments_log2=max_seg, max_degree=max_deg))


def table(name: str, cfg: NonlinearConfig | None = None) -> Table:
    """The (cached) table of ``name`` for ``cfg`` (default config when None)."""
    cfg = cfg or NonlinearConfig()
    return _cached(name, cfg.max_segments_log2, cfg.max_degree)
