"""Simulation top for fast whole-system runs: the shell's thin top plus the HDL DDR model.

``heatvit_fastsim`` wires ``heatvit_top``'s AXI4 master to :file:`axi_ddr.v` (module
``heatvit_axi_ddr``), so a job runs entirely inside the simulator: the host (Python, through
:mod:`heatvit.driver.fastsim`) only touches the AXI4-Lite registers, the ``irq`` line and the
DDR model's load/dump pins between jobs.  Simulation only; nothing under ``rtl/`` imports it.

Ports: ``aclk``, ``aresetn`` (registered once inside: the design leaves reset one cycle after
it rises), ``irq``, ``s_axi_*`` (as on ``heatvit_top``), and the DDR model's
``ddr_load``, ``ddr_dump``, ``ddr_dump_lo``, ``ddr_dump_hi``, ``ddr_written``, ``ddr_wr_lo``,
``ddr_wr_hi`` (see the model's header).
"""

from __future__ import annotations

from importlib import resources

from heatvit.config import AcceleratorConfig
from heatvit.shell_config import ShellConfig

TOP_NAME = "heatvit_fastsim"
DDR_MODULE = "heatvit_axi_ddr"
LOAD_FILE = "ddr_load.hex"
DUMP_FILE = "ddr_dump.hex"
DEFAULT_DDR_BYTES = 1 << 24
DDR_PINS = [("ddr_load", "input", 1), ("ddr_dump", "input", 1), ("ddr_dump_lo", "input", 32),
            ("ddr_dump_hi", "input", 32), ("ddr_written", "output", 1), ("ddr_wr_lo", "output", 32),
            ("ddr_wr_hi", "output", 32)]


def ddr_model_source() -> str:
    """The Verilog text of the DDR model."""
    return resources.files("heatvit.sim").joinpath("axi_ddr.v").read_text()


