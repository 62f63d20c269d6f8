"""Analytic per-descriptor cycle model of a program on the whole accelerator (no simulation).

**The model** (:func:`descriptor_cycles`, :func:`total_cycles`): each executed descriptor's
``cycles`` is the length of its cycle record (dispatch to ``done``) in the whole accelerator: the
executors' own cycle formulas (rtl/accel/*_exec.py, the GEMM engine's exact
``GemmConfig.estimate_cycles``, the softmax row units' schedule) plus the DMA and dispatch
latencies measured on the Verilator top; a run's ``CYCLES`` register adds ``START_CYCLES`` and
``GAP_CYCLES`` per descriptor (the next descriptor's fetch through the DMA, the cycle record's
hand-over).  Measured against the RTL's records descriptor by descriptor (docs/isa.md):
the dense digits and DeiT-T programs exact, pruned runs within a few cycles per descriptor
(``heatvit bench pruning``, ``testbench/test_accel_prune_digits.py``).

Pruned programs: the live token count changes at every SELECT; :func:`estimate` takes each
stage's outcome (``selects``, from a run's trace: :meth:`heatvit.compiler.trace.Trace.selects`)
and prices every later descriptor at the live count, :func:`image_cycles` does it from a trace,
:func:`plan_cycles` from a pruning plan's target ratios (the training script's plan search).
Descriptors named ``selectors.*`` are the selector's work (:func:`selector_fraction`).

**The phases** (older bounds, kept for comparison; ``m, k, n`` live-clipped):

* ``engine``: GEMM engine cycles, ``GemmConfig.estimate_cycles(m, k, n)`` (exact for the engine
  with its operands on chip; docs/architecture.md); a block-sparse GEMM (``sparse = 1``) is
  priced with its tile bitmap's per-N-tile counts (``estimate_cycles(m, k, n, tiles)``), read
  from the model image (``model``).
* ``act_load``: GEMM activation-buffer fill from a token buffer, ``ceil(k/R) * m`` words at one
  word per cycle (a block-sparse GEMM: only the K tiles its bitmap uses; its engine cycles are
  :func:`sparse_engine_cycles`, each pass also waiting for its descriptor and activations).
* ``unit``: the nonlinear / elementwise unit, from docs/nonlinear.md (softmax rows of
  ``B = ceil(n / acc.softmax_lanes)`` beats on ``acc.softmax_units`` units taking alternate
  rows, ``B`` cycles a row and ``3B + 32`` for the last one; LayerNorm
  (``B = ceil(n / acc.layernorm_lanes)``) ``B`` a row and ``2B + 25`` for the last; GELU ``m ceil(n / C) + 16``
  (the epilogue's unit has a lane per column), sigmoid ``m n + 16`` (one lane).
  ADD and COPY: one token-buffer word (``max(R, C)`` int8) per cycle (an assumption of this
  model: their units are not built yet).
  MEAN: two passes over its rows at one buffer word per cycle plus one reciprocal-unit division
  per averaged column (an assumption: its unit is not built yet).  SELECT: the executor's
  measured cycles (:func:`select_cycles`: the score combiner, one token per
  :func:`select_score_rate` cycles, feeding the token-selector control unit, whose cycles
  (:func:`toksel_cycles`) are its measured RTL counts, docs/token_selector.md; the trace record's
  write included) plus ``SELECT_TOP_CYCLES``.
* ``ddr``: DMA beats (``beat_bytes`` per cycle): parameter blocks, LOAD and STORE rows, SELECT
  trace records, and streamed weights at the GEMM executor's weight path's rate
  (:func:`weight_stream_cycles`; what the engine waits for them: :func:`weight_stream_extra`).

``serial`` adds the phases, ``overlapped`` is the longest phase.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import asdict, dataclass, replace

from .. import isa
from ..isa import Epilogue, Op, WSrc
from ..toksel_config import mean_passes, mean_sum_lanes, package_lanes
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
    cycles: int = 0
    """The modelled length of the descriptor's cycle record (:func:`descriptor_cycles`)."""

    @property
    def serial(self) -> int:
        return self.engine + self.act_load + self.unit + self.ddr

    @property
    def overlapped(self) -> int:
        return max(self.engine, self.act_load, self.unit, self.ddr)

    def to_dict(self) -> dict:
        return {**asdict(self), "serial": self.serial, "overlapped": self.overlapped}


def softmax_cycles(nl, rows: int, n: int, units: int = 1) -> int:
    """``units`` softmax units of ``nl.row_lanes`` lanes taking alternate rows: back-to-back rows
    of ``B`` beats ``B`` cycles apart, the last ``3B + SOFTMAX_ROW_LATENCY`` after its first beat."""
    b = ceil_div(n, nl.row_lanes)
    return (ceil_div(rows, units) - 1) * b + 3 * b + SOFTMAX_ROW_LATENCY if rows else 0


def layernorm_cycles(nl, rows: int, n: int) -> int:
    """Back-to-back LayerNorm rows of ``B`` beats ``B`` cycles apart, the last ``2B +
    LN_ROW_LATENCY`` after its first beat."""
    b = ceil_div(n, nl.row_lanes)
    return (rows + 1) * b + LN_ROW_LATENCY if rows else 0


def gelu_cycles(nl, elements: int) -> int:
    return ceil_div(elements, nl.lanes) + 16 if elements else 0


PKG_DRAIN = 2
"""Cycles between a chunk's last token word and its package division in the token-selector
control unit (``rtl/toksel/unit.py`` ``PKG_DRAIN``: the weighted sums' two product register
stages, issue 13; 0 before)."""

COMBINER_MIN_CYCLES = 12
"""The score combiner takes one token per ``max(heads + 2, 12)`` cycles (rtl/toksel/combiner.py:
its shift-add reciprocal's interval, ``RECIP_DIGIT_BITS = 3``)."""


