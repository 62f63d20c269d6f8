"""The generated Vivado project, checked without Vivado.

``build.tcl`` runs under ``tclsh`` with every Vivado command stubbed (Tcl's ``unknown`` records
each call and returns a plausible value), so the script must parse and run to its end; the
recorded calls are checked for the part, the IP, the PS settings, the address map (every AXI
master, weight masters included, on its own HP port), and pins that exist on the thin Verilog
top of the whole accelerator.  The thin top and the core also pass a Verilator lint.
"""

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from heatvit.config import AcceleratorConfig
from heatvit.platform.vivado import (ACCEL_CELL, BD_NAME, HP_ORDER, MAX_WEIGHT_PORTS, PS_CELL, masters,
                                     write_project)
from heatvit.platform.zcu102 import BOARD_PART, LED_PINS, PART, ZCU102Platform
from heatvit.presets import PRESETS, load_config
from heatvit.shell_config import ShellConfig

STUB = r"""
set ::stub_log [open $::env(STUB_LOG) w]
proc unknown {args} {
    puts $::stub_log [join $args "\x1f"]
    flush $::stub_log
    set cmd [lindex $args 0]
    switch -- $cmd {
        get_board_parts { return $::env(STUB_BOARD) }
        get_ipdefs {
            regexp {xilinx.com:ip:[a-z_]+} [join $args] vl
            return [list $vl:1.0 $vl:3.5 $vl:3.10]
        }
        get_property {
            switch -- [lindex $args 1] {
                board_part { return $::env(STUB_BOARD) }
                DIRECTORY { return $::env(STUB_DIR) }
                PROGRESS { return "100%" }
                SLACK { return 0.25 }
                default { return "" }
            }
        }
        make_wrapper { return [file join $::env(STUB_DIR) heatvit_bd_wrapper.v] }
        default { return [lindex $args end] }
    }
}
source [lindex $argv 0]
"""

# The small array keeps the Verilog export quick; the shells differ in what the script uses.
# "small-w2": two weight masters (weight_beats_per_cycle = 2, as the zcu102 preset; 2 beats of
# 4 bytes fit the 8-column array's weight word).
CONFIGS = {"small-64": dataclasses.replace(PRESETS["small"], shell=ShellConfig(data_width=64)),
           "small-128-250MHz": AcceleratorConfig(gemm=PRESETS["small"].gemm, clock_mhz=250.0),
           "small-w2": dataclasses.replace(PRESETS["small"].with_array(4, 8), shell=ShellConfig(data_width=32),
                                           weight_beats_per_cycle=2)}


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    """Each configuration's project, written once (the Verilog export is the slow part)."""
    root = tmp_path_factory.mktemp("vivado")
    return {name: (root / name, write_project(root / name, acc)) for name, acc in CONFIGS.items()}


def copy_project(projects, name, tmp: Path) -> Path:
    src, _ = projects[name]
    shutil.copytree(src, tmp / "project")
    return tmp / "project"


