"""cocotb tests of the GEMM engine's static block sparsity (tile skipping), bit-exact against
heatvit.golden and cycle-exact against ``GemmConfig.estimate_cycles(..., tiles)``.

Run through testbench/test_tileskip.py.  Randomness comes from the cocotb seed (logged by the
driver; ``HEATVIT_SEED=<seed>`` replays it).
"""

import os

import numpy as np
from cocotb.triggers import RisingEdge

from heatvit import golden
from heatvit.config import GemmConfig, ceil_div
from heatvit.errors import ErrorCode
from tb_gemm import _check, _fits, _start

from heatvit.sim.runner import config_from_env
from heatvit.sim.streams import checked_test

CFG = config_from_env(GemmConfig)
QUICK = os.environ.get("HEATVIT_QUICK", "0") == "1"


def _grid(k, n):
    return ceil_div(k, CFG.rows), ceil_div(n, CFG.cols)


def _patterns(np_rng, k, n):
    """Named tile bitmaps of a K x N weight matrix: every shape of sparsity the engine meets."""
    kt, nt = _grid(k, n)
    pats = {"all-one": np.ones((kt, nt), bool), "all-zero": np.zeros((kt, nt), bool)}
    for d in (0.7, 0.5, 0.3):
        pats[f"random {d}"] = np_rng.random((kt, nt)) < d
    single = np.zeros((kt, nt), bool)
    single[np_rng.integers(kt), np_rng.integers(nt)] = True
    pats["single tile"] = single
    cols = np_rng.random((kt, nt)) < 0.6
    cols[:, np_rng.random(nt) < 0.5] = False
    cols[:, 0] = False                        # the first N tile empty: an empty pass leads
    pats["zero columns"] = cols
    last_only = np.zeros((kt, nt), bool)
    last_only[-1, :] = True                   # only the last K tile: first == last
    pats["last k only"] = last_only
    alt = np.zeros((kt, nt), bool)
    alt[:, ::2] = True                        # dense and empty N tiles alternating
    pats["alternate columns"] = alt
    return pats


def _sparse_operands(tb, np_rng, m, k, n, bitmap):
    a, w, bias, mult, shift = tb.random_operands(np_rng, m, k, n)
    return a, golden.apply_tile_mask(CFG, w, bitmap), bias, mult, shift


async def _run(tb, np_rng, m, k, n, bitmap, what, exact):
    a, w, bias, mult, shift = _sparse_operands(tb, np_rng, m, k, n, bitmap)
    run = await tb.gemm(a, w, bias, mult, shift, bitmap=bitmap)
    _check(run, f"{what} ({int(bitmap.sum())}/{bitmap.size} tiles)")
    if exact:
        model = CFG.estimate_cycles(m, k, n, bitmap)
        assert run.cycles == model, (f"{m}x{k}x{n} {what} bitmap {bitmap.astype(int).tolist()}: "
                                     f"{run.cycles} cycles measured, model says {model}")
    return run


@checked_test
async def cycle_model_sparse(dut):
    """With no gaps or stalls a sparse GEMM takes exactly ``estimate_cycles(m, k, n, bitmap)``
    cycles, for every pattern, M below, at and above the per-tile floor and ragged K and N."""
    tb, rng, np_rng = await _start(dut, "none")
    R, C, short = CFG.rows, CFG.cols, CFG.min_tile_cycles
    shapes = [(1, 3 * R, 3 * C), (short - 1, 4 * R, 3 * C + 1), (short + 3, 3 * R - 1, 2 * C),
              (2, 5 * R + 1, 4 * C)]
    if not QUICK:
        shapes += [(rng.randint(1, 2 * short), rng.randint(1, 6 * R), rng.randint(1, 4 * C))
                   for _ in range(3)]
    for m, k, n in shapes:
        if not _fits(m, k, n):
            continue
        pats = _patterns(np_rng, k, n)
        if QUICK:
            pats = {name: pats[name] for name in ("all-zero", "random 0.5", "zero columns", "single tile")}
        for name, bitmap in pats.items():
            await _run(tb, np_rng, m, k, n, bitmap, name, exact=True)


