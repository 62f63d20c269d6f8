"""cocotb tests of the token-selector control unit, bit-exact against
:mod:`heatvit.golden.token_selector.decision`.

Run through testbench/test_toksel.py.  Randomness comes from the cocotb seed (logged by the
driver; ``HEATVIT_SEED=<seed>`` replays).
"""

import os
import random

import cocotb
import numpy as np

from heatvit.rtl.toksel import TOKSEL_BAD_TAIL, TOKSEL_BAD_TOKENS
from heatvit.sim.runner import config_from_env
from heatvit.sim.toksel_tb import TokSelTB
from heatvit.toksel_config import TokSelConfig

CFG = config_from_env(TokSelConfig)
QUICK = os.environ.get("HEATVIT_QUICK", "0") == "1"


async def _start(dut, gap=0.3, stall=0.3):
    seed = cocotb.RANDOM_SEED
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    tb = TokSelTB(dut, CFG, rng, gap=gap, stall=stall)
    await tb.reset()
    return tb, rng, np_rng


def _log(run, what):
    r = run.result
    cocotb.log.info(f"{what}: {run.expected.keep.shape[0]} -> {r['n_tokens']} tokens "
                    f"(kept {r['n_kept']}, tail {r['n_tail']}) in {run.cycles} cycles")


@cocotb.test()
async def random_stages(dut):
    """Random token counts, tails, thresholds, scores and tokens, with random gaps and stalls."""
    tb, rng, np_rng = await _start(dut)
    for i in range(3 if QUICK else 8):
        n = rng.randint(1, CFG.max_tokens)
        tail = rng.randint(0, min(3, n - 1))
        thr = rng.choice([CFG.threshold_q, rng.randint(0, CFG.score_max)])
        tb.set_gaps(rng.choice([0.0, 0.3, 0.7]), rng.choice([0.0, 0.3, 0.7]))
        q = np_rng.integers(0, CFG.score_max + 1, size=n)
        run = await tb.stage(tb.random_tokens(np_rng, n), q, tail, thr)
        run.check(CFG, f"random {i}")
        _log(run, f"random {i}")


@cocotb.test()
async def keep_all(dut):
    """Every score above the threshold: the sequence is rewritten unchanged, no package token."""
    tb, rng, np_rng = await _start(dut)
    n = min(CFG.max_tokens, 24)
    run = await tb.stage(tb.random_tokens(np_rng, n), np.full(n, CFG.score_max), 1)
    run.check(CFG, "keep-all")
    assert run.result["n_tokens"] == n and not run.expected.has_package


@cocotb.test()
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


@cocotb.test()
async def single_token(dut):
    """One token (the class token): kept, nothing else."""
    tb, rng, np_rng = await _start(dut)
    for q in (0, CFG.score_max):
        run = await tb.stage(tb.random_tokens(np_rng, 1), [q])
        run.check(CFG, "single token")
        assert run.result["n_tokens"] == 1


@cocotb.test()
async def three_stages(dut):
    """Three stages in sequence, each on the tokens the previous one left in the buffer."""
    tb, rng, np_rng = await _start(dut, gap=0.2, stall=0.4)
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


@cocotb.test()
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
