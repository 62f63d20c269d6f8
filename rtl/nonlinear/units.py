"""Elementwise nonlinear units: GELU, sigmoid, exp, reciprocal, rsqrt (``lanes`` per cycle).

Each lane is an enable-gated pipeline (see :mod:`.pipe`): range reduction, the table's Horner
evaluator (:func:`.pipe.ppoly`), then the output stage.  Bit-exact with
:mod:`heatvit.golden.nonlinear.units` / ``.elementwise``; formats in docs/nonlinear.md.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.tables import table
from heatvit.nonlinear_config import NonlinearConfig

from .pipe import Pipe, ppoly, round_shift_const, round_shift_pipe, table_rom

SHIFT_BITS = 6


# -- lane datapaths: (pipe, value) -> (result, latency) ------------------------------------------

def gelu_core(pipe: Pipe, x, tbl, mem):
    """Q7.12 -> Q7.12 (see :func:`heatvit.golden.nonlinear.gelu_fixed`)."""
    half = 1 << (F.GELU_TABLE_BITS - 1)
    u = (x + half)[:F.GELU_TABLE_BITS]
    acc, lat = ppoly(pipe, tbl, u, mem)
    x_d = pipe.delay(x, lat, "x")
    y = round_shift_const(acc, F.GUARD)
    out = pipe.reg(Mux(x_d >= half, x_d, Mux(x_d < -half, 0, y)), signed(F.ACT_BITS), "gelu")
    return out, lat + 1


def sigmoid_core(pipe: Pipe, x, tbl, mem):
    """Q7.12 -> unsigned Q1.15 (see :func:`heatvit.golden.nonlinear.sigmoid_fixed`)."""
    top = (1 << F.SIGMOID_TABLE_BITS) - 1
    mag = Mux(x < 0, -x, x)
    u = pipe.reg(Mux(mag > top, top, mag), unsigned(F.SIGMOID_TABLE_BITS), "u")
    neg = pipe.reg(x < 0, 1, "neg")
    acc, lat = ppoly(pipe, tbl, u, mem)
    neg = pipe.delay(neg, lat, "neg")
    one = 1 << F.SIGMOID_FRAC
    y = round_shift_const(acc, F.GUARD)
    y = Mux(y > one, one, y)
    out = pipe.reg(Mux(neg, one - y, y), unsigned(F.SIGMOID_FRAC + 1), "sig")
    return out, lat + 2


def pow2_core(pipe: Pipe, z, out_frac: int, tbl, mem):
    """Unsigned Q5.18 ``z`` -> ``2**-z`` as unsigned Q1.out_frac (see ``pow2_neg``)."""
    f = z[:F.POW2_IN_FRAC]
    k = z[F.POW2_IN_FRAC:]
    acc, lat = ppoly(pipe, tbl, f, mem)
    k = pipe.delay(k, lat, "k")
    ab = tbl.acc_bits
    acc_u = acc.as_unsigned()[:ab - 1]          # 2**-f is positive: the sign bit is 0
    # round by k + (guard + 22 - out_frac): exact for every k (past the width too), add and shift
    # in two stages
    out, rlat = round_shift_pipe(pipe, acc_u, k, offset=F.GUARD + F.POW2_FRAC - out_frac,
                                 shape=unsigned(out_frac + 1), name="pow2")
    return out, lat + rlat


def exp_core(pipe: Pipe, x, tbl, mem):
    """Unsigned Q4.12 ``x`` -> ``exp(-x)`` as unsigned Q1.15 (see ``exp_neg``)."""
    prod = pipe.reg(x * Const(F.LOG2E_Q), name="xl")
    z = pipe.reg(round_shift_const(prod, F.LOG2E_FRAC + F.EXP_IN_FRAC - F.POW2_IN_FRAC),
                 unsigned(F.POW2_IN_BITS), "z")
    out, lat = pow2_core(pipe, z, F.EXP_OUT_FRAC, tbl, mem)
    return out, lat + 2


def leading_one(x, width: int):
    """``floor(log2 x)`` of an unsigned ``width``-bit value (0 for x = 0): a tree, each level
    halving the bits (whether the upper half has a one is the next bit of the result, and picks
    the half the lower bits come from), not a chain of ``width`` muxes."""
    def enc(bits):
        if len(bits) == 1:
            return bits[0], []
        half = 1 << ((len(bits) - 1).bit_length() - 1)
        any_lo, e_lo = enc(bits[:half])
        any_hi, e_hi = enc(bits[half:])
        e_hi += [Const(0, 1)] * (len(e_lo) - len(e_hi))
        return any_lo | any_hi, [Mux(any_hi, h, lo) for h, lo in zip(e_hi, e_lo)] + [any_hi]
    _, e = enc([x[b] for b in range(width)])
    return Cat(*e, Const(0, 1)).as_unsigned()[:max(1, width.bit_length())] if e else Const(0, 1)


def normalize(pipe: Pipe, x, in_bits: int, odd_to_even: bool):
    """Stage 1: leading one ``e``; stage 2: the ``MANT_BITS`` (+1 for rsqrt) fraction bits, truncated.

    Returns ``(e, u, 2)`` where ``u`` is the table index (mantissa minus its leading one).
    ``x = 0`` is treated as ``x = 1``.
    """
    xs = Mux(x == 0, 1, x)
    e = pipe.reg(leading_one(xs, in_bits), name="e")
    xs = pipe.reg(xs, unsigned(in_bits), "x")
    mb = F.MANT_BITS
    top = Cat(Const(0, 1), e[1:]) if odd_to_even else e   # exponent of the kept leading bit
    left = (xs.as_unsigned() << mb)                        # x * 2**mb, then >> top
    mant = (left >> top)[:mb + 2]
    # u = mant - 2**mb without a carry chain: mant is in [2**mb, 2**(mb+1)) (reciprocal: drop the
    # leading one) or [2**mb, 2**(mb+2)) (rsqrt: its top two bits are 1..3, minus one)
    if odd_to_even:
        u = pipe.reg(Cat(mant[:mb], (mant[mb:mb + 2] - 1)[:2]), unsigned(mb + 2), "u")
    else:
        u = pipe.reg(mant[:mb], unsigned(mb), "u")
    e = pipe.reg(e, name="e")
    return e, u, 2


def recip_core(pipe: Pipe, x, in_bits: int, tbl, mem):
    """``(r, e)`` with ``1/x ~= r * 2**-(16+e)`` (see :func:`heatvit.golden.nonlinear.reciprocal`)."""
    e, u, l0 = normalize(pipe, x, in_bits, False)
    acc, lat = ppoly(pipe, tbl, u, mem)
    e = pipe.delay(e, lat + 1, "e")
    r = pipe.reg(round_shift_const(acc, F.GUARD).as_unsigned()[:F.RECIP_FRAC + 1], unsigned(F.RECIP_FRAC + 1), "r")
    return r, e, l0 + lat + 1


def rsqrt_core(pipe: Pipe, x, in_bits: int, tbl, mem):
    """``(r, k)`` with ``1/sqrt(x) ~= r * 2**-(16+k)`` (see :func:`heatvit.golden.nonlinear.rsqrt`)."""
    e, u, l0 = normalize(pipe, x, in_bits, True)
    acc, lat = ppoly(pipe, tbl, u, mem)
    k = pipe.delay(e >> 1, lat + 1, "k")
    r = pipe.reg(round_shift_const(acc, F.GUARD).as_unsigned()[:F.RSQRT_FRAC + 1], unsigned(F.RSQRT_FRAC + 1), "r")
    return r, k, l0 + lat + 1


# -- stream components -------------------------------------------------------------------------

class _Elementwise(wiring.Component):
    """``lanes`` independent lane pipelines behind one valid/ready pair.

    ``i``: ``lanes`` inputs; ``o``: ``lanes`` outputs ``latency`` accepted beats later.  The
    pipeline advances when ``o`` is not holding a beat or ``o.ready`` is high (``i.ready`` is the
    same enable), so backpressure stalls it without loss.
    """

    table_names: tuple = ()

    def __init__(self, cfg: NonlinearConfig, in_shape, out_shape, extra: dict | None = None):
        self.cfg = cfg
        self.tables = {n: table(n, cfg) for n in self.table_names}
        self.latency = None
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(in_shape, cfg.lanes))),
            "o": Out(stream.Signature(data.ArrayLayout(out_shape, cfg.lanes))),
            **(extra or {}),
        })

    def lane(self, pipe: Pipe, x, mems):
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        mems = {}
        for n, tbl in self.tables.items():
            mems[n] = m.submodules[f"rom_{n}"] = table_rom(tbl)
        latency = None
        for lane in range(self.cfg.lanes):
            pipe = Pipe(m, en, f"l{lane}")
            y, lat = self.lane(pipe, self.i.payload[lane], mems)
            m.d.comb += self.o.payload[lane].eq(y)
            latency = lat
        self.latency = latency
        valid = self.i.valid
        for s in range(latency):
            v = Signal(name=f"valid{s + 1}")
            with m.If(en):
                m.d.sync += v.eq(valid)
            valid = v
        m.d.comb += self.o.valid.eq(valid)
        return m


def act_params_layout(out_bits: int):
    """Per-tensor parameters of :class:`ActUnit` (the fields of :class:`heatvit.golden.nonlinear.ActParams`)."""
    return data.StructLayout({"in_mult": unsigned(F.MULT_BITS), "in_shift": unsigned(SHIFT_BITS),
                              "out_mult": unsigned(F.MULT_BITS), "out_shift": unsigned(SHIFT_BITS),
                              "out_min": signed(out_bits), "out_max": signed(out_bits)})


class ActUnit(_Elementwise):
    """GELU or sigmoid of signed ``in_bits`` integers with input and output requantization.

    * ``params`` (in, hold stable while data flows): the fields of the
      :class:`~heatvit.golden.nonlinear.ActParams` that :func:`heatvit.golden.nonlinear.gelu_params`
      / ``sigmoid_params`` return (``out_min``/``out_max`` must fit ``out_bits`` signed).
    * ``i``: ``lanes`` x signed ``in_bits`` (scale ``s_in``); ``o``: ``lanes`` x signed
      ``out_bits``, saturated to ``[out_min, out_max]`` (scale ``s_out``).
    """

    def __init__(self, cfg: NonlinearConfig, kind: str = "gelu", *, in_bits: int = 32, out_bits: int = 8):
        if kind not in ("gelu", "sigmoid"):
            raise ValueError(f"kind = {kind!r}; allowed 'gelu', 'sigmoid'")
        if not 2 <= in_bits <= 32:
            raise ValueError(f"in_bits = {in_bits} is out of range; allowed [2, 32]")
        if not 2 <= out_bits <= F.ACT_BITS:
            raise ValueError(f"out_bits = {out_bits} is out of range; allowed [2, {F.ACT_BITS}]")
        self.kind, self.in_bits, self.out_bits = kind, in_bits, out_bits
        self.table_names = (kind,)
        super().__init__(cfg, signed(in_bits), signed(out_bits), {"params": In(act_params_layout(out_bits))})

    def lane(self, pipe, x, mems):
        p = self.params
        lo, hi = -(1 << (F.ACT_BITS - 1)), (1 << (F.ACT_BITS - 1)) - 1
        prod = pipe.reg(x * p.in_mult, signed(self.in_bits + F.MULT_BITS + 1), "pin")
        xq, lat_in = round_shift_pipe(pipe, prod, p.in_shift, lo=lo, hi=hi, shape=signed(F.ACT_BITS), name="xq")
        if self.kind == "gelu":
            g, lat = gelu_core(pipe, xq, self.tables["gelu"], mems["gelu"])
        else:
            g, lat = sigmoid_core(pipe, xq, self.tables["sigmoid"], mems["sigmoid"])
        prod = pipe.reg(g * p.out_mult, signed(F.ACT_BITS + F.MULT_BITS + 2), "pout")
        y, lat_out = round_shift_pipe(pipe, prod, p.out_shift, lo=p.out_min, hi=p.out_max,
                                      shape=signed(self.out_bits), name="y")
        return y, 1 + lat_in + lat + 1 + lat_out


class ExpUnit(_Elementwise):
    """``exp(-x)``: ``i`` lanes of unsigned 16-bit Q4.12, ``o`` lanes of unsigned Q1.15 (16 bits)."""

    table_names = ("pow2",)

    def __init__(self, cfg: NonlinearConfig):
        super().__init__(cfg, unsigned(F.EXP_IN_BITS), unsigned(F.EXP_OUT_FRAC + 1))

    def lane(self, pipe, x, mems):
        return exp_core(pipe, x, self.tables["pow2"], mems["pow2"])


def mant_exp_layout(in_bits: int) -> data.StructLayout:
    """Result of the reciprocal / rsqrt units: mantissa ``r`` (17 bits) and exponent ``e``."""
    return data.StructLayout({"r": unsigned(F.RECIP_FRAC + 1), "e": unsigned(max(1, in_bits.bit_length()))})


class ReciprocalUnit(_Elementwise):
    """``1/x ~= r * 2**-(16+e)``: ``i`` lanes of unsigned ``in_bits`` (0 is treated as 1)."""

    table_names = ("reciprocal",)

    def __init__(self, cfg: NonlinearConfig, in_bits: int = 32):
        self.in_bits = in_bits
        super().__init__(cfg, unsigned(in_bits), mant_exp_layout(in_bits))

    def lane(self, pipe, x, mems):
        r, e, lat = recip_core(pipe, x, self.in_bits, self.tables["reciprocal"], mems["reciprocal"])
        return _pack(r, e), lat


class RsqrtUnit(_Elementwise):
    """``1/sqrt(x) ~= r * 2**-(16+e)`` (``e`` = k of the golden model): unsigned ``in_bits`` in."""

    table_names = ("rsqrt",)

    def __init__(self, cfg: NonlinearConfig, in_bits: int = 32):
        self.in_bits = in_bits
        super().__init__(cfg, unsigned(in_bits), mant_exp_layout(in_bits))

    def lane(self, pipe, x, mems):
        r, k, lat = rsqrt_core(pipe, x, self.in_bits, self.tables["rsqrt"], mems["rsqrt"])
        return _pack(r, k), lat


def _pack(r, e):
    return Cat(r, e)
