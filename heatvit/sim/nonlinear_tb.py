"""cocotb testbench class for :class:`heatvit.rtl.nonlinear.bank.NonlinearBank` (every nonlinear unit).

Each operation drives one unit's streams under a stall pattern (:mod:`heatvit.sim.streams`),
with the stream rules checked on the unit's output (its sink's inline monitor) and every port
of the bank idle afterwards, collects the results and returns them decoded next to the golden
model's answer; the caller compares.
"""

from __future__ import annotations

import random

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from heatvit.golden import nonlinear as NL
from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.layernorm import LayerNormParams, moments_bits
from heatvit.golden.nonlinear.softmax import SoftmaxParams
from heatvit.nonlinear_config import NonlinearConfig
from heatvit.rtl.nonlinear.bank import RECIP_BITS, RSQRT_BITS

from .streams import Idle, StreamSink, StreamSource, pack_fields, pack_lanes, pattern

SHIFT_BITS = 6
UNITS = ("gelu", "sigmoid", "exp", "recip", "rsqrt", "softmax", "layernorm")
PORTS = [f"{u}__{d}" for u in UNITS for d in ("i", "o")] + ["layernorm__affine"]


def _field(word: int, lo: int, width: int, signed: bool) -> int:
    v = (word >> lo) & ((1 << width) - 1)
    return v - (1 << width) if signed and v >> (width - 1) else v


