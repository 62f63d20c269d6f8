"""Amaranth-simulator test of rtl/accel/sequencer.py: a real compiled program (the digits model)
and damaged copies of it run descriptor by descriptor against a Python reference of the program
semantics (heatvit.isa decode/check/live_dims); random fetch and datapath latencies; watchdog;
the next start after an error.  Seeds: HEATVIT_SEED."""

import random

import pytest
from amaranth.sim import Simulator

from heatvit import compiler, isa
from heatvit.compiler import image, models
from heatvit.config import DEFAULT
from heatvit.errors import ErrorCode as E
from heatvit.rtl.accel.sequencer import ROW_OPS, Sequencer
from heatvit.sim.runner import pick_seed


@pytest.fixture(scope="module")
def program():
    qm = compiler.quantize_for(models.load_model(), DEFAULT)
    img = image.read(compiler.compile_model(qm, DEFAULT), DEFAULT)
    return [isa.encode(d) for d in img.program]


def reference(words_at, acc):
    """``(error, error_index, executed indices, traced indices)`` of the sequencer's semantics."""
    executed, traced = [], []
    n_live = count = None
    i = 0
    while True:
        try:
            d, dec = isa.decode(words_at(i)), 0
        except isa.DescriptorError as e:
            d, dec = None, int(e.code)
        try:
            if i == 0:
                if dec == E.CTRL_BAD_OPCODE or (d is not None and d.opcode != isa.Op.BEGIN):
                    return E.CTRL_BAD_PROGRAM, i, executed, traced
                if dec:
                    return dec, i, executed, traced
                if (d.version >> 16 != isa.ISA_VERSION[0] or (d.version & 0xFFFF) > isa.ISA_VERSION[1]
                        or d.config_id != isa.config_id(acc)):
                    return E.CTRL_BAD_PROGRAM, i, executed, traced
                isa.check(d, acc, d.m)
                n_live, count = d.m, d.count
            else:
                if dec:
                    return dec, i, executed, traced
                if d.opcode == isa.Op.BEGIN:
                    return E.CTRL_BAD_PROGRAM, i, executed, traced
                isa.check(d, acc, n_live)
                if (d.opcode == isa.Op.END) != (i == count - 1):
                    return E.CTRL_BAD_PROGRAM, i, executed, traced
                if d.opcode == isa.Op.END:
                    traced.append(i)
                    return 0, 0, executed, traced
                if d.opcode in ROW_OPS and isa.live_dims(d, n_live)[0] > 0:
                    executed.append(i)
        except isa.DescriptorError as e:
            return int(e.code), i, executed, traced
        traced.append(i)
        i += 1


