"""Reciprocal with shift-add Horner steps: :class:`~.units.ReciprocalUnit` (one lane) without a
multiplier, for units that divide a few times per row or token (the token selector's score
combiner, the MEAN executor).

Bit-exact with :func:`heatvit.golden.nonlinear.reciprocal` (the same table, the same roundings).
The normalisation and the table read are the pipelined unit's (:func:`.units.normalize`, three
enable-gated stages); each Horner step ``acc = round_half_away(acc * t / 2**w) + c`` is then
``ceil(w / digit_bits)`` cycles of shift-add (``digit_bits`` bits of ``t`` a cycle, the rounding
term ``2**(w-1) - [acc < 0]`` as the product's initial value) and one cycle that shifts and
adds the next coefficient; the last one rounds the guard bits off into the output register.
One value at a time in the Horner engine (``II`` cycles apart), the next one waiting at the
table read.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.tables import table
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.validate import check_int

from .pipe import Pipe, round_shift_const, table_rom
from .units import mant_exp_layout, normalize

DIGIT_BITS = 7
"""Bits of the multiplier taken per shift-add cycle (the reciprocal table's 13-bit offset: two
cycles a Horner step)."""


def digit_product(x, bits, digit_bits: int):
    """``x * bits[:digit_bits]`` as a sum of ``x << i`` gated by ``bits[i]`` (one cycle of a
    shift-add multiply; ``x`` signed or unsigned, ``bits`` unsigned)."""
    terms = [Mux(bits[i], x << i, 0) for i in range(digit_bits)]
    return sum(terms[1:], terms[0])


def round_term(negative, w: int):
    """The rounding add of ``round_half_away(p / 2**w)`` (``w >= 1``) when ``p``'s sign is
    ``negative``: ``2**(w-1) - [p < 0]`` (:func:`heatvit.golden.round_shift`; also right for a
    zero product, which rounds to 0 either way)."""
    return Mux(negative, (1 << (w - 1)) - 1, 1 << (w - 1))


class SerialReciprocal(wiring.Component):
    """``1/x ~= r * 2**-(16+e)`` of unsigned ``in_bits`` ``x`` (0 is treated as 1), the ports of
    :class:`~.units.ReciprocalUnit` with one lane: ``i`` (``payload[0]``: ``x``), ``o``
    (``payload[0]``: ``r``, ``e``; :func:`~.units.mant_exp_layout`).

    Cycles (``k = ceil(w / digit_bits)``, ``d`` = the table's degree): a value accepted at cycle
    0 is on ``o`` at cycle :attr:`latency`; values enter the Horner engine :attr:`interval`
    cycles apart (backpressure on ``o`` holds the engine; nothing is lost).
    """

    def __init__(self, cfg: NonlinearConfig, in_bits: int = 32, digit_bits: int = DIGIT_BITS):
        check_int("SerialReciprocal", "in_bits", in_bits, 1, 62)
        self.cfg, self.in_bits = cfg, in_bits
        self.table = table("reciprocal", cfg)
        check_int("SerialReciprocal", "digit_bits", digit_bits, 1, self.table.w)
        if self.table.degree < 1:
            raise ValueError(f"SerialReciprocal: the reciprocal table has degree {self.table.degree}; "
                             f"it needs at least one Horner step (use units.ReciprocalUnit)")
        self.digit_bits = digit_bits
        self.digits = -(-self.table.w // digit_bits)
        d = self.table.degree
        self.interval = d * (self.digits + 1)
        """Cycles between values entering the Horner engine (the next one loads as the last step ends)."""
        self.latency = 3 + 1 + self.interval
        """Cycles from ``i`` accepted to the result on ``o`` (three front stages, the engine's load)."""
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(in_bits), 1))),
            "o": Out(stream.Signature(data.ArrayLayout(mant_exp_layout(in_bits), 1))),
        })

    def elaborate(self, platform):
        tbl = self.table
        w, d, cb, ab = tbl.w, tbl.degree, tbl.coef_bits, tbl.acc_bits
        D, k = self.digit_bits, self.digits
        m = Module()
        o = self.o.payload[0]

        # -- front: normalise (two stages), table read and offset (third stage) -------------------
        en = Signal()
        front = Pipe(m, en, "f")
        e2, u2, _ = normalize(front, self.i.payload[0], self.in_bits, False)
        # one read port: a block RAM (yosys 0.23 maps it to 1 BRAM36-equivalent instead of LUTs)
        m.submodules.rom = rom = table_rom(tbl, attrs={"rom_style": "block"})
        rd = rom.read_port()
        m.d.comb += [rd.addr.eq(u2 >> w), rd.en.eq(en)]
        t3 = front.reg(u2[:w], unsigned(w), "t")
        e3 = front.reg(e2, name="e")
        v3 = front.delay(self.i.valid, 3, "v")
        coefs = [rd.data[j * cb:(j + 1) * cb].as_signed() for j in range(d + 1)]

        # -- Horner engine ----------------------------------------------------------------------
        pw = ab + k * D + 2
        busy = Signal()
        fin = Signal()                           # the step's shift and coefficient add
        step = Signal(range(max(2, d)))
        dg = Signal(range(max(2, k)))
        mc = Signal(signed(pw))                  # the multiplicand, shifted left D bits a cycle
        tt = Signal(unsigned(w))                 # the offset's bits not yet taken
        t0 = Signal(unsigned(w))
        prod = Signal(signed(pw))
        saved = [Signal(signed(cb), name=f"c{j}") for j in range(d)]
        e_e = Signal.like(e3)
        ov = Signal()
        m.d.comb += self.o.valid.eq(ov)
        r_out, e_out = Signal.like(o.r), Signal.like(o.e)
        m.d.comb += [o.r.eq(r_out), o.e.eq(e_out)]
        with m.If(self.o.ready):
            m.d.sync += ov.eq(0)

        acc_new = Signal(signed(ab))
        m.d.comb += acc_new.eq((prod >> w) + Array(saved[::-1])[step])
        last = Signal()
        m.d.comb += last.eq(busy & fin & (step == d - 1))
        out_free = ~ov | self.o.ready
        done_last = last & out_free
        load = Signal()
        m.d.comb += [load.eq(v3 & (~busy | done_last)), en.eq(~v3 | load), self.i.ready.eq(en)]

        with m.If(busy & ~fin):
            m.d.sync += [prod.eq(prod + digit_product(mc, tt, D)), mc.eq(mc << D), tt.eq(tt >> D),
                         dg.eq(dg + 1)]
            with m.If(dg == k - 1):
                m.d.sync += [fin.eq(1), dg.eq(0)]
        with m.If(busy & fin & ~last):
            m.d.sync += [mc.eq(acc_new), prod.eq(round_term(acc_new < 0, w)), tt.eq(t0),
                         step.eq(step + 1), fin.eq(0)]
        with m.If(done_last):
            m.d.sync += [busy.eq(0), ov.eq(1), e_out.eq(e_e),
                         r_out.eq(round_shift_const(acc_new, F.GUARD).as_unsigned()[:F.RECIP_FRAC + 1])]
        with m.If(load):
            c = coefs[d]
            m.d.sync += [busy.eq(1), fin.eq(0), step.eq(0), dg.eq(0), mc.eq(c), tt.eq(t3), t0.eq(t3),
                         prod.eq(round_term(c < 0, w)), e_e.eq(e3),
                         *[s.eq(coefs[j]) for j, s in enumerate(saved)]]
        return m
