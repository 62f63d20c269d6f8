"""cocotb testbench class for :class:`heatvit.rtl.gemm.GemmEngine` (one TB class per DUT)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from cocotb.triggers import RisingEdge

from heatvit import golden
from heatvit.config import GemmConfig, ceil_div

from .streams import Idle, StreamTB, pack_fields, pack_lanes, unpack_lanes


@dataclass
class GemmRun:
    y: np.ndarray          # result read back from the DUT, M x N
    expected: np.ndarray   # golden result
    cycles: int            # command accepted -> last output beat accepted, inclusive
    m: int
    k: int
    n: int

    @property
    def ok(self) -> bool:
        return bool(np.array_equal(self.y, self.expected))


class GemmTB(StreamTB):
    """Drives every stream of the engine (stall patterns, a monitor on every port) and checks
    results bit-exactly."""

    SOURCES = {"act": "act_load", "params": "param_load", "cmd": "cmd", "weights": "weights",
               "tiles": "tiles"}
    SINKS = {"out": "out"}

    def __init__(self, dut, cfg: GemmConfig, rng: random.Random, *, gap: Idle | float = 0.0,
                 stall: Idle | float = 0.0, period_ns: int = 10):
        self.cfg = cfg
        super().__init__(dut, rng, gap=gap, stall=stall, period_ns=period_ns)

    # -- payload encodings (StructLayout fields, first field least significant) ---------------
    def act_beats(self, a) -> list[int]:
        cfg = self.cfg
        words = golden.pack_activations(cfg, a)
        return [pack_fields([(addr, cfg.act_addr_bits),
                             (pack_lanes(w, cfg.act_bits), cfg.act_bits * cfg.rows)])
                for addr, w in enumerate(words)]

    def param_beats(self, bias, mult, shift) -> list[int]:
        cfg = self.cfg
        return [pack_fields([(ch, cfg.n_bits), (b, cfg.bias_bits), (mu, cfg.mult_bits), (s, cfg.shift_bits)])
                for ch, (b, mu, s) in enumerate(zip(bias, mult, shift))]

    def weight_beats(self, w, bitmap=None) -> list[int]:
        cfg = self.cfg
        return [pack_lanes(word, cfg.weight_bits) for word in golden.pack_weights(cfg, w, bitmap)]

    def tile_beats(self, bitmap, k: int, n: int) -> list[int]:
        cfg = self.cfg
        kt_bits = max(1, (cfg.max_k_tiles - 1).bit_length())
        return [pack_fields([(kt, kt_bits), (last, 1), (empty, 1)])
                for kt, last, empty in golden.tile_descriptors(cfg, bitmap, k, n)]

    def cmd_beat(self, m: int, k: int, n: int, bitmap=None) -> int:
        """Command beat; with a tile ``bitmap`` a sparse GEMM of its set tiles."""
        cfg = self.cfg
        tiles = 0 if bitmap is None else int(np.count_nonzero(bitmap))
        count_bits = (cfg.max_k_tiles * cfg.max_n_tiles).bit_length()
        return pack_fields([(m, cfg.m_bits), (k, cfg.k_bits), (n, cfg.n_bits),
                            (bitmap is not None, 1), (tiles, count_bits)])

    def decode_out(self, payload: int) -> tuple[np.ndarray, int]:
        cfg = self.cfg
        lanes = unpack_lanes(payload, cfg.act_bits, cfg.cols)
        last = (payload >> (cfg.act_bits * cfg.cols)) & 1
        return lanes, last

    # -- operations ---------------------------------------------------------------------------
    async def load(self, a, bias, mult, shift):
        """Write activations and per-channel parameters; return when both streams drained."""
        self.act.send(self.act_beats(a))
        self.params.send(self.param_beats(bias, mult, shift))
        await self.act.wait_idle()
        await self.params.wait_idle()
        for _ in range(2):
            await RisingEdge(self.clk)

    async def gemm(self, a, w, bias, mult, shift, *, bitmap=None, timeout: int | None = None) -> GemmRun:
        """Load operands, run one GEMM, read back and compare with the golden model.  With a
        tile ``bitmap`` the GEMM runs sparse (its zero tiles of ``w`` must be zero)."""
        cfg = self.cfg
        a, w = np.asarray(a), np.asarray(w)
        m, k = a.shape
        n = w.shape[1]
        bias, mult, shift = golden.check_params(cfg, n, bias, mult, shift)
        expected = golden.gemm(cfg, a, w, bias, mult, shift)
        await self.load(a, bias, mult, shift)
        y, cycles = await self.compute(m, k, n, w, bitmap=bitmap, timeout=timeout)
        return GemmRun(y=y, expected=expected, cycles=cycles, m=m, k=k, n=n)

    async def compute(self, m: int, k: int, n: int, w, *, bitmap=None, timeout: int | None = None):
        """Issue the command and stream the weights (and, sparse, the tiles); return (Y, cycles)."""
        cfg = self.cfg
        nt = ceil_div(n, cfg.cols)
        beats = nt * m
        if timeout is None:   # generous: random gaps and stalls slow the ideal schedule
            timeout = 200 + 20 * cfg.estimate_cycles(m, k, n, bitmap)
        self.cmd.send([self.cmd_beat(m, k, n, bitmap)])
        self.weights.send(self.weight_beats(w, bitmap))
        if bitmap is not None:
            self.tiles.send(self.tile_beats(bitmap, k, n))
        rows = []
        lasts = []
        for p in await self.out.recv(beats, timeout_cycles=timeout):
            lanes, last = self.decode_out(p)
            rows.append(lanes)
            lasts.append(last)
        if lasts[-1] != 1 or any(lasts[:-1]):
            raise AssertionError(f"'last' flags wrong: expected only on beat {beats - 1}, got "
                                 f"{[i for i, v in enumerate(lasts) if v]}")
        y = golden.unpack_outputs(cfg, np.array(rows), m, n)
        cycles = self.out.handshake_cycles[self.out.consumed - 1] - self.cmd.handshake_cycles[-1] + 1
        return y, cycles

    def random_operands(self, np_rng: np.random.Generator, m: int, k: int, n: int):
        """Random int8 operands with requantization parameters that keep outputs in range."""
        cfg = self.cfg
        a = np_rng.integers(cfg.act_min, cfg.act_max + 1, size=(m, k))
        w = np_rng.integers(cfg.weight_min, cfg.weight_max + 1, size=(k, n))
        bias = np_rng.integers(-(1 << 20), 1 << 20, size=n)
        # Typical |acc| ~ sqrt(K) * 128 * 74: pick shifts that land most outputs in int8.
        typical = max(1.0, np.sqrt(k) * 5500.0)
        mult = np_rng.integers(1 << (cfg.mult_bits - 1), 1 << cfg.mult_bits, size=n)
        base = int(np.ceil(np.log2(typical * (1 << cfg.mult_bits) / 64)))
        shift = np.clip(base + np_rng.integers(-2, 3, size=n), 0, cfg.max_shift)
        return a, w, bias, mult, shift
