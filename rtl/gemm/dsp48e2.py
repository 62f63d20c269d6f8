"""The DSP48E2 subset the systolic array uses: the real primitive, or a bit-exact model of it.

:class:`DSP48E2` elaborates to ``Instance("DSP48E2", ...)`` when the Amaranth ``platform`` asks
for primitives (:data:`PRIMITIVES`: the Vivado export and the yosys resource estimate) and to an
Amaranth behavioural model otherwise (Amaranth's simulator, and the Verilog the cocotb tests run
on Verilator and Icarus).  Both take their configuration from one :class:`Dsp48e2Config`, and
the model refuses any attribute it does not implement, so the two cannot silently differ.

The model follows UG579 (UltraScale Architecture DSP Slice) for the subset below; everything
is synchronous to the ``sync`` domain, resets are synchronous and take priority over the clock
enables, as in the primitive:

* A path: ``A_INPUT`` ``DIRECT`` (port ``A``) or ``CASCADE`` (``ACIN``); ``AREG`` 0/1/2 with
  ``CEA1``/``CEA2`` (``AREG = 1`` uses the A2 register only); ``INMODE[0] = 0`` so the
  multiplier takes A2 (or the input when ``AREG = 0``); ``ACOUT`` is A1 when
  ``ACASCREG = 1 < AREG = 2``, otherwise the multiplier's A.  The same for B.
* Multiplier (``USE_MULT = "MULTIPLY"``, ``AMULTSEL = "A"``, ``BMULTSEL = "B"``):
  ``M = A[26:0] x B[17:0]``, both signed, exact (45 bits), registered when ``MREG = 1``
  (``CEM``, ``RSTM``).
* ALU (``ALUMODE = 0000``, ``CARRYIN = 0``, ``USE_SIMD = "ONE48"``): ``P = W + X + Y + Z``
  modulo 2^48 with X = Y = M (``OPMODE[3:0] = 0101``), Z = 0 or ``PCIN`` (``OPMODE[6:4]`` 000 or
  001) and W = 0 or ``C`` (``OPMODE[8:7]`` 00 or 11; ``CREG = 0``);
  ``PREG = 1`` (``CEP``, ``RSTP``); ``PCOUT = P``.

``OPMODE``, ``INMODE`` and ``ALUMODE`` are constants (their registers off); the D port and the
pre-adder, pattern detector and carry logic are unused and tied off.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from amaranth.hdl import ClockSignal, Const, Instance, Module, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

A_BITS, B_BITS, P_BITS, MULT_A_BITS = 30, 18, 48, 27

OPMODE_X_Y_M = 0b0101
"""OPMODE[3:0]: X and Y both select the multiplier's partial products (their sum is M)."""
OPMODE_Z = {"zero": 0b000, "pcin": 0b001}
OPMODE_W = {"zero": 0b00, "c": 0b11}


class PrimitiveTarget:
    """An Amaranth ``platform`` whose only meaning is: elaborate :class:`DSP48E2` as the real
    primitive.  It has none of the ``get_*`` hooks, so every other component elaborates as it
    does without a platform."""

    dsp48e2_primitive = True

    def __repr__(self):
        return "PrimitiveTarget()"


PRIMITIVES = PrimitiveTarget()
"""Pass as ``platform=`` to ``amaranth.back.verilog.convert`` to instantiate DSP48E2 cells."""


def wants_primitive(platform) -> bool:
    return bool(getattr(platform, "dsp48e2_primitive", False))


@dataclass(frozen=True)
class Dsp48e2Config:
    """The attributes of one DSP48E2 (the subset :class:`DSP48E2` implements)."""

    areg: int = 1
    acascreg: int = 1
    a_input: str = "DIRECT"
    breg: int = 1
    bcascreg: int = 1
    b_input: str = "DIRECT"
    mreg: int = 1
    z: str = "zero"
    """ALU Z operand: ``"zero"`` or ``"pcin"`` (the cascade from the DSP above)."""
    w: str = "zero"
    """ALU W operand: ``"zero"`` or ``"c"`` (the C port, unregistered)."""

    def __post_init__(self):
        for port in ("a", "b"):
            reg, casc, inp = (getattr(self, f"{port}reg"), getattr(self, f"{port}cascreg"),
                              getattr(self, f"{port}_input"))
            if reg not in (0, 1, 2):
                raise ValueError(f"Dsp48e2Config.{port}reg must be 0, 1 or 2, not {reg!r}")
            allowed = (1, 2) if reg == 2 else (reg,)
            if casc not in allowed:
                raise ValueError(f"Dsp48e2Config.{port}cascreg must be one of {allowed} with "
                                 f"{port}reg = {reg}, not {casc!r}")
            if inp not in ("DIRECT", "CASCADE"):
                raise ValueError(f"Dsp48e2Config.{port}_input must be 'DIRECT' or 'CASCADE', not {inp!r}")
        if self.mreg not in (0, 1):
            raise ValueError(f"Dsp48e2Config.mreg must be 0 or 1, not {self.mreg!r}")
        if self.z not in OPMODE_Z:
            raise ValueError(f"Dsp48e2Config.z must be one of {sorted(OPMODE_Z)}, not {self.z!r}")
        if self.w not in OPMODE_W:
            raise ValueError(f"Dsp48e2Config.w must be one of {sorted(OPMODE_W)}, not {self.w!r}")

    @property
    def opmode(self) -> int:
        return (OPMODE_W[self.w] << 7) | (OPMODE_Z[self.z] << 4) | OPMODE_X_Y_M

    def replace(self, **kw) -> "Dsp48e2Config":
        return dataclasses.replace(self, **kw)


