"""cocotb module: run a list of GEMM shapes with no stalls and record exact cycle counts.

Used by the GEMM benchmark, the ``demo`` job and the cycle-model test.  Shapes come from
``HEATVIT_SHAPES`` (JSON list of [m, k, n] or {"m","k","n",...} objects; an object with a
``"bitmap"`` (KT x NT 0/1 lists) runs sparse, its weights pruned to the bitmap); results (cycles,
bit-exact match, simulated clock cycles including operand loading, wall time) go to the JSON
file named by ``HEATVIT_RESULT``.
"""

import json
import os
import random
import time

import cocotb
import numpy as np

from heatvit import golden
from heatvit.config import GemmConfig
from heatvit.sim.gemm_tb import GemmTB
from heatvit.sim.runner import config_from_env
from heatvit.sim.streams import checked_test


@checked_test
async def measure(dut):
    cfg = config_from_env(GemmConfig)
    shapes = json.loads(os.environ["HEATVIT_SHAPES"])
    seed = cocotb.RANDOM_SEED
    tb = GemmTB(dut, cfg, random.Random(seed), gap=0.0, stall=0.0)
    np_rng = np.random.default_rng(seed)
    await tb.reset()
    results = []
    for entry in shapes:
        if isinstance(entry, dict):
            m, k, n = entry["m"], entry["k"], entry["n"]
        else:
            entry = {"m": entry[0], "k": entry[1], "n": entry[2]}
            m, k, n = entry["m"], entry["k"], entry["n"]
        a, w, bias, mult, shift = tb.random_operands(np_rng, m, k, n)
        bitmap = entry.get("bitmap")
        if bitmap is not None:
            bitmap = np.array(bitmap, dtype=bool)
            w = golden.apply_tile_mask(cfg, w, bitmap)
        t0, c0 = time.perf_counter(), tb.now
        run = await tb.gemm(a, w, bias, mult, shift, bitmap=bitmap)
        wall, sim_cycles = time.perf_counter() - t0, tb.now - c0
        mismatches = int(np.count_nonzero(run.y != run.expected))
        results.append({**{k: v for k, v in entry.items() if k != "bitmap"}, "cycles": run.cycles, "bit_exact": mismatches == 0,
                        "mismatches": mismatches, "wall_s": wall,
                        "sim_cycles": sim_cycles})
        cocotb.log.info(f"{m}x{k}x{n}: {run.cycles} cycles, "
                        f"{'bit-exact' if mismatches == 0 else f'{mismatches} MISMATCHES'}, {wall:.1f} s")
        assert mismatches == 0, f"{m}x{k}x{n}: {mismatches} outputs differ from the golden model"
    with open(os.environ["HEATVIT_RESULT"], "w") as f:
        json.dump(results, f, indent=1)
