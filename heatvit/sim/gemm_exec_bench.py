"""Amaranth-simulator harness of the GEMM executor (:class:`heatvit.rtl.accel.gemm_exec.GemmExecutor`):
Python models of its token-buffer read ports (``src``, ``aux``), its DMA read client and its
output side, shared by ``testbench/test_accel_gemm.py`` and ``heatvit bench sparsity``.

A *case* is any object with

* ``d``: the GEMM :class:`heatvit.isa.Descriptor`; ``m``, ``k``, ``n``: its live shape;
* ``bufs``: token buffer id -> int array (rows, cols), int8 values, what the read ports return;
* ``blob``: the model image bytes the DMA reads (region ``MODEL``, byte offsets into it);
* ``fields()``: the ``exec`` payload (descriptor fields plus ``live_m``/``live_k``/``live_n``);
* ``windows()`` (optional): port name -> (buffer, rows, columns) every read must stay inside;
* with a stand-in output (``output=`` a component class): ``p_bytes``, the parameter bytes
  ``GemmOutput.params`` takes.

Every stream gets random valid/ready gaps with probability ``gap`` (0: none, for cycle counts),
from ``random.Random`` seeded per port off ``seed``, so a run replays from its seed.  A read
port answers one data word (``column_align`` int8 lanes) per accepted command; the DMA one beat
(``shell.data_bytes``, little endian) per requested beat; the dst sink applies every write's
masked lanes to :attr:`ExecutorBench.dst_buf`.  Bumping :attr:`ExecutorBench.epoch` drops what
the models still have queued (what the top's flush does after an abort).
"""

from __future__ import annotations

import random
from collections import deque

import numpy as np

from .. import isa
from ..rtl.accel.ports import DmaRegion
from .streams import unpack_lanes


def word_of(a: np.ndarray) -> int:
    """A buffer word (int8 lanes, lane 0 in the low byte) as an int."""
    return int.from_bytes(np.asarray(a, dtype=np.int64).astype(np.int8).tobytes(), "little")


async def send(ctx, port, payloads, rng: random.Random, gap: float = 0.3):
    """Drive a ``lib.stream`` source with ``payloads``, a random valid gap before each."""
    for p in payloads:
        while rng.random() < gap:
            ctx.set(port.valid, 0)
            await ctx.tick()
        ctx.set(port.valid, 1)
        ctx.set(port.payload, p)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


