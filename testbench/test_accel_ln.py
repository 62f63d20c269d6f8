"""Amaranth-simulator tests of the LAYERNORM and MEAN executors (rtl/accel/layernorm_exec.py,
rtl/accel/mean_exec.py), descriptor by descriptor against ``heatvit.compiler.interpret``
(``Machine.step``: golden LayerNorm / divide on the same token buffers and DDR bytes).

In-test models of the top's side of the ports: the DMA client (serves ``dma_rd`` requests from
the MODEL region's bytes, built with ``heatvit.isa`` records as the compiler builds them) and
the token buffers (``src`` reads at the command, in order; ``dst`` writes with lane masks, to
the same arrays, so in-place windows behave as in hardware).  Random valid/ready gaps on every
stream; random windows, row lengths 1..max (multiples of the lane count and not), the whole
int8 range, extreme and malformed LayerNorm records (-> CTRL_BAD_PARAMS, nothing written),
live_m 0 / 1 / max, selector LayerNorms (n = dh at a column offset), an abort in mid
descriptor followed by a correct one; R == C and R != C configs.  Seeds: HEATVIT_SEED.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import warnings
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.sim import Simulator

from heatvit import isa
from heatvit.accel_config import BufferConfig
from heatvit.compiler.interpret import Machine
from heatvit.config import DEFAULT, AcceleratorConfig, GemmConfig
from heatvit.errors import ErrorCode
from heatvit.golden.nonlinear import layernorm_params
from heatvit.golden.nonlinear.layernorm import moments_bits
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.rtl.accel.layernorm_exec import LayerNormExecutor, param_beats
from heatvit.compiler.cycles import MEAN_LANE_CYCLES
from heatvit.golden.nonlinear import formats as F
from heatvit.rtl.accel.mean_exec import MUL_DIGIT_BITS, MeanExecutor
from heatvit.rtl.accel.ports import DmaRegion
from heatvit.shell_config import ShellConfig
from heatvit.sim.runner import pick_seed

from accel.streams import send

Op, Buf = isa.Op, isa.Buf


def small_config(rows: int, cols: int, row_lanes: int, data_width: int) -> AcceleratorConfig:
    g = GemmConfig(rows=rows, cols=cols, act_buffer_words=256, max_m=16, max_k=256, max_n=256,
                   weight_fifo_depth=8, out_fifo_depth=4)
    return AcceleratorConfig(gemm=g, nonlinear=NonlinearConfig(row_lanes=row_lanes, max_tokens=16, max_dim=48),
                             buffers=BufferConfig(max_tokens=12, max_dim=48, max_hidden=64),
                             shell=ShellConfig(data_width=data_width))


CONFIGS = {
    # lanes = max(R, C) against the LayerNorm unit's row_lanes: equal, wider (split), narrower (gather)
    "4x4-rl4-dw128": small_config(4, 4, 4, 128),
    "8x4-rl2-dw32": small_config(8, 4, 2, 32),
    "4x8-rl16-dw64": small_config(4, 8, 16, 64),
}


def ln_executor(acc) -> LayerNormExecutor:
    """The executor with the test config's ``nonlinear.row_lanes`` (equal to, wider or narrower
    than a buffer word) instead of the derived ``acc.layernorm_lanes``, so Regroup's split and
    gather both run."""
    return LayerNormExecutor(acc, row_lanes=acc.nonlinear.row_lanes)


def fields(d: isa.Descriptor, n_live: int) -> dict:
    m, k, n = isa.live_dims(d, n_live)
    return {**{f.name: int(getattr(d, f.name)) for f in isa.FIELDS}, "live_m": m, "live_k": k, "live_n": n}


def padded_buffers(acc, rng: np.random.Generator) -> dict:
    """Every token buffer as an int64 array padded to whole words, random int8 contents."""
    L = isa.column_align(acc)
    return {b: rng.integers(-128, 128, (s.rows, -(-s.cols // L) * L)) for b, s in isa.token_buffers(acc).items()}


def ln_block(acc, n: int, rec: dict, gamma, beta) -> bytes:
    """A LAYERNORM parameter block (isa.param_block parts), records packed as the compiler does."""
    d = isa.Descriptor(Op.LAYERNORM, n=n)
    parts = isa.param_block(acc, d)
    blob = bytearray(isa.param_block_bytes(acc, d))
    o, s = parts["ln"]
    blob[o:o + s] = isa.pack_record(isa.LN_RECORD, rec)
    o, s = parts["gamma"]
    blob[o:o + s] = np.asarray(gamma, dtype="<i4").tobytes()
    o, s = parts["beta"]
    blob[o:o + s] = np.asarray(beta, dtype="<i8").tobytes()
    return bytes(blob)


def eps_max(acc) -> int:
    return ((1 << moments_bits(8, acc.nonlinear.dim_bits)) - 1) // 2


def random_ln_params(acc, n: int, rng: random.Random, nrng: np.random.Generator, extreme: bool):
    lims = isa.record_limits(acc)["ln"]
    if extreme:
        pick = rng.choice(["max", "min", "rand"])
        glo, ghi = lims["gamma"]
        blo, bhi = lims["beta"]
        if pick == "max":
            gamma, beta = np.full(n, ghi), np.full(n, bhi)
        elif pick == "min":
            gamma, beta = np.full(n, glo), np.full(n, blo)
        else:
            gamma, beta = nrng.integers(glo, ghi + 1, n), nrng.integers(blo, bhi + 1, n)
        g_shift = rng.choice([0, 30, rng.randint(0, 30)])
        eps = rng.choice([0, eps_max(acc), rng.randint(0, eps_max(acc))])
    else:
        p = layernorm_params(nrng.normal(1.0, 0.5, n), nrng.normal(0.0, 0.5, n), 1e-6, rng.uniform(0.01, 0.1),
                             rng.uniform(0.01, 0.05), cfg=acc.nonlinear)
        gamma, beta, g_shift, eps = p.gamma_q, p.beta_q, p.g_shift, p.eps_q
    rec = {"g_shift": g_shift, "eps_q_lo": eps & 0xFFFF_FFFF, "eps_q_hi": eps >> 32, "n": n, "out_bits": 8,
           "in_bits": 8}
    return rec, np.asarray(gamma, dtype=np.int64), np.asarray(beta, dtype=np.int64)


BREAKS = ["g_shift", "n_big", "n_zero", "n_other", "out_bits", "in_bits", "gamma_hi", "gamma_lo", "beta_hi",
          "beta_lo", "eps"]


def break_record(acc, kind: str, rec: dict, gamma, beta, rng: random.Random):
    """A record with one value outside isa.record_limits (or eps_q past the unit's width)."""
    rec, gamma, beta = dict(rec), gamma.copy(), beta.copy()
    lims = isa.record_limits(acc)["ln"]
    n = len(gamma)
    i = rng.randrange(n)
    if kind == "g_shift":
        rec["g_shift"] = rng.choice([31, 0xFFFF_FFFF])
    elif kind == "n_big":
        rec["n"] = lims["n"][1] + 1
    elif kind == "n_zero":
        rec["n"] = 0
    elif kind == "n_other":
        rec["n"] = n + 1 if n < lims["n"][1] else n - 1
    elif kind == "out_bits":
        rec["out_bits"] = rng.choice([7, 16])
    elif kind == "in_bits":
        rec["in_bits"] = rng.choice([0, 9])
    elif kind == "gamma_hi":
        gamma[i] = lims["gamma"][1] + rng.choice([1, 1 << 20])
    elif kind == "gamma_lo":
        gamma[i] = lims["gamma"][0] - 1
    elif kind == "beta_hi":
        beta[i] = lims["beta"][1] + 1
    elif kind == "beta_lo":
        beta[i] = lims["beta"][0] - rng.choice([1, 1 << 50])
    else:
        e = eps_max(acc) + rng.choice([1, 1 << 40])
        rec["eps_q_lo"], rec["eps_q_hi"] = e & 0xFFFF_FFFF, e >> 32
    return rec, gamma, beta


def window(acc, rng: random.Random, n_max: int | None = None, n_min: int = 1, n: int | None = None,
           bufs=None, col: int | None = None):
    """A random buffer, row, column (word aligned) and shape that fit."""
    L = isa.column_align(acc)
    specs = isa.token_buffers(acc)
    while True:
        b = rng.choice(bufs or list(Buf))
        s = specs[b]
        top = min(s.cols, n_max or s.cols)
        nn = n if n is not None else rng.choice([n_min, top, L, L + 1, L - 1, rng.randint(n_min, top)])
        if not n_min <= nn <= top:
            continue
        cols = [c for c in range(0, s.cols - nn + 1, L)]
        if col is not None:
            if col + nn > s.cols:
                continue
            cols = [col]
        return b, rng.randrange(s.rows), rng.choice(cols), nn


def partial_overlap(src, sr, sc, dst, dr, dc, n: int, rows: int) -> bool:
    """Whether a destination window overlaps its source without being it: undefined for the
    executors (a row is written once it is computed), never emitted by the compiler."""
    if src != dst or (sr, sc) == (dr, dc):
        return False
    return abs(sr - dr) < rows and abs(sc - dc) < n


def live_edges(i: int, sr: int, dr: int) -> tuple[int, int]:
    """Job 0: rows from 0 (all live); jobs 4 and 6 (live_m = 1 and 0): a source row >= 1."""
    if i == 0:
        return 0, 0
    if i in (4, 6):
        return max(1, sr), max(1, dr)
    return sr, dr


def rows_fit(acc, d: isa.Descriptor) -> isa.Descriptor:
    specs = isa.token_buffers(acc)
    room = min(specs[Buf(d.src)].rows - d.src_row, specs[Buf(d.dst)].rows - d.dst_row)
    return d.with_(m=max(1, min(d.m, room)))


def ln_jobs(acc, rng: random.Random, nrng: np.random.Generator, count: int) -> list[dict]:
    nl_max = acc.nonlinear.max_dim
    rows = acc.buffers.max_tokens
    jobs = []
    for i in range(count):
        sel = i % 5 == 1                                 # selector LayerNorm: n = dh at a column offset
        if sel:
            dh = 16
            src, sr, sc, n = window(acc, rng, n=dh, col=dh * rng.randint(1, 2), bufs=[Buf.X0, Buf.X1])
        else:
            src, sr, sc, n = window(acc, rng, n_max=nl_max)
        if i == 0:                                       # the whole buffer height, the longest row
            src, sr, sc, n = window(acc, rng, n=nl_max, bufs=[Buf.X0, Buf.H])
            sr = 0
        inplace = i % 4 == 3
        if inplace:
            dst, dr, dc = src, sr, sc
        else:
            dst, dr, dc, _ = window(acc, rng, n=n)
            while partial_overlap(src, sr, sc, dst, dr, dc, n, acc.buffers.max_tokens):
                dst, dr, dc, _ = window(acc, rng, n=n)
        sr, dr = live_edges(i, sr, dr)
        addr = 64 * rng.randint(0, 8)
        # live rows > 0 for the broken records (but job 6) and the aborted jobs, so each is exercised
        m_live = (rng.random() < 0.5 and i % 4 != 2 and i % 7 != 5) or i in (4, 6)
        m = rows if i in (0, 4, 6) else rng.choice([1, rows, rng.randint(1, rows)])
        d = rows_fit(acc, isa.Descriptor(Op.LAYERNORM, m_live=int(m_live), src=src, dst=dst, src_row=sr, dst_row=dr,
                                         src_col=sc, dst_col=dc, m=m, n=n, addr=addr, name=f"ln{i}"))
        n_live = rng.choice([rows, d.src_row, d.src_row + 1, rng.randint(1, rows)]) if m_live else rows
        n_live = {0: rows, 4: d.src_row + 1, 6: d.src_row}.get(i, n_live)   # live_m = max, 1, 0
        n_live = max(1, min(rows, n_live))
        rec, gamma, beta = random_ln_params(acc, n, rng, nrng, extreme=i % 3 == 2)
        brk = None
        if i % 4 == 2:
            brk = BREAKS[(i // 4) % len(BREAKS)]
            rec, gamma, beta = break_record(acc, brk, rec, gamma, beta, rng)
        blk = ln_block(acc, n, rec, gamma, beta)
        blob = bytearray(nrng.integers(0, 256, addr + len(blk) + 64 * rng.randint(0, 2), dtype=np.uint8).tobytes())
        blob[addr:addr + len(blk)] = blk
        isa.check(d, acc, n_live)
        special = rng.choice(["random", "const", "extreme", "min"])
        jobs.append(dict(d=d, n_live=n_live, blob=bytes(blob), brk=brk, special=special,
                         abort=rng.randint(3, 40) if i % 7 == 5 else None))
    return jobs


def mean_jobs(acc, rng: random.Random, count: int) -> list[dict]:
    rows = acc.buffers.max_tokens
    L = isa.column_align(acc)
    jobs = []
    for i in range(count):
        src, sr, sc, n = window(acc, rng, n_min=2)
        n = rng.choice([n, max(2, min(n, 16))])
        k = rng.choice([0, n - 1, min(L, n - 1), rng.randint(0, n - 1), n // 2])
        if i % 2 == 0:
            dst, dr, dc = src, sr, sc                    # in place, as the compiler emits it
        else:
            dst, dr, dc, _ = window(acc, rng, n=n)
            while partial_overlap(src, sr, sc, dst, dr, dc, n, acc.buffers.max_tokens):
                dst, dr, dc, _ = window(acc, rng, n=n)
        sr, dr = live_edges(i, sr, dr)
        m_live = (rng.random() < 0.5 and i % 7 != 5) or i in (4, 6)
        m = rows if i in (0, 4, 6) else rng.choice([1, rows, rng.randint(1, rows)])
        d = rows_fit(acc, isa.Descriptor(Op.MEAN, m_live=int(m_live), src=src, dst=dst, src_row=sr, dst_row=dr,
                                         src_col=sc, dst_col=dc, m=m, k=k, n=n, name=f"mean{i}"))
        n_live = rng.choice([rows, d.src_row, d.src_row + 1, rng.randint(1, rows)]) if m_live else rows
        n_live = {0: rows, 4: d.src_row + 1, 6: d.src_row}.get(i, n_live)   # live_m = max, 1, 0
        n_live = max(1, min(rows, n_live))
        isa.check(d, acc, n_live)
        jobs.append(dict(d=d, n_live=n_live, blob=b"", brk=None, special=rng.choice(["random", "extreme", "min"]),
                         abort=rng.randint(3, 12) if i % 7 == 5 else None))
    return jobs


def fill_special(bufs, job, rng: random.Random, nrng: np.random.Generator):
    """Source rows of a chosen kind: random, constant (zero variance), +-extremes, all -128."""
    d = job["d"]
    a = bufs[Buf(d.src)]
    sl = (slice(d.src_row, d.src_row + d.m), slice(d.src_col, d.src_col + d.n))
    kind = job["special"]
    if kind == "const":
        a[sl] = rng.randint(-128, 127)
    elif kind == "extreme":
        a[sl] = nrng.choice([-128, 127], a[sl].shape)
    elif kind == "min":
        a[sl] = -128


def run_executor(acc, dut, jobs, seed: int, *, uses_dma: bool, gap: float = 0.3):
    """Run ``jobs`` one after the other; ``gap``: probability of an idle cycle on every stream
    (0: every model always ready / valid)."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    go = 1 - gap
    L = isa.column_align(acc)
    B = acc.shell.data_bytes
    bufs = padded_buffers(acc, nrng)
    specs = isa.token_buffers(acc)
    st = SimpleNamespace(gen=0, blob=b"", requests=[], writes=0, reads=[])
    q: deque = deque()
    results = []

    def word_value(b, row, word):
        spec = specs[b]
        assert row < spec.rows and word < -(-spec.cols // L), f"seed {seed}: read of row {row} word {word} " \
            f"outside buffer {b.name}"
        return sum((int(v) & 0xFF) << (8 * i) for i, v in enumerate(bufs[b][row, word * L:(word + 1) * L]))

    async def dma(ctx):
        port = dut.dma_rd
        while True:
            g = st.gen
            ready = rng.random() < go
            ctx.set(port.req.ready, ready)
            _, _, valid, p, abort = await ctx.tick().sample(port.req.valid, port.req.payload, dut.abort)
            if not (valid and ready) or abort or st.gen != g:
                continue
            ctx.set(port.req.ready, 0)
            req = (int(p.region), int(p.offset), int(p.beats))
            st.requests.append(req)
            i = 0
            while i < req[2] and st.gen == g:
                v = rng.random() < go
                o = req[1] + i * B
                ctx.set(port.data.valid, v)
                ctx.set(port.data.payload, int.from_bytes(st.blob[o:o + B].ljust(B, b"\0"), "little"))
                _, _, rdy = await ctx.tick().sample(port.data.ready)
                if v and rdy:
                    i += 1
            ctx.set(port.data.valid, 0)

    async def rd_cmd(ctx):
        port = dut.src.cmd
        while True:
            ready = rng.random() < go and len(q) < 3
            ctx.set(port.ready, ready)
            _, _, valid, p, abort = await ctx.tick().sample(port.valid, port.payload, dut.abort)
            if valid and ready and not abort:        # the top flushes the read pipeline on abort
                st.reads.append((int(p.row), int(p.word)))
                q.append((st.gen, word_value(st.src, int(p.row), int(p.word))))

    async def rd_data(ctx):
        port = dut.src.data
        while True:
            while q and q[0][0] != st.gen:
                q.popleft()
            if not q or rng.random() < gap:
                ctx.set(port.valid, 0)
                await ctx.tick()
                continue
            ctx.set(port.valid, 1)
            ctx.set(port.payload, q[0][1])
            _, _, rdy = await ctx.tick().sample(port.ready)
            if rdy and q:
                q.popleft()
            ctx.set(port.valid, 0)

    async def wr(ctx):
        port = dut.dst
        while True:
            ready = rng.random() < go
            ctx.set(port.ready, ready)
            _, _, valid, p = await ctx.tick().sample(port.valid, port.payload)
            if valid and ready:
                row, word, value, mask = int(p.row), int(p.word), int(p.data), int(p.mask)
                a = bufs[st.dst]
                assert row < a.shape[0] and word < a.shape[1] // L, f"seed {seed}: write outside buffer"
                for j in range(L):
                    if mask >> j & 1:
                        b = value >> (8 * j) & 0xFF
                        a[row, word * L + j] = b - 256 if b & 0x80 else b
                st.writes += 1

    async def idle_ports(ctx):
        watched = [dut.aux.cmd.valid, dut.dma_wr.req.valid, dut.dma_wr.data.valid]
        if not uses_dma:
            watched.append(dut.dma_rd.req.valid)
        while True:
            vals = await ctx.tick().sample(*watched)
            assert not any(vals[2:]), f"seed {seed}: an unused port was driven"

    async def driver(ctx):
        for job in jobs:
            d = job["d"]
            fill_special(bufs, job, rng, nrng)
            st.blob, st.src, st.dst = job["blob"], Buf(d.src), Buf(d.dst)
            st.requests, st.reads, st.writes = [], [], 0
            before = {b: a.copy() for b, a in bufs.items()}
            mach = Machine(SimpleNamespace(blob=job["blob"]), acc)
            mach.bufs = {b: a.copy() for b, a in bufs.items()}
            mach.n_live = job["n_live"]
            try:
                mach.step(0, d, {})
                want_err = 0
            except isa.DescriptorError as e:
                want_err = int(e.code)
                mach.bufs = before
            except (ValueError, OverflowError):     # golden refuses an eps_q past its width
                assert job["brk"] == "eps", f"seed {seed}: {d.name}: the interpreter failed"
                want_err = -1
                mach.bufs = before
            await send(ctx, dut.cmd, [fields(d, job["n_live"])], rng, gap=gap)
            cycles = 0
            finished = False
            if job["abort"] is not None:
                for _ in range(job["abort"]):
                    _, _, done, err = await ctx.tick().sample(dut.done, dut.error)
                    cycles += 1
                    if done:
                        finished = True
                        break
            if job["abort"] is not None and not finished:
                ctx.set(dut.abort, 1)
                st.gen += 1
                await ctx.tick()
                ctx.set(dut.abort, 0)
                for _ in range(20):
                    _, _, done = await ctx.tick().sample(dut.done)
                    assert not done, f"seed {seed}: done after abort"
                results.append(dict(job=job, aborted=True))
                continue
            while not finished:
                _, _, done, err = await ctx.tick().sample(dut.done, dut.error)
                cycles += 1
                if done:
                    break
                assert cycles < 20_000, f"seed {seed}: {d.name} never finished"
            for _ in range(8):                        # nothing after done
                await ctx.tick()
            results.append(dict(job=job, err=int(err), want_err=want_err, got={b: a.copy() for b, a in bufs.items()},
                                want=mach.bufs, requests=list(st.requests), reads=list(st.reads), cycles=cycles,
                                writes=st.writes))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for proc in (dma, rd_cmd, rd_data, wr, idle_ports):
        sim.add_testbench(proc, background=True)
    sim.add_testbench(driver)
    sim.run()
    return results


def live_rows(results) -> set:
    return {isa.live_dims(r["job"]["d"], r["job"]["n_live"])[0] for r in results if not r.get("aborted")}


def check_results(acc, results, seed: int, *, uses_dma: bool):
    for r in results:
        job = r["job"]
        d = job["d"]
        if r.get("aborted"):
            continue
        m, _, n = isa.live_dims(d, job["n_live"])
        tag = f"seed {seed}: {d.name} ({d}, n_live {job['n_live']}, break {job['brk']}, rows {job['special']})"
        if job["brk"] == "eps" and m:
            want_err = ErrorCode.CTRL_BAD_PARAMS       # past the unit's variance width: refused
        else:
            want_err = r["want_err"]
            if job["brk"] is not None and m:
                assert want_err == ErrorCode.CTRL_BAD_PARAMS, f"{tag}: the interpreter accepted a broken record"
        assert r["err"] == want_err, f"{tag}: error {r['err']}, want {want_err}"
        if want_err or m == 0:
            assert r["writes"] == 0 and not r["reads"], f"{tag}: buffers touched ({r['writes']} writes)"
        else:
            for b in Buf:
                got, want = r["got"][b], r["want"][b]
                if not np.array_equal(got, want):
                    bad = np.argwhere(got != want)
                    rr, cc = bad[0]
                    raise AssertionError(f"{tag}: buffer {b.name} differs at {len(bad)} places, first "
                                         f"[{rr}, {cc}]: {got[rr, cc]} != {want[rr, cc]}")
        if uses_dma:
            if m == 0:
                assert r["requests"] == [], f"{tag}: DMA request for a skipped descriptor"
            else:
                assert r["requests"] == [(DmaRegion.MODEL, d.addr, param_beats(acc, d.n))], \
                    f"{tag}: DMA requests {r['requests']}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_layernorm_executor(name):
    acc = CONFIGS[name]
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, nrng = random.Random(seed), np.random.default_rng(seed + 1)
    jobs = ln_jobs(acc, rng, nrng, 16)
    results = run_executor(acc, ln_executor(acc), jobs, seed, uses_dma=True)
    check_results(acc, results, seed, uses_dma=True)
    assert any(r.get("err") == ErrorCode.CTRL_BAD_PARAMS for r in results)
    assert any(r.get("err") == 0 and r["writes"] for r in results)
    assert any(r.get("aborted") for r in results)
    assert {0, 1, acc.buffers.max_tokens} <= live_rows(results)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_mean_executor(name):
    acc = CONFIGS[name]
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng = random.Random(seed)
    jobs = mean_jobs(acc, rng, 14)
    results = run_executor(acc, MeanExecutor(acc), jobs, seed, uses_dma=False)
    check_results(acc, results, seed, uses_dma=False)
    assert any(r.get("writes") for r in results)
    assert {0, 1, acc.buffers.max_tokens} <= live_rows(results)


def _fixed_ln_job(acc, m: int, n: int) -> dict:
    rng, nrng = random.Random(n), np.random.default_rng(n)
    rec, gamma, beta = random_ln_params(acc, n, rng, nrng, extreme=False)
    d = isa.Descriptor(Op.LAYERNORM, src=Buf.X0, dst=Buf.N, m=m, n=n, addr=0, name=f"ln{m}x{n}")
    return dict(d=d, n_live=acc.buffers.max_tokens, blob=ln_block(acc, n, rec, gamma, beta), brk=None,
                special="random", abort=None)


def ln_cycles(acc, m: int, n: int, row_lanes: int) -> int:
    """The LAYERNORM cycle model of rtl/accel/layernorm_exec.py's docstring."""
    from heatvit.rtl.accel.layernorm_exec import cycles
    assert cycles(acc, m, n, row_lanes) == layernorm_cycles_formula(acc, m, n, row_lanes)
    return cycles(acc, m, n, row_lanes)


def layernorm_cycles_formula(acc, m: int, n: int, row_lanes: int) -> int:
    """The docstring's formula written out: ``P max(1, 64 / dw) + (M + 1) B' + 31`` (the
    LayerNorm unit's one-row latency ``2B + 25`` at these tables)."""
    p = isa.param_block_bytes(acc, isa.Descriptor(Op.LAYERNORM, n=n)) // 8
    b = -(-n // min(isa.column_align(acc), row_lanes))
    return p * max(1, 64 // acc.shell.data_width) + (m + 1) * b + 31


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cycles_without_stalls(name):
    """The cycle models of the two executors' docstrings, exactly, with every stream at full rate."""
    acc = CONFIGS[name]
    L, RL = isa.column_align(acc), acc.nonlinear.row_lanes
    shapes = [(1, 48), (12, 48), (5, 5), (3, L + 1)]
    res = run_executor(acc, ln_executor(acc), [_fixed_ln_job(acc, m, n) for m, n in shapes], 1,
                       uses_dma=True, gap=0.0)
    check_results(acc, res, 1, uses_dma=True)
    for (m, n), r in zip(shapes, res):
        if RL <= L:
            assert r["cycles"] == ln_cycles(acc, m, n, RL), f"LayerNorm {m} x {n}"
        else:
            # a unit beat of two buffer words: it waits for both on the way in and leaves in two
            # cycles, a stall the output pipeline sees (docstring: at most one cycle a row more)
            assert ln_cycles(acc, m, n, RL) <= r["cycles"] <= ln_cycles(acc, m, n, RL) + m - 1, f"LayerNorm {m} x {n}"
    shapes = [(12, 16, 8), (1, 16, 8), (7, 16, 0), (4, 13, 12), (3, 8, 4)]
    jobs = [dict(d=isa.Descriptor(Op.MEAN, src=Buf.H, dst=Buf.H, m=m, n=n, k=k, name="mean"),
                 n_live=acc.buffers.max_tokens, blob=b"", brk=None, special="random", abort=None)
            for m, n, k in shapes]
    res = run_executor(acc, MeanExecutor(acc), jobs, 1, uses_dma=False, gap=0.0)
    check_results(acc, res, 1, uses_dma=False)
    assert MEAN_LANE_CYCLES == 1 + -(-(F.RECIP_FRAC + 1) // MUL_DIGIT_BITS)   # a lane: load + digits
    for (m, n, k), r in zip(shapes, res):
        w = -(-n // L)
        w_mean = w - k // L
        assert r["cycles"] == 18 + w * (m + 2) + w_mean * (m + MEAN_LANE_CYCLES * L + 2), f"MEAN {m} x {n}, k = {k}"


@pytest.mark.parametrize("name,sum_lanes", [("4x4-rl4-dw128", 1), ("4x4-rl4-dw128", 2), ("4x8-rl16-dw64", 2)])
def test_mean_passes(name, sum_lanes):
    """MEAN summing fewer lanes than a buffer word per pass over the rows (what a board-scale
    word of 64 lanes does with 16): bit-exact on random jobs (stalls, aborts, every live_m), and
    with every stream at full rate exactly the cycles of the passes of
    :func:`heatvit.toksel_config.mean_passes` (``m + 2``, an averaging pass ``+ m + 10 SL + 2``)."""
    from heatvit.toksel_config import mean_passes
    acc = CONFIGS[name]
    L = isa.column_align(acc)
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    results = run_executor(acc, MeanExecutor(acc, sum_lanes=sum_lanes), mean_jobs(acc, random.Random(seed), 10),
                           seed, uses_dma=False)
    check_results(acc, results, seed, uses_dma=False)
    assert any(r.get("writes") for r in results)
    shapes = [(12, 16, 8), (3, 16, 0), (4, 13, 6), (5, 2 * L + 3, L + 1), (2, L, L - 1)]
    jobs = [dict(d=isa.Descriptor(Op.MEAN, src=Buf.H, dst=Buf.H, m=m, n=n, k=k, name="mean"),
                 n_live=acc.buffers.max_tokens, blob=b"", brk=None, special="random", abort=None)
            for m, n, k in shapes]
    res = run_executor(acc, MeanExecutor(acc, sum_lanes=sum_lanes), jobs, 1, uses_dma=False, gap=0.0)
    check_results(acc, res, 1, uses_dma=False)
    for (m, n, k), r in zip(shapes, res):
        want = 18 + sum(m + 2 + avg * (m + MEAN_LANE_CYCLES * sum_lanes + 2)
                        for _, avg in mean_passes(L, sum_lanes, n, k))
        assert r["cycles"] == want, f"MEAN {m} x {n}, k = {k}, {sum_lanes} lanes a pass"


def test_default_config():
    """The shipped 16 x 16 config (lanes 16, row_lanes 4, 128-bit DMA, rows up to 768): a few
    descriptors of each executor, random gaps; MEAN over all 197 rows of -128 and of +-extremes
    (its column sums are as wide as the tallest buffer needs)."""
    acc = DEFAULT
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, nrng = random.Random(seed), np.random.default_rng(seed + 1)
    jobs = []
    for i, (m, n, src, sc, dst, dc) in enumerate([(3, 768, Buf.X0, 0, Buf.N, 0), (5, 197, Buf.X1, 16, Buf.X1, 16),
                                                   (4, 64, Buf.X0, 128, Buf.N, 0)]):
        rec, gamma, beta = random_ln_params(acc, n, rng, nrng, extreme=i == 1)
        d = isa.Descriptor(Op.LAYERNORM, src=src, dst=dst, src_col=sc, dst_col=dc, src_row=i, dst_row=i, m=m, n=n,
                           addr=64 * i, name=f"ln{i}")
        blob = bytes(64 * i) + ln_block(acc, n, rec, gamma, beta)
        jobs.append(dict(d=d, n_live=acc.buffers.max_tokens, blob=blob, brk=None, special="random", abort=None))
    results = run_executor(acc, LayerNormExecutor(acc), jobs, seed, uses_dma=True)
    check_results(acc, results, seed, uses_dma=True)
    rows = acc.buffers.max_tokens
    jobs = [dict(d=isa.Descriptor(Op.MEAN, m_live=1, src=Buf.H, dst=Buf.H, src_col=c, dst_col=c, m=rows, k=k, n=n,
                                  name=f"mean{i}"), n_live=nl, blob=b"", brk=None, special=sp, abort=None)
            for i, (c, k, n, nl, sp) in enumerate([(0, 8, 16, rows, "min"), (32, 24, 64, 50, "random"),
                                                   (16, 0, 33, 1, "random"), (48, 3, 40, rows, "extreme")])]
    results = run_executor(acc, MeanExecutor(acc), jobs, seed, uses_dma=False)
    check_results(acc, results, seed, uses_dma=False)


def test_default_lanes_and_cycles():
    """The shipped 16 x 16 config's derived LayerNorm unit (``acc.layernorm_lanes`` = one buffer
    word, 16 channels) on a DeiT-T LayerNorm (197 x 192), full rate: bit-exact and the
    docstring's 2,703 cycles; the lanes scale with the array."""
    acc = DEFAULT
    dut = LayerNormExecutor(acc)
    assert acc.layernorm_lanes == dut.row_lanes == 16
    assert CONFIGS["8x4-rl2-dw32"].layernorm_lanes == 8 and CONFIGS["4x4-rl4-dw128"].layernorm_lanes == 4
    assert DEFAULT.with_array(64, 32).layernorm_lanes == 16 and DEFAULT.with_array(2, 2).layernorm_lanes == 2
    m, n = 197, 192
    res = run_executor(acc, dut, [_fixed_ln_job(acc, m, n)], 1, uses_dma=True, gap=0.0)
    check_results(acc, res, 1, uses_dma=True)
    assert res[0]["cycles"] == ln_cycles(acc, m, n, 16) == 2703


def test_bad_shape_is_refused():
    """A descriptor the sequencer would have refused (n = 0, k >= n) still ends with
    CTRL_BAD_SHAPE and touches nothing, instead of hanging or writing outside its window."""
    acc = CONFIGS["4x4-rl4-dw128"]
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rows = acc.buffers.max_tokens
    job = dict(n_live=rows, blob=bytes(256), brk=None, special="random", abort=None)
    ln = [dict(job, d=isa.Descriptor(Op.LAYERNORM, src=Buf.X0, dst=Buf.N, m=3, n=0, name="n0"))]
    mean = [dict(job, d=isa.Descriptor(Op.MEAN, src=Buf.H, dst=Buf.H, m=3, k=k, n=n, name=f"k{k}n{n}"))
            for k, n in ((5, 5), (9, 4), (0, 0))]
    for dut, jobs in ((LayerNormExecutor(acc), ln), (MeanExecutor(acc), mean)):
        for r in run_executor(acc, dut, jobs, seed, uses_dma=False):
            assert r["want_err"] == r["err"] == ErrorCode.CTRL_BAD_SHAPE, r["job"]["d"].name
            assert r["writes"] == 0 and not r["reads"], r["job"]["d"].name


def test_param_beats_match_block():
    for acc in CONFIGS.values():
        for n in (1, 15, 16, 17, 48):
            d = isa.Descriptor(Op.LAYERNORM, n=n)
            assert param_beats(acc, n) * acc.shell.data_bytes == isa.param_block_bytes(acc, d)


def test_constructor_rejects_wrong_config():
    acc = small_config(4, 4, 4, 128)
    bad = dataclasses.replace(acc, nonlinear=dataclasses.replace(acc.nonlinear, layernorm_in_bits=6))
    cases = [(LayerNormExecutor, "default", TypeError, "acc must be an AcceleratorConfig"),
             (MeanExecutor, "default", TypeError, "acc must be an AcceleratorConfig"),
             (LayerNormExecutor, bad, ValueError, "layernorm_in_bits must be >= 8"),
             (lambda a: LayerNormExecutor(a, row_lanes=3), acc, ValueError, "row_lanes must be a power of two"),
             (lambda a: LayerNormExecutor(a, row_lanes=32), acc, ValueError, "row_lanes must be a power of two"),
             (lambda a: MeanExecutor(a, sum_lanes=3), acc, ValueError, "sum_lanes must be an int dividing"),
             (lambda a: MeanExecutor(a, sum_lanes=0), acc, ValueError, "sum_lanes must be an int dividing")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # the half-built component is never elaborated
        for cls, arg, exc, msg in cases:
            with pytest.raises(exc, match=msg):
                cls(arg)
        gc.collect()
