"""cocotb module: timed GEMMs on ``heatvit_fastsim`` (HDL DDR model, Python waits on ``irq``).

Configuration from ``HEATVIT_CONFIG`` (``AcceleratorConfig.to_dict``) and ``HEATVIT_DDR_BYTES``, shapes from ``HEATVIT_SHAPES``
(JSON list of [m, k, n]); one record per shape to ``HEATVIT_RESULT``.  ``run_wall_s`` is the
wall time of ``GemmDriver.run`` (register writes, the job, the copy-back of its outputs);
``sim_cycles_per_s`` = ``CYCLES`` / ``run_wall_s``; ``run_cpu_s`` / ``sim_cycles_per_cpu_s`` use the
simulator process's CPU time (Python included), which a busy shared machine does not distort.  Used by ``heatvit bench fastsim``.
"""

import json
import os
import time
from types import SimpleNamespace

import cocotb
import numpy as np

from heatvit import golden
from heatvit.driver.fastsim import start
from heatvit.config import AcceleratorConfig
from heatvit.sim.gemm_tb import GemmTB


@cocotb.test()
async def measure(dut):
    acc = AcceleratorConfig.from_dict(json.loads(os.environ["HEATVIT_CONFIG"]))
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    be, drv = await start(dut, acc, ddr_bytes=int(os.environ["HEATVIT_DDR_BYTES"]))
    results = []
    for m, k, n in json.loads(os.environ["HEATVIT_SHAPES"]):
        ops = GemmTB.random_operands(SimpleNamespace(cfg=acc.gemm), rng, m, k, n)
        t0 = time.perf_counter()
        job = drv.load(*ops)
        t1, c1 = time.perf_counter(), time.process_time()
        cycles = await drv.run(job)
        t2, c2 = time.perf_counter(), time.process_time()
        y = drv.read_results(job)
        t3 = time.perf_counter()
        mismatches = int(np.count_nonzero(y != golden.gemm(acc.gemm, *ops)))
        results.append({"m": m, "k": k, "n": n, "cycles": cycles, "bit_exact": mismatches == 0,
                        "mismatches": mismatches, "load_s": round(t1 - t0, 3),
                        "run_wall_s": round(t2 - t1, 3), "read_s": round(t3 - t2, 3),
                        "run_cpu_s": round(c2 - c1, 2), "sim_cycles_per_s": round(cycles / (t2 - t1)),
                        "sim_cycles_per_cpu_s": round(cycles / (c2 - c1))})
        cocotb.log.info(f"{m}x{k}x{n}: {cycles} cycles in {t2 - t1:.2f} s "
                        f"({cycles / (t2 - t1):,.0f} cycles/s), {mismatches} mismatches")
        assert mismatches == 0
    with open(os.environ["HEATVIT_RESULT"], "w") as f:
        json.dump(results, f, indent=1)