class NonlinearTB:
    """Drives the bank's units under a stall pattern (``stalls``: a name of
    :data:`heatvit.sim.streams.PATTERNS`, or ``(source Idle, sink Idle)``)."""

    def __init__(self, dut, cfg: NonlinearConfig, rng: random.Random, *, stalls="random",
                 period_ns: int = 10):
        self.dut, self.cfg, self.rng = dut, cfg, rng
        self.clk = dut.clk
        self.stalls = stalls
        Clock(dut.clk, period_ns, unit="ns").start()
        # undriven inputs are Z in 4-state simulators and a pipeline register would keep the Z
        for unit in UNITS:
            getattr(dut, f"{unit}__i__valid").value = 0
            getattr(dut, f"{unit}__o__ready").value = 0
        dut.layernorm__affine__valid.value = 0

    def _idle(self, stalls) -> tuple[Idle, Idle]:
        stalls = self.stalls if stalls is None else stalls
        if isinstance(stalls, str):
            import cocotb
            cocotb.log.info(f"stall pattern {stalls} (seed {cocotb.RANDOM_SEED})")
            return pattern(stalls)
        return Idle.of(stalls[0]), Idle.of(stalls[1])

    async def reset(self, cycles: int = 3):
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.clk)

    async def _stream(self, unit: str, beats: list[int], n_out: int, stalls=None,
                      cycles_per_beat: int = 8) -> list[int]:
        """``beats`` into ``<unit>__i``; ``n_out`` beats out of ``<unit>__o``, and nothing more."""
        gap, stall = self._idle(stalls)
        r = self.rng
        src = StreamSource(self.dut, f"{unit}__i", self.clk, gap=gap, rng=random.Random(r.getrandbits(32))).start()
        sink = StreamSink(self.dut, f"{unit}__o", self.clk, stall=stall, rng=random.Random(r.getrandbits(32))).start()
        self.last_sink = sink                 # its handshake_cycles time the output beats
        src.send(beats)
        slow = 1 if gap.never and stall.never else 8
        words = await sink.recv(n_out, timeout_cycles=200 + slow * cycles_per_beat * (len(beats) + n_out) * 4)
        sink.stall = Idle()
        for _ in range(8):
            await RisingEdge(self.clk)
        src.stop(), sink.stop()
        if sink.unread:
            raise AssertionError(f"{unit}: {sink.unread} unexpected extra output beats")
        self.check_idle()
        return words

    def check_idle(self):
        """No port of the bank has a beat on offer (every unit drained)."""
        busy = [p for p in PORTS if int(getattr(self.dut, f"{p}__valid").value)]
        if busy:
            raise AssertionError(f"beat left over: valid high on {busy}")

    # -- elementwise units ---------------------------------------------------------------------
    async def elementwise(self, unit: str, x, *, stalls=None, params=None):
        """Run ``x`` (1-D ints) through ``unit``; return (got, expected) as int64 arrays
        (reciprocal / rsqrt: shape (n, 2) with columns r, e)."""
        cfg, lanes = self.cfg, self.cfg.lanes
        x = np.asarray(x, dtype=np.int64)
        n = len(x)
        pad = (-n) % lanes
        xp = np.concatenate([x, np.full(pad, x[0])])
        if unit in ("gelu", "sigmoid"):
            ob = F.ACT_BITS if unit == "gelu" else F.SIGMOID_FRAC + 2
            p = params
            getattr(self.dut, f"{unit}__params").value = pack_fields(
                [(p.in_mult, F.MULT_BITS), (p.in_shift, SHIFT_BITS), (p.out_mult, F.MULT_BITS),
                 (p.out_shift, SHIFT_BITS), (p.out_min, ob), (p.out_max, ob)])
            in_bits, out_w = 32, ob
            expected = (NL.gelu if unit == "gelu" else NL.sigmoid)(x, p, cfg)
            decode = lambda v: _field(v, 0, ob, True)
        elif unit == "exp":
            in_bits, out_w = F.EXP_IN_BITS, F.EXP_OUT_FRAC + 1
            expected = NL.exp_neg(x, cfg)
            decode = lambda v: _field(v, 0, out_w, False)
        else:
            in_bits = RECIP_BITS if unit == "recip" else RSQRT_BITS
            ew = in_bits.bit_length()
            out_w = F.RECIP_FRAC + 1 + ew
            r, e = (NL.reciprocal if unit == "recip" else NL.rsqrt)(x, in_bits, cfg)
            expected = np.stack([r, e], axis=1)
            decode = lambda v: (_field(v, 0, F.RECIP_FRAC + 1, False), _field(v, F.RECIP_FRAC + 1, ew, False))
        beats = [pack_lanes(xp[i:i + lanes], in_bits) for i in range(0, len(xp), lanes)]
        words = await self._stream(unit, beats, len(beats), stalls, cycles_per_beat=2)
        got = [decode((w >> (lane * out_w)) & ((1 << out_w) - 1)) for w in words for lane in range(lanes)]
        return np.array(got[:n], dtype=np.int64), np.asarray(expected, dtype=np.int64)

    # -- row units -------------------------------------------------------------------------------
    def _row_beats(self, row, bits: int, with_flags: bool, drop_last: bool = False) -> list[int]:
        """One row as beats of ``row_lanes``; the last beat's unused lanes hold random garbage.
        ``drop_last``: send the row's final beat without ``last`` (the unit must end it itself)."""
        L = self.cfg.row_lanes
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        out = []
        for b in range(0, len(row), L):
            chunk = [int(v) for v in row[b:b + L]]
            count = len(chunk)
            chunk += [self.rng.randint(lo, hi) for _ in range(L - count)]
            word = pack_lanes(chunk, bits)
            if with_flags:
                last = int(b + L >= len(row) and not drop_last)
                word = pack_fields([(word, bits * L), (count if last else self.rng.randint(0, L), self.cfg.lane_bits),
                                    (last, 1)])
            out.append(word)
        return out

    def _row_results(self, unit: str, words: list[int], lengths: list[int], signed: bool) -> np.ndarray:
        """Decode output beats; check each beat's count, ``last`` and zeroed unused lanes."""
        L, lb = self.cfg.row_lanes, self.cfg.lane_bits
        values, k = [], 0
        for n in lengths:
            for b in range(0, n, L):
                w = words[k]
                k += 1
                count, last = min(L, n - b), int(b + L >= n)
                got_count = _field(w, 8 * L, lb, False)
                got_last = _field(w, 8 * L + lb, 1, False)
                lanes = [_field(w, 8 * j, 8, signed) for j in range(L)]
                if (got_count, got_last) != (count, last) or any(lanes[count:]):
                    raise AssertionError(f"{unit}: output beat {k - 1}: count/last/unused lanes "
                                         f"{got_count}/{got_last}/{lanes[count:]}, expected {count}/{last}/0")
                values += lanes[:count]
        return np.array(values, dtype=np.int64)

    async def softmax(self, rows: list, p: SoftmaxParams, *, stalls=None, unterminated=()):
        """Rows (1-D int arrays) through the Softmax unit; return (got, expected) concatenated.
        Rows whose index is in ``unterminated`` are sent without ``last`` (full-length rows only)."""
        d, ib = self.dut, self.cfg.softmax_in_bits
        d.softmax__params.value = pack_fields(
            [(p.mult, F.SOFTMAX_MULT_BITS), (p.shift, SHIFT_BITS), (p.out_max, 8)])
        beats = [w for i, r in enumerate(rows) for w in self._row_beats(r, ib, True, i in unterminated)]
        words = await self._stream("softmax", beats, len(beats), stalls)
        got = self._row_results("softmax", words, [len(r) for r in rows], False)
        expected = np.concatenate([NL.softmax(np.asarray(r), p, self.cfg) for r in rows])
        return got, expected

    async def layernorm_load(self, p: LayerNormParams):
        """Set the per-tensor parameters and stream the per-channel affine table in."""
        cfg, d = self.cfg, self.dut
        mb = moments_bits(cfg.layernorm_in_bits, cfg.dim_bits)
        d.layernorm__params.value = pack_fields(
            [(p.n, cfg.dim_bits), (p.eps_q, mb), (p.out_shift, SHIFT_BITS)])
        ib = max(1, (cfg.max_dim - 1).bit_length())
        src = StreamSource(d, "layernorm__affine", self.clk, gap=self._idle(None)[0],
                           rng=random.Random(self.rng.getrandbits(32))).start()
        src.send([pack_fields([(i, ib), (int(g), F.LN_GAMMA_BITS), (int(b), F.LN_BETA_BITS)])
                  for i, (g, b) in enumerate(zip(p.gamma_q, p.beta_q))])
        await src.wait_idle()
        await RisingEdge(self.clk)
        src.stop()
        self.check_idle()

    async def layernorm(self, rows, p: LayerNormParams, *, stalls=None):
        """Rows [R, N] through the LayerNorm unit (affine already loaded); (got, expected) flat."""
        rows = np.asarray(rows, dtype=np.int64)
        beats = [w for r in rows for w in self._row_beats(r, self.cfg.layernorm_in_bits, False)]
        words = await self._stream("layernorm", beats, len(beats), stalls)
        got = self._row_results("layernorm", words, [p.n] * len(rows), True)
        return got, NL.layernorm(rows, p, self.cfg).ravel()


def assert_equal(what: str, x, got, expected):
    """Bit-exact comparison; the message names the first mismatching input."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        raise AssertionError(f"{what}: got shape {got.shape}, expected {expected.shape}")
    bad = np.flatnonzero((got != expected).reshape(len(got), -1).any(axis=1))
    if len(bad):
        i = int(bad[0])
        xi = np.asarray(x).ravel()[i] if x is not None and i < np.asarray(x).size else "?"
        raise AssertionError(f"{what}: {len(bad)} mismatches; first at element {i} (input {xi}): "
                             f"got {got[i].tolist()}, expected {expected[i].tolist()}")
