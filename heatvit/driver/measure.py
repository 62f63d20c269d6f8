"""cocotb module: GEMMs through the whole shell (DMA included), no stalls, exact cycle counts.

Shapes come from ``HEATVIT_SHAPES`` (JSON list of [m, k, n]); the configuration from
``HEATVIT_CONFIG`` (``AcceleratorConfig.to_dict`` as JSON); results go to ``HEATVIT_RESULT``.
``cycles`` is the ``CYCLES`` register: from the start write to the last write response.
Used by ``heatvit bench shell``.
"""

import json
import os
import time
from types import SimpleNamespace

import cocotb
import numpy as np

from heatvit import golden
from heatvit.driver.sim import start
from heatvit.config import AcceleratorConfig
from heatvit.sim.gemm_tb import GemmTB


@cocotb.test()
async def measure(dut):
    acc = AcceleratorConfig.from_dict(json.loads(os.environ["HEATVIT_CONFIG"]))
    shapes = json.loads(os.environ["HEATVIT_SHAPES"])
    np_rng = np.random.default_rng(cocotb.RANDOM_SEED)
    be, drv, mon = await start(dut, acc, max_polls=None)
    results = []
    seen = 0
    for m, k, n in shapes:
        ops = GemmTB.random_operands(SimpleNamespace(cfg=acc.gemm), np_rng, m, k, n)
        t0, c0 = time.perf_counter(), time.process_time()
        y = await drv.gemm(*ops)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        mismatches = int(np.count_nonzero(y != golden.gemm(acc.gemm, *ops)))
        bursts, seen = mon.count() - seen, mon.count()
        results.append({"m": m, "k": k, "n": n, "cycles": drv.last_cycles, "bit_exact": mismatches == 0,
                        "mismatches": mismatches, "bursts": bursts, "wall_s": round(wall, 3),
                        "cpu_s": round(cpu, 3)})
        cocotb.log.info(f"{m}x{k}x{n} through the shell: {drv.last_cycles} cycles, "
                        f"{'bit-exact' if mismatches == 0 else f'{mismatches} MISMATCHES'}, {wall:.1f} s")
        assert mismatches == 0
        assert not mon.violations, mon.violations
    with open(os.environ["HEATVIT_RESULT"], "w") as f:
        json.dump(results, f, indent=1)