class DSP48E2(wiring.Component):
    """One DSP48E2 slice, as configured by ``dcfg`` (see the module docstring).

    Ports keep the primitive's names: ``A`` (30), ``B`` (18), ``C`` (48), ``ACIN``/``ACOUT`` (30),
    ``BCIN``/``BCOUT`` (18), ``PCIN``/``PCOUT``/``P`` (48), all two's complement; clock enables
    ``CEA1``, ``CEA2``, ``CEB1``, ``CEB2``, ``CEM``, ``CEP``; the resets are the ``sync`` domain's.
    """

    def __init__(self, dcfg: Dsp48e2Config):
        if not isinstance(dcfg, Dsp48e2Config):
            raise TypeError(f"DSP48E2 needs a Dsp48e2Config, not {dcfg!r}")
        self.dcfg = dcfg
        super().__init__({
            "A": In(signed(A_BITS)), "ACIN": In(signed(A_BITS)), "ACOUT": Out(signed(A_BITS)),
            "B": In(signed(B_BITS)), "BCIN": In(signed(B_BITS)), "BCOUT": Out(signed(B_BITS)),
            "C": In(signed(P_BITS)),
            "PCIN": In(signed(P_BITS)), "PCOUT": Out(signed(P_BITS)), "P": Out(signed(P_BITS)),
            "CEA1": In(1), "CEA2": In(1), "CEB1": In(1), "CEB2": In(1), "CEM": In(1), "CEP": In(1),
        })

    def elaborate(self, platform):
        if wants_primitive(platform):
            return self._instance()
        return self._model()

    # -- the primitive (Vivado; yosys counts it as one DSP48E2 cell) -----------------------------
    def _instance(self):
        d = self.dcfg
        m = Module()
        zero = lambda n: Const(0, n)
        m.submodules.dsp = Instance(
            "DSP48E2",
            p_A_INPUT=d.a_input, p_B_INPUT=d.b_input, p_AMULTSEL="A", p_BMULTSEL="B",
            p_PREADDINSEL="A", p_USE_MULT="MULTIPLY", p_USE_SIMD="ONE48",
            p_USE_PATTERN_DETECT="NO_PATDET", p_AUTORESET_PATDET="NO_RESET",
            p_AREG=d.areg, p_ACASCREG=d.acascreg, p_BREG=d.breg, p_BCASCREG=d.bcascreg,
            p_MREG=d.mreg, p_PREG=1, p_CREG=0, p_DREG=0, p_ADREG=0, p_INMODEREG=0,
            p_OPMODEREG=0, p_ALUMODEREG=0, p_CARRYINREG=0, p_CARRYINSELREG=0,
            i_CLK=ClockSignal(),
            i_A=self.A, i_ACIN=self.ACIN, o_ACOUT=self.ACOUT,
            i_B=self.B, i_BCIN=self.BCIN, o_BCOUT=self.BCOUT,
            i_C=self.C, i_D=zero(27),
            i_PCIN=self.PCIN, o_PCOUT=self.PCOUT, o_P=self.P,
            i_OPMODE=Const(d.opmode, 9), i_INMODE=zero(5), i_ALUMODE=zero(4),
            i_CARRYIN=zero(1), i_CARRYINSEL=zero(3), i_CARRYCASCIN=zero(1), i_MULTSIGNIN=zero(1),
            i_CEA1=self.CEA1, i_CEA2=self.CEA2, i_CEB1=self.CEB1, i_CEB2=self.CEB2,
            i_CEM=self.CEM, i_CEP=self.CEP,
            i_CEC=zero(1), i_CED=zero(1), i_CEAD=zero(1), i_CEALUMODE=zero(1), i_CECTRL=zero(1),
            i_CECARRYIN=zero(1), i_CEINMODE=zero(1),
            i_RSTA=ResetSignal(), i_RSTB=ResetSignal(), i_RSTM=ResetSignal(), i_RSTP=ResetSignal(),
            i_RSTC=zero(1), i_RSTD=zero(1), i_RSTALLCARRYIN=zero(1), i_RSTALUMODE=zero(1),
            i_RSTCTRL=zero(1), i_RSTINMODE=zero(1),
        )
        return m

    # -- the behavioural model ------------------------------------------------------------------
    def _input_regs(self, m, name, src, reg, casc, ce1, ce2, cout):
        """Registers of the A or B path; returns the multiplier operand."""
        stage1 = Signal.like(src, name=f"{name}1")
        stage2 = Signal.like(src, name=f"{name}2")
        if reg == 2:
            with m.If(ce1):
                m.d.sync += stage1.eq(src)
        if reg >= 1:
            with m.If(ce2):
                m.d.sync += stage2.eq(stage1 if reg == 2 else src)
        mult = src if reg == 0 else stage2
        m.d.comb += cout.eq(stage1 if casc == 1 and reg == 2 else mult)
        return mult

    def _model(self):
        d = self.dcfg
        m = Module()
        a_src = self.ACIN if d.a_input == "CASCADE" else self.A
        b_src = self.BCIN if d.b_input == "CASCADE" else self.B
        a = self._input_regs(m, "a", a_src, d.areg, d.acascreg, self.CEA1, self.CEA2, self.ACOUT)
        b = self._input_regs(m, "b", b_src, d.breg, d.bcascreg, self.CEB1, self.CEB2, self.BCOUT)

        product = Signal(signed(MULT_A_BITS + B_BITS))
        m.d.comb += product.eq(a[:MULT_A_BITS].as_signed() * b)
        if d.mreg:
            mult = Signal(signed(MULT_A_BITS + B_BITS))
            with m.If(self.CEM):
                m.d.sync += mult.eq(product)
        else:
            mult = product

        z = self.PCIN if d.z == "pcin" else 0
        w = self.C if d.w == "c" else 0
        p = Signal(signed(P_BITS))
        with m.If(self.CEP):
            m.d.sync += p.eq(w + z + mult)   # truncated to 48 bits: the ALU wraps modulo 2^48
        m.d.comb += [self.P.eq(p), self.PCOUT.eq(p)]
        return m