@checked_test
async def dense_equals_sparse_all_one(dut):
    """An all-one bitmap costs exactly the dense GEMM's cycles and gives the same result."""
    tb, rng, np_rng = await _start(dut, "none")
    m, k, n = 5, 2 * CFG.rows + 1, 2 * CFG.cols
    a, w, bias, mult, shift = tb.random_operands(np_rng, m, k, n)
    dense = await tb.gemm(a, w, bias, mult, shift)
    sparse = await tb.gemm(a, w, bias, mult, shift, bitmap=np.ones(_grid(k, n), bool))
    _check(dense, "dense")
    _check(sparse, "sparse all-one")
    assert dense.cycles == sparse.cycles == CFG.estimate_cycles(m, k, n), (dense.cycles, sparse.cycles)


@checked_test
async def random_sparse_with_stalls(dut):
    """Random shapes and densities under random input gaps and output backpressure."""
    tb, rng, np_rng = await _start(dut)
    count = 4 if QUICK else 12
    done = 0
    while done < count:
        m = rng.randint(1, min(CFG.max_m, 3 * CFG.rows + 3))
        k = rng.randint(1, min(CFG.max_k, 5 * CFG.rows + 5))
        n = rng.randint(1, min(CFG.max_n, 4 * CFG.cols + 3))
        if not _fits(m, k, n):
            continue
        tb.set_pattern(rng.choice(["none", "random", "heavy", "sink-only", "source-only"]))
        bitmap = np_rng.random(_grid(k, n)) < rng.choice([0.0, 0.2, 0.5, 0.8, 1.0])
        await _run(tb, np_rng, m, k, n, bitmap, "random", exact=False)
        done += 1


@checked_test
async def sparse_and_dense_interleaved(dut):
    """Sparse and dense GEMMs back to back (the sparse flag is per command), M = 1 included."""
    tb, rng, np_rng = await _start(dut, "random")
    R, C = CFG.rows, CFG.cols
    for m, k, n, sparse in ((3, 3 * R, 3 * C, True), (1, 2 * R + 1, 2 * C, False),
                            (1, 4 * R, 5 * C + 1, True), (R + 1, R, C, True), (2, 2, 1, False)):
        if not _fits(m, k, n):
            continue
        if sparse:
            await _run(tb, np_rng, m, k, n, np_rng.random(_grid(k, n)) < 0.4, "interleaved", exact=False)
        else:
            _check(await tb.gemm(*tb.random_operands(np_rng, m, k, n)), "interleaved dense")
        for _ in range(3):
            await RisingEdge(tb.clk)
        assert int(dut.busy.value) == 0, "busy still high after the last beat"


@checked_test
async def sparse_largest_k(dut):
    """Extreme operands at the largest K with half the tiles pruned: the accumulator chain over
    skipped K tiles stays exact."""
    tb, rng, np_rng = await _start(dut, "none")
    k = min(CFG.max_k, 3072)
    m = max(1, min(2, CFG.act_buffer_words // ceil_div(k, CFG.rows)))
    n = min(CFG.max_n, 2 * CFG.cols + 1)
    bitmap = np_rng.random(_grid(k, n)) < 0.5
    bitmap[:, -1] = False
    a = np.full((m, k), CFG.act_min)
    w = golden.apply_tile_mask(CFG, np.full((k, n), CFG.weight_min), bitmap)
    top = k * CFG.max_abs_product
    shift = max(0, top.bit_length() - (CFG.act_bits - 1))
    run = await tb.gemm(a, w, 12345, 1, shift, bitmap=bitmap)
    _check(run, "largest K sparse")
    assert run.cycles == CFG.estimate_cycles(m, k, n, bitmap)


@checked_test
async def tile_count_error(dut):
    """A sparse command claiming more tiles than the grid holds is rejected with
    TILE_COUNT_TOO_LARGE and produces no output; the next command runs normally."""
    tb, rng, np_rng = await _start(dut, "none")
    m, k, n = 2, 2 * CFG.rows, CFG.cols
    bitmap = np.ones((3, 1), bool)        # 3 tiles for a 2 x 1 grid
    tb.cmd.send([tb.cmd_beat(m, k, n, bitmap)])
    await tb.cmd.wait_idle()
    for _ in range(3):
        await RisingEdge(tb.clk)
    assert int(dut.error.value) == ErrorCode.TILE_COUNT_TOO_LARGE, int(dut.error.value)
    assert int(dut.busy.value) == 0
    assert not tb.out.received, "a rejected command produced output"
    await _run(tb, np_rng, m, k, n, np.array([[False], [True]]), "after error", exact=True)
    assert int(dut.error.value) == 0
