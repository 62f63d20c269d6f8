"""GELU unit whose first lanes also compute the sigmoid: the token selectors' head-weight sigmoid
on the GELU lanes' multipliers (no DSP of its own).

:class:`GeluSigmoidUnit` is an :class:`~.units.ActUnit` (``kind = "gelu"``) of ``cfg.lanes``
lanes; while ``sigmoid`` is high its first ``sigmoid_lanes`` lanes compute
:func:`heatvit.golden.nonlinear.sigmoid` instead (the other lanes' results are then not
meaningful).  Both functions are the same pipeline around the same multipliers: the input
requantization (``x * in_mult``, rounding shift), the table's Horner evaluation (one ROM holding
the GELU and the sigmoid segments, ``sigmoid`` picks the half) and the output requantization;
only the range reduction and the output stage differ (a few LUTs).  The latency equals the GELU
lanes' (the sigmoid's ``|x|`` and sign are computed from the rounded input beside the GELU
input's clamp, in the same stage), so the lanes stay in lockstep.  Bit-exact with
:func:`heatvit.golden.nonlinear.gelu` / ``sigmoid``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, signed, unsigned
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.tables import table
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.validate import check_int

from .pipe import horner, round_shift_const, round_shift_pipe, saturate
from .units import ActUnit, _Elementwise, act_params_layout


def dual_rom(tables) -> tuple[Memory, list[int], int, int, int, int]:
    """One coefficient ROM for several tables: table ``i``'s segments from word ``base[i]``, each
    word ``degree + 1`` coefficients of ``coef_bits`` (the largest of the tables), a table of lower
    degree padded with zero leading coefficients (Horner on a zero is exact: ``round(0) + c = c``).
    Returns ``(rom, base, degree, coef_bits, acc_bits, w)``, ``w`` the widest offset."""
    degree = max(t.degree for t in tables)
    cb = max(t.coef_bits for t in tables)
    ab = max(t.acc_bits for t in tables)
    w = max(t.w for t in tables)
    mask = (1 << cb) - 1
    init, base = [], []
    for t in tables:
        base.append(len(init))
        for seg in t.coeffs:
            padded = list(seg) + [0] * (degree - t.degree)
            word = 0
            for j, c in enumerate(padded):
                word |= (int(c) & mask) << (j * cb)
            init.append(word)
    rom = Memory(shape=unsigned(cb * (degree + 1)), depth=len(init), init=init, attrs={"rom_style": "block"})
    return rom, base, degree, cb, ab, w


class GeluSigmoidUnit(ActUnit):
    """GELU on ``cfg.lanes`` lanes, the first ``sigmoid_lanes`` of them also the sigmoid.

    * ``params``: :func:`~.units.act_params_layout` (``out_bits``), held while data flows: the
      GELU's or the sigmoid's record (``heatvit.golden.nonlinear.gelu_params`` /
      ``sigmoid_params``).
    * ``sigmoid`` (in, held while data flows): 1 = lanes ``0 .. sigmoid_lanes - 1`` compute the
      sigmoid (unsigned Q1.15 core, then the output requantization), 0 = every lane the GELU.
    * ``i``: ``lanes`` x signed ``in_bits``; ``o``: ``lanes`` x signed ``out_bits``, ``latency``
      (the GELU unit's) accepted beats later.
    """

    def __init__(self, cfg: NonlinearConfig, *, in_bits: int, out_bits: int, sigmoid_lanes: int = 1):
        check_int("GeluSigmoidUnit", "sigmoid_lanes", sigmoid_lanes, 1, cfg.lanes)
        if not 2 <= in_bits <= 32:
            raise ValueError(f"in_bits = {in_bits} is out of range; allowed [2, 32]")
        if not 2 <= out_bits <= F.ACT_BITS:
            raise ValueError(f"out_bits = {out_bits} is out of range; allowed [2, {F.ACT_BITS}]")
        self.kind, self.in_bits, self.out_bits = "gelu", in_bits, out_bits
        self.sigmoid_lanes = sigmoid_lanes
        self.table_names = ("gelu",)
        _Elementwise.__init__(self, cfg, signed(in_bits), signed(out_bits),
                              {"params": In(act_params_layout(out_bits)), "sigmoid": In(1)})
        self.dual_tables = (self.tables["gelu"], table("sigmoid", cfg))
        self._lane_no = 0
        self._dual = None

    def elaborate(self, platform):
        self._lane_no, self._dual = 0, None
        return super().elaborate(platform)

    def lane(self, pipe, x, mems):
        lane_no, self._lane_no = self._lane_no, self._lane_no + 1
        if lane_no >= self.sigmoid_lanes:
            return super().lane(pipe, x, mems)
        if self._dual is None:
            self._dual = dual_rom(self.dual_tables)
            pipe.m.submodules["rom_gelu_sigmoid"] = self._dual[0]
        rom, base, degree, cb, ab, w = self._dual
        tg, ts = self.dual_tables
        p, sel = self.params, self.sigmoid
        lo, hi = -(1 << (F.ACT_BITS - 1)), (1 << (F.ACT_BITS - 1)) - 1
        prod = pipe.reg(x * p.in_mult, signed(self.in_bits + F.MULT_BITS + 1), "pin")
        q, lat_q = round_shift_pipe(pipe, prod, p.in_shift, name="q")
        # the clamp stage: the GELU's input, and beside it the sigmoid's table index min(|x|, top)
        # and sign (of the clamped x: the same as q's, and |x| > top exactly when |q| > top)
        top = (1 << F.SIGMOID_TABLE_BITS) - 1
        xq = pipe.reg(saturate(q, lo, hi), signed(F.ACT_BITS), "xq")
        u_s = pipe.reg(Mux((q > top) | (q < -top), top, Mux(q < 0, -q, q)), unsigned(F.SIGMOID_TABLE_BITS), "us")
        neg = pipe.reg(q < 0, 1, "neg")
        half = 1 << (F.GELU_TABLE_BITS - 1)
        u_g = (xq + half)[:F.GELU_TABLE_BITS]
        # segment word and offset of either table (a narrower offset is scaled up to w bits:
        # round(acc t 2**d / 2**w) = round(acc t / 2**(w - d)), exact)
        addr = Mux(sel, base[1] + (u_s >> ts.w), base[0] + (u_g >> tg.w))
        t = Mux(sel, Cat(Const(0, w - ts.w), u_s[:ts.w]), Cat(Const(0, w - tg.w), u_g[:tg.w]))
        acc, lat = horner(pipe, addr, t, rom, degree, cb, ab, w)
        x_d, neg_d = pipe.delay(xq, lat, "x"), pipe.delay(neg, lat, "neg")
        y = round_shift_const(acc, F.GUARD)
        gelu = Mux(x_d >= half, x_d, Mux(x_d < -half, 0, y))
        one = 1 << F.SIGMOID_FRAC
        ys = Mux(y > one, one, y)
        g = pipe.reg(Mux(sel, Mux(neg_d, one - ys, ys), gelu), signed(F.ACT_BITS), "act")
        prod = pipe.reg(g * p.out_mult, signed(F.ACT_BITS + F.MULT_BITS + 2), "pout")
        out, lat_out = round_shift_pipe(pipe, prod, p.out_shift, lo=p.out_min, hi=p.out_max,
                                        shape=signed(self.out_bits), name="y")
        return out, 1 + lat_q + 1 + lat + 1 + 1 + lat_out
