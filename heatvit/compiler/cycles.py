"""Analytic per-descriptor cycle estimate of a program (no simulation), for the end-to-end bench
to set beside the cycles the RTL measures.

Phases of one descriptor (``m, k, n`` live-clipped as the controller sees them):

* ``engine``: GEMM engine cycles, ``GemmConfig.estimate_cycles(m, k, n)`` (exact for the engine
  with its operands on chip; docs/architecture.md); a block-sparse GEMM (``sparse = 1``) is
  priced with its tile bitmap's per-N-tile counts (``estimate_cycles(m, k, n, tiles)``), read
  from the model image (``model``).
* ``act_load``: GEMM activation-buffer fill from a token buffer, ``ceil(k/R) * m`` words at one
  word per cycle.  A block-sparse GEMM: :func:`sparse_act_bound`, the engine's end when each pass
  waits for its K tile's activations (the executor's gate), which the skipped tiles can expose.
* ``unit``: the nonlinear / elementwise unit, from docs/nonlinear.md: softmax rows of
  ``B = ceil(n / acc.softmax_lanes)`` beats on ``acc.softmax_units`` units taking alternate
  rows, each ``3B + 30`` for its first row and ``2B + 30`` for each further one; LayerNorm
  (``B = ceil(n / acc.layernorm_lanes)``) ``2B + 21`` then ``B + 21`` per row; GELU ``m ceil(n / C) + 16``
  (the epilogue's unit has a lane per column), sigmoid ``m n + 16`` (one lane).
  ADD and COPY: one token-buffer word (``max(R, C)`` int8) per cycle (an assumption of this
  model: their units are not built yet).
  MEAN: two passes over its rows at one buffer word per cycle plus one reciprocal-unit division
  per averaged column (an assumption: its unit is not built yet).  SELECT: the executor's
  measured cycles (:func:`select_cycles`: the score combiner, one token per
  :func:`select_score_rate` cycles, feeding the token-selector control unit, whose cycles
  (:func:`toksel_cycles`) are its measured RTL counts, docs/token_selector.md; the trace record's
  write included) plus ``SELECT_TOP_CYCLES``: exact against the whole accelerator's cycle records.
* ``ddr``: DMA beats (``beat_bytes`` per cycle): parameter blocks, LOAD and STORE rows, SELECT
  trace records, and streamed weights at the GEMM executor's weight path's rate
  (:func:`weight_stream_cycles`; what the engine waits for them: :func:`weight_stream_extra`).

Pruned programs: the live token count changes at every SELECT; :func:`estimate` takes each
stage's outcome (``selects``, from a run's trace: :meth:`heatvit.compiler.trace.Trace.selects`)
and prices every later descriptor at the live count, :func:`image_cycles` does it from a trace.
Descriptors named ``selectors.*`` are the selector's work (:func:`selector_fraction`).

``serial`` adds the phases (no overlap at all, an upper bound); ``overlapped`` is the longest
phase (everything of one descriptor overlapped, a lower bound).  Descriptor fetch and the
controller's own decode are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

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


def softmax_cycles(nl, rows: int, n: int, units: int = 1) -> int:
    """``units`` softmax units of ``nl.row_lanes`` lanes taking alternate rows."""
    b = ceil_div(n, nl.row_lanes)
    return ceil_div(rows, units) * (2 * b + 30) + b if rows else 0


def layernorm_cycles(nl, rows: int, n: int) -> int:
    b = ceil_div(n, nl.row_lanes)
    return rows * (b + 21) + b if rows else 0


def gelu_cycles(nl, elements: int) -> int:
    return ceil_div(elements, nl.lanes) + 16 if elements else 0


COMBINER_MIN_CYCLES = 7
"""The score combiner takes one token per ``max(heads + 2, 7)`` cycles (rtl/toksel/combiner.py)."""


def toksel_cycles(ts, n: int, dim: int, pruned: int) -> int:
    """Cycles of the token-selector control unit (command accepted to result taken) on ``n``
    tokens of ``dim`` channels of which ``pruned`` are pruned, its scores arriving one per cycle.

    Nothing pruned: ``n`` (scores) + ``chunks * n`` (gather, one word per cycle) + 4.  Otherwise
    each chunk streams ``S = n + pruned * (digits - 1) + 1`` cycles (a kept word per cycle, a
    pruned word per 4 weight bits, the package word) and its package division takes
    ``V = 9 * lanes + 2`` cycles while the next chunk streams, so:
    ``n + S + (chunks - 1) * max(S, V) + V + 3`` (``digits = ceil(score_bits / 4)``).  Exact on
    12 of the 13 RTL runs ``testbench/test_compiler_prune.py`` measures (the 13th: +0.3 %)."""
    chunks = ceil_div(dim, ts.lanes)
    if pruned == 0:
        return n + chunks * n + 4
    s = n + pruned * (ceil_div(ts.score_bits, 4) - 1) + 1
    v = 9 * ts.lanes + 2
    return n + s + (chunks - 1) * max(s, v) + v + 3


SELECT_FIXED_CYCLES = 26
"""The SELECT executor's cycles beyond its score and token streams: command, the first token's
reciprocal pipeline, the unit's result and the trace record's write (rtl/accel/select_exec.py;
measured by ``testbench/test_accel_select.py::test_select_cycles``)."""


SELECT_TOP_CYCLES = 3
"""What a SELECT's cycle record in the whole accelerator adds to the executor's own cycles
(dispatch, the token buffers' read pipeline, the trace write's path to DDR): measured on the
pruned digits model in Verilator (``testbench/test_accel_prune_digits.py``, every stage)."""


def select_score_rate(acc, heads: int) -> int:
    """Cycles per token of the SELECT executor's score phase: the combiner's ``max(heads + 2, 7)``
    or, when more, its ``aux`` words (``ceil(heads / A)`` head-weight words and ``heads``
    keep-probability words, one per cycle) plus the cycle in which the full beat waits for the
    combiner."""
    words = ceil_div(heads, isa.column_align(acc)) + heads
    return max(heads + 2, COMBINER_MIN_CYCLES, words + 1)


def select_cycles(acc, heads: int, n: int, dim: int, pruned: int) -> int:
    """SELECT on ``n`` live tokens of ``dim`` channels, ``heads`` heads, ``pruned`` of them pruned
    (command accepted to ``done``, trace record written, no stalls): the control unit's cycles
    (:func:`toksel_cycles`) with its one-score-per-cycle phase replaced by the executor's score
    phase: the first token's ``ceil(heads / A) + heads`` aux words and ``heads`` combiner cycles,
    then one token per :func:`select_score_rate`; plus ``SELECT_FIXED_CYCLES``.  Exact on the
    executor (``testbench/test_accel_select.py``: 1-12 heads, 4 x 4 and 16 x 16) and in the whole
    accelerator (the pruned digits model on Verilator) wherever :func:`toksel_cycles` is."""
    words = ceil_div(heads, isa.column_align(acc)) + heads
    return (toksel_cycles(acc.toksel, n, dim, pruned) - n + (n - 1) * select_score_rate(acc, heads)
            + heads + words + SELECT_FIXED_CYCLES)


def weight_stream_cycles(acc, beats: int) -> int:
    """Cycles the GEMM executor takes ``beats`` DMA beats of weights in (``BeatWeights``,
    rtl/accel/weight_source.py): a weight word of ``C`` int8 from ``C / D`` beats of ``D`` bytes
    when ``C > D``, and the cycle it leaves in takes no beat, so ``C / D + 1`` cycles a word
    (64 x 32 with 16-byte beats: 3 cycles per 2 beats, measured on the board-scale RTL run's
    DDR-bound GEMMs, heatvit.bench._board_rtl); a beat a cycle otherwise."""
    per = ceil_div(acc.gemm.cols, acc.shell.data_bytes)
    return ceil_div(beats * (per + 1), per) if acc.gemm.cols > acc.shell.data_bytes else beats


def weight_stream_extra(acc, m: int, k: int, n: int, tiles=None) -> int:
    """Cycles a dense GEMM whose weights stream from DDR takes beyond ``estimate_cycles`` (which
    has a weight word a cycle): a word takes :func:`weight_stream_cycles` of its beats, ``s``
    cycles, so a tile's ``R`` words ``S = R s``: the first tile waits ``S - R`` more, and each
    later one ``S - max(M, min_tile_cycles)`` when its words come slower than the array uses
    them.  At 64 x 32 (``s = 3``): +128 on every DDR GEMM and, at 69 tokens, the stream sets the
    pace; exact on the board-scale RTL run's GEMMs (heatvit.bench._board_rtl: e.g. qkv at 69
    tokens 42,264 cycles measured = the record model with this term).  0 when a word is a beat
    or less, and for a block-sparse GEMM (``tiles``; not measured)."""
    g = acc.gemm
    if tiles is not None:
        return 0
    s = weight_stream_cycles(acc, ceil_div(g.cols, acc.shell.data_bytes))
    if s <= 1:
        return 0
    stream = g.rows * s
    n_tiles = ceil_div(k, g.rows) * ceil_div(n, g.cols)
    return stream - g.rows + (n_tiles - 1) * max(0, stream - max(m, g.min_tile_cycles))


def gemm_tiles(acc, d, model: bytes | None):
    """The ``tiles`` argument of ``estimate_cycles`` for GEMM ``d``: None (dense) or its tile
    bitmap from ``model`` (the image bytes; needed for a sparse GEMM)."""
    if not d.sparse:
        return None
    if model is None:
        raise ValueError(f"{d.name or 'GEMM'}: a block-sparse GEMM is priced from its tile bitmap; pass model= "
                         f"(the image bytes)")
    from .interpret import gemm_bitmap
    return gemm_bitmap(acc, d, model)


def sparse_act_bound(g, m: int, bitmap) -> int:
    """The GEMM executor's activation gate on a block-sparse GEMM: activations load K-tile major
    at one word per cycle, so the pass of a tile in K tile ``kt`` starts ``(kt + 1) * m`` cycles
    after the load begins at the earliest, and the passes after it take ``max(m, R)`` each (an
    empty N tile: ``m``); plus the pipeline fill.  Measured equal to the executor's cycles
    whenever it exceeds ``estimate_cycles`` (``testbench/test_accel_gemm.py``)."""
    import numpy as np

    passes = []
    for col in np.asarray(bitmap, dtype=bool).T:
        kts = np.flatnonzero(col)
        passes += [(int(t), max(m, g.rows)) for t in kts] if kts.size else [(-1, m)]
    best, after = 0, 0
    for kt, cost in reversed(passes):
        after += cost
        if kt >= 0:
            best = max(best, (kt + 1) * m + after)
    return g.pipeline_fill_cycles + best


def estimate(program, acc, *, n_live: int | None = None, selects=None, beat_bytes: int = 16,
             model: bytes | None = None) -> list[Estimate]:
    """One :class:`Estimate` per executed descriptor of ``program`` (descriptors clipped to 0 rows
    are left out); ``n_live``: override BEGIN's live token count; ``selects``: ``(n_out, pruned)``
    of every SELECT in program order (default: each keeps every token); ``model``: the image's
    bytes (needed when the program has block-sparse GEMMs, :func:`gemm_tiles`)."""
    g, nl = acc.gemm, acc.nonlinear
    # the accelerator's row units have lanes of their own, derived from the array
    sm_nl, ln_nl = (replace(nl, row_lanes=lanes) for lanes in (acc.softmax_lanes, acc.layernorm_lanes))
    word = isa.column_align(acc)
    live = n_live
    selects = None if selects is None else list(selects)
    n_select = 0
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
            tiles = gemm_tiles(acc, d, model)
            engine = g.estimate_cycles(m, k, n, tiles)
            act = ceil_div(k, g.rows) * m if tiles is None else sparse_act_bound(g, m, tiles)
            if d.epilogue in (Epilogue.REQ16_GELU, Epilogue.REQ8_GELU):
                # the epilogue's GELU unit has a lane per array column: a row of C per cycle
                unit = gelu_cycles(replace(nl, lanes=g.cols), m * ceil_div(n, g.cols) * g.cols)
            elif d.epilogue == Epilogue.REQ8_SIGMOID:
                unit = gelu_cycles(nl, m * n)          # one lane (the epilogue's SerialAct)
            elif d.epilogue in (Epilogue.RAW_SOFTMAX, Epilogue.REQ8_SOFTMAX):
                unit = softmax_cycles(sm_nl, m, n, acc.softmax_units)
            parts = isa.param_block(acc, d)
            ddr = ceil_div(sum(s for p, (_, s) in parts.items() if p != "weights"), beat_bytes)
            if d.wsrc == WSrc.DDR and "weights" in parts:
                # the weights at the executor's weight path's rate (a beat a cycle unless C > D)
                ddr += weight_stream_cycles(acc, ceil_div(parts["weights"][1], beat_bytes))
        elif op == Op.LAYERNORM:
            unit = layernorm_cycles(ln_nl, m, n)
            ddr = ceil_div(isa.param_block_bytes(acc, d), beat_bytes)
        elif op in (Op.ADD, Op.COPY):
            unit = m * ceil_div(n, word)
        elif op == Op.MEAN:
            unit = 2 * m * ceil_div(n, word) + (n - d.k)
        elif op == Op.SELECT:
            if selects is None:
                n_out, pruned = m, 0
            elif n_select < len(selects):
                n_out, pruned = selects[n_select]
            else:
                raise ValueError(f"selects has {len(selects)} entries; the program has more SELECT descriptors")
            n_select += 1
            unit = select_cycles(acc, d.heads, m, n, pruned) + SELECT_TOP_CYCLES
            ddr = ceil_div(isa.trace_record_bytes(d.m), beat_bytes)
            out.append(Estimate(i, d.name, op.name, m, k, n, engine, act, unit, ddr))
            live = n_out
            continue
        else:  # LOAD, STORE
            ddr = m * ceil_div(n, beat_bytes)
        out.append(Estimate(i, d.name, op.name, m, k, n, engine, act, unit, ddr))
    return out


def image_cycles(image, acc, trace=None, **kw) -> list[Estimate]:
    """Estimates of one image's run of ``image`` (a ``ModelImage``): the live token counts from its
    decoded pruning ``trace`` (:func:`heatvit.compiler.trace.read`; ``None``: nothing pruned)."""
    kw.setdefault("model", image.blob)
    return estimate(image.program, acc, selects=None if trace is None else trace.selects(), **kw)


def selector_fraction(estimates: list[Estimate], key: str = "overlapped") -> float:
    """Cycles of the selector descriptors (named ``selectors.*``) over all cycles (phase ``key``)."""
    tot = sum(getattr(e, key) for e in estimates)
    sel = sum(getattr(e, key) for e in estimates if e.name.startswith("selectors."))
    return sel / tot if tot else 0.0


def summary(estimates: list[Estimate], acc) -> dict:
    """Totals: GEMM-only (engine), serial and overlapped cycles, and MAC utilization of each."""
    g = acc.gemm
    macs = sum(e.m * e.k * e.n for e in estimates if e.op == "GEMM")
    tot = {"engine": sum(e.engine for e in estimates), "serial": sum(e.serial for e in estimates),
           "overlapped": sum(e.overlapped for e in estimates), "macs": macs}
    for key in ("engine", "serial", "overlapped"):
        tot[f"{key}_mac_utilization"] = macs / (tot[key] * g.rows * g.cols) if tot[key] else 0.0
    tot["ms_at_clock"] = {k: tot[k] / (acc.clock_mhz * 1e3) for k in ("engine", "serial", "overlapped")}
    tot["selector_fraction"] = {k: selector_fraction(estimates, k) for k in ("engine", "serial", "overlapped")}
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
