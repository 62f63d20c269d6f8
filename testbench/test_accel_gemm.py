"""Amaranth-simulator tests of rtl/accel/gemm_exec.py (GEMM executor) and rtl/accel/weight_source.py.

The token buffers, the DMA and (``RawOutput``) the output stage are Python models (the harness
:mod:`heatvit.sim.gemm_exec_bench`) with random valid/ready gaps on every stream.  The
executor's raw accumulator rows (what it hands ``GemmOutput.i``) are checked bit-exactly against
``golden.matmul_acc`` on the operands ``heatvit.compiler.interpret`` takes (src window, DDR /
BUF / BUF_T weights, live-clipped shape), and lanes past N must be 0; the parameter beats handed
to ``GemmOutput.params`` against the parameter block's bytes.  Seeds: HEATVIT_SEED.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit import golden, isa
from heatvit.compiler import cycles as cycles_model
from heatvit.compiler.interpret import Machine, Step, unpack_weights
from heatvit.golden import nonlinear as NL
from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.errors import ErrorCode
from heatvit.shell_config import ShellConfig
from heatvit.isa import Buf, Epilogue, Op, WSrc
from heatvit.rtl.accel.descriptor import fields_layout
from heatvit.rtl.accel.gemm_exec import param_bytes
from heatvit.rtl.accel.ports import buffer_write
from heatvit.rtl.gemm import layouts
from heatvit.sim.gemm_exec_bench import ExecutorBench
from heatvit.sim.runner import pick_seed

from accel.streams import send


def _acc(rows, cols):
    return AcceleratorConfig(gemm=GemmConfig(rows=rows, cols=cols, act_buffer_words=512, max_m=64, max_k=512,
                                             max_n=256, weight_fifo_depth=8, out_fifo_depth=4))


ACC = {"4x4": _acc(4, 4), "8x4": _acc(8, 4), "4x8": _acc(4, 8),
       # the wide weight path: 2 weight ports of 4-byte beats, a word of 8 int8 a cycle
       "8x8p2": dataclasses.replace(_acc(8, 8), shell=ShellConfig(data_width=32), weight_beats_per_cycle=2)}


class RawOutput(wiring.Component):
    """Test stand-in for ``GemmOutput`` with its ports (contract of ACCEL_PLAN.md); no logic:
    the testbench takes ``cmd``, ``params`` and the raw rows ``i`` itself and pulses ``done``."""

    def __init__(self, acc):
        lanes = isa.column_align(acc)
        super().__init__({
            "cmd": In(stream.Signature(fields_layout())),
            "params": In(stream.Signature(acc.shell.data_width)),
            "i": In(stream.Signature(layouts.raw_beat(acc.gemm))),
            "dst": Out(buffer_write(lanes)),
            "done": Out(1), "error": Out(8), "abort": In(1),
        })

    def elaborate(self, platform):
        return Module()


# -- operands ------------------------------------------------------------------------------------

def record(epilogue: Epilogue):
    """A nonlinear record of the epilogue's kind (golden parameter objects)."""
    if epilogue == Epilogue.REQ16_GELU:
        return NL.gelu_params(2.0 ** -9, 2.0 ** -5, out_bits=8, in_bits=16)
    if epilogue == Epilogue.REQ8_GELU:
        return NL.gelu_params(2.0 ** -4, 2.0 ** -5, out_bits=8, in_bits=8)
    if epilogue == Epilogue.RAW_SOFTMAX:
        return NL.softmax_params(2.0 ** -10, out_max=127, in_bits=32)
    if epilogue == Epilogue.REQ8_SOFTMAX:
        return NL.softmax_params(2.0 ** -4, out_max=255, in_bits=8)
    if epilogue == Epilogue.REQ8_SIGMOID:
        return NL.sigmoid_params(2.0 ** -4, 2.0 ** -8, out_bits=8, in_bits=8)
    raise ValueError(epilogue)