def ddr_depth_log2(shell: ShellConfig, ddr_bytes: int) -> int:
    """log2 of the model's beats for ``ddr_bytes`` of memory from ``window_base`` up."""
    if not isinstance(ddr_bytes, int) or isinstance(ddr_bytes, bool) or ddr_bytes < 4096:
        raise ValueError(f"ddr_bytes must be an int >= 4096, not {ddr_bytes!r}")
    if ddr_bytes & (ddr_bytes - 1):
        raise ValueError(f"ddr_bytes must be a power of two, not {ddr_bytes!r}")
    if ddr_bytes > shell.window_size:
        raise ValueError(f"ddr_bytes ({ddr_bytes:#x}) must not exceed the DMA window "
                         f"({shell.window_size:#x})")
    if ddr_bytes // shell.data_bytes > 1 << 32:
        raise ValueError(f"ddr_bytes ({ddr_bytes:#x}) must be at most 2**32 beats")
    return (ddr_bytes // shell.data_bytes).bit_length() - 1


def fast_top(component, shell: ShellConfig, ddr_bytes: int, *, top_name: str = TOP_NAME,
             thin_name: str | None = None) -> str:
    """Verilog of ``heatvit_fastsim`` (or ``top_name``) around the thin top of ``component``
    (the shell; ``thin_name``: another thin top's module name)."""
    from heatvit.rtl.shell.wrapper import TOP_NAME as THIN, top_ports
    THIN = thin_name or THIN
    depth_log2 = ddr_depth_log2(shell, ddr_bytes)
    ports = top_ports(component)
    decl = ["  input wire aclk", "  input wire aresetn"]
    wires = []
    for top, direction, width, _ in ports:
        rng = f"[{width - 1}:0] " if width > 1 else ""
        if top.startswith("m_axi_"):
            wires.append(f"  wire {rng}{top};")
        else:
            decl.append(f"  {direction} wire {rng}{top}")
    for name, direction, width in DDR_PINS:
        rng = f"[{width - 1}:0] " if width > 1 else ""
        decl.append(f"  {direction} wire {rng}{name}")
    conns = ["    .aclk(aclk)", "    .aresetn(aresetn_q)"] + [f"    .{top}({top})" for top, _, _, _ in ports]
    axi = [top for top, _, _, _ in ports if top.startswith("m_axi_")]
    ddr_conns = ["    .clk(aclk)", "    .rst(~aresetn_q)",
                 *(f"    .{name[4:]}({name})" for name, _, _ in DDR_PINS)]
    model_ports = {"awid", "awaddr", "awlen", "awsize", "awburst", "awvalid", "awready", "wdata",
                   "wstrb", "wlast", "wvalid", "wready", "bid", "bresp", "bvalid", "bready", "arid",
                   "araddr", "arlen", "arsize", "arburst", "arvalid", "arready", "rid", "rdata",
                   "rresp", "rlast", "rvalid", "rready"}
    ddr_conns += [f"    .{top[6:]}({top})" for top in axi if top[6:] in model_ports]
    # The weight ports (``m_axi_w_<p>_*``, AcceleratorConfig.weight_beats_per_cycle > 1) read the
    # MODEL region only, which no job writes: each gets a copy of the DDR model loaded from the
    # same file at the same ``ddr_load`` pulse (so it holds every byte the host wrote).
    copies = []
    for p in range(4):                  # AcceleratorConfig.weight_beats_per_cycle <= 4
        pre = f"m_axi_w_{p}_"
        names = [top for top in axi if top.startswith(pre) and top[len(pre):] in model_ports]
        if not names:
            continue
        w_conns = ["    .clk(aclk)", "    .rst(~aresetn_q)", "    .load(ddr_load)", "    .dump(1'b0)",
                 "    .dump_lo(32'd0)", "    .dump_hi(32'd0)", "    .written()", "    .wr_lo()", "    .wr_hi()",
                 *(f"    .{top[len(pre):]}({top})" for top in names)]
        copies += [f"  {DDR_MODULE} #(.DATA_W({shell.data_width}), .ADDR_W({shell.addr_width}), "
                   f".ID_W({shell.id_width}), .BASE(64'h{shell.window_base:x}), .DEPTH_LOG2({depth_log2}), "
                   f'.LOAD_FILE("{LOAD_FILE}"), .DUMP_FILE("{DUMP_FILE}")) ddr_w{p} (',
                   ",\n".join(w_conns), "  );"]
    lines = [
        "// Generated by heatvit.sim.fast_top (simulation only): the shell and an HDL DDR model.",
        f"module {top_name} (", ",\n".join(decl), ");",
        *wires,
        "  // The reset input, registered: logic fed combinationally by a top-level input is",
        "  // re-evaluated by Verilator at every clock edge, and the reset reaches nearly every",
        "  // register's next-state logic.",
        "  reg aresetn_q = 1'b0;",
        "  always @(posedge aclk) aresetn_q <= aresetn;",
        f"  {THIN} shell (", ",\n".join(conns), "  );",
        f"  {DDR_MODULE} #(.DATA_W({shell.data_width}), .ADDR_W({shell.addr_width}), "
        f".ID_W({shell.id_width}), .BASE(64'h{shell.window_base:x}), .DEPTH_LOG2({depth_log2}), "
        f'.LOAD_FILE("{LOAD_FILE}"), .DUMP_FILE("{DUMP_FILE}")) ddr (',
        ",\n".join(ddr_conns), "  );",
        *copies,
        "endmodule", "",
    ]
    return "\n".join(lines)


def export_fast(acc: AcceleratorConfig, ddr_bytes: int = DEFAULT_DDR_BYTES) -> str:
    """All Verilog of the fast simulation top: shell core, thin top, DDR model, ``heatvit_fastsim``.
    The core's all-zero memory initialisers are written as loops (:func:`compact_zero_inits`)."""
    from heatvit.rtl.shell.wrapper import CORE_NAME, build_shell, thin_top
    from heatvit.sim.runner import compact_zero_inits, export_verilog
    component = build_shell(acc)
    core = compact_zero_inits(export_verilog(component, CORE_NAME))
    return "\n".join([core, thin_top(component), ddr_model_source(), fast_top(component, acc.shell, ddr_bytes)])