def simulate(programs, seed, *, hang_at=None, watchdog=2000, select=None):
    """Run each program (a list of word lists; zeros past its end) from one start each.
    ``select(index, live_m, n_tail)``: called for every executed SELECT (its live rows and the
    sequencer's ``n_tail`` then), returns the ``(N', N_tail')`` its ``exec_done`` reports."""
    rng = random.Random(seed)
    dut = Sequencer(DEFAULT, watchdog_cycles=watchdog)
    results = []
    state = {"prog": None}

    async def fetcher(ctx):
        while True:
            ctx.set(dut.fetch.ready, rng.random() < 0.5)
            _, _, valid, ready, p = await ctx.tick().sample(dut.fetch.valid, dut.fetch.ready, dut.fetch.payload)
            if valid and ready:
                prog = state["prog"]
                i = int(p.index)
                words = prog[i] if i < len(prog) else [0] * isa.DESC_WORDS
                await ctx.tick().repeat(rng.randrange(1, 6))
                ctx.set(dut.fetch.ready, 0)
                ctx.set(dut.desc.valid, 1)
                ctx.set(dut.desc.payload, words)
                await ctx.tick().until(dut.desc.ready)
                ctx.set(dut.desc.valid, 0)

    async def datapath(ctx):
        while True:
            ctx.set(dut.exec.ready, rng.random() < 0.6)
            _, _, valid, ready, p = await ctx.tick().sample(dut.exec.valid, dut.exec.ready, dut.exec.payload)
            ctx.set(dut.exec.ready, 0)
            if valid and ready:
                i = int(p.index)
                state["executed"].append(i)
                state["live"].append((i, int(p.fields.live_m), int(ctx.get(dut.n_live)), int(ctx.get(dut.n_tail))))
                assert isa.encode(isa.decode(state["prog"][i])) == state["prog"][i]
                assert int(p.fields.opcode) == state["prog"][i][0] & 0xFF
                if hang_at is not None and i == hang_at:
                    continue                          # never answers: the watchdog must fire
                await ctx.tick().repeat(rng.randrange(1, 30))
                upd = None
                if select is not None and int(p.fields.opcode) == isa.Op.SELECT:
                    upd = select(i, int(p.fields.live_m), int(ctx.get(dut.n_tail)))
                # set_live only counts with a SELECT's done: elsewhere it carries garbage
                ctx.set(dut.set_live, upd is not None)
                ctx.set(dut.new_n_live, upd[0] if upd else rng.randrange(1 << 16))
                ctx.set(dut.new_n_tail, upd[1] if upd else rng.randrange(1 << 16))
                ctx.set(dut.exec_done, 1)
                await ctx.tick()
                ctx.set(dut.exec_done, 0)
                ctx.set(dut.set_live, 0)

    async def tracer(ctx):
        while True:
            ctx.set(dut.trace.ready, rng.random() < 0.7)
            _, _, valid, ready, p = await ctx.tick().sample(dut.trace.valid, dut.trace.ready, dut.trace.payload)
            if valid and ready:
                state["trace"].append((int(p.index), int(p.opcode), int(p.start), int(p.end)))

    async def main(ctx):
        for prog in programs:
            state.update(prog=prog, executed=[], trace=[], live=[])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.done)
            await ctx.tick().repeat(3)
            results.append((int(ctx.get(dut.error)), int(ctx.get(dut.error_index)),
                            list(state["executed"]), list(state["trace"]), list(state["live"])))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in (fetcher, datapath, tracer):
        sim.add_testbench(bench, background=True)
    sim.add_testbench(main)
    sim.run()
    return results


def check(prog, got, seed):
    words_at = lambda i: prog[i] if i < len(prog) else [0] * isa.DESC_WORDS   # noqa: E731
    err, where, executed, traced = reference(words_at, DEFAULT)
    g_err, g_where, g_exec, g_trace = got[:4]
    assert (g_err, g_where) == (err, where), f"seed {seed}: error {g_err} at {g_where}, expected {err} at {where}"
    assert g_exec == executed, f"seed {seed}: executed {g_exec[:10]}..., expected {executed[:10]}..."
    assert [t[0] for t in g_trace] == traced, f"seed {seed}: traced descriptors differ"
    last = 0
    for index, opcode, start, end in g_trace:
        assert opcode == prog[index][0] & 0xFF and last <= start <= end, f"seed {seed}: trace {index}"
        last = end


