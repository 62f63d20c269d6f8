"""GEMM cycles through the AXI shell (DMA included) against the engine with operands on chip.

Default configuration (16 x 16 array, 128-bit AXI at the default burst length), DeiT-T's qkv
GEMM 197 x 192 x 576 (quick: a smaller one).  The shell figure is the ``CYCLES`` register in
RTL simulation with cocotbext-axi's AxiRam as DDR answering without stalls (a best case: DDR
latency on the board adds to every burst); the engine figure is measured on the bare engine
(``heatvit.sim.gemm_cycles``) and also given by ``GemmConfig.estimate_cycles``.  Writes
``build/bench/shell.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from heatvit.config import AcceleratorConfig, ceil_div
from heatvit.shell_config import ShellConfig, config_blob

SHAPE = (197, 192, 576)
QUICK_SHAPE = (64, 64, 96)


def dma_beats(acc: AcceleratorConfig, shell: ShellConfig, m: int, k: int, n: int) -> dict[str, int]:
    from heatvit.driver.core import image_sizes
    return {name: ceil_div(b, shell.data_bytes) for name, b in image_sizes(acc, m, k, n).items()}


def run_shell(acc: AcceleratorConfig, shell: ShellConfig, shapes: list, *, sim: str | None = None) -> list[dict]:
    import heatvit.driver as drv_pkg
    from heatvit.rtl.shell.wrapper import TOP_NAME, export
    from heatvit.sim.runner import run_cocotb
    core, top = export(acc, shell)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = {"HEATVIT_SHELL": json.dumps(config_blob(acc, shell)), "HEATVIT_SHAPES": json.dumps(shapes),
               "HEATVIT_RESULT": str(result)}
        run_cocotb(verilog=core + "\n" + top, toplevel=TOP_NAME, test_module="measure",
                   test_dir=Path(drv_pkg.__file__).parent, sim=sim, env=env, tag="bench")
        return json.loads(result.read_text())


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    from heatvit.cli import run_shapes
    acc, shell = AcceleratorConfig(), ShellConfig()
    g = acc.gemm
    m, k, n = QUICK_SHAPE if quick else SHAPE
    (through,) = run_shell(acc, shell, [[m, k, n]])
    (alone,) = run_shapes(acc, [[m, k, n]], tag="bench")
    beats = dma_beats(acc, shell, m, k, n)
    doc = {
        "config": acc.to_dict(), "shell": shell.to_dict(), "shape": {"m": m, "k": k, "n": n},
        "shell_cycles": through["cycles"], "shell_bit_exact": through["bit_exact"],
        "engine_cycles": alone["cycles"], "engine_bit_exact": alone["bit_exact"],
        "engine_model_cycles": g.estimate_cycles(m, k, n),
        "ideal_cycles": g.ideal_cycles(m, k, n),
        "overhead": round(through["cycles"] / alone["cycles"], 3),
        "dma_beats": beats,
        "serial_preload_beats": beats["prm"] + beats["act"],
        "axi_bursts": through["bursts"],
        "us_at_clock": {"shell": through["cycles"] / acc.clock_mhz, "engine": alone["cycles"] / acc.clock_mhz},
        "note": "AxiRam answers without wait states; on the board DDR latency adds per burst",
    }
    out = out_dir / "shell.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{m}x{k}x{n}: {through['cycles']} cycles through the shell vs {alone['cycles']} on the "
          f"engine alone (x{doc['overhead']})", flush=True)
    return [out]
