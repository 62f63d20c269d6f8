"""The whole accelerator's top: register map (docs kept equal), buffer crossbar (Amaranth
simulator, random gaps), and the Accelerator running programs.  Seeds: HEATVIT_SEED."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from heatvit.rtl.accel import regmap
from heatvit.rtl.accel.crossbar import BufferCrossbar
from heatvit.rtl.accel.ports import DmaRegion
from heatvit.rtl.accel.token_buffer import TokenBuffers
from heatvit.sim.runner import pick_seed

from accel.streams import send

ROOT = Path(__file__).resolve().parents[1]


# -- register map ------------------------------------------------------------------------------

def test_regmap_docs_and_regions():
    doc = (ROOT / "docs" / "accel_top.md").read_text()
    assert f"{regmap.GENERATED_BEGIN}\n{regmap.markdown_table()}\n{regmap.GENERATED_END}" in doc, \
        "docs/accel_top.md's register table is stale (regenerate from regmap.markdown_table())"
    assert regmap.REGIONS == tuple(r.name for r in DmaRegion)
    offsets = [off for off, _, _ in regmap.REGISTERS.values()]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 and o < 1 << 12 for o in offsets)
    for i, r in enumerate(regmap.REGIONS):
        lo, hi = regmap.base_registers(r)
        assert regmap.OFFSET[lo] == regmap.BASE_OFFSET + 8 * i and regmap.OFFSET[hi] == regmap.OFFSET[lo] + 4
    with pytest.raises(ValueError, match="region must be one of"):
        regmap.base_registers("WEIGHTS")


# -- crossbar ----------------------------------------------------------------------------------

def _word(rng: random.Random, lanes: int) -> int:
    return rng.getrandbits(8 * lanes)


@pytest.mark.parametrize("lanes", [4, 8])
def test_crossbar(lanes):
    """Random src/aux reads (same buffer or not) with random command gaps and data stalls on each
    port independently; each port gets its own words in order; a flush mid-stream drops what is
    outstanding and the next reads are right."""
    seed = pick_seed()
    rng = random.Random(seed)
    specs = {"a": (6, 3 * lanes), "b": (5, 2 * lanes), "c": (4, lanes)}
    top = Module()
    top.submodules.bufs = bufs = TokenBuffers(specs, lanes)
    top.submodules.xbar = xbar = BufferCrossbar(specs, lanes)
    wiring.connect(top, xbar.bufs, bufs)
    contents = {name: {(r, w): _word(rng, lanes) for r in range(rows) for w in range(-(-cols // lanes))}
                for name, (rows, cols) in specs.items()}
    names = list(specs)
    rounds = []
    for i in range(8):
        sb = rng.randrange(3)
        ab = sb if i % 2 == 0 else rng.randrange(3)     # every other round: the same buffer
        picks = {}
        for p, b in (("src", sb), ("aux", ab)):
            keys = list(contents[names[b]])
            picks[p] = [rng.choice(keys) for _ in range(rng.randint(1, 25))]
        rounds.append((sb, ab, picks, i == 5))           # round 5 is flushed halfway
    got = {}

    async def bench(ctx):
        # fill every buffer through dst (masked: two halves), then read in rounds
        for b, name in enumerate(names):
            ctx.set(xbar.dst_buf, b)
            half = (1 << (lanes // 2)) - 1
            writes = []
            for (r, w), v in contents[name].items():
                writes.append({"row": r, "word": w, "data": v, "mask": half})
                writes.append({"row": r, "word": w, "data": v, "mask": half << (lanes // 2)})
            rng.shuffle(writes)
            await send(ctx, xbar.dst, writes, rng)
        for k, (sb, ab, picks, flush) in enumerate(rounds):
            ctx.set(xbar.src_buf, sb)
            ctx.set(xbar.aux_buf, ab)
            out = {"src": [], "aux": []}
            sent = {"src": 0, "aux": 0}
            want = {p: len(v) if not flush else len(v) // 2 for p, v in picks.items()}
            cycles = 0
            while any(len(out[p]) < want[p] for p in out):
                for p in ("src", "aux"):
                    port = getattr(xbar, p)
                    on = sent[p] < len(picks[p]) and rng.random() < 0.7
                    ctx.set(port.cmd.valid, on)
                    if on:
                        r, w = picks[p][sent[p]]
                        ctx.set(port.cmd.payload, {"row": r, "word": w})
                    ctx.set(port.data.ready, rng.random() < 0.6)
                samples = await ctx.tick().sample(xbar.src.cmd.valid, xbar.src.cmd.ready, xbar.src.data.valid,
                                                  xbar.src.data.ready, xbar.src.data.payload,
                                                  xbar.aux.cmd.valid, xbar.aux.cmd.ready, xbar.aux.data.valid,
                                                  xbar.aux.data.ready, xbar.aux.data.payload)
                s = dict(zip(("src", "aux"), (samples[2:7], samples[7:12])))
                for p, (cv, cr, dv, dr, d) in s.items():
                    if cv and cr:
                        sent[p] += 1
                    if dv and dr:
                        out[p].append(int(d))
                cycles += 1
                assert cycles < 5000, f"seed {seed}: round {k} stuck at {out}"
            for p in ("src", "aux"):
                port = getattr(xbar, p)
                ctx.set(port.cmd.valid, 0)
                ctx.set(port.data.ready, 0)
            if flush:
                ctx.set(xbar.flush, 1)
                await ctx.tick()
                ctx.set(xbar.flush, 0)
                for _ in range(3):
                    _, _, sv, av = await ctx.tick().sample(xbar.src.data.valid, xbar.aux.data.valid)
                    assert not sv and not av, f"seed {seed}: data after a flush"
            got[k] = out

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for k, (sb, ab, picks, flush) in enumerate(rounds):
        for p, b in (("src", sb), ("aux", ab)):
            exp = [contents[names[b]][rw] for rw in picks[p]]
            assert got[k][p] == exp[:len(got[k][p])], f"seed {seed}: round {k} port {p}"
            if not flush:
                assert len(got[k][p]) == len(exp)
