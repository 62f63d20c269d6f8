"""cocotb testbench class for :class:`heatvit.rtl.toksel.TokenSelectorUnit` (one TB class per DUT),
and ``measure``, the cocotb test the token-selector benchmark runs for cycle counts."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass

import cocotb
import numpy as np

from heatvit.golden.token_selector import decision
from heatvit.toksel_config import TOKEN_BITS, TokSelConfig

from heatvit.sim.runner import config_from_env
from heatvit.sim.streams import Idle, StreamTB, checked_test, pack_fields, pack_lanes, unpack_lanes


@dataclass
class StageRun:
    writes: list          # (addr, lanes, last) in emission order
    result: dict          # n_tokens, n_tail, n_kept, error
    expected: decision.StageResult | None
    cycles: int           # command accepted -> result accepted, inclusive

    def buffer(self, cfg: TokSelConfig) -> np.ndarray:
        """The tokens (N', D) the writes leave in a dense buffer."""
        n = self.result["n_tokens"]
        words = np.zeros((cfg.chunks * n, cfg.lanes), dtype=np.int64)
        for addr, lanes, _ in self.writes:
            words[addr] = lanes
        return words.reshape(cfg.chunks, n, cfg.lanes).transpose(1, 0, 2).reshape(n, cfg.dim)

    def check(self, cfg: TokSelConfig, what: str = "stage") -> None:
        """Bit-exact comparison with the golden stage (writes, order, addresses, counts)."""
        exp = self.expected
        want = [(a, list(w)) for a, w in decision.gather_writes(cfg, exp)]
        got = [(a, list(w)) for a, w, _ in self.writes]
        assert self.result["error"] == 0, f"{what}: error code {self.result['error']}"
        assert self.result["n_tokens"] == exp.n_tokens, \
            f"{what}: n_tokens {self.result['n_tokens']}, expected {exp.n_tokens}"
        assert self.result["n_tail"] == exp.n_tail, f"{what}: n_tail {self.result['n_tail']}, expected {exp.n_tail}"
        assert self.result["n_kept"] == exp.n_kept, f"{what}: n_kept {self.result['n_kept']}, expected {exp.n_kept}"
        assert len(got) == len(want), f"{what}: {len(got)} writes, expected {len(want)}"
        addrs = [a for a, _ in got]
        assert len(set(addrs)) == len(addrs), f"{what}: an address was written twice"
        # kept tokens leave in order; a package word may come later (during the next chunk)
        kept = [a for a in addrs if (a + 1) % exp.n_tokens or not exp.has_package]
        assert kept == sorted(kept), f"{what}: kept-token writes out of order"
        for i, (g, w) in enumerate(zip(sorted(got), want)):
            assert g == w, f"{what}: word {i}: got addr {g[0]} {g[1]}, expected addr {w[0]} {w[1]}"
        lasts = [lt for _, _, lt in self.writes]
        assert lasts == [0] * (len(lasts) - 1) + [1], f"{what}: 'last' flags {lasts}"


class TokSelTB(StreamTB):
    """Drives every stream of the unit (source gaps, sink stalls; a monitor on every port)."""

    SOURCES = {"cmd": "cmd", "scores": "scores", "tokens": "tokens"}
    SINKS = {"writes": "writes", "result": "result"}

    def __init__(self, dut, cfg: TokSelConfig, rng: random.Random, *, gap: Idle | float = 0.0,
                 stall: Idle | float = 0.0, period_ns: int = 10):
        self.cfg = cfg
        super().__init__(dut, rng, gap=gap, stall=stall, period_ns=period_ns)

    # -- payload encodings (StructLayout fields, first field least significant) ---------------
    def cmd_beat(self, n_tokens: int, n_tail: int, threshold_q: int) -> int:
        cfg = self.cfg
        return pack_fields([(n_tokens, cfg.count_bits), (n_tail, cfg.count_bits),
                            (threshold_q, cfg.score_bits)])

    def decode_write(self, payload: int) -> tuple[int, np.ndarray, int]:
        cfg = self.cfg
        addr = payload & ((1 << cfg.addr_bits) - 1)
        lanes = unpack_lanes(payload >> cfg.addr_bits, TOKEN_BITS, cfg.lanes)
        last = (payload >> (cfg.addr_bits + TOKEN_BITS * cfg.lanes)) & 1
        return addr, lanes, last

    def decode_result(self, payload: int) -> dict:
        cb = self.cfg.count_bits
        mask = (1 << cb) - 1
        return {"n_tokens": payload & mask, "n_tail": (payload >> cb) & mask,
                "n_kept": (payload >> 2 * cb) & mask, "error": (payload >> 3 * cb) & 0xFF}

    # -- operations ---------------------------------------------------------------------------
    async def stage(self, x, scores, n_tail: int = 0, threshold_q: int | None = None, *,
                    timeout: int | None = None) -> StageRun:
        """Run one stage through the unit and compute the golden result for it."""
        cfg = self.cfg
        x = np.asarray(x, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.int64)
        thr = cfg.threshold_q if threshold_q is None else threshold_q
        expected = decision.stage_int(cfg, x, scores, n_tail, thr)
        n = x.shape[0]
        self.cmd.send([self.cmd_beat(n, n_tail, thr)])
        self.scores.send([int(q) for q in scores])
        self.tokens.send([pack_lanes(w, TOKEN_BITS) for w in decision.token_words(cfg, x)])
        await self.cmd.wait_idle()
        start = self.cmd.handshake_cycles[-1]
        limit = timeout or 50 * (cfg.chunks + 2) * (n + cfg.lanes * 10 + 10)
        (res,) = await self.result.recv(1, timeout_cycles=limit)
        cycles = self.result.handshake_cycles[self.result.consumed - 1] - start + 1
        writes = [self.decode_write(p) for p in self.writes.take()]
        return StageRun(writes, self.decode_result(res), expected, cycles)

    async def bad_command(self, n_tokens: int, n_tail: int) -> dict:
        """Send a command the unit must reject; return its result beat."""
        self.cmd.send([self.cmd_beat(n_tokens, n_tail, self.cfg.threshold_q)])
        (res,) = await self.result.recv(1, timeout_cycles=200)
        return self.decode_result(res)

    def random_tokens(self, np_rng: np.random.Generator, n: int) -> np.ndarray:
        return np_rng.integers(-128, 128, size=(n, self.cfg.dim), dtype=np.int64)

    def random_scores(self, np_rng: np.random.Generator, n: int, keep_fraction: float = 0.5) -> np.ndarray:
        """Scores with about ``keep_fraction`` above the threshold, including edge values."""
        cfg = self.cfg
        thr = cfg.threshold_q
        hi = np_rng.integers(thr + 1, cfg.score_max + 1, size=n) if thr < cfg.score_max else np.full(n, thr)
        lo = np_rng.integers(0, thr + 1, size=n)
        q = np.where(np_rng.random(n) < keep_fraction, hi, lo)
        edges = np_rng.random(n)
        q = np.where(edges < 0.05, thr, q)
        q = np.where((edges >= 0.05) & (edges < 0.08), 0, q)
        q = np.where((edges >= 0.08) & (edges < 0.1), cfg.score_max, q)
        return q.astype(np.int64)


@checked_test
async def measure(dut):
    """Cycle counts of stages given by ``HEATVIT_STAGES`` (JSON list of {"n", "keep"}), no
    stalls; results go to the JSON file named by ``HEATVIT_RESULT``."""
    if "HEATVIT_STAGES" not in os.environ:
        return
    cfg = config_from_env(TokSelConfig)
    seed = cocotb.RANDOM_SEED
    tb = TokSelTB(dut, cfg, random.Random(seed))
    np_rng = np.random.default_rng(seed)
    await tb.reset()
    out = []
    for st in json.loads(os.environ["HEATVIT_STAGES"]):
        n, keep = st["n"], st["keep"]
        if keep in (0, 1):                  # exactly keep-none / keep-all
            scores = np.full(n, cfg.score_max if keep else 0, dtype=np.int64)
        else:
            scores = tb.random_scores(np_rng, n, keep)
        run = await tb.stage(tb.random_tokens(np_rng, n), scores)
        run.check(cfg, f"measure n={n}")
        out.append({**st, "cycles": run.cycles, "n_out": run.result["n_tokens"], "bit_exact": True})
        cocotb.log.info(f"n={n} keep={keep}: {run.cycles} cycles -> {run.result['n_tokens']} tokens")
    with open(os.environ["HEATVIT_RESULT"], "w") as f:
        json.dump(out, f, indent=1)
