"""The Vivado project for the ZCU102: exported Verilog, constraints and a block-design script.

:func:`write_project` writes a directory that a user copies to a machine with Vivado and builds
with one command::

    vivado -mode batch -source build.tcl

The script creates a project for ``xczu9eg-ffvb1156-2-e`` (the ZCU102 board part when Vivado has
its board files), a block design with the Zynq UltraScale+ PS (board preset), ``pl_clk0`` at the
configured frequency, and the whole accelerator (``rtl/accel/top.py``, the ``heatvit_accel``
core in its thin top ``heatvit_top``) as a module reference: its AXI4 master ``m_axi`` through a
SmartConnect into ``S_AXI_HP0_FPD``; with ``acc.weight_beats_per_cycle = P > 1`` each read-only
weight master ``m_axi_w<p>`` through its own SmartConnect into the next free HP port
(``S_AXI_HP3_FPD``, ``HP1``, ``HP2``: :data:`HP_ORDER`, at most :data:`MAX_WEIGHT_PORTS`), every
master mapping the PS DDR
(``HP<n>_DDR_LOW``); its AXI4-Lite registers from ``M_AXI_HPM0_FPD`` at ``acc.shell.reg_base``
(0xA000_0000), its interrupt on ``pl_ps_irq0`` and on LED 0; then synthesis, implementation,
the bitstream, and ``heatvit.bit`` / ``heatvit.hwh`` / ``heatvit.xsa`` copied to ``output/``
beside ``heatvit_config.json`` (the whole :class:`AcceleratorConfig`, shell section included:
what the driver reads back).
"""

from __future__ import annotations

import json
from pathlib import Path

from heatvit.config import AcceleratorConfig

from .zcu102 import BOARD_PART, PART, pin_constraints

BD_NAME = "heatvit_bd"
ACCEL_CELL = "accel"
PS_CELL = "zynq_ultra_ps_e_0"
PS_VLNV = "xilinx.com:ip:zynq_ultra_ps_e"
SMC_VLNV = "xilinx.com:ip:smartconnect"
RST_VLNV = "xilinx.com:ip:proc_sys_reset"
LED_PORT = "led_done"
VERILOG_TOPS = {"heatvit_accel": ["rtl/heatvit_accel.v"],
                "heatvit_top": ["rtl/heatvit_accel.v", "rtl/heatvit_top.v"]}
"""Every top module the project's Verilog holds, with the files (relative to the project) it
needs; ``heatvit vivado`` lints each (``heatvit.cli.lint``)."""


HP_PORTS = 4
"""The PS's full-power-domain HP slave ports ``S_AXI_HP0_FPD`` .. ``S_AXI_HP3_FPD`` (PS
configuration names ``S_AXI_GP2`` .. ``S_AXI_GP5``)."""
HP_ORDER = (0, 3, 1, 2)
"""The HP ports in the order the masters take them: the DMA on HP0, weight masters on HP3, then
HP1, then HP2 (UG1085's DDR port map: HP0 on DDR port 3, HP1 and HP2 share port 4, HP3 on
port 5; so two weight masters and the DMA use three DDR controller ports)."""
MAX_WEIGHT_PORTS = HP_PORTS - 1
"""HP0 carries the DMA; a weight master each on HP3, HP1, HP2."""


def hp_port(n: int) -> dict[str, str]:
    """The names of HP port ``n`` (0 .. 3): block-design interface, clock pin, PS configuration
    index (``PSU__USE__S_AXI_GP<gp>``) and its DDR address segment."""
    if not 0 <= n < HP_PORTS:
        raise ValueError(f"HP port must be 0 .. {HP_PORTS - 1}, not {n!r}")
    gp = n + 2
    return {"intf": f"S_AXI_HP{n}_FPD", "aclk": f"saxihp{n}_fpd_aclk", "gp": str(gp),
            "ddr": f"SAXIGP{gp}/HP{n}_DDR_LOW"}


