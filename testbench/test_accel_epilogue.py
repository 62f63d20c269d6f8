"""Amaranth-simulator test of rtl/accel/epilogue.py: accumulator rows through each epilogue
(REQ8, REQ16 -> GELU, REQ8 -> GELU, REQ8 -> sigmoid; RAW and REQ8 to the softmax stage's ``raw``
port) bit-exact against golden, random gaps on every stream, configs with C == lanes and C <
lanes.  Seeds: HEATVIT_SEED."""

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from heatvit import golden, isa
from heatvit.config import AcceleratorConfig
from heatvit.golden.nonlinear import gelu, gelu_params, sigmoid, sigmoid_params
from heatvit.isa import Epilogue
from heatvit.rtl.accel.epilogue import FC1_BITS, EpilogueRouter, SerialAct
from heatvit.rtl.nonlinear.dual_act import GeluSigmoidUnit
from heatvit.sim.runner import pick_seed
from heatvit.sim.streams import unpack_lanes

from accel.streams import recv, send


def small(rows: int, cols: int, max_m: int = 32, max_n: int = 64) -> AcceleratorConfig:
    return AcceleratorConfig().with_gemm(rows=rows, cols=cols, act_buffer_words=512, max_m=max_m, max_k=512,
                                         max_n=max_n, weight_fifo_depth=8, out_fifo_depth=4)


ACC = {"4x4": small(4, 4), "8x4": small(8, 4), "4x8": small(4, 8)}


def requant_params(np_rng, g, n: int, out_bits: int):
    """Per-channel records whose shifts put most results inside ``out_bits`` (so rounding, not
    saturation, is what a comparison sees), a few that saturate, shift 0 and the mult extremes."""
    bias = np_rng.integers(-(1 << 20), 1 << 20, n)
    mult = np_rng.integers(0, 1 << g.mult_bits, n)
    mult[-1] = (1 << g.mult_bits) - 1
    top = 22 + np.ceil(np.log2(mult + 1)).astype(int)      # bits of |acc| * mult
    shift = np.clip(top - (out_bits - 1) + np_rng.integers(-2, 3, n), 0, g.max_shift)
    shift[0] = 0
    return bias, mult, shift


def act_record(mode: Epilogue, rng: random.Random):
    if mode == Epilogue.REQ16_GELU:
        return gelu_params(2.0 ** rng.randint(-11, -8), 2.0 ** rng.randint(-6, -4), out_bits=8, in_bits=FC1_BITS)
    if mode == Epilogue.REQ8_GELU:
        return gelu_params(rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.05), out_bits=8, in_bits=8)
    return sigmoid_params(rng.uniform(0.01, 0.1), 1 / 255, out_bits=8, in_bits=8)


MODES = list(Epilogue)


