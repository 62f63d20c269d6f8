"""Amaranth-simulator test of rtl/accel/select_exec.py: SELECT descriptors bit-exact against the
reference interpreter (``heatvit.compiler.interpret.Machine``: ``combine_scores`` then
``decision.stage_int``, the trace record of ``isa.pack_trace_record``), chained stages (N_live
and N_tail carried from one descriptor's result to the next, so later stages have a package
tail), the issue-12 bad inputs (a threshold that keeps nothing, one that keeps everything, every
score equal), refused commands, ``abort``; R == C and R != C arrays.  The token buffers are a
Python model with random latency and random valid/ready gaps on every stream, which also checks
that in-place compaction never reads a lane this descriptor has already written.
Seeds: HEATVIT_SEED (logged)."""

from __future__ import annotations

import random
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from heatvit import isa
from heatvit.compiler import compile_model, interpret, models, quantize_for, read_image
from heatvit.compiler.interpret import Machine
from heatvit.config import DEFAULT, AcceleratorConfig
from heatvit.errors import ErrorCode as E
from heatvit.isa import Buf, Descriptor, Op
from heatvit.rtl.accel.ports import DmaRegion
from heatvit.rtl.accel.select_exec import SelectExecutor
from heatvit.sim.runner import pick_seed

from accel.streams import send


def word_of(values) -> int:
    return sum((int(x) & 0xFF) << (8 * i) for i, x in enumerate(values))


def fields(d: Descriptor, n_live: int) -> dict:
    """The sequencer's ``exec`` fields of a descriptor (fields of other opcodes 0, live shape)."""
    out = {f.name: (getattr(d, f.name) if d.opcode in f.ops else 0) for f in isa.FIELDS}
    m, k, n = isa.live_dims(d, n_live)
    return {**out, "live_m": m, "live_k": k, "live_n": n}


OUTSTANDING = 3


