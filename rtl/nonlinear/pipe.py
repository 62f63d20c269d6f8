"""Pipeline building blocks shared by the nonlinear units.

Every datapath here is an enable-gated pipeline: all registers advance together when ``en`` is
high (``en = ~out.valid | out.ready`` for a stream unit), so backpressure freezes the whole pipe
and nothing is dropped.  Values computed in different stages are aligned with :meth:`Pipe.delay`.
The rounding helpers are the RTL twins of :func:`heatvit.golden.round_shift` (half away from zero).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Signal, signed, unsigned
from amaranth.lib.memory import Memory

from heatvit.golden.nonlinear.ppoly import Table


def round_shift_const(value, w: int):
    """``round_half_away(value / 2**w)`` for a constant ``w >= 0`` (value signed or unsigned)."""
    if w == 0:
        return value
    # value + (2**(w-1) - 1) + [value >= 0]: the sign bit is the carry in of one carry chain
    # (not a three-operand add), as in round_add
    signed_in = value.shape().signed
    a = Cat(~value[-1] if signed_in else Const(1, 1), value)
    a = a.as_signed() if signed_in else a
    total = a + Const((((1 << (w - 1)) - 1) << 1) | 1, w + 1)
    total = total[1:]
    return (total.as_signed() if signed_in else total) >> w


def round_add(value, sh, offset: int = 0):
    """``value + 2**(s-1) - [value < 0]`` for ``s = sh + offset >= 1`` (``value`` for ``s = 0``):
    the rounding add of :func:`heatvit.golden.round_shift`, as wide as ``value`` plus two bits.

    ``sh`` is an unsigned signal, ``offset >= 0`` a constant.  ``2**(s-1)`` is never built: its
    ``W`` low bits ``2**(s-1) - 1`` (a thermometer code, one LUT per bit from ``sh``) are added
    with ``[s >= 1] & [value >= 0]`` as the carry in, a single carry chain.  The mask stops at
    ``W`` bits (``W`` = ``value``'s width): for ``s > W`` that adds less than ``2**(s-1)``, but
    the shifted result is then exactly what golden gives (0 for every value, the shift having
    moved past the sum's sign; ``-1`` only for ``s = W``, whose mask is exact).  Shift the result
    right by ``s`` for the rounded quotient (:func:`round_shift_var`)."""
    width = len(value)
    signed_in = value.shape().signed
    if isinstance(sh, int):
        raise TypeError(f"sh must be a signal (use round_shift_const for a constant), not {sh!r}")
    max_s = (1 << len(sh)) - 1 + offset
    mask_bits = max(0, min(width, max_s - 1))
    mask = Cat(*[(sh >= i + 2 - offset) if i + 2 - offset > 0 else Const(1, 1)
                 for i in range(mask_bits)]) if mask_bits else Const(0, 1)
    nonzero = Const(1, 1) if offset > 0 else (sh != 0)
    cin = nonzero & ~value[-1] if signed_in else nonzero
    # (2 value + cin) + (2 mask + 1): bit 0 carries cin into the chain, bits 1.. are the sum
    a = Cat(cin, value)
    a = a.as_signed() if signed_in else a
    total = a + Cat(Const(1, 1), mask)
    out_w = width + 2 if signed_in else width + 1
    total = total[1:out_w + 1]
    return total.as_signed() if signed_in else total


def round_shift_var(value, sh, offset: int = 0):
    """``round_half_away(value / 2**(sh + offset))`` for a variable shift ``sh`` (unsigned signal)
    and a constant ``offset >= 0``, in one cycle (bit-exact with :func:`heatvit.golden.round_shift`
    for every ``sh``, also past the width).  A pipeline splits it: :func:`round_shift_pipe`."""
    return (round_add(value, sh, offset) >> offset) >> sh


def round_shift_pipe(pipe: "Pipe", value, sh, *, offset: int = 0, lo=None, hi=None, shape=None,
                     name: str = "rs"):
    """:func:`round_shift_var` of ``value`` by ``sh + offset``, then clamped to ``[lo, hi]``
    (either may be None: no bound), over registered stages of ``pipe``: the rounding add, the
    variable shift, the clamp (only when there is a bound).  ``sh`` is read with ``value`` (and
    carried along); ``lo``/``hi`` (constants or signals held stable) in the clamp stage.  Returns
    ``(result, latency)``, ``latency`` = 2, or 3 with a clamp; the result has ``shape`` (default:
    the shifted value's)."""
    total = pipe.reg(round_add(value, sh, offset), name=f"{name}_add")
    sh_r = pipe.reg(sh, name=f"{name}_sh")
    q = (total >> offset) >> sh_r
    if lo is None and hi is None:
        return pipe.reg(q, shape, name=f"{name}_q"), 2
    q = pipe.reg(q, name=f"{name}_q")
    return pipe.reg(saturate(q, lo, hi), shape, name=f"{name}_y"), 3


def negate_if(value, neg):
    """``-value`` if the bit ``neg`` else ``value``, as ``(value ^ neg...neg) + neg`` (``value``'s
    bits, unsigned, one wider; its low ``len(value)`` bits are the two's complement result, and
    ``negate_if(x, x[-1])`` of a signed ``x`` is ``|x|``, ``|min|`` included).  The inversion folds
    into the adder's LUTs (MEAN's divider: 31 LUT fewer than ``Mux(neg, -value, value)``)."""
    v = value.as_unsigned()
    return (v ^ neg.replicate(len(v))) + neg


def saturate(value, lo, hi):
    """Clamp ``value`` to ``[lo, hi]`` (constants or signals; None: no bound on that side)."""
    if hi is not None:
        value = Mux(value > hi, hi, value) if lo is None else Mux(value > hi, hi, Mux(value < lo, lo, value))
    elif lo is not None:
        value = Mux(value < lo, lo, value)
    return value


def outside(value, lo: int, hi: int):
    """``value < lo | value > hi`` (constant bounds) without the comparisons ``value``'s shape
    decides (an unsigned value is never below 0): no constant compare in the Verilog (lint)."""
    shape = value.shape()
    vmin = -(1 << (shape.width - 1)) if shape.signed else 0
    vmax = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
    conds = ([value < lo] if lo > vmin else []) + ([value > hi] if hi < vmax else [])
    return Cat(*conds).any() if conds else Const(0, 1)


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
    return horner(pipe, u >> table.w, u[:table.w], mem, table.degree, table.coef_bits, table.acc_bits, table.w)


def horner(pipe: Pipe, addr, t, mem: Memory, degree: int, cb: int, ab: int, w: int):
    """:func:`ppoly` with the ROM word ``addr`` and the offset ``t`` (``w`` bits) given: stage 1
    reads the coefficients (``cb`` bits each) and registers ``t``, each Horner step two stages
    (``ab``-bit accumulator).  Returns ``(acc, 1 + 2 degree)``."""
    m = pipe.m
    rd = mem.read_port()
    m.d.comb += [rd.addr.eq(addr), rd.en.eq(pipe.en)]
    t = pipe.reg(t, unsigned(w), "t")
    coefs = [rd.data[j * cb:(j + 1) * cb].as_signed() for j in range(degree + 1)]
    acc = coefs[degree]
    # the coefficients used by later steps travel beside the accumulator
    later = {j: coefs[j] for j in range(degree)}
    for step in range(degree):
        j = degree - 1 - step
        prod = pipe.reg(acc * t, signed(ab + w + 1), "prod")
        t = pipe.reg(t, name="t")
        later = {k: pipe.reg(v, signed(cb), f"c{k}_") for k, v in later.items()}
        acc = pipe.reg(round_shift_const(prod, w) + later.pop(j), signed(ab), "acc")
        t = pipe.reg(t, name="t")
        later = {k: pipe.reg(v, signed(cb), f"c{k}_") for k, v in later.items()}
    return acc, 1 + 2 * degree


def table_rom(table: Table, attrs: dict | None = None) -> Memory:
    """The coefficient ROM: one word per segment, coefficient j in bits ``[j*cb, (j+1)*cb)``.
    ``attrs``: the memory's synthesis attributes (``{"rom_style": "block"}``: a block RAM)."""
    cb = table.coef_bits
    mask = (1 << cb) - 1
    init = []
    for seg in table.coeffs:
        word = 0
        for j, c in enumerate(seg):
            word |= (int(c) & mask) << (j * cb)
        init.append(word)
    return Memory(shape=unsigned(cb * (table.degree + 1)), depth=len(init), init=init, attrs=attrs)