class Case:
    """One GEMM descriptor with its token buffers, DDR model image and the expected raw result."""

    def __init__(self, acc, rng: random.Random, np_rng, wsrc: WSrc, epilogue: Epilogue = Epilogue.REQ8,
                 live: bool = False, shape=None, check: bool = True, density: float | None = None,
                 bitmap=None):
        """``density``: a block-sparse DDR GEMM (``sparse = 1``) keeping each weight tile with this
        probability (N tile 0 all zero when there are two or more); ``bitmap``: that GEMM's
        ``(KT, NT)`` tile bitmap given instead."""
        g = acc.gemm
        R, C, A = g.rows, g.cols, isa.column_align(acc)
        self.acc = acc
        bufs = isa.token_buffers(acc)
        m, k, n = shape or (rng.randint(1, 2 * R + 3), rng.randint(1, 3 * R + 2), rng.randint(1, 3 * C + 2))
        n_live = 1 << 16
        flags = {}
        if live:
            # the live count clips M (tokens past N_live) and K (BUF) or N (BUF_T)
            flags = {"m_live": 1, "k_live": int(wsrc == WSrc.BUF), "n_live": int(wsrc == WSrc.BUF_T)}
            m = max(m, 3)
            if wsrc == WSrc.BUF:
                k = max(k, 3)
            if wsrc == WSrc.BUF_T:
                n = max(n, 3)
            n_live = rng.randint(2, min(m, k if wsrc == WSrc.BUF else n if wsrc == WSrc.BUF_T else m))

        def col(buf, width):
            return A * rng.randint(0, (bufs[buf].cols - width) // A)

        src, dst, aux = Buf.N, Buf.T, Buf.QKV
        aux_r, aux_c = (k, n) if wsrc == WSrc.BUF else (n, k)
        self.d = isa.Descriptor(
            Op.GEMM, epilogue=int(epilogue), wsrc=int(wsrc), src=src, dst=dst,
            aux=aux if wsrc != WSrc.DDR else 0,
            src_row=rng.randint(0, min(3, n_live - 1)), src_col=col(src, k), dst_row=rng.randint(0, 3), dst_col=col(dst, n),
            aux_row=rng.randint(0, 3) if wsrc != WSrc.DDR else 0,
            aux_col=col(aux, aux_c) if wsrc != WSrc.DDR else 0,
            m=m, k=k, n=n, addr=64 * rng.randint(0, 3), **flags)
        self.bitmap = None
        if bitmap is not None:
            self.bitmap = np.asarray(bitmap, dtype=bool)
            self.d = self.d.with_(sparse=1, tiles=int(self.bitmap.sum()))
        elif density is not None:
            kt_n, nt_n = -(-k // R), -(-n // C)
            self.bitmap = np_rng.random((kt_n, nt_n)) < density
            if nt_n > 1:
                self.bitmap[:, 0] = False
            self.d = self.d.with_(sparse=1, tiles=int(self.bitmap.sum()))
        if check:
            isa.check(self.d, acc, n_live)
        self.m, self.k, self.n = isa.live_dims(self.d, n_live)
        assert self.m >= 1
        self.bufs = {b: np_rng.integers(-128, 128, (s.rows, s.cols)) for b, s in bufs.items()}
        d = self.d
        self.p_bytes = param_bytes(acc, d)
        blob = bytearray(np_rng.integers(0, 256, d.addr + isa.param_block_bytes(acc, d) + 64).astype(np.uint8).tobytes())
        if wsrc == WSrc.DDR:
            w_full = np_rng.integers(-128, 128, (d.k, d.n))
            off, size = isa.param_block(acc, d)["weights"]
            if self.bitmap is not None:
                w_full = golden.apply_tile_mask(g, w_full, self.bitmap)
                boff, bsize = isa.param_block(acc, d)["bitmap"]
                blob[d.addr + boff:d.addr + boff + bsize] = isa.pack_bitmap(self.bitmap)
            stream = golden.pack_weights(g, w_full, self.bitmap).astype(np.int8).tobytes()
            packed = isa.stripe_weights(acc, stream)          # the weight ports' shares (P > 1)
            assert len(packed) == size
            blob[d.addr + off:d.addr + off + size] = packed
            w = unpack_weights(g, isa.unstripe_weights(acc, bytes(blob[d.addr + off:d.addr + off + size]), len(stream)),
                               d.k, d.n, self.bitmap)   # as interpret reads it
            assert np.array_equal(w, w_full)
        elif wsrc == WSrc.BUF:
            w = self.bufs[d.aux][d.aux_row:d.aux_row + self.k, d.aux_col:d.aux_col + self.n]
        else:
            w = self.bufs[d.aux][d.aux_row:d.aux_row + self.n, d.aux_col:d.aux_col + self.k].T
        a = self.bufs[d.src][d.src_row:d.src_row + self.m, d.src_col:d.src_col + self.k]
        # (m, n) int32; an unchecked descriptor (an engine fault) may not fit golden's shape checks
        self.raw = golden.matmul_acc(g, a, w) if check else np.asarray(a) @ np.asarray(w)
        parts = isa.param_block(acc, d)
        if "requant" in parts:
            # shifts that put most results inside the output range, a few saturating
            bias = np_rng.integers(-(1 << 12), 1 << 12, d.n)
            mult = np_rng.integers(1, 1 << g.mult_bits, d.n)
            out_bits = 16 if epilogue == Epilogue.REQ16_GELU else 8
            top = int(np.abs(self.raw).max()).bit_length() + np.ceil(np.log2(mult + 1)).astype(int)
            shift = np.clip(top - out_bits + np_rng.integers(-1, 3, d.n), 0, g.max_shift)
            off, size = parts["requant"]
            blob[d.addr + off:d.addr + off + size] = isa.pack_requant(bias, mult, shift)
        if epilogue in isa.RECORD_KIND:
            part, kind = isa.RECORD_KIND[Epilogue(epilogue)]
            rec = record(epilogue)
            names = isa.SOFTMAX_RECORD if part == "softmax" else isa.GELU_RECORD
            values = {nm: getattr(rec, nm) for nm in names}
            isa.check_record(kind, values, acc)
            off, size = parts[part]
            blob[d.addr + off:d.addr + off + size] = isa.pack_record(names, values)
        self.blob = bytes(blob)

    def expected(self) -> np.ndarray:
        """The dst buffer after the descriptor, by ``heatvit.compiler.interpret``."""
        mach = Machine.__new__(Machine)
        mach.acc, mach.g, mach.model = self.acc, self.acc.gemm, self.blob
        mach.bufs = {b: v.copy() for b, v in self.bufs.items()}
        d = self.d
        y = np.asarray(mach._gemm(d, self.m, self.k, self.n, Step(0, "", "GEMM", self.m, self.k, self.n)))
        if d.epilogue in isa.UNSIGNED_EPILOGUES:
            y = (y + 128) % 256 - 128
        out = mach.bufs[d.dst]
        out[d.dst_row:d.dst_row + self.m, d.dst_col:d.dst_col + self.n] = y
        return out

    def fields(self) -> dict:
        f = {fd.name: int(getattr(self.d, fd.name)) for fd in isa.FIELDS}
        f.update(live_m=self.m, live_k=self.k, live_n=self.n)
        return f

    def windows(self):
        """(port name, rows, columns) every buffer read must stay inside."""
        d = self.d
        out = {"src": (d.src, range(d.src_row, d.src_row + self.m), range(d.src_col, d.src_col + self.k))}
        if d.wsrc == WSrc.BUF:
            out["aux"] = (d.aux, range(d.aux_row, d.aux_row + self.k), range(d.aux_col, d.aux_col + self.n))
        elif d.wsrc == WSrc.BUF_T:
            out["aux"] = (d.aux, range(d.aux_row, d.aux_row + self.n), range(d.aux_col, d.aux_col + self.k))
        return out


def check_result(acc, case: Case, got: dict, seed: int):
    g, D = acc.gemm, acc.shell.data_bytes
    C = g.cols
    assert {k: int(getattr(got["cmd"], k)) for k in case.fields()} == case.fields(), f"seed {seed}: cmd"
    want_params = [int.from_bytes(case.blob[case.d.addr + i * D:case.d.addr + (i + 1) * D], "little")
                   for i in range(case.p_bytes // D)]
    assert got["params"] == want_params, f"seed {seed}: parameter beats"
    nt = -(-case.n // C)
    want_order = [(t, mm) for t in range(nt) for mm in range(case.m)]
    assert len(got["rows"]) == len(want_order)
    raw = np.zeros((case.m, nt * C), dtype=np.int64)
    raw[:, :case.n] = case.raw
    for i, ((lanes, tm, tnt, last), (t, mm)) in enumerate(zip(got["rows"], want_order)):
        assert (tm, tnt, last) == (mm, t, int(i == len(want_order) - 1)), f"seed {seed}: tag of row {i}"
        assert lanes == list(raw[mm, t * C:(t + 1) * C]), \
            f"seed {seed}: row m={mm} nt={t}: {lanes} != {list(raw[mm, t * C:(t + 1) * C])}"


# -- tests ---------------------------------------------------------------------------------------

WSRCS = [WSrc.DDR, WSrc.BUF, WSrc.BUF_T]


@pytest.mark.parametrize("name", list(ACC))
@pytest.mark.parametrize("wsrc", WSRCS, ids=[w.name for w in WSRCS])
def test_gemm_exec_raw(name, wsrc):
    """Random shapes (K, N not multiples of the tile), three GEMMs back to back, one live-clipped."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = ACC[name]
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed, output=RawOutput)
    got = {}
    eps = list(Epilogue)

    async def tb(ctx):
        for i in range(3):
            case = Case(acc, rng, np_rng, wsrc, rng.choice(eps), live=(i == 2 and wsrc != WSrc.DDR))
            _, err = await bench.run_one(ctx, case)
            assert err == 0, f"seed {seed}: error {err}"
            check_result(acc, case, got, seed)

    bench.simulate(tb, got)


@pytest.mark.parametrize("name", ["4x4", "8x4"])
def test_gemm_exec_cycles(name):
    """No stalls: measured cycles (descriptor accepted -> done) next to GemmConfig.estimate_cycles."""
    seed = pick_seed()
    acc = ACC[name]
    g = acc.gemm
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed, gap=0.0, output=RawOutput)
    got = {}
    shapes = [(16, 16, 16), (32, 32, 16), (8, 64, 8), (48, 24, 32)]
    rows = []

    async def tb(ctx):
        for wsrc in WSRCS:
            for m, k, n in shapes:
                case = Case(acc, rng, np_rng, wsrc, Epilogue.REQ8, shape=(m, k, n))
                cycles, err = await bench.run_one(ctx, case)
                assert err == 0
                check_result(acc, case, got, seed)
                est = g.estimate_cycles(m, k, n)
                rows.append((wsrc.name, m, k, n, cycles, est))
                if wsrc.name == "BUF_T":
                    # The transposing source collects C rows, then emits a tile's R words: with the
                    # engine's max(M, R) tiles it, not the engine, can set the pace.
                    tiles = -(-k // g.rows) * -(-n // g.cols)
                    est = max(est, tiles * (g.cols + g.rows + 2))
                # the engine, after the first activation tile (M words) and its weights, and the hand-over
                assert cycles <= est + m + 2 * g.rows + 20, (wsrc.name, m, k, n, cycles, est)

    bench.simulate(tb, got)
    for r in rows:
        print("%-5s m=%3d k=%3d n=%3d cycles=%5d estimate=%5d ratio=%.3f" % (*r, r[4] / r[5]))


EPILOGUES = list(Epilogue)


def check_dst(bench, case: Case, where: str):
    """The dst buffer after ``case`` equals heatvit.compiler.interpret's, window and outside alike."""
    want = case.expected()
    bad = np.argwhere(bench.dst_buf != want)
    assert not len(bad), (f"{where} m,k,n={case.m},{case.k},{case.n}: {len(bad)} wrong bytes, first "
                          f"{bad[0]}: {bench.dst_buf[tuple(bad[0])]} != {want[tuple(bad[0])]}")


@pytest.mark.parametrize("name", list(ACC))
@pytest.mark.parametrize("epilogue", EPILOGUES, ids=[e.name for e in EPILOGUES])
def test_gemm_exec(name, epilogue):
    """With GemmOutput: the dst buffer after each GEMM (random weight source, shape, live
    clipping) equals heatvit.compiler.interpret's, and nothing outside the window changed."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = ACC[name]
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed)

    async def tb(ctx):
        for i in range(2):
            wsrc = rng.choice(WSRCS)
            case = Case(acc, rng, np_rng, wsrc, epilogue, live=(i == 1 and wsrc != WSrc.DDR))
            _, err = await bench.run_one(ctx, case)
            assert err == 0, f"seed {seed}: error {err}"
            check_dst(bench, case, f"seed {seed}: {epilogue.name} {wsrc.name}")

    bench.simulate(tb, {})


FAULTS = ["abort", "dma_error", "engine", "params"]


@pytest.mark.parametrize("name", ["4x4", "4x8", "8x8p2"])
@pytest.mark.parametrize("fault", FAULTS)
def test_gemm_exec_faults(name, fault):
    """abort at a random cycle (no done), a DMA error, an engine error (M > max_m, a descriptor
    the checker would refuse) and a parameter record out of range: the code with done (nothing
    written for the last two), and the next GEMM is correct."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = ACC[name]
    g = acc.gemm
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed)
    dut = bench.dut

    async def tb(ctx):
        wsrc = rng.choice(WSRCS)
        if fault == "engine":
            case = Case(acc, rng, np_rng, wsrc, Epilogue.REQ8, shape=(g.max_m + 1, g.rows, g.cols), check=False)
        elif fault == "params":
            case = Case(acc, rng, np_rng, wsrc, Epilogue.REQ8)
            off = case.d.addr + isa.param_block(acc, case.d)["requant"][0]
            blob = bytearray(case.blob)
            blob[off + 7] = g.max_shift + 1 + rng.randrange(256 - g.max_shift - 1)   # channel 0's shift
            case.blob = bytes(blob)
        else:
            case = Case(acc, rng, np_rng, wsrc, rng.choice(list(Epilogue)))
        before = case.bufs[case.d.dst].copy()
        if fault in ("abort", "dma_error"):
            bench.case = case
            bench.dst_buf = before.copy()
            await send(ctx, dut.cmd, [case.fields()], bench.rng, bench.gap)
            at = rng.randint(1, 60)
            for _ in range(at):
                assert not ctx.get(dut.done), f"seed {seed}: done before the fault"
                await ctx.tick()
            if fault == "abort":
                ctx.set(dut.abort, 1)
                await ctx.tick()
                ctx.set(dut.abort, 0)
                bench.epoch += 1
                for _ in range(200):
                    _, _, done = await ctx.tick().sample(dut.done)
                    assert not done, f"seed {seed}: done after abort"
            else:
                ctx.set(dut.dma_error, ErrorCode.AXI_READ_ERROR)
                cycles = 0
                while True:
                    _, _, done, err = await ctx.tick().sample(dut.done, dut.error)
                    ctx.set(dut.dma_error, 0)
                    cycles += 1
                    if done:
                        break
                    assert cycles < 1000, f"seed {seed}: no done after the DMA error"
                assert int(err) == ErrorCode.AXI_READ_ERROR, f"seed {seed}: error {int(err)}"
                bench.epoch += 1
        else:
            _, err = await bench.run_one(ctx, case)
            want = ErrorCode.M_TOO_LARGE if fault == "engine" else ErrorCode.CTRL_BAD_PARAMS
            assert err == want, f"seed {seed}: error {err}, want {want!r}"
            assert (bench.dst_buf == before).all(), f"seed {seed}: {fault}: the dst buffer was written"
        for _ in range(2):
            case = Case(acc, rng, np_rng, rng.choice(WSRCS), rng.choice(list(Epilogue)))
            _, err = await bench.run_one(ctx, case)
            assert err == 0, f"seed {seed}: error {err} after the {fault}"
            assert (bench.dst_buf == case.expected()).all(), f"seed {seed}: wrong result after the {fault}"

    bench.simulate(tb, {})


def test_gemm_exec_default():
    """The default 16 x 16 config (DDR, then BUF_T with a live-clipped N, then BUF; random
    epilogues) through GemmOutput, bit-exact with heatvit.compiler.interpret."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = AcceleratorConfig()
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed)

    async def tb(ctx):
        for wsrc, live in ((WSrc.DDR, False), (WSrc.BUF_T, True), (WSrc.BUF, False)):
            shape = (rng.randint(3, 6), rng.randint(17, 40), rng.randint(3, 20))
            case = Case(acc, rng, np_rng, wsrc, rng.choice(list(Epilogue)), live=live, shape=shape)
            _, err = await bench.run_one(ctx, case)
            assert err == 0, f"seed {seed}: error {err}"
            assert (bench.dst_buf == case.expected()).all(), f"seed {seed}: {wsrc.name} wrong result"

    bench.simulate(tb, {})


# -- block-sparse weights (sparse = 1) ---------------------------------------------------------------

@pytest.mark.parametrize("name", list(ACC))
def test_gemm_exec_sparse_raw(name):
    """Block-sparse DDR weights at densities 0.7, 0.4, 0.0 and 1.0 (N tile 0 always empty), random
    stalls: the raw rows are bit-exact (empty N tiles give zero rows, their bias comes later)."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = ACC[name]
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed, output=RawOutput)
    got = {}

    async def tb(ctx):
        for density in (0.7, 0.4, 0.0, 1.0):
            case = Case(acc, rng, np_rng, WSrc.DDR, rng.choice(list(Epilogue)), density=density)
            _, err = await bench.run_one(ctx, case)
            assert err == 0, f"seed {seed}: error {err}"
            check_result(acc, case, got, seed)

    bench.simulate(tb, got)


@pytest.mark.parametrize("name", list(ACC))
def test_gemm_exec_sparse(name):
    """With GemmOutput: sparse GEMMs of every epilogue bit-exact with heatvit.compiler.interpret,
    interleaved with dense ones."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = ACC[name]
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed)

    async def tb(ctx):
        for i, ep in enumerate(Epilogue):
            sparse = i % 2 == 0
            case = Case(acc, rng, np_rng, WSrc.DDR, ep, density=rng.choice([0.3, 0.6]) if sparse else None)
            _, err = await bench.run_one(ctx, case)
            assert err == 0, f"seed {seed}: error {err}"
            check_dst(bench, case, f"seed {seed}: {ep.name} sparse={sparse}")

    bench.simulate(tb, {})


def sparse_cycle_cases(g, np_rng):
    """(shape, bitmap or None) of :func:`test_gemm_exec_sparse_cycles`: per shape the dense GEMM,
    random bitmaps of falling density, one whose first N tile's only tile is the last K tile, and
    one with a single tile in the last N tile (every N tile before it empty)."""
    out = []
    for m, k, n in [(16, 32, 32), (8, 64, 16), (20, 48, 12), (3, 64, 16), (1, 32, 8), (40, 16, 8)]:
        kt, nt = -(-k // g.rows), -(-n // g.cols)
        out.append(((m, k, n), None))
        out += [((m, k, n), np_rng.random((kt, nt)) < p) for p in (0.5, 0.3, 0.15)]
        late = np.zeros((kt, nt), bool)
        late[kt - 1, 0] = late[0, nt - 1] = True
        late[kt // 2, :] = True
        one = np.zeros((kt, nt), bool)
        one[kt - 1, nt - 1] = True
        out += [((m, k, n), late), ((m, k, n), one)]
    return out


@pytest.mark.parametrize("name", ["4x4", "8x4"])
def test_gemm_exec_sparse_cycles(name):
    """No stalls: every GEMM's cycles are its lead (parameter and bitmap beats) plus the engine's
    modelled cycles (dense: GemmConfig.estimate_cycles; sparse: cycles.sparse_engine_cycles,
    each pass also waiting for its descriptor and its activations) plus one constant: the
    harness's DMA and hand-over, the dense GEMMs' (exact, every case)."""
    seed = pick_seed()
    acc = ACC[name]
    g = acc.gemm
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    bench = ExecutorBench(acc, seed, gap=0.0, output=RawOutput)
    got = {}
    rows = []

    async def tb(ctx):
        for (m, k, n), bitmap in sparse_cycle_cases(g, np_rng):
            case = Case(acc, rng, np_rng, WSrc.DDR, Epilogue.REQ8, shape=(m, k, n), bitmap=bitmap)
            cycles, err = await bench.run_one(ctx, case)
            assert err == 0
            check_result(acc, case, got, seed)
            eng = (g.estimate_cycles(m, k, n) if bitmap is None
                   else cycles_model.sparse_engine_cycles(acc, m, k, n, bitmap))
            lead = cycles_model.param_beats(acc, case.d) + cycles_model.bitmap_beats(acc, case.d)
            rows.append((m, k, n, None if bitmap is None else int(bitmap.sum()), cycles, eng, cycles - eng - lead))

    bench.simulate(tb, got)
    for r in rows:
        print("m=%3d k=%3d n=%3d tiles=%s cycles=%5d engine=%5d rest=%d" % r)
    rest = {r[-1] for r in rows}
    assert len(rest) == 1, f"seed {seed}: cycles beyond the lead and engine differ: {rows}"


# -- BeatWeights (DDR weight words from DMA beats) ---------------------------------------------------

def _beat_acc(cols: int, data_width: int) -> AcceleratorConfig:
    from heatvit.shell_config import ShellConfig
    g = _acc(4, cols).gemm
    return AcceleratorConfig(gemm=g, shell=ShellConfig(data_width=data_width))


# (C, data_width): C / D = 2 and 4, the board's 32-lane word from 128-bit beats, C = D and C < D
BEAT_SHAPES = {"c8d4": (8, 32), "c16d4": (16, 32), "c32d16": (32, 128), "c4d4": (4, 32), "c4d8": (4, 64)}


def _beat_gemm(rng: random.Random, C: int, D: int, words: int):
    """The beats of ``words`` weight words (random bytes; the final beat's spare bytes random too,
    BeatWeights drops them) and the words it must emit."""
    data = [rng.randrange(256) for _ in range(-(-words * C // D) * D)]
    beats = [int.from_bytes(bytes(data[b * D:(b + 1) * D]), "little") for b in range(len(data) // D)]
    want = [int.from_bytes(bytes(data[j * C:(j + 1) * C]), "little") for j in range(words)]
    return beats, want


async def _beat_run(ctx, dut, words: int, rng: random.Random, gap: float):
    """Pulse ``start`` with ``words`` and collect them (``o.ready`` low with probability ``gap``):
    (words, beats taken from the start cycle to the last word, cycles after the start cycle)."""
    ctx.set(dut.words, words)
    ctx.set(dut.start, 1)
    _, _, taken = await ctx.tick().sample(dut.i.valid & dut.i.ready)
    ctx.set(dut.start, 0)
    out, cycles = [], 0
    while len(out) < words:
        ctx.set(dut.o.ready, rng.random() >= gap)
        _, _, ov, orr, op, take = await ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload.as_value(),
                                                          dut.i.valid & dut.i.ready)
        taken += take
        cycles += 1
        if ov and orr:
            out.append(op)
        assert cycles < 100 * words + 100, f"{len(out)} of {words} words after {cycles} cycles"
    ctx.set(dut.o.ready, 0)
    return out, taken, cycles


@pytest.mark.parametrize("gap", [0.3, 0.6])
@pytest.mark.parametrize("shape", list(BEAT_SHAPES))
def test_beat_weights(shape, gap):
    """Random valid gaps on the beats and ready stalls on the words; GEMMs of 1, 2 and odd word
    counts, each started the cycle after the previous one's last word (its beats already queued
    behind): every word bit-exact and in order, and exactly ``ceil(words * C / D)`` beats taken
    per GEMM (none of the next GEMM's before its start)."""
    from amaranth.sim import Simulator
    from heatvit.rtl.accel.weight_source import BeatWeights
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    C, width = BEAT_SHAPES[shape]
    D = width // 8
    rng = random.Random(seed)
    dut = BeatWeights(_beat_acc(C, width))
    counts = [1, 2, 3, 1, 5, 2, 7, 4, 9, 1, 1]
    gemms = [_beat_gemm(rng, C, D, w) for w in counts]
    beats = [b for bs, _ in gemms for b in bs]

    async def source(ctx):
        await send(ctx, dut.i, beats, random.Random(seed + 1), gap=gap)

    async def tb(ctx):
        for w, (bs, want) in zip(counts, gemms):
            out, taken, _ = await _beat_run(ctx, dut, w, rng, gap)
            assert out == want, f"seed {seed}: {w} words"
            assert taken == len(bs), f"seed {seed}: {w} words took {taken} beats, not {len(bs)}"
        for _ in range(8):  # idle: no beat taken
            _, _, take = await ctx.tick().sample(dut.i.valid & dut.i.ready)
            assert not take

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("shape", list(BEAT_SHAPES))
def test_beat_weights_rate(shape):
    """No stall on either side: ``D`` bytes a cycle when ``C > D`` (a word every ``C / D``
    cycles, the first after ``C / D + 1``), a word a cycle when ``C <= D``; the model's
    ``weight_stream_cycles`` prices the same beats."""
    from amaranth.sim import Simulator
    from heatvit.rtl.accel.weight_source import BeatWeights
    C, width = BEAT_SHAPES[shape]
    D = width // 8
    rng = random.Random(0)
    acc = _beat_acc(C, width)
    dut = BeatWeights(acc)
    counts = [1, 2, 7, 16]
    gemms = [_beat_gemm(rng, C, D, w) for w in counts]
    beats = [b for bs, _ in gemms for b in bs]

    async def source(ctx):
        await send(ctx, dut.i, beats, rng, gap=0.0)

    async def tb(ctx):
        for w, (bs, want) in zip(counts, gemms):
            out, taken, cycles = await _beat_run(ctx, dut, w, rng, 0.0)
            assert out == want and taken == len(bs)
            assert cycles == (w * C // D + 1 if C > D else w), (w, cycles)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(tb)
    sim.run()
