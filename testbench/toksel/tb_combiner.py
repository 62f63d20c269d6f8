"""cocotb test of the score combiner, bit-exact against
:func:`heatvit.golden.token_selector.int_selector.combine_scores` (run by testbench/test_toksel.py)."""

import random

import cocotb
import numpy as np

from heatvit.golden.token_selector.int_selector import combine_scores
from heatvit.sim.runner import config_from_env
from heatvit.sim.streams import StreamTB, checked_test, pack_fields
from heatvit.toksel_config import TokSelConfig

CFG = config_from_env(TokSelConfig)


class CombinerTB(StreamTB):
    SOURCES = {"heads": "heads"}
    SINKS = {"scores": "scores"}


def _beats(a, t):
    return [pack_fields([(v, 8) for ah, th in zip(ar, tr) for v in (ah, th)]) for ar, tr in zip(a, t)]


async def _start(dut, stalls):
    seed = cocotb.RANDOM_SEED
    tb = CombinerTB(dut, random.Random(seed))
    tb.set_pattern(stalls)
    await tb.reset()
    return tb, np.random.default_rng(seed)


@checked_test
async def random_tokens(dut):
    """Random (a, t) per head, including all-zero head weights and extremes, under each stall
    pattern."""
    tb, np_rng = await _start(dut, "none")
    for stalls in ("random", "heavy", "long", "sink-only", "source-only"):
        tb.set_pattern(stalls)
        await _random_tokens(tb, np_rng, 24 if stalls == "long" else 60)


async def _random_tokens(tb, np_rng, n):
    src, sink = tb.heads, tb.scores
    h = CFG.heads
    a = np_rng.integers(0, 256, size=(n, h))
    t = np_rng.integers(0, 256, size=(n, h))
    a[:4] = 0                                   # plain mean over heads
    a[4:8], t[4:8] = 255, 255                   # score 1.0 -> saturates
    a[8:12] = np_rng.integers(0, 2, size=(4, h))
    t[12:16] = 0
    src.send(_beats(a, t))
    got = np.array(await sink.recv(n, timeout_cycles=2000 * n), dtype=np.int64)
    want = combine_scores(a, t, CFG.score_bits)
    bad = np.flatnonzero(got != want)
    assert not bad.size, f"{bad.size} of {n} scores differ; first token {bad[0]}: got {got[bad[0]]}, " \
                         f"expected {want[bad[0]]} (a {a[bad[0]]}, t {t[bad[0]]})"


@checked_test
async def throughput(dut):
    """Without gaps or stalls a token takes max(heads + 2, 12) cycles (plus the latency once):
    the cycle model's ``COMBINER_MIN_CYCLES`` is the reciprocal's interval."""
    from heatvit.compiler.cycles import COMBINER_MIN_CYCLES
    from heatvit.nonlinear_config import NonlinearConfig
    from heatvit.rtl.nonlinear.serial_recip import SerialReciprocal
    from heatvit.rtl.toksel.combiner import DEN_BITS, RECIP_DIGIT_BITS
    assert SerialReciprocal(NonlinearConfig(lanes=1), DEN_BITS, RECIP_DIGIT_BITS).interval == COMBINER_MIN_CYCLES
    tb, np_rng = await _start(dut, "none")
    src, sink = tb.heads, tb.scores
    n = 100
    a = np_rng.integers(0, 256, size=(n, CFG.heads))
    t = np_rng.integers(0, 256, size=(n, CFG.heads))
    src.send(_beats(a, t))
    got = await sink.recv(n, timeout_cycles=20 * n)
    cycles = sink.handshake_cycles[-1] - sink.handshake_cycles[0] + 1
    per = max(CFG.heads + 2, COMBINER_MIN_CYCLES)
    assert cycles <= (n - 1) * per + 1, f"{n} scores took {cycles} cycles from first to last (want {per} per token)"
    cocotb.log.info(f"{n} scores in {cycles} cycles ({cycles / n:.2f} per token)")
    assert np.array_equal(np.array(got, dtype=np.int64), combine_scores(a, t, CFG.score_bits))
