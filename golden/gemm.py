"""Bit-exact GEMM and the data layouts of the GEMM engine's buffers and streams.

Numeric formats (see docs/architecture.md, "Numerics"):

* ``A[M, K]``: activations, signed ``act_bits`` (int8), one per-tensor scale.
* ``W[K, N]``: weights, signed ``weight_bits`` (int8), symmetric, one scale per output channel n.
* ``acc[M, N] = A @ W``: exact signed ``acc_bits`` (int32) accumulation; the config guarantees
  ``max_k * 2**14 < 2**31`` so it can never overflow.
* ``Y = requantize(acc, bias, mult, shift)``: see :mod:`heatvit.golden.requant`.

Layouts, for R = ``rows`` and C = ``cols``, KT = ceil(K/R), NT = ceil(N/C):

* Activation buffer word ``kt * M + m`` holds ``A[m, kt*R : kt*R + R]`` (lane r = k offset r),
  zero-padded past K.  This is also the order in which the engine emits output rows, so an
  output tile can be written back as the next GEMM's activations with a plain counter.
* Weight stream: for nt, for kt, for r in 0..R-1: one word of C lanes ``W[kt*R + r, nt*C + c]``,
  zero-padded past K and past N; NT * KT * R words in all.  A sparse GEMM streams only the
  tiles set in its tile bitmap (``bitmap[kt, nt]``, :func:`tile_bitmap`), in the same order,
  and the engine walks them from the ``tiles`` descriptor stream (:func:`tile_descriptors`).
* Parameters: one beat per output channel ``n``: ``(n, bias[n], mult[n], shift[n])``.
* Output stream: for nt, for m: one word of C lanes ``Y[m, nt*C + c]``; lanes past N are zero.
"""

from __future__ import annotations

import numpy as np

from ..config import GemmConfig, ceil_div
from .checks import as_int_array, signed_range, unsigned_range
from .requant import requantize


def check_operands(cfg: GemmConfig, a, w) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``a`` (M x K) and ``w`` (K x N) against the config; return them as int64."""
    a = as_int_array("a", a, cfg.act_min, cfg.act_max, ndim=2)
    w = as_int_array("w", w, cfg.weight_min, cfg.weight_max, ndim=2)
    if a.shape[1] != w.shape[0]:
        raise ValueError(f"a is {a.shape[0]} x {a.shape[1]} but w is {w.shape[0]} x {w.shape[1]}: "
                         f"the K dimensions differ")
    cfg.check_gemm_shape(a.shape[0], a.shape[1], w.shape[1])
    return a, w


def matmul_acc(cfg: GemmConfig, a, w) -> np.ndarray:
    """Exact integer ``A @ W`` as int64 values within the ``acc_bits`` range.

    Computed in float64 (BLAS) and converted back: every partial sum is an integer of
    magnitude below ``max_k * 2**14 < 2**31``, far inside float64's exact range of 2**53, so
    the result is exact, and much faster than NumPy's integer matmul.
    """
    a, w = check_operands(cfg, a, w)
    return np.rint(a.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)


def check_params(cfg: GemmConfig, n: int, bias, mult, shift) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcast per-channel requantization parameters to length ``n`` and range-check them."""
    out = []
    for name, val, (lo, hi) in (("bias", bias, signed_range(cfg.bias_bits)),
                                ("mult", mult, unsigned_range(cfg.mult_bits)),
                                ("shift", shift, (0, cfg.max_shift))):
        arr = as_int_array(name, val, lo, hi)
        if arr.ndim == 0:
            arr = np.full(n, int(arr), dtype=np.int64)
        if arr.shape != (n,):
            raise ValueError(f"{name} must be a scalar or have shape ({n},), got {arr.shape}")
        out.append(arr)
    return out[0], out[1], out[2]


