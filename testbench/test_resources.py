"""heatvit.bench._yosys hierarchical synthesis and the accelerator's selector switch.

* module split, keys (identical instances share one key, a changed module gets a new one),
  blackbox stubs, zero-initialiser removal: on exported Verilog, no yosys;
* ``hier_cell_counts`` equals one whole-design ``synth_xilinx`` run, cell type by cell type, on a
  small design with identical submodules, a block RAM and a clock (yosys; seconds);
* ``AcceleratorConfig.selectors = False``: config check, ``isa.check`` and the compiler refuse
  selector work with clear errors; the elaborated top has no selector executors.
"""

import dataclasses
import json
import re

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.bench import _yosys
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode
from heatvit.sim.runner import export_verilog

yosys = pytest.mark.skipif(not _yosys.available(), reason="yosys not installed")


class Lane(wiring.Component):
    """A registered add and a 1024 x 32 memory with a synchronous read (one RAMB36)."""

    def __init__(self, width: int = 16):
        self.width = width
        super().__init__({"a": In(width), "b": In(width), "addr": In(10), "we": In(1), "y": Out(width),
                          "q": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=32, depth=1024, init=[])
        wp, rp = mem.write_port(), mem.read_port()
        m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.a), wp.en.eq(self.we), rp.addr.eq(self.addr),
                     self.q.eq(rp.data)]
        m.d.sync += self.y.eq(self.a + self.b)
        return m


