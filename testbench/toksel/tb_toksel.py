"""cocotb tests of the token-selector control unit, bit-exact against
:mod:`heatvit.golden.token_selector.decision`.

Run through testbench/test_toksel.py.  Randomness comes from the cocotb seed (logged by the
driver; ``HEATVIT_SEED=<seed>`` replays).  The stream rules are checked on every output
(:class:`heatvit.sim.streams.StreamSink`); stall patterns from :data:`heatvit.sim.streams.PATTERNS`.
"""

import os
import random

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from heatvit.golden.token_selector import decision
from heatvit.rtl.toksel import TOKSEL_BAD_TAIL, TOKSEL_BAD_TOKENS
from heatvit.sim.runner import config_from_env
from heatvit.sim.streams import Idle, checked_test
from heatvit.sim.toksel_tb import TokSelTB
from heatvit.toksel_config import TokSelConfig

CFG = config_from_env(TokSelConfig)
QUICK = os.environ.get("HEATVIT_QUICK", "0") == "1"


async def _start(dut, stalls="random"):
    seed = cocotb.RANDOM_SEED
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    tb = TokSelTB(dut, CFG, rng)
    tb.set_pattern(stalls)
    await tb.reset()
    return tb, rng, np_rng


def _log(run, what):
    r = run.result
    cocotb.log.info(f"{what}: {run.expected.keep.shape[0]} -> {r['n_tokens']} tokens "
                    f"(kept {r['n_kept']}, tail {r['n_tail']}) in {run.cycles} cycles")


@checked_test
async def random_stages(dut):
    """Random token counts, tails, thresholds, scores and tokens, under every stall pattern."""
    tb, rng, np_rng = await _start(dut)
    patterns = ["none", "random", "heavy", "sink-only", "source-only", "long"]
    for i in range(len(patterns) if QUICK else 2 * len(patterns)):
        tb.set_pattern(patterns[i % len(patterns)])
        long = patterns[i % len(patterns)] == "long"
        n = rng.randint(1, min(CFG.max_tokens, 48) if long else CFG.max_tokens)
        tail = rng.randint(0, min(3, n - 1))
        thr = rng.choice([CFG.threshold_q, rng.randint(0, CFG.score_max)])
        q = np_rng.integers(0, CFG.score_max + 1, size=n)
        run = await tb.stage(tb.random_tokens(np_rng, n), q, tail, thr)
        run.check(CFG, f"random {i}")
        _log(run, f"random {i}")


async def _stall_writes_in_chunk(tb, n_out: int, cycles: int):
    """Stall the writes sink for ``cycles`` cycles from the first write of chunk 1 on."""
    dut = tb.dut
    while True:
        await RisingEdge(tb.clk)
        if int(dut.writes__valid.value) and tb.decode_write(dut.writes__payload.value.to_unsigned())[0] >= n_out:
            break
    tb.writes.stall = Idle(p=1.0)
    for _ in range(cycles):
        await RisingEdge(tb.clk)
    tb.writes.stall = Idle()


@checked_test
async def package_during_stall(dut):
    """Issue 16: the writes sink stalls for a long time across the moment the package divider
    (chunk 0's package token) finishes; the kept-token word on offer must stay on offer,
    unchanged, until it is taken (the monitor fails the test otherwise)."""
    tb, rng, np_rng = await _start(dut, "none")
    assert CFG.chunks >= 2, "needs two chunks or more"
    n = min(CFG.max_tokens, 16)
    scores = np.full(n, CFG.score_max)
    scores[1:4] = 0                        # three pruned tokens: a package token per chunk
    for cycles in (40, 300):
        x = tb.random_tokens(np_rng, n)
        n_out = decision.stage_int(CFG, x, scores, 0, CFG.threshold_q).n_tokens
        stall = cocotb.start_soon(_stall_writes_in_chunk(tb, n_out, cycles))
        run = await tb.stage(x, scores)
        await stall
        run.check(CFG, f"{cycles}-cycle stall")