def gemm(cfg: GemmConfig, a, w, bias, mult, shift) -> np.ndarray:
    """The GEMM engine's result: ``requantize(A @ W, bias, mult, shift)`` as int64 in act range."""
    acc = matmul_acc(cfg, a, w)
    bias, mult, shift = check_params(cfg, acc.shape[1], bias, mult, shift)
    return requantize(acc, bias, mult, shift, out_bits=cfg.act_bits, acc_bits=cfg.acc_bits,
                      bias_bits=cfg.bias_bits, mult_bits=cfg.mult_bits, max_shift=cfg.max_shift)


# -- fitting long GEMMs to the engine ---------------------------------------------------------

def row_chunks(cfg: GemmConfig, m: int, k: int) -> list[slice]:
    """Row ranges of an ``m x k`` activation operand that each fit the engine: at most ``max_m``
    rows and ``ceil(k/R) * rows <= act_buffer_words`` buffer words.  A GEMM longer than that
    runs as several engine GEMMs over consecutive token ranges, as the layer controller issues
    them; rows are independent, so the result equals the one long GEMM.  Every GEMM of the
    golden ViT and the token selector is split by this one rule (:func:`gemm_rows`,
    :func:`matmul_acc_rows`), and the latency model costs the same pieces (:func:`split_shape`)."""
    if not (isinstance(m, (int, np.integer)) and m >= 0):
        raise ValueError(f"m must be a non-negative integer, not {m!r}")
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= cfg.max_k):
        raise ValueError(f"k must be an integer in [1, {cfg.max_k}] (GemmConfig.max_k), not {k!r}")
    step = max(1, min(cfg.max_m, cfg.act_buffer_words // ceil_div(int(k), cfg.rows)))
    return [slice(i, min(i + step, int(m))) for i in range(0, int(m), step)]


def split_shape(cfg: GemmConfig, m: int, k: int, n: int) -> list[tuple[int, int, int]]:
    """The engine GEMMs ``(m_i, k, n)`` that one ``m x k x n`` GEMM is issued as (:func:`row_chunks`)."""
    return [(r.stop - r.start, k, n) for r in row_chunks(cfg, m, k)]


def matmul_acc_rows(cfg: GemmConfig, a, w) -> np.ndarray:
    """:func:`matmul_acc` of an ``a`` of any row count, issued in :func:`row_chunks` pieces."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"a must be 2-D (M x K), got shape {a.shape}")
    return np.concatenate([matmul_acc(cfg, a[r], w) for r in row_chunks(cfg, *a.shape)], axis=0)


def gemm_rows(cfg: GemmConfig, a, w, bias, mult, shift, *, out_bits: int | None = None) -> np.ndarray:
    """:func:`gemm` of an ``a`` of any row count, issued in :func:`row_chunks` pieces.

    ``out_bits`` wider than ``act_bits``: the same accumulation and requantizer, saturating to
    ``out_bits`` (fc1 feeding the GELU unit its wide input)."""
    acc = matmul_acc_rows(cfg, a, w)
    bias, mult, shift = check_params(cfg, acc.shape[1], bias, mult, shift)
    return requantize(acc, bias, mult, shift, out_bits=cfg.act_bits if out_bits is None else out_bits,
                      acc_bits=cfg.acc_bits, bias_bits=cfg.bias_bits, mult_bits=cfg.mult_bits,
                      max_shift=cfg.max_shift)


# -- buffer and stream layouts ----------------------------------------------------------------

def pack_activations(cfg: GemmConfig, a) -> np.ndarray:
    """Activation-buffer image: array ``(KT*M, R)``; row ``kt*M + m`` is that buffer word."""
    a = as_int_array("a", a, cfg.act_min, cfg.act_max, ndim=2)
    m, k = a.shape
    kt = ceil_div(k, cfg.rows)
    padded = np.zeros((m, kt * cfg.rows), dtype=np.int64)
    padded[:, :k] = a
    return padded.reshape(m, kt, cfg.rows).transpose(1, 0, 2).reshape(kt * m, cfg.rows)


def _weight_tiles(cfg: GemmConfig, w: np.ndarray) -> np.ndarray:
    """``W`` zero-padded and cut into ``(NT, KT, R, C)`` tiles (tile ``[nt, kt]`` = ``W[kt*R:, nt*C:]``)."""
    k, n = w.shape
    kt, nt = ceil_div(k, cfg.rows), ceil_div(n, cfg.cols)
    padded = np.zeros((kt * cfg.rows, nt * cfg.cols), dtype=np.int64)
    padded[:k, :n] = w
    return padded.reshape(kt, cfg.rows, nt, cfg.cols).transpose(2, 0, 1, 3)


def pack_weights(cfg: GemmConfig, w, bitmap=None, *, skip_zero_tiles: bool = False) -> np.ndarray:
    """Weight-stream image: array ``(T*R, C)`` in the order the engine consumes it.

    Dense (default): all ``T = NT*KT`` tiles.  Sparse: only the tiles whose ``bitmap[kt, nt]``
    is set (:func:`tile_bitmap` layout), in the same (nt, kt) order, ``T = bitmap.sum()``;
    ``skip_zero_tiles=True`` uses ``tile_bitmap(cfg, w)``.  A tile left out must be all zero
    (``ValueError`` otherwise): skipping changes which words stream, never the arithmetic."""
    w = as_int_array("w", w, cfg.weight_min, cfg.weight_max, ndim=2)
    tiles = _weight_tiles(cfg, w)
    if skip_zero_tiles:
        if bitmap is not None:
            raise ValueError("pack_weights: give either bitmap or skip_zero_tiles=True, not both")
        bitmap = tile_bitmap(cfg, w)
    if bitmap is not None:
        bitmap = check_bitmap(cfg, bitmap, *w.shape)
        dropped = tiles[~bitmap.T]
        if dropped.any():
            nt, kt = np.argwhere(~bitmap.T)[np.flatnonzero(dropped.any(axis=(1, 2)))[0]]
            raise ValueError(f"pack_weights: bitmap[{kt}, {nt}] is 0 but weight tile (kt={kt}, "
                             f"nt={nt}) holds non-zero weights")
        tiles = tiles[bitmap.T]
    return tiles.reshape(-1, cfg.cols)


# -- static block sparsity: tile bitmaps ------------------------------------------------------

def tile_grid(cfg: GemmConfig, k: int, n: int) -> tuple[int, int]:
    """``(KT, NT)``: the shape of the tile bitmap of a ``K x N`` weight matrix."""
    for name, v, hi in (("k", k, cfg.max_k), ("n", n, cfg.max_n)):
        if not (isinstance(v, (int, np.integer)) and 1 <= v <= hi):
            raise ValueError(f"{name} must be an integer in [1, {hi}], not {v!r}")
    return ceil_div(int(k), cfg.rows), ceil_div(int(n), cfg.cols)


def tile_bitmap(cfg: GemmConfig, w) -> np.ndarray:
    """Bitmap of the non-zero weight tiles of ``W[K, N]``: bool ``(KT, NT)``, ``[kt, nt]`` set
    when the ``R x C`` block ``W[kt*R : kt*R+R, nt*C : nt*C+C]`` (the block one array load
    holds) has a non-zero weight."""
    w = as_int_array("w", w, cfg.weight_min, cfg.weight_max, ndim=2)
    tile_grid(cfg, *w.shape)
    return _weight_tiles(cfg, w).any(axis=(2, 3)).T.copy()


def check_bitmap(cfg: GemmConfig, bitmap, k: int, n: int) -> np.ndarray:
    """Validate a tile bitmap for a ``K x N`` weight matrix; return it as bool ``(KT, NT)``."""
    shape = tile_grid(cfg, k, n)
    arr = np.asarray(bitmap)
    if arr.dtype != bool:
        arr = as_int_array("bitmap", arr, 0, 1)
    if arr.shape != shape:
        raise ValueError(f"bitmap must have shape (KT, NT) = {shape} for K={k}, N={n} on a "
                         f"{cfg.rows}x{cfg.cols} array, got {arr.shape}")
    return arr.astype(bool)


def apply_tile_mask(cfg: GemmConfig, w, bitmap) -> np.ndarray:
    """``W`` with every tile whose bitmap bit is 0 set to zero (block pruning at tile granularity)."""
    w = as_int_array("w", w, cfg.weight_min, cfg.weight_max, ndim=2)
    keep = check_bitmap(cfg, bitmap, *w.shape)
    mask = np.repeat(np.repeat(keep, cfg.rows, axis=0), cfg.cols, axis=1)[:w.shape[0], :w.shape[1]]
    return np.where(mask, w, 0)


def tile_counts(cfg: GemmConfig, bitmap, k: int, n: int) -> np.ndarray:
    """Non-zero tiles per N tile (column of the bitmap): int64 ``(NT,)``; the cycle model's input."""
    return check_bitmap(cfg, bitmap, k, n).sum(axis=0).astype(np.int64)


def tile_descriptors(cfg: GemmConfig, bitmap, k: int, n: int) -> np.ndarray:
    """The engine's ``tiles`` stream for a sparse GEMM (:func:`heatvit.rtl.gemm.layouts.tile_desc`):
    int64 ``(D, 3)`` rows ``(kt, last, empty)`` in stream order.  For each N tile in order: one
    row per set bit ``kt`` (ascending; ``last`` on the column's final one), or, for a column with
    no set bit, the single row ``(0, 1, 1)``: the engine then streams M zero rows so the column
    still gets bias and requantization.  ``D = bitmap.sum() + empty columns``."""
    bitmap = check_bitmap(cfg, bitmap, k, n)
    rows = []
    for col in bitmap.T:
        kts = np.flatnonzero(col)
        if kts.size == 0:
            rows.append((0, 1, 1))
        rows.extend((int(t), int(i == kts.size - 1), 0) for i, t in enumerate(kts))
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def weight_stream_bytes(cfg: GemmConfig, k: int, n: int, bitmap=None) -> int:
    """Bytes of the weight stream of one GEMM: ``R * C * weight_bits/8`` per streamed tile."""
    kt, nt = tile_grid(cfg, k, n)
    tiles = kt * nt if bitmap is None else int(check_bitmap(cfg, bitmap, k, n).sum())
    return tiles * cfg.rows * cfg.cols * ceil_div(cfg.weight_bits, 8)


def unpack_outputs(cfg: GemmConfig, beats, m: int, n: int) -> np.ndarray:
    """Inverse of the output-stream order: ``beats`` ``(NT*M, C)`` -> ``Y[M, N]``."""
    beats = np.asarray(beats, dtype=np.int64)
    nt = ceil_div(n, cfg.cols)
    if beats.shape != (nt * m, cfg.cols):
        raise ValueError(f"beats must have shape ({nt * m}, {cfg.cols}) for M={m}, N={n}, "
                         f"got {beats.shape}")
    return beats.reshape(nt, m, cfg.cols).transpose(1, 0, 2).reshape(m, nt * cfg.cols)[:, :n]


def pack_outputs(cfg: GemmConfig, y) -> np.ndarray:
    """Output-stream image of ``Y[M, N]``: ``(NT*M, C)`` with lanes past N zero."""
    y = np.asarray(y, dtype=np.int64)
    m, n = y.shape
    nt = ceil_div(n, cfg.cols)
    padded = np.zeros((m, nt * cfg.cols), dtype=np.int64)
    padded[:, :n] = y
    return padded.reshape(m, nt, cfg.cols).transpose(1, 0, 2).reshape(nt * m, cfg.cols)