def run_stubbed(project: Path, tmp: Path, board: str) -> list[list[str]]:
    stub_dir = tmp / "vivado_dirs"
    (stub_dir / "heatvit_zcu102.gen/sources_1/bd" / BD_NAME / "hw_handoff").mkdir(parents=True)
    (stub_dir / "heatvit_bd_wrapper.bit").write_bytes(b"bit")
    (stub_dir / "heatvit_zcu102.gen/sources_1/bd" / BD_NAME / "hw_handoff" / f"{BD_NAME}.hwh").write_text("<hwh/>")
    (tmp / "stub.tcl").write_text(STUB)
    log = tmp / "calls.log"
    env = {"STUB_LOG": str(log), "STUB_DIR": str(stub_dir), "STUB_BOARD": board, "PATH": "/usr/bin:/bin"}
    res = subprocess.run(["tclsh", str(tmp / "stub.tcl"), str(project / "build.tcl")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"build.tcl failed under tclsh:\n{res.stdout}\n{res.stderr}"
    return [line.split("\x1f") for line in log.read_text().splitlines()]


def calls_named(calls, name):
    return [c for c in calls if c[0] == name]


def top_ports(project: Path) -> set[str]:
    text = (project / "rtl/heatvit_top.v").read_text()
    return set(re.findall(r"^\s*(?:input|output) wire (?:\[\d+:0\] )?(\w+)", text, re.M))


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed (apt-get install tcl)")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_build_tcl_stubbed(name, projects, tmp_path):
    acc = CONFIGS[name]
    shell = acc.shell
    src, files = projects[name]
    project = copy_project(projects, name, tmp_path)
    assert sorted(str(f.relative_to(src)) for f in files) == sorted(
        ["rtl/heatvit_accel.v", "rtl/heatvit_top.v", "constraints/heatvit.xdc", "build.tcl",
         "heatvit_config.json", "README.md"])
    # One config file: the whole AcceleratorConfig, shell section included.
    assert load_config(src / "heatvit_config.json") == acc
    assert json.loads((src / "heatvit_config.json").read_text())["shell"] == shell.to_dict()
    calls = run_stubbed(project, tmp_path, BOARD_PART)
    flat = [" ".join(c) for c in calls]

    (cp,) = calls_named(calls, "create_project")
    assert "-part" in cp and cp[cp.index("-part") + 1] == PART == "xczu9eg-ffvb1156-2-e"
    assert any(c[:2] == ["set_property", "board_part"] and c[2] == BOARD_PART for c in calls)
    cells = {c[-1]: c for c in calls_named(calls, "create_bd_cell")}
    # The newest of the (stubbed) installed versions 1.0, 3.5, 3.10.
    assert cells[PS_CELL][cells[PS_CELL].index("-vlnv") + 1] == "xilinx.com:ip:zynq_ultra_ps_e:3.10"
    assert {c[c.index("-vlnv") + 1].rsplit(":", 1)[0] for c in cells.values() if "-vlnv" in c} == {
        "xilinx.com:ip:zynq_ultra_ps_e", "xilinx.com:ip:proc_sys_reset", "xilinx.com:ip:smartconnect"}
    assert cells[ACCEL_CELL][1:5] == ["-type", "module", "-reference", "heatvit_top"]
    assert any("apply_board_preset" in f for f in flat if f.startswith("apply_bd_automation"))
    ps_props = next(c for c in calls_named(calls, "set_property") if c[1] == "-dict" and c[-1] == PS_CELL)
    props = ps_props[2]
    for key, value in {"PSU__USE__S_AXI_GP2": "1", "PSU__USE__M_AXI_GP0": "1",
                       "PSU__SAXIGP2__DATA_WIDTH": str(shell.data_width),
                       "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": f"{acc.clock_mhz:g}"}.items():
        assert re.search(rf"CONFIG\.{key} \{{?{value}\}}?(\s|$)", props), (key, props)

    # Every accelerator pin the script touches exists on the thin top.
    ports = top_ports(project)
    for c in calls_named(calls, "get_bd_pins") + calls_named(calls, "get_bd_intf_pins"):
        cell, _, pin = c[-1].partition("/")
        if cell == ACCEL_CELL:
            if c[0] == "get_bd_intf_pins":
                assert any(p.startswith(pin + "_") for p in ports), f"no {pin}_* ports for {c}"
            else:
                assert pin in ports, f"{pin} is not a port of heatvit_top"
    for pin in ("aclk", "aresetn", "irq", "s_axi_awaddr", "s_axi_rdata", "m_axi_awaddr", "m_axi_wstrb",
                "m_axi_arlen", "m_axi_rlast"):
        assert pin in ports
    # The weight masters: Vivado-inferable AXI4 names, one set per beat a cycle, and none more.
    p = acc.weight_beats_per_cycle
    weights = [f"m_axi_w{i}" for i in range(p)] if p > 1 else []
    assert {q.rpartition("_")[0] for q in ports if q.startswith("m_axi_w") and not q.startswith("m_axi_w_")
            and q.rpartition("_")[0] != "m_axi"} == set(weights)
    for w in weights:
        for sig in ("araddr", "arlen", "arsize", "arburst", "arvalid", "arready", "rdata", "rresp",
                    "rlast", "rvalid", "rready", "awvalid", "wvalid", "bready"):
            assert f"{w}_{sig}" in ports, f"{w}_{sig}"
    top = (project / "rtl/heatvit_top.v").read_text()
    busif = re.search(r"ASSOCIATED_BUSIF ([\w:]+)", top).group(1).split(":")
    assert sorted(busif) == sorted(["s_axi", "m_axi", *weights])
    # The interfaces go where the issue says.
    intf = [" ".join(c) for c in calls_named(calls, "connect_bd_intf_net")]
    assert any(f"{PS_CELL}/M_AXI_HPM0_FPD" in f for f in intf)
    assert any(f"{ACCEL_CELL}/s_axi" in f for f in intf)
    # Every AXI4 master -> its SmartConnect -> its own HP port, clocked; DDR mapped through it.
    segs = [c for c in calls_named(calls, "get_bd_addr_segs") if "-of_objects" not in c]
    spaces = [c[-1] for c in calls_named(calls, "get_bd_addr_spaces")]
    assert HP_ORDER == (0, 3, 1, 2)   # DMA on HP0; weights on HP3 first (HP1 and HP2 share a DDR port)
    for k, master in enumerate(["m_axi", *weights]):
        smc, n = "smc_dma" if k == 0 else f"smc_w{k - 1}", HP_ORDER[k]
        assert f"connect_bd_intf_net {ACCEL_CELL}/{master} {smc}/S00_AXI" in intf, (master, intf)
        assert f"connect_bd_intf_net {smc}/M00_AXI {PS_CELL}/S_AXI_HP{n}_FPD" in intf, (master, intf)
        assert re.search(rf"CONFIG\.PSU__USE__S_AXI_GP{n + 2} \{{?1\}}?(\s|$)", props)
        assert re.search(rf"CONFIG\.PSU__SAXIGP{n + 2}__DATA_WIDTH \{{?{shell.data_width}\}}?(\s|$)", props)
        assert any(f"{PS_CELL}/saxihp{n}_fpd_aclk" in f and "pl_clk0" in f for f in flat if f.startswith("connect_bd_net"))
        assert any(c[-1] == f"{smc}/aresetn" for c in calls_named(calls, "get_bd_pins"))
        assert f"{ACCEL_CELL}/{master}" in spaces
        assert ["get_bd_addr_segs", f"{PS_CELL}/SAXIGP{n + 2}/HP{n}_DDR_LOW"] in segs
    for n in HP_ORDER[len(weights) + 1:]:         # the HP ports nothing uses stay off
        assert re.search(rf"CONFIG\.PSU__USE__S_AXI_GP{n + 2} \{{?0\}}?(\s|$)", props)
        assert not any(f"S_AXI_HP{n}_FPD" in f or f"saxihp{n}_" in f for f in flat)
    assert len(segs) == len(weights) + 1 and len(spaces) == len(weights) + 2   # + the PS's Data
    reg = next(c for c in calls_named(calls, "assign_bd_address") if f"{ACCEL_CELL}/s_axi" in c)
    assert int(reg[reg.index("-offset") + 1], 16) == shell.reg_base == 0xA000_0000
    assert any(c[:2] == ["launch_runs", "impl_1"] and "write_bitstream" in c for c in calls)
    assert any(c[0] == "write_hw_platform" and "-include_bit" in c for c in calls)
    assert calls_named(calls, "make_wrapper") and calls_named(calls, "validate_bd_design")
    for out in ("heatvit.bit", "heatvit.hwh", "heatvit_config.json"):
        assert (project / "output" / out).exists(), out
    xdc = (project / "constraints/heatvit.xdc").read_text()
    assert f"PACKAGE_PIN {LED_PINS[0]}" in xdc and "LVCMOS33" in xdc


@pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not installed")
def test_build_tcl_without_board_files(projects, tmp_path):
    calls = run_stubbed(copy_project(projects, "small-64", tmp_path), tmp_path, "")
    assert not any(c[0] == "apply_bd_automation" for c in calls)
    assert calls_named(calls, "create_bd_design")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_written_tops_lint(name, projects):
    """Verilator -Wall, with only heatvit.cli.ACCEL_LINT_WAIVERS, on every top module the project
    holds (the core Vivado synthesizes and the thin top it packages), and every Verilog file
    written belongs to a linted top."""
    from heatvit.cli import ACCEL_LINT_WAIVERS, lint
    from heatvit.platform.vivado import VERILOG_TOPS
    from heatvit.sim.runner import setup_verilator
    if not setup_verilator():
        pytest.skip("verilator not installed")
    src, files = projects[name]
    written = {str(f.relative_to(src)) for f in files if f.suffix == ".v"}
    assert written == {r for rel in VERILOG_TOPS.values() for r in rel}
    for top, rel in VERILOG_TOPS.items():
        lint([src / r for r in rel], top, ACCEL_LINT_WAIVERS)


def test_export_lints(tmp_path, capsys):
    """``heatvit export`` lints what it writes."""
    from heatvit.cli import main
    from heatvit.sim.runner import setup_verilator
    if not setup_verilator():
        pytest.skip("verilator not installed")
    assert main(["export", "--config", "small", "--out", str(tmp_path)]) == 0
    assert "lint-only -Wall: clean" in capsys.readouterr().out
    assert {p.name for p in tmp_path.glob("*.v")} == {"gemm_engine.v"}


def test_weight_masters_beyond_free_hp_ports(tmp_path):
    """Four weight masters (and the DMA) need five HP ports: a clear error, before any export."""
    acc = dataclasses.replace(PRESETS["small"].with_array(4, 16), shell=ShellConfig(data_width=32),
                              weight_beats_per_cycle=4)
    assert MAX_WEIGHT_PORTS == 3
    with pytest.raises(ValueError, match=r"weight_beats_per_cycle = 4: 4 weight masters need 4 AXI HP "
                                         r"ports but the ZCU102 PS has 3 free"):
        write_project(tmp_path / "p", acc)
    assert not (tmp_path / "p").exists()
    # The zcu102 preset's two weight masters fit: HP3 and HP1.
    assert PRESETS["zcu102"].weight_beats_per_cycle == 2
    assert [(i, hp["intf"]) for i, _, hp in masters(PRESETS["zcu102"])] == [
        ("m_axi", "S_AXI_HP0_FPD"), ("m_axi_w0", "S_AXI_HP3_FPD"), ("m_axi_w1", "S_AXI_HP1_FPD")]


def test_zcu102_platform_plan():
    from amaranth.hdl import Elaboratable, Module, Signal
    from amaranth.lib import io

    class Blinky(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            ctr = Signal(27)
            m.d.sync += ctr.eq(ctr + 1)
            for i in range(8):
                m.submodules[f"led{i}"] = led = io.Buffer("o", platform.request("led", i, dir="-"))
                m.d.comb += led.o.eq(ctr[-1 - (i % 3)])
            return m

    plan = ZCU102Platform().build(Blinky(), name="blinky", do_build=False)
    tcl, xdc = plan.files["blinky.tcl"], plan.files["blinky.xdc"]
    assert f"-part {PART}" in tcl
    for i, pin in enumerate(LED_PINS):
        assert f"set_property LOC {pin} [get_ports \"led_{i}__io\"]" in xdc
    assert "set_property LOC G21" in xdc and "LVDS_25" in xdc and "-period 8.0" in xdc
    assert "set_property LOC AM13" in xdc   # CPU_RESET


def test_vivado_project_main(tmp_path, capsys):
    from heatvit.vivado_project import main
    assert main(["--config", "small", "--out", str(tmp_path / "v"), "--data-width", "64"]) == 0
    out = capsys.readouterr().out
    assert "-Wall heatvit_accel: clean" in out and "-Wall heatvit_top: clean" in out
    assert (tmp_path / "v/build.tcl").exists()
    written = load_config(tmp_path / "v/heatvit_config.json")
    assert written.shell.data_width == 64 and written.gemm == PRESETS["small"].gemm
    with pytest.raises(SystemExit):
        main(["--config", "small", "--out", str(tmp_path / "w"), "--data-width", "48"])
    assert "data_width = 48" in capsys.readouterr().err