_STUB_PORTS = (
    [("input", "CLK", 1), ("input", "A", A_BITS), ("input", "ACIN", A_BITS), ("output", "ACOUT", A_BITS),
     ("input", "B", B_BITS), ("input", "BCIN", B_BITS), ("output", "BCOUT", B_BITS),
     ("input", "C", P_BITS), ("input", "D", 27), ("input", "PCIN", P_BITS),
     ("output", "PCOUT", P_BITS), ("output", "P", P_BITS), ("input", "OPMODE", 9),
     ("input", "INMODE", 5), ("input", "ALUMODE", 4), ("input", "CARRYINSEL", 3)]
    + [("input", name, 1) for name in (
        "CARRYIN", "CARRYCASCIN", "MULTSIGNIN", "CEA1", "CEA2", "CEB1", "CEB2", "CEM", "CEP",
        "CEC", "CED", "CEAD", "CEALUMODE", "CECTRL", "CECARRYIN", "CEINMODE", "RSTA", "RSTB",
        "RSTM", "RSTP", "RSTC", "RSTD", "RSTALLCARRYIN", "RSTALUMODE", "RSTCTRL", "RSTINMODE")])


def lint_stub() -> str:
    """A port-compatible empty ``DSP48E2`` for linting a primitive export with Verilator (the
    real cell comes from Vivado's library; yosys has its own black box)."""
    params = ["A_INPUT", "B_INPUT", "AMULTSEL", "BMULTSEL", "PREADDINSEL", "USE_MULT", "USE_SIMD",
              "USE_PATTERN_DETECT", "AUTORESET_PATDET"]
    ints = ["AREG", "ACASCREG", "BREG", "BCASCREG", "MREG", "PREG", "CREG", "DREG", "ADREG",
            "INMODEREG", "OPMODEREG", "ALUMODEREG", "CARRYINREG", "CARRYINSELREG"]
    lines = ["/* verilator lint_off UNUSEDSIGNAL */", "/* verilator lint_off UNUSEDPARAM */",
             "(* blackbox *)", "module DSP48E2 #("]
    decl = [f'  parameter {p} = ""' for p in params] + [f"  parameter integer {p} = 0" for p in ints]
    lines.append(",\n".join(decl))
    lines.append(") (")
    lines.append(",\n".join(f"  {d} wire [{w - 1}:0] {n}" for d, n, w in _STUB_PORTS))
    lines.append(");")
    lines += [f"  assign {n} = {w}'d0;" for d, n, w in _STUB_PORTS if d == "output"]
    lines += ["endmodule", "/* verilator lint_on UNUSEDPARAM */", "/* verilator lint_on UNUSEDSIGNAL */", ""]
    return "\n".join(lines)