def toksel_cycles(ts, n: int, dim: int, pruned: int) -> int:
    """Cycles of the token-selector control unit (command accepted to result taken) on ``n``
    tokens of ``dim`` channels of which ``pruned`` are pruned, its scores arriving one per cycle.

    ``n`` (scores) + 3 + per chunk: one cycle per kept word and ``lanes / G`` per pruned word
    (``G`` = :func:`heatvit.toksel_config.package_lanes` lanes weighted a cycle) and, when
    anything was pruned, ``PKG_DRAIN`` (2: the weighted sums' product stages drain,
    :data:`heatvit.rtl.toksel.unit.PKG_DRAIN`), ``9 * lanes`` for the package division and one
    for its write: ``n + 3 + chunks * (n + pruned * (lanes / G - 1) + [pruned > 0] (9 lanes + 3))``.  Exact on
    the RTL runs of ``testbench/test_compiler_prune.py`` (the unit does one thing at a time: no
    data-dependent overlap)."""
    chunks = ceil_div(dim, ts.lanes)
    if pruned == 0:
        return n + 3 + chunks * n
    steps = ts.lanes // package_lanes(ts.lanes)
    return n + 3 + chunks * (n + pruned * (steps - 1) + PKG_DRAIN + 9 * ts.lanes + 1)


SELECT_FIXED_CYCLES = 38
"""The SELECT executor's cycles beyond its score and token streams: command, the first token's
reciprocal pipeline and ``num * r`` (2 bits a cycle), the unit's result and the trace record's
write (rtl/accel/select_exec.py; measured by
``testbench/test_accel_select.py::test_select_cycles``); plus ``toksel.max_tokens - N`` in which
the keep mask shifts into place (:func:`select_cycles`)."""


SELECT_TOP_CYCLES = 4
"""What a SELECT's cycle record in the whole accelerator adds to the executor's own cycles
(dispatch, the token buffers' read pipeline, the trace write's path to DDR): measured on the
pruned digits model in Verilator (``testbench/test_accel_prune_digits.py``, every stage; 3 before
the DMA's two-stage address check)."""


def select_score_rate(acc, heads: int) -> int:
    """Cycles per token of the SELECT executor's score phase: the combiner's ``max(heads + 2, 12)``
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
    then one token per :func:`select_score_rate`; plus ``SELECT_FIXED_CYCLES`` and the keep
    mask's alignment, ``toksel.max_tokens - n`` (one bit a cycle).  Exact on the
    executor (``testbench/test_accel_select.py``: 1-12 heads, 4 x 4 and 16 x 16) and in the whole
    accelerator (the pruned digits model on Verilator) wherever :func:`toksel_cycles` is."""
    words = ceil_div(heads, isa.column_align(acc)) + heads
    return (toksel_cycles(acc.toksel, n, dim, pruned) - n + (n - 1) * select_score_rate(acc, heads)
            + heads + words + SELECT_FIXED_CYCLES + acc.toksel.max_tokens - n)


def weight_stream_cycles(acc, beats: int) -> int:
    """Cycles the GEMM executor takes ``beats`` beats of weights in (``BeatWeights``,
    rtl/accel/weight_source.py): a beat a cycle (a beat of the weight path: ``acc.weight_path_bytes``,
    ``weight_beats_per_cycle`` DMA beats side by side).  When ``C > D`` a weight word of ``C`` int8
    takes ``C / D`` beats of ``D`` bytes and the next word's first beat is taken in the cycle the
    full word leaves, so a word costs ``C / D`` cycles, ``D`` bytes a cycle (64 x 32 with
    16-byte beats: 2 cycles a word; ``testbench/test_accel_gemm.py::test_beat_weights_rate``)."""
    return beats


def weight_stream_extra(acc, m: int, k: int, n: int, tiles=None) -> int:
    """Cycles a dense GEMM whose weights stream from DDR takes beyond ``estimate_cycles`` (which
    has a weight word a cycle) when a word is more than a beat: word ``j`` leaves ``BeatWeights``
    ``s j + 1`` cycles after its start (``s = C / D`` beats a word, :func:`weight_stream_cycles`)
    where a one-beat word leaves at ``j``, so a tile's ``R`` words take ``S = R s``: the first
    tile waits ``S - R + 1`` more, and each later one ``S - max(M, min_tile_cycles)`` when its
    words come slower than the array uses them.  At 64 x 32 (``s = 2``): +65 on every DDR GEMM,
    and at 69 tokens the stream sets the pace.  The old unpacker (a word in ``s + 1`` cycles) was
    measured exact with this form (``S - R`` first) on the board-scale RTL run's GEMMs
    (heatvit.bench._board_rtl).  0 when a word is a beat or less, and for a block-sparse GEMM
    (``tiles``; not measured)."""
    g = acc.gemm
    if tiles is not None:
        return 0
    s = ceil_div(g.cols, acc.weight_path_bytes)    # weight_beats_per_cycle beats at once
    if s <= 1:
        return 0
    stream = g.rows * s
    n_tiles = ceil_div(k, g.rows) * ceil_div(n, g.cols)
    return stream - g.rows + 1 + (n_tiles - 1) * max(0, stream - max(m, g.min_tile_cycles))


# -- the whole accelerator, descriptor by descriptor (measured against the RTL's cycle records) ----

CHECK_CYCLES = 6
"""The descriptor checker's latency, a descriptor's words in to its error code out
(``heatvit.rtl.accel.descriptor.CHECKER_LATENCY``: decode, live shape, products, checks, each
group of checks' first failing one, the first failing group's; ``testbench/test_cycle_model.py``
checks they agree)."""

