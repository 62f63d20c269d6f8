"""Amaranth-simulator test of rtl/accel/epilogue.py: accumulator rows through each epilogue
(REQ8, REQ16 -> GELU, RAW) bit-exact against golden, random gaps on every stream.  Seeds:
HEATVIT_SEED."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from heatvit import golden
from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.golden.nonlinear import gelu, gelu_params
from heatvit.isa import Epilogue
from heatvit.rtl.accel.epilogue import FC1_BITS, EpilogueRouter
from heatvit.sim.runner import pick_seed

from accel.streams import recv, send

ACC = {
    "4x4": AcceleratorConfig(gemm=GemmConfig(rows=4, cols=4, act_buffer_words=512, max_m=64, max_k=512,
                                             max_n=64, weight_fifo_depth=8, out_fifo_depth=4)),
    "8x8": AcceleratorConfig(gemm=GemmConfig(rows=8, cols=8, act_buffer_words=512, max_m=32, max_k=512,
                                             max_n=64, weight_fifo_depth=16, out_fifo_depth=8)),
}


def lanes_of(word: int, bits: int, n: int) -> list[int]:
    out = []
    for i in range(n):
        v = (word >> (bits * i)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out


ROUTED = [Epilogue.REQ8, Epilogue.REQ16_GELU, Epilogue.RAW_SOFTMAX]   # the selector's REQ8_* epilogues are not routed yet


@pytest.mark.parametrize("name", ["4x4", "8x8"])
@pytest.mark.parametrize("mode", ROUTED, ids=[e.name for e in ROUTED])
def test_epilogue(name, mode):
    seed = pick_seed()
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC[name]
    g = acc.gemm
    C = g.cols
    m_tokens = rng.randint(1, 7)
    n = rng.randint(1, 3 * C + 1)
    nt_count = -(-n // C)
    accs = np_rng.integers(-(1 << 22), 1 << 22, (m_tokens, nt_count * C))
    accs[0, :2] = [(1 << 31) - 1, -(1 << 31)]                    # the accumulator's extremes
    bias = np_rng.integers(-(1 << 20), 1 << 20, n)
    mult = np_rng.integers(0, 1 << g.mult_bits, n)
    # Shifts that put most results inside the output range (so rounding, not saturation, is
    # what the comparison sees), a few that saturate, and shift 0.
    out_bits = FC1_BITS if mode == Epilogue.REQ16_GELU else 8
    top = 22 + np.ceil(np.log2(mult + 1)).astype(int)      # bits of |acc| * mult
    shift = np.clip(top - (out_bits - 1) + np_rng.integers(-2, 3, n), 0, g.max_shift)
    shift[0] = 0
    gp = gelu_params(2.0 ** -9, 2.0 ** -5, out_bits=8, in_bits=FC1_BITS)
    dst_row, dst_word = rng.randint(0, 100), rng.randint(0, 20)
    rows = [(nt, mm) for nt in range(nt_count) for mm in range(m_tokens)]   # engine order
    dut = EpilogueRouter(acc)
    port = dut.raw if mode == Epilogue.RAW_SOFTMAX else dut.wr
    got = []

    async def source(ctx):
        ctx.set(dut.mode, mode)
        ctx.set(dut.n, n)
        ctx.set(dut.dst_row, dst_row)
        ctx.set(dut.dst_word, dst_word)
        for f in ("in_mult", "in_shift", "out_mult", "out_shift", "out_min", "out_max"):
            ctx.set(getattr(dut.gelu, f), getattr(gp, f))
        await send(ctx, dut.params, [{"channel": c, "params": {"bias": int(bias[c]), "mult": int(mult[c]),
                                                                "shift": int(shift[c])}} for c in range(n)], rng)
        await send(ctx, dut.i, [{"acc": [int(x) for x in accs[mm, nt * C:(nt + 1) * C]],
                                 "tag": {"m": mm, "nt": nt, "last": int(i == len(rows) - 1)}}
                                for i, (nt, mm) in enumerate(rows)], rng)

    async def sink(ctx):
        for p in await recv(ctx, port, len(rows), random.Random(seed + 1)):
            got.append(p)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()

    for (nt, mm), p in zip(rows, got):
        lanes = slice(nt * C, min((nt + 1) * C, n))
        k = lanes.stop - lanes.start
        if mode == Epilogue.RAW_SOFTMAX:
            assert [int(x) for x in p.acc] == list(accs[mm, nt * C:(nt + 1) * C]), f"seed {seed}"
            assert (p.tag.m, p.tag.nt) == (mm, nt), f"seed {seed}"
            continue
        kw = dict(acc_bits=g.acc_bits + 1, bias_bits=g.bias_bits, mult_bits=g.mult_bits, max_shift=g.max_shift)
        a = accs[mm, lanes]
        if mode == Epilogue.REQ8:
            want = golden.requantize(a, bias[lanes], mult[lanes], shift[lanes], out_bits=8, **kw)
        else:
            y16 = golden.requantize(a, bias[lanes], mult[lanes], shift[lanes], out_bits=FC1_BITS, **kw)
            want = gelu(y16, gp, acc.nonlinear)
        assert int(p.row) == dst_row + mm and int(p.word) == dst_word + nt, f"seed {seed}: address"
        assert int(p.mask) == (1 << k) - 1, f"seed {seed}: mask {int(p.mask):b} for {k} lanes"
        assert lanes_of(int(p.data), 8, C)[:k] == list(want), \
            f"seed {seed}: {mode.name} token {mm} tile {nt}: {lanes_of(int(p.data), 8, C)[:k]} != {list(want)}"
