"""Amaranth-simulator test of rtl/accel/descriptor.py: the error code of every descriptor equals
the first failing check of heatvit.isa.decode + heatvit.isa.check (with the live token count),
on valid descriptors, near-limit ones and random corruptions, every opcode.  Seeds: HEATVIT_SEED."""

import dataclasses
import random

import pytest
from amaranth.sim import Simulator

from heatvit import isa
from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.presets import PRESETS
from heatvit.rtl.accel.descriptor import DescriptorChecker
from heatvit.sim.runner import pick_seed

from accel.streams import recv, send

ACC = {
    "default": AcceleratorConfig(),
    "4x4": AcceleratorConfig(gemm=GemmConfig(rows=4, cols=4, act_buffer_words=512, max_m=64, max_k=512,
                                             max_n=256, weight_fifo_depth=8, out_fifo_depth=4)),
}
ACC["4x4-noselect"] = dataclasses.replace(ACC["4x4"], selectors=False)
"""No token-selector hardware: SELECT, MEAN and REQ8_SIGMOID answer CTRL_UNSUPPORTED_OP."""
ACC["8x4"] = AcceleratorConfig(gemm=GemmConfig(rows=8, cols=4, act_buffer_words=512, max_m=64, max_k=512,
                                               max_n=256, weight_fifo_depth=8, out_fifo_depth=4))
"""R != C, a weight tile of 32 bytes (the checker's DDR bounds in 64-byte units round it up)."""
ACC["zcu102"] = PRESETS["zcu102"]


def golden_code(words, acc, n_live) -> int:
    try:
        d = isa.decode(words)
        isa.check(d, acc, n_live)
    except isa.DescriptorError as e:
        return int(e.code)
    return 0


def random_descriptor(rng: random.Random, acc) -> list[int]:
    """Fields drawn around the limits that matter (0, 1, buffer sizes +- 1, aligned or not)."""
    lim = [0, 1, 2, 3, 16, 63, 64, acc.buffers.max_tokens, acc.buffers.max_tokens + 1, acc.buffers.max_dim,
           acc.gemm.max_m, acc.gemm.max_m + 1, acc.gemm.max_k, acc.gemm.max_n]
    op = rng.choice(list(isa.Op))
    kw = {}
    for fd in isa.op_fields(op):
        if fd.name == "opcode":
            continue
        r = rng.random()
        if fd.name in ("src", "dst", "aux"):
            v = rng.choice(list(isa.Buf)) if r < 0.9 else rng.randrange(16)
        elif fd.name == "epilogue":
            v = rng.randrange(len(isa.Epilogue)) if r < 0.9 else rng.randrange(16)
        elif fd.name == "sparse":
            v = int(r < 0.3)
        elif fd.width <= 4:
            v = rng.randrange(4) if r < 0.9 else rng.randrange(1 << fd.width)
        elif fd.name in ("src_col", "dst_col", "aux_col"):
            v = rng.choice([0, 16, 32, 64, 128, 5, 192]) if r < 0.9 else rng.randrange(1 << 16)
        elif fd.name in ("src_row", "dst_row", "aux_row"):
            v = rng.choice([0, 0, 1, 7, 60]) if r < 0.9 else rng.randrange(1 << 16)
        elif fd.name == "addr":
            v = rng.choice([0, 64 * rng.randrange(1000), 0xFFFF_FFC0, 32]) if r < 0.9 else rng.getrandbits(32)
        elif fd.name == "stride":
            v = rng.choice([16, 64, 192, 768, 8, 0]) if r < 0.9 else rng.randrange(1 << 16)
        elif fd.name in ("m", "k", "n"):
            v = rng.choice(lim + [rng.randrange(1, 200)]) if r < 0.9 else rng.randrange(1 << 16)
        elif fd.name == "heads":
            v = rng.choice([0, 1, 3, 4, 12]) if r < 0.9 else rng.randrange(256)
        elif fd.name == "threshold":
            v = rng.choice([0, 1000, acc.toksel.score_max, acc.toksel.score_max + 1]) if r < 0.9 else rng.randrange(1 << 16)
        elif fd.name == "a_col":
            v = rng.choice([0, 3, 64, 180]) if r < 0.9 else rng.randrange(1 << 16)
        elif fd.name == "tiles":
            if not kw.get("sparse") and r < 0.85:          # dense: tiles 0 (else CTRL_BAD_FIELD)
                v = 0
            else:
                v = rng.choice([0, 1, 3, 12, 16, 17, 144, 145]) if r < 0.95 else rng.randrange(1 << fd.width)
        elif fd.name == "version":
            v = isa.isa_version_word()
        else:
            v = rng.getrandbits(fd.width) if r < 0.5 else rng.randrange(1 << min(fd.width, 8))
        kw[fd.name] = v & fd.mask
    words = isa.encode(isa.Descriptor(opcode=op, **kw))
    p = rng.random()
    if p < 0.08:                                   # a stray bit anywhere
        words[rng.randrange(isa.DESC_WORDS)] ^= 1 << rng.randrange(32)
    elif p < 0.12:                                 # an unknown opcode
        words[0] = (words[0] & ~0xFF) | rng.choice([0, 0x08, 0x0E, 0xFF])
    return words


