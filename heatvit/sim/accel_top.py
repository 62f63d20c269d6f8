"""Fast whole-model simulation top: the whole accelerator (``rtl/accel/top.py``) with the HDL DDR
model (:file:`axi_ddr.v`), as :mod:`.fast_top` does for the GEMM shell.

``heatvit_accel_fastsim`` has the ports of ``heatvit_fastsim`` (``aclk``, ``aresetn``, ``irq``,
``s_axi_*``, the DDR model's ``ddr_*`` pins), so :class:`heatvit.driver.fastsim.FastSimBackend`
drives it unchanged: while a program runs no Python code runs per clock cycle.  Simulation only;
nothing under ``rtl/`` imports it.
"""

from __future__ import annotations

from heatvit.config import AcceleratorConfig

from .fast_top import DEFAULT_DDR_BYTES, ddr_model_source, fast_top

TOP_NAME = "heatvit_accel_fastsim"
CORE_NAME = "heatvit_accel"
THIN_NAME = "heatvit_accel_top"


def export_fast(acc: AcceleratorConfig, ddr_bytes: int = DEFAULT_DDR_BYTES, *, executors=None,
                watchdog_cycles: int | None = None) -> str:
    """All Verilog of ``heatvit_accel_fastsim``: accelerator core, thin top, DDR model, top.
    The core's all-zero memory initialisers are written as loops (:func:`compact_zero_inits`)."""
    from heatvit.rtl.accel.top import Accelerator
    from heatvit.rtl.shell.wrapper import thin_top
    from heatvit.sim.runner import compact_zero_inits, export_verilog
    component = Accelerator(acc, executors=executors, watchdog_cycles=watchdog_cycles)
    core = compact_zero_inits(export_verilog(component, CORE_NAME))
    return "\n".join([core, thin_top(component, core_name=CORE_NAME, top_name=THIN_NAME), ddr_model_source(),
                      fast_top(component, acc.shell, ddr_bytes, top_name=TOP_NAME, thin_name=THIN_NAME)])