class ExecutorBench:
    """One GEMM executor with models of its buffers, its DMA and its output.

    ``output``: None for the real ``GemmOutput`` (writes land in :attr:`dst_buf`), else a stand-in
    component class with ``GemmOutput``'s ports whose side :meth:`output` plays."""

    def __init__(self, acc, seed: int, gap: float = 0.3, output=None):
        from ..rtl.accel.gemm_exec import GemmExecutor
        if not 0 <= gap < 1:
            raise ValueError(f"gap must be a probability in [0, 1), not {gap!r}")
        self.acc, self.seed, self.gap, self.real = acc, seed, gap, output is None
        self.rng = random.Random(seed)
        self.dut = GemmExecutor(acc, output=output)
        self.case = None
        self.dst_buf = None
        self.reads = {"src": 0, "aux": 0}
        self.epoch = 0          # bumped when the top would flush the DMA and the read pipelines

    def responder(self, req, data, seed: int, words):
        """A background process: every request taken on stream ``req`` queues the ints
        ``words(payload)`` on stream ``data``, in order (dropped on an :attr:`epoch` bump)."""
        rng = random.Random(seed)

        async def proc(ctx):
            q, epoch = deque(), 0
            while True:
                if epoch != self.epoch:
                    q.clear()
                    epoch = self.epoch
                ctx.set(req.ready, rng.random() >= self.gap)
                have = bool(q) and rng.random() >= self.gap
                ctx.set(data.valid, have)
                if have:
                    ctx.set(data.payload, q[0])
                _, _, rv, rr, rp, dr = await ctx.tick().sample(req.valid, req.ready, req.payload, data.ready)
                if have and dr:
                    q.popleft()
                if rv and rr:
                    q.extend(words(rp))
        return proc

    def buffer_port(self, name: str):
        """The ``src`` or ``aux`` read port: a word per accepted command, in order."""
        A = isa.column_align(self.acc)
        port = getattr(self.dut, name)

        def words(cp):
            row, word = int(cp.row), int(cp.word)
            windows = self.case.windows() if hasattr(self.case, "windows") else {}
            if name in windows:
                _, rows, cols = windows[name]
                assert row in rows and word * A < cols.stop and word * A + A > cols.start, \
                    f"seed {self.seed}: {name} read (row {row}, word {word}) outside the window {rows}, {cols}"
            self.reads[name] += 1
            buf = self.case.d.src if name == "src" else self.case.d.aux
            return [word_of(self.case.bufs[buf][row, word * A:word * A + A])]
        return self.responder(port.cmd, port.data, self.seed + sum(map(ord, name)), words)

    def dma(self):
        """The DMA read client: region MODEL, ``beats`` beats from byte ``offset`` of the blob
        (past its end: zeros)."""
        rd, D = self.dut.dma_rd, self.acc.shell.data_bytes

        def words(rp):
            assert int(rp.region) == DmaRegion.MODEL, f"seed {self.seed}: DMA read of region {int(rp.region)}"
            off, blob = int(rp.offset), self.case.blob
            return [int.from_bytes(blob[off + b * D:off + b * D + D].ljust(D, b"\0"), "little")
                    for b in range(int(rp.beats))]
        return self.responder(rd.req, rd.data, self.seed + 7, words)

    def wdma(self):
        """The weight ports' client (``wdma``, ``acc.weight_beats_per_cycle = P > 1``): a request
        ``(offset, B)`` returns, per beat ``j``, the ``j``-th beats of the ``P`` shares at
        ``offset + p B D`` side by side (what ``WeightPorts`` gives)."""
        rd, D, P = self.dut.wdma, self.acc.shell.data_bytes, self.acc.weight_beats_per_cycle

        def words(rp):
            assert int(rp.region) == DmaRegion.MODEL, f"seed {self.seed}: weight read of region {int(rp.region)}"
            off, beats, blob = int(rp.offset), int(rp.beats), self.case.blob
            return [int.from_bytes(b"".join(blob[off + (p * beats + j) * D:][:D].ljust(D, b"\0") for p in range(P)),
                                   "little") for j in range(beats)]
        return self.responder(rd.req, rd.data, self.seed + 5, words)

    def output(self, got: dict):
        """The stand-in output's side: ``cmd``, the ``p_bytes`` parameter beats, the raw rows
        (N-tile major), then a ``done`` pulse; all into ``got``."""
        out = self.dut.output
        rng = random.Random(self.seed + 11)

        async def take(ctx, port):
            while True:
                ready = rng.random() >= self.gap
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if ready and valid:
                    ctx.set(port.ready, 0)
                    return payload

        async def proc(ctx):
            while True:
                got["cmd"] = await take(ctx, out.cmd)
                c = self.case
                D = self.acc.shell.data_bytes
                got["params"] = [int(await take(ctx, out.params)) for _ in range(c.p_bytes // D)]
                nt = -(-c.n // self.acc.gemm.cols)
                got["rows"] = []
                for _ in range(nt * c.m):
                    p = await take(ctx, out.i)
                    got["rows"].append(([int(x) for x in p.acc], int(p.tag.m), int(p.tag.nt), int(p.tag.last)))
                ctx.set(out.done, 1)
                await ctx.tick()
                ctx.set(out.done, 0)
        return proc

    def dst_sink(self):
        """The real GemmOutput's buffer writes, applied to :attr:`dst_buf`."""
        port, A = self.dut.dst, isa.column_align(self.acc)
        rng = random.Random(self.seed + 13)

        async def proc(ctx):
            while True:
                ready = rng.random() >= self.gap
                ctx.set(port.ready, ready)
                _, _, valid, p = await ctx.tick().sample(port.valid, port.payload)
                if ready and valid:
                    row, word, mask = int(p.row), int(p.word), int(p.mask)
                    lanes = unpack_lanes(int(p.data), 8, A)
                    for i in range(A):
                        if mask >> i & 1:
                            self.dst_buf[row, word * A + i] = lanes[i]
        return proc

    async def run_one(self, ctx, case, limit: int = 20_000) -> tuple[int, int]:
        """Send ``case``'s descriptor; (cycles from its acceptance to ``done``, error code)."""
        self.case = case
        self.dst_buf = case.bufs[case.d.dst].copy()
        dut = self.dut
        await send(ctx, dut.cmd, [case.fields()], self.rng, self.gap)
        cycles = 0
        while True:
            _, _, done, err = await ctx.tick().sample(dut.done, dut.error)
            cycles += 1
            if done:
                return cycles, int(err)
            if cycles >= limit:
                raise AssertionError(f"seed {self.seed}: no done after {limit} cycles")

    def simulate(self, testbench, got: dict | None = None):
        """Run ``testbench`` (async, ``ctx``) with every model in the background."""
        from amaranth.sim import Simulator
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self.buffer_port("src"), background=True)
        sim.add_testbench(self.buffer_port("aux"), background=True)
        sim.add_testbench(self.dma(), background=True)
        if "wdma" in self.dut.signature.members:
            sim.add_testbench(self.wdma(), background=True)
        if self.real:
            sim.add_testbench(self.dst_sink(), background=True)
        else:
            sim.add_testbench(self.output({} if got is None else got), background=True)
        sim.add_testbench(testbench)
        sim.run()
