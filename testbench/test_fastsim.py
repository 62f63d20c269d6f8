"""pytest driver: whole-system simulation with the HDL DDR model (no Python per clock cycle).

``heatvit_fastsim`` = the shell's thin top + ``heatvit/sim/axi_ddr.v``; the host side is
``heatvit.driver.fastsim`` (registers over AXI4-Lite pins, waits on ``irq``, DDR through
``$readmemh``/``$writememh`` between jobs).
"""

import json
from pathlib import Path

import pytest

from heatvit.sim.fast_top import TOP_NAME, ddr_depth_log2, export_fast
from heatvit.sim.runner import (compact_zero_inits, icarus_fixes, public_top_config, run_cocotb,
                                simulator_available, top_ports)

from test_shell import SHELL_CONFIGS

DDR_BYTES = 1 << 16          # 64 KiB of the 256 KiB test window: addresses above it get SLVERR
# One Verilator build (the 128-bit bus of the board); Icarus compiles in seconds.
RUNS = [("4x4-w64", "icarus"), ("4x4-w32", "icarus"), ("8x4-w128", "verilator")]


def run_fast(acc, sim, *, ddr_bytes=DDR_BYTES, env=None, testcase=None, tag=""):
    extra = {"HEATVIT_CONFIG": json.dumps(acc.to_dict()), "HEATVIT_DDR_BYTES": str(ddr_bytes),
             **(env or {})}
    return run_cocotb(verilog=export_fast(acc, ddr_bytes), toplevel=TOP_NAME,
                      test_module="tb_fastsim", test_dir=Path(__file__).parent / "fastsim", sim=sim,
                      env=extra, tag=tag, testcase=testcase, profile="fast")


@pytest.mark.parametrize("name,sim", RUNS, ids=[f"{n}-{s}" for n, s in RUNS])
def test_fastsim(name, sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed")
    run_fast(SHELL_CONFIGS[name], sim, tag=name, env={"HEATVIT_QUICK": "1"} if sim == "icarus" else None)


@pytest.mark.parametrize("ddr_bytes,needle", [(1000, ">= 4096"), (3 << 12, "power of two"),
                                              (1 << 20, "window"), (True, "int")])
def test_ddr_size_rejected(ddr_bytes, needle):
    shell = SHELL_CONFIGS["4x4-w64"].shell
    with pytest.raises(ValueError, match=needle):
        ddr_depth_log2(shell, ddr_bytes)


ZERO_INIT = """  reg [31:0] mem [2:0];
  initial begin
    mem[0] = 32'd0;
    mem[1] = 32'd0;
    mem[2] = 32'd0;
  end
  reg [127:0] \\buf  [1:0];
  initial begin
    \\buf [0] = 128'h00000000000000000000000000000000;
    \\buf [1] = 128'h00000000000000000000000000000000;
  end
"""


def test_compact_zero_inits():
    """All-zero memory initialisers become loops over the same words; any other initialiser
    (a non-zero word, words out of order, two memories in one block) is kept as written."""
    out = compact_zero_inits(ZERO_INIT)
    i = "heatvit_zi"
    assert f"for ({i} = 0; {i} < 3; {i} = {i} + 1) mem[{i}] = 32'd0;" in out
    assert f"for ({i} = 0; {i} < 2; {i} = {i} + 1) \\buf [{i}] = 128'd0;" in out
    assert out.count("integer heatvit_zi;") == 2 and "mem[1]" not in out and "\\buf [1]" not in out
    for keep in [ZERO_INIT.replace("mem[1] = 32'd0", "mem[1] = 32'd7"),
                 ZERO_INIT.replace("mem[1] = 32'd0", "mem[2] = 32'd0"),
                 ZERO_INIT.replace("    mem[2] = 32'd0;", "    mem2[2] = 32'd0;")]:
        assert compact_zero_inits(keep).startswith(keep[:keep.index("  reg [127:0]")])


def test_icarus_fixes():
    """An ``always @*`` that only assigns a constant becomes ``initial`` (Icarus never runs an
    ``@*`` that reads nothing); blocks that read a signal are kept."""
    src = ("  always @*\n    \\d$1 [128] = 1'h0;\n  always @*\n    beat[131] = beat_last;\n"
           "  always @*\n    x[3:0] = 4'hf;\n")
    assert icarus_fixes(src) == ("  initial \\d$1 [128] = 1'h0;\n  always @*\n    beat[131] = beat_last;\n"
                                 "  initial x[3:0] = 4'hf;\n")
    # yosys' time-0 trigger of every always @* block is toggled once (Icarus 11 gives its
    # declaration no event)
    trig = "  reg \\$auto$verilog_backend.cc:2355:dump_module$7  = 0;\n"
    assert icarus_fixes(trig) == trig + "  initial #0 \\$auto$verilog_backend.cc:2355:dump_module$7  = 1'h1;\n"


def test_top_ports_and_public_config():
    """The fast profile's control file names exactly the top's ports (ANSI or not), not its
    internal wires nor another module's ports; a missing module is an error."""
    src = ("module sub(a, y);\n  input [3:0] a;\n  output y;\nendmodule\n"
           "module top(input wire clk, input wire [7:0] \\d.x , output reg [1:0] q,\n"
           "  output wire irq);\n  wire [3:0] inner;\n  sub s (.a(inner), .y(irq));\nendmodule\n")
    assert top_ports(src, "top") == ["clk", "\\d.x", "q", "irq"]
    assert top_ports(src, "sub") == ["a", "y"]
    cfg = public_top_config(src, "top")
    assert cfg.startswith("`verilator_config\n") and 'public_flat_rw -module "top" -var "irq"' in cfg
    assert "inner" not in cfg and cfg.count("public_flat_rw") == 4
    with pytest.raises(ValueError, match="nope"):
        top_ports(src, "nope")


def test_quick_bench_shares_the_builds():
    """``heatvit bench fastsim --quick`` runs on this suite's ``8x4-w128`` shell config, DDR size
    and tag, so its two Verilator builds (the fast-sim top here, the shell top of test_shell.py)
    are the tests' when they run in one environment (`.ci/run` runs the benches in the tests
    session's virtualenv)."""
    from heatvit.bench import fastsim
    assert fastsim.quick_config() == SHELL_CONFIGS[fastsim.QUICK_TAG]
    assert fastsim.QUICK_DDR_BYTES == DDR_BYTES
    assert ("8x4-w128", "verilator") in RUNS
