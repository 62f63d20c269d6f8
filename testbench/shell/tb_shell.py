"""cocotb tests of the accelerator shell through heatvit.driver's simulation back end.

Every result is compared bit-exactly with heatvit.golden; every AXI channel of both buses
stalls at random (and under each stall pattern of heatvit.sim.streams in ``stall_patterns``) with
the handshake monitor on every channel; all of DDR outside the output buffer is checked
unchanged after each job.  Randomness comes from the cocotb seed (replay with HEATVIT_SEED).
"""

import json
import os
import random
from types import SimpleNamespace

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from heatvit import golden
from heatvit.config import AcceleratorConfig
from heatvit.driver import Buffers
from heatvit.driver.core import image_sizes
from heatvit.driver.sim import start as driver_start
from heatvit.errors import ErrorCode, HardwareError
from heatvit.rtl.shell import regmap
from heatvit.sim.axi import AxiWatch, set_axi_pattern
from heatvit.sim.gemm_tb import GemmTB
from heatvit.sim.streams import PATTERNS, checked_test

ACC = AcceleratorConfig.from_dict(json.loads(os.environ["HEATVIT_CONFIG"]))
SHELL = ACC.shell
CFG = ACC.gemm
QUICK = os.environ.get("HEATVIT_QUICK", "0") == "1"
DB = SHELL.data_bytes


async def start(dut, acc, **kwargs):
    """:func:`heatvit.driver.sim.start` with the handshake monitor on every AXI channel."""
    be, drv, mon = await driver_start(dut, acc, **kwargs)
    AxiWatch(dut, dut.aclk, dut.aresetn)
    return be, drv, mon


def _rngs():
    return random.Random(cocotb.RANDOM_SEED), np.random.default_rng(cocotb.RANDOM_SEED)


def operands(np_rng, m, k, n):
    return GemmTB.random_operands(SimpleNamespace(cfg=CFG), np_rng, m, k, n)


def fill_background(be, np_rng) -> bytes:
    """Random bytes over the whole modelled DDR; returns them for the after-job comparison."""
    img = np_rng.integers(0, 256, size=SHELL.window_end, dtype=np.uint8).tobytes()
    be.write_mem(0, img)
    return img


def check_untouched(be, before: bytes, out: tuple[int, int] | None):
    after = be.read_mem(0, SHELL.window_end)
    a, b = np.frombuffer(before, np.uint8), np.frombuffer(after, np.uint8)
    diff = np.flatnonzero(a != b)
    if out is not None:
        lo, n = out
        diff = diff[(diff < lo) | (diff >= lo + n)]
    assert diff.size == 0, f"{diff.size} bytes changed outside the output buffer, first at {diff[0]:#x}"