def masters(acc: AcceleratorConfig) -> list[tuple[str, str, dict[str, str]]]:
    """``(accelerator interface, SmartConnect cell, HP port names)`` of every AXI4 master: the
    DMA's ``m_axi`` on HP0, then ``m_axi_w0`` .. on HP3, HP1, HP2 (:data:`HP_ORDER`;
    ``weight_beats_per_cycle > 1``).
    ``ValueError`` if the weight masters outnumber the free HP ports."""
    from heatvit.rtl.shell.wrapper import WEIGHT_ARRAY_SEP
    p = acc.weight_beats_per_cycle
    weights = p if p > 1 else 0
    if weights > MAX_WEIGHT_PORTS:
        raise ValueError(f"AcceleratorConfig.weight_beats_per_cycle = {p}: {p} weight masters need {p} "
                         f"AXI HP ports but the ZCU102 PS has {MAX_WEIGHT_PORTS} free (S_AXI_HP1_FPD .. "
                         f"S_AXI_HP3_FPD; S_AXI_HP0_FPD carries the DMA): allowed at most {MAX_WEIGHT_PORTS}")
    out = [("m_axi", "smc_dma", hp_port(0))]
    for i in range(weights):
        out.append((f"m_axi_w{WEIGHT_ARRAY_SEP}{i}", f"smc_w{i}", hp_port(HP_ORDER[i + 1])))
    return out


def ps_config(acc: AcceleratorConfig) -> dict[str, str]:
    """CONFIG.* properties of the PS cell (applied after the board preset)."""
    shell = acc.shell
    used = {hp["gp"] for _, _, hp in masters(acc)}
    cfg = {
        "PSU__USE__M_AXI_GP0": "1",            # M_AXI_HPM0_FPD: registers
        "PSU__MAXIGP0__DATA_WIDTH": "32",
        "PSU__USE__M_AXI_GP1": "0",
        "PSU__USE__M_AXI_GP2": "0",
    }
    for n in range(HP_PORTS):                  # S_AXI_HP0_FPD: DMA; HP1 ..: weight masters
        gp = hp_port(n)["gp"]
        cfg[f"PSU__USE__S_AXI_GP{gp}"] = "1" if gp in used else "0"
        if gp in used:
            cfg[f"PSU__SAXIGP{gp}__DATA_WIDTH"] = str(shell.data_width)
    cfg.update({
        "PSU__FPGA_PL0_ENABLE": "1",
        "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ": f"{acc.clock_mhz:g}",
        "PSU__USE__IRQ0": "1",
    })
    return cfg


def xdc() -> str:
    (pin, std), = pin_constraints("led", 0)
    return "\n".join([
        "# Generated by heatvit.platform.vivado.  The accelerator's only board pin: LED 0 shows",
        "# STATUS.done (GPIO_LED_0).  Clocks come from the PS (pl_clk0), constrained by its IP.",
        f"set_property PACKAGE_PIN {pin} [get_ports {LED_PORT}]",
        f"set_property IOSTANDARD {std} [get_ports {LED_PORT}]",
        "set_false_path -to [get_ports " + LED_PORT + "]",
        "set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]",
        "",
    ])