class Harness:
    """The executor with Python token buffers ``X`` (src = dst) and ``QKV`` (aux) and a DMA sink."""

    def __init__(self, acc, seed: int, max_heads=None, gap: float = 0.35, latency: int = 4):
        self.acc, self.rng, self.gap, self.latency = acc, random.Random(seed), gap, latency
        self.dut = SelectExecutor(acc, max_heads=max_heads)
        self.A = isa.column_align(acc)
        self.bufs = None                    # numpy buffers (Machine.bufs layout), set per run
        self.events = []                    # (done, error, set_live, new_n_live, new_n_tail)
        self.dma = []                       # [region, offset, beats, [data...], [strb...]]
        self.written = set()                # (buffer, row, column) written by the running descriptor
        self.hazards = []
        self.src_reads = 0
        self.current = None                 # (n_tokens, ratio) of the running descriptor
        self.abort_at = None
        self.cycle = 0
        self.cycles = []                    # cycles from offering cmd to done, per descriptor

    def lanes(self, buf, row, word):
        return self.bufs[buf][row, word * self.A:(word + 1) * self.A]

    async def memory(self, ctx):
        dut, rng, A = self.dut, self.rng, self.A
        src_q, aux_q = deque(), deque()
        cycle = 0
        U = self.acc.toksel.lanes
        while True:
            g = self.gap
            for q, port in ((src_q, dut.src.data), (aux_q, dut.aux.data)):
                if q and q[0][0] <= cycle and rng.random() >= g:
                    ctx.set(port.valid, 1)
                    ctx.set(port.payload, q[0][1])
                else:
                    ctx.set(port.valid, 0)
            # A read port holds at most OUTSTANDING words (a BRAM pipeline, not a deep FIFO).
            for q, port in ((src_q, dut.src.cmd), (aux_q, dut.aux.cmd)):
                ctx.set(port.ready, len(q) < OUTSTANDING and rng.random() >= g)
            for port in (dut.dst, dut.dma_wr.req, dut.dma_wr.data):
                ctx.set(port.ready, rng.random() >= g)
            if self.abort_at is not None and cycle == self.abort_at:
                ctx.set(dut.abort, 1)
            else:
                ctx.set(dut.abort, 0)
            sigs = [dut.src.cmd.valid, dut.src.cmd.ready, dut.src.cmd.payload,
                    dut.src.data.valid, dut.src.data.ready,
                    dut.aux.cmd.valid, dut.aux.cmd.ready, dut.aux.cmd.payload,
                    dut.aux.data.valid, dut.aux.data.ready,
                    dut.dst.valid, dut.dst.ready, dut.dst.payload,
                    dut.dma_wr.req.valid, dut.dma_wr.req.ready, dut.dma_wr.req.payload,
                    dut.dma_wr.data.valid, dut.dma_wr.data.ready, dut.dma_wr.data.payload,
                    dut.done, dut.error, dut.set_live, dut.new_n_live, dut.new_n_tail, dut.abort]
            (_, _, sc_v, sc_r, sc_p, sd_v, sd_r, ac_v, ac_r, ac_p, ad_v, ad_r, w_v, w_r, w_p,
             rq_v, rq_r, rq_p, dd_v, dd_r, dd_p, done, error, set_live, nl, nt, abort) = \
                await ctx.tick().sample(*sigs)
            cycle += 1
            self.cycle = cycle
            if abort:
                src_q.clear()
                aux_q.clear()
                continue
            # Reads see the buffer before this cycle's write (a BRAM read-first port).
            if sc_v and sc_r:
                row, word = int(sc_p.row), int(sc_p.word)
                n_tok, ratio = self.current
                k = self.src_reads // n_tok
                cols = range(word * A + (k % ratio) * U, word * A + (k % ratio + 1) * U)
                if any((self.src_buf, row, c) in self.written for c in cols):
                    self.hazards.append((row, word, k))
                self.src_reads += 1
                src_q.append((cycle + rng.randrange(0, self.latency), word_of(self.lanes(self.src_buf, row, word))))
            if ac_v and ac_r:
                aux_q.append((cycle + rng.randrange(0, self.latency),
                               word_of(self.lanes(self.aux_buf, int(ac_p.row), int(ac_p.word)))))
            if sd_v and sd_r:
                src_q.popleft()
            if ad_v and ad_r:
                aux_q.popleft()
            if w_v and w_r:
                row, word, data, mask = int(w_p.row), int(w_p.word), int(w_p.data), int(w_p.mask)
                for lane in range(A):
                    if mask >> lane & 1:
                        v = (data >> (8 * lane)) & 0xFF
                        self.bufs[self.dst_buf][row, word * A + lane] = v - 256 if v & 0x80 else v
                        self.written.add((self.dst_buf, row, word * A + lane))
            if rq_v and rq_r:
                self.dma.append([int(rq_p.region), int(rq_p.offset), int(rq_p.beats), [], []])
            if dd_v and dd_r:
                self.dma[-1][3].append(int(dd_p.data))
                self.dma[-1][4].append(int(dd_p.strb))
            if done:
                self.events.append((1, int(error), int(set_live), int(nl), int(nt), cycle))


def reference_machine(acc, rng: np.random.Generator) -> Machine:
    mach = Machine(SimpleNamespace(blob=b""), acc)
    for b in mach.bufs:
        mach.bufs[b][:] = rng.integers(-128, 128, mach.bufs[b].shape)
    return mach


def select(acc, *, heads, m, n, threshold, addr, src_col=0, dst_col=None, aux_col=0, a_col=None, dst=Buf.X0):
    A = isa.column_align(acc)
    a_col = heads * A + aux_col if a_col is None else a_col
    return Descriptor(Op.SELECT, m_live=1, src=Buf.X0, dst=dst, aux=Buf.QKV, aux_col=aux_col, a_col=a_col,
                      heads=heads, m=m, n=n, threshold=threshold, addr=addr, src_col=src_col,
                      dst_col=src_col if dst_col is None else dst_col, name="select")


