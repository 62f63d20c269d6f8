"""Simulation speed: the HDL DDR model (no Python per cycle) against cocotbext-axi's AxiRam.

The same GEMM (DeiT-T's qkv, 197 x 192 x 576; quick: 32 x 32 x 32 on :func:`quick_config`) through the shell at the
default configuration (16 x 16, 128-bit AXI) on Verilator, twice: with ``heatvit_fastsim``
(:mod:`heatvit.sim.fast_top`, driver back end :mod:`heatvit.driver.fastsim`) and with the
per-cycle Python AXI models (``heatvit bench shell``'s run).  Both bit-exact against the golden
model.  Simulated cycles per wall second = the job's ``CYCLES`` over the wall time of the run
(AxiRam: of ``GemmDriver.gemm``, which also loads and reads back; the fast run reports its load
and read times separately, both small), and per CPU second of the simulator process (Python
included), the figure a loaded shared machine does not distort.  Writes ``build/bench/fastsim.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from heatvit.config import AcceleratorConfig

from .shell import SHAPE
from .shell import run_shell as run_axiram

DDR_BYTES = 1 << 20
QUICK_SHAPE = (32, 32, 32)   # on the quick config: about 2,000 cycles, enough for a rate
QUICK_TAG = "8x4-w128"
"""Quick mode (CI) runs on the test suite's ``8x4-w128`` shell config (``testbench/test_shell.py``'s
``SHELL_CONFIGS``, an 8 x 4 array on the board's 128-bit bus) under its tag, with the fast-sim
tests' DDR size (``testbench/test_fastsim.py``), so both Verilator builds are the tests' (checked
equal there): no build of its own after the tests
(`.ci/run` runs the benches in the tests session's virtualenv)."""
QUICK_DDR_BYTES = 1 << 16


def quick_config() -> AcceleratorConfig:
    """``testbench/test_shell.py``'s ``SHELL_CONFIGS["8x4-w128"]``."""
    from heatvit.config import GemmConfig
    from heatvit.shell_config import ShellConfig
    gemm = GemmConfig(rows=8, cols=4, act_buffer_words=512, max_m=64, max_k=1024, max_n=64,
                      weight_fifo_depth=16, out_fifo_depth=8)
    return AcceleratorConfig(gemm=gemm, shell=ShellConfig(data_width=128, burst_len=16, window_base=0x1_0000,
                                                          window_size=0x4_0000, addr_width=32, watchdog_cycles=3000))


def run_fast(acc: AcceleratorConfig, shapes: list, *, sim: str | None = None,
             ddr_bytes: int = DDR_BYTES, tag: str = "bench") -> list[dict]:
    import heatvit.sim as sim_pkg
    from heatvit.sim.fast_top import TOP_NAME, export_fast
    from heatvit.sim.runner import run_cocotb
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {"HEATVIT_CONFIG": json.dumps(acc.to_dict()), "HEATVIT_SHAPES": json.dumps(shapes),
               "HEATVIT_DDR_BYTES": str(ddr_bytes), "HEATVIT_RESULT": str(result)}
        run_cocotb(verilog=export_fast(acc, ddr_bytes), toplevel=TOP_NAME,
                   test_module="fastsim_measure", test_dir=Path(sim_pkg.__file__).parent, sim=sim,
                   env=env, tag=tag, profile="fast")
        return json.loads(result.read_text())


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    acc = quick_config() if quick else AcceleratorConfig()
    m, k, n = QUICK_SHAPE if quick else SHAPE
    tag = QUICK_TAG if quick else "bench"
    (fast,) = run_fast(acc, [[m, k, n]], sim="verilator", ddr_bytes=QUICK_DDR_BYTES if quick else DDR_BYTES, tag=tag)
    (slow,) = run_axiram(acc, [[m, k, n]], sim="verilator", tag=tag)
    slow_rate = slow["cycles"] / slow["wall_s"]
    slow_cpu_rate = slow["cycles"] / slow["cpu_s"]
    doc = {
        "quick": quick, "config": acc.to_dict(), "simulator": "verilator",
        "shape": {"m": m, "k": k, "n": n},
        "fast": fast, "axiram": {**slow, "sim_cycles_per_s": round(slow_rate),
                                 "sim_cycles_per_cpu_s": round(slow_cpu_rate)},
        "speedup_wall": round(fast["sim_cycles_per_s"] / slow_rate, 1),
        "speedup_cpu": round(fast["sim_cycles_per_cpu_s"] / slow_cpu_rate, 1),
        "note": "fast: HDL DDR model, Python only between jobs; axiram: cocotbext-axi models "
                "run Python every cycle. Cycle counts differ slightly (different DDR timing).",
    }
    out = out_dir / "fastsim.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{m}x{k}x{n}: fast {fast['cycles']} cycles at {fast['sim_cycles_per_cpu_s']:,} cycles per CPU s "
          f"({fast['sim_cycles_per_s']:,}/s wall); AxiRam {slow['cycles']} cycles at "
          f"{round(slow_cpu_rate):,} per CPU s ({round(slow_rate):,}/s wall): x{doc['speedup_cpu']}", flush=True)
    return [out]
