"""The R x C mesh of processing elements with its input skew and output deskew."""

from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from heatvit.config import GemmConfig

from . import layouts
from .delay import DelayLine
from .dsp48e2 import MULT_A_BITS
from .pe import ProcessingElement


class SystolicArray(wiring.Component):
    """Weight-stationary systolic array: one aligned row in, one aligned row out per cycle.

    ``R x C / dsp_packing`` :class:`ProcessingElement` (one DSP48E2 each), one column of them per
    ``dsp_packing`` output columns; the column sums run down the PCOUT -> PCIN cascade.  With
    ``dsp_packing = 2`` the pair's weights enter as ``w_hi * 2^k + w_lo`` and every cascade
    segment of ``packing_segment_rows`` rows starts from ``-packing_offset`` so both sums come
    out exact (see :class:`GemmConfig`); the only fabric arithmetic is that packing per column
    pair at the top and one adder per column pair and segment for the low sums.

    Timing is lockstep under ``en`` (a global clock enable driven by output backpressure), so
    the internal PE-to-PE wires are plain registers, not streams; the streams live at the
    engine's boundary.

    * ``act``: ``rows`` activations (int8, lane r = reduction offset r) of one token, presented
      aligned; ``commit`` marks the first row of a new weight tile.
    * ``psum``: ``cols`` partial sums (signed ``column_psum_bits``) of the row presented
      ``array_latency = rows + cols + 1`` enabled cycles earlier, aligned.
    * ``w_word``/``w_shift``/``w_seg``: one word of ``cols`` weights shifted into the shadow
      registers of weight-load segment ``w_seg`` per enabled cycle with ``w_shift``, reduction
      offset 0 first (``S = cfg.weight_segment_rows`` words per segment, segment 0 first).  Each
      segment is an ACIN -> ACOUT chain of S rows fed at its first row; PE row ``j*S + p``
      holds reduction offset ``j*S + S-1-p`` and multiplies that activation lane.  The shift
      reaches the DSP column of logical column c one register plus ``c`` enabled cycles later,
      behind the commit wave on its way to the right: a segment may be shifted from the cycle the
      previous ``commit`` passes its last row (enabled cycle ``commit + (j+1)*S - 2`` for the
      first column) and must be complete before the next ``commit`` reaches its first row
      (:class:`.weight_loader.WeightLoader` keeps both).
    """

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        super().__init__({
            "en": In(1),
            "act": In(layouts.act_word(cfg)),
            "commit": In(1),
            "w_word": In(layouts.weight_word(cfg)),
            "w_shift": In(1),
            "w_seg": In(range(cfg.weight_segments)),
            "psum": Out(layouts.psum_word(cfg)),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        R, C, lanes = cfg.rows, cfg.cols, cfg.dsp_packing
        D = C // lanes                       # DSP columns
        m = Module()
        # Packed columns restart their sum every G rows (a cascade segment, see GemmConfig);
        # the shadow chains restart every S rows (a weight-load segment).
        G = cfg.packing_segment_rows if lanes == 2 else R
        S = cfg.weight_segment_rows
        pes = [[ProcessingElement(cfg, top=(r == 0), restart=(lanes == 2 and r % G == 0),
                                  head=(r % S == 0))
                for _ in range(D)] for r in range(R)]
        for r in range(R):
            for d in range(D):
                m.submodules[f"pe_{r}_{d}"] = pes[r][d]
                m.d.comb += pes[r][d].en.eq(self.en)

        # Row j*S + p multiplies activation lane j*S + S-1-p (its segment's words arrive in
        # reduction order and the first one shifted ends deepest).
        for r in range(R):
            lane = (r // S) * S + S - 1 - r % S
            # Row r enters r cycles late (input skew), activation and commit together; the
            # activations need no reset (shift-register LUTs), the commits do.
            skew = DelayLine(signed(cfg.act_bits), r, reset_less=True)
            commit_skew = DelayLine(unsigned(1), r)
            m.submodules[f"skew_{r}"] = skew
            m.submodules[f"commit_skew_{r}"] = commit_skew
            m.d.comb += [skew.en.eq(self.en), skew.i.eq(self.act[lane]),
                         commit_skew.en.eq(self.en), commit_skew.i.eq(self.commit),
                         pes[r][0].a_in.eq(skew.o), pes[r][0].commit_in.eq(commit_skew.o)]
            for d in range(1, D):
                m.d.comb += [pes[r][d].a_in.eq(pes[r][d - 1].a_out),
                             pes[r][d].commit_in.eq(pes[r][d - 1].commit_out)]

        self._weight_chains(m, pes)
        k = cfg.packing_shift
        for d in range(D):
            for r in range(1, R):
                m.d.comb += pes[r][d].psum_in.eq(pes[r - 1][d].psum_out)
            total = pes[R - 1][d].psum_out
            if lanes == 1:
                sums = [total[:cfg.column_psum_bits].as_signed()]
            else:
                sums = [self._packed_low_sum(m, pes, d, G),
                        total[k:k + cfg.column_psum_bits].as_signed()]
            # DSP column d sees its activation when logical column lanes*d would: delay its
            # lanes' sums to align the row with the last logical column.
            for lane, value in enumerate(sums):
                c = lanes * d + lane
                deskew = DelayLine(signed(cfg.column_psum_bits), C - 1 - lanes * d, reset_less=True)
                m.submodules[f"deskew_{c}"] = deskew
                m.d.comb += [deskew.en.eq(self.en), deskew.i.eq(value), self.psum[c].eq(deskew.o)]
        return m

    def _weight_chains(self, m, pes):
        """The shadow weight path: one register stage (the weight word, packed per DSP column,
        and one shift enable per segment), then DSP column d's copy ``lanes * d`` enabled cycles
        later, in step with the commit wave; the segments' first rows take the word on their A
        port, the others shift it down ACIN -> ACOUT."""
        cfg = self.cfg
        R, C, lanes = cfg.rows, cfg.cols, cfg.dsp_packing
        D, S, segments = C // lanes, cfg.weight_segment_rows, cfg.weight_segments
        k = cfg.packing_shift
        word_bits = cfg.weight_bits if lanes == 1 else MULT_A_BITS
        words = [Signal(signed(word_bits), name=f"w_word_{d}", reset_less=True) for d in range(D)]
        shifts = Signal(segments, name="w_shifts")
        with m.If(self.en):
            for d in range(D):
                if lanes == 1:
                    m.d.sync += words[d].eq(self.w_word[d])
                else:   # packed once, at load time: w_hi * 2^k + w_lo (fits the signed 27-bit A)
                    m.d.sync += words[d].eq((self.w_word[2 * d + 1] << k) + self.w_word[2 * d])
            for j in range(segments):
                m.d.sync += shifts[j].eq(self.w_shift & (self.w_seg == j))
        for d in range(D):
            if d:
                word = DelayLine(signed(word_bits), lanes * d, reset_less=True)
                m.submodules[f"w_skew_{d}"] = word
                shift = DelayLine(unsigned(segments), lanes)
                m.submodules[f"w_shift_skew_{d}"] = shift
                m.d.comb += [word.en.eq(self.en), word.i.eq(words[d]),
                             shift.en.eq(self.en), shift.i.eq(shifts)]
                words[d], shifts = word.o, shift.o
            for r in range(R):
                pe = pes[r][d]
                m.d.comb += [pe.shift.eq(self.en & shifts[r // S]),
                             pe.w_in.eq(words[d] if r % S == 0 else pes[r - 1][d].w_out)]

    def _packed_low_sum(self, m, pes, d, G):
        """Packed column ``d``: restart every segment from ``-L`` (its low field then holds the
        segment's low sum minus L, in [0, 2^k), and the high field the high sum so far), and
        return the column's low sum, the segments' low fields added in fabric.

        Segment s ends G cycles after segment s - 1, so the running low sum is delayed G enabled
        cycles per segment; the constant ``segments * L`` enters with the first field, so the
        last segment needs one adder before the deskew register."""
        cfg = self.cfg
        R, k, L = cfg.rows, cfg.packing_shift, cfg.packing_offset
        segments = R // G
        low_field = Const(-L, k)
        width = max(cfg.column_psum_bits, k + segments.bit_length()) + 2
        running = None
        for s in range(segments):
            top, bottom = pes[s * G][d], pes[s * G + G - 1][d]
            if s == 0:
                m.d.comb += top.c_in.eq(low_field)   # zero-extended: C = -L
            else:   # the high sum so far, with the low field restarted at -L
                m.d.comb += top.c_in.eq(Cat(low_field, pes[s * G - 1][d].psum_out[k:]))
            field = bottom.psum_out[:k]
            if running is None:
                value = field + segments * L
            else:
                delay = DelayLine(signed(width), G, reset_less=True)
                m.submodules[f"low_{d}_{s}"] = delay
                m.d.comb += [delay.en.eq(self.en), delay.i.eq(running)]
                value = field + delay.o
            running = Signal(signed(width), name=f"low_{d}_{s}")
            m.d.comb += running.eq(value)
        return running[:cfg.column_psum_bits].as_signed()
