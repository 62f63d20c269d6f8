"""Configuration of the nonlinear units (issue 3): table budgets, row sizes, lanes.

The fixed-point formats themselves are constants of :mod:`heatvit.golden.nonlinear.formats`
(they define the arithmetic); this section holds what a build may vary.  The lead composes it
into ``AcceleratorConfig`` as the ``nonlinear`` section.
"""

from __future__ import annotations

from dataclasses import dataclass

from heatvit.validate import check_int as _check_int


@dataclass(frozen=True)
class NonlinearConfig:
    """Sizes of the nonlinear units; every table is generated (and verified) from these."""

    lanes: int = 1
    """Elements per cycle of the elementwise units (GELU, sigmoid, exp, reciprocal, rsqrt)."""
    max_segments_log2: int = 6
    """Segment budget of every coefficient table: at most ``2**max_segments_log2`` segments."""
    max_degree: int = 3
    """Largest polynomial degree the generator may use (one Horner multiplier per degree)."""
    row_lanes: int = 4
    """Elements per cycle of the Softmax and LayerNorm units (a power of two dividing max_tokens and max_dim)."""
    max_tokens: int = 256
    """Softmax: longest row (tokens); the row buffer depth."""
    softmax_in_bits: int = 32
    """Softmax: width of the signed score inputs (q.k^T accumulators)."""
    max_dim: int = 768
    """LayerNorm: longest row (channels); the row and parameter buffer depth."""
    layernorm_in_bits: int = 8
    """LayerNorm: width of the signed inputs (8 for int8 activations, up to 16 for residuals)."""

    def __post_init__(self):
        own = "NonlinearConfig"
        _check_int(own, "lanes", self.lanes, 1, 64)
        _check_int(own, "max_segments_log2", self.max_segments_log2, 1, 10)
        _check_int(own, "max_degree", self.max_degree, 1, 5)
        _check_int(own, "max_tokens", self.max_tokens, 1, 4096)
        _check_int(own, "softmax_in_bits", self.softmax_in_bits, 2, 32)
        _check_int(own, "max_dim", self.max_dim, 1, 4096)
        _check_int(own, "layernorm_in_bits", self.layernorm_in_bits, 2, 16)
        _check_int(own, "row_lanes", self.row_lanes, 1, 16)
        if self.row_lanes & (self.row_lanes - 1):
            raise ValueError(f"{own}.row_lanes = {self.row_lanes} is not a power of two; allowed 1, 2, 4, 8, 16")
        for name in ("max_tokens", "max_dim"):
            if getattr(self, name) % self.row_lanes:
                raise ValueError(f"{own}.{name} = {getattr(self, name)} is not a multiple of row_lanes = "
                                 f"{self.row_lanes}")

    @property
    def token_bits(self) -> int:
        """Width of a softmax row length (1 .. max_tokens)."""
        return self.max_tokens.bit_length()

    @property
    def lane_bits(self) -> int:
        """Width of a beat's lane count (1 .. row_lanes)."""
        return self.row_lanes.bit_length()

    @property
    def dim_bits(self) -> int:
        """Width of a LayerNorm row length (1 .. max_dim)."""
        return self.max_dim.bit_length()

    def to_dict(self) -> dict:
        import dataclasses
        return dataclasses.asdict(self)