async def gemm_checked(be, drv, mon, np_rng, m, k, n, buffers=None):
    """One job with the whole DDR image checked: result bit-exact, nothing else written."""
    a, w, bias, mult, shift = operands(np_rng, m, k, n)
    expected = golden.gemm(CFG, a, w, bias, mult, shift)
    before = fill_background(be, np_rng)
    job = drv.load(a, w, bias, mult, shift, buffers=buffers)
    before = be.read_mem(0, SHELL.window_end)
    cycles = await drv.run(job)
    y = drv.read_results(job)
    check_untouched(be, before, (job.buffers.out, job.expected_out_bytes))
    bad = np.argwhere(y != expected)
    assert bad.size == 0, f"{m}x{k}x{n}: {len(bad)} outputs differ, first at {bad[0]}"
    # Lanes past N in the output image are zero.
    raw = np.frombuffer(be.read_mem(job.buffers.out, job.expected_out_bytes), np.int8)
    assert np.array_equal(raw, golden.pack_outputs(CFG, expected).astype(np.int8).ravel())
    assert not mon.violations, mon.violations
    # docs/shell.md: CYCLES = engine cycles + serial preload (one parameter record and one
    # activation word per cycle at most) + a fixed part; stalls only add.
    floor = CFG.estimate_cycles(m, k, n) + n + -(-k // CFG.rows) * m
    assert cycles > floor, f"{m}x{k}x{n}: {cycles} cycles, below the preload model's {floor}"
    cocotb.log.info(f"{m}x{k}x{n} bit-exact in {cycles} cycles ({cycles - floor} over engine + preload)")
    return cycles


def straddling(be, sizes) -> Buffers:
    """Buffers packed so that each one crosses a 4 KiB line (addresses beat aligned)."""
    addrs = {}
    cur = SHELL.window_base + 0x1000
    for name, size in sizes.items():
        start_at = cur + 0x1000 - min(size // 2, 0x800) // DB * DB - DB
        addrs[name] = start_at
        cur = -(-(start_at + size) // 0x1000) * 0x1000
    assert cur <= SHELL.window_end
    return Buffers(**addrs)


@checked_test
async def registers(dut):
    """Every register field reads back what the map says; RW registers honour byte strobes."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, stall=0.3, rng=rng)
    g = CFG
    expect = {
        "MAGIC": regmap.MAGIC_VALUE, "VERSION": regmap.VERSION_VALUE,
        "CONFIG_ID": regmap.config_id(ACC.digest()),
        "GEOMETRY": regmap.geometry(g.rows, g.cols, DB, SHELL.burst_len),
        "CTRL": 0, "STATUS": 0, "ERROR": 0, "CYCLES": 0,
        "WIN_BASE_LO": SHELL.window_base & 0xFFFFFFFF, "WIN_BASE_HI": SHELL.window_base >> 32,
        "WIN_SIZE_LO": SHELL.window_size & 0xFFFFFFFF, "WIN_SIZE_HI": SHELL.window_size >> 32,
        "MAX_M": g.max_m, "MAX_K": g.max_k, "MAX_N": g.max_n, "ACT_WORDS": g.act_buffer_words,
        "WATCHDOG": SHELL.watchdog_cycles, "ERROR_FLAGS": 0,
    }
    rw = [n for n, (_, acc, _) in regmap.REGISTERS.items() if acc == "rw"]
    for name in rw:
        expect[name] = 0
    assert set(expect) == set(regmap.REGISTERS)
    for name, value in expect.items():
        got = await drv.read(name)
        assert got == value, f"{name}: read {got:#x}, expected {value:#x}"
    await drv.check_identity()
    # Read/write registers: distinct patterns, then one byte lane at a time.
    pats = {name: rng.getrandbits(32) for name in rw}
    for name, v in pats.items():
        await drv.write(name, v)
    for name, v in pats.items():
        assert await drv.read(name) == v, name
    for name in rw:
        lane = rng.randrange(4)
        byte = rng.getrandbits(8)
        await be.lite.write(regmap.OFFSET[name] + lane, bytes([byte]))
        want = (pats[name] & ~(0xFF << 8 * lane)) | byte << 8 * lane
        assert await drv.read(name) == want, f"{name} after a write to byte {lane}"
    # Read-only registers ignore writes; unmapped offsets read 0; CTRL without bit 0 starts nothing.
    for name in ("MAGIC", "CONFIG_ID", "STATUS", "MAX_M"):
        await drv.write(name, 0x12345678)
        assert await drv.read(name) == expect[name], name
    assert await be.read_reg(0xFFC) == 0
    await drv.write("CTRL", 0xFFFFFFFE)
    await ClockCycles(dut.aclk, 20)
    assert await drv.read("STATUS") == 0 and mon.count() == 0
    # After a job: done set, busy clear, CYCLES counts the job.
    cycles = await gemm_checked(be, drv, mon, np_rng, 3, 5, 6)
    assert await drv.read("STATUS") == regmap.STATUS_DONE
    assert cycles > 0 and await drv.read("CYCLES") == cycles
    assert int(dut.irq.value) == 1


@checked_test
async def gemms_with_stalls(dut):
    """Random shapes, stalls on every channel, buffers crossing 4 KiB lines."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, stall=0.35, rng=rng)
    shapes = [(1, 1, 1), (3, 7, 5), (7, CFG.rows * 3 + 1, CFG.cols * 2 + 3)]
    if not QUICK:
        shapes += [(rng.randint(1, 24), rng.randint(1, 80), rng.randint(1, 40)) for _ in range(3)]
        shapes += [(CFG.max_m, CFG.rows * 2, CFG.cols + 1)]
    for i, (m, k, n) in enumerate(shapes):
        buffers = straddling(be, image_sizes(ACC, m, k, n)) if i % 2 == 0 else None
        be.next_free = SHELL.window_base + rng.randrange(0, 0x2000, DB)
        await gemm_checked(be, drv, mon, np_rng, m, k, n, buffers)
    split = [(a, n) for a, n in mon.bursts["ar"] + mon.bursts["aw"]
             if n < SHELL.burst_len and (a + n * DB) % 0x1000 == 0]
    assert split, "no burst was split at a 4 KiB line: the test lost its coverage"


@checked_test
async def bad_inputs(dut):
    """Bad shapes and addresses: an error code, a driver exception naming it, no bus traffic."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, stall=0.2, rng=rng)
    g = CFG
    sizes = image_sizes(ACC, 4, 8, 4)
    good = Buffers(**{name: be.alloc(size) for name, size in sizes.items()})
    words_m = g.act_buffer_words // -(-g.max_k // g.rows) + 1
    cases = [
        ((0, 8, 4), {}, ErrorCode.ZERO_DIMENSION), ((4, 0, 4), {}, ErrorCode.ZERO_DIMENSION),
        ((4, 8, 0), {}, ErrorCode.ZERO_DIMENSION),
        ((g.max_m + 1, 8, 4), {}, ErrorCode.M_TOO_LARGE),
        ((0xFFFF_FFFF, 8, 4), {}, ErrorCode.M_TOO_LARGE),
        ((1 << g.m_bits, 8, 4), {}, ErrorCode.M_TOO_LARGE),   # would truncate to 0
        ((4, g.max_k + 1, 4), {}, ErrorCode.K_TOO_LARGE),
        ((4, 8, g.max_n + 1), {}, ErrorCode.N_TOO_LARGE),
        ((4, 8, 1 << g.n_bits), {}, ErrorCode.N_TOO_LARGE),
        ((4, SHELL.window_end, 4), {}, ErrorCode.K_TOO_LARGE),
        # Output image 8 * 4 * C bytes, more than the one beat left below the window's end.
        ((8, 8, 4 * g.cols), {"out": SHELL.window_end - DB}, ErrorCode.ADDRESS_OUT_OF_WINDOW),
        ((4, 8, 4), {"act": SHELL.window_base - 0x1000}, ErrorCode.ADDRESS_OUT_OF_WINDOW),
        ((4, 8, 4), {"wgt": 1 << 32}, ErrorCode.ADDRESS_OUT_OF_WINDOW),
        ((4, 8, 4), {"prm": SHELL.window_end}, ErrorCode.ADDRESS_OUT_OF_WINDOW),
    ]
    if words_m <= g.max_m:
        cases.append(((words_m, g.max_k, 4), {}, ErrorCode.ACT_BUFFER_OVERFLOW))
    if DB > 1:
        cases.append(((4, 8, 4), {"out": good.out + 1}, ErrorCode.UNALIGNED_ADDRESS))
        cases.append(((4, 8, 4), {"act": good.act + DB // 2}, ErrorCode.UNALIGNED_ADDRESS))
    before = fill_background(be, np_rng)
    for (m, k, n), override, code in cases:
        bufs = Buffers(**{**good.__dict__, **override})
        await drv.start(m, k, n, bufs)
        try:
            await drv.wait()
        except HardwareError as e:
            assert e.code == code, f"{m}x{k}x{n} {override}: got {e}, expected {code.name}"
            assert code.name in str(e)
        else:
            raise AssertionError(f"{m}x{k}x{n} {override}: no error, expected {code.name}")
        status = await drv.read("STATUS")
        assert status == regmap.STATUS_DONE | regmap.STATUS_ERROR | code << 8, hex(status)
        assert await drv.read("ERROR_FLAGS") == 1 << code
    assert mon.count() == 0, f"refused jobs made {mon.count()} bursts"
    check_untouched(be, before, None)
    # The error clears at the next start: a clean job runs.
    await gemm_checked(be, drv, mon, np_rng, 4, 8, 4)
    assert await drv.read("ERROR") == 0


async def job_with_stray_start(dut, fault: str | None, *, stall: float, delay: int):
    """Start a job, inject ``fault`` (None, ``"slverr"``: SLVERR on one weight beat, ``"stall"``:
    the read channel stalled past the watchdog), write CTRL ``delay`` cycles in, wait for it.

    Returns ``(backend, driver, monitor, np_rng, job, expected outputs, HardwareError)``."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, stall=stall, rng=rng)
    m, k, n = 9, CFG.rows * 4, CFG.cols * 3
    a, w, bias, mult, shift = operands(np_rng, m, k, n)
    job = drv.load(a, w, bias, mult, shift)
    if fault == "slverr":
        be.poisoned["read"] = [(job.buffers.wgt + 3 * DB, job.buffers.wgt + 4 * DB)]
    elif fault == "stall":
        be.set_stall(1.0, only="ram.r")
        drv.max_polls = (SHELL.watchdog_cycles * 3) // 16
    await drv.start(m, k, n, job.buffers)
    await ClockCycles(dut.aclk, delay)
    assert await drv.read("STATUS") & regmap.STATUS_BUSY
    await drv.write("CTRL", 1)
    try:
        await drv.wait()
    except HardwareError as e:
        err = e
    else:
        raise AssertionError(f"fault {fault} and a CTRL write during the job: no error")
    return be, drv, mon, np_rng, job, golden.gemm(CFG, a, w, bias, mult, shift), err


@checked_test
async def start_while_busy(dut):
    """A second start during a job: the job completes bit-exactly, ERROR says START_WHILE_BUSY."""
    be, drv, mon, np_rng, job, expected, err = await job_with_stray_start(dut, None, stall=0.2, delay=30)
    assert err.code == ErrorCode.START_WHILE_BUSY and "START_WHILE_BUSY" in str(err), str(err)
    assert await drv.read("ERROR_FLAGS") == 1 << ErrorCode.START_WHILE_BUSY
    assert np.array_equal(drv.read_results(job), expected)
    await gemm_checked(be, drv, mon, np_rng, 5, 6, 7)
    assert await drv.read("ERROR_FLAGS") == 0


async def corrupting_error_after_stray_start(dut, fault: str, code: ErrorCode):
    """A CTRL write during a job must not hide a later error that makes its results wrong: the
    fault hits a job that had a CTRL write 20 cycles in.  ERROR names the corrupting error;
    ERROR_FLAGS has both."""
    be, drv, mon, np_rng, job, expected, err = await job_with_stray_start(dut, fault, stall=0.0, delay=20)
    assert err.code == code, f"{fault}: ERROR reads {err}, expected {code.name}"
    if fault == "slverr":
        assert "also raised: START_WHILE_BUSY" in str(err), str(err)
    be.poisoned["read"] = []
    be.set_stall(0.0, only="ram.r")
    drv.max_polls = 10_000
    try:
        await drv.wait()    # the stalled job drains once the bus answers again
    except HardwareError as e:
        assert e.code == code, str(e)
    assert await drv.read("ERROR") == code
    assert await drv.read("ERROR_FLAGS") == 1 << code | 1 << ErrorCode.START_WHILE_BUSY
    wrong = int(np.count_nonzero(drv.read_results(job) != expected))
    cocotb.log.info(f"{fault} + CTRL write: {code.name}, {wrong} of {expected.size} outputs wrong")
    await gemm_checked(be, drv, mon, np_rng, 5, 6, 7)


@checked_test
async def slverr_after_start_while_busy(dut):
    """SLVERR on one weight beat after a CTRL write: AXI_READ_ERROR, not START_WHILE_BUSY."""
    await corrupting_error_after_stray_start(dut, "slverr", ErrorCode.AXI_READ_ERROR)


@checked_test
async def timeout_after_start_while_busy(dut):
    """Read data stalled past the watchdog after a CTRL write: TIMEOUT, not START_WHILE_BUSY."""
    await corrupting_error_after_stray_start(dut, "stall", ErrorCode.TIMEOUT)


@checked_test
async def reset_mid_transfer(dut):
    """aresetn during the DMA, then a clean job (registers back to reset values)."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, stall=0.3, rng=rng)
    for when in (40, 150):
        m, k, n = 12, CFG.rows * 6, CFG.cols * 4
        job = drv.load(*operands(np_rng, m, k, n))
        await drv.start(m, k, n, job.buffers)
        await ClockCycles(dut.aclk, when)
        assert await drv.read("STATUS") & regmap.STATUS_BUSY
        dut.aresetn.value = 0
        await ClockCycles(dut.aclk, 4)
        dut.aresetn.value = 1
        await ClockCycles(dut.aclk, 2)
        for name in ("STATUS", "ERROR", "CYCLES", "M", "ACT_LO"):
            assert await drv.read(name) == 0, name
        await gemm_checked(be, drv, mon, np_rng, 6, 10, 9)


@checked_test
async def watchdog(dut):
    """A bus that stops answering: TIMEOUT while busy (no hang), then drain and a clean job."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, stall=0.0, rng=rng)
    for channel in ("ram.r", "ram.b"):
        m, k, n = 6, CFG.rows * 3, CFG.cols * 2
        job = drv.load(*operands(np_rng, m, k, n))
        if channel == "ram.b":
            # Let the reads finish: the stall hits the write responses only.
            be.set_stall(1.0, only=channel)
        else:
            be.set_stall(1.0, only=channel)
        drv.max_polls = (SHELL.watchdog_cycles * 3) // 16
        await drv.start(m, k, n, job.buffers)
        try:
            await drv.wait()
        except HardwareError as e:
            assert e.code == ErrorCode.TIMEOUT, str(e)
        else:
            raise AssertionError(f"{channel} stalled: no TIMEOUT")
        assert await drv.read("STATUS") & regmap.STATUS_BUSY   # still draining
        be.set_stall(0.0, only=channel)
        drv.max_polls = 10_000
        try:
            await drv.wait()
        except HardwareError as e:
            assert e.code == ErrorCode.TIMEOUT
        assert await drv.read("STATUS") == regmap.STATUS_DONE | regmap.STATUS_ERROR | ErrorCode.TIMEOUT << 8
        assert await drv.read("ERROR_FLAGS") >> ErrorCode.TIMEOUT & 1
        await gemm_checked(be, drv, mon, np_rng, 4, 9, 5)


@checked_test
async def axi_error_responses(dut):
    """SLVERR on a read or a write: the job ends with AXI_READ_ERROR / AXI_WRITE_ERROR."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, stall=0.2, rng=rng)
    m, k, n = 5, CFG.rows * 2, CFG.cols * 2
    for kind, buf, code in (("read", "wgt", ErrorCode.AXI_READ_ERROR),
                            ("write", "out", ErrorCode.AXI_WRITE_ERROR)):
        job = drv.load(*operands(np_rng, m, k, n))
        addr = getattr(job.buffers, buf)
        be.poisoned[kind] = [(addr + DB, addr + 2 * DB)]
        try:
            await drv.run(job)
        except HardwareError as e:
            assert e.code == code and code.name in str(e), str(e)
        else:
            raise AssertionError(f"SLVERR on {kind}: no {code.name}")
        be.poisoned[kind] = []
        assert not await drv.read("STATUS") & regmap.STATUS_BUSY
        assert await drv.read("ERROR_FLAGS") == 1 << code
    await gemm_checked(be, drv, mon, np_rng, 3, 4, 5)


@checked_test
async def stall_patterns(dut):
    """One job under each stall pattern on every channel of both buses (long stalls on the
    smallest shape)."""
    rng, np_rng = _rngs()
    be, drv, mon = await start(dut, ACC, rng=rng)
    for name in PATTERNS:
        set_axi_pattern(be.channels(), name, rng)
        shape = (2, 3, 2) if name == "long" else (5, CFG.rows + 1, CFG.cols + 1)
        await gemm_checked(be, drv, mon, np_rng, *shape)