START_CYCLES = 10
"""From ``start`` to the BEGIN descriptor's cycle record (its fetch through the DMA and its check),
less the ``CHECK_CYCLES - 1`` that END's gap to ``done`` (no check after END) lacks: with one
``GAP_CYCLES`` per descriptor the ``CYCLES`` register then adds up."""

GAP_CYCLES = 11 + CHECK_CYCLES
"""Between one descriptor's record end and the next one's start: the cycle record's hand-over,
the next descriptor's fetch (one 32-byte DMA read of the PROGRAM region) and its check
(``CHECK_CYCLES``); also from END's record to ``done`` (every write answered; see
``START_CYCLES``).  Skipped descriptors (live rows 0), BEGIN and END have records of length 0 and
cost this gap too.  (11 when the checker was one stage: its stages added 5 to every gap; the
DMA's two-stage address check, ``heatvit.rtl.accel.dma_ports``, one more to the fetch.)"""

ROW_DMA_CYCLES = 8
"""LOAD: the DMA's latency per row (one request per row, served in order; 7 before the DMA's
address check took two register stages, ``heatvit.rtl.accel.dma_ports``)."""

STORE_CYCLES = 4
"""STORE: cycles after its beats (the write's hand-over to the DMA; measured on one-row STOREs,
the logits, at 16 x 16: ``testbench/test_cycle_model_rtl.py``; 3 before the DMA's two-stage
address check)."""

COPY_CYCLES = 5
"""COPY: cycles after one buffer word per cycle."""

ADD_CYCLES = COPY_CYCLES + 2
"""ADD: the same walk plus the residual add's two rounding stages (rtl/accel/residual_add.py,
``ResidualAdd.latency`` = 4: the products' sum, the rounding add, the shift, the clamp)."""

LN_ROW_LATENCY = 25
"""LayerNorm unit: one row of ``B`` beats takes ``2B +`` this (first beat in to last beat out;
rows follow each other ``B`` cycles apart): ``heatvit.rtl.nonlinear.rows.layernorm_row_latency``
at the accelerator's tables (``testbench/test_cycle_model.py`` checks they agree)."""

LN_CYCLES = 6 + LN_ROW_LATENCY + 8
"""LAYERNORM beyond ``P + (M + 1) B'``: the executor's own ``6 + LN_ROW_LATENCY``
(rtl/accel/layernorm_exec.py ``cycles``) plus the parameter read's DMA latency and dispatch (8;
7 before the DMA's two-stage address check)."""

MEAN_CYCLES = 19
"""MEAN: with one cycle per word of its rows (``W``), on top of the executor's own ``18``
(rtl/accel/mean_exec.py) and ``W (M + 2)``: dispatch and the DMA-less hand-over (measured: W = 1
digits, W = 4 DeiT-T)."""

MEAN_LANE_CYCLES = 10
"""MEAN: cycles per lane of an averaged word's division (rtl/accel/mean_exec.py: the load and nine
2-bit digits of the shift-add ``sum * r``)."""

GEMM_PARAM_LEAD = 10
"""GEMM, weights from DDR: the engine starts after the parameter beats (:func:`param_beats`) plus
this (the DMA's latency: the weights follow the parameters in one stream; the engine's row gate
lets its first pass start while its activation tile loads, so the activations do not hold it;
9 before the DMA's two-stage address check)."""

GEMM_ACT_LEAD = 5
"""GEMM, weights from a token buffer: the engine starts after its first activation tile (``m``
words) plus this (the executor's weight gate holds the tile's weights until then), ..."""

GEMM_BUF_MIN_LEAD = 7
"""... and at least this (``WSrc.BUF``): the parameter beats do not
hold the engine back (its weights do not follow them), so at a handful of rows the activations
alone set the lead (measured: attention's ``p v`` on the whole accelerator at 1 to 40 live
tokens, digits and DeiT-T, exact; the parameter lead made it up to 34 cycles long)."""

BUF_T_FIFO_DEPTH = 8
"""``WSrc.BUF_T``: reads ``BufferWeights`` may have issued and not yet taken from its FIFO (the
GEMM executor's ``fifo_depth``); it keeps issuing the next tile's reads, up to this many, while
its full block waits to be emitted (:func:`buffer_t_tiles`)."""

BUF_T_PORT_START = 2
"""``WSrc.BUF_T`` schedule (:func:`buffer_t_tiles`; cycles counted from the descriptor's
acceptance): the first cycle the executor's ``src`` (activations) and ``BufferWeights``' ``aux``
reads are issued (``start`` latches the fields, ``start_units`` the next cycle sets ``a_issue``
and the source's ``issuing``) ..."""

BUF_T_ACT_LATENCY = 2
"""... from an activation read's grant to its word in the engine's buffer (the buffer's read
register, the crossbar's return FIFO) ..."""

BUF_T_AUX_LATENCY = 4
"""... from a weight read's grant to its word at the head of ``BufferWeights``' FIFO (the
crossbar's two cycles, then the source's buffered FIFO's two) ..."""

BUF_T_GATE_LATENCY = 1
"""... from an activation tile's last word to the gate letting its weight tile into the engine
(the executor's ``gate`` compares the registered ``r_kt``)."""

BUF_T_FILL_OVERLAP = 5
"""``WSrc.BUF_T``: a tile's pass starts the cycle after its last weight word, and its first output
row leaves ``pipeline_fill_cycles - rows - BUF_T_FILL_OVERLAP`` after that word: the engine's
fill without the first tile's ``R`` words (the source's emission) and the command and
activation-read registers that ran meanwhile (47 cycles at 16 x 16, measured on the executor
and the whole accelerator; the other arrays scale with the fill, not measured)."""

