"""Keep decisions, order-preserving compaction and package-token consolidation (one place).

Every choice the papers (HeatViT, SPViT) leave open is made here, once, and the float selector,
the integer selector, the RTL control unit (``rtl/toksel``) and the whole-model golden ViT all
follow it:

1. **Decision.**  A token is kept when its combined keep score is *strictly greater* than the
   threshold (0.5 unless configured).  Integer: score ``q`` (UQ0.score_bits, ``q / 2**b``) is
   kept iff ``q > threshold_q`` with ``threshold_q = min(round(t * 2**b), 2**b - 1)``.
2. **Always kept.**  Row 0 (the class token) and the last ``n_tail`` rows (the package tokens of
   earlier stages) are kept whatever their score; they still take part in the selector's
   global feature (the mean over the current tokens).  So a stage that would keep no patch
   token leaves the class token, the earlier package tokens and its own package token.
3. **Order.**  Kept tokens keep their original order (order-preserving compaction: token n goes
   to position ``#kept tokens before n``), earlier package tokens therefore stay at the end of
   the kept list, and the stage's own package token is appended after all kept tokens.
4. **Package token across stages.**  Each stage that prunes at least one token appends exactly
   one new package token; earlier package tokens are never pruned or merged again (they sit in
   the always-kept tail, ``n_tail`` grows by one per pruning stage).  A stage that prunes
   nothing appends nothing.  (This is also what the PyTorch training model does.)
5. **Package token value.**  The keep-score weighted average of the pruned tokens,
   ``pkg = sum_n w_n x_n / sum_n w_n`` with ``w_n`` the token's keep score.  If every pruned
   token has score 0 (possible with integer scores), the plain mean is used (``w_n = 1``).
   Integer: ``acc = sum_n q_n x_n`` exactly (int8 tokens, unsigned scores), ``S = sum_n q_n``,
   ``pkg = sign(acc) * floor((2 |acc| + S) / (2 S))``: the average rounded half away from
   zero, the one rounding rule of the accelerator (:mod:`heatvit.golden.requant`).  It always
   lies in the int8 range (a weighted average of int8 values), at the tokens' own scale.
   Float: the same formula in float32 with float keep probabilities as weights.

Stream layouts of the control unit (see :func:`token_words`, :func:`gather_writes`): tokens
are int8 rows of ``cfg.dim`` channels held in ``chunks = dim / lanes`` words of ``lanes``
channels, chunk major (word ``k * N + n`` = token n, channels ``k*lanes .. k*lanes+lanes-1``),
the GEMM engine's activation-buffer order.  The unit writes the compacted sequence of
``N'`` tokens to word ``k * N' + position``; every write address is <= the address the token was
read from, so the compaction may run in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heatvit.toksel_config import TOKEN_BITS, TokSelConfig

from ..checks import as_int_array, signed_range

TOKEN_MIN, TOKEN_MAX = signed_range(TOKEN_BITS)


@dataclass(frozen=True)
class StageResult:
    """One selector stage's outcome."""

    tokens: np.ndarray
    """Compacted tokens (N', D): kept tokens in order, then the package token if any."""
    keep: np.ndarray
    """Decision per input token (N,) bool."""
    n_tail: int
    """Always-kept package tokens at the end of ``tokens`` (input n_tail + 1 if this stage pruned)."""

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_kept(self) -> int:
        return int(self.keep.sum())

    @property
    def has_package(self) -> bool:
        return self.n_kept < self.keep.shape[0]


def _check_tail(n: int, n_tail: int, max_tokens: int | None = None) -> None:
    if max_tokens is not None and not 1 <= n <= max_tokens:
        raise ValueError(f"token count {n} is out of range; allowed [1, {max_tokens}] (TokSelConfig.max_tokens)")
    if n < 1:
        raise ValueError("tokens must hold at least the class token (got 0 rows)")
    if not isinstance(n_tail, (int, np.integer)) or not 0 <= n_tail <= n - 1:
        raise ValueError(f"n_tail = {n_tail!r} is out of range; allowed [0, {n - 1}] for {n} tokens "
                         f"(the class token is never part of the tail)")


def always_kept(n: int, n_tail: int) -> np.ndarray:
    """Rows kept whatever their score: the class token and the ``n_tail`` earlier package tokens."""
    fixed = np.zeros(n, dtype=bool)
    fixed[0] = True
    if n_tail:
        fixed[n - n_tail:] = True
    return fixed


def decide_int(cfg: TokSelConfig, scores, n_tail: int = 0, threshold_q: int | None = None) -> np.ndarray:
    """Keep mask (N,) of integer scores (UQ0.score_bits): ``q > threshold_q`` or always kept."""
    q = as_int_array("scores", scores, 0, cfg.score_max, ndim=1)
    _check_tail(q.shape[0], n_tail, cfg.max_tokens)
    thr = cfg.threshold_q if threshold_q is None else int(threshold_q)
    if not 0 <= thr <= cfg.score_max:
        raise ValueError(f"threshold_q = {thr} is out of range; allowed [0, {cfg.score_max}]")
    return (q > thr) | always_kept(q.shape[0], n_tail)


