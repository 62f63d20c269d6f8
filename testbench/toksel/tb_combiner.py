"""cocotb test of the score combiner, bit-exact against
:func:`heatvit.golden.token_selector.int_selector.combine_scores` (run by testbench/test_toksel.py)."""

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from heatvit.golden.token_selector.int_selector import combine_scores
from heatvit.sim.runner import config_from_env
from heatvit.sim.streams import StreamSink, StreamSource, pack_fields
from heatvit.toksel_config import TokSelConfig

CFG = config_from_env(TokSelConfig)


def _beats(a, t):
    return [pack_fields([(v, 8) for ah, th in zip(ar, tr) for v in (ah, th)]) for ar, tr in zip(a, t)]


async def _start(dut, rng, gap, stall):
    dut.rst.value = 1
    dut.heads__valid.value = 0
    dut.scores__ready.value = 0
    Clock(dut.clk, 10, unit="ns").start()
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    src = StreamSource(dut, "heads", dut.clk, gap=gap, rng=random.Random(rng.getrandbits(32))).start()
    sink = StreamSink(dut, "scores", dut.clk, stall=stall, rng=random.Random(rng.getrandbits(32))).start()
    return src, sink


@cocotb.test()
async def random_tokens(dut):
    """Random (a, t) per head, including all-zero head weights and extremes, with gaps/stalls."""
    seed = cocotb.RANDOM_SEED
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    src, sink = await _start(dut, rng, 0.3, 0.3)
    n, h = 60, CFG.heads
    a = np_rng.integers(0, 256, size=(n, h))
    t = np_rng.integers(0, 256, size=(n, h))
    a[:4] = 0                                   # plain mean over heads
    a[4:8], t[4:8] = 255, 255                   # score 1.0 -> saturates
    a[8:12] = np_rng.integers(0, 2, size=(4, h))
    t[12:16] = 0
    src.send(_beats(a, t))
    await sink.wait_count(n, timeout_cycles=200 * n)
    got = np.array(sink.received, dtype=np.int64)
    want = combine_scores(a, t, CFG.score_bits)
    bad = np.flatnonzero(got != want)
    assert not bad.size, f"{bad.size} of {n} scores differ; first token {bad[0]}: got {got[bad[0]]}, " \
                         f"expected {want[bad[0]]} (a {a[bad[0]]}, t {t[bad[0]]})"


@cocotb.test()
async def throughput(dut):
    """Without gaps or stalls a token takes max(heads + 2, 7) cycles (plus the latency once)."""
    seed = cocotb.RANDOM_SEED
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    src, sink = await _start(dut, rng, 0.0, 0.0)
    n = 100
    a = np_rng.integers(0, 256, size=(n, CFG.heads))
    t = np_rng.integers(0, 256, size=(n, CFG.heads))
    src.send(_beats(a, t))
    await sink.wait_count(n, timeout_cycles=10 * n)
    cycles = sink.handshake_cycles[-1] - sink.handshake_cycles[0] + 1
    per = max(CFG.heads + 2, 7)
    assert cycles <= (n - 1) * per + 1, f"{n} scores took {cycles} cycles from first to last (want {per} per token)"
    cocotb.log.info(f"{n} scores in {cycles} cycles ({cycles / n:.2f} per token)")
    assert np.array_equal(np.array(sink.received, dtype=np.int64), combine_scores(a, t, CFG.score_bits))