class Pair(wiring.Component):
    """Two identical lanes and a different one, their results combined."""

    def __init__(self):
        super().__init__({"a": In(16), "b": In(16), "addr": In(10), "we": In(1), "y": Out(16), "q": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.l0 = l0 = Lane()
        m.submodules.l1 = l1 = Lane()
        m.submodules.wide = wide = Lane(24)
        for lane in (l0, l1, wide):
            m.d.comb += [lane.a.eq(self.a), lane.b.eq(self.b), lane.addr.eq(self.addr), lane.we.eq(self.we)]
        m.d.comb += l1.b.eq(~self.b)
        acc = Signal(16)
        m.d.sync += acc.eq(l0.y ^ l1.y ^ wide.y[:16])
        m.d.comb += [self.y.eq(acc), self.q.eq(l0.q + l1.q + wide.q)]
        return m


def test_split_keys_and_stubs():
    v = export_verilog(Pair(), "pair")
    assert "initial begin" in v and "initial begin" not in _yosys.drop_zero_inits(v)
    mods = _yosys.split_modules(v)
    assert set(mods) == {"pair", r"\pair.l0", r"\pair.l1", r"\pair.wide"}
    assert sorted(mods["pair"][1]) == [r"\pair.l0", r"\pair.l1", r"\pair.wide"]
    keys = _yosys.module_keys(mods)
    assert keys[r"\pair.l0"] == keys[r"\pair.l1"] != keys[r"\pair.wide"]
    # a changed module (another width) has another key, and so does its parent
    v2 = v.replace("input [15:0] a;", "input [14:0] a;", 1)
    assert _yosys.module_keys(_yosys.split_modules(v2)) != keys
    # the writer's order of one-line assignments (it differs between exports) does not matter
    lines = v.splitlines()
    run = next(i for i in range(len(lines) - 2)
               if all(ln.startswith("  assign ") and ln.endswith(";") for ln in lines[i:i + 3]))
    lines[run:run + 3] = lines[run:run + 3][::-1]
    assert "\n".join(lines) != v and _yosys.module_keys(_yosys.split_modules("\n".join(lines) + "\n")) == keys
    stub = _yosys._stub(r"\pair.l0", mods[r"\pair.l0"][0])
    assert stub.startswith("(* blackbox *)\nmodule \\pair.l0 (") and "input [9:0] addr;" in stub
    assert "always" not in stub and stub.endswith("endmodule\n")


@yosys
@pytest.mark.parametrize("batch", [True, False], ids=["batched", "one-per-run"])
def test_hierarchical_equals_whole_design(tmp_path, monkeypatch, batch):
    """Per-module synthesis counted per instance = one run of the whole (unflattened) design,
    small modules batched several to a run or each alone; the second call is answered from the
    cache."""
    if not batch:
        monkeypatch.setattr(_yosys, "BATCH_BYTES", 1)
    from heatvit.bench.resources import _load_stat, _stat_cells
    v = _yosys.drop_zero_inits(export_verilog(Pair(), "pair"))
    (tmp_path / "pair.v").write_text(v)
    import subprocess
    subprocess.run(["yosys", "-q", "-p", f"read_verilog pair.v; {_yosys.SYNTH} -top pair; "
                    "tee -q -o stat.json stat -json -top pair"], cwd=tmp_path, check=True, capture_output=True)
    flat = _stat_cells(_load_stat(tmp_path / "stat.json"))
    hier = _yosys.hier_cell_counts(v, "pair", cache=tmp_path / "cache")
    assert hier["cells"] == flat, (hier["cells"], flat)
    assert hier["cells"]["RAMB36E2"] == 3 and hier["cells"]["BUFG"] == 1
    assert (hier["instances"], hier["modules"], hier["synthesized_now"]) == (4, 3, 3)
    batch_sizes = sorted(json.loads(f.read_text())["batch"] for f in (tmp_path / "cache").glob("*.json"))
    assert batch_sizes == ([1, 2, 2] if batch else [1, 1, 1])
    # every module's longest combinational path measured in the same runs, deepest first: the
    # top's three-way 32-bit sum to its output port, then the lanes' adders (a LUT and a carry
    # chain from the ports to the result register)
    paths = hier["longest_paths"]
    assert paths["modules_measured"] == 3 and paths["modules_not_measured"] == []
    assert [p["module"] for p in paths["deepest"]][0] == "pair"
    assert [p["levels"] for p in paths["deepest"]] == sorted((p["levels"] for p in paths["deepest"]), reverse=True)
    for p in paths["deepest"]:
        assert p["luts"] >= 1 and p["carry"] >= 3
        assert p["levels"] == p["luts"] + p["other"] + p["carry"] / 4
    again = _yosys.hier_cell_counts(v, "pair", cache=tmp_path / "cache")
    assert again["cells"] == hier["cells"] and again["synthesized_now"] == 0
    assert again["longest_paths"] == paths
    with pytest.raises(ValueError, match="top module 'nope'"):
        _yosys.hier_cell_counts(v, "nope", cache=tmp_path / "cache")


def test_module_paths_parsed():
    """``ltp`` per module: the cells on each path classified by the select lists (LUT, MUXF and
    LUT-RAM reads, carry), a module without a combinational cell has length -1 (0 levels)."""
    ltp = ("Longest topological path in a.b (length=4):\n    0: \\x [0]\n"
           "    1: $1.Y (via $abc$1)\n    2: $2.O (via $f7)\n    3: $c.CO [3] (via $c0.carry4)\n"
           "    4: $c.CO [7] (via $c1.carry4)\n\nLongest topological path in top (length=-1):\n")
    got = _yosys.module_paths(ltp, "a.b/$abc$1\n", "a.b/$f7\n", "a.b/$c0.carry4\na.b/$c1.carry4\n")
    assert got == {"a.b": {"cells": 4, "luts": 1, "other": 1, "carry": 2, "levels": 2.5},
                   "top": {"cells": 0, "luts": 0, "other": 0, "carry": 0, "levels": 0}}


class Rom(wiring.Component):
    """A 32 x 16-bit ROM with ``ports`` synchronous read ports (as the nonlinear units share one
    coefficient ROM between their lanes) and (``ram``) a RAM with as many read ports."""

    def __init__(self, ports: int, ram: bool = True):
        self.ports, self.ram = ports, ram
        super().__init__({"addr": In(5).array(ports), "we": In(1), "q": Out(16).array(ports),
                          "r": Out(16).array(ports)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Memory(shape=16, depth=32, init=[(i * 40503) & 0xFFFF for i in range(32)])
        if self.ram:
            m.submodules.ram = ram = Memory(shape=16, depth=32, init=[])
            wp = ram.write_port()
            m.d.comb += [wp.addr.eq(self.addr[0]), wp.data.eq(self.addr[0] * 3), wp.en.eq(self.we)]
        for i in range(self.ports):
            rp = rom.read_port()
            m.d.comb += [rp.addr.eq(self.addr[i]), self.q[i].eq(rp.data)]
            if self.ram:
                rr = ram.read_port()
                m.d.comb += [rr.addr.eq(self.addr[i]), self.r[i].eq(rr.data)]
        return m


@pytest.mark.parametrize("ports", [_yosys.ROM_LOGIC_PORTS, _yosys.ROM_LOGIC_PORTS + 1, 16])
def test_many_port_roms_as_logic(ports):
    """Only a ROM (initialised, never written) with more than ROM_LOGIC_PORTS read ports is
    marked; the RAM beside it never; marking twice changes nothing."""
    v = _yosys.prepare(export_verilog(Rom(ports), "rom"))
    marked = ports > _yosys.ROM_LOGIC_PORTS
    assert v.count('(* rom_style = "logic" *)') == marked
    if marked:
        assert re.search(r'\(\* rom_style = "logic" \*\)\n  reg \[15:0\] rom \[31:0\];', v)
    assert _yosys.prepare(v) == v


@yosys
def test_rom_as_logic_same_cells(tmp_path):
    """The attribute gives the cells yosys' memory_libmap chooses itself at the smallest port
    count it marks (ROM_LOGIC_PORTS + 1; libmap's time doubles per port).  The ROM alone: a RAM
    of as many ports beside it (never marked, test_many_port_roms_as_logic) only doubled the two
    runs' libmap searches (148 s of CI at ROM_LOGIC_PORTS + 2 with it)."""
    from heatvit.bench.resources import flat_cell_counts
    v = export_verilog(Rom(_yosys.ROM_LOGIC_PORTS + 1, ram=False), "rom")
    plain, marked = _yosys.drop_zero_inits(v), _yosys.prepare(v)
    assert plain != marked
    a = flat_cell_counts(plain, "rom", tmp_path / "plain")["cells"]
    b = flat_cell_counts(marked, "rom", tmp_path / "marked")["cells"]
    assert a == b, (a, b)


def test_selectors_switch_config_and_checks():
    with pytest.raises(ValueError, match="selectors must be a bool"):
        AcceleratorConfig(selectors=1)
    acc = dataclasses.replace(AcceleratorConfig(), selectors=False)
    assert AcceleratorConfig.from_dict(acc.to_dict()) == acc and acc.digest() != AcceleratorConfig().digest()
    d = isa.Descriptor(isa.Op.GEMM, epilogue=isa.Epilogue.REQ8_SIGMOID, src=isa.Buf.N, dst=isa.Buf.QKV, m=4,
                       k=16, n=1, addr=0)
    isa.check(d, AcceleratorConfig())
    for bad in (d, isa.Descriptor(isa.Op.MEAN, src=isa.Buf.H, dst=isa.Buf.H, m=4, k=8, n=16),
                isa.Descriptor(isa.Op.SELECT, src=isa.Buf.X0, dst=isa.Buf.X0, aux=isa.Buf.QKV, heads=1, m=4,
                               n=16, a_col=16)):
        with pytest.raises(isa.DescriptorError, match="selectors = False") as e:
            isa.check(bad, acc)
        assert e.value.code == ErrorCode.CTRL_UNSUPPORTED_OP
    isa.check(d.with_(epilogue=isa.Epilogue.REQ8_GELU), acc)


def test_selectors_switch_top_and_compiler():
    """The dense-only top has no SELECT / MEAN executors and no sigmoid unit; the compiler
    refuses a pruned model for it and compiles the same model dense."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_accel_top import micro_vit, tiny_acc

    from heatvit.compiler.emit import FitError
    from heatvit.rtl.accel.epilogue import EpilogueRouter
    from heatvit.rtl.accel.top import Accelerator
    acc = dataclasses.replace(tiny_acc(tokens=16), selectors=False)
    top = Accelerator(acc)
    assert isa.Op.SELECT not in top.classes and isa.Op.MEAN not in top.classes
    assert "selectors = False" in top.missing[isa.Op.SELECT] and isa.Op.GEMM in top.classes
    from amaranth.hdl import Fragment
    names = lambda a: {sub[1] for sub in Fragment.get(EpilogueRouter(a), None).subfragments}  # noqa: E731
    assert "gelu_unit" in names(acc) and "sigmoid_unit" not in names(acc)
    assert "sigmoid_unit" in names(tiny_acc(tokens=16))
    with pytest.raises(FitError, match=r"token selector\(s\) but the config has selectors = False"):
        micro_vit(acc, 3, prune=True)
    micro_vit(acc, 3)


def test_selector_share_arithmetic():
    from heatvit.bench.resources import TOTALS, selector_share
    base = {k: 100.0 for k in TOTALS}
    a = {"resources": {**base, "LUT": 1000.0}, "selector_modules": {"s": {**{k: 0 for k in TOTALS}, "LUT": 30}}}
    b = {"resources": {**base, "LUT": 960.0}}
    s = selector_share(a, b)
    assert s["difference"]["LUT"] == 40 and s["share_of_accelerator"]["LUT"] == pytest.approx(0.04)
    assert s["own_modules"]["LUT"] == 30 and s["meets"] == {"own_dsp": True, "lut_share": True}


def test_pruning_bench_reads_the_measured_share(tmp_path):
    """``pruning.json``'s ``resources``: the selector share of each measured configuration in
    ``resources.json``, only for the installed RTL (another digest is reported as stale)."""
    from heatvit.bench.perf import rtl_digest
    from heatvit.bench.pruning import measured_selector_share
    from heatvit.bench.resources import TOTALS, selector_share
    assert "skipped" in measured_selector_share(tmp_path / "resources.json")
    base = {k: 100.0 for k in TOTALS}
    a = {"resources": {**base, "LUT": 1000.0}, "selector_modules": {"s": {**{k: 0 for k in TOTALS}, "LUT": 30}}}
    b = {"resources": {**base, "LUT": 940.0}}
    entry = lambda digest: {"builds": [a, b], "selector": selector_share(a, b), "rtl_digest": digest}  # noqa: E731
    (tmp_path / "resources.json").write_text(json.dumps({"accelerator": entry(rtl_digest()), "board": entry("0" * 16)}))
    r = measured_selector_share(tmp_path / "resources.json")
    assert r["default"]["lut_share"] == 0.06 and r["default"]["meets"] == {"own_dsp": True, "lut_share": False}
    assert r["default"]["difference"]["LUT"] == 60 and r["default"]["with_selectors"]["LUT"] == 1000
    assert "stale" in r["zcu102"] and "0" * 16 in r["zcu102"]["stale"]


def test_accelerator_table():
    from heatvit.bench.resources import TOTALS, accelerator_table, selector_share, table, utilization
    res = lambda lut, dsp: {**{k: 10.0 for k in TOTALS}, "LUT": lut, "DSP48E2": dsp, "LUT_as_memory": 0}  # noqa: E731
    a = {"name": "with selectors", "resources": res(1000.0, 20), "utilization": utilization(res(1000.0, 20)),
         "selector_modules": {"exec_select": res(30, 0)}, "units": {"bufs": res(5, 0), "exec_gemm.engine": res(900, 20)}}
    b = {"name": "without selectors", "resources": res(970.0, 20), "utilization": utilization(res(970.0, 20))}
    doc = {"accelerator": {"builds": [a, b], "selector": selector_share(a, b)}}
    out = table(doc)
    assert "| accelerator with selectors | 1,000 (0.4 %) |" in out
    assert "| selector hardware (difference) | 30 (3.00 %) |" in out and "| selector modules' own cells | 30 |" in out
    assert out.index("exec_gemm.engine") < out.index("| bufs |") and accelerator_table(doc["accelerator"]) in out
