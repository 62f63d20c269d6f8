"""The accelerator shell: AXI4-Lite registers, an AXI4 master DMA, and the GEMM engine behind them.

``regmap`` has no Amaranth imports, so the host driver can use it on a board without Amaranth.
Import the gateware from its modules (``from heatvit.rtl.shell.top import AcceleratorShell``).
"""
