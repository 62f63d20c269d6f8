"""Pipeline building blocks shared by the nonlinear units.

Every datapath here is an enable-gated pipeline: all registers advance together when ``en`` is
high (``en = ~out.valid | out.ready`` for a stream unit), so backpressure freezes the whole pipe
and nothing is dropped.  Values computed in different stages are aligned with :meth:`Pipe.delay`.
The rounding helpers are the RTL twins of :func:`heatvit.golden.round_shift` (half away from zero).
"""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from heatvit.golden.nonlinear.ppoly import Table


def round_shift_const(value, w: int):
    """``round_half_away(value / 2**w)`` for a constant ``w >= 0`` (value signed or unsigned)."""
    if w == 0:
        return value
    half = Const(1 << (w - 1))
    if value.shape().signed:
        return (value + half - (value < 0)) >> w
    return (value + half) >> w


def round_shift_var(value, sh):
    """``round_half_away(value / 2**sh)`` for a variable shift ``sh`` (unsigned signal)."""
    half = (Const(1, 1) << sh) >> 1
    if value.shape().signed:
        return (value + half - ((value < 0) & (sh != 0))) >> sh
    return (value + half) >> sh


def saturate(value, lo: int | object, hi: int | object):
    """Clamp ``value`` to ``[lo, hi]`` (constants or signals)."""
    return Mux(value > hi, hi, Mux(value < lo, lo, value))


class Pipe:
    """Registers of one enable-gated pipeline inside module ``m``."""

    def __init__(self, m, en, prefix: str):
        self.m, self.en, self.prefix = m, en, prefix
        self._n = 0

    def reg(self, value, shape=None, name: str | None = None) -> Signal:
        """One pipeline register loaded with ``value`` when ``en``."""
        self._n += 1
        sig = Signal(shape if shape is not None else value.shape(), name=f"{self.prefix}_{name or 'r'}{self._n}")
        with self.m.If(self.en):
            self.m.d.sync += sig.eq(value)
        return sig

    def delay(self, value, n: int, name: str = "d"):
        """``value`` delayed by ``n`` pipeline stages."""
        for _ in range(n):
            value = self.reg(value, name=name)
        return value


def ppoly(pipe: Pipe, table: Table, u, mem: Memory | None = None):
    """Evaluate ``table`` at index ``u`` (bit-exact with :func:`heatvit.golden.nonlinear.evaluate`).

    Stage 1 reads the segment's coefficients from the ROM (``mem``, shared between lanes, one
    read port per call) while registering the offset ``t``; each Horner step is two stages
    (multiply; round, shift and add).  Returns ``(acc, latency)`` with ``latency = 1 + 2*degree``.
    """
    m = pipe.m
    if mem is None:
        mem = table_rom(table)
        m.submodules[f"{pipe.prefix}_rom"] = mem
    w, d, cb, ab = table.w, table.degree, table.coef_bits, table.acc_bits
    rd = mem.read_port()
    m.d.comb += [rd.addr.eq(u >> w), rd.en.eq(pipe.en)]
    t = pipe.reg(u[:w], unsigned(w), "t")
    coefs = [rd.data[j * cb:(j + 1) * cb].as_signed() for j in range(d + 1)]
    acc = coefs[d]
    # the coefficients used by later steps travel beside the accumulator
    later = {j: coefs[j] for j in range(d)}
    for step in range(d):
        j = d - 1 - step
        prod = pipe.reg(acc * t, signed(ab + w + 1), "prod")
        t = pipe.reg(t, name="t")
        later = {k: pipe.reg(v, signed(cb), f"c{k}_") for k, v in later.items()}
        acc = pipe.reg(round_shift_const(prod, w) + later.pop(j), signed(ab), "acc")
        t = pipe.reg(t, name="t")
        later = {k: pipe.reg(v, signed(cb), f"c{k}_") for k, v in later.items()}
    return acc, 1 + 2 * d


def table_rom(table: Table) -> Memory:
    """The coefficient ROM: one word per segment, coefficient j in bits ``[j*cb, (j+1)*cb)``."""
    cb = table.coef_bits
    mask = (1 << cb) - 1
    init = []
    for seg in table.coeffs:
        word = 0
        for j, c in enumerate(seg):
            word |= (int(c) & mask) << (j * cb)
        init.append(word)
    return Memory(shape=unsigned(cb * (table.degree + 1)), depth=len(init), init=init)
