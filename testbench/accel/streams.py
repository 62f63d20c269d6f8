"""Amaranth-simulator stream helpers for the accelerator unit tests (async testbenches).

``send`` drives a ``lib.stream`` source with random valid gaps, ``recv`` a sink with random
ready stalls; both take a seeded ``random.Random`` so a run replays from its seed.
"""

from __future__ import annotations

import random

from heatvit.sim.gemm_exec_bench import send  # noqa: F401  (one definition, shared with the harness)


async def recv(ctx, port, n: int, rng: random.Random, gap: float = 0.3, limit: int = 100_000):
    """``n`` payloads (as returned by ``ctx.get``/sample: ints or views converted by the caller)."""
    out = []
    cycles = 0
    while len(out) < n:
        ready = rng.random() >= gap
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
        if ready and valid:
            out.append(payload)
        cycles += 1
        if cycles > limit:
            raise AssertionError(f"recv: {len(out)} of {n} payloads after {limit} cycles")
    ctx.set(port.ready, 0)
    return out