@pytest.mark.parametrize("name", list(ACC))
@pytest.mark.parametrize("mode", MODES, ids=[e.name for e in MODES])
def test_epilogue(name, mode):
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC[name]
    g = acc.gemm
    C = g.cols
    lanes = isa.column_align(acc)
    m_tokens = rng.randint(1, 6)
    n = rng.randint(1, 3 * C + 1)
    nt_count = -(-n // C)
    accs = np_rng.integers(-(1 << 22), 1 << 22, (m_tokens, nt_count * C))
    accs[0, :2] = [(1 << 31) - 1, -(1 << 31)]                    # the accumulator's extremes
    wide = mode == Epilogue.REQ16_GELU
    bias, mult, shift = requant_params(np_rng, g, nt_count * C, FC1_BITS if wide else 8)
    ap = act_record(mode, rng) if mode in (Epilogue.REQ16_GELU, Epilogue.REQ8_GELU, Epilogue.REQ8_SIGMOID) else None
    dst_row, dst_word = rng.randint(0, 100), rng.randint(0, 20)
    rows = [(nt, mm) for nt in range(nt_count) for mm in range(m_tokens)]   # engine order
    dut = EpilogueRouter(acc)
    softmax_side = mode in (Epilogue.RAW_SOFTMAX, Epilogue.REQ8_SOFTMAX)
    port = dut.raw if softmax_side else dut.wr
    got = []

    async def source(ctx):
        ctx.set(dut.mode, mode)
        ctx.set(dut.n, n)
        ctx.set(dut.dst_row, dst_row)
        ctx.set(dut.dst_word, dst_word)
        if ap is not None:
            for f in ("in_mult", "in_shift", "out_mult", "out_shift", "out_min", "out_max"):
                ctx.set(getattr(dut.act, f), getattr(ap, f))
        writes = []
        for c in range(nt_count * C):
            data = [{"bias": 0, "mult": 0, "shift": 0}] * C
            data[c % C] = {"bias": int(bias[c]), "mult": int(mult[c]), "shift": int(shift[c])}
            writes.append({"addr": c // C, "mask": 1 << (c % C), "data": data})
        await send(ctx, dut.params, writes, rng)
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

    kw = dict(acc_bits=g.acc_bits + 1, bias_bits=g.bias_bits, mult_bits=g.mult_bits, max_shift=g.max_shift)
    for i, ((nt, mm), p) in enumerate(zip(rows, got)):
        lanes_n = slice(nt * C, min((nt + 1) * C, n))
        k = lanes_n.stop - lanes_n.start
        full = slice(nt * C, (nt + 1) * C)
        a = accs[mm, full]
        if mode == Epilogue.RAW_SOFTMAX:
            assert [int(x) for x in p.acc] == list(a), f"seed {seed}"
        if softmax_side:
            if mode == Epilogue.REQ8_SOFTMAX:
                want = golden.requantize(a, bias[full], mult[full], shift[full], out_bits=8, **kw)
                assert [int(x) for x in p.acc] == list(want), f"seed {seed}: token {mm} tile {nt}"
            assert (p.tag.m, p.tag.nt, p.tag.last) == (mm, nt, int(i == len(rows) - 1)), f"seed {seed}"
            continue
        pre = golden.requantize(a, bias[full], mult[full], shift[full], out_bits=FC1_BITS if wide else 8, **kw)
        if mode == Epilogue.REQ8:
            want = pre
        elif mode == Epilogue.REQ8_SIGMOID:
            want = sigmoid(pre, ap, acc.nonlinear)
        else:
            want = gelu(pre, ap, acc.nonlinear)
        off = (nt * C) % lanes
        assert int(p.row) == dst_row + mm and int(p.word) == dst_word + nt * C // lanes, f"seed {seed}: address"
        assert int(p.mask) == ((1 << k) - 1) << off, f"seed {seed}: mask {int(p.mask):b} for {k} lanes at {off}"
        assert int(p.last) == int(i == len(rows) - 1), f"seed {seed}: last"
        got_lanes = unpack_lanes(int(p.data) >> (8 * off), 8, C)[:k].tolist()
        if mode == Epilogue.REQ8_SIGMOID:
            got_lanes = [v & 0xFF for v in got_lanes]
        assert got_lanes == [int(x) for x in want[:k]], \
            f"seed {seed}: {mode.name} token {mm} tile {nt}: {got_lanes} != {list(want[:k])}"


class SerialSigmoid(Elaboratable):
    """:class:`SerialAct` on lane 0 of a two-lane :class:`GeluSigmoidUnit` (as the router wires it)."""

    def __init__(self, acc):
        self.ser = SerialAct(acc, in_bits=8, out_bits=9)
        self.unit = GeluSigmoidUnit(dataclasses.replace(acc.nonlinear, lanes=2), in_bits=FC1_BITS, out_bits=9)
        self.i, self.o = self.ser.i, self.ser.o

    def elaborate(self, platform):
        m = Module()
        m.submodules.ser, m.submodules.unit = ser, u = self.ser, self.unit
        m.d.comb += [u.i.valid.eq(ser.unit_i.valid), u.i.payload[0].eq(ser.unit_i.payload),
                     ser.unit_i.ready.eq(u.i.ready), ser.unit_o.valid.eq(u.o.valid),
                     ser.unit_o.payload.eq(u.o.payload[0]), u.o.ready.eq(ser.unit_o.ready)]
        return m


@pytest.mark.parametrize("gap", [0.0, 0.3, 0.7])
def test_serial_sigmoid(gap):
    """The REQ8_SIGMOID path (:class:`SerialAct` on the GELU unit's lane 0): rows of 1 .. C values (many
    of one value, so more rows than its unit's latency are inside at once) with random gaps on
    both sides (none at ``gap`` 0): every value bit-exact with golden (lanes past a row's count
    are left as an earlier row left them: the router's lane mask does not write them), and
    without gaps one value per cycle."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC["4x8"]
    C = acc.gemm.cols
    ap = act_record(Epilogue.REQ8_SIGMOID, rng)
    counts = [1] * 40 + [rng.randint(1, C) for _ in range(40)] + [C] * 5
    xs = np_rng.integers(-128, 128, (len(counts), C))
    xs[0, 0], xs[1, 0] = -128, 127
    dut = SerialSigmoid(acc)
    got, span = [], {}

    async def source(ctx):
        ctx.set(dut.unit.sigmoid, 1)
        for f in ("in_mult", "in_shift", "out_mult", "out_shift", "out_min", "out_max"):
            ctx.set(getattr(dut.unit.params, f), getattr(ap, f))
        await send(ctx, dut.i, [{"data": [int(x) for x in row], "count": c} for row, c in zip(xs, counts)], rng, gap)

    async def sink(ctx):
        got.extend(await recv(ctx, dut.o, len(counts), random.Random(seed + 1), gap))

    async def clock(ctx):
        n = 0
        while len(got) < len(counts):
            await ctx.tick()
            n += 1
        span["end"] = n

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_testbench(clock, background=True)
    sim.run()
    for r, (row, c, p) in enumerate(zip(xs, counts, got)):
        want = sigmoid(row[:c], ap, acc.nonlinear)
        assert [int(v) for v in p][:c] == [int(v) for v in want], f"seed {seed}: row {r} ({c} values)"
    if gap == 0.0:
        # one value per cycle, plus the unit's pipeline and the row registers (about 20 cycles)
        assert span["end"] <= sum(counts) + 24, f"{span['end']} cycles for {sum(counts)} values"


@pytest.mark.parametrize("kind", ["gelu", "sigmoid"])
def test_gelu_sigmoid_unit(kind):
    """:class:`GeluSigmoidUnit` (3 lanes, the first 2 also the sigmoid) at its full output width:
    int16 inputs over the whole range (every 11th value, the extremes and 0) at a fine and a coarse
    input scale (the coarse one saturates the core's input and passes ``|x| >= 16`` for the
    sigmoid), random gaps on both streams: bit-exact with golden ``gelu`` / ``sigmoid``; the
    sigmoid lanes' latency equals the GELU lanes' (one ``o`` beat carries both)."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng = random.Random(seed)
    lanes, sig_lanes = 3, 2
    cfg = dataclasses.replace(AcceleratorConfig().nonlinear, lanes=lanes)
    xs = np.concatenate([np.arange(-(1 << 15), 1 << 15, 11), [-(1 << 15), (1 << 15) - 1, 0, 1, -1]])
    xs = np.concatenate([xs, np.zeros((-len(xs)) % lanes, np.int64)]).reshape(-1, lanes)
    for s_in in (2.0 ** -9 * 1.37, 12.5):
        if kind == "gelu":
            ap = gelu_params(s_in, 2.0 ** -12, out_bits=20, in_bits=16)
        else:
            ap = sigmoid_params(s_in, 2.0 ** -15, out_bits=16, in_bits=16)
        dut = GeluSigmoidUnit(cfg, in_bits=16, out_bits=20, sigmoid_lanes=sig_lanes)
        got = []

        async def source(ctx):
            ctx.set(dut.sigmoid, int(kind == "sigmoid"))
            for f in ("in_mult", "in_shift", "out_mult", "out_shift", "out_min", "out_max"):
                ctx.set(getattr(dut.params, f), getattr(ap, f))
            await send(ctx, dut.i, [[int(v) for v in row] for row in xs], rng, 0.2)

        async def sink(ctx):
            got.extend(await recv(ctx, dut.o, len(xs), random.Random(seed + 1), 0.2))

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(source)
        sim.add_testbench(sink)
        sim.run()
        y = np.array([[int(v) for v in p] for p in got])
        check = slice(0, sig_lanes) if kind == "sigmoid" else slice(0, lanes)
        want = (sigmoid if kind == "sigmoid" else gelu)(xs[:, check], ap, cfg)
        bad = np.argwhere(y[:, check] != want)
        assert not len(bad), (f"seed {seed}, s_in {s_in}: {kind} of {xs[:, check][tuple(bad[0])]} = "
                              f"{y[:, check][tuple(bad[0])]}, golden {want[tuple(bad[0])]} ({len(bad)} differ)")