BUF_T_SOFTMAX_CYCLES = 8
"""``WSrc.BUF_T`` softmax GEMM: cycles beyond its last N tile's first output row, the rows'
``(m - 1) B`` and the last row's ``3B + SOFTMAX_ROW_LATENCY`` (the score memory's write and
read-back, the buffer write, ``done`` and the record's hand-over)."""

EPILOGUE_LATENCY = {Epilogue.REQ8: 0, Epilogue.REQ16_GELU: 16, Epilogue.REQ8_GELU: 16}
"""Cycles an epilogue's unit adds after the engine's last row (REQ8: the requantizer's, counted in
``GEMM_*_LEAD``)."""

SIGMOID_CYCLES = 18
"""REQ8_SIGMOID runs on one lane (``SerialAct`` feeding the GELU unit's lane 0): ``m (n - 1)``
cycles more than one row a cycle, plus this (fitted with the unit's rounding stages: the
selectors' head weights, n = 3, m = 42 .. 65, exact; one less than on the former sigmoid unit of
its own, whose pipeline was a stage longer than the GELU's)."""

SOFTMAX_ROW_LATENCY = 32
"""Softmax unit: one row of ``B`` beats takes ``3B +`` this (first beat in to last beat out; rows
follow each other ``B`` cycles apart): ``heatvit.rtl.nonlinear.rows.softmax_row_latency`` at
the accelerator's tables (``testbench/test_cycle_model.py`` checks they agree)."""

SOFTMAX_TAIL_CYCLES = {1: 1, 2: 33, 3: 25}
"""A softmax GEMM with weights from DDR (the selectors' 2-way softmax): its cycles after its last
row's unit (the last write, ``done``, the score memory's read-back) by its N tiles (1, 2, 3 or
more), plus ``SOFTMAX_BEAT_CYCLES`` per beat of a row beyond the first (one N tile) and
``SOFTMAX_KT_CYCLES`` per K tile beyond the first.  Fitted on the RTL's records
(:func:`softmax_gemm_tail`; refitted when the row unit began to overlap consecutive rows: 2 /
33 / 26 before).  ``q k^T`` (``WSrc.BUF_T``) no longer uses them: :func:`buffer_t_tiles`
walks what they stood for (from 36 tokens up it gives the same records, at K = 16 and 64)."""

SOFTMAX_BEAT_CYCLES = 6

SOFTMAX_KT_CYCLES = 16


def param_beats(acc, d) -> int:
    """Beats of a GEMM's parameter block before its ``bitmap`` / ``weights`` part (what
    ``GemmOutput`` takes before the engine's first weight: ``rtl.accel.gemm_output.param_beats``)."""
    parts = isa.param_block(acc, d)
    ends = [parts[p][0] for p in ("bitmap", "weights") if p in parts]
    end = ends[0] if ends else isa.param_block_bytes(acc, d)
    return ceil_div(end, acc.shell.data_bytes)


def buffer_t_tiles(acc, m: int, k: int, n: int, shared: bool = True) -> tuple[int, ...]:
    """The cycle (from the descriptor's start) of each weight tile's last word into the engine,
    tiles in the engine's order (N tile major), for a ``WSrc.BUF_T`` GEMM: a cycle-by-cycle walk
    of the three parts that set it (``rtl/accel/gemm_exec.py``, ``weight_source.py``,
    ``crossbar.py``), cached per shape:

    * the activation reads, ``KT m`` of them, one a cycle from ``BUF_T_PORT_START``;
    * ``BufferWeights``: per tile it walks the ``C`` output channels, a read for each live one
      (``nt C + j < n``; the others one cycle each), at most ``BUF_T_FIFO_DEPTH`` reads not yet
      taken; it collects the tile's channels from its FIFO (one a cycle, a read's word
      ``BUF_T_AUX_LATENCY`` after its grant), then emits the tile's ``R`` words, one a cycle, and
      only then collects the next tile;
    * the gate: weight tile ``t`` of the first N tile enters only once activation tile ``t`` is
      in (``BUF_T_ACT_LATENCY`` after the last read's grant, plus ``BUF_T_GATE_LATENCY``); later
      tiles once all activations are;
    * ``shared`` (``src`` and ``aux`` in one buffer, as ``q k^T`` reads QKV): one read a cycle
      between them, round robin when both ask; else each port reads a word a cycle.

    The engine takes each weight word when it comes (its passes, :func:`buffer_t_rows`, do not
    hold the source back at these shapes)."""
    return _buffer_t_tiles(acc.gemm.rows, acc.gemm.cols, m, k, n, shared)


