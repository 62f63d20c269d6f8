"""Analytic per-descriptor cycle estimate of a program (no simulation), for the end-to-end bench
to set beside the cycles the RTL measures.

Phases of one descriptor (``m, k, n`` live-clipped as the controller sees them):

* ``engine``: GEMM engine cycles, ``GemmConfig.estimate_cycles(m, k, n)`` (exact for the engine
  with its operands on chip; docs/architecture.md).
* ``act_load``: GEMM activation-buffer fill from a token buffer, ``ceil(k/R) * m`` words at one
  word per cycle.
* ``unit``: the nonlinear / elementwise unit, from docs/nonlinear.md: softmax rows of
  ``B = ceil(n / row_lanes)`` beats, ``3B + 25`` for the first row and ``2B + 25`` for each
  further one; LayerNorm ``2B + 18`` then ``B + 18`` per row; GELU ``ceil(m n / lanes) + 12``.
  ADD and COPY: one token-buffer word (``max(R, C)`` int8) per cycle (an assumption of this
  model: their units are not built yet).
* ``ddr``: DMA beats (``beat_bytes`` per cycle): streamed weights and parameter blocks, LOAD and
  STORE rows.

``serial`` adds the phases (no overlap at all, an upper bound); ``overlapped`` is the longest
phase (everything of one descriptor overlapped, a lower bound).  Descriptor fetch and the
controller's own decode are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .. import isa
from ..isa import Epilogue, Op, WSrc
from ..validate import ceil_div


@dataclass(frozen=True)
class Estimate:
    index: int
    name: str
    op: str
    m: int
    k: int
    n: int
    engine: int
    act_load: int
    unit: int
    ddr: int

    @property
    def serial(self) -> int:
        return self.engine + self.act_load + self.unit + self.ddr

    @property
    def overlapped(self) -> int:
        return max(self.engine, self.act_load, self.unit, self.ddr)

    def to_dict(self) -> dict:
        return {**asdict(self), "serial": self.serial, "overlapped": self.overlapped}


def softmax_cycles(nl, rows: int, n: int) -> int:
    b = ceil_div(n, nl.row_lanes)
    return rows * (2 * b + 25) + b if rows else 0


def layernorm_cycles(nl, rows: int, n: int) -> int:
    b = ceil_div(n, nl.row_lanes)
    return rows * (b + 18) + b if rows else 0


def gelu_cycles(nl, elements: int) -> int:
    return ceil_div(elements, nl.lanes) + 12 if elements else 0


def estimate(program, acc, *, n_live: int | None = None, beat_bytes: int = 16) -> list[Estimate]:
    """One :class:`Estimate` per executed descriptor of ``program`` (descriptors clipped to 0 rows
    are left out); ``n_live``: override BEGIN's live token count."""
    g, nl = acc.gemm, acc.nonlinear
    word = isa.column_align(acc)
    live = n_live
    out = []
    for i, d in enumerate(program):
        op = Op(d.opcode)
        if op == Op.BEGIN:
            live = d.m if n_live is None else n_live
            continue
        if op == Op.END:
            break
        m, k, n = isa.live_dims(d, live)
        if m == 0:
            continue
        engine = act = unit = ddr = 0
        if op == Op.GEMM:
            engine = g.estimate_cycles(m, k, n)
            act = ceil_div(k, g.rows) * m
            if d.epilogue == Epilogue.REQ16_GELU:
                unit = gelu_cycles(nl, m * n)
            elif d.epilogue == Epilogue.RAW_SOFTMAX:
                unit = softmax_cycles(nl, m, n)
            parts = isa.param_block(acc, d)
            ddr = ceil_div(sum(s for p, (_, s) in parts.items() if p != "weights" or d.wsrc == WSrc.DDR), beat_bytes)
        elif op == Op.LAYERNORM:
            unit = layernorm_cycles(nl, m, n)
            ddr = ceil_div(isa.param_block_bytes(acc, d), beat_bytes)
        elif op in (Op.ADD, Op.COPY):
            unit = m * ceil_div(n, word)
        else:  # LOAD, STORE
            ddr = m * ceil_div(n, beat_bytes)
        out.append(Estimate(i, d.name, op.name, m, k, n, engine, act, unit, ddr))
    return out


def summary(estimates: list[Estimate], acc) -> dict:
    """Totals: GEMM-only (engine), serial and overlapped cycles, and MAC utilization of each."""
    g = acc.gemm
    macs = sum(e.m * e.k * e.n for e in estimates if e.op == "GEMM")
    tot = {"engine": sum(e.engine for e in estimates), "serial": sum(e.serial for e in estimates),
           "overlapped": sum(e.overlapped for e in estimates), "macs": macs}
    for key in ("engine", "serial", "overlapped"):
        tot[f"{key}_mac_utilization"] = macs / (tot[key] * g.rows * g.cols) if tot[key] else 0.0
    tot["ms_at_clock"] = {k: tot[k] / (acc.clock_mhz * 1e3) for k in ("engine", "serial", "overlapped")}
    return tot


def by_layer(estimates: list[Estimate]) -> list[dict]:
    """Estimates summed over the descriptors of one layer (row chunks), in program order:
    ``name, op, m`` (rows over all chunks), ``k, n, descriptors`` and every phase."""
    out: dict[str, dict] = {}
    for e in estimates:
        r = out.get(e.name)
        if r is None:
            out[e.name] = r = {"name": e.name, "op": e.op, "m": 0, "k": e.k, "n": e.n, "descriptors": 0,
                               **{p: 0 for p in ("engine", "act_load", "unit", "ddr", "serial", "overlapped")}}
        r["m"] += e.m
        r["descriptors"] += 1
        for p in ("engine", "act_load", "unit", "ddr", "serial", "overlapped"):
            r[p] += getattr(e, p)
    return list(out.values())
