"""cocotb module: GEMMs through the shell with the HDL DDR model (heatvit.driver.fastsim).

Configuration from ``HEATVIT_CONFIG`` (``AcceleratorConfig.to_dict``) and ``HEATVIT_DDR_BYTES``
(the timing run is heatvit.sim.fastsim_measure, used by ``heatvit bench fastsim``).
"""

import json
import os
import random
from types import SimpleNamespace

import cocotb
import numpy as np

from heatvit import golden
from heatvit.driver.core import Buffers, image_sizes
from heatvit.driver.fastsim import start
from heatvit.errors import ErrorCode, HardwareError
from heatvit.config import AcceleratorConfig
from heatvit.sim.gemm_tb import GemmTB


def setup():
    acc = AcceleratorConfig.from_dict(json.loads(os.environ["HEATVIT_CONFIG"]))
    return acc, acc.shell, int(os.environ["HEATVIT_DDR_BYTES"])


def operands(acc, rng, m, k, n):
    return GemmTB.random_operands(SimpleNamespace(cfg=acc.gemm), rng, m, k, n)


async def checked_gemm(be, drv, acc, ops):
    """One GEMM; bit-exact, and the job wrote nothing outside its output buffer."""
    y = await drv.gemm(*ops)
    job = drv.job
    want = golden.gemm(acc.gemm, *ops)
    assert np.array_equal(y, want), f"{job.m}x{job.k}x{job.n}: {np.count_nonzero(y != want)} mismatches"
    lo, hi = be.last_written
    out_lo = (job.buffers.out - be.base) // be.nb
    out_hi = (job.buffers.out - be.base + job.expected_out_bytes - 1) // be.nb
    assert out_lo <= lo and hi <= out_hi, f"wrote beats {lo}..{hi} outside the output {out_lo}..{out_hi}"
    return y


@cocotb.test()
async def random_gemms(dut):
    """Random shapes (every residue of M, K, N modulo the array), back to back, each bit-exact."""
    acc, shell, ddr_bytes = setup()
    g = acc.gemm
    rng = np.random.default_rng(cocotb.RANDOM_SEED)
    pyrng = random.Random(cocotb.RANDOM_SEED)
    be, drv = await start(dut, acc, ddr_bytes=ddr_bytes)
    await drv.check_identity()
    quick = int(os.environ.get("HEATVIT_QUICK", "0"))
    shapes = [(1, 1, 1), (g.rows + 1, 2 * g.rows - 1, g.cols + 3)]
    for _ in range(3 if quick else 8):
        m = pyrng.randint(1, min(g.max_m, 40))
        k = pyrng.randint(1, min(g.max_k, g.act_buffer_words // m * g.rows, 5 * g.rows))
        shapes.append((m, k, pyrng.randint(1, min(g.max_n, 4 * g.cols))))
    for m, k, n in shapes:
        await checked_gemm(be, drv, acc, operands(acc, rng, m, k, n))
        assert drv.last_cycles > 0
    # Output buffers at a 4 KiB line, and one ending exactly at the top of the model.
    m, k, n = 9, 2 * g.rows, 2 * g.cols + 1
    sizes = image_sizes(acc, m, k, n)
    top = be.end - -(-sizes["out"] // be.nb) * be.nb
    bufs = Buffers(act=be.alloc(sizes["act"]), wgt=be.alloc(sizes["wgt"]), prm=be.alloc(sizes["prm"]),
                   out=top)
    y = await drv.gemm(*(ops := operands(acc, rng, m, k, n)), buffers=bufs)
    assert np.array_equal(y, golden.gemm(g, *ops))
    cocotb.log.info(f"{len(shapes) + 1} GEMMs bit-exact; {be.loads} loads, {be.dumps} dumps")


@cocotb.test()
async def errors_then_good_job(dut):
    """A shape error and an AXI error (buffer outside the model) are reported; the next job works."""
    acc, shell, ddr_bytes = setup()
    rng = np.random.default_rng(cocotb.RANDOM_SEED + 1)
    be, drv = await start(dut, acc, ddr_bytes=ddr_bytes)
    job = drv.load(*operands(acc, rng, 3, 5, 7))
    await drv.start(0, job.k, job.n, job.buffers)
    try:
        await drv.wait()
        raise AssertionError("M = 0 accepted")
    except HardwareError as e:
        assert e.code == ErrorCode.ZERO_DIMENSION, e
    if be.end + 0x1000 <= shell.window_end:
        bad = Buffers(act=be.end, wgt=job.buffers.wgt, prm=job.buffers.prm, out=job.buffers.out)
        await drv.start(job.m, job.k, job.n, bad)
        try:
            await drv.wait()
            raise AssertionError("read outside the DDR model not reported")
        except HardwareError as e:
            assert e.code == ErrorCode.AXI_READ_ERROR, e
    await checked_gemm(be, drv, acc, operands(acc, rng, 6, 11, 5))
