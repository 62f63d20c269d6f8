"""Piecewise-polynomial tables: the bit-exact evaluator and the coefficient generator.

A table approximates an integer-valued target ``T(u)`` on an unsigned index ``u`` of
``in_bits`` bits.  The top ``seg_bits`` of ``u`` select a segment ``s``; the low
``w = in_bits - seg_bits`` bits are the offset ``t``.  Each segment holds ``degree + 1`` signed
integer coefficients ``c[s][0..degree]`` of a polynomial in ``x = t / 2**w`` (in ``[0, 1)``) in
the output's units, and the evaluation is Horner's rule with one rounding per step::

    acc = c[s][degree]
    for j = degree-1 .. 0:
        acc = round_half_away(acc * t / 2**w) + c[s][j]

which is exactly what ``rtl/nonlinear/ppoly.py`` computes, one pipeline stage per step.

The generator (:func:`fit_table`) fits every segment by least squares at Chebyshev nodes (close
to minimax), rounds the coefficients, evaluates the quantized table over EVERY index of the
domain and keeps the cheapest (lowest degree, then fewest segments) table whose worst error is
within the bound.  When no table within the segment and degree budget meets it,
:class:`TableError` says which function, where and by how much the best attempt missed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..requant import round_shift


class TableError(ValueError):
    """A coefficient table misses its error bound (raised at generation time)."""


@dataclass(frozen=True)
class Table:
    name: str
    in_bits: int
    seg_bits: int
    degree: int
    coeffs: tuple            # coeffs[s][j], j = 0 .. degree (Python ints)
    out_frac: int            # guard bits: acc is the output times 2**out_frac
    domain: int              # valid indices are 0 .. domain - 1
    max_err: float = 0.0     # measured worst |acc - T(u)| / 2**out_frac (output LSB), exhaustive
    mean_err: float = 0.0
    worst_u: int = 0
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def w(self) -> int:
        return self.in_bits - self.seg_bits

    @property
    def segments(self) -> int:
        return 1 << self.seg_bits

    @property
    def coef_bits(self) -> int:
        """Signed width that holds every coefficient."""
        m = max(max(abs(c) for c in seg) for seg in self.coeffs)
        return max(2, int(m).bit_length() + 1)

    @property
    def acc_bits(self) -> int:
        """Signed width of every Horner accumulator value (measured bound + sign + slack)."""
        return self.meta.get("acc_bits", self.coef_bits + 1)

    def coeff_array(self) -> np.ndarray:
        return np.array(self.coeffs, dtype=np.int64)


def evaluate(table: Table, u) -> np.ndarray:
    """Bit-exact Horner evaluation of ``table`` at the indices ``u`` (int64 array)."""
    u = np.asarray(u, dtype=np.int64)
    c = table.coeff_array()
    w = table.w
    s = u >> w
    t = u & ((1 << w) - 1)
    cs = c[s]                                  # (..., degree + 1)
    acc = cs[..., table.degree]
    for j in range(table.degree - 1, -1, -1):
        acc = round_shift(acc * t, w) + cs[..., j]
    return acc


def _horner_trace_bits(c: np.ndarray, w: int, degree: int, u: np.ndarray) -> int:
    s = u >> w
    t = u & ((1 << w) - 1)
    cs = c[s]
    acc = cs[..., degree]
    m = int(np.abs(acc).max())
    for j in range(degree - 1, -1, -1):
        p = round_shift(acc * t, w)
        acc = p + cs[..., j]
        m = max(m, int(np.abs(p).max()), int(np.abs(acc).max()))
    return m.bit_length() + 1


def _fit(target: Callable[[np.ndarray], np.ndarray], in_bits: int, seg_bits: int, degree: int,
         domain: int, scale: float) -> np.ndarray:
    """Least-squares fit of each segment at Chebyshev nodes; coefficients in units 2**-out_frac."""
    w = in_bits - seg_bits
    n_nodes = max(4 * (degree + 1), 32)
    k = np.arange(n_nodes)
    nodes = 0.5 - 0.5 * np.cos((2 * k + 1) * np.pi / (2 * n_nodes))   # in (0, 1)
    coeffs = np.zeros((1 << seg_bits, degree + 1), dtype=np.int64)
    span = float(1 << w)
    for s in range(1 << seg_bits):
        base = s << w
        if base >= domain:
            break
        hi = min(span, domain - base)          # last segment may be partial
        x = nodes * (hi - 1) / span if hi > 1 else np.zeros(1)
        y = target(base + x * span) * scale
        if len(x) <= degree:
            p = np.zeros(degree + 1)
            p[0] = y[0]
        else:
            p = np.polynomial.polynomial.polyfit(x, y, degree)
        coeffs[s] = np.round(p).astype(np.int64)
    return coeffs


def fit_table(name: str, target: Callable[[np.ndarray], np.ndarray], *, in_bits: int,
              out_frac: int, bound: float, max_seg_bits: int, max_degree: int, domain: int | None = None,
              min_degree: int = 1, seg_bits: int | None = None, degree: int | None = None,
              describe: Callable[[int], str] | None = None) -> Table:
    """Generate and verify a table for ``target`` (float, output units, vectorized over ``u``).

    ``bound``: the largest allowed ``|acc / 2**out_frac - target(u)|`` in output LSBs, checked at
    every index ``u < domain``.  ``seg_bits``/``degree`` pin the shape; otherwise the cheapest
    passing shape within ``max_seg_bits``/``max_degree`` is chosen.
    """
    domain = (1 << in_bits) if domain is None else domain
    u = np.arange(domain, dtype=np.int64)
    exact = target(u.astype(np.float64))
    scale = float(1 << out_frac)
    degrees = [degree] if degree is not None else list(range(min_degree, max_degree + 1))
    segs = [seg_bits] if seg_bits is not None else list(range(0, min(max_seg_bits, in_bits) + 1))
    best = None
    for d in degrees:
        for sb in segs:
            c = _fit(target, in_bits, sb, d, domain, scale)
            tbl = Table(name, in_bits, sb, d, tuple(tuple(int(v) for v in row) for row in c), out_frac, domain)
            err = np.abs(evaluate(tbl, u) / scale - exact)
            worst = int(np.argmax(err))
            if best is None or err[worst] < best[0]:
                best = (float(err[worst]), sb, d, worst)
            if err[worst] <= bound:
                acc_bits = _horner_trace_bits(c, in_bits - sb, d, u)
                return Table(name, in_bits, sb, d, tbl.coeffs, out_frac, domain, float(err[worst]),
                             float(err.mean()), worst, {"acc_bits": acc_bits, "bound": bound})
    err, sb, d, worst = best
    where = describe(worst) if describe else f"u = {worst}"
    raise TableError(f"{name}: no table with at most {1 << max(segs)} segments and degree <= {max(degrees)} "
                     f"meets the bound of {bound} LSB; the best ({1 << sb} segments, degree {d}) misses it "
                     f"by {err - bound:.4g} LSB (error {err:.4g} LSB) at {where}")