def run(acc, seed, jobs, *, n_live=None, max_heads=None, scores=None, abort_first=False, gap=0.35, latency=4,
        cycles=None, machine=None):
    """Run ``jobs`` (descriptors) in order on the RTL and on the interpreter, carrying N_live and
    N_tail like the sequencer; compare buffers, events and trace records after each.  The
    interpreter's state: ``machine`` (stepped on), else random buffers (``scores`` may edit
    them) with ``n_live`` tokens and no tail."""
    print(f"HEATVIT_SEED={seed}")
    if machine is None:
        mach = reference_machine(acc, np.random.default_rng(seed))
        if scores is not None:
            scores(mach)
        mach.n_live, mach.n_tail = n_live, 0
    else:
        mach = machine
    h = Harness(acc, seed, max_heads=max_heads, gap=gap, latency=latency)
    h.bufs = {b: v.copy() for b, v in mach.bufs.items()}
    h.src_buf, h.dst_buf, h.aux_buf = Buf.X0, Buf.X0, Buf.QKV
    ratio = isa.column_align(acc) // acc.toksel.lanes
    dbytes = acc.shell.data_bytes
    log = []

    async def bench(ctx):
        dut = h.dut
        if abort_first:
            d = jobs[0]
            h.current = (isa.live_dims(d, mach.n_live)[0], ratio)
            h.abort_at = 40
            await send(ctx, dut.cmd, [fields(d, mach.n_live)], h.rng)
            await ctx.tick().repeat(60)
            assert not h.events, f"seed {seed}: done after abort"
            h.bufs = {b: v.copy() for b, v in mach.bufs.items()}      # the aborted run's writes are void
            h.dma.clear()
            h.abort_at = None
        for i, d in enumerate(jobs):
            live_tail = mach.n_tail
            fl = fields(d, mach.n_live)
            h.current = (fl["live_m"], ratio)
            h.src_buf, h.dst_buf, h.aux_buf = Buf(d.src), Buf(d.dst), Buf(d.aux)
            h.written.clear()
            h.src_reads = 0
            trace = bytearray(isa.trace_record_bytes(d.m) + d.addr)
            if max_heads is not None and d.heads > max_heads:
                want_err = E.CTRL_BAD_FIELD                   # the combiner's width (hardware only)
            else:
                try:
                    mach.step(i, d, {"TRACE": trace})
                    want_err = 0
                except isa.DescriptorError as e:
                    want_err = int(e.code)
            ctx.set(dut.n_tail, live_tail)
            n_ev, n_dma = len(h.events), len(h.dma)
            start = h.cycle
            await send(ctx, dut.cmd, [fl], h.rng, gap=0.3 if gap else 0.0)   # gap 0: cmd offered at once
            for _ in range(200_000):
                await ctx.tick()
                if len(h.events) > n_ev:
                    break
            else:
                raise AssertionError(f"seed {seed}: descriptor {i}: no done")
            ev = h.events[n_ev][:5]
            h.cycles.append(h.events[n_ev][5] - start)
            assert not h.hazards, f"seed {seed}: descriptor {i}: reads of written lanes {h.hazards[:4]}"
            assert ev[1] == want_err, f"seed {seed}: descriptor {i}: error {ev[1]}, expected {want_err}"
            for b in mach.bufs:
                diff = np.argwhere(h.bufs[b] != mach.bufs[b])
                assert not len(diff), f"seed {seed}: descriptor {i}: buffer {b.name} differs at {diff[:5].tolist()}"
            if want_err:
                assert ev[2] == 0 and len(h.dma) == n_dma and not h.written, \
                    f"seed {seed}: descriptor {i}: effects after an error"
                log.append((i, "error", want_err))
                continue
            assert ev[2:] == (1, mach.n_live, mach.n_tail), \
                f"seed {seed}: descriptor {i}: set_live/N'/tail {ev[2:]}, expected {(1, mach.n_live, mach.n_tail)}"
            assert len(h.dma) == n_dma + 1, f"seed {seed}: descriptor {i}: {len(h.dma) - n_dma} trace writes"
            region, offset, beats, data, strb = h.dma[-1]
            rec = bytes(trace[d.addr:])
            assert (region, offset, beats) == (DmaRegion.TRACE, d.addr, len(rec) // dbytes), \
                f"seed {seed}: descriptor {i}: trace request {(region, offset, beats)}"
            got = b"".join(x.to_bytes(dbytes, "little") for x in data)
            assert got == rec and all(s == (1 << dbytes) - 1 for s in strb), \
                f"seed {seed}: descriptor {i}: trace record {got.hex()} != {rec.hex()}"
            log.append((i, mach.n_live, mach.n_tail))

    sim = Simulator(h.dut)
    sim.add_clock(1e-8)
    sim.add_testbench(h.memory, background=True)
    sim.add_testbench(bench)
    sim.run()
    print(f"seed {seed}: {log}")
    if cycles is not None:
        cycles.extend(h.cycles)
    return log


CONFIGS = {"4x4": (4, 4), "8x4": (8, 4), "4x8": (4, 8)}


def config(rc) -> AcceleratorConfig:
    return AcceleratorConfig().with_array(*rc)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_select_chained_stages(name):
    """Three stages on random scores and thresholds: the second and third have a package tail."""
    seed = pick_seed()
    acc = config(CONFIGS[name])
    rng = random.Random(seed)
    U = acc.toksel.lanes
    n = U * rng.randint(2, 4)
    jobs = [select(acc, heads=rng.randint(1, 3), m=24, n=n, threshold=rng.randint(60, 180), addr=64 * j)
            for j in range(3)]
    log = run(acc, seed, jobs, n_live=rng.randint(14, 20))
    assert all(entry[1] != "error" for entry in log)


def test_select_bad_inputs():
    """Issue 12's bad inputs: keeps none (class + package remain), keeps all, every score equal."""
    seed = pick_seed()
    acc = config((4, 8))
    A = isa.column_align(acc)

    def equal_scores(mach):
        mach.bufs[Buf.QKV][:, :] = 77                          # every (a, t) pair equal

    # 1: keeps none (threshold = the largest score); 2: keeps all (threshold 0, t = 255);
    # then a stage with a tail that keeps none again.
    jobs = [select(acc, heads=3, m=20, n=12, threshold=255, addr=0),
            select(acc, heads=2, m=20, n=12, threshold=0, addr=64)]
    log = run(acc, seed, jobs, n_live=17)
    assert log[0][1:] == (2, 1), log                           # class + package token

    def keep_all(mach):
        mach.bufs[Buf.QKV][:, :] = -1                          # 255: every keep probability 1
    log = run(acc, seed, [select(acc, heads=3, m=20, n=8, threshold=0, addr=0)], n_live=13, scores=keep_all)
    assert log[0][1:] == (13, 0), log
    for thr in (0, 120, 255):
        log = run(acc, seed, [select(acc, heads=3, m=20, n=16, threshold=thr, addr=128)], n_live=11,
                  scores=equal_scores)
        assert log[0][1] in (11, 2), log
    # aux weights all zero: the plain mean over heads
    def zero_a(mach):
        mach.bufs[Buf.QKV][:, 3 * A:4 * A] = 0
    run(acc, seed, [select(acc, heads=3, m=20, n=8, threshold=100, addr=0)], n_live=9, scores=zero_a)


def test_select_refused_and_abort():
    """A tail >= N (TOKSEL_BAD_TAIL) and too many heads end with that error and no effect;
    after an abort mid-descriptor the next descriptor runs normally."""
    seed = pick_seed()
    acc = config((4, 4))
    jobs = [select(acc, heads=2, m=6, n=8, threshold=200, addr=0),       # prunes: tail 1
            select(acc, heads=2, m=1, n=8, threshold=200, addr=64),      # N = 1 <= tail: BAD_TAIL
            select(acc, heads=6, m=6, n=8, threshold=100, addr=64),      # heads > max_heads = 5
            select(acc, heads=5, m=6, n=8, threshold=100, addr=128),     # two head-weight words
            select(acc, heads=2, m=6, n=4100, threshold=100, addr=128)]  # wider than any buffer
    log = run(acc, seed, jobs, n_live=6, max_heads=5)
    assert [e[1] for e in log[1:3]] == ["error", "error"] and log[1][2] == E.TOKSEL_BAD_TAIL, log
    assert log[4][1:] == ("error", E.CTRL_BAD_SHAPE), log
    run(acc, seed, [select(acc, heads=3, m=12, n=8, threshold=128, addr=0)], n_live=12, abort_first=True)


def test_select_heavy_stalls_windows():
    """75 % stalls on every stream, long read latencies; windows at non-zero columns, a head-weight
    column apart from the probabilities, and a copy to another buffer (dst != src)."""
    seed = pick_seed()
    acc = config((4, 8))
    rng = random.Random(seed)
    A = isa.column_align(acc)
    jobs = [select(acc, heads=3, m=16, n=12, threshold=rng.randint(80, 160), addr=0, src_col=2 * A,
                   aux_col=5 * A, a_col=A),
            select(acc, heads=2, m=16, n=8, threshold=rng.randint(80, 160), addr=64, src_col=A, dst_col=3 * A,
                   dst=Buf.X1, aux_col=2 * A, a_col=0)]
    run(acc, seed, jobs, n_live=rng.randint(10, 16), gap=0.75, latency=12)


def test_select_digits_program():
    """The SELECTs of the compiled pruned digits program on a test image, in the state the
    interpreter reaches before each (the selector MLPs' real scores; the second has a tail)."""
    from heatvit.golden.vit import data
    seed = pick_seed()
    qm = quantize_for(models.load_model(), DEFAULT)
    img = read_image(compile_model(qm, DEFAULT, prune=True), DEFAULT)
    x = data.upscale(data.load_splits()["test_x"][seed % 100:seed % 100 + 1], qm.cfg.image_size)
    regions = {isa.Region.MODEL: img.blob,
               isa.Region.INPUT: interpret.pack_input(img, models.patches(qm, x)[0]),
               isa.Region.OUTPUT: bytearray(img.output["bytes"]), isa.Region.DEBUG: bytearray(img.debug["bytes"]),
               "TRACE": bytearray(img.trace["bytes"])}
    mach = Machine(img, DEFAULT)
    log = []
    for i, d in enumerate(img.program):
        if d.opcode == Op.SELECT:
            log += run(DEFAULT, seed + i, [d], machine=mach)
        else:
            mach.step(i, d, regions)
        if d.opcode == Op.END:
            break
    assert len(log) == 2 and all(e[1] != "error" for e in log), log


@pytest.mark.parametrize("name,heads", [("4x4", 1), ("4x4", 3), ("4x4", 5), ("4x4", 12), ("8x4", 6), ("16x16", 12)])
def test_select_cycles(name, heads):
    """DeiT-B's 12 heads (``max_heads = DEIT_B_HEADS``), bit-exact; with no stalls and a
    1-cycle buffer every descriptor (keep all, keep none, a threshold between) takes exactly
    :func:`heatvit.compiler.cycles.select_cycles` cycles (the cycle model's SELECT estimate),
    whether the combiner or the ``aux`` words bound the score phase."""
    from heatvit.compiler import cycles as cyc_model
    from heatvit.rtl.accel.select_exec import DEIT_B_HEADS
    seed = pick_seed()
    rc = (16, 16) if name == "16x16" else CONFIGS[name]
    acc = config(rc)
    rng = random.Random(seed)
    n = acc.toksel.lanes * rng.randint(2, 3)
    for thr in (0, 255, rng.randint(90, 160)):
        live = rng.randint(5, 20)
        got = []
        log = run(acc, seed, [select(acc, heads=heads, m=24, n=n, threshold=thr, addr=0)], n_live=live, gap=0.0,
                  latency=1, cycles=got, max_heads=DEIT_B_HEADS)
        _, n_out, tail = log[0]
        pruned = live - (n_out - 1) if tail else 0
        want = cyc_model.select_cycles(acc, heads, live, n, pruned)
        assert got == [want], f"seed {seed}: {heads} heads, {live} tokens x {n}, {pruned} pruned: {got} cycles, model {want}"
