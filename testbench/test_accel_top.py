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


# -- the Accelerator (Amaranth simulator, Python AXI memory) ------------------------------------

def tiny_acc(rows=4, cols=4, data_width=32, burst_len=4, tokens=8, dim=16, hidden=16):
    """A small engine with small token buffers and the test DMA window (quick to simulate)."""
    import dataclasses
    from heatvit.accel_config import BufferConfig
    from heatvit.config import DEFAULT
    from heatvit.shell_config import ShellConfig
    acc = DEFAULT.with_array(rows, cols)
    return dataclasses.replace(acc, buffers=BufferConfig(max_tokens=tokens, max_dim=dim, max_hidden=hidden),
                               shell=ShellConfig(data_width=data_width, burst_len=burst_len,
                                                 window_base=WINDOW, window_size=WINDOW_SIZE))


WINDOW, WINDOW_SIZE = 0x10000, 0x10000
LAYOUT = {"MODEL": 0x0000, "INPUT": 0x8000, "OUTPUT": 0x8800, "TRACE": 0x9000, "CYCLES": 0x9800,
          "DEBUG": 0xA000}
"""Region bases (offsets from WINDOW) in the simulated DDR; PROGRAM = MODEL + program offset."""


def tiny_image(acc, seed: int, *, same_buffer: bool = True):
    """A hand-written program: BEGIN, LOAD (INPUT -> X0), LOAD (MODEL -> X1), ADD X0 + X1 -> T,
    [ADD X0[:, 0:n] + X0[:, A:A+n] -> H (src and aux the same buffer)], STORE T (and H) -> OUTPUT,
    END.  Returns (image blob, input bytes)."""
    from heatvit import isa
    from heatvit.compiler import image as image_mod
    from heatvit.isa import Buf, Descriptor, Op, Region
    rng = np.random.default_rng(seed)
    A = isa.column_align(acc)
    t = acc.buffers.max_tokens
    n = acc.buffers.max_dim - A
    m = t - 1
    stride = -(-acc.buffers.max_dim // 16) * 16
    const = rng.integers(-128, 128, (m, stride)).astype(np.int8).tobytes()
    mult = lambda: int(rng.integers(1, 1 << 15))   # noqa: E731
    descs = [
        Descriptor(Op.LOAD, m_live=1, region=Region.INPUT, dst=Buf.X0, m=m, n=acc.buffers.max_dim, stride=stride,
                   addr=0, name="in"),
        Descriptor(Op.LOAD, m_live=1, region=Region.MODEL, dst=Buf.X1, dst_row=1, m=m, n=n, stride=stride, addr=0,
                   name="const"),
        Descriptor(Op.ADD, m_live=1, src=Buf.X0, aux=Buf.X1, dst=Buf.T, aux_row=1, m=m, n=n, add_mult_a=mult(),
                   add_mult_b=mult(), add_shift=int(rng.integers(10, 20)), name="add"),
    ]
    stores = [(Buf.T, n)]
    if same_buffer:
        descs.append(Descriptor(Op.ADD, m_live=1, src=Buf.X0, aux=Buf.X0, aux_col=A, dst=Buf.H, dst_row=1,
                                m=m - 1, n=n, add_mult_a=mult(), add_mult_b=mult(),
                                add_shift=int(rng.integers(10, 20)), name="add_same"))
        stores.append((Buf.H, n))
    for j, (b, cols) in enumerate(stores):
        descs.append(Descriptor(Op.STORE, m_live=1, region=Region.OUTPUT, src=b, m=m, n=cols, stride=stride,
                                addr=j * -(-m * stride // 64) * 64, name=f"out{j}"))
    descs = [isa.begin(acc, len(descs) + 2, t), *descs, Descriptor(Op.END, name="end")]
    io = {"input": {"rows": m, "cols": acc.buffers.max_dim, "stride": stride, "bytes": m * stride},
          "output": {"rows": len(stores) * m, "cols": n, "stride": stride,
                     "bytes": (len(stores) - 1) * -(-m * stride // 64) * 64 + m * stride}}
    blob = image_mod.build(acc, descs, const, {"io": io, "blocks": []})
    inp = rng.integers(-128, 128, m * stride).astype(np.int8).tobytes()
    return blob, inp


class AxiLiteMaster:
    """Register accesses on an ``s_axi`` port from an Amaranth async testbench."""

    def __init__(self, port):
        self.p = port

    async def write(self, ctx, offset: int, value: int):
        p = self.p
        ctx.set(p.awaddr, offset)
        ctx.set(p.awvalid, 1)
        ctx.set(p.wdata, value & 0xFFFF_FFFF)
        ctx.set(p.wstrb, 0xF)
        ctx.set(p.wvalid, 1)
        ctx.set(p.bready, 1)
        aw = w = False
        while not (aw and w):
            _, _, awr, wr = await ctx.tick().sample(p.awready, p.wready)
            if awr:
                aw = True
                ctx.set(p.awvalid, 0)
            if wr:
                w = True
                ctx.set(p.wvalid, 0)
        while True:
            _, _, bv = await ctx.tick().sample(p.bvalid)
            if bv:
                break
        ctx.set(p.bready, 0)

    async def read(self, ctx, offset: int) -> int:
        p = self.p
        ctx.set(p.araddr, offset)
        ctx.set(p.arvalid, 1)
        ctx.set(p.rready, 1)
        await ctx.tick().until(p.arready)
        ctx.set(p.arvalid, 0)
        while True:
            _, _, rv, rd = await ctx.tick().sample(p.rvalid, p.rdata)
            if rv:
                break
        ctx.set(p.rready, 0)
        return int(rd)


async def run_job(ctx, dut, regs: AxiLiteMaster, bases: dict, limit: int = 200_000) -> dict:
    """Write the region bases, start, wait for irq; the status registers."""
    for r, addr in bases.items():
        lo, hi = regmap.base_registers(r)
        await regs.write(ctx, regmap.OFFSET[lo], addr & 0xFFFF_FFFF)
        await regs.write(ctx, regmap.OFFSET[hi], addr >> 32)
    await regs.write(ctx, regmap.OFFSET["CTRL"], 1)
    for _ in range(limit):
        if ctx.get(dut.irq):
            break
        await ctx.tick()
    else:
        raise AssertionError(f"no irq after {limit} cycles")
    out = {}
    for name in ("STATUS", "ERROR", "ERROR_INDEX", "ERROR_FLAGS", "ERROR_FLAGS_HI", "CYCLES", "N_LIVE", "DESCRIPTORS"):
        out[name] = await regs.read(ctx, regmap.OFFSET[name])
    return out


def accel_bench(acc, seed, executors=None):
    from heatvit.rtl.accel.top import Accelerator
    from test_accel_io import AxiMem
    rng = random.Random(seed)
    dut = Accelerator(acc, executors=executors, watchdog_cycles=4096)
    mem = AxiMem(dut.m_axi, acc.shell, rng, gap=0.2)
    return dut, mem


def load_image(mem, blob: bytes, inp: bytes) -> dict:
    from heatvit.compiler import image as image_mod
    img = image_mod.read(blob)
    sizes = {"MODEL": len(blob), "INPUT": len(inp), "OUTPUT": img.output["bytes"], "TRACE": img.trace["bytes"],
             "CYCLES": 16 * len(img.program), "DEBUG": img.debug["bytes"]}
    ends = sorted(LAYOUT.values()) + [WINDOW_SIZE]
    for r, n in sizes.items():
        assert LAYOUT[r] + n <= ends[ends.index(LAYOUT[r]) + 1], f"{r} ({n} bytes) overlaps the next test region"
    mem.write(WINDOW + LAYOUT["MODEL"], blob)
    mem.write(WINDOW + LAYOUT["INPUT"], inp)
    mem.write(WINDOW + LAYOUT["OUTPUT"], bytes(img.output["bytes"]))   # the gaps between rows stay 0
    bases = {r: WINDOW + off for r, off in LAYOUT.items()}
    bases["PROGRAM"] = bases["MODEL"] + img.header["program_offset"]
    return bases


def cycle_records(mem, n: int) -> list[tuple[int, int, int, int]]:
    import struct
    blob = mem.read(WINDOW + LAYOUT["CYCLES"], 16 * n)
    return [struct.unpack_from("<4I", blob, 16 * i) for i in range(n)]


def test_accelerator_tiny_program():
    """BEGIN, LOAD, LOAD, ADD, ADD (src = aux buffer), STORE, STORE, END through the whole top:
    OUTPUT bit-exact with heatvit.compiler.interpret, one cycle record per descriptor; then a
    damaged copy (unknown opcode at descriptor 3) reports CTRL_BAD_OPCODE at index 3 and writes
    no output, and the next start (program repaired) is right again."""
    from heatvit.compiler import image as image_mod
    from heatvit.compiler import interpret
    from heatvit.errors import ErrorCode
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = tiny_acc()
    blob, inp = tiny_image(acc, seed)
    img = image_mod.read(blob, acc)
    want = interpret.run(img, acc, inp).output
    dut, mem = accel_bench(acc, seed)
    bases = load_image(mem, blob, inp)
    n_desc = len(img.program)
    out_addr = WINDOW + LAYOUT["OUTPUT"]
    results = {}

    async def bench(ctx):
        regs = AxiLiteMaster(dut.s_axi)
        assert await regs.read(ctx, regmap.OFFSET["MAGIC"]) == regmap.MAGIC_VALUE
        results["ok"] = await run_job(ctx, dut, regs, bases)
        results["out"] = mem.read(out_addr, len(want))
        results["cycles"] = cycle_records(mem, n_desc)
        # damage descriptor 3's opcode
        prog = bases["PROGRAM"]
        good = mem.read(prog + 3 * 32, 4)
        mem.write(out_addr, bytes(len(want)))
        mem.write(prog + 3 * 32, bytes([0x0A]) + good[1:])
        results["bad"] = await run_job(ctx, dut, regs, bases)
        results["bad_out"] = mem.read(out_addr, len(want))
        mem.write(prog + 3 * 32, good)
        results["again"] = await run_job(ctx, dut, regs, bases)
        results["again_out"] = mem.read(out_addr, len(want))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(mem.run, background=True)
    sim.add_testbench(bench)
    sim.run()
    ok = results["ok"]
    assert ok["ERROR"] == 0 and ok["STATUS"] & regmap.STATUS_DONE, f"seed {seed}: {ok}"
    assert results["out"] == want, f"seed {seed}: OUTPUT differs from interpret"
    assert ok["DESCRIPTORS"] == n_desc
    recs = results["cycles"]
    assert [r[0] for r in recs] == list(range(n_desc))
    assert [r[1] for r in recs] == [int(d.opcode) for d in img.program]
    assert all(s <= e for _, _, s, e in recs) and all(recs[i][3] <= recs[i + 1][2] for i in range(n_desc - 1))
    assert recs[-1][3] < ok["CYCLES"]
    bad = results["bad"]
    assert (bad["ERROR"], bad["ERROR_INDEX"]) == (ErrorCode.CTRL_BAD_OPCODE, 3), f"seed {seed}: {bad}"
    assert bad["STATUS"] >> regmap.STATUS_CODE_SHIFT & 0xFF == ErrorCode.CTRL_BAD_OPCODE
    assert (bad["ERROR_FLAGS"], bad["ERROR_FLAGS_HI"]) == (0, 1 << (ErrorCode.CTRL_BAD_OPCODE - 32))
    assert results["bad_out"] == bytes(len(want)), "a failed program wrote OUTPUT"
    again = results["again"]
    assert again["ERROR"] == 0 and results["again_out"] == want, f"seed {seed}: {again}"


def micro_vit(acc, seed: int, *, debug: bool = False, prune: bool = False):
    """A random-weight ViT small enough for the Amaranth simulator (8 x 8 px, 4 patches, dim 8,
    one block of 2 heads, MLP 16, 4 classes): every dense opcode and epilogue.  ``prune``: 12 x
    12 px (9 patches), two blocks, a token selector before block 1 set to keep about half the
    patches of the input image (LAYERNORM, MEAN, the selector GEMM epilogues, SELECT).  Returns
    (image blob, input bytes)."""
    from heatvit import compiler
    from heatvit.compiler import compile_model, interpret, models, read_image
    if not prune:
        cfg = models.ViTConfig(image_size=8, patch_size=4, in_chans=1, dim=8, depth=1, heads=2, mlp_ratio=2.0,
                               num_classes=4)
        blob = compile_model(models.random_model(cfg, seed % 1000), acc, debug=debug)
        img = read_image(blob, acc)
        rng = np.random.default_rng(seed)
        patches = rng.integers(-128, 128, (img.input["rows"], img.input["cols"]))
        return blob, interpret.pack_input(img, patches)
    cfg = models.ViTConfig(image_size=12, patch_size=4, in_chans=1, dim=8, depth=2, heads=2, mlp_ratio=2.0,
                           num_classes=4)
    fm = models.random_model(cfg, seed % 1000, plan=models.PruningPlan(blocks=(1,), keep_ratios=(0.5,)))
    image = models.calibration_images(cfg, 1, seed % 997)
    qm = models.set_keep_ratios(compiler.quantize_for(fm, acc, calib_count=8), image[0], (0.5,))
    blob = compile_model(qm, acc, debug=debug, prune=True)
    return blob, interpret.pack_input(read_image(blob, acc), models.patches(qm, image)[0])


def run_program(acc, blob, inp, seed, jobs=1):
    """Run the image ``jobs`` times on the whole top; per job the registers, OUTPUT and DEBUG."""
    from heatvit.compiler import read_image
    img = read_image(blob, acc)
    dut, mem = accel_bench(acc, seed)
    bases = load_image(mem, blob, inp)
    mem.write(WINDOW + LAYOUT["DEBUG"], bytes(img.debug["bytes"]))
    mem.write(WINDOW + LAYOUT["TRACE"], bytes(img.trace["bytes"]))
    results = []

    async def bench(ctx):
        regs = AxiLiteMaster(dut.s_axi)
        for _ in range(jobs):
            st = await run_job(ctx, dut, regs, bases, limit=2_000_000)
            results.append((st, mem.read(WINDOW + LAYOUT["OUTPUT"], img.output["bytes"]),
                            mem.read(WINDOW + LAYOUT["DEBUG"], img.debug["bytes"]),
                            cycle_records(mem, len(img.program)),
                            mem.read(WINDOW + LAYOUT["TRACE"], img.trace["bytes"])))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(mem.run, background=True)
    sim.add_testbench(bench)
    sim.run()
    return img, results


@pytest.mark.parametrize("prune", [False, True], ids=["dense", "pruned"])
def test_accelerator_micro_vit(prune):
    """A whole (tiny) ViT from one start: LOAD, GEMM (REQ8, REQ16_GELU, RAW_SOFTMAX; weights from
    DDR, BUF, BUF_T), ADD, LAYERNORM, STORE; pruned: a token selector too (MEAN, REQ8_GELU,
    REQ8_SOFTMAX, REQ8_SIGMOID, SELECT, then every descriptor on the new N_live).  Debug build:
    every stored layer result, the TRACE records and the logits bit-exact with
    heatvit.compiler.interpret."""
    from heatvit.compiler import interpret
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = tiny_acc(tokens=16) if prune else tiny_acc()
    blob, inp = micro_vit(acc, seed, debug=True, prune=prune)
    img, [(st, out, dbg, recs, trace)] = run_program(acc, blob, inp, seed)
    want = interpret.run(img, acc, inp, trace=True)
    assert st["ERROR"] == 0, f"seed {seed}: {st}"
    assert trace == want.trace, f"seed {seed}: TRACE records differ"
    if prune:
        from heatvit.compiler import trace as trace_mod
        tokens = trace_mod.read(img, trace).tokens_per_block
        assert tokens[1] < tokens[0] and st["N_LIVE"] == tokens[1], f"seed {seed}: {tokens}, {st}"
    if dbg != want.debug:
        from heatvit.compiler import trace as trace_mod
        tr = trace_mod.read(img, want.trace) if prune else None
        got_steps = interpret.debug_steps(img, dbg, trace=tr)
        want_steps = interpret.debug_steps(img, want.debug, trace=tr)
        for g, w in zip(got_steps, want_steps):
            assert np.array_equal(g.out, w.out), f"seed {seed}: first difference at {w.name} ({w.op})"
        raise AssertionError(f"seed {seed}: DEBUG region differs")
    assert out == want.output, f"seed {seed}: logits differ"
    assert [r[0] for r in recs] == list(range(len(img.program)))


# -- fast whole-model simulation (Verilator, HDL DDR model, no Python per cycle) ------------------

@pytest.mark.slow
def test_accel_fastsim_digits(tmp_path):
    """The digits model (``heatvit.e2e.CONFIG``, the default 16 x 16 config) on one test image
    through the whole accelerator in Verilator: logits equal golden forward_int bit for bit; a
    damaged program reports its error code and index, writes no logits, and the next start is
    right."""
    from heatvit import e2e
    from heatvit.presets import PRESETS
    acc = PRESETS[e2e.CONFIG]
    case = e2e.digits_case(acc, 1, start=7)
    from heatvit.sim.accel_run import run
    from heatvit.sim.runner import simulator_available
    if not simulator_available("verilator"):
        pytest.skip("verilator not installed")
    # the build `heatvit bench e2e --quick` and testbench/test_e2e.py use too
    res = run(acc, case.blob, case.patches, case.logits, tmp_path, damage=True, tag=e2e.TAG,
              ddr_bytes=e2e.DDR_BYTES, verilog=e2e.fast_verilog(acc))
    im = res["images"][0]
    assert im["bit_exact"], f"logits {im['logits']} != golden {case.logits[0].tolist()}"
    d = res["damaged"]
    assert (d["code"], d["index"]) == (d["want_code"], d["want_index"]) and d["output_zero"], d
    assert res["repaired_bit_exact"]


def test_accelerator_unsupported_op_and_watchdog():
    """An accelerator built without an ADD executor answers ADD with CTRL_UNSUPPORTED_OP at its
    index (no hang); a DDR that stops answering trips the watchdog (TIMEOUT at the LOAD, the DMA
    drained once the bus answers again) and the next start runs the program right."""
    from heatvit.compiler import image as image_mod
    from heatvit.compiler import interpret
    from heatvit.errors import ErrorCode
    from heatvit.rtl.accel.top import EXECUTORS
    from heatvit.isa import Op
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = tiny_acc()
    blob, inp = tiny_image(acc, seed, same_buffer=False)
    img = image_mod.read(blob, acc)
    want = interpret.run(img, acc, inp).output
    results = {}
    for name, table in (("no_add", {op: EXECUTORS[op] for op in (Op.LOAD, Op.STORE)}),
                        ("io_add", {op: EXECUTORS[op] for op in (Op.LOAD, Op.STORE, Op.ADD)})):
        dut, mem = accel_bench(acc, seed, executors=table)
        bases = load_image(mem, blob, inp)

        async def bench(ctx, dut=dut, mem=mem, bases=bases, name=name):
            regs = AxiLiteMaster(dut.s_axi)
            if name == "no_add":
                results[name] = [await run_job(ctx, dut, regs, bases)]
                return
            mem.gap = 1.0                                   # the bus stops answering
            for r, addr in bases.items():
                lo, hi = regmap.base_registers(r)
                await regs.write(ctx, regmap.OFFSET[lo], addr & 0xFFFF_FFFF)
                await regs.write(ctx, regmap.OFFSET[hi], addr >> 32)
            await regs.write(ctx, regmap.OFFSET["CTRL"], 1)
            await ctx.tick().repeat(6000)                  # > watchdog_cycles = 4096 without a beat
            assert not ctx.get(dut.irq), "done while the DMA still has a request on the bus"
            mem.gap = 0.2
            mem.mem[LAYOUT["OUTPUT"]:LAYOUT["OUTPUT"] + len(want)] = bytes(len(want))
            for _ in range(20_000):
                if ctx.get(dut.irq):
                    break
                await ctx.tick()
            st = {n: await regs.read(ctx, regmap.OFFSET[n]) for n in ("ERROR", "ERROR_INDEX")}
            again = await run_job(ctx, dut, regs, bases)
            results[name] = [st, again, mem.read(WINDOW + LAYOUT["OUTPUT"], len(want))]

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(mem.run, background=True)
        sim.add_testbench(bench)
        sim.run()
    [st] = results["no_add"]
    assert (st["ERROR"], st["ERROR_INDEX"]) == (ErrorCode.CTRL_UNSUPPORTED_OP, 3), f"seed {seed}: {st}"
    st, again, out = results["io_add"]
    assert st["ERROR"] == ErrorCode.TIMEOUT and st["ERROR_INDEX"] in (0, 1), f"seed {seed}: {st}"
    assert again["ERROR"] == 0 and out == want, f"seed {seed}: {again}"


def test_driver_refuses_foreign_image():
    """Accelerator(config).load refuses an image compiled for another config (digest), a damaged
    one and a non-bytes argument, each with a clear error, before touching the back end."""
    from heatvit.compiler import ImageError
    from heatvit.driver.accel import Accelerator as Driver
    seed = pick_seed()
    a, b = tiny_acc(), tiny_acc(rows=8, cols=8, tokens=8, dim=16)
    blob, _ = tiny_image(a, seed)

    class NoBackend:
        def __getattr__(self, name):
            raise AssertionError(f"back end touched ({name}) for a refused image")

    with pytest.raises(ImageError, match=f"compiled for config {a.digest()}.*{b.digest()}"):
        Driver(b, NoBackend()).load(blob)
    damaged = bytearray(blob)
    damaged[100] ^= 1
    with pytest.raises(ImageError, match="crc32|damaged"):
        Driver(a, NoBackend()).load(bytes(damaged))
    with pytest.raises(TypeError, match="model_image must be the bytes"):
        Driver(a, NoBackend()).load("image.bin")
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        Driver({"rows": 4})
