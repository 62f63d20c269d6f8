"""Lane masks of a row's last word, shared by the accelerator's executors and the row units."""

from __future__ import annotations

from amaranth.hdl import Cat, Const


def last_word_lanes(last, lanes: int):
    """The valid lanes of the last ``lanes``-wide word of a row whose last element has index
    ``last`` (unsigned; only its low ``log2(lanes)`` bits are read): lane ``j`` iff
    ``last mod lanes >= j``.  Lane 0 is a constant 1 (no always-true compare for lint to flag);
    every other lane is one LUT of those low bits.  ``lanes`` is a power of two."""
    if lanes < 1 or lanes & (lanes - 1):
        raise ValueError(f"lanes must be a power of two, not {lanes}")
    sh = lanes.bit_length() - 1
    return Cat(Const(1, 1), *(last[:sh] >= j for j in range(1, lanes)))
