"""``heatvit.bench._yosys.endpoint_levels``: every endpoint's logic depth (issue 13's measure).

* the netlist walk on hand-written ``write_json`` netlists (no yosys): LUT/MUXF/INV 1 level,
  carry cells 1/4, a LUT-RAM read counted from its address inputs only, a loop refused;
* yosys (seconds): a 216-input parity between registers is 9 levels (LUT6 trees with MUXF7/8/9,
  as abc maps them), a 96-bit add 7.25, and beside each other ``ltp -noff`` reports the add (more
  cells, fewer levels) while the every-endpoint figure is the parity's 9.
"""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.bench import _yosys
from heatvit.sim.runner import export_verilog

yosys = pytest.mark.skipif(not _yosys.available(), reason="yosys not installed")


def _cell(kind, ins, outs):
    conns = {**{p: bits for p, bits in ins.items()}, **{p: bits for p, bits in outs.items()}}
    dirs = {**{p: "input" for p in ins}, **{p: "output" for p in outs}}
    return {"type": kind, "connections": conns, "port_directions": dirs}


def test_netlist_walk():
    """in(2) -> LUT -> CARRY4 -> CARRY4 -> MUXF7 -> out: 2.5; a RAM fed by that path on its write
    data, read at an input-port address, adds 1 to depth 0, not to 2.5; a LUT on the RAM read: 2."""
    cells = {
        "l": _cell("LUT2", {"I0": [2], "I1": ["0"]}, {"O": [3]}),
        "c0": _cell("CARRY4", {"S": [3, 3, 3, 3], "CI": ["0"]}, {"CO": [4, 5, 6, 7]}),
        "c1": _cell("CARRY4", {"S": [7, 7, 7, 7], "CI": [7]}, {"CO": [8, 9, 10, 11]}),
        "f": _cell("MUXF7", {"I0": [11], "I1": [2], "S": [2]}, {"O": [12]}),
        "ram": _cell("RAM32X1D", {"D": [12], "WE": [12], "WCLK": [2], "A0": [2], "DPRA0": [13]},
                     {"SPO": [14], "DPO": [15]}),
        "g": _cell("LUT1", {"I0": [15]}, {"O": [16]}),
    }
    got = _yosys.netlist_depth({"modules": {"m": {"cells": cells}}}, "m")
    deepest = got.pop("deepest_nets")
    assert got == {"levels": 2.5, "path": ["LUT2", "CARRY4", "CARRY4", "MUXF7"], "cells": 6, "net": "12",
                   "source": "2"}
    assert deepest[0] == ["12", 2.5] and dict(deepest)["11"] == 1.5 and len(deepest) == 8
    del cells["c0"], cells["c1"], cells["f"]
    cells["ram"]["connections"]["D"] = [3]
    got = _yosys.netlist_depth({"modules": {"m": {"cells": cells}}}, "m")
    assert got["levels"] == 2 and got["path"] == ["RAM32X1D", "LUT1"]
    loop = {"a": _cell("LUT1", {"I0": [3]}, {"O": [4]}), "b": _cell("INV", {"I": [4]}, {"O": [3]})}
    with pytest.raises(ValueError, match="combinational loop"):
        _yosys.netlist_depth({"modules": {"m": {"cells": loop}}}, "m")


class Chains(wiring.Component):
    """Registered inputs, registered results: a ``parity``-input XOR and a ``width``-bit add."""

    def __init__(self, parity: int, width: int):
        self.parity, self.width = parity, width
        super().__init__({"a": In(max(parity, 1)), "b": In(max(width, 1)), "c": In(max(width, 1)),
                          "y": Out(1), "s": Out(width + 1)})

    def elaborate(self, platform):
        m = Module()
        if self.parity:
            r = Signal(self.parity)
            m.d.sync += [r.eq(self.a), self.y.eq(r.xor())]
        if self.width:
            x, z = Signal(self.width), Signal(self.width)
            m.d.sync += [x.eq(self.b), z.eq(self.c), self.s.eq(x + z)]
        return m


@yosys
@pytest.mark.parametrize("parity, width, levels, ltp", [(216, 0, 9, 9), (0, 96, 7.25, 7.25),
                                                        (216, 96, 9, 7.25)])
def test_known_depths(tmp_path, parity, width, levels, ltp):
    got = _yosys.endpoint_levels(export_verilog(Chains(parity, width), "chains"), ["chains"],
                                 cache=tmp_path)["chains"]
    assert (got["levels"], got["ltp_levels"]) == (levels, ltp), got
    assert got["ff"] == (parity + 1 if parity else 0) + (3 * width + 1 if width else 0)
    # the cached figure is the same
    assert _yosys.endpoint_levels(export_verilog(Chains(parity, width), "chains"), ["chains"],
                                  cache=tmp_path)["chains"] == got
