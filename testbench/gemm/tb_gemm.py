"""cocotb tests of the GEMM engine, bit-exact against heatvit.golden.

Run through testbench/test_gemm.py (pytest + cocotb_tools.runner).  Every test takes its
randomness from the cocotb seed, which the driver logs, so ``HEATVIT_SEED=<seed>`` replays it.
The largest K exercised is ``min(max_k, 3072)`` (DeiT-B fc2).  Every port is under the
handshake monitor; each test names its stall pattern (:data:`heatvit.sim.streams.PATTERNS`).
"""

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from heatvit.config import GemmConfig, ceil_div
from heatvit.errors import ErrorCode
from heatvit.sim.gemm_tb import GemmTB
from heatvit.sim.runner import config_from_env
from heatvit.sim.streams import checked_test

CFG = config_from_env(GemmConfig)
QUICK = os.environ.get("HEATVIT_QUICK", "0") == "1"


def _rngs():
    seed = cocotb.RANDOM_SEED
    return random.Random(seed), np.random.default_rng(seed)


async def _start(dut, stalls="random"):
    rng, np_rng = _rngs()
    tb = GemmTB(dut, CFG, rng)
    tb.set_pattern(stalls)
    await tb.reset()
    return tb, rng, np_rng


def _fits(m, k, n):
    try:
        CFG.check_gemm_shape(m, k, n)
        return True
    except ValueError:
        return False


def _check(run, what):
    if not run.ok:
        bad = np.argwhere(run.y != run.expected)
        i, j = bad[0]
        raise AssertionError(f"{what}: {len(bad)} of {run.y.size} outputs differ; first at "
                             f"[{i}, {j}]: got {run.y[i, j]}, expected {run.expected[i, j]}")
    cocotb.log.info(f"{what}: {run.m}x{run.k}x{run.n} ok in {run.cycles} cycles")


@checked_test
async def one_by_one(dut):
    """1 x 1 x 1, the smallest GEMM."""
    tb, rng, np_rng = await _start(dut)
    for _ in range(3):
        _check(await tb.gemm(*tb.random_operands(np_rng, 1, 1, 1)), "1x1x1")


@checked_test
async def cycle_model(dut):
    """With no gaps or stalls the engine takes exactly ``GemmConfig.estimate_cycles`` cycles:
    the closed-form model the benchmark, compiler and latency-aware training rely on."""
    tb, rng, np_rng = await _start(dut, "none")
    R, C, short = CFG.rows, CFG.cols, CFG.min_tile_cycles
    shapes = [(1, 1, 1), (1, R, C), (short - 1, 2 * R, C), (short, 2 * R, C), (short + 3, 3 * R, 2 * C),
              (rng.randint(1, 2 * short), rng.randint(1, 5 * R), rng.randint(1, 3 * C))]
    for m, k, n in shapes:
        if not _fits(m, k, n):
            continue
        run = await tb.gemm(*tb.random_operands(np_rng, m, k, n))
        _check(run, "cycle model")
        model = CFG.estimate_cycles(m, k, n)
        assert run.cycles == model, f"{m}x{k}x{n}: {run.cycles} cycles measured, model says {model}"


@checked_test
async def random_shapes(dut):
    """Random shapes, including non-multiples of R and C, under every stall pattern (long
    stalls on small shapes)."""
    tb, rng, np_rng = await _start(dut)
    patterns = ["random", "heavy", "sink-only", "source-only", "none", "long"]
    count = len(patterns) if QUICK else 2 * len(patterns)
    done = 0
    while done < count:
        stalls = patterns[done % len(patterns)]
        scale = 1 if stalls == "long" else 3
        m = rng.randint(1, min(CFG.max_m, scale * CFG.rows + 3))
        k = rng.randint(1, min(CFG.max_k, (scale + 1) * CFG.rows + 5))
        n = rng.randint(1, min(CFG.max_n, scale * CFG.cols + 3))
        if not _fits(m, k, n):
            continue
        tb.set_pattern(stalls)
        _check(await tb.gemm(*tb.random_operands(np_rng, m, k, n)), "random")
        done += 1


@checked_test
async def non_multiples(dut):
    """Every combination of M, K, N just below, at and above multiples of R and C."""
    tb, rng, np_rng = await _start(dut, "source-only")
    R, C = CFG.rows, CFG.cols
    shapes = [(m, k, n) for m in (1, R + 1) for k in (max(1, R - 1), R, R + 1)
              for n in (max(1, C - 1), C + 1)]
    for m, k, n in shapes:
        if _fits(m, k, n):
            _check(await tb.gemm(*tb.random_operands(np_rng, m, k, n)), "edges")


@checked_test
async def single_token_wide(dut):
    """M = 1 against many N tiles (the class token through a projection)."""
    tb, rng, np_rng = await _start(dut, "sink-only")
    n = min(CFG.max_n, 8 * CFG.cols + 3)
    k = min(CFG.max_k, 2 * CFG.rows + 1)
    _check(await tb.gemm(*tb.random_operands(np_rng, 1, k, n)), "M=1")


