"""Back-end independent driver logic: DDR images, register programming, polling, errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from heatvit import golden
from heatvit.config import AcceleratorConfig, ceil_div
from heatvit.errors import ErrorCode, HardwareError
from heatvit.rtl.shell import regmap


class Backend(Protocol):
    """What the driver needs from a platform (all addresses are bus addresses)."""

    async def read_reg(self, offset: int) -> int: ...
    async def write_reg(self, offset: int, value: int) -> None: ...
    def alloc(self, nbytes: int) -> int: ...
    def write_mem(self, addr: int, data: bytes) -> None: ...
    def read_mem(self, addr: int, nbytes: int) -> bytes: ...
    async def pause(self) -> None: ...


@dataclass
class Buffers:
    """Bus addresses of the four DDR buffers of a job."""

    act: int
    wgt: int
    prm: int
    out: int


@dataclass
class GemmJob:
    m: int
    k: int
    n: int
    buffers: Buffers
    expected_out_bytes: int


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"UNKNOWN_{code}"


def pack_params(cfg, bias, mult, shift) -> bytes:
    """Parameter records (``regmap.PARAM_RECORD_BYTES`` per channel, little-endian)."""
    bias = np.asarray(bias, dtype=np.int64)
    rec = ((bias & 0xFFFF_FFFF).astype(np.uint64)
           | (np.asarray(mult, dtype=np.uint64) << np.uint64(32))
           | (np.asarray(shift, dtype=np.uint64) << np.uint64(56)))
    return rec.astype("<u8").tobytes()


def image_sizes(acc: AcceleratorConfig, m: int, k: int, n: int) -> dict[str, int]:
    """Bytes of each DDR buffer of an M x K x N job (see docs/shell.md, "DDR formats")."""
    g = acc.gemm
    kt, nt = ceil_div(k, g.rows), ceil_div(n, g.cols)
    return {"act": kt * m * g.rows, "wgt": nt * kt * g.rows * g.cols,
            "prm": n * regmap.PARAM_RECORD_BYTES, "out": nt * m * g.cols}


class GemmDriver:
    """``load`` -> ``run`` -> ``read_results`` on any :class:`Backend`."""

    def __init__(self, backend: Backend, acc: AcceleratorConfig, *, max_polls: int | None = None):
        if not isinstance(acc, AcceleratorConfig):
            raise TypeError(f"GemmDriver takes an AcceleratorConfig, not {acc!r}")
        self.backend, self.acc, self.shell, self.cfg = backend, acc, acc.shell, acc.gemm
        self.max_polls = max_polls
        self.job: GemmJob | None = None
        self.last_cycles = 0
        self.last_error_flags = 0

    # -- registers ---------------------------------------------------------------------------
    async def read(self, name: str) -> int:
        return await self.backend.read_reg(regmap.OFFSET[name])

    async def write(self, name: str, value: int) -> None:
        await self.backend.write_reg(regmap.OFFSET[name], value & 0xFFFF_FFFF)

    async def check_identity(self) -> None:
        """Raise ``RuntimeError`` unless the hardware is this driver's configuration."""
        magic = await self.read("MAGIC")
        if magic != regmap.MAGIC_VALUE:
            raise RuntimeError(f"MAGIC reads {magic:#010x}, expected {regmap.MAGIC_VALUE:#010x}: "
                               f"no heatvit shell at this address")
        cid = await self.read("CONFIG_ID")
        want = regmap.config_id(self.acc.digest())
        if cid != want:
            raise RuntimeError(f"CONFIG_ID {cid:#010x} != {want:#010x} ({self.acc.digest()}): the "
                               f"bitstream was built for another AcceleratorConfig")

    # -- the API -----------------------------------------------------------------------------
    def load(self, a, w, bias, mult, shift, *, buffers: Buffers | None = None) -> GemmJob:
        """Validate the operands, write their DDR images, and remember the job."""
        cfg = self.cfg
        a, w = golden.check_operands(cfg, a, w)
        (m, k), n = a.shape, w.shape[1]
        bias, mult, shift = golden.check_params(cfg, n, bias, mult, shift)
        sizes = image_sizes(self.acc, m, k, n)
        b = buffers or Buffers(**{name: self.backend.alloc(size) for name, size in sizes.items()})
        be = self.backend
        be.write_mem(b.act, golden.pack_activations(cfg, a).astype(np.int8).tobytes())
        be.write_mem(b.wgt, golden.pack_weights(cfg, w).astype(np.int8).tobytes())
        be.write_mem(b.prm, pack_params(cfg, bias, mult, shift))
        self.job = GemmJob(m, k, n, b, sizes["out"])
        return self.job

    async def run(self, job: GemmJob | None = None) -> int:
        """Program the registers, start, wait; return the job's cycle count.

        Raises :class:`HardwareError` (carrying the code and its name) if the shell reports an
        error, and ``TimeoutError`` if it stays busy without one past the poll limit.
        """
        job = job or self.job
        if job is None:
            raise ValueError("run: nothing loaded; call load() first")
        await self.start(job.m, job.k, job.n, job.buffers)
        return await self.wait()

    async def start(self, m: int, k: int, n: int, buffers: Buffers) -> None:
        """Write the job registers and ``CTRL.start`` with no host-side checks (tests use this
        to give the hardware bad shapes and addresses)."""
        for name, value in (("M", m), ("K", k), ("N", n)):
            await self.write(name, value)
        for buf, (lo, hi) in regmap.BUFFERS.items():
            addr = getattr(buffers, buf)
            await self.write(lo, addr)
            await self.write(hi, addr >> 32)
        await self.write("CTRL", 1)

    async def wait(self) -> int:
        polls = 0
        limit = self.max_polls
        while True:
            status = await self.read("STATUS")
            if not status & regmap.STATUS_BUSY:
                break
            polls += 1
            if limit is not None and polls >= limit:
                code = (status >> regmap.STATUS_CODE_SHIFT) & 0xFF
                if code:
                    raise HardwareError(code, f"shell still busy after {polls} polls")
                raise TimeoutError(f"shell busy after {polls} status polls with no error code")
            await self.backend.pause()
        self.last_cycles = await self.read("CYCLES")
        code = await self.read("ERROR")
        self.last_error_flags = await self.read("ERROR_FLAGS") if code != ErrorCode.OK else 0
        if code != ErrorCode.OK:
            also = [error_name(c) for c in range(32) if self.last_error_flags >> c & 1 and c != code]
            raise HardwareError(code, f"after {self.last_cycles} cycles"
                                + (f"; also raised: {', '.join(also)}" if also else ""))
        return self.last_cycles

    def read_results(self, job: GemmJob | None = None) -> np.ndarray:
        """``Y[M, N]`` (int64) from the output buffer."""
        job = job or self.job
        if job is None:
            raise ValueError("read_results: no job")
        raw = self.backend.read_mem(job.buffers.out, job.expected_out_bytes)
        beats = np.frombuffer(bytes(raw), dtype=np.int8).astype(np.int64).reshape(-1, self.cfg.cols)
        return golden.unpack_outputs(self.cfg, beats, job.m, job.n)

    async def gemm(self, a, w, bias, mult, shift, *, buffers: Buffers | None = None) -> np.ndarray:
        """``load`` + ``run`` + ``read_results``."""
        job = self.load(a, w, bias, mult, shift, buffers=buffers)
        await self.run(job)
        return self.read_results(job)
