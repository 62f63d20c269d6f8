"""Amaranth-simulator test of rtl/accel/gemm_output.py (GemmOutput, with rtl/accel/softmax_rows.py):
one or more GEMMs back to back, each = ``cmd`` (a GEMM descriptor), ``params`` (the parameter
block's beats before ``weights``, :func:`param_beats`), the engine's accumulator rows N-tile major
-> token-buffer writes, compared with the interpreter's epilogue semantics
(:meth:`heatvit.compiler.interpret.Interpreter._gemm`: golden requantize / gelu / sigmoid /
softmax with the records of heatvit.isa; unsigned epilogues stored as the uint8 pattern).  Random
valid/ready gaps on every stream; records out of range -> CTRL_BAD_PARAMS with nothing written.
Seeds: HEATVIT_SEED."""

import dataclasses
import gc
import random
import warnings

import numpy as np
import pytest
from amaranth.sim import Simulator

from heatvit import golden, isa
from heatvit.errors import ErrorCode
from heatvit.golden import nonlinear as NL
from heatvit.isa import Epilogue
from heatvit.rtl.accel.gemm_output import GemmOutput, param_beats
from heatvit.rtl.accel.softmax_rows import SoftmaxRows, score_geometry
from heatvit.sim.runner import pick_seed

from accel.streams import send
from test_accel_epilogue import ACC, requant_params

E = Epilogue


@dataclasses.dataclass
class Job:
    d: isa.Descriptor
    live_m: int
    live_n: int
    accs: np.ndarray                 # live_m x (tiles * C) accumulators (lanes >= live_n: junk)
    blob: bytes                      # the parameter block before ``weights``
    want: np.ndarray | None          # live_m x live_n results (int), None: an error is expected
    code: int = 0


def records(mode: Epilogue, rng: random.Random) -> dict:
    """A valid nonlinear record of the epilogue's kind (golden parameter functions)."""
    if mode == E.REQ16_GELU:
        p = NL.gelu_params(2.0 ** rng.randint(-11, -8), 2.0 ** rng.randint(-6, -4), out_bits=8, in_bits=16)
    elif mode == E.REQ8_GELU:
        p = NL.gelu_params(rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.05), out_bits=8, in_bits=8)
    elif mode == E.REQ8_SIGMOID:
        p = NL.sigmoid_params(rng.uniform(0.01, 0.1), 1 / 255, out_bits=8, in_bits=8)
    elif mode == E.RAW_SOFTMAX:
        p = NL.softmax_params(2.0 ** rng.uniform(-22, -8), out_max=127, in_bits=32)
    else:
        p = NL.softmax_params(rng.uniform(0.02, 0.2), out_max=255, in_bits=8)
    names = isa.SOFTMAX_RECORD if mode in (E.RAW_SOFTMAX, E.REQ8_SOFTMAX) else isa.GELU_RECORD
    return {nm: int(getattr(p, nm)) for nm in names}


def reference(acc, mode, accs, live_n, req, rec):
    """The interpreter's ``_gemm`` epilogue on raw accumulators ``accs`` (live_m x live_n)."""
    g = acc.gemm
    kw = dict(acc_bits=g.acc_bits, bias_bits=g.bias_bits, mult_bits=g.mult_bits, max_shift=g.max_shift)
    if mode == E.RAW_SOFTMAX:
        return NL.softmax(accs, NL.SoftmaxParams(**rec, s_in=float("nan")), acc.nonlinear)
    bias, mult, shift = (np.asarray(v[:live_n]) for v in req)
    pre = golden.requantize(accs, bias, mult, shift, out_bits=16 if mode == E.REQ16_GELU else 8, **kw)
    if mode == E.REQ8:
        return pre
    if mode == E.REQ8_SOFTMAX:
        return NL.softmax(pre, NL.SoftmaxParams(**rec, s_in=float("nan")), acc.nonlinear)
    p = NL.ActParams(**rec, s_in=float("nan"), s_out=float("nan"))
    return (NL.sigmoid if mode == E.REQ8_SIGMOID else NL.gelu)(pre, p, acc.nonlinear)