def build_tcl(acc: AcceleratorConfig, *, jobs: int = 8) -> str:
    shell = acc.shell
    props = " ".join(f"CONFIG.{k} {{{v}}}" for k, v in ps_config(acc).items())
    ps, ac = PS_CELL, ACCEL_CELL
    reg_range = "4K"
    ms = masters(acc)
    smc_cells = "\n".join(f"create_bd_cell -type ip -vlnv [heatvit_ipdef {SMC_VLNV}] {smc}" for _, smc, _ in ms)
    smc_props = "\n".join(f"set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] [get_bd_cells {smc}]"
                           for _, smc, _ in ms)
    clk_pins = " ".join(f"[get_bd_pins {smc}/aclk]" for _, smc, _ in ms)
    hp_clks = " ".join(f"[get_bd_pins {ps}/{hp['aclk']}]" for _, _, hp in ms)
    smc_resets = " ".join(f"[get_bd_pins {smc}/aresetn]" for _, smc, _ in ms)
    links = "\n".join(
        f"connect_bd_intf_net [get_bd_intf_pins {ac}/{intf}] [get_bd_intf_pins {smc}/S00_AXI]\n"
        f"connect_bd_intf_net [get_bd_intf_pins {smc}/M00_AXI] [get_bd_intf_pins {ps}/{hp['intf']}]"
        for intf, smc, hp in ms)
    segs = "\n".join(
        f"assign_bd_address -target_address_space [get_bd_addr_spaces {ac}/{intf}] \\\n"
        f"    [get_bd_addr_segs {ps}/{hp['ddr']}]" for intf, _, hp in ms)
    return f"""\
# Generated by heatvit.platform.vivado for AcceleratorConfig {acc.digest()}.
# Build: vivado -mode batch -source build.tcl      (Vivado 2022.1 or later)
set here [file normalize [file dirname [info script]]]
set proj heatvit_zcu102
set outdir [file join $here output]
file mkdir $outdir

create_project -force $proj [file join $here project] -part {PART}
if {{[llength [get_board_parts -quiet {BOARD_PART}]] > 0}} {{
    set_property board_part {BOARD_PART} [current_project]
}} else {{
    puts "WARNING: board files for {BOARD_PART} not installed; PS preset from the part only"
}}
add_files -norecurse [list [file join $here rtl heatvit_accel.v] [file join $here rtl heatvit_top.v]]
add_files -fileset constrs_1 -norecurse [file join $here constraints heatvit.xdc]
update_compile_order -fileset sources_1

# -- block design -----------------------------------------------------------------------------
# The newest installed version of an IP (the script does not pin one Vivado release).
proc heatvit_ipdef {{vl}} {{
    set defs [get_ipdefs -all -filter "VLNV =~ $vl:*"]
    if {{[llength $defs] == 0}} {{ error "IP $vl is not available in this Vivado" }}
    return [lindex [lsort -dictionary $defs] end]
}}
create_bd_design {BD_NAME}
create_bd_cell -type ip -vlnv [heatvit_ipdef {PS_VLNV}] {ps}
if {{[get_property board_part [current_project]] ne ""}} {{
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {{apply_board_preset "1"}} [get_bd_cells {ps}]
}}
set_property -dict [list {props}] [get_bd_cells {ps}]

create_bd_cell -type module -reference heatvit_top {ac}
create_bd_cell -type ip -vlnv [heatvit_ipdef {RST_VLNV}] rst_pl0
create_bd_cell -type ip -vlnv [heatvit_ipdef {SMC_VLNV}] smc_regs
{smc_cells}
set_property -dict [list CONFIG.NUM_SI {{1}} CONFIG.NUM_MI {{1}}] [get_bd_cells smc_regs]
{smc_props}

# Clock and reset: everything on pl_clk0.
connect_bd_net [get_bd_pins {ps}/pl_clk0] [get_bd_pins {ac}/aclk] [get_bd_pins rst_pl0/slowest_sync_clk] \\
    [get_bd_pins smc_regs/aclk] {clk_pins} \\
    [get_bd_pins {ps}/maxihpm0_fpd_aclk] {hp_clks}
connect_bd_net [get_bd_pins {ps}/pl_resetn0] [get_bd_pins rst_pl0/ext_reset_in]
connect_bd_net [get_bd_pins rst_pl0/peripheral_aresetn] [get_bd_pins {ac}/aresetn]
connect_bd_net [get_bd_pins rst_pl0/interconnect_aresetn] [get_bd_pins smc_regs/aresetn] {smc_resets}

# Registers: HPM0 -> SmartConnect (AXI4 -> AXI4-Lite) -> accel/s_axi.
connect_bd_intf_net [get_bd_intf_pins {ps}/M_AXI_HPM0_FPD] [get_bd_intf_pins smc_regs/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smc_regs/M00_AXI] [get_bd_intf_pins {ac}/s_axi]
# DMA: accel/m_axi -> SmartConnect -> HP0; weight masters accel/m_axi_w<p> -> SmartConnect ->
# HP3, HP1, HP2 (their own DDR controller ports first).
{links}

# Interrupt (level, STATUS.done) to the PS and to LED 0.
connect_bd_net [get_bd_pins {ac}/irq] [get_bd_pins {ps}/pl_ps_irq0]
create_bd_port -dir O {LED_PORT}
connect_bd_net [get_bd_pins {ac}/irq] [get_bd_ports {LED_PORT}]

# -- address map ------------------------------------------------------------------------------
assign_bd_address -target_address_space [get_bd_addr_spaces {ps}/Data] \\
    [get_bd_addr_segs -of_objects [get_bd_intf_pins {ac}/s_axi]] -offset 0x{shell.reg_base:08X} -range {reg_range}
# Every master sees DDR through its HP port; the accelerator's window check
# ({shell.window_base:#x} + {shell.window_size:#x}) keeps it inside the low DDR segment.
{segs}
validate_bd_design
save_bd_design

# -- wrapper, implementation, bitstream, hardware handoff -------------------------------------
set bd_file [get_files {BD_NAME}.bd]
generate_target all $bd_file
set wrapper [make_wrapper -files $bd_file -top]
add_files -norecurse $wrapper
set_property top {BD_NAME}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs {jobs}
wait_on_run synth_1
launch_runs impl_1 -to_step write_bitstream -jobs {jobs}
wait_on_run impl_1
if {{[get_property PROGRESS [get_runs impl_1]] ne "100%"}} {{
    error "implementation failed: see [get_property DIRECTORY [get_runs impl_1]]"
}}
open_run impl_1
report_utilization -file [file join $outdir utilization.rpt]
report_timing_summary -file [file join $outdir timing.rpt]
if {{[get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]] < 0}} {{
    puts "WARNING: timing not met at {acc.clock_mhz:g} MHz; see output/timing.rpt"
}}
write_hw_platform -fixed -include_bit -force -file [file join $outdir heatvit.xsa]

set rundir [get_property DIRECTORY [get_runs impl_1]]
set bits [glob -nocomplain -directory $rundir *.bit]
if {{[llength $bits] != 1}} {{ error "expected one bitstream in $rundir, found: $bits" }}
file copy -force [lindex $bits 0] [file join $outdir heatvit.bit]
set hwh [glob -nocomplain -directory [file join [get_property DIRECTORY [current_project]] $proj.gen sources_1 bd {BD_NAME} hw_handoff] *.hwh]
if {{[llength $hwh] != 1}} {{ error "expected one .hwh, found: $hwh" }}
file copy -force [lindex $hwh 0] [file join $outdir heatvit.hwh]
file copy -force [file join $here heatvit_config.json] [file join $outdir heatvit_config.json]
puts "heatvit: done; copy output/heatvit.bit, heatvit.hwh and heatvit_config.json to the board"
"""


