"""Bit-exact integer token selector, built only from the project's unit golden functions.

Every Linear layer is a GEMM-engine call (:func:`heatvit.golden.gemm.gemm_rows`: int8 x int8 ->
int32 + bias -> per-channel requantization to int8, split into engine-sized row chunks by the
rule every GEMM of the model follows, :func:`heatvit.golden.gemm.row_chunks`); LayerNorm, GELU,
the 2-way softmax, the sigmoid and the divisions are the nonlinear golden functions
(:mod:`heatvit.golden.nonlinear`).  Tokens are int8 at the stage's scale ``s_x``; every
intermediate tensor is int8 at a per-tensor scale calibrated on float runs
(:func:`heatvit.golden.token_selector.float_selector.calibrate`); GELU outputs are never finer
than the GELU core's LSB.

Per head h (MLP instance ``0`` if shared, else ``h``), on the head's int8 slice ``x_h``:

1. ``ln = layernorm(x_h)`` (int8) -> ``gemm(w.0)`` -> ``gelu`` (int8).
2. Global feature: channels ``[dh/2:]`` of step 1 replaced by their mean over the N current
   tokens, ``divide(column_sum, N)`` (rounded half away from zero, the reciprocal unit).
3. ``gemm(w.1) -> gelu -> gemm(w.2) -> gelu -> gemm(w.3)``: int8 (keep, prune) logits;
   ``softmax`` (out_max 255): ``t[n, h]`` in [0, 255] at scale 1/255.

Head weights: ``gemm(x, block-ones)`` with a 1/dh multiplier gives each head's channel mean
(int8), ``gemm(head_fc1) -> gelu -> gemm(head_fc2) -> sigmoid`` (8-bit unsigned, [0, 255] at
1/255) gives ``a[n, h]``.  Combined keep score, UQ0.score_bits:
``q = min(divide(sum_h a t, 255 * sum_h a, frac=score_bits), 2**score_bits - 1)`` (if every
``a`` is 0: ``a = 1``, the plain mean over heads).  ``q`` is what the RTL control unit consumes;
decisions and the package token then follow :mod:`.decision`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heatvit.config import GemmConfig
from heatvit.toksel_config import TokSelConfig

from .. import nonlinear as NL
from ..checks import as_int_array
from ..linear import QLinear, act_scale, quantize_linear, run_linear
from ..requant import quantize_multiplier
from .decision import TOKEN_MAX, TOKEN_MIN, StageResult, stage_int
from .float_selector import check_params, mlp_dims

PROB_MAX = 255
"""Softmax and sigmoid outputs inside the selector: [0, 255] at scale 1/255."""


@dataclass(frozen=True)
class HeadMLP:
    """Integer parameters of one selector-MLP instance."""

    ln: NL.LayerNormParams
    fc: tuple[QLinear, QLinear, QLinear, QLinear]
    gelu: tuple[NL.ActParams, NL.ActParams, NL.ActParams]
    softmax: NL.SoftmaxParams


@dataclass(frozen=True)
class IntSelector:
    """All integer parameters of one selector stage (from :func:`quantize_selector`)."""

    heads: int
    head_dim: int
    s_x: float
    mlps: tuple[HeadMLP, ...]          # 1 (shared) or ``heads``
    mean: QLinear                      # block-ones (D, H) with a 1/dh multiplier
    head_fc1: QLinear
    head_gelu: NL.ActParams
    head_fc2: QLinear
    sigmoid: NL.ActParams
    score_bits: int
    gemm_cfg: GemmConfig

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim

    def gemm_shapes(self, n: int) -> list[tuple[int, int, int]]:
        return selector_gemm_shapes(self.dim, self.heads, n)


def selector_gemm_shapes(dim: int, heads: int, n: int) -> list[tuple[int, int, int]]:
    """GEMM-engine calls ``(m, k, n)`` of one integer selector run on ``n`` tokens: the four
    MLP layers per head, the head-mean GEMM and the two head-weight layers."""
    hh = max(1, heads // 2)
    per_head = [(n, k, o) for k, o in mlp_dims(dim // heads)]
    return per_head * heads + [(n, dim, heads), (n, heads, hh), (n, hh, heads)]


def _fixed_linear(w_q: np.ndarray, ratio: float, s_in: float, s_out: float) -> QLinear:
    """A Linear with given int8 weights (K, N), no bias and one multiplier for ``ratio``."""
    n = w_q.shape[1]
    mult, shift = quantize_multiplier(np.full(n, ratio))
    return QLinear(w_q.astype(np.int64), np.zeros(n, dtype=np.int64), mult, shift, s_in, s_out)


def quantize_selector(p: dict, amax: dict[str, float], *, heads: int, s_x: float, eps: float = 1e-6,
                      score_bits: int = 8, gemm_cfg: GemmConfig | None = None) -> IntSelector:
    """Integer parameters of float selector ``p`` for int8 tokens at scale ``s_x``.

    ``amax``: max |x| per intermediate (:func:`..float_selector.calibrate`); each intermediate
    gets the int8 scale ``amax / 127``.
    """
    dim = heads * np.shape(p["norm_weight"])[1]
    shared = check_params(p, dim, heads)
    missing = sorted({"ln", "fc0", "g0", "fc1", "g1", "fc2", "g2", "logits", "mean", "h1", "hg1", "z"} - set(amax))
    if missing:
        raise ValueError(f"amax is missing calibrated ranges for {missing}")
    if not (np.isfinite(s_x) and s_x > 0):
        raise ValueError(f"s_x = {s_x} must be finite and positive")
    s = {k: act_scale(v) for k, v in amax.items()}
    for k in ("g0", "g1", "g2", "hg1"):                    # GELU outputs: never finer than the core
        s[k] = max(s[k], NL.GELU_S_OUT_MIN)
    dh = dim // heads
    mlps = []
    for i in range(1 if shared else heads):
        ln = NL.layernorm_params(p["norm_weight"][i], p["norm_bias"][i], eps, s_x, s["ln"])
        ins = [s["ln"], s["g0"], s["g1"], s["g2"]]
        outs = [s["fc0"], s["fc1"], s["fc2"], s["logits"]]
        fc = tuple(quantize_linear(p[f"w.{k}"][i], p[f"b.{k}"][i], ins[k], outs[k]) for k in range(4))
        gl = tuple(NL.gelu_params(s[f"fc{k}"], s[f"g{k}"], in_bits=8) for k in range(3))
        sm = NL.softmax_params(s["logits"], out_max=PROB_MAX, in_bits=8)
        mlps.append(HeadMLP(ln, fc, gl, sm))
    ones = np.kron(np.eye(heads, dtype=np.int64), np.ones((dh, 1), dtype=np.int64))   # (D, H)
    mean = _fixed_linear(ones, s_x / (dh * s["mean"]), s_x, s["mean"])
    fc1 = quantize_linear(p["head_fc1.weight"], p["head_fc1.bias"], s["mean"], s["h1"])
    fc2 = quantize_linear(p["head_fc2.weight"], p["head_fc2.bias"], s["hg1"], s["z"])
    return IntSelector(
        heads=heads, head_dim=dh, s_x=float(s_x), mlps=tuple(mlps), mean=mean, head_fc1=fc1,
        head_gelu=NL.gelu_params(s["h1"], s["hg1"], in_bits=8), head_fc2=fc2,
        sigmoid=NL.sigmoid_params(s["z"], 1.0 / PROB_MAX, out_bits=8, in_bits=8),
        score_bits=score_bits, gemm_cfg=gemm_cfg or GemmConfig())


def _linear(q: IntSelector, lin: QLinear, a: np.ndarray) -> np.ndarray:
    """One selector GEMM, split into engine-sized row chunks by the same rule as every GEMM of
    the model (:func:`heatvit.golden.gemm.row_chunks`)."""
    return run_linear(q.gemm_cfg, a, lin)


def selector_scores_int(q: IntSelector, x, record: dict | None = None) -> np.ndarray:
    """Combined keep scores (N,) UQ0.score_bits of int8 tokens ``x`` (N, D) at scale ``q.s_x``."""
    x = as_int_array("x", x, TOKEN_MIN, TOKEN_MAX, ndim=2)
    n, d = x.shape
    if d != q.dim:
        raise ValueError(f"x has {d} channels; the selector was quantized for dim {q.dim}")
    if n < 1:
        raise ValueError("x must hold at least the class token")
    dh, half = q.head_dim, q.head_dim // 2
    t = np.empty((n, q.heads), dtype=np.int64)
    for j in range(q.heads):
        mlp = q.mlps[0 if len(q.mlps) == 1 else j]
        y = NL.layernorm(x[:, j * dh:(j + 1) * dh], mlp.ln)
        y = NL.gelu(_linear(q, mlp.fc[0], y), mlp.gelu[0])
        glob = NL.divide(y[:, half:].sum(0), n)                      # mean over current tokens
        y = np.concatenate([y[:, :half], np.broadcast_to(glob, (n, dh - half))], axis=1)
        y = NL.gelu(_linear(q, mlp.fc[1], y), mlp.gelu[1])
        y = NL.gelu(_linear(q, mlp.fc[2], y), mlp.gelu[2])
        logits = _linear(q, mlp.fc[3], y)
        t[:, j] = NL.softmax(logits, mlp.softmax)[:, 0]
    m = _linear(q, q.mean, x)
    z = _linear(q, q.head_fc2, NL.gelu(_linear(q, q.head_fc1, m), q.head_gelu))
    a = NL.sigmoid(z, q.sigmoid)
    if record is not None:
        record.update({"t": t.copy(), "a": a.copy()})
    return combine_scores(a, t, q.score_bits)


def combine_scores(a, t, score_bits: int) -> np.ndarray:
    """``min(round(2**b * sum_h a t / (255 sum_h a)), 2**b - 1)`` per token; ``a``, ``t`` (N, H)
    in [0, 255]; rows with every ``a`` = 0 use ``a = 1``."""
    a = as_int_array("a", a, 0, PROB_MAX, ndim=2)
    t = as_int_array("t", t, 0, PROB_MAX, ndim=2)
    a = np.where(a.sum(1, keepdims=True) == 0, 1, a)
    num, den = (a * t).sum(1), a.sum(1)
    return np.minimum(NL.divide(num, PROB_MAX * den, frac=score_bits), (1 << score_bits) - 1)


def select_int(cfg: TokSelConfig, q: IntSelector, x, n_tail: int = 0, threshold_q: int | None = None) -> StageResult:
    """One integer selector stage: scores, then exactly what the RTL control unit does."""
    if q.score_bits != cfg.score_bits:
        raise ValueError(f"selector quantized for score_bits {q.score_bits}; TokSelConfig.score_bits = {cfg.score_bits}")
    return stage_int(cfg, x, selector_scores_int(q, x), n_tail, threshold_q)