def make_job(acc, mode, rng, np_rng, *, live_m=None, n=None, live_n=None, bad=None) -> Job:
    """A random GEMM of epilogue ``mode``; ``bad`` = (part, name, value): one record value out of
    range (part ``requant``: channel 0's value; else the nonlinear record's word)."""
    g = acc.gemm
    C = g.cols
    lanes = isa.column_align(acc)
    rows_max, tiles_max = score_geometry(acc)
    softmax = mode in (E.RAW_SOFTMAX, E.REQ8_SOFTMAX)
    if n is None:
        n = 2 if mode == E.REQ8_SOFTMAX else rng.randint(1, (min(tiles_max, 4) if softmax else 4) * C)
    live_n = n if live_n is None else live_n
    live_m = rng.randint(1, 6) if live_m is None else live_m
    tiles = -(-live_n // C)
    accs = np_rng.integers(-(1 << 22), 1 << 22, (live_m, tiles * C))
    if mode == E.RAW_SOFTMAX:
        accs = np_rng.integers(-(1 << rng.randint(8, 31)), 1 << 20, (live_m, tiles * C))
    if rng.random() < 0.5:
        accs[0, :min(2, live_n)] = [(1 << 31) - 1, -(1 << 31)][:min(2, live_n)]   # the extremes
    req = requant_params(np_rng, g, n, 16 if mode == E.REQ16_GELU else 8)
    rec = records(mode, rng) if mode != E.REQ8 else None
    d = isa.Descriptor(opcode=isa.Op.GEMM, epilogue=mode, m=live_m, k=8, n=n, wsrc=rng.choice(list(isa.WSrc)),
                       src=isa.Buf.N, dst=isa.Buf.P if softmax else isa.Buf.H,
                       dst_row=rng.randint(0, 40), dst_col=lanes * rng.randint(0, 3), addr=0)
    if bad is not None:
        part, name, value = bad
        if part == "requant":
            {"bias": req[0], "mult": req[1], "shift": req[2]}[name][0] = value
        else:
            rec[name] = value
    parts = isa.param_block(acc, d)
    blob = bytearray(param_beats(acc, d) * acc.shell.data_bytes)
    if "requant" in parts:
        raw = isa.pack_requant(*req)
        blob[parts["requant"][0]:parts["requant"][0] + len(raw)] = raw
    if rec is not None:
        part = isa.RECORD_KIND[mode][0]
        names = isa.SOFTMAX_RECORD if part == "softmax" else isa.GELU_RECORD
        blob[parts[part][0]:parts[part][0] + isa.NL_RECORD_BYTES] = isa.pack_record(names, rec)
    want = None if bad is not None else reference(acc, mode, accs[:, :live_n], live_n, req, rec)
    return Job(d, live_m, live_n, accs, bytes(blob), want, ErrorCode.CTRL_BAD_PARAMS if bad else 0)


def run(acc, jobs, seed, gap=0.3, limit=20_000, units=None, lanes=None):
    """Simulate ``jobs`` back to back; returns per job (writes, error code, cycles from the last
    accumulator row to ``done``)."""
    g = acc.gemm
    C = g.cols
    db = acc.shell.data_bytes
    dut = GemmOutput(acc, softmax_units=units, softmax_lanes=lanes)
    rng = random.Random(seed)
    results = [{"writes": [], "code": None, "last_i": None, "done": None} for _ in jobs]
    state = {"job": 0, "cycle": 0}

    async def driver(ctx):
        for j, job in enumerate(jobs):
            d = job.d
            fields = {f.name: getattr(d, f.name) for f in isa.FIELDS if hasattr(d, f.name)}
            fields.update(live_m=job.live_m, live_k=d.k, live_n=job.live_n)
            await send(ctx, dut.cmd, [fields], rng, gap)
            beats = [int.from_bytes(job.blob[i:i + db], "little") for i in range(0, len(job.blob), db)]
            await send(ctx, dut.params, beats, rng, gap)
            tiles = -(-job.live_n // C)
            rows = [(nt, mm) for nt in range(tiles) for mm in range(job.live_m)]
            await send(ctx, dut.i, [{"acc": [int(x) for x in job.accs[mm, nt * C:(nt + 1) * C]],
                                     "tag": {"m": mm, "nt": nt, "last": int(i == len(rows) - 1)}}
                                    for i, (nt, mm) in enumerate(rows)], rng, gap)
            results[j]["last_i"] = state["cycle"]
            while results[j]["code"] is None:
                await ctx.tick()

    async def sink(ctx):
        srng = random.Random(seed + 1)
        cycles = 0
        while state["job"] < len(jobs):
            ready = srng.random() >= gap
            ctx.set(dut.dst.ready, ready)
            _, _, valid, payload, done, error = await ctx.tick().sample(dut.dst.valid, dut.dst.payload,
                                                                       dut.done, dut.error)
            state["cycle"] += 1
            r = results[state["job"]]
            if ready and valid:
                r["writes"].append((int(payload.row), int(payload.word), int(payload.data), int(payload.mask)))
            if done:
                r["code"], r["done"] = int(error), state["cycle"]
                state["job"] += 1
            cycles += 1
            assert cycles < limit, f"seed {seed}: no done after {cycles} cycles (job {state['job']})"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(sink)
    sim.run()
    return results


def check(acc, jobs, results, seed):
    lanes = isa.column_align(acc)
    for j, (job, r) in enumerate(zip(jobs, results)):
        what = f"seed {seed} job {j} ({Epilogue(job.d.epilogue).name}, m {job.live_m}, n {job.live_n})"
        assert r["code"] == job.code, f"{what}: error {r['code']} != {job.code}"
        if job.want is None:
            assert r["writes"] == [], f"{what}: wrote after a record error"
            continue
        buf = {}
        for row, word, dat, mask in r["writes"]:
            for lane in range(lanes):
                if mask >> lane & 1:
                    key = (row, word * lanes + lane)
                    assert key not in buf, f"{what}: ({row}, {key[1]}) written twice"
                    buf[key] = (dat >> (8 * lane)) & 0xFF
        d = job.d
        want_keys = {(d.dst_row + i, d.dst_col + c) for i in range(job.live_m) for c in range(job.live_n)}
        assert set(buf) == want_keys, f"{what}: wrote {sorted(set(buf) ^ want_keys)[:8]} ... outside/missing"
        got = np.array([[buf[(d.dst_row + i, d.dst_col + c)] for c in range(job.live_n)] for i in range(job.live_m)])
        want = np.asarray(job.want, dtype=np.int64) & 0xFF          # the buffer byte (uint8 pattern)
        assert np.array_equal(got, want), f"{what}:\n{got}\n!=\n{want}"


@pytest.mark.parametrize("name", list(ACC))
@pytest.mark.parametrize("mode", list(Epilogue), ids=[e.name for e in Epilogue])
def test_gemm_output(name, mode):
    """Each epilogue, then a second GEMM of a random epilogue (state carried over cleanly)."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC[name]
    jobs = [make_job(acc, mode, rng, np_rng), make_job(acc, rng.choice(list(Epilogue)), rng, np_rng)]
    check(acc, jobs, run(acc, jobs, seed), seed)


@pytest.mark.parametrize("name", ["4x4", "8x4"])
def test_live_n_edges(name):
    """live_n = 1, C - 1, C, C + 1 and the whole score row, n clipped by live_n (the block holds
    full-n records), one token and several; a bad requant record on a channel >= live_n is not
    an error (the interpreter reads live_n records)."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC[name]
    C = acc.gemm.cols
    rows_max, tiles_max = score_geometry(acc)
    jobs = []
    for live_n in (1, C - 1, C, C + 1, tiles_max * C):
        if live_n < 1:
            continue
        for mode in (E.REQ8, E.RAW_SOFTMAX):
            n = min(tiles_max * C, live_n + rng.randint(0, 5))
            jobs.append(make_job(acc, mode, rng, np_rng, live_m=rng.choice([1, 3]), n=n, live_n=live_n))
    # channel n-1 >= live_n holds a bad shift: not read
    job = make_job(acc, E.REQ8, rng, np_rng, n=C + 2, live_n=C)
    blob = bytearray(job.blob)
    blob[8 * (C + 1) + 7] = 255
    jobs.append(dataclasses.replace(job, blob=bytes(blob)))
    check(acc, jobs, run(acc, jobs, seed), seed)


BAD = [
    (E.REQ8, ("requant", "shift", 63)), (E.REQ8, ("requant", "mult", 1 << 20)),
    (E.REQ16_GELU, ("gelu", "in_bits", 8)), (E.REQ16_GELU, ("gelu", "out_min", -129)),
    (E.REQ8_GELU, ("gelu", "in_shift", 64)), (E.RAW_SOFTMAX, ("softmax", "mult", 0)),
    (E.RAW_SOFTMAX, ("softmax", "out_max", 128)), (E.REQ8_SOFTMAX, ("softmax", "out_max", 256)),
    (E.REQ8_SOFTMAX, ("softmax", "in_bits", 32)), (E.REQ8_SIGMOID, ("sigmoid", "out_min", -1)),
    (E.REQ8_SIGMOID, ("sigmoid", "out_max", 0)),
]


@pytest.mark.parametrize("mode,bad", BAD, ids=[f"{m.name}-{b[1]}={b[2]}" for m, b in BAD])
def test_bad_record(mode, bad):
    """A record value outside isa.record_limits -> CTRL_BAD_PARAMS with done, nothing written;
    the next GEMM runs normally."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC["4x4"]
    kind = isa.record_limits(acc)["requant" if bad[0] == "requant" else isa.RECORD_KIND[mode][1]]
    lo, hi = kind[bad[1]]
    assert not lo <= bad[2] <= hi, "the test's value must be out of range"
    jobs = [make_job(acc, mode, rng, np_rng, bad=bad), make_job(acc, mode, rng, np_rng)]
    check(acc, jobs, run(acc, jobs, seed), seed)


def test_param_beats():
    """param_beats = the block's bytes before weights / data_bytes, for every epilogue and wsrc."""
    acc = ACC["4x4"]
    for mode in Epilogue:
        for wsrc in isa.WSrc:
            for n in (1, 7, 8, 9, 64):
                d = isa.Descriptor(opcode=isa.Op.GEMM, epilogue=mode, m=1, k=4, n=n, wsrc=wsrc)
                parts = isa.param_block(acc, d)
                end = max(o + s for p, (o, s) in parts.items() if p != "weights")
                assert param_beats(acc, d) == -(-((end + 63) // 64 * 64) // acc.shell.data_bytes)
    with pytest.raises(ValueError, match="must be a GEMM"):
        param_beats(acc, isa.Descriptor(opcode=isa.Op.ADD))


@pytest.mark.parametrize("units,lanes", [(2, None), (3, 2), (1, 2), (2, 1)])
def test_softmax_units(units, lanes):
    """Two and three softmax units (rows in turn, m not a multiple of the count); units of C / 2
    lanes (two beats a score word) and of 1 lane (C beats a word); the derived default (the other
    tests): one unit of C lanes (one score word a beat)."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC["8x4"]
    assert (acc.softmax_units, acc.softmax_lanes) == (1, 4)
    jobs = [make_job(acc, E.RAW_SOFTMAX, rng, np_rng, live_m=rng.choice([1, 4, 5]), n=rng.randint(5, 20)),
            make_job(acc, E.REQ8_SOFTMAX, rng, np_rng, live_m=7)]
    check(acc, jobs, run(acc, jobs, seed, units=units, lanes=lanes), seed)


def test_softmax_lanes_refused():
    acc = ACC["8x4"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # the half-built component is never elaborated
        for lanes in (3, 8, 0):
            with pytest.raises(ValueError, match="lanes must be a power of two"):
                SoftmaxRows(acc, 2, lanes)
        with pytest.raises(ValueError, match="units must be 1 .. 4"):
            SoftmaxRows(acc, 5)
        gc.collect()


def measure_softmax(acc, m: int, n: int, seed: int = 1, units: int | None = None, lanes: int | None = None) -> dict:
    """Cycles a softmax GEMM adds after its last accumulator row (no stalls: every stream
    always valid/ready): REQ8 and RAW_SOFTMAX of the same shape, from the last row's handshake
    to ``done``."""
    out = {"m": m, "n": n}
    for mode in (E.REQ8, E.RAW_SOFTMAX):
        rng, np_rng = random.Random(seed), np.random.default_rng(seed)
        jobs = [make_job(acc, mode, rng, np_rng, live_m=m, n=n)]
        r = run(acc, jobs, seed, gap=0.0, limit=400_000, units=units, lanes=lanes)
        check(acc, jobs, r, seed)
        out[mode.name] = r[0]["done"] - r[0]["last_i"]
    out["added"] = out["RAW_SOFTMAX"] - out["REQ8"]
    return out


if __name__ == "__main__":    # python testbench/test_accel_gemm_output.py CONFIG UNITS[xLANES] M N [M N ...]
    import sys

    from heatvit.config import AcceleratorConfig
    cfg = ACC.get(sys.argv[1]) or AcceleratorConfig()
    u, _, ln = sys.argv[2].partition("x")
    for i in range(3, len(sys.argv), 2):
        print(sys.argv[1], "units x lanes", sys.argv[2],
              measure_softmax(cfg, int(sys.argv[i]), int(sys.argv[i + 1]), units=int(u), lanes=int(ln) if ln else None),
              flush=True)


@pytest.mark.parametrize("width", [32, 64])
def test_data_width(width):
    """Parameter beats of 32 bits (a record spans two beats) and 64 bits (one record a beat)."""
    from heatvit.shell_config import ShellConfig
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = dataclasses.replace(ACC["4x4"], shell=dataclasses.replace(ShellConfig(), data_width=width))
    jobs = [make_job(acc, mode, rng, np_rng) for mode in (E.REQ16_GELU, E.REQ8_SOFTMAX, E.REQ8)]
    jobs.append(make_job(acc, E.REQ8_SIGMOID, rng, np_rng, bad=("sigmoid", "in_bits", 9)))
    check(acc, jobs, run(acc, jobs, seed), seed)


def test_abort():
    """``abort`` in the middle of the parameters and in the middle of the rows: no ``done``,
    no writes after it; the next GEMM runs normally."""
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = ACC["4x4"]
    C, db = acc.gemm.cols, acc.shell.data_bytes
    dut = GemmOutput(acc)
    first = make_job(acc, E.RAW_SOFTMAX, rng, np_rng, live_m=3, n=2 * C)
    second = make_job(acc, E.REQ8_GELU, rng, np_rng, live_m=3, n=C + 1)
    third = make_job(acc, E.RAW_SOFTMAX, rng, np_rng, live_m=2, n=C + 3)
    seen = {"done": 0, "writes": []}

    def beats(job):
        return [int.from_bytes(job.blob[i:i + db], "little") for i in range(0, len(job.blob), db)]

    def rows(job):
        tiles = -(-job.live_n // C)
        order = [(nt, mm) for nt in range(tiles) for mm in range(job.live_m)]
        return [{"acc": [int(x) for x in job.accs[mm, nt * C:(nt + 1) * C]],
                 "tag": {"m": mm, "nt": nt, "last": int(i == len(order) - 1)}} for i, (nt, mm) in enumerate(order)]

    def fields(job):
        f = {fd.name: getattr(job.d, fd.name) for fd in isa.FIELDS}
        f.update(live_m=job.live_m, live_k=job.d.k, live_n=job.live_n)
        return f

    async def abort(ctx):
        ctx.set(dut.abort, 1)
        await ctx.tick()
        ctx.set(dut.abort, 0)

    async def driver(ctx):
        await send(ctx, dut.cmd, [fields(first)], rng)
        await send(ctx, dut.params, beats(first)[:1], rng)          # abort among the parameters
        await abort(ctx)
        await send(ctx, dut.cmd, [fields(second)], rng)
        await send(ctx, dut.params, beats(second), rng)
        await send(ctx, dut.i, rows(second)[:2], rng)                 # ... and among the rows
        await ctx.tick().repeat(5)
        await abort(ctx)
        assert seen["done"] == 0, f"seed {seed}: done after abort"
        seen["writes"].clear()
        await send(ctx, dut.cmd, [fields(third)], rng)
        await send(ctx, dut.params, beats(third), rng)
        await send(ctx, dut.i, rows(third), rng)
        for _ in range(2000):
            if seen["done"]:
                break
            await ctx.tick()

    async def sink(ctx):
        srng = random.Random(seed + 1)
        for _ in range(4000):
            ready = srng.random() >= 0.3
            ctx.set(dut.dst.ready, ready)
            _, _, valid, p, done, error = await ctx.tick().sample(dut.dst.valid, dut.dst.payload, dut.done, dut.error)
            if ready and valid:
                seen["writes"].append((int(p.row), int(p.word), int(p.data), int(p.mask)))
            if done:
                seen["done"] += 1
                assert int(error) == 0, f"seed {seed}"
                return

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(sink)
    sim.run()
    assert seen["done"] == 1, f"seed {seed}: {seen['done']} done pulses"
    check(acc, [third], [{"code": 0, "writes": seen["writes"]}], seed)


def test_softmax_too_long():
    """A softmax row longer than the score memory (buffers.max_tokens < n <= nonlinear.max_tokens,
    a window in a wide buffer) -> N_TOO_LARGE, nothing written; the longest row that fits works."""
    from heatvit.accel_config import BufferConfig
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = dataclasses.replace(ACC["4x4"], buffers=BufferConfig(max_tokens=10, max_dim=64, max_hidden=64))
    rows_max, tiles_max = score_geometry(acc)
    assert (rows_max, tiles_max) == (10, 3)
    jobs = [make_job(acc, E.RAW_SOFTMAX, rng, np_rng, live_m=2, n=13), make_job(acc, E.REQ8_SOFTMAX, rng, np_rng, n=12)]
    jobs[0] = dataclasses.replace(jobs[0], want=None, code=ErrorCode.N_TOO_LARGE)
    jobs.append(make_job(acc, E.RAW_SOFTMAX, rng, np_rng, live_m=10, n=12))
    check(acc, jobs, run(acc, jobs, seed), seed)


def test_default_config():
    """The default 16 x 16 accelerator: a softmax row of several tiles and a GELU GEMM."""
    from heatvit.config import AcceleratorConfig
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    acc = AcceleratorConfig()
    jobs = [make_job(acc, E.RAW_SOFTMAX, rng, np_rng, live_m=2, n=rng.randint(33, 60)),
            make_job(acc, E.REQ16_GELU, rng, np_rng, live_m=2, n=rng.randint(17, 40))]
    check(acc, jobs, run(acc, jobs, seed), seed)