def readme(acc: AcceleratorConfig) -> str:
    shell = acc.shell
    hp_list = ", ".join(f"`{intf}` on {hp['intf']}" for intf, _, hp in masters(acc))
    return f"""\
# heatvit ZCU102 Vivado project (generated)

AcceleratorConfig `{acc.digest()}`: the whole accelerator, GEMM array {acc.gemm.rows} x
{acc.gemm.cols}, pl_clk0 {acc.clock_mhz:g} MHz, AXI4 masters ({shell.data_width} bits): {hp_list},
registers at {shell.reg_base:#x} on M_AXI_HPM0_FPD.

Build (Vivado 2022.1 or later; ZCU102 board files recommended):

    vivado -mode batch -source build.tcl

Results in `output/`: `heatvit.bit`, `heatvit.hwh`, `heatvit.xsa`, `heatvit_config.json`,
`utilization.rpt`, `timing.rpt`.  On the board (PYNQ image for the ZCU102), with the three
files in one directory and heatvit installed:

    from heatvit.driver.board import open_board
    drv = open_board("heatvit.bit")

Files: `rtl/heatvit_accel.v` (Amaranth export of the whole accelerator), `rtl/heatvit_top.v`
(thin top with Vivado port names), `constraints/heatvit.xdc`, `build.tcl`, `heatvit_config.json`.  Regenerate with
`heatvit vivado` (or `nox -s vivado`); do not edit.  See docs/accel.md and docs/shell.md in
the heatvit sources.
"""


def write_project(out_dir: Path, acc: AcceleratorConfig, *, jobs: int = 8) -> list[Path]:
    """Write the project directory; returns the files written (relative order as listed)."""
    from heatvit.rtl.shell.wrapper import export_accelerator
    out_dir = Path(out_dir)
    acc.shell.check_gemm(acc.gemm)
    masters(acc)                                 # the HP-port check, before the slow export
    core, top = export_accelerator(acc, primitives=True)
    files = {
        "rtl/heatvit_accel.v": core,
        "rtl/heatvit_top.v": top,
        "constraints/heatvit.xdc": xdc(),
        "build.tcl": build_tcl(acc, jobs=jobs),
        "heatvit_config.json": json.dumps(acc.to_dict(), indent=1) + "\n",
        "README.md": readme(acc),
    }
    written = []
    for rel, text in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
