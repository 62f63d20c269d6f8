"""Amaranth-simulator test of rtl/accel/add_unit.py with real token buffers: random windows of
two buffers, every row length modulo the word; bit-exact with golden
``residual_add``; random gaps on every stream.  Seeds: HEATVIT_SEED."""

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from heatvit.golden.vit.int_forward import residual_add
from heatvit.golden.vit.quantize import add_params
from heatvit.rtl.accel.add_unit import AddExecutor
from heatvit.rtl.accel.token_buffer import TokenBuffer
from heatvit.sim.runner import pick_seed

from accel.streams import send


def word_of(values) -> int:
    return sum((int(x) & 0xFF) << (8 * i) for i, x in enumerate(values))


def lanes_of(word: int, lanes: int) -> np.ndarray:
    return np.array([((word >> (8 * i)) & 0xFF) - (256 if (word >> (8 * i)) & 0x80 else 0) for i in range(lanes)])


@pytest.mark.parametrize("lanes,rows,cols", [(4, 9, 24), (16, 12, 80), (8, 5, 8)])
def test_add_executor(lanes, rows, cols):
    seed = pick_seed()
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    top = Module()
    top.submodules.a = bufa = TokenBuffer(rows, cols, lanes)
    top.submodules.b = bufb = TokenBuffer(rows, cols, lanes)
    top.submodules.ex = ex = AddExecutor(lanes)
    wiring.connect(top, ex.rd_a_cmd, bufa.rd_cmd)
    wiring.connect(top, bufa.rd, ex.rd_a)
    wiring.connect(top, ex.rd_b_cmd, bufb.rd_cmd)
    wiring.connect(top, bufb.rd, ex.rd_b)
    wpr = bufa.words_per_row
    A = np_rng.integers(-128, 128, (rows, wpr * lanes))
    B = np_rng.integers(-128, 128, (rows, wpr * lanes))
    jobs = []
    for _ in range(6):
        m = rng.randint(1, rows)
        n = rng.randint(1, cols)
        w = -(-n // lanes)
        sa, sb, so = rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1), rng.uniform(0.02, 0.2)
        jobs.append(dict(src_row=rng.randint(0, rows - m), src_word=rng.randint(0, wpr - w),
                         aux_row=rng.randint(0, rows - m), aux_word=rng.randint(0, wpr - w),
                         dst_row=rng.randint(0, 100), dst_word=rng.randint(0, 10), m=m, n=n,
                         **dict(zip(("mult_a", "mult_b", "shift"), add_params(sa, sb, so)))))
    got = []

    async def bench(ctx):
        init = [(bufa, A), (bufb, B)]
        for buf, arr in init:
            await send(ctx, buf.wr, [{"row": r, "word": w, "data": word_of(arr[r, w * lanes:(w + 1) * lanes]),
                                      "mask": (1 << lanes) - 1} for r in range(rows) for w in range(wpr)], rng)
        for job in jobs:
            await send(ctx, ex.cmd, [job], rng)
            out = []
            while True:
                ready = rng.random() < 0.7
                ctx.set(ex.wr.ready, ready)
                _, _, valid, p, done = await ctx.tick().sample(ex.wr.valid, ex.wr.payload, ex.done)
                if valid and ready:
                    out.append((int(p.row), int(p.word), int(p.data), int(p.mask)))
                if done:
                    break
                assert len(out) <= job["m"] * 100, "runaway"
            ctx.set(ex.wr.ready, 0)
            got.append(out)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for job, out in zip(jobs, got):
        m, n = job["m"], job["n"]
        w = -(-n // lanes)
        a = A[job["src_row"]:job["src_row"] + m, job["src_word"] * lanes:job["src_word"] * lanes + n]
        b = B[job["aux_row"]:job["aux_row"] + m, job["aux_word"] * lanes:job["aux_word"] * lanes + n]
        want = residual_add(a, b, (job["mult_a"], job["mult_b"], job["shift"]))
        assert len(out) == m * w, f"seed {seed}: {len(out)} writes for {m} x {w} words"
        for i, (row, word, value, mask) in enumerate(out):
            r, wi = divmod(i, w)
            k = min(lanes, n - wi * lanes)
            assert (row, word) == (job["dst_row"] + r, job["dst_word"] + wi), f"seed {seed}: address {i}"
            assert mask == (1 << k) - 1, f"seed {seed}: mask"
            assert list(lanes_of(value, lanes)[:k]) == list(want[r, wi * lanes:wi * lanes + k]), \
                f"seed {seed}: row {r} word {wi}"
