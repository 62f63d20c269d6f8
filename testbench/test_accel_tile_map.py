"""Amaranth-simulator test of rtl/accel/tile_map.py: a block-sparse GEMM's bitmap beats in, the
engine's tile descriptors (``golden.tile_descriptors``) and the K tiles they use in first-use order out,
with random valid/ready gaps; empty, full and single-tile bitmaps, grids that span several
beats, bits past ``KT * NT`` set (ignored), and a count mismatch.  Seeds: HEATVIT_SEED."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from heatvit import golden, isa
from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.rtl.accel.tile_map import TileMap
from heatvit.sim.runner import pick_seed

ACC = AcceleratorConfig(gemm=GemmConfig(rows=4, cols=4, act_buffer_words=512, max_m=64, max_k=512, max_n=256,
                                        weight_fifo_depth=8, out_fifo_depth=4))


def bitmaps(np_rng):
    """(KT, NT, bitmap, tiles given, junk past the grid)."""
    out = []
    for kt, nt in ((1, 1), (3, 2), (5, 3), (16, 12), (128, 3)):
        for density in (0.0, 0.5, 1.0):
            bm = np_rng.random((kt, nt)) < density
            out.append((kt, nt, bm, int(bm.sum()), False))
    bm = np_rng.random((7, 5)) < 0.5
    out.append((7, 5, bm, int(bm.sum()), True))          # junk bits after the grid
    out.append((7, 5, bm, int(bm.sum()) + 1, False))     # count mismatch
    out.append((7, 5, bm, max(0, int(bm.sum()) - 1), True))
    return out


@pytest.mark.parametrize("gap", [0.0, 0.4])
def test_tile_map(gap):
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    dut = TileMap(ACC)
    D = ACC.shell.data_bytes
    cases = bitmaps(np_rng)

    async def take(ctx, descs, kts, expect_descs, expect_kts):
        while len(descs) < expect_descs or len(kts) < expect_kts:
            r1, r2 = rng.random() >= gap, rng.random() >= gap
            ctx.set(dut.o.ready, r1)
            ctx.set(dut.order.ready, r2)
            _, _, ov, op, kv, kp = await ctx.tick().sample(dut.o.valid, dut.o.payload, dut.order.valid, dut.order.payload)
            if ov and r1:
                descs.append((int(op.kt), int(op.last), int(op.empty)))
            if kv and r2:
                kts.append(int(kp))
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.order.ready, 0)

    async def tb(ctx):
        for kt, nt, bm, tiles, junk in cases:
            blob = bytearray(isa.pack_bitmap(bm))
            size = -(-len(blob) // 64) * 64
            blob += bytes(size - len(blob))
            if junk:
                for i in range(kt * nt, 8 * size):
                    blob[i >> 3] |= 1 << (i & 7)
            beats = [int.from_bytes(blob[i:i + D], "little") for i in range(0, size, D)]
            ctx.set(dut.kt_n, kt)
            ctx.set(dut.nt_n, nt)
            ctx.set(dut.tiles, tiles)
            ctx.set(dut.beats, len(beats))
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for b in beats:
                while rng.random() < gap:           # a gap: no beat offered
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, b)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            while not ctx.get(dut.checked):
                await ctx.tick()
            mismatch = int(bm.sum()) != tiles
            assert ctx.get(dut.mismatch) == mismatch, f"seed {seed}: {kt}x{nt} mismatch flag"
            want = golden.tile_descriptors(ACC.gemm, bm, kt * 4, nt * 4).tolist()
            descs, kts = [], []
            if mismatch:
                for _ in range(50):
                    _, _, ov, kv, busy = await ctx.tick().sample(dut.o.valid, dut.order.valid, dut.busy)
                    assert not ov and not kv, f"seed {seed}: a descriptor or K tile after a mismatch"
                assert not busy
                continue
            order = list(dict.fromkeys(d[0] for d in want if not d[2]))     # first-use order, once each
            await take(ctx, descs, kts, len(want), len(order))
            assert [list(x) for x in descs] == want, f"seed {seed}: {kt}x{nt}: {descs} != {want}"
            assert kts == order, f"seed {seed}: K tile order {kts} != {order}"
            for _ in range(3):
                await ctx.tick()
            assert not ctx.get(dut.busy) and not ctx.get(dut.o.valid) and not ctx.get(dut.order.valid), \
                f"seed {seed}: extra descriptors or K tiles"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
