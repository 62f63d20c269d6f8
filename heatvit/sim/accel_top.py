"""Fast whole-model simulation top: the whole accelerator (``rtl/accel/top.py``) with the HDL DDR
model (:file:`axi_ddr.v`), as :mod:`.fast_top` does for the GEMM shell.

``heatvit_accel_fastsim`` has the ports of ``heatvit_fastsim`` (``aclk``, ``aresetn``, ``irq``,
``s_axi_*``, the DDR model's ``ddr_*`` pins), so :class:`heatvit.driver.fastsim.FastSimBackend`
drives it unchanged: while a program runs no Python code runs per clock cycle.  Simulation only;
nothing under ``rtl/`` imports it.
"""

from __future__ import annotations

import contextlib
import re

from heatvit.config import AcceleratorConfig

from .fast_top import DEFAULT_DDR_BYTES, ddr_model_source, fast_top

TOP_NAME = "heatvit_accel_fastsim"
CORE_NAME = "heatvit_accel"
THIN_NAME = "heatvit_accel_top"


def export_fast(acc: AcceleratorConfig, ddr_bytes: int = DEFAULT_DDR_BYTES, *, executors=None,
                watchdog_cycles: int | None = None) -> str:
    """All Verilog of ``heatvit_accel_fastsim``: accelerator core, thin top, DDR model, top.
    The core's all-zero memory initialisers are written as loops (:func:`export_core`)."""
    from heatvit.rtl.accel.top import Accelerator
    from heatvit.rtl.shell.wrapper import thin_top
    component = Accelerator(acc, executors=executors, watchdog_cycles=watchdog_cycles)
    core = export_core(component, CORE_NAME)
    return "\n".join([core, thin_top(component, core_name=CORE_NAME, top_name=THIN_NAME), ddr_model_source(),
                      fast_top(component, acc.shell, ddr_bytes, top_name=TOP_NAME, thin_name=THIN_NAME)])


@contextlib.contextmanager
def _fast_convert(skip_comb_check: bool):
    """Amaranth's RTLIL back end without the initialiser cell of an all-zero memory and (with
    ``skip_comb_check``) without its combinational-loop check.

    ``ModuleEmitter.emit_memory`` writes a memory's initial contents as one ``$meminit_v2`` cell
    whose data it builds bit by bit in Python (a net object per bit, then a string per bit):
    about 10 s per Mbit, and the board configuration's memories hold ~25 Mbit (its Verilog
    export took more than 10 minutes, almost all of it there; Yosys then writes one line per
    word).  Every memory of the accelerator starts at zero, so the cell is left out for those
    and :func:`_zero_init_loops` puts the same contents back in the Verilog.

    ``Netlist.check_comb_cycles`` walks every combinational path from every net (recursively);
    at the board configuration it took 291 of the 800 s of the export (cProfile).  It only
    raises on a loop, it changes nothing in the text, and Verilator reports a loop too
    (``UNOPTFLAT``); the same design is checked at small configurations by every test that
    elaborates it."""
    from amaranth.back import rtlil
    from amaranth.hdl import _nir
    emit, check = rtlil.ModuleEmitter.emit_memory, _nir.Netlist.check_comb_cycles

    def emit_memory(self, cell_idx, cell):
        if any(cell.init):
            return emit(self, cell_idx, cell)
    rtlil.ModuleEmitter.emit_memory = emit_memory
    if skip_comb_check:
        _nir.Netlist.check_comb_cycles = lambda self: None
    try:
        yield
    finally:
        rtlil.ModuleEmitter.emit_memory = emit
        _nir.Netlist.check_comb_cycles = check


_ARRAY = re.compile(r"^  reg (?:\[(\d+):0\] )?(\\\S+ |[A-Za-z_][\w$]*) \[(\d+):0\];\n", re.M)
_INIT_WORD = re.compile(r"^    (\\\S+ |[A-Za-z_][\w$]*)\[\d+\] = ", re.M)


def _zero_init_loops(verilog: str) -> str:
    """``verilog`` with a zero-initialising loop after every memory (array) declaration that has no
    initial contents: what Amaranth's all-zero initialiser, written as a loop
    (:func:`heatvit.sim.runner.compact_zero_inits`), gives."""
    from heatvit.sim.runner import zero_init_loop
    initialised = set(_INIT_WORD.findall(verilog))
    count = 0

    def loop(m: re.Match) -> str:
        nonlocal count
        width, name, top = m.groups()
        if name in initialised:
            return m.group(0)
        count += 1
        return m.group(0) + zero_init_loop(name, int(top) + 1, int(width or 0) + 1, count)
    return _ARRAY.sub(loop, verilog)


def export_core(component, name: str, *, skip_comb_check: bool = True, platform=None) -> str:
    """The Verilog of ``component`` (module ``name``), its all-zero memory initialisers as loops:
    the text :func:`heatvit.sim.runner.export_verilog` and ``compact_zero_inits`` give, without
    building the initialisers bit by bit and (``skip_comb_check``) without Amaranth's
    combinational-loop check (:func:`_fast_convert`).  ``platform``: as for ``export_verilog``."""
    from heatvit.sim.runner import compact_zero_inits, export_verilog
    with _fast_convert(skip_comb_check):
        text = export_verilog(component, name, platform=platform)
    return compact_zero_inits(_zero_init_loops(text))
