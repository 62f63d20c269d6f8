"""Configuration of the token selector: the golden selector and the RTL control unit.

One frozen :class:`TokSelConfig` is read by the golden model (:mod:`heatvit.golden.token_selector`),
the control unit (:mod:`heatvit.rtl.toksel`), its testbenches and its benchmark.  Every constraint
is checked at construction time with a ``ValueError`` naming the parameter and its allowed range,
so a token count beyond ``max_tokens``, a threshold outside (0, 1) or zero heads never reaches the
hardware.  The lead composes it into :class:`heatvit.config.AcceleratorConfig` as ``toksel``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .validate import check_int as _check_int

TOKEN_BITS = 8
"""Tokens are signed int8 (one per-tensor scale per selector stage)."""

PACKAGE_LANES = 2
"""The control unit's package token: lanes of a pruned token's word weighted and summed per
cycle (at most; :func:`package_lanes`).  A pruned word takes ``lanes / G`` cycles; it happens once
per pruned word and selector, so LUTs matter more than cycles (docs/token_selector.md)."""


MEAN_SUM_LANES = 16
"""The MEAN executor's column sums: at most this many lanes of a buffer word summed per pass
over the rows (a wider word is read once per group of lanes with averaged channels): the sums
and the divider's lane multiplexer do not grow with the array (docs/accel.md MEAN)."""


def mean_sum_lanes(lanes: int) -> int:
    """Lanes the MEAN executor sums per pass for a buffer word of ``lanes`` int8."""
    return min(lanes, MEAN_SUM_LANES)


def mean_passes(lanes: int, sum_lanes: int, n: int, k: int) -> list[tuple[int, bool]]:
    """The MEAN executor's passes over a window of ``n`` channels whose first ``k`` are copied:
    per word column, pass 0 (it writes the copied lanes) and every group of ``sum_lanes`` lanes
    from the first to the last one with averaged channels; each as ``(word, averaged)``
    (whether it divides and writes means)."""
    out = []
    for w in range(-(-n // lanes)):
        bk = min(max(k - w * lanes, 0), lanes)
        bn = min(max(n - w * lanes, 0), lanes)
        if bn <= bk:
            out.append((w, False))
            continue
        first, last = bk // sum_lanes, (bn - 1) // sum_lanes
        if first > 0:
            out.append((w, False))
        out += [(w, True)] * (last - first + 1)
    return out


def package_lanes(lanes: int) -> int:
    """``G`` of a unit with ``lanes`` lanes: the largest divisor of ``lanes`` <= :data:`PACKAGE_LANES`."""
    return max(g for g in range(1, PACKAGE_LANES + 1) if lanes % g == 0)


@dataclass(frozen=True)
class TokSelConfig:
    """Token-selector geometry and number formats.

    Scores: a token's combined keep score is an unsigned ``score_bits`` integer ``q`` meaning
    the probability ``q / 2**score_bits`` (UQ0.score_bits; saturates at ``2**score_bits - 1``).
    Keep decision: ``q > threshold_q`` (strictly), ``threshold_q = round(threshold * 2**score_bits)``
    clamped to ``2**score_bits - 1``.  See docs/token_selector.md.
    """

    max_tokens: int = 256
    """Largest token count a stage sees, class token and earlier package tokens included."""
    dim: int = 192
    """Embedding dimension D of the tokens the selector runs on."""
    heads: int = 3
    """Attention heads H; the selector runs one MLP per head on its D/H channel slice."""
    lanes: int = 16
    """int8 channels per token-stream beat; equal to ``GemmConfig.rows`` so the gather writes
    whole activation-buffer words."""
    threshold: float = 0.5
    """Keep a token when its combined keep score exceeds this probability (HeatViT: 0.5)."""
    score_bits: int = 8
    """Width of the unsigned keep score (UQ0.score_bits) the control unit consumes."""
    shared_mlp: bool = False
    """``True``: one MLP for every head (SPViT's code); ``False``: one MLP per head (HeatViT)."""

    def __post_init__(self):
        own = "TokSelConfig"
        _check_int(own, "max_tokens", self.max_tokens, 2, 4096)
        _check_int(own, "dim", self.dim, 4, 4096)
        _check_int(own, "heads", self.heads, 1, 64)
        _check_int(own, "lanes", self.lanes, 1, 64)
        _check_int(own, "score_bits", self.score_bits, 2, 16)
        if self.dim % self.heads:
            raise ValueError(f"{own}.heads = {self.heads} does not divide dim = {self.dim}; "
                             f"allowed a divisor of dim with dim / heads a multiple of 4")
        if self.head_dim % 4:
            raise ValueError(f"{own}.dim / heads = {self.head_dim} is not a multiple of 4 "
                             f"(the selector MLP has dim/2 and dim/4 layers); allowed multiples of 4")
        if self.dim % self.lanes:
            raise ValueError(f"{own}.lanes = {self.lanes} does not divide dim = {self.dim}; "
                             f"allowed a divisor of dim")
        if not isinstance(self.shared_mlp, bool):
            raise ValueError(f"{own}.shared_mlp must be a bool, got {self.shared_mlp!r}")
        thr = self.threshold
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not math.isfinite(thr) \
                or not 0.0 < thr < 1.0:
            raise ValueError(f"{own}.threshold = {thr!r} is out of range; allowed (0, 1) exclusive")

    # -- derived quantities ----------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def chunks(self) -> int:
        """Token-stream beats per token (activation-buffer words per token): D / lanes."""
        return self.dim // self.lanes

    @property
    def score_max(self) -> int:
        return (1 << self.score_bits) - 1

    @property
    def threshold_q(self) -> int:
        return threshold_to_q(self.threshold, self.score_bits)

    @property
    def count_bits(self) -> int:
        """Width of token counts and positions (0 .. max_tokens)."""
        return self.max_tokens.bit_length()

    @property
    def weight_sum_bits(self) -> int:
        """Width of the sum of the pruned tokens' keep scores (unsigned)."""
        return (self.max_tokens * self.score_max).bit_length()

    @property
    def package_acc_bits(self) -> int:
        """Width of one channel of the weighted package sum ``sum_n w_n x_n`` (signed)."""
        worst = self.max_tokens * self.score_max * (1 << (TOKEN_BITS - 1))
        return worst.bit_length() + 1

    @property
    def addr_bits(self) -> int:
        """Width of a dense-buffer word address ``chunk * tokens + position``."""
        return max(1, (self.chunks * self.max_tokens - 1).bit_length())

    def check_tokens(self, n_tokens: int, n_tail: int = 0) -> None:
        """Raise ``ValueError`` unless a stage with ``n_tokens`` tokens, of which the last
        ``n_tail`` are earlier package tokens, fits this configuration."""
        _check_int("token selector", "n_tokens", n_tokens, 1, self.max_tokens)
        _check_int("token selector", "n_tail", n_tail, 0, n_tokens - 1)


def threshold_to_q(threshold: float, score_bits: int) -> int:
    """The integer threshold of a probability threshold: ``min(round(t * 2**b), 2**b - 1)``
    (round half away from zero; a score must be strictly greater to be kept)."""
    v = math.floor(threshold * (1 << score_bits) + 0.5)
    return min(max(v, 0), (1 << score_bits) - 1)