def damaged(program, rng):
    """Copies of the program, each with one defect (and the intact one)."""
    out = {"intact": program}
    p = [list(w) for w in program]
    b = isa.decode(p[0])
    out["wrong config id"] = [isa.encode(b.with_(config_id=b.config_id ^ 1))] + p[1:]
    out["newer minor"] = [isa.encode(b.with_(version=b.version + 1))] + p[1:]
    out["no BEGIN"] = p[1:]
    out["END missing"] = p[:-1] + [p[1]]
    out["count short"] = [isa.encode(b.with_(count=b.count - 1))] + p[1:]
    i = rng.randrange(2, len(p) - 1)
    op = isa.Op(p[i][0] & 0xFF)
    covered = [0] * isa.DESC_WORDS
    for fd in isa.op_fields(op):
        covered[fd.word] |= fd.mask << fd.lsb
    wi, bit = next((wi, b) for wi in range(isa.DESC_WORDS) for b in range(32) if not covered[wi] >> b & 1)
    out["stray bit"] = p[:i] + [[w ^ (1 << bit) if j == wi else w for j, w in enumerate(p[i])]] + p[i + 1:]
    out["opcode 0"] = p[:i] + [[p[i][0] & ~0xFF] + p[i][1:]] + p[i + 1:]
    out["second BEGIN"] = p[:i] + [p[0]] + p[i + 1:]
    gemms = [j for j, w in enumerate(p) if w[0] & 0xFF == isa.Op.GEMM]
    j = rng.choice(gemms)
    d = isa.decode(p[j])
    out["dst past buffer"] = p[:j] + [isa.encode(d.with_(dst_row=isa.token_buffers(DEFAULT)[isa.Buf(d.dst)].rows))] + p[j + 1:]
    out["few live tokens"] = [isa.encode(b.with_(m=2))] + p[1:]
    return out


def test_sequencer_programs(program):
    seed = pick_seed()
    progs = damaged(program, random.Random(seed))
    results = simulate(list(progs.values()), seed)
    for (name, prog), got in zip(progs.items(), results):
        try:
            check(prog, got, seed)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
    assert results[0][0] == 0 and len(results[0][2]) > 10
    assert all(r[0] != 0 for name, r in zip(progs, results) if name not in ("intact", "few live tokens"))


def test_sequencer_watchdog_then_next_start(program):
    seed = pick_seed()
    gemm = next(j for j, w in enumerate(program) if w[0] & 0xFF == isa.Op.GEMM)
    short = program[:gemm + 1]
    (hung,) = simulate([short], seed, hang_at=gemm, watchdog=500)
    assert hung[:2] == (E.TIMEOUT, gemm), f"seed {seed}: {hung[:2]}"
    res = simulate([program[:gemm + 1], program], seed, hang_at=gemm, watchdog=500)
    assert res[0][0] == E.TIMEOUT and res[1][0] == E.TIMEOUT   # same hang twice, each reported


@pytest.fixture(scope="module")
def pruned_program():
    qm = compiler.quantize_for(models.load_model(), DEFAULT)
    img = image.read(compiler.compile_model(qm, DEFAULT, prune=True), DEFAULT)
    return img.program


def test_sequencer_select_updates_live(pruned_program):
    """A SELECT's done with ``set_live`` sets N_live / N_tail for every later descriptor (random
    N' and tails); BEGIN of the next run resets them (N_tail to 0)."""
    seed = pick_seed()
    rng = random.Random(seed)
    prog = [isa.encode(d) for d in pruned_program]
    selects = [i for i, d in enumerate(pruned_program) if d.opcode == isa.Op.SELECT]
    assert len(selects) >= 2
    calls = []

    def select(i, live_m, n_tail):
        n_out = rng.randint(2, live_m)
        calls.append((i, n_out, rng.randint(0, n_out - 1)))
        return calls[-1][1:]

    results = simulate([prog, prog], seed, select=select)
    chosen = [calls[:len(selects)], calls[len(selects):]]
    for run, (err, where, executed, _, live) in enumerate(results):
        assert err == 0, f"seed {seed}: run {run}: error {err} at {where}"
        n_live, n_tail = pruned_program[0].m, 0
        updates = {i: (n, t) for i, n, t in chosen[run]}
        want = []
        for i, d in enumerate(pruned_program[1:-1], 1):
            m = isa.live_dims(d, n_live)[0]
            if m:
                want.append((i, m, n_live, n_tail))
            if i in updates:
                n_live, n_tail = updates[i]
        assert live == want, f"seed {seed}: run {run}: first difference at " \
            f"{next((g, w) for g, w in zip(live, want) if g != w)}"
        assert [i for i, *_ in chosen[run]] == selects, f"seed {seed}: run {run}: SELECTs executed"