@checked_test
async def extremes_at_largest_k(dut):
    """All -128 and all 127 operands at the largest K: the accumulator must not overflow."""
    tb, rng, np_rng = await _start(dut, "none")
    k = min(CFG.max_k, 3072)
    m = max(1, min(2, CFG.act_buffer_words // ceil_div(k, CFG.rows)))
    n = min(CFG.max_n, CFG.cols + 1)
    lo_a, hi_a, lo_w, hi_w = CFG.act_min, CFG.act_max, CFG.weight_min, CFG.weight_max
    # Requantize with a shift that puts the extreme sums just inside int8, so a wrong
    # accumulator bit shows up in the output.
    top = k * CFG.max_abs_product
    shift = max(0, top.bit_length() - (CFG.act_bits - 1))
    for av, wv in ((lo_a, lo_w), (hi_a, hi_w), (lo_a, hi_w), (hi_a, lo_w)):
        a = np.full((m, k), av)
        w = np.full((k, n), wv)
        _check(await tb.gemm(a, w, 0, 1, shift), f"a={av} w={wv} K={k}")
    # Per-channel shifts around that point: exact sums, differently rounded.
    a = np.full((m, k), lo_a)
    w = np.where(np_rng.random((k, n)) < 0.5, lo_w, hi_w)
    shifts = np.clip(shift + np_rng.integers(-1, 2, size=n), 0, CFG.max_shift)
    _check(await tb.gemm(a, w, 0, 1, shifts), "mixed extremes")


@checked_test
async def heavy_backpressure(dut):
    """65% output stalls and input gaps, then long stalls and gaps (20-300 cycles) on a small
    shape: nothing lost or duplicated."""
    tb, rng, np_rng = await _start(dut, "heavy")
    m, k, n = min(CFG.max_m, 2 * CFG.rows + 1), min(CFG.max_k, 2 * CFG.rows), min(CFG.max_n, 2 * CFG.cols + 1)
    while not _fits(m, k, n):
        m = max(1, m // 2)
    _check(await tb.gemm(*tb.random_operands(np_rng, m, k, n)), "backpressure")
    tb.set_pattern("long")
    _check(await tb.gemm(*tb.random_operands(np_rng, CFG.rows + 1, CFG.rows + 1, CFG.cols + 1)), "long stalls")


@checked_test
async def back_to_back(dut):
    """Consecutive GEMMs of different shapes; busy drops after each last beat."""
    tb, rng, np_rng = await _start(dut, "random")
    for m, k, n in ((3, CFG.rows + 2, CFG.cols), (CFG.rows + 1, 1, 2 * CFG.cols + 1), (2, 2, 1)):
        if _fits(m, k, n):
            _check(await tb.gemm(*tb.random_operands(np_rng, m, k, n)), "back-to-back")
            for _ in range(3):
                await RisingEdge(tb.clk)
            assert int(dut.busy.value) == 0, "busy still high after the last beat"


@checked_test
async def reset_mid_gemm(dut):
    """Reset in the middle of a GEMM, then a clean GEMM must be exact."""
    tb, rng, np_rng = await _start(dut, "sink-only")
    m, k, n = min(CFG.max_m, 2 * CFG.rows + 3), min(CFG.max_k, 3 * CFG.rows), min(CFG.max_n, 2 * CFG.cols)
    while not _fits(m, k, n):
        m = max(1, m // 2)
    a, w, bias, mult, shift = tb.random_operands(np_rng, m, k, n)
    await tb.load(a, *__import__("heatvit").golden.check_params(CFG, n, bias, mult, shift))
    tb.cmd.send([tb.cmd_beat(m, k, n)])
    tb.weights.send(tb.weight_beats(w))
    await tb.out.recv(1, timeout_cycles=100000)
    assert int(dut.busy.value) == 1
    await tb.reset()
    assert int(dut.busy.value) == 0, "busy survived reset"
    _check(await tb.gemm(*tb.random_operands(np_rng, m, k, n)), "after reset")


@checked_test
async def invalid_commands(dut):
    """Shapes that do not fit raise the documented error code and produce no output."""
    tb, rng, np_rng = await _start(dut, "none")
    cases = [((0, 1, 1), ErrorCode.ZERO_DIMENSION), ((1, 0, 1), ErrorCode.ZERO_DIMENSION),
             ((1, 1, 0), ErrorCode.ZERO_DIMENSION)]
    if CFG.max_m + 1 < (1 << CFG.m_bits):
        cases.append(((CFG.max_m + 1, 1, 1), ErrorCode.M_TOO_LARGE))
    if CFG.max_k + 1 < (1 << CFG.k_bits):
        cases.append(((1, CFG.max_k + 1, 1), ErrorCode.K_TOO_LARGE))
    if CFG.max_n + 1 < (1 << CFG.n_bits):
        cases.append(((1, 1, CFG.max_n + 1), ErrorCode.N_TOO_LARGE))
    m_over = CFG.act_buffer_words // CFG.max_k_tiles + 1
    if m_over <= CFG.max_m:
        cases.append(((m_over, CFG.max_k, 1), ErrorCode.ACT_BUFFER_OVERFLOW))
    for (m, k, n), code in cases:
        tb.cmd.send([tb.cmd_beat(m, k, n)])
        await tb.cmd.wait_idle()
        for _ in range(3):
            await RisingEdge(tb.clk)
        assert int(dut.error.value) == code, f"{m}x{k}x{n}: error {int(dut.error.value)}, expected {code!r}"
        assert int(dut.busy.value) == 0, f"{m}x{k}x{n}: engine went busy on a rejected command"
    assert not tb.out.received, "a rejected command produced output"
    run = await tb.gemm(*tb.random_operands(np_rng, 2, 3, 2))
    _check(run, "after errors")
    assert int(dut.error.value) == 0, "error code not cleared by a good command"
