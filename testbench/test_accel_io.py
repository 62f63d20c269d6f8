"""Amaranth-simulator tests of the layer controller's DMA side and its data-movement executors:
rtl/accel/dma_ports.py (region bases, arbitration of several clients, 4 KiB lines, errors,
abort), rtl/accel/io_exec.py (LOAD, STORE), rtl/accel/copy_exec.py (COPY) and
rtl/accel/cycle_trace.py, bit-exact against ``heatvit.compiler.interpret``'s semantics.

The DDR is a Python AXI4 slave memory (:class:`AxiMem`) with random ready/valid gaps on every
channel; it checks every burst (INCR, beat size, length, no 4 KiB crossing) and answers SLVERR
inside its ``bad`` ranges.  Every client stream has random gaps too.  Seeds: HEATVIT_SEED.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from heatvit.config import DEFAULT
from heatvit.errors import ErrorCode as E
from heatvit.rtl.accel.dma_ports import DmaPorts
from heatvit.rtl.accel.ports import DmaRegion
from heatvit.shell_config import ShellConfig
from heatvit.sim.runner import pick_seed

from accel.streams import send

WINDOW = 0x10000
WINDOW_SIZE = 0x10000


def make_acc(rows=4, cols=4, data_width=32, burst_len=4):
    acc = DEFAULT.with_array(rows, cols)
    return dataclasses.replace(acc, shell=ShellConfig(data_width=data_width, burst_len=burst_len,
                                                      window_base=WINDOW, window_size=WINDOW_SIZE))


class AxiMem:
    """An AXI4 slave memory over the shell's DMA window (``mem[i]`` is byte ``window_base + i``),
    random ready/valid gaps on every channel, bursts checked, SLVERR in ``bad`` byte ranges."""

    def __init__(self, ax, cfg: ShellConfig, rng: random.Random, gap: float = 0.3):
        self.ax, self.cfg, self.rng, self.gap = ax, cfg, rng, gap
        self.mem = bytearray(rng.randbytes(cfg.window_size))
        self.bad: list[tuple[int, int]] = []
        self.bursts: list[tuple[str, int, int]] = []   # (kind, address, beats)
        self.written: list[tuple[int, int]] = []       # (address, strobe) per W beat

    def _check(self, kind, addr, length, size, burst):
        cfg = self.cfg
        beats = length + 1
        assert size == cfg.size_code and burst == 1, f"{kind}: AxSIZE {size} / AxBURST {burst}"
        assert addr % cfg.data_bytes == 0, f"{kind}: unaligned address {addr:#x}"
        assert beats <= cfg.burst_len, f"{kind}: {beats} beats > burst_len {cfg.burst_len}"
        assert addr // 4096 == (addr + beats * cfg.data_bytes - 1) // 4096, \
            f"{kind}: burst at {addr:#x} of {beats} beats crosses a 4 KiB line"
        self.bursts.append((kind, addr, beats))
        lo, hi = addr, addr + beats * cfg.data_bytes
        inside = cfg.window_base <= lo and hi <= cfg.window_end
        return not inside or any(lo < b_hi and b_lo < hi for b_lo, b_hi in self.bad)

    def read(self, addr: int, n: int) -> bytes:
        return bytes(self.mem[addr - self.cfg.window_base:addr - self.cfg.window_base + n])

    def write(self, addr: int, blob: bytes) -> None:
        self.mem[addr - self.cfg.window_base:addr - self.cfg.window_base + len(blob)] = blob

    async def run(self, ctx):
        ax, cfg, rng, db = self.ax, self.cfg, self.rng, self.cfg.data_bytes
        reads, r_cur, aws, wbeats, bs = [], None, [], [], []
        while True:
            ctx.set(ax.arready, rng.random() >= self.gap)
            if r_cur is None and reads:
                r_cur = reads.pop(0)
            rvalid = r_cur is not None and rng.random() >= self.gap
            ctx.set(ax.rvalid, rvalid)
            if rvalid:
                addr, left, err = r_cur
                o = addr - cfg.window_base
                word = int.from_bytes(self.mem[o:o + db], "little") if not err else rng.getrandbits(8 * db)
                ctx.set(ax.rdata, word)
                ctx.set(ax.rresp, 2 if err else 0)
                ctx.set(ax.rlast, left == 1)
            ctx.set(ax.awready, rng.random() >= self.gap)
            ctx.set(ax.wready, rng.random() >= self.gap)
            bvalid = bool(bs) and rng.random() >= self.gap
            ctx.set(ax.bvalid, bvalid)
            if bvalid:
                ctx.set(ax.bresp, 2 if bs[0] else 0)
            (_, _, arvalid, arready, araddr, arlen, arsize, arburst, rready, awvalid, awready, awaddr,
             awlen, awsize, awburst, wvalid, wready, wdata, wstrb, wlast, bready) = await ctx.tick().sample(
                ax.arvalid, ax.arready, ax.araddr, ax.arlen, ax.arsize, ax.arburst, ax.rready,
                ax.awvalid, ax.awready, ax.awaddr, ax.awlen, ax.awsize, ax.awburst,
                ax.wvalid, ax.wready, ax.wdata, ax.wstrb, ax.wlast, ax.bready)
            if arvalid and arready:
                err = self._check("AR", araddr, arlen, arsize, arburst)
                reads.append([araddr, arlen + 1, err])
            if rvalid and rready:
                r_cur[0] += db
                r_cur[1] -= 1
                if r_cur[1] == 0:
                    r_cur = None
            if awvalid and awready:
                err = self._check("AW", awaddr, awlen, awsize, awburst)
                aws.append([awaddr, awlen + 1, err])
            if wvalid and wready:
                wbeats.append((wdata, wstrb, wlast))
            while aws and wbeats:
                wd, ws, wl = wbeats.pop(0)
                addr, left, err = aws[0]
                assert bool(wl) == (left == 1), f"WLAST {wl} with {left} beats left"
                if not err:
                    o = addr - cfg.window_base
                    for i in range(db):
                        if ws >> i & 1:
                            self.mem[o + i] = wd >> (8 * i) & 0xFF
                self.written.append((addr, ws))
                aws[0][0] += db
                aws[0][1] -= 1
                if aws[0][1] == 0:
                    bs.append(aws.pop(0)[2])
            if bvalid and bready:
                bs.pop(0)


def dma_bench(acc, n_read, n_write, seed):
    """(top module, DmaPorts, AxiMem, rng) with the AXI memory running in the background."""
    rng = random.Random(seed)
    top = Module()
    top.submodules.dma = dma = DmaPorts(acc, n_read, n_write)
    mem = AxiMem(dma.m_axi, acc.shell, rng)
    return top, dma, mem, rng


async def read_req(ctx, port, rng, region, offset, beats, gap=0.3):
    """Send one read request, return its ``beats`` data words (random ready gaps)."""
    await send(ctx, port.req, [{"region": region, "offset": offset, "beats": beats}], rng)
    out = []
    while len(out) < beats:
        ready = rng.random() >= gap
        ctx.set(port.data.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.data.valid, port.data.payload)
        if valid and ready:
            out.append(int(payload))
    ctx.set(port.data.ready, 0)
    return out


async def write_req(ctx, port, rng, region, offset, words, strobes):
    await send(ctx, port.req, [{"region": region, "offset": offset, "beats": len(words)}], rng)
    await send(ctx, port.data, [{"data": w, "strb": s} for w, s in zip(words, strobes)], rng)


async def wait_until(ctx, sig, limit=20_000):
    for _ in range(limit):
        if ctx.get(sig):
            return
        await ctx.tick()
    raise AssertionError(f"{sig.name} not high after {limit} cycles")


def run_sim(top, mem, benches, vcd=None):
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(mem.run, background=True)
    for b in benches:
        sim.add_testbench(b)
    sim.run()


# -- DmaPorts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("data_width,burst_len", [(32, 4), (128, 16), (64, 3)])
def test_dma_arbitration(data_width, burst_len):
    """3 read and 2 write clients at once, random requests (many across 4 KiB lines), random
    strobes: every client gets its own data, memory holds exactly the strobed bytes."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = make_acc(data_width=data_width, burst_len=burst_len)
    db = acc.shell.data_bytes
    top, dma, mem, rng = dma_bench(acc, 3, 2, seed)
    base = {r: WINDOW + 0x2000 * int(r) + db * rng.randrange(0, 64) for r in DmaRegion}
    before = bytes(mem.mem)
    expect = bytearray(before)
    results = {}

    def offsets(n_req, lo=0, span=0x1800):
        out = []
        for _ in range(n_req):
            beats = rng.choice([1, 2, rng.randint(1, 40)])
            if rng.random() < 0.5:   # straddle a 4 KiB line
                line = (base_r + 0x1000) // 0x1000 * 0x1000 - base_r
                off = max(0, line - db * rng.randint(1, beats))
            else:
                off = db * rng.randrange(0, (span - beats * db) // db)
            out.append((off, beats))
        return out

    plans = {}
    for i, region in enumerate((DmaRegion.MODEL, DmaRegion.INPUT, DmaRegion.PROGRAM)):
        base_r = base[region]
        plans[("rd", i)] = (region, offsets(6))
    for i, region in enumerate((DmaRegion.OUTPUT, DmaRegion.CYCLES)):
        base_r = base[region]
        plan = []
        for off, beats in offsets(5):
            words = [rng.getrandbits(8 * db) for _ in range(beats)]
            strbs = [rng.choice([(1 << db) - 1, rng.getrandbits(db)]) for _ in range(beats)]
            plan.append((off, words, strbs))
            for b, (w, s) in enumerate(zip(words, strbs)):
                a = base_r + off + b * db - WINDOW
                for j in range(db):
                    if s >> j & 1:
                        expect[a + j] = w >> (8 * j) & 0xFF
        plans[("wr", i)] = (region, plan)

    async def setup(ctx):
        for r, v in base.items():
            ctx.set(dma.base[r], v)

    def reader(i):
        async def bench(ctx):
            await setup(ctx)
            region, plan = plans[("rd", i)]
            got = []
            for off, beats in plan:
                got.append((off, beats, await read_req(ctx, dma.rd[i], rng, region, off, beats)))
            results[("rd", i)] = got
        return bench

    def writer(i):
        async def bench(ctx):
            await setup(ctx)
            region, plan = plans[("wr", i)]
            for off, words, strbs in plan:
                await write_req(ctx, dma.wr[i], rng, region, off, words, strbs)
            await ctx.tick()
            await wait_until(ctx, dma.writes_idle)
            results[("wr", i)] = True
        return bench

    run_sim(top, mem, [reader(0), reader(1), reader(2), writer(0), writer(1)])
    for i, region in enumerate((DmaRegion.MODEL, DmaRegion.INPUT, DmaRegion.PROGRAM)):
        for off, beats, words in results[("rd", i)]:
            a = base[region] + off - WINDOW
            want = [int.from_bytes(before[a + b * db:a + (b + 1) * db], "little") for b in range(beats)]
            assert words == want, f"seed {seed}: read client {i} at {off:#x}, {beats} beats"
    assert results[("wr", 0)] and results[("wr", 1)]
    assert bytes(mem.mem) == bytes(expect), f"seed {seed}: memory differs after the writes"
    crossing = [b for b in mem.bursts if (b[1] % 4096) + b[2] * db == 4096]
    assert crossing, "no burst ended at a 4 KiB line: the test did not exercise line splits"
    assert max(b[2] for b in mem.bursts) <= burst_len


def test_dma_errors_and_abort():
    """Out-of-window and unaligned requests are refused (zeros back, nothing written), SLVERR
    on R and B, abort mid-transfer; after each, ``clear`` and a correct transfer."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = make_acc(data_width=32, burst_len=4)
    db = acc.shell.data_bytes
    top, dma, mem, rng = dma_bench(acc, 2, 2, seed)
    good = {r: WINDOW + 0x2000 * int(r) for r in DmaRegion}
    log = []

    async def check_good(ctx):
        off = db * rng.randrange(0, 64)
        words = await read_req(ctx, dma.rd[1], rng, DmaRegion.INPUT, off, 5)
        a = good[DmaRegion.INPUT] + off
        assert words == [int.from_bytes(mem.read(a + b * db, db), "little") for b in range(5)]
        data = [rng.getrandbits(8 * db) for _ in range(3)]
        await write_req(ctx, dma.wr[1], rng, DmaRegion.DEBUG, off, data, [(1 << db) - 1] * 3)
        await wait_until(ctx, dma.writes_idle)
        await ctx.tick()
        assert mem.read(good[DmaRegion.DEBUG] + off, 3 * db) == b"".join(w.to_bytes(db, "little") for w in data)
        assert ctx.get(dma.error) == 0

    async def clear(ctx):
        ctx.set(dma.clear, 1)
        await ctx.tick()
        ctx.set(dma.clear, 0)

    async def bench(ctx):
        for r, v in good.items():
            ctx.set(dma.base[r], v)
        await check_good(ctx)
        # a read passing the window's end: zeros, error, nothing on the bus
        n_bursts = len(mem.bursts)
        ctx.set(dma.base[DmaRegion.MODEL], WINDOW + WINDOW_SIZE - 4 * db)
        words = await read_req(ctx, dma.rd[0], rng, DmaRegion.MODEL, 0, 5)
        assert words == [0] * 5 and ctx.get(dma.error) == E.ADDRESS_OUT_OF_WINDOW
        assert len(mem.bursts) == n_bursts
        # a write below the window: its beats are taken, nothing written; the first error stays
        ctx.set(dma.base[DmaRegion.OUTPUT], WINDOW - db)
        await write_req(ctx, dma.wr[0], rng, DmaRegion.OUTPUT, 0, [1, 2], [(1 << db) - 1] * 2)
        await wait_until(ctx, dma.writes_idle)
        assert len(mem.bursts) == n_bursts and ctx.get(dma.error) == E.ADDRESS_OUT_OF_WINDOW
        await clear(ctx)
        ctx.set(dma.base[DmaRegion.MODEL], good[DmaRegion.MODEL])
        ctx.set(dma.base[DmaRegion.OUTPUT], good[DmaRegion.OUTPUT])
        await check_good(ctx)
        # unaligned base
        ctx.set(dma.base[DmaRegion.MODEL], good[DmaRegion.MODEL] + 1)
        n_bursts = len(mem.bursts)
        assert await read_req(ctx, dma.rd[0], rng, DmaRegion.MODEL, 0, 2) == [0, 0]
        assert ctx.get(dma.error) == E.UNALIGNED_ADDRESS and len(mem.bursts) == n_bursts
        await clear(ctx)
        ctx.set(dma.base[DmaRegion.MODEL], good[DmaRegion.MODEL])
        # SLVERR on a read, then on a write
        mem.bad = [(good[DmaRegion.MODEL] + 0x100, good[DmaRegion.MODEL] + 0x104)]
        await read_req(ctx, dma.rd[0], rng, DmaRegion.MODEL, 0xF0, 8)
        assert ctx.get(dma.error) == E.AXI_READ_ERROR
        await clear(ctx)
        await check_good(ctx)
        mem.bad = [(good[DmaRegion.OUTPUT] + 0x40, good[DmaRegion.OUTPUT] + 0x44)]
        await write_req(ctx, dma.wr[0], rng, DmaRegion.OUTPUT, 0x40, [7], [1])
        await wait_until(ctx, dma.writes_idle)
        assert ctx.get(dma.error) == E.AXI_WRITE_ERROR
        mem.bad = []
        await clear(ctx)
        await check_good(ctx)
        # abort: a long read and a long write in flight
        out = good[DmaRegion.OUTPUT] + 0x800
        for _ in range(4):
            mem.written.clear()
            await send(ctx, dma.rd[0].req, [{"region": DmaRegion.MODEL, "offset": 0, "beats": 200}], rng)
            await send(ctx, dma.wr[0].req, [{"region": DmaRegion.OUTPUT, "offset": 0x800, "beats": 100}], rng)
            n_data = rng.randint(0, 30)
            await send(ctx, dma.wr[0].data, [{"data": 0x5A5A5A5A, "strb": 0xF}] * n_data, rng)
            ctx.set(dma.rd[0].data.ready, 1)
            for _ in range(rng.randint(0, 40)):
                await ctx.tick()
            ctx.set(dma.rd[0].data.ready, 0)
            ctx.set(dma.abort, 1)
            await ctx.tick()
            ctx.set(dma.abort, 0)
            await ctx.tick()
            await wait_until(ctx, dma.idle)
            written = [a for a, _ in mem.written if out <= a < out + 100 * db]
            assert len(written) <= n_data
            await check_good(ctx)
        log.append("done")

    run_sim(top, mem, [bench])
    assert log == ["done"], f"seed {seed}"


# -- LOAD / STORE / COPY -------------------------------------------------------------------------

from types import SimpleNamespace  # noqa: E402

from heatvit import isa  # noqa: E402
from heatvit.accel_config import BufferConfig  # noqa: E402
from heatvit.compiler.interpret import Machine  # noqa: E402
from heatvit.rtl.accel.copy_exec import CopyExecutor  # noqa: E402
from heatvit.rtl.accel.io_exec import LoadExecutor, StoreExecutor  # noqa: E402

Op, Buf, Region = isa.Op, isa.Buf, isa.Region
REGION_BYTES = 0x2000
REGION_BASE = {Region.MODEL: 0x0000, Region.INPUT: 0x2000, Region.OUTPUT: 0x4000, Region.DEBUG: 0x7000}
BUFS = (Buf.X0, Buf.X1, Buf.H)


def small_acc(rows, cols, data_width, burst_len=4):
    acc = make_acc(rows, cols, data_width, burst_len)
    return dataclasses.replace(acc, buffers=BufferConfig(max_tokens=12, max_dim=40, max_hidden=72))


def word_of(values) -> int:
    return sum((int(x) & 0xFF) << (8 * i) for i, x in enumerate(values))


class BufModel:
    """The token buffers behind executors' ``src``/``dst`` ports, in Python: a read returns the
    word as it is when its command is taken (like TokenBuffer, reads run ahead of writes by up
    to ``depth`` words), writes apply their lane mask; random gaps on every stream."""

    def __init__(self, acc, rng, depth=4, gap=0.3):
        self.L = isa.column_align(acc)
        self.specs = isa.token_buffers(acc)
        self.rng, self.depth, self.gap = rng, depth, gap
        self.bufs = {b: np.array([[rng.randrange(-128, 128) for _ in range(-(-s.cols // self.L) * self.L)]
                                  for _ in range(s.rows)], dtype=np.int64)
                     for b, s in self.specs.items() if b in BUFS}
        self.src = self.dst = Buf.X0
        self.flush = False   # the top flushes the buffers' read pipelines on abort

    def serve(self, ex):
        L, rng, gap = self.L, self.rng, self.gap

        async def run(ctx):
            queue = []
            while True:
                if self.flush:
                    queue.clear()
                cmd_ready = len(queue) < self.depth and rng.random() >= gap
                ctx.set(ex.src.cmd.ready, cmd_ready)
                dvalid = bool(queue) and rng.random() >= gap
                ctx.set(ex.src.data.valid, dvalid)
                if dvalid:
                    ctx.set(ex.src.data.payload, queue[0])
                wready = rng.random() >= gap
                ctx.set(ex.dst.ready, wready)
                _, _, cv, cp, dr, wv, wp = await ctx.tick().sample(
                    ex.src.cmd.valid, ex.src.cmd.payload, ex.src.data.ready, ex.dst.valid, ex.dst.payload)
                if dvalid and dr:
                    queue.pop(0)
                if cv and cmd_ready:
                    r, w = int(cp.row), int(cp.word)
                    queue.append(word_of(self.bufs[self.src][r, w * L:(w + 1) * L]))
                if wv and wready:
                    r, w, data, mask = int(wp.row), int(wp.word), int(wp.data), int(wp.mask)
                    buf = self.bufs[self.dst]
                    assert r < buf.shape[0] and (w + 1) * L <= buf.shape[1], f"write outside {self.dst!r}: {r}, {w}"
                    for j in range(L):
                        if mask >> j & 1:
                            v = data >> (8 * j) & 0xFF
                            buf[r, w * L + j] = v - 256 if v & 0x80 else v
        return run


def fields_of(d, n_live):
    m, k, n = isa.live_dims(d, n_live)
    return {**{f.name: int(getattr(d, f.name)) for f in isa.FIELDS}, "live_m": m, "live_k": k, "live_n": n}


def random_desc(acc, rng, op, n_live, in_place=0.5):
    """A random valid LOAD / STORE / COPY (every column count mod lanes, 1 row .. all rows),
    live row count > 0 at ``n_live``."""
    L = isa.column_align(acc)
    T = acc.buffers.max_tokens
    specs = isa.token_buffers(acc)
    while True:
        b1, b2 = rng.choice(BUFS), rng.choice(BUFS)
        cols = min(specs[b1].cols, specs[b2].cols) if op == Op.COPY else specs[b1].cols
        n = rng.choice([1, L - 1 or 1, L, L + 1, rng.randint(1, cols), cols])
        n = min(n, cols)
        m = rng.choice([1, T, rng.randint(1, T)])
        m_live = rng.random() < 0.5

        def col(width):
            return L * rng.randint(0, (width - n) // L)
        row1, row2 = rng.randint(0, T - m), rng.randint(0, T - m)
        stride = 16 * (-(-n // 16) + rng.choice([0, 0, 1, 3]))
        addr = 64 * rng.randint(0, (REGION_BYTES - stride * m - 64) // 64)
        if op == Op.LOAD:
            d = isa.Descriptor(Op.LOAD, m_live=m_live, region=rng.choice(list(Region)), dst=b1, dst_row=row1,
                               dst_col=col(specs[b1].cols), m=m, stride=stride, n=n, addr=addr)
        elif op == Op.STORE:
            d = isa.Descriptor(Op.STORE, m_live=m_live, region=rng.choice(isa.WRITABLE_REGIONS), src=b1,
                               src_row=row1, src_col=col(specs[b1].cols), m=m, stride=stride, n=n, addr=addr)
        else:
            col1, col2 = col(specs[b1].cols), col(specs[b2].cols)
            if rng.random() < in_place:   # overlapping windows of one buffer
                b2 = b1
                row2 = min(T - m, max(0, row1 + rng.randint(-2, 2)))
                col2 = min(L * ((specs[b1].cols - n) // L), max(0, col1 + L * rng.randint(-1, 1)))
            d = isa.Descriptor(Op.COPY, m_live=m_live, src=b1, dst=b2, src_row=row1, dst_row=row2,
                               src_col=col1, dst_col=col2, m=m, n=n)
        isa.check(d, acc, n_live)
        if isa.live_dims(d, n_live)[0] > 0:
            return d


async def run_job(ctx, ex, fields, rng, limit=50_000):
    await send(ctx, ex.cmd, [fields], rng)
    for _ in range(limit):
        done, err = ctx.get(ex.done), ctx.get(ex.error)
        await ctx.tick()
        if done:
            return err
    raise AssertionError("executor never pulsed done")


@pytest.mark.parametrize("rows,cols,data_width", [(4, 4, 32), (4, 4, 128), (8, 4, 32), (4, 8, 64), (16, 16, 32)])
def test_load_store_copy(rows, cols, data_width):
    """Random LOAD / STORE / COPY descriptors, one after another, bit-exact with
    ``interpret.Machine.step`` (token buffers and the DDR regions, every byte)."""
    run_jobs(small_acc(rows, cols, data_width), [Op.LOAD, Op.STORE, Op.COPY] * 6)


@pytest.mark.parametrize("rows,cols", [(4, 4), (8, 4)])
def test_copy_in_place(rows, cols):
    """COPY between overlapping windows of one buffer (rows and words apart both ways)."""
    run_jobs(small_acc(rows, cols, 32), [Op.COPY] * 24, in_place=0.9)


@pytest.mark.parametrize("rows,cols,data_width", [(4, 4, 128), (8, 4, 32)])
def test_abort(rows, cols, data_width):
    """``abort`` (executor and DMA together, as the top does) at a random point of a job: no
    ``done``, back to idle, and the next jobs bit-exact."""
    run_jobs(small_acc(rows, cols, data_width), [Op.LOAD, Op.STORE, Op.COPY] * 5, abort=0.5)


def run_jobs(acc, ops, in_place=0.5, abort=0.0):
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    top, dma, mem, rng = dma_bench(acc, 1, 1, seed)
    top.submodules.load = load = LoadExecutor(acc)
    top.submodules.store = store = StoreExecutor(acc)
    top.submodules.copy = copy = CopyExecutor(acc)
    wiring.connect(top, load.dma_rd, dma.rd[0])
    wiring.connect(top, store.dma_wr, dma.wr[0])
    bm = BufModel(acc, rng)
    T = acc.buffers.max_tokens
    machine = Machine(SimpleNamespace(blob=b""), acc)
    for b in BUFS:
        machine.bufs[b][:] = bm.bufs[b][:, :machine.bufs[b].shape[1]]
    expect = bytearray(mem.mem)
    regions = {r: memoryview(expect)[o:o + REGION_BYTES] for r, o in REGION_BASE.items()}
    ops = list(ops)
    rng.shuffle(ops)
    done, aborted = [], []

    async def abort_job(ctx, ex, fields):
        """Start a job, abort it after a few cycles; False if it finished first."""
        await send(ctx, ex.cmd, [fields], rng)
        for _ in range(rng.randint(0, 80)):
            if ctx.get(ex.done):
                assert ctx.get(ex.error) == 0
                await ctx.tick()
                await wait_until(ctx, dma.writes_idle)
                return False
            await ctx.tick()
        for sig in (ex.abort, dma.abort):
            ctx.set(sig, 1)
        bm.flush = True
        await ctx.tick()
        for sig in (ex.abort, dma.abort):
            ctx.set(sig, 0)
        for _ in range(2):
            await ctx.tick()
        bm.flush = False
        for _ in range(200):
            assert not ctx.get(ex.done), "done after abort"
            await ctx.tick()
        await wait_until(ctx, dma.idle)
        assert ctx.get(ex.cmd.ready), "executor not idle after abort"
        aborted.append(1)
        return True

    async def bench(ctx):
        for r, o in REGION_BASE.items():
            ctx.set(dma.base[r], WINDOW + o)
        for i, op in enumerate(ops):
            machine.n_live = rng.choice([T, rng.randint(1, T)])
            d = random_desc(acc, rng, op, machine.n_live, in_place)
            ex = {Op.LOAD: load, Op.STORE: store, Op.COPY: copy}[op]
            bm.src, bm.dst = (Buf(d.src), Buf(d.dst))
            if op == Op.LOAD:
                bm.dst = Buf(d.dst)
            if rng.random() < abort:
                if await abort_job(ctx, ex, fields_of(d, machine.n_live)):
                    for b in BUFS:   # the aborted job left some of its writes: take them as they are
                        machine.bufs[b][:] = bm.bufs[b][:, :machine.bufs[b].shape[1]]
                    expect[:] = mem.mem
                    continue
            else:
                assert await run_job(ctx, ex, fields_of(d, machine.n_live), rng) == 0
            if op == Op.STORE:
                await wait_until(ctx, dma.writes_idle)
            machine.step(i, d, regions)
            what = f"seed {seed}: job {i} {d}"
            for b in BUFS:
                got = bm.bufs[b][:, :machine.bufs[b].shape[1]]
                assert np.array_equal(got, machine.bufs[b]), f"{what}: buffer {b.name} differs"
            assert bytes(mem.mem) == bytes(expect), f"{what}: DDR differs"
            assert ctx.get(dma.error) == 0
            done.append(i)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(mem.run, background=True)
    for ex in (load, store, copy):
        sim.add_testbench(bm.serve(ex), background=True)
    sim.add_testbench(bench)
    sim.run()
    assert len(done) + len(aborted) == len(ops)
    assert not abort or aborted, "no job was aborted"


# -- cycle trace ---------------------------------------------------------------------------------

from heatvit.rtl.accel.cycle_trace import CycleTrace  # noqa: E402


@pytest.mark.parametrize("data_width", [32, 64, 128])
def test_cycle_trace(data_width):
    """Records at random gaps (and out of order indices) while another client writes through
    the same DMA: every record at 16 * index of CYCLES, four LE uint32; nothing else written."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = make_acc(data_width=data_width, burst_len=4)
    db = acc.shell.data_bytes
    top, dma, mem, rng = dma_bench(acc, 1, 2, seed)
    top.submodules.trace = tr = CycleTrace(acc)
    wiring.connect(top, tr.dma_wr, dma.wr[0])
    cycles, other = WINDOW + 0x3000 - 16 * 40, WINDOW + 0x8000
    idx = list(range(100))
    rng.shuffle(idx)
    recs = [{"index": i, "opcode": rng.randrange(1, 9), "start": rng.getrandbits(32), "end": rng.getrandbits(32)}
            for i in idx[:60]]
    expect = bytearray(mem.mem)
    for r in recs:
        o = cycles - WINDOW + 16 * r["index"]
        expect[o:o + 16] = b"".join(r[k].to_bytes(4, "little") for k in ("index", "opcode", "start", "end"))
    blob = [rng.getrandbits(8 * db) for _ in range(40)]
    expect[other - WINDOW:other - WINDOW + 40 * db] = b"".join(w.to_bytes(db, "little") for w in blob)
    flags = []

    async def records(ctx):
        ctx.set(dma.base[DmaRegion.CYCLES], cycles)
        ctx.set(dma.base[DmaRegion.DEBUG], other)
        await send(ctx, tr.trace, recs, rng, gap=0.5)
        await ctx.tick()
        await wait_until(ctx, tr.idle)
        flags.append("records")

    async def writer(ctx):
        for k in range(0, 40, 8):
            await write_req(ctx, dma.wr[1], rng, DmaRegion.DEBUG, k * db, blob[k:k + 8], [(1 << db) - 1] * 8)
        flags.append("writer")

    async def finish(ctx):
        while len(flags) < 2:
            await ctx.tick()
        await wait_until(ctx, dma.writes_idle)
        flags.append("idle")

    run_sim(top, mem, [records, writer, finish])
    assert flags[-1] == "idle"
    assert bytes(mem.mem) == bytes(expect), f"seed {seed}"


# -- with real token buffers, Verilog ------------------------------------------------------------

from amaranth.hdl import Signal  # noqa: E402

from heatvit.rtl.accel.token_buffer import TokenBuffer  # noqa: E402
from heatvit.sim.runner import export_verilog  # noqa: E402


def _mux_stream(m, sel, sink, sources):
    """``sink`` fed by ``sources[sel]`` (payload, valid; ready back to the selected one)."""
    for i, src in enumerate(sources):
        with m.If(sel == i):
            m.d.comb += [sink.payload.eq(src.payload), sink.valid.eq(src.valid), src.ready.eq(sink.ready)]


@pytest.mark.parametrize("rows,cols,data_width", [(4, 4, 32), (8, 4, 128)])
def test_load_copy_store_token_buffer(rows, cols, data_width):
    """LOAD -> COPY (in place) -> STORE through a real TokenBuffer (the executors' ports wired
    as the top wires them), bit-exact with interpret.Machine."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = small_acc(rows, cols, data_width)
    top, dma, mem, rng = dma_bench(acc, 1, 1, seed)
    spec = isa.token_buffers(acc)[Buf.H]
    L = isa.column_align(acc)
    top.submodules.buf = buf = TokenBuffer(spec.rows, spec.cols, L)
    top.submodules.load = load = LoadExecutor(acc)
    top.submodules.store = store = StoreExecutor(acc)
    top.submodules.copy = copy = CopyExecutor(acc)
    wiring.connect(top, load.dma_rd, dma.rd[0])
    wiring.connect(top, store.dma_wr, dma.wr[0])
    sel_wr, sel_rd = Signal(), Signal()
    _mux_stream(top, sel_wr, buf.wr, [load.dst, copy.dst])
    _mux_stream(top, sel_rd, buf.rd_cmd, [store.src.cmd, copy.src.cmd])
    for i, ex in enumerate((store, copy)):
        with top.If(sel_rd == i):
            top.d.comb += [ex.src.data.payload.eq(buf.rd.payload), ex.src.data.valid.eq(buf.rd.valid),
                           buf.rd.ready.eq(ex.src.data.ready)]
    T = acc.buffers.max_tokens
    machine = Machine(SimpleNamespace(blob=b""), acc)
    expect = bytearray(mem.mem)
    regions = {r: memoryview(expect)[o:o + REGION_BYTES] for r, o in REGION_BASE.items()}
    n = spec.cols - rng.randrange(0, 2 * L)
    m = T
    load_d = isa.Descriptor(Op.LOAD, region=Region.INPUT, dst=Buf.H, m=m, n=n, stride=16 * (-(-n // 16) + 1), addr=128)
    jobs = [(load, load_d, 0, 0)]
    for _ in range(4):
        k = rng.randint(1, T - 1)
        nn = rng.randint(1, n - L)
        jobs.append((copy, isa.Descriptor(Op.COPY, src=Buf.H, dst=Buf.H, src_row=rng.choice([0, T - k]),
                                          dst_row=rng.choice([0, T - k]), src_col=rng.choice([0, L]),
                                          dst_col=rng.choice([0, L]), m=k, n=nn), 1, 1))
    jobs.append((store, isa.Descriptor(Op.STORE, region=Region.OUTPUT, src=Buf.H, m=m, n=n,
                                       stride=16 * (-(-n // 16) + 2), addr=64), 0, 0))
    finished = []

    async def bench(ctx):
        for r, o in REGION_BASE.items():
            ctx.set(dma.base[r], WINDOW + o)
        for i, (ex, d, w_sel, r_sel) in enumerate(jobs):
            ctx.set(sel_wr, w_sel)
            ctx.set(sel_rd, r_sel)
            assert await run_job(ctx, ex, fields_of(d, T), rng) == 0
            await wait_until(ctx, dma.writes_idle)
            machine.n_live = T
            machine.step(i, d, regions)
        finished.append(1)

    run_sim(top, mem, [bench])
    assert finished
    assert bytes(mem.mem) == bytes(expect), f"seed {seed}: OUTPUT differs"


def test_export_verilog():
    """Every block elaborates to Verilog (R != C, 64-bit AXI)."""
    acc = small_acc(8, 4, 64)
    for comp in (DmaPorts(acc, 3, 2), LoadExecutor(acc), StoreExecutor(acc), CopyExecutor(acc), CycleTrace(acc)):
        assert "module" in export_verilog(comp, type(comp).__name__.lower())


def test_cycle_trace_abort():
    """Abort (trace writer and DMA together) with records buffered and in flight: back to idle,
    and the next job's records all written."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = make_acc(data_width=32, burst_len=4)
    top, dma, mem, rng = dma_bench(acc, 1, 1, seed)
    top.submodules.trace = tr = CycleTrace(acc)
    wiring.connect(top, tr.dma_wr, dma.wr[0])
    cycles = WINDOW + 0x1000
    flags = []

    def recs(lo, hi):
        return [{"index": i, "opcode": rng.randrange(1, 9), "start": rng.getrandbits(32),
                 "end": rng.getrandbits(32)} for i in range(lo, hi)]

    async def bench(ctx):
        ctx.set(dma.base[DmaRegion.CYCLES], cycles)
        for round_ in range(5):
            await send(ctx, tr.trace, recs(0, rng.randint(1, 6)), rng, gap=0.1)
            for _ in range(rng.randint(0, 10)):
                await ctx.tick()
            for sig in (tr.abort, dma.abort):
                ctx.set(sig, 1)
            await ctx.tick()
            for sig in (tr.abort, dma.abort):
                ctx.set(sig, 0)
            await ctx.tick()
            await wait_until(ctx, dma.idle)
            assert ctx.get(tr.idle)
            good = recs(100, 100 + rng.randint(1, 8))
            await send(ctx, tr.trace, good, rng)
            await ctx.tick()
            await wait_until(ctx, tr.idle)
            await wait_until(ctx, dma.writes_idle)
            for r in good:
                want = b"".join(r[k].to_bytes(4, "little") for k in ("index", "opcode", "start", "end"))
                assert mem.read(cycles + 16 * r["index"], 16) == want, f"seed {seed}: round {round_}"
        flags.append(1)

    run_sim(top, mem, [bench])
    assert flags


def test_zero_rows():
    """A command of 0 live rows (the sequencer skips these; defensive): ``done`` at once, no
    request, no buffer access."""
    acc = small_acc(4, 4, 32)
    rng = random.Random(pick_seed())
    top = Module()
    exs = [LoadExecutor(acc), StoreExecutor(acc), CopyExecutor(acc)]
    for i, ex in enumerate(exs):
        top.submodules[f"ex{i}"] = ex
    seen = []

    async def bench(ctx):
        for ex in exs:
            d = isa.Descriptor(Op.COPY, m_live=1, src=Buf.X0, dst=Buf.X1, src_row=5, m=3, n=7)
            await send(ctx, ex.cmd, [fields_of(d, 5)], rng)
            for _ in range(3):
                assert not (ctx.get(ex.dma_rd.req.valid) or ctx.get(ex.dma_wr.req.valid)
                            or ctx.get(ex.src.cmd.valid) or ctx.get(ex.dst.valid))
                if ctx.get(ex.done):
                    seen.append(ex)
                await ctx.tick()
        assert seen == exs

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
