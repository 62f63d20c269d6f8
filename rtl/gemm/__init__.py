"""Weight-stationary int8 systolic GEMM engine (see docs/architecture.md)."""

from .engine import GemmEngine

__all__ = ["GemmEngine"]