def sparse_descriptors(acc) -> list[list[int]]:
    """Block-sparse GEMMs: ``tiles`` around the tile grid, parameter blocks ending exactly at
    4 GiB and one beat past it (the bitmap and sparse weight parts' sizes)."""
    out = []
    for k, n in ((48, 16), (64, 144), (100, 200)):
        grid = isa.tile_grid_size(acc, isa.Descriptor(isa.Op.GEMM, k=k, n=n))
        for tiles in (0, 1, grid - 1, grid, grid + 1):
            for ep in (isa.Epilogue.REQ8, isa.Epilogue.REQ16_GELU):
                d = isa.Descriptor(isa.Op.GEMM, epilogue=ep, sparse=1, tiles=max(tiles, 0), src=isa.Buf.N,
                                   dst=isa.Buf.H, m=4, k=k, n=n, addr=0)
                size = isa.param_block_bytes(acc, d)
                for addr in (0, (1 << 32) - size, (1 << 32) - size + 64):
                    out.append(isa.encode(d.with_(addr=addr & ~63 & 0xFFFF_FFFF)))
    return out


def ddr_edge_descriptors(acc) -> list[list[int]]:
    """Every opcode with a DDR part at ``addr`` with its last byte at 4 GiB and one 64-byte
    block past it (and just inside): dense GEMMs of every epilogue (weights from DDR and from a
    buffer), LAYERNORM, SELECT, LOAD and STORE, at several sizes."""
    B, O = isa.Buf, isa.Op
    ds = []
    for k, n in ((16, 16), (48, 40), (100, 200), (acc.gemm.max_k, acc.gemm.max_n)):
        for ep in isa.Epilogue:
            for wsrc in (isa.WSrc.DDR, isa.WSrc.BUF):
                ds.append(isa.Descriptor(O.GEMM, epilogue=ep, wsrc=wsrc, src=B.N, dst=B.H, aux=B.QKV, m=4, k=k, n=n))
    for n in (1, 7, 8, 9, 16, 17, 192, acc.nonlinear.max_dim):
        ds.append(isa.Descriptor(O.LAYERNORM, src=B.X0, dst=B.N, m=3, n=n))
    for m in (1, 8, 9, min(acc.toksel.max_tokens, acc.buffers.max_tokens)):
        ds.append(isa.Descriptor(O.SELECT, src=B.X0, dst=B.X1, aux=B.P, heads=1, m=m, n=acc.toksel.lanes))
    for op in (O.LOAD, O.STORE):
        for m, stride in ((1, 16), (5, 48), (60, 768)):
            ds.append(isa.Descriptor(op, region=isa.WRITABLE_REGIONS[0], src=B.X0, dst=B.X0, m=m, n=16,
                                     stride=stride))
    out = []
    for d in ds:
        size = (d.stride * d.m if d.opcode in (O.LOAD, O.STORE) else
                isa.trace_record_bytes(d.m) if d.opcode == O.SELECT else isa.param_block_bytes(acc, d))
        top = (1 << 32) - size
        for addr in (top - 64, top, top + 64):      # 64-byte aligned: inside, the last fit, past
            out.append(isa.encode(d.with_(addr=min(max(0, addr), (1 << 32) - 64) & ~63)))
    return out


