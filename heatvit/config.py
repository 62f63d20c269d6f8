"""The one configuration object of the accelerator.

Every consumer (RTL generators, the golden model, testbenches, benchmarks, the host driver and
the compiler) reads the same frozen :class:`AcceleratorConfig`, so they cannot drift apart.
Each hardware unit owns one frozen section (``gemm`` here; ``nonlinear``, ``toksel`` and the AXI
``shell`` in their own modules); derived quantities are properties, and every constraint is checked in ``__post_init__`` with a :class:`ValueError`
naming the parameter and its allowed range.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from .validate import ceil_div, check_keys
from .validate import check_int as _check_int
from .validate import section_from_dict as _section_from_dict


@dataclass(frozen=True)
class GemmConfig:
    """The int8 systolic GEMM engine (weight-stationary, ``rows`` x ``cols`` PEs).

    A GEMM computes ``Y[M, N] = requant(A[M, K] @ W[K, N] + bias[N])``.  ``A`` (activations)
    stays resident in the on-chip activation buffer; ``W`` streams in tile by tile; ``Y`` streams
    out one row of ``cols`` lanes per beat.  See docs/architecture.md.
    """

    rows: int = 16
    """R: PE rows; each holds one reduction index k of the stationary weight tile."""
    cols: int = 16
    """C: PE columns; each holds one output channel n of the stationary weight tile."""
    act_bits: int = 8
    """Activation width (signed, symmetric, per-tensor scale)."""
    weight_bits: int = 8
    """Weight width (signed, symmetric, per-output-channel scale)."""
    acc_bits: int = 32
    """Accumulator width (signed)."""
    bias_bits: int = 32
    """Bias width (signed, scale = act scale * weight scale of its channel)."""
    mult_bits: int = 16
    """Requantization multiplier width (unsigned)."""
    shift_bits: int = 6
    """Requantization right-shift field width."""
    act_buffer_words: int = 4096
    """Activation buffer depth in words of ``rows`` activations; holds ceil(K/R) * M words."""
    max_m: int = 256
    """Largest M (tokens); the depth of the accumulator buffer."""
    max_k: int = 3072
    """Largest K (reduction length)."""
    max_n: int = 3072
    """Largest N (output channels); the depth of the per-channel parameter buffer is max_n/cols."""
    weight_fifo_depth: int = 64
    """Words of ``cols`` weights buffered between the weight stream and the array."""
    out_fifo_depth: int = 16
    """Output rows buffered before the array stalls on output backpressure."""
    dsp_packing: int = 1
    """int8 MACs per DSP48E2: 1, or 2 (Xilinx WP486: two columns share the activation and their
    two weights share the DSP's 27-bit multiplier input; exact for every input, see
    :attr:`packing_segment_rows`)."""

    def __post_init__(self):
        own = "GemmConfig"
        _check_int(own, "rows", self.rows, 1, 64)
        _check_int(own, "cols", self.cols, 1, 64)
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if v & (v - 1):
                raise ValueError(f"{own}.{name} = {v} is not a power of two; allowed 1, 2, 4, ..., 64 "
                                 f"(tile indices are bit fields of K and N)")
        _check_int(own, "act_bits", self.act_bits, 2, 8)
        _check_int(own, "weight_bits", self.weight_bits, 2, 8)
        _check_int(own, "acc_bits", self.acc_bits, 16, 32)
        _check_int(own, "bias_bits", self.bias_bits, 1, 32)
        _check_int(own, "mult_bits", self.mult_bits, 1, 24)
        _check_int(own, "shift_bits", self.shift_bits, 1, 7)
        _check_int(own, "max_m", self.max_m, 1, 1 << 16)
        _check_int(own, "max_k", self.max_k, 1, 1 << 16)
        _check_int(own, "max_n", self.max_n, 1, 1 << 16)
        _check_int(own, "act_buffer_words", self.act_buffer_words, 1, 1 << 20)
        _check_int(own, "weight_fifo_depth", self.weight_fifo_depth, 3, 1 << 16)
        _check_int(own, "out_fifo_depth", self.out_fifo_depth, 2, 1 << 12)
        if self.weight_fifo_depth < self.rows:
            raise ValueError(f"GemmConfig.weight_fifo_depth = {self.weight_fifo_depth} cannot hold one weight "
                             f"tile of rows = {self.rows} words (a tile's load starts once all its words "
                             f"wait in the FIFO); allowed >= {self.rows}")
        if self.dsp_packing not in (1, 2):
            raise ValueError(f"GemmConfig.dsp_packing must be 1 or 2, not {self.dsp_packing!r}")
        if self.dsp_packing == 2 and self.cols < 2:
            raise ValueError(f"GemmConfig.cols = {self.cols} must be even with dsp_packing = 2 "
                             f"(two columns share one DSP48E2)")
        if self.dsp_packing == 2 and self.packed_max_rows < 1:
            raise ValueError(
                f"GemmConfig: dsp_packing = 2 cannot hold one {self.act_bits} x {self.weight_bits}-bit "
                f"low product in the {self.packing_shift}-bit low field")
        # The accumulator must hold the largest possible dot product without overflow.
        worst = self.max_k * self.max_abs_product
        if worst > (1 << (self.acc_bits - 1)) - 1:
            limit = ((1 << (self.acc_bits - 1)) - 1) // self.max_abs_product
            raise ValueError(
                f"GemmConfig.max_k = {self.max_k} can overflow a {self.acc_bits}-bit accumulator "
                f"({self.max_k} * {self.max_abs_product} = {worst}); allowed [1, {limit}]")
        if self.act_buffer_words < self.max_k_tiles:
            raise ValueError(
                f"GemmConfig.act_buffer_words = {self.act_buffer_words} cannot hold one token "
                f"at max_k = {self.max_k}; allowed >= {self.max_k_tiles}")

    # -- derived quantities ------------------------------------------------------------------
    @property
    def max_abs_product(self) -> int:
        """Largest |a * w|: (-2^(a-1)) * (-2^(w-1))."""
        return 1 << (self.act_bits - 1 + self.weight_bits - 1)

    @property
    def min_product(self) -> int:
        """Most negative a * w: -(2^(a-1)) * (2^(w-1) - 1) or (2^(a-1) - 1) * -(2^(w-1))."""
        a, w = 1 << (self.act_bits - 1), 1 << (self.weight_bits - 1)
        return -max(a * (w - 1), (a - 1) * w)

    @property
    def packing_shift(self) -> int:
        """k of the packed weight pair ``w_hi * 2^k + w_lo``: the largest k for which every pair
        fits the DSP48E2's signed 27-bit multiplier input (18 for int8 weights)."""
        return 26 - self.weight_bits

    @property
    def packed_max_rows(self) -> int:
        """Most rows one packed DSP48E2 cascade can sum exactly: the sum of G low products,
        offset by ``-G * min_product``, lies in [0, G * (max - min)] and must stay below
        2^packing_shift so it never carries into the high field (8 for int8 x int8)."""
        return ((1 << self.packing_shift) - 1) // (self.max_abs_product - self.min_product)

    @property
    def packing_segment_rows(self) -> int:
        """G: rows per packed cascade segment, ``min(rows, largest power of two <=
        packed_max_rows)``.  A packed column of R > G rows is R / G segments: each boundary
        passes the high sum on to the next segment's C port with the low field restarted, and the
        low sums are added in fabric (one adder and a G-deep delay per boundary and column pair)."""
        return min(self.rows, 1 << (self.packed_max_rows.bit_length() - 1))

    @property
    def packing_offset(self) -> int:
        """L = G * min_product: each packed segment starts its low field from -L, so the field
        holds the segment's low sum minus L, which is never negative."""
        return self.packing_segment_rows * self.min_product

    @property
    def act_min(self) -> int:
        return -(1 << (self.act_bits - 1))

    @property
    def act_max(self) -> int:
        return (1 << (self.act_bits - 1)) - 1

    @property
    def weight_min(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def weight_max(self) -> int:
        return (1 << (self.weight_bits - 1)) - 1

    @property
    def column_psum_bits(self) -> int:
        """Width of the partial sums flowing down one PE column (R products)."""
        return (self.act_bits + self.weight_bits - 1) + max(1, (self.rows).bit_length()) + 1

    @property
    def biased_bits(self) -> int:
        """Width of accumulator + bias, computed without overflow."""
        return max(self.acc_bits, self.bias_bits) + 1

    @property
    def product_bits(self) -> int:
        """Width of (accumulator + bias) * multiplier."""
        return self.biased_bits + self.mult_bits + 1

    @property
    def max_shift(self) -> int:
        """Largest meaningful right shift; larger shifts are rejected."""
        return min((1 << self.shift_bits) - 1, self.product_bits - 1)

    @property
    def max_k_tiles(self) -> int:
        return ceil_div(self.max_k, self.rows)

    @property
    def max_n_tiles(self) -> int:
        return ceil_div(self.max_n, self.cols)

    @property
    def m_bits(self) -> int:
        return self.max_m.bit_length()

    @property
    def k_bits(self) -> int:
        return self.max_k.bit_length()

    @property
    def n_bits(self) -> int:
        return self.max_n.bit_length()

    @property
    def act_addr_bits(self) -> int:
        return max(1, (self.act_buffer_words - 1).bit_length())

    @property
    def array_latency(self) -> int:
        """Cycles from a row entering the skew network to its aligned result leaving the deskew
        (the DSP48E2's M register adds one to the skew, the column and the deskew)."""
        return self.rows + self.cols + 1

    @property
    def weight_segment_rows(self) -> int:
        """S: rows per weight-load segment, ``max(1, rows / 2)``.  The shadow weight registers of
        a DSP column form one ACIN -> ACOUT shift chain per segment, each loaded from its top
        (the first segment first) right behind the previous tile's commit wave, so the next tile
        loads while the current one streams (see :class:`~heatvit.rtl.gemm.weight_loader.WeightLoader`)."""
        return max(1, self.rows // 2)

    @property
    def weight_segments(self) -> int:
        """Weight-load segments per column, ``rows / weight_segment_rows`` (2, or 1 at one row)."""
        return self.rows // self.weight_segment_rows

    @property
    def weight_load_gap(self) -> int:
        """Enabled cycles the weight loader waits after a tile's commit before it shifts the next
        tile's first word: the commit must have passed the first segment's last row,
        ``max(0, S - 2)``."""
        return max(0, self.weight_segment_rows - 2)

    @property
    def tile_load_cycles(self) -> int:
        """Fewest cycles between two tile loads' starts with the weight stream at one word per
        cycle: ``rows`` shifts, plus one when ``weight_fifo_depth == rows`` (the FIFO is then
        full when a load starts, and takes no word in that cycle)."""
        return self.rows + (self.weight_fifo_depth == self.rows)

    @property
    def min_tile_cycles(self) -> int:
        """Lower bound on cycles per (n, k) weight tile with no weight-stream stall: the loader
        loads a tile per :attr:`tile_load_cycles`, and a tile's commit waits for its first
        segment (``S`` words) shifted after the previous commit's gap
        (``S + 1 + weight_load_gap``).  ``rows`` from 2 rows up (with a FIFO deeper than that)."""
        S = self.weight_segment_rows
        return max(self.tile_load_cycles, S + 1 + self.weight_load_gap)

    @property
    def pipeline_fill_cycles(self) -> int:
        """Cycles of a GEMM not spent streaming tiles: the first tile's wait for its ``rows``
        words in the weight FIFO and first segment shifted, the array's drain, and the
        command/buffer-read/accumulate/requantize/output registers.  Measured in RTL simulation
        (``testbench/test_gemm.py::test_cycle_model`` keeps it true)."""
        return self.first_tile_lead_cycles + self.array_latency + 12

    @property
    def first_tile_lead_cycles(self) -> int:
        """Cycles by which the first weight tile's commit trails the earliest possible row issue
        (the tile's ``rows`` words in the weight FIFO, then its first segment shifted).  Only a
        sparse GEMM whose first N tile has no weight tile (an empty pass) sees it.  Measured in
        RTL simulation (``testbench/test_tileskip.py`` keeps it true)."""
        return max(self.rows, 2) + self.weight_segment_rows - 1

    def estimate_cycles(self, m: int, k: int, n: int, tiles=None) -> int:
        """Exact engine cycles for an M x K x N GEMM with operands on chip, the weight stream
        valid from the command on and no output stall, from the accepted command to the last
        output beat taken (inclusive).

        Dense (``tiles`` None): the engine walks ``T = ceil(K/rows) * ceil(N/cols)`` weight
        tiles; each streams the M activation rows through the array while the next tile loads,
        so a tile costs ``max(M, min_tile_cycles)`` (``max(M, rows)`` from 2 rows up) and
        ``cycles = fill + (T - 1) * max(M, min_tile) + M``.

        Sparse (static block sparsity): ``tiles`` is the GEMM's tile bitmap, bool/0-1
        ``(KT, NT)`` (:func:`heatvit.golden.tile_bitmap`), or its count of non-zero tiles per
        N tile, ``(NT,)`` (:func:`heatvit.golden.tile_counts`); only the counts matter.  The
        engine makes one pass of M rows per non-zero tile and one per empty N tile.  An empty pass
        needs no weights and starts as soon as the previous pass ends; a tile pass also waits for
        its tile's first segment in the shadow registers (:meth:`tile_schedule`).
        """
        self.check_gemm_shape(m, k, n)
        kt, nt = ceil_div(k, self.rows), ceil_div(n, self.cols)
        if tiles is None:
            return self.pipeline_fill_cycles + (kt * nt - 1) * max(m, self.min_tile_cycles) + m
        counts = self._tile_counts(tiles, kt, nt)
        return self.pipeline_fill_cycles - self.first_tile_lead_cycles + self.tile_schedule(m, counts)

    def tile_schedule(self, m: int, counts) -> int:
        """End of the last pass of a sparse GEMM with ``counts[j]`` non-zero tiles in N tile j, in
        cycles after the earliest possible row issue: the weight loader's and the activation
        streamer's handshake, as the RTL runs it.  The loader starts shifting the first tile
        ``first_tile_lead_cycles - S`` cycles after the earliest issue, every later tile
        :attr:`tile_load_cycles` after the previous one at the soonest and ``1 + weight_load_gap`` cycles after the
        previous tile's commit; a tile pass (its commit rides on its first row) starts once the
        previous pass has ended and ``S`` cycles after its load started."""
        R, S, gap = self.tile_load_cycles, self.weight_segment_rows, self.weight_load_gap
        end, load = 0, self.first_tile_lead_cycles - S
        for c in counts:
            if c == 0:
                end += m
                continue
            for _ in range(int(c)):
                start = max(end, load + S)
                load = max(load + R, start + 1 + gap)
                end = start + m
        return end

    @staticmethod
    def _tile_counts(tiles, kt: int, nt: int) -> list[int]:
        """Per-N-tile non-zero tile counts from a ``(KT, NT)`` bitmap or an ``(NT,)`` count list."""
        import numpy as np

        arr = np.asarray(tiles)
        if arr.dtype == object or not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"tiles must be a bool/integer bitmap or count array, not {arr.dtype}")
        if arr.shape == (kt, nt):
            if arr.size and (arr.min() < 0 or arr.max() > 1):
                raise ValueError(f"tiles bitmap must hold 0/1, got values in [{arr.min()}, {arr.max()}]")
            return [int(c) for c in arr.astype(np.int64).sum(axis=0)]
        if arr.shape == (nt,):
            if arr.size and (arr.min() < 0 or arr.max() > kt):
                raise ValueError(f"tiles counts must be in [0, KT = {kt}], got [{arr.min()}, {arr.max()}]")
            return [int(c) for c in arr]
        raise ValueError(f"tiles must be a (KT, NT) = {(kt, nt)} bitmap or ({nt},) per-N-tile "
                         f"counts, got shape {arr.shape}")

    def check_gemm_shape(self, m: int, k: int, n: int) -> None:
        """Raise ``ValueError`` naming the dimension if an M x K x N GEMM does not fit."""
        _check_int("gemm", "M", m, 1, self.max_m)
        _check_int("gemm", "K", k, 1, self.max_k)
        _check_int("gemm", "N", n, 1, self.max_n)
        words = ceil_div(k, self.rows) * m
        if words > self.act_buffer_words:
            raise ValueError(
                f"gemm: activations need ceil(K/R) * M = ceil({k}/{self.rows}) * {m} = {words} "
                f"words; the activation buffer holds act_buffer_words = {self.act_buffer_words}")

    def ideal_cycles(self, m: int, k: int, n: int) -> float:
        return m * k * n / (self.rows * self.cols)


from .nonlinear_config import NonlinearConfig  # noqa: E402  (sections import .validate only)
from .shell_config import ShellConfig  # noqa: E402
from .toksel_config import TokSelConfig  # noqa: E402
from .accel_config import BufferConfig, check_against as _check_buffers, derived as _derived_buffers  # noqa: E402

MAX_ROW_LANES = 16
"""The widest softmax / LayerNorm row unit (``NonlinearConfig.row_lanes``' limit)."""


def check_row_lanes(owner: str, name: str, lanes, **divides: int) -> None:
    """The lane rule of the accelerator's row units (what :meth:`AcceleratorConfig._row_lanes`
    derives): ``lanes`` a power of two up to ``MAX_ROW_LANES`` dividing every ``divides`` value
    (keyword ``section__field`` names the config field, e.g. ``nonlinear__max_dim=768``).
    Raises ``ValueError`` naming ``owner.name`` and the fields."""
    ok = (isinstance(lanes, int) and not isinstance(lanes, bool) and 1 <= lanes <= MAX_ROW_LANES
          and not lanes & (lanes - 1) and all(v % lanes == 0 for v in divides.values()))
    if not ok:
        what = " and ".join(f"{k.replace('__', '.')} = {v}" for k, v in divides.items())
        raise ValueError(f"{owner}: {name} must be a power of two up to {MAX_ROW_LANES} dividing {what}, "
                         f"not {lanes!r}")

_SECTIONS = {"gemm": GemmConfig, "nonlinear": NonlinearConfig, "toksel": TokSelConfig,
             "buffers": BufferConfig, "shell": ShellConfig}


@dataclass(frozen=True)
class AcceleratorConfig:
    """The whole accelerator: one section per unit, plus the clock it is built for.

    ``toksel.lanes`` must equal ``gemm.rows`` (the token selector writes whole activation-buffer
    words); left out, the ``toksel`` section is derived that way.  To change the array's size
    use :meth:`with_array` (or :meth:`with_gemm`), which re-derives ``toksel.lanes``;
    ``dataclasses.replace(acc, gemm=...)`` keeps the old selector and is rejected.  ``shell`` is
    the AXI shell around the engine (DMA widths, window, watchdog, register base); a JSON file
    without it (written before it was a section) loads with its defaults.
    """

    gemm: GemmConfig = field(default_factory=GemmConfig)
    nonlinear: NonlinearConfig = field(default_factory=NonlinearConfig)
    toksel: TokSelConfig | None = None
    """Default: :class:`TokSelConfig` with ``lanes = gemm.rows``."""
    buffers: BufferConfig | None = None
    """Token buffers (:mod:`heatvit.accel_config`); default: derived from the other sections."""
    clock_mhz: float = 300.0
    shell: ShellConfig = field(default_factory=ShellConfig)
    selectors: bool = True
    """Build the token-pruning hardware: the SELECT executor (score combiner and token-selector
    control unit, :mod:`heatvit.rtl.toksel`), the MEAN executor and the ``REQ8_SIGMOID``
    epilogue (the sigmoid unit), which only selectors use.  ``False``: the dense-only
    accelerator (the resources bench's "without selectors" build): a SELECT or MEAN descriptor
    answers ``CTRL_UNSUPPORTED_OP``, as does a ``REQ8_SIGMOID`` GEMM, and the compiler refuses a
    pruned program (``FitError``)."""
    weight_beats_per_cycle: int = 1
    """DMA beats (``shell.data_bytes`` each) a cycle on the GEMM executor's weight stream from DDR
    (``WSrc.DDR``): 1 = the weights share the shell's one AXI master with everything else; ``P``
    = 2 or 4: ``P`` further AXI4 read masters (``m_axi_w``, one AXI HP port each) read the weights
    part, striped port-major (:func:`heatvit.isa.stripe_weights`), ``P`` beats a cycle together
    (:mod:`heatvit.rtl.accel.weight_ports`).  The array loads one weight word of ``C`` int8 a
    cycle, so ``P * data_bytes`` may not exceed ``gemm.cols`` (more would never be taken)."""

    def __post_init__(self):
        if self.toksel is None and isinstance(self.gemm, GemmConfig):
            object.__setattr__(self, "toksel", TokSelConfig(lanes=self.gemm.rows))
        if self.buffers is None and all(isinstance(getattr(self, n), c) for n, c in list(_SECTIONS.items())[:3]):
            object.__setattr__(self, "buffers", _derived_buffers(self.gemm, self.nonlinear, self.toksel))
        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise ValueError(f"AcceleratorConfig.{name} must be a {cls.__name__}, "
                                 f"got {type(value).__name__}")
        if not isinstance(self.selectors, bool):
            raise ValueError(f"AcceleratorConfig.selectors must be a bool, not {self.selectors!r}")
        if not (10.0 <= float(self.clock_mhz) <= 800.0):
            raise ValueError(f"AcceleratorConfig.clock_mhz = {self.clock_mhz} is out of range; allowed [10, 800]")
        if self.toksel.lanes != self.gemm.rows:
            raise ValueError(f"AcceleratorConfig: toksel.lanes = {self.toksel.lanes} must equal "
                             f"gemm.rows = {self.gemm.rows} (the selector writes activation-buffer words); "
                             f"resize the array with AcceleratorConfig.with_array")
        _check_buffers(self.buffers, self.gemm, self.nonlinear, self.toksel)
        p = self.weight_beats_per_cycle
        if type(p) is not int or p not in (1, 2, 4):
            raise ValueError(f"AcceleratorConfig.weight_beats_per_cycle must be 1, 2 or 4, not {p!r}")
        if p > 1 and p * self.shell.data_bytes > self.gemm.cols:
            raise ValueError(f"AcceleratorConfig.weight_beats_per_cycle = {p}: {p} beats of "
                             f"{self.shell.data_bytes} bytes exceed the array's weight word of gemm.cols = "
                             f"{self.gemm.cols} int8 a cycle; allowed 1 or up to "
                             f"{max(1, self.gemm.cols // self.shell.data_bytes)}")

    @property
    def weight_path_bytes(self) -> int:
        """Bytes a cycle the weight stream from DDR carries: ``weight_beats_per_cycle`` beats."""
        return self.weight_beats_per_cycle * self.shell.data_bytes

    # -- consistent changes ------------------------------------------------------------------
    def with_gemm(self, **changes) -> "AcceleratorConfig":
        """This config with ``gemm`` fields changed and the fields that depend on them derived
        again: ``toksel.lanes = gemm.rows``, ``gemm.weight_fifo_depth`` raised to ``2 * rows`` if
        it would not hold one weight tile (unless given), and ``buffers`` if it was the derived
        default (an explicit ``buffers`` is kept and checked against the new engine).  Every
        other section is kept."""
        if "weight_fifo_depth" not in changes and self.gemm.weight_fifo_depth < changes.get("rows", self.gemm.rows):
            # The FIFO must hold one weight tile (rows words): two tiles, as the presets have.
            changes = {**changes, "weight_fifo_depth": 2 * changes["rows"]}
        gemm = dataclasses.replace(self.gemm, **changes)
        toksel = dataclasses.replace(self.toksel, lanes=gemm.rows)
        was_derived = self.buffers == _derived_buffers(self.gemm, self.nonlinear, self.toksel)
        return dataclasses.replace(self, gemm=gemm, toksel=toksel,
                                   buffers=None if was_derived else self.buffers)

    def with_array(self, rows: int, cols: int) -> "AcceleratorConfig":
        """This config on a ``rows`` x ``cols`` PE array (see :meth:`with_gemm`)."""
        return self.with_gemm(rows=rows, cols=cols)

    # -- the accelerator's row units, scaled with the array ---------------------------------------
    # ``nonlinear.row_lanes`` sizes the stand-alone units (the nonlinear bank and its bench); inside
    # the accelerator the softmax and LayerNorm units keep pace with the array instead.
    def _row_lanes(self, want: int, length: int) -> int:
        """The largest lane count :func:`check_row_lanes` accepts up to ``want`` for rows of ``length``."""
        lanes = min(want, MAX_ROW_LANES)
        while length % lanes:
            lanes //= 2
        return lanes

    @property
    def layernorm_lanes(self) -> int:
        """Channels per cycle of the accelerator's LayerNorm unit: one token-buffer word
        (``max(R, C)`` int8, the rate the LAYERNORM executor reads and writes its rows), at most
        ``MAX_ROW_LANES``, halved until it divides ``nonlinear.max_dim``."""
        return self._row_lanes(max(self.gemm.rows, self.gemm.cols), self.nonlinear.max_dim)

    @property
    def softmax_units(self) -> int:
        """Softmax row units of a softmax GEMM's output: 1.  The unit overlaps consecutive rows
        (a row's exponentials and sum while the previous row's outputs leave), so it takes a beat
        every cycle, as fast as the score memory feeds it (two units taking alternate rows were
        needed while a unit made its two passes over a row one after the other)."""
        return 1

    @property
    def softmax_lanes(self) -> int:
        """Scores per beat of the softmax row unit: ``C`` (the largest power of two dividing C, at
        most ``MAX_ROW_LANES``), halved until it divides ``nonlinear.max_tokens``: one score-memory
        word a cycle.  Back-to-back rows of ``n`` scores take ``B = ceil(n / L)`` cycles each."""
        c = self.gemm.cols & -self.gemm.cols
        return self._row_lanes(c, self.nonlinear.max_tokens)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["weight_beats_per_cycle"] == 1:
            del d["weight_beats_per_cycle"]   # the default: configs (and digests) from before it stay the same
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AcceleratorConfig":
        """Inverse of :meth:`to_dict`; missing keys take their defaults, unknown keys are errors."""
        check_keys(cls, d)
        kw = dict(d)
        for name, section in _SECTIONS.items():
            if isinstance(kw.get(name), dict):
                kw[name] = _section_from_dict(section, kw[name])
        return cls(**kw)

    def digest(self) -> str:
        """Short stable hash, used to key build directories and as the hardware config ID."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


DEFAULT = AcceleratorConfig()