@checked_test
async def keep_all(dut):
    """Every score above the threshold: the sequence is rewritten unchanged, no package token."""
    tb, rng, np_rng = await _start(dut)
    n = min(CFG.max_tokens, 24)
    run = await tb.stage(tb.random_tokens(np_rng, n), np.full(n, CFG.score_max), 1)
    run.check(CFG, "keep-all")
    assert run.result["n_tokens"] == n and not run.expected.has_package


@checked_test
async def keep_none(dut):
    """No score above the threshold: class token, tail and one package token remain; also with
    every pruned score 0 (plain mean) and with extreme token values (accumulator range)."""
    tb, rng, np_rng = await _start(dut)
    n = CFG.max_tokens
    for what, scores, x in (
            ("keep-none", np_rng.integers(0, CFG.threshold_q + 1, size=n), tb.random_tokens(np_rng, n)),
            ("zero scores", np.zeros(n, dtype=np.int64), tb.random_tokens(np_rng, n)),
            ("all -128, threshold", np.full(n, CFG.threshold_q), np.full((n, CFG.dim), -128)),
            ("all 127", np.full(n, CFG.threshold_q), np.full((n, CFG.dim), 127))):
        run = await tb.stage(x, scores, 0)
        run.check(CFG, what)
        assert run.result["n_tokens"] == 2, f"{what}: {run.result}"
    run = await tb.stage(tb.random_tokens(np_rng, n), np.zeros(n, dtype=np.int64), 2)
    run.check(CFG, "keep-none with tail")
    assert run.result["n_tokens"] == 4 and run.result["n_tail"] == 3


@checked_test
async def single_token(dut):
    """One token (the class token): kept, nothing else."""
    tb, rng, np_rng = await _start(dut)
    for q in (0, CFG.score_max):
        run = await tb.stage(tb.random_tokens(np_rng, 1), [q])
        run.check(CFG, "single token")
        assert run.result["n_tokens"] == 1


@checked_test
async def three_stages(dut):
    """Three stages in sequence, each on the tokens the previous one left in the buffer."""
    tb, rng, np_rng = await _start(dut, "heavy")
    x = tb.random_tokens(np_rng, CFG.max_tokens - 3)
    tail = 0
    counts = [x.shape[0]]
    for s, keep in enumerate((0.7, 0.5, 0.3)):
        scores = tb.random_scores(np_rng, x.shape[0], keep)
        # prune >= 2 patches (the count shrinks despite the new package token) and keep enough
        # patches for the later stages to prune 2 each
        end = x.shape[0] - tail
        scores[1:3] = 0
        scores[end - 2 * (2 - s):end] = CFG.score_max
        run = await tb.stage(x, scores, tail)
        run.check(CFG, f"stage {s}")
        _log(run, f"stage {s}")
        x, tail = run.buffer(CFG), run.result["n_tail"]
        assert np.array_equal(x, run.expected.tokens)
        counts.append(x.shape[0])
    assert counts[0] > counts[1] > counts[2] > counts[3], f"token counts {counts} do not shrink"


@checked_test
async def bad_commands(dut):
    """Bad commands answer with an error and consume nothing; a good stage runs afterwards."""
    tb, rng, np_rng = await _start(dut)
    bits_max = (1 << CFG.count_bits) - 1
    for n, tail, code in ((0, 0, TOKSEL_BAD_TOKENS), (CFG.max_tokens + 1, 0, TOKSEL_BAD_TOKENS),
                          (bits_max, 0, TOKSEL_BAD_TOKENS), (5, 5, TOKSEL_BAD_TAIL), (3, 7, TOKSEL_BAD_TAIL)):
        if n > bits_max:
            continue
        res = await tb.bad_command(n, tail)
        assert res["error"] == code and res["n_tokens"] == 0, f"n={n} tail={tail}: {res}"
    n = min(CFG.max_tokens, 9)
    (await tb.stage(tb.random_tokens(np_rng, n), tb.random_scores(np_rng, n))).check(CFG, "after errors")
