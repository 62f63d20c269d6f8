"""Every nonlinear unit side by side in one component (one Verilog module, one simulator build).

Port ``<unit>__<port>`` is port ``<port>`` of unit ``<unit>``: ``gelu`` and ``sigmoid``
(:class:`~.units.ActUnit`, 32-bit in, 20/17-bit out so the tests can reach the cores' full
formats), ``exp``, ``recip`` (32-bit in), ``rsqrt`` (40-bit in), ``softmax``, ``layernorm``.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from heatvit.golden.nonlinear import formats as F
from heatvit.nonlinear_config import NonlinearConfig

from .rows import LayerNormUnit, SoftmaxUnit
from .units import ActUnit, ExpUnit, ReciprocalUnit, RsqrtUnit

RECIP_BITS = 32
RSQRT_BITS = 40


def bank_units(cfg: NonlinearConfig) -> dict:
    return {
        "gelu": ActUnit(cfg, "gelu", in_bits=32, out_bits=F.ACT_BITS),
        "sigmoid": ActUnit(cfg, "sigmoid", in_bits=32, out_bits=F.SIGMOID_FRAC + 2),
        "exp": ExpUnit(cfg),
        "recip": ReciprocalUnit(cfg, RECIP_BITS),
        "rsqrt": RsqrtUnit(cfg, RSQRT_BITS),
        "softmax": SoftmaxUnit(cfg),
        "layernorm": LayerNormUnit(cfg),
    }


class NonlinearBank(wiring.Component):
    def __init__(self, cfg: NonlinearConfig):
        self.cfg = cfg
        self.units = bank_units(cfg)
        members = {}
        for name, unit in self.units.items():
            for port, member in unit.signature.members.items():
                members[f"{name}__{port}"] = member
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        for name, unit in self.units.items():
            m.submodules[name] = unit
            for port, member in unit.signature.members.items():
                outer, inner = getattr(self, f"{name}__{port}"), getattr(unit, port)
                if member.is_signature:
                    if member.flow == In:
                        wiring.connect(m, wiring.flipped(outer), inner)
                    else:
                        wiring.connect(m, inner, wiring.flipped(outer))
                elif member.flow == In:
                    m.d.comb += inner.eq(outer)
                else:
                    m.d.comb += outer.eq(inner)
        return m