@functools.cache
def _buffer_t_tiles(R: int, C: int, m: int, k: int, n: int, shared: bool) -> tuple[int, ...]:
    """:func:`buffer_t_tiles` of an ``R`` x ``C`` array (the walk depends on nothing else)."""
    kt_n, nt_n = ceil_div(k, R), ceil_div(n, C)
    acts = kt_n * m
    reads = [nt * C + j < n for nt in range(nt_n) for _ in range(kt_n) for j in range(C)]
    issue = act_issued = act_in = pending = 0
    act_tile_in = []                       # cycle each activation tile is complete (gate open)
    act_words = deque()                    # cycles the granted activation words arrive
    fifo = deque()                         # cycles the granted weight words reach the FIFO's head
    prefer_aux = False
    tile, j, emitting, word, ends = 0, 0, False, 0, []
    c = 0
    while tile < kt_n * nt_n:
        if c > 4 * (acts + len(reads) + kt_n * nt_n * R) + 100:      # every step moves at least every few cycles
            raise RuntimeError(f"buffer_t_tiles: no progress at cycle {c} (m, k, n = {m}, {k}, {n})")
        src = c >= BUF_T_PORT_START and act_issued < acts
        aux = False
        if c >= BUF_T_PORT_START and issue < len(reads):
            if not reads[issue]:
                issue += 1                 # a dead channel: a cycle, no read
            elif pending < BUF_T_FIFO_DEPTH:
                aux = True
        if shared and src and aux:
            src, aux = not prefer_aux, prefer_aux
            prefer_aux = not prefer_aux
        if src:
            act_issued += 1
            act_words.append(c + BUF_T_ACT_LATENCY)
        if aux:
            pending += 1
            issue += 1
            fifo.append(c + BUF_T_AUX_LATENCY)
        while act_words and act_words[0] <= c:
            act_words.popleft()
            act_in += 1
            if act_in % m == 0:
                act_tile_in.append(c + BUF_T_GATE_LATENCY)
        if not emitting:
            if (tile // kt_n) * C + j >= n:
                j += 1
            elif fifo and fifo[0] <= c:
                fifo.popleft()
                pending -= 1
                j += 1
            if j == C:
                emitting, j, word = True, 0, 0
        else:
            loaded = sum(1 for x in act_tile_in if x <= c)
            if tile < loaded or loaded == kt_n:
                word += 1
                if word == R:
                    ends.append(c)
                    tile += 1
                    emitting = False
        c += 1
    return tuple(ends)


def buffer_t_rows(acc, m: int, k: int, n: int, shared: bool = True) -> int:
    """The cycle (from the descriptor's start) of a ``WSrc.BUF_T`` GEMM's last N tile's first
    output row: the engine starts a tile's pass the cycle after its last weight word
    (:func:`buffer_t_tiles`) and once the previous pass (``max(m, min_tile_cycles)`` cycles) has
    ended; the pass's first row leaves ``pipeline_fill_cycles - rows - BUF_T_FILL_OVERLAP``
    after that last word."""
    g = acc.gemm
    start = None
    for end in buffer_t_tiles(acc, m, k, n, shared):
        start = end + 1 if start is None else max(end + 1, start + max(m, g.min_tile_cycles))
    return start - 1 + g.pipeline_fill_cycles - g.rows - BUF_T_FILL_OVERLAP


def softmax_gemm_tail(acc, m: int, k: int, n: int, lead: int | None = None, wsrc: WSrc = WSrc.DDR,
                      shared: bool = True) -> int:
    """Cycles a softmax GEMM adds after its engine (``estimate_cycles``): the score-memory reader
    gives one beat a cycle and the row unit takes one a cycle (rows overlap in it), so row ``j``'s
    beats start ``j B`` after the first row's, the first row one pass (``m`` rows) before the
    engine's end plus its ``lead``, and the last row takes ``3B + SOFTMAX_ROW_LATENCY``.

    ``WSrc.BUF_T`` (``q k^T``; ``shared``: ``src`` and ``aux`` in one buffer, as the compiler
    emits it): the transposing weight source and the read port it shares with the activations
    set the engine's pace, so the record is :func:`buffer_t_rows` (the last N tile's first
    output row) ``+ (m - 1) B + 3B + SOFTMAX_ROW_LATENCY + BUF_T_SOFTMAX_CYCLES`` (one N tile:
    ``+ SOFTMAX_BEAT_CYCLES (B - 1)``), returned less ``estimate_cycles``.  Against the whole
    accelerator's records (Verilator; the dense digits and one-block DeiT-T programs with BEGIN's
    live token count set to ``m = n``): within one cycle at every ``m`` from 1 to 48 at the
    digits shape (K = 16) and at DeiT-T's (K = 64: 1 to 8 and 16 counts from 12 to
    71); the one is the buffer crossbar's round-robin state, which the previous ``q k^T``
    leaves (consecutive heads alternate; ``testbench/test_cycle_model_rtl.py``).  From 36 tokens
    up it gives exactly what the fitted form it replaces gave (DeiT-T dense and pruned, 71 to
    197 tokens, exact), which was 11 to 18 cycles short at 1 to 16 tokens and up to 45 off at
    K = 64 and 17 to 32.

    Weights from DDR (the selectors' 2-way softmax): the ``lead`` (default ``m + GEMM_ACT_LEAD``;
    :func:`descriptor_cycles`: the later of that and the parameter beats' lead) plus the fitted
    ``SOFTMAX_TAIL_CYCLES[NT]`` ``+ SOFTMAX_KT_CYCLES (KT - 1)`` (one N tile:
    ``+ SOFTMAX_BEAT_CYCLES (B - 1)``): exact on the pruned digits model's 2-way softmax (one N
    tile, B = 1, at 46 and 65 tokens) and one cycle long on DeiT-T's (99 to 197 tokens)."""
    b = ceil_div(n, acc.softmax_lanes)
    first_to_last = (m - 1) * b
    nt = ceil_div(n, acc.gemm.cols)
    beats = SOFTMAX_BEAT_CYCLES * (b - 1) if nt == 1 else 0
    if wsrc == WSrc.BUF_T:
        return (buffer_t_rows(acc, m, k, n, shared) + first_to_last + 3 * b + SOFTMAX_ROW_LATENCY
                + BUF_T_SOFTMAX_CYCLES + beats - acc.gemm.estimate_cycles(m, k, n))
    tail = SOFTMAX_TAIL_CYCLES[min(nt, 3)] + SOFTMAX_KT_CYCLES * (ceil_div(k, acc.gemm.rows) - 1) + beats
    lead = m + GEMM_ACT_LEAD if lead is None else lead
    return lead - m + first_to_last + 3 * b + SOFTMAX_ROW_LATENCY + tail


def bitmap_beats(acc, d) -> int:
    """DMA beats from a block-sparse GEMM's ``bitmap`` part to its ``weights`` part (the bitmap
    and its padding: the executor reads them all before the weights; 0 for a dense GEMM)."""
    parts = isa.param_block(acc, d)
    if "bitmap" not in parts:
        return 0
    return (parts["weights"][0] - parts["bitmap"][0]) // acc.shell.data_bytes


def gemm_lead(acc, d, m: int) -> int:
    """Cycles from GEMM ``d``'s start to its engine's start (what ``estimate_cycles`` leaves out):
    weights from DDR ``param_beats + bitmap_beats + GEMM_PARAM_LEAD`` (the weights follow the
    parameter and bitmap beats in one stream; the engine's row gate lets the first pass start
    while its activation tile still loads), from a token buffer ``max(m + GEMM_ACT_LEAD,
    GEMM_BUF_MIN_LEAD)`` (the weight gate waits for the first activation tile; transposed ones:
    :func:`buffer_t_rows` instead)."""
    if d.wsrc == WSrc.DDR:
        return param_beats(acc, d) + bitmap_beats(acc, d) + GEMM_PARAM_LEAD
    return max(m + GEMM_ACT_LEAD, GEMM_BUF_MIN_LEAD)


def descriptor_cycles(acc, d, m: int, k: int, n: int, *, engine: int = 0, select: int = 0) -> int:
    """The modelled length of descriptor ``d``'s cycle record in the whole accelerator
    (``m, k, n`` live-clipped; ``engine``: the GEMM engine's cycles; ``select``: a SELECT's
    executor cycles), from the executors' own cycle formulas plus the DMA and dispatch latency
    measured on the whole accelerator in Verilator (``testbench/test_cycle_model.py`` compares
    every descriptor of the digits model, dense and pruned):

    * LOAD: ``m * (ceil(n / D) + ROW_DMA_CYCLES)`` (a DMA request per row, ``D`` bytes a beat);
      STORE: ``m * ceil(n / D) + STORE_CYCLES``.
    * ADD / COPY: ``m * ceil(n / A) + ADD_CYCLES`` / ``COPY_CYCLES`` (``A = isa.column_align``).
    * LAYERNORM: ``P + (m + 1) B' + LN_CYCLES`` (``P`` 64-bit chunks of its parameter
      block, ``B' = ceil(n / acc.layernorm_lanes)``).
    * MEAN: ``W (m + 3) + W' (m + MEAN_LANE_CYCLES A + 2) + MEAN_CYCLES`` (``W`` words, ``W'`` of
      them averaged) when a word's lanes ``A`` are summed in one pass (``A <= 16``); wider words:
      per pass of :func:`heatvit.toksel_config.mean_passes`, ``m + 3`` and for an averaging pass
      ``m + MEAN_LANE_CYCLES * 16 + 2``.
    * GEMM: ``engine +`` :func:`gemm_lead` (weights from DDR: ``param_beats + bitmap_beats +
      GEMM_PARAM_LEAD``) plus the epilogue's latency (REQ8_SIGMOID, one value a
      cycle: ``m (n - 1) + SIGMOID_CYCLES``); a softmax GEMM: ``engine +``
      :func:`softmax_gemm_tail`.  Transposed weights (``WSrc.BUF_T``) with another epilogue
      (the compiler emits none; not measured): the last row :func:`buffer_t_rows` ``+ m - 1``,
      plus one and the epilogue's latency.
    * SELECT: ``select + SELECT_TOP_CYCLES``.

    Not in it: :func:`weight_stream_extra` (0 unless a weight word is more than a beat of the
    weight path, ``C > weight_beats_per_cycle * D``), which callers at such configs add per DDR GEMM
    (``heatvit.bench._board_rtl``'s ``records_stream``).
    """
    op = Op(d.opcode)
    D = acc.shell.data_bytes
    A = isa.column_align(acc)
    if op == Op.LOAD:
        return m * (ceil_div(n, D) + ROW_DMA_CYCLES)
    if op == Op.STORE:
        return m * ceil_div(n, D) + STORE_CYCLES
    if op in (Op.ADD, Op.COPY):
        return m * ceil_div(n, A) + (ADD_CYCLES if op == Op.ADD else COPY_CYCLES)
    if op == Op.LAYERNORM:
        b = ceil_div(n, acc.layernorm_lanes)
        return ceil_div(isa.param_block_bytes(acc, d), 8) + (m + 1) * b + LN_CYCLES
    if op == Op.MEAN:
        sl = mean_sum_lanes(A)
        return sum(m + 3 + avg * (m + MEAN_LANE_CYCLES * sl + 2) for _, avg in mean_passes(A, sl, n, d.k)) \
            + MEAN_CYCLES
    if op == Op.GEMM:
        shared = d.src == d.aux
        if d.epilogue in (Epilogue.RAW_SOFTMAX, Epilogue.REQ8_SOFTMAX):
            return engine + softmax_gemm_tail(acc, m, k, n, gemm_lead(acc, d, m), WSrc(d.wsrc), shared)
        if d.wsrc == WSrc.BUF_T:
            engine, lead = buffer_t_rows(acc, m, k, n, shared) + m, 0
        else:
            lead = gemm_lead(acc, d, m)
        if d.epilogue == Epilogue.REQ8_SIGMOID:
            return engine + lead + m * (n - 1) + SIGMOID_CYCLES
        return engine + lead + EPILOGUE_LATENCY[Epilogue(d.epilogue)]
    if op == Op.SELECT:
        return select + SELECT_TOP_CYCLES
    raise ValueError(f"descriptor_cycles: {op.name} has no cycle record of its own")


def total_cycles(program, estimates: list[Estimate]) -> int:
    """The ``CYCLES`` register's count (start to done) of a run of ``program`` whose executed
    descriptors are ``estimates`` (:func:`estimate`): their records, ``GAP_CYCLES`` per
    descriptor up to END (skipped ones included) and ``START_CYCLES``."""
    records = next((i + 1 for i, d in enumerate(program) if Op(d.opcode) == Op.END), len(program))
    return START_CYCLES + sum(e.cycles for e in estimates) + GAP_CYCLES * records


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


SPARSE_WALK_START = 2
"""Block-sparse DDR GEMM, in the time base of ``GemmConfig.tile_schedule`` (0: the engine's
earliest row issue): the cycle both walks of the tile map (``rtl/accel/tile_map.py``) examine
their first bit.  With ``SPARSE_DESC_CYCLES`` and ``SPARSE_ACT_CYCLES``, measured on the GEMM executor (``testbench/test_accel_gemm.py::test_gemm_exec_sparse_cycles``:
4 x 4 and 8 x 4, every pass start exact: empty N tiles, late first tiles, 1 to 40 tokens)."""

SPARSE_DESC_CYCLES = 2
"""From the cycle the tile map emits a descriptor to the first cycle the engine may issue its
pass's first row (the executor's descriptor FIFO)."""

SPARSE_ACT_CYCLES = 3
"""From the cycle the executor takes a K tile from the tile map's order walk to the first cycle
the engine may issue that tile's first row (the source read's issue, the buffer's read latency,
the write into the engine's buffer).  An upper bound from the executor runs: it never bound a
pass there (the pass's descriptor, emitted a cycle or more after its bit, came later)."""

SPARSE_DESC_DEPTH = 4
"""Descriptors the executor's FIFO holds between the tile map and the engine."""


def sparse_act_ready(acc, m: int, bitmap) -> dict[int, int]:
    """K tile -> the soonest the engine may issue its first row, for a block-sparse DDR GEMM, in
    ``tile_schedule``'s time base.  The executor loads only the K tiles the bitmap uses, in the
    order the descriptors first name them: the tile map's order walk examines a bit a cycle
    (two more per memory word of ``data_width`` bits) from ``SPARSE_WALK_START`` and halts on a
    new K tile until the executor takes it; the executor takes the next one right after the
    last source read of the previous one (``m`` reads, one a cycle); the rows are readable
    ``SPARSE_ACT_CYCLES`` after the take, one a cycle, as fast as the engine reads them."""
    import numpy as np

    bm = np.asarray(bitmap, dtype=bool)
    kt_n, nt_n = bm.shape
    W = acc.shell.data_width
    taken: dict[int, int] = {}
    t, prev = SPARSE_WALK_START, None
    for i in range(kt_n * nt_n):
        if i and i % W == 0:
            t += 2
        kt = i % kt_n
        if bm[kt, i // kt_n] and kt not in taken:
            if prev is not None:
                t = max(t, prev + m)
            taken[kt] = prev = t
        t += 1
    return {kt: v + SPARSE_ACT_CYCLES for kt, v in taken.items()}


def sparse_engine_cycles(acc, m: int, k: int, n: int, bitmap) -> int:
    """The engine's cycles on a block-sparse DDR GEMM in the GEMM executor: ``estimate_cycles``
    with the bitmap (``GemmConfig.tile_schedule``: the weight loader's and the streamer's
    handshake), each pass also waiting for its descriptor and its activations.

    The tile map walks the bitmap a bit a cycle from ``SPARSE_WALK_START`` (two more per memory
    word, one more per N tile: the closing cycle) and emits a tile's descriptor on the next set
    bit of its N tile or on the closing cycle (an all-zero N tile: an empty descriptor then),
    into a FIFO of ``SPARSE_DESC_DEPTH`` the engine pops on each pass's last row (a full FIFO
    halts the walk); a pass may start ``SPARSE_DESC_CYCLES`` after its descriptor's emission
    and, a tile pass, once its K tile's rows are readable (:func:`sparse_act_ready`)."""
    import numpy as np

    g = acc.gemm
    bm = np.asarray(bitmap, dtype=bool)
    kt_n, nt_n = bm.shape
    if bm.shape != (ceil_div(k, g.rows), ceil_div(n, g.cols)):
        raise ValueError(f"bitmap must be (KT, NT) = {(ceil_div(k, g.rows), ceil_div(n, g.cols))}, not {bm.shape}")
    W = acc.shell.data_width
    act = sparse_act_ready(acc, m, bm)
    R, S, gap = g.tile_load_cycles, g.weight_segment_rows, g.weight_load_gap
    end, load = 0, g.first_tile_lead_cycles - S
    popped: list[int] = []           # the cycle each descriptor leaves the FIFO (its pass's last row)

    def run(emit: int, kt) -> int:
        """Emit a descriptor at ``emit`` at the soonest (FIFO room), run its pass; the emission cycle."""
        nonlocal end, load
        if len(popped) >= SPARSE_DESC_DEPTH:
            emit = max(emit, popped[-SPARSE_DESC_DEPTH] + 1)
        start = max(end, emit + SPARSE_DESC_CYCLES)
        if kt is not None:
            start = max(start, load + S, act[kt])
            load = max(load + R, start + 1 + gap)
        end = start + m
        popped.append(end - 1)
        return emit

    t = SPARSE_WALK_START
    for nt in range(nt_n):
        pend = None
        for kt in range(kt_n):
            i = nt * kt_n + kt
            if i and i % W == 0:
                t += 2
            if bm[kt, nt]:
                if pend is not None:
                    t = run(t, pend)
                pend = kt
            t += 1
        t = run(t, pend) + 1         # the closing cycle
    return g.pipeline_fill_cycles - g.first_tile_lead_cycles + end


def estimate(program, acc, *, n_live: int | None = None, selects=None, beat_bytes: int = 16,
             model: bytes | None = None) -> list[Estimate]:
    """One :class:`Estimate` per executed descriptor of ``program`` (descriptors clipped to 0 rows
    are left out); ``n_live``: override BEGIN's live token count; ``selects``: ``(n_out, pruned)``
    of every SELECT in program order (default: each keeps every token); ``model``: the image's
    bytes (needed when the program has block-sparse GEMMs, :func:`gemm_tiles`)."""
    import numpy as np

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
            if tiles is None:
                act = ceil_div(k, g.rows) * m
                cyc = descriptor_cycles(acc, d, m, k, n, engine=engine)
            else:       # only the K tiles some N tile uses load; passes may wait for theirs
                act = int(np.asarray(tiles, dtype=bool).any(axis=1).sum()) * m
                cyc = descriptor_cycles(acc, d, m, k, n, engine=sparse_engine_cycles(acc, m, k, n, tiles))
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
                ddr += weight_stream_cycles(acc, ceil_div(parts["weights"][1], beat_bytes * acc.weight_beats_per_cycle))
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
            sel = select_cycles(acc, d.heads, m, n, pruned)
            unit = sel + SELECT_TOP_CYCLES
            ddr = ceil_div(isa.trace_record_bytes(d.m), beat_bytes)
            out.append(Estimate(i, d.name, op.name, m, k, n, engine, act, unit, ddr,
                                descriptor_cycles(acc, d, m, k, n, select=sel)))
            live = n_out
            continue
        else:  # LOAD, STORE
            ddr = m * ceil_div(n, beat_bytes)
        if op != Op.GEMM:
            cyc = descriptor_cycles(acc, d, m, k, n)
        out.append(Estimate(i, d.name, op.name, m, k, n, engine, act, unit, ddr, cyc))
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


def summary(estimates: list[Estimate], acc, program=None) -> dict:
    """Totals: GEMM-only (engine), serial and overlapped cycles, the records' sum (``records``)
    and, given the ``program``, the whole run (``cycles``: :func:`total_cycles`), and MAC
    utilization of each."""
    g = acc.gemm
    macs = sum(e.m * e.k * e.n for e in estimates if e.op == "GEMM")
    tot = {"engine": sum(e.engine for e in estimates), "serial": sum(e.serial for e in estimates),
           "overlapped": sum(e.overlapped for e in estimates), "records": sum(e.cycles for e in estimates),
           "macs": macs}
    keys = ["engine", "serial", "overlapped", "records"]
    if program is not None:
        tot["cycles"] = total_cycles(program, estimates)
        keys.append("cycles")
    for key in keys:
        tot[f"{key}_mac_utilization"] = macs / (tot[key] * g.rows * g.cols) if tot[key] else 0.0
    tot["ms_at_clock"] = {k: tot[k] / (acc.clock_mhz * 1e3) for k in keys}
    tot["selector_fraction"] = {k: selector_fraction(estimates, "cycles" if k == "records" else k)
                                for k in ("engine", "serial", "overlapped", "records")}
    return tot


PHASES = ("cycles", "engine", "act_load", "unit", "ddr", "serial", "overlapped")


def by_layer(estimates: list[Estimate]) -> list[dict]:
    """Estimates summed over the descriptors of one layer (row chunks), in program order:
    ``name, op, m`` (rows over all chunks), ``k, n, descriptors``, ``cycles`` (the records) and
    every phase."""
    out: dict[str, dict] = {}
    for e in estimates:
        r = out.get(e.name)
        if r is None:
            out[e.name] = r = {"name": e.name, "op": e.op, "m": 0, "k": e.k, "n": e.n, "descriptors": 0,
                               **{p: 0 for p in PHASES}}
        r["m"] += e.m
        r["descriptors"] += 1
        for p in PHASES:
            r[p] += getattr(e, p)
    return list(out.values())


# -- plans (the training script's latency-aware search) -----------------------------------------

_PLAN_PROGRAMS: dict = {}


def plan_program(acc, cfg, plan, *, seed: int = 0):
    """The descriptors of a ViT of shape ``cfg`` with ``plan``'s token selectors (dense when the
    plan is empty) compiled for ``acc``: a model of random weights (``models.random_model``,
    calibrated on two images, every GEMM dense), since a program's shape does not depend on its
    weights.  Cached per (config, shape, selector blocks): the keep ratios only change the live
    token counts, not the program."""
    from . import compile_program, models, quantize_for
    key = (acc.digest(), cfg.to_json(), tuple(plan.blocks), seed)
    if key not in _PLAN_PROGRAMS:
        fm = models.random_model(cfg, seed, plan=plan if plan.blocks else None)
        qm = quantize_for(fm, acc, calib_count=2, seed=seed)
        _PLAN_PROGRAMS[key] = compile_program(qm, acc, prune=bool(plan.blocks), sparse=False).descs
    return _PLAN_PROGRAMS[key]


def plan_selects(cfg, plan) -> list[tuple[int, int]]:
    """``(n_out, pruned)`` of every selector stage (the :func:`estimate` argument) when each keeps
    exactly its target (``PruningPlan.planned_tokens``: class token, kept patches, package token)."""
    tokens = plan.planned_tokens(cfg)
    out = []
    for b in plan.blocks:
        n_in = tokens[b - 1] if b else cfg.num_tokens
        out.append((tokens[b], n_in - (tokens[b] - 1)))
    return out


def plan_cycles(acc, cfg, plan, *, seed: int = 0) -> int:
    """Whole-accelerator cycles (:func:`total_cycles`: every descriptor, the controller's fetch
    gaps) of one forward pass of a ViT of shape ``cfg`` under ``plan`` (each selector keeping
    exactly its target), on ``acc``: the cost ``train/``'s latency-aware plan search compares."""
    prog = plan_program(acc, cfg, plan, seed=seed)
    return total_cycles(prog, estimate(prog, acc, selects=plan_selects(cfg, plan) if plan.blocks else None))