def decide_float(scores, n_tail: int = 0, threshold: float = 0.5) -> np.ndarray:
    """Keep mask (N,) of float keep probabilities: ``p > threshold`` or always kept."""
    p = np.asarray(scores, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"scores must have 1 dimension, got shape {p.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold = {threshold} is out of range; allowed (0, 1) exclusive")
    _check_tail(p.shape[0], n_tail)
    return (p > threshold) | always_kept(p.shape[0], n_tail)


def positions(keep) -> np.ndarray:
    """New position of every token after order-preserving compaction; -1 for pruned tokens."""
    keep = np.asarray(keep, dtype=bool)
    pos = np.cumsum(keep) - 1
    return np.where(keep, pos, -1)


def package_int(x, weights) -> np.ndarray:
    """Integer package token of the pruned rows ``x`` (P, D) int8 with unsigned ``weights`` (P,):
    ``sign(acc) * floor((2|acc| + S) / (2S))``, ``acc = sum w x``, ``S = sum w`` (``w = 1`` if S = 0)."""
    x = as_int_array("x", x, TOKEN_MIN, TOKEN_MAX, ndim=2)
    w = as_int_array("weights", weights, 0, np.iinfo(np.int32).max, ndim=1)
    if x.shape[0] != w.shape[0] or x.shape[0] == 0:
        raise ValueError(f"package_int: {x.shape[0]} pruned tokens but {w.shape[0]} weights (need >= 1)")
    if w.sum() == 0:
        w = np.ones_like(w)
    s = int(w.sum())
    acc = w @ x                                        # exact int64
    mag = (2 * np.abs(acc) + s) // (2 * s)
    return np.where(acc < 0, -mag, mag).astype(np.int64)


def package_float(x, weights) -> np.ndarray:
    """Float package token: ``sum w x / sum w`` (plain mean if every weight is 0)."""
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        w = np.ones_like(w)
    return ((w[:, None] * x).sum(0) / w.sum()).astype(np.float32)


def compact(x, keep, weights, n_tail: int, package) -> StageResult:
    """Kept rows of ``x`` in order, then ``package(x[~keep], weights[~keep])`` if any was pruned."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (x.shape[0],):
        raise ValueError(f"keep has shape {keep.shape}; expected ({x.shape[0]},)")
    if keep.all():
        return StageResult(x.copy(), keep, n_tail)
    pkg = package(x[~keep], np.asarray(weights)[~keep])
    return StageResult(np.concatenate([x[keep], pkg[None].astype(x.dtype)], axis=0), keep, n_tail + 1)


def stage_int(cfg: TokSelConfig, x, scores, n_tail: int = 0, threshold_q: int | None = None) -> StageResult:
    """One integer stage: decisions from UQ0.score_bits ``scores``, compaction, package token.

    ``x``: (N, cfg.dim) int8 tokens; exactly what the RTL control unit does.
    """
    x = as_int_array("x", x, TOKEN_MIN, TOKEN_MAX, ndim=2)
    if x.shape[1] != cfg.dim:
        raise ValueError(f"x has {x.shape[1]} channels; TokSelConfig.dim = {cfg.dim}")
    keep = decide_int(cfg, scores, n_tail, threshold_q)
    if keep.shape[0] != x.shape[0]:
        raise ValueError(f"scores has {keep.shape[0]} entries for {x.shape[0]} tokens")
    return compact(x, keep, np.asarray(scores, dtype=np.int64), n_tail, package_int)


def stage_float(x, scores, n_tail: int = 0, threshold: float = 0.5) -> StageResult:
    """One float stage: decisions from keep probabilities, compaction, package token."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must have 2 dimensions, got shape {x.shape}")
    keep = decide_float(scores, n_tail, threshold)
    if keep.shape[0] != x.shape[0]:
        raise ValueError(f"scores has {keep.shape[0]} entries for {x.shape[0]} tokens")
    return compact(x, keep, np.asarray(scores, dtype=np.float64), n_tail, package_float)


def quantize_score(p, score_bits: int) -> np.ndarray:
    """Float keep probabilities to UQ0.score_bits: ``min(round(p * 2**b), 2**b - 1)``."""
    p = np.asarray(p, dtype=np.float64)
    q = np.floor(np.clip(p, 0.0, 1.0) * (1 << score_bits) + 0.5).astype(np.int64)
    return np.minimum(q, (1 << score_bits) - 1)


# -- stream layouts of the control unit --------------------------------------------------------

def token_words(cfg: TokSelConfig, x) -> np.ndarray:
    """Token stream / dense-buffer image of ``x`` (N, D): (chunks * N, lanes), chunk major."""
    x = as_int_array("x", x, TOKEN_MIN, TOKEN_MAX, ndim=2)
    n = x.shape[0]
    return x.reshape(n, cfg.chunks, cfg.lanes).transpose(1, 0, 2).reshape(cfg.chunks * n, cfg.lanes)


def gather_writes(cfg: TokSelConfig, result: StageResult) -> list[tuple[int, np.ndarray]]:
    """The control unit's writes ``(address, lanes)`` in address order: chunk k, position p
    (kept tokens in order, then the package token) at address ``k * N' + p``.  The unit emits
    kept tokens in this order; chunk k's package word may come during chunk k + 1."""
    words = token_words(cfg, result.tokens)
    return [(a, words[a]) for a in range(words.shape[0])]
