"""Nonlinear units (issue 3): piecewise-polynomial tables with pipelined Horner evaluation,
the GELU / sigmoid / exp / reciprocal / rsqrt instances, and the Softmax and LayerNorm row units.
Bit-exact with :mod:`heatvit.golden.nonlinear`; formats in docs/nonlinear.md."""