@pytest.mark.parametrize("name", list(ACC))
def test_descriptor_checker(name):
    seed = pick_seed()
    rng = random.Random(seed)
    acc = ACC[name]
    cases = [(random_descriptor(rng, acc), rng.choice([1, 2, 17, 50, acc.buffers.max_tokens]))
             for _ in range(1200)]
    cases += [(w, 17) for w in sparse_descriptors(acc)]
    edges = ddr_edge_descriptors(acc)
    cases += [(w, 17) for w in edges]
    want = [golden_code(w, acc, nl) for w, nl in cases]
    dut = DescriptorChecker(acc)
    got = []

    async def source(ctx):
        for words, nl in cases:
            ctx.set(dut.n_live, nl)
            await send(ctx, dut.i, [words], rng, gap=0.2)
            (p,) = await recv(ctx, dut.o, 1, rng, gap=0.2)
            got.append(int(p.code))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.run()
    codes = {c for c in want}
    assert len(codes) >= 8, f"seed {seed}: only codes {sorted(codes)} exercised"
    ops = {w[0] & 0xFF for (w, _), c in zip(cases, want) if c == 0}
    absent = {int(isa.Op.SELECT)} | (set() if acc.selectors else {int(o) for o in isa.SELECTOR_OPS})
    assert ops >= {int(o) for o in isa.Op} - absent, f"seed {seed}: runnable ops {sorted(ops)}"
    if not acc.selectors:
        assert not ops & {int(o) for o in isa.SELECTOR_OPS}, f"seed {seed}: runnable ops {sorted(ops)}"
        assert isa.ErrorCode.CTRL_UNSUPPORTED_OP in codes, f"seed {seed}: codes {sorted(codes)}"
    edge = {}
    for (words, _), c in zip(cases[-len(edges):], want[-len(edges):]):
        edge.setdefault(words[0] & 0xFF, set()).add(c)
    for op in (isa.Op.GEMM, isa.Op.LAYERNORM, isa.Op.LOAD, isa.Op.STORE):
        # runnable just inside 4 GiB, refused past it (SELECT's trace record, one 64-byte block at
        # these token counts, cannot pass it from an aligned addr)
        assert {0, int(isa.ErrorCode.CTRL_BAD_ADDRESS)} <= edge[op], f"{op.name}: edge codes {sorted(edge[op])}"
    for (words, nl), w, g in zip(cases, want, got):
        assert g == w, (f"seed {seed}: n_live {nl}, words {[hex(x) for x in words]}: code {g} != golden {w}"
                        f" ({isa.decode(words) if w not in (32, 33) else 'undecodable'})")


def test_descriptor_checker_back_to_back():
    """Descriptors streamed back to back with random gaps on both sides (``n_live`` fixed): the
    pipeline's stages freeze on ``o``'s backpressure and lose or repeat nothing."""
    seed = pick_seed()
    rng = random.Random(seed)
    acc = ACC["4x4"]
    words = [random_descriptor(rng, acc) for _ in range(300)] + ddr_edge_descriptors(acc)
    want = [golden_code(w, acc, 17) for w in words]
    dut = DescriptorChecker(acc)
    got = []

    async def source(ctx):
        ctx.set(dut.n_live, 17)
        await send(ctx, dut.i, words, rng, gap=0.3)

    async def sink(ctx):
        got.extend(int(p.code) for p in await recv(ctx, dut.o, len(words), rng, gap=0.5))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    assert got == want, f"seed {seed}: first difference at {next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"
