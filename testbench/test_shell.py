"""pytest driver: the accelerator shell (AXI4-Lite registers + AXI4 DMA + GEMM engine).

The DUT is the thin Verilog top Vivado packages (``aclk``/``aresetn``/``s_axi_*``/``m_axi_*``)
around the exported Amaranth core, driven by cocotbext-axi models through heatvit.driver.
"""

import json
from pathlib import Path

import pytest

from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.rtl.shell.wrapper import TOP_NAME, export
from heatvit.shell_config import ShellConfig, config_blob
from heatvit.sim.runner import run_cocotb, simulator_available

_GEMM_4x4 = GemmConfig(rows=4, cols=4, act_buffer_words=512, max_m=64, max_k=512, max_n=64,
                       weight_fifo_depth=8, out_fifo_depth=4)
_GEMM_8x4 = GemmConfig(rows=8, cols=4, act_buffer_words=512, max_m=64, max_k=1024, max_n=64,
                       weight_fifo_depth=16, out_fifo_depth=8)
# A 256 KiB DMA window that does not start at 0, so addresses below it exist in the model.
_WINDOW = dict(window_base=0x1_0000, window_size=0x4_0000, addr_width=32, watchdog_cycles=3000)

SHELL_CONFIGS = {
    # AXI beats wider than engine words: split reads, gathered writes with a partial last beat.
    "4x4-w64": (AcceleratorConfig(gemm=_GEMM_4x4, clock_mhz=250.0),
                ShellConfig(data_width=64, burst_len=8, **_WINDOW)),
    # Beats as wide as engine words; parameter records gathered from two beats.
    "4x4-w32": (AcceleratorConfig(gemm=_GEMM_4x4), ShellConfig(data_width=32, burst_len=4, **_WINDOW)),
    # 128-bit beats (the ZCU102 default) over a non-square array.
    "8x4-w128": (AcceleratorConfig(gemm=_GEMM_8x4), ShellConfig(data_width=128, burst_len=16, **_WINDOW)),
}
# One Verilator build (~100 s on a loaded 2-core machine); Icarus compiles in seconds.
SHELL_RUNS = [("4x4-w32", "icarus"), ("4x4-w64", "icarus"), ("8x4-w128", "verilator")]


def run_shell(name: str, sim: str, *, module: str = "tb_shell", env: dict | None = None,
              testcase: str | None = None):
    acc, shell = SHELL_CONFIGS[name]
    core, top = export(acc, shell)
    extra = {"HEATVIT_SHELL": json.dumps(config_blob(acc, shell)), **(env or {})}
    if sim == "icarus":
        extra.setdefault("HEATVIT_QUICK", "1")
    return run_cocotb(verilog=core + "\n" + top, toplevel=TOP_NAME, test_module=module,
                      test_dir=Path(__file__).parent / "shell", sim=sim, env=extra, tag=name,
                      testcase=testcase)


@pytest.mark.parametrize("name,sim", SHELL_RUNS, ids=[f"{n}-{s}" for n, s in SHELL_RUNS])
def test_shell(name, sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed (CI installs it; see .ci/run)")
    run_shell(name, sim)
