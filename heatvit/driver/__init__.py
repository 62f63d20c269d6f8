"""Host driver of the accelerator shell: one API, two back ends.

:class:`GemmDriver` loads operands into DDR buffers, programs the registers, starts a job,
waits for it (bounded) and reads the result back; a non-zero hardware error code raises
:class:`heatvit.errors.HardwareError` naming it.  Back ends provide register and memory access:

* :class:`heatvit.driver.sim.CocotbBackend`: cocotbext-axi ``AxiRam`` as DDR and
  ``AxiLiteMaster`` for the registers (inside a cocotb test);
* :class:`heatvit.driver.board.PynqBackend`: PYNQ ``Overlay``/``MMIO``/``allocate`` on the
  ZCU102 (``pynq`` imported only when used).

The driver is ``async`` (the simulation needs it); :func:`heatvit.driver.board.open_board`
returns a blocking wrapper for scripts on the board.
"""

from .core import Buffers, GemmDriver, GemmJob, pack_params

__all__ = ["Buffers", "GemmDriver", "GemmJob", "pack_params"]
