"""GEMM output: the epilogue of one GEMM descriptor, from the engine's raw accumulator rows to
token-buffer writes (issue 11; the GemmExecutor <-> GemmOutput contract of ACCEL_PLAN.md).

Per GEMM: ``cmd`` (the decoded descriptor, :func:`.descriptor.fields_layout`), then ``params``:
the parameter block's first :func:`param_beats` beats (``data_width`` bits each, little-endian:
byte ``i`` of a beat is bits ``8i .. 8i+7``), i.e. every part before ``weights``
(:func:`heatvit.isa.param_block`): the ``requant`` records (:func:`heatvit.isa.pack_requant`:
bias int32, mult uint24, shift uint8 per channel) go to the epilogue's per-channel memory, the
nonlinear record (``gelu`` / ``softmax`` / ``sigmoid``, :func:`heatvit.isa.pack_record`) to
the GELU / sigmoid / softmax units.  A value outside :func:`heatvit.isa.record_limits` (the
requant records of channels ``< live_n``, the record of the epilogue's kind,
:data:`heatvit.isa.RECORD_KIND`) -> ``error = CTRL_BAD_PARAMS``: the accumulator rows are then
taken and dropped (nothing is written) and ``done`` pulses with the code after the row tagged
``last``.  The same for a softmax row longer than the score memory
(:func:`.softmax_rows.score_geometry`: ``live_n > max_tiles * C``) -> ``N_TOO_LARGE``.
Otherwise the rows (``i``, N-tile major) go through :class:`.epilogue.EpilogueRouter` (and
:class:`.softmax_rows.SoftmaxRows` for RAW_SOFTMAX / REQ8_SOFTMAX) to ``dst``; ``done`` pulses
(``error`` = 0) the cycle after the last write.  ``live_m`` must be >= 1 (the sequencer
skips M = 0 descriptors).  ``abort``: back to idle at once, no ``done``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode
from heatvit.isa import Epilogue

from ..gemm import layouts
from ..nonlinear.pipe import outside
from .descriptor import fields_layout
from .epilogue import EpilogueRouter, acc_row
from .ports import buffer_write
from .softmax_rows import SoftmaxRows

SOFTMAX_EPILOGUES = (Epilogue.RAW_SOFTMAX, Epilogue.REQ8_SOFTMAX)
ACT_SIGNED = ("out_min", "out_max")
"""Signed words of the GELU / sigmoid records (as :mod:`heatvit.compiler.interpret` reads them)."""


def param_beats(acc: AcceleratorConfig, d: isa.Descriptor) -> int:
    """Beats of ``params`` GemmOutput takes for GEMM ``d``: the parameter block up to (not
    including) its ``weights`` part (a sparse GEMM: its ``bitmap`` part), ``ceil(bytes / data_bytes)``."""
    if d.opcode != isa.Op.GEMM:
        raise ValueError(f"param_beats: descriptor must be a GEMM, not {isa.Op(d.opcode).name}")
    parts = isa.param_block(acc, d)
    ends = [parts[p][0] for p in ("bitmap", "weights") if p in parts]
    end = ends[0] if ends else isa.param_block_bytes(acc, d)
    return -(-end // acc.shell.data_bytes)


class GemmOutput(wiring.Component):
    """Ports (``lanes = isa.column_align(acc)``, ``width = acc.shell.data_width``):

    * ``cmd``: In(stream(:func:`.descriptor.fields_layout`)): reads ``epilogue``, ``n`` (the
      parameter block's size), ``live_m``, ``live_n``, ``dst_row``, ``dst_col``.
    * ``params``: In(stream(``width``)): :func:`param_beats` beats.
    * ``i``: In(stream(:func:`.epilogue.acc_row`)): ``live_m * ceil(live_n / C)`` rows.
    * ``dst``: Out(:func:`.ports.buffer_write` (``lanes``)).
    * ``done`` (pulse), ``error`` (``ErrorCode``, valid with ``done``), ``abort`` (in, pulse).

    ``softmax_units``, ``softmax_lanes``: the softmax row units (taking rows in turn) and
    their scores per beat (:class:`.softmax_rows.SoftmaxRows`; default: ``acc.softmax_units``,
    ``acc.softmax_lanes``, derived from the array).
    """

    def __init__(self, acc: AcceleratorConfig, softmax_units: int | None = None, softmax_lanes: int | None = None):
        self.acc, self.g = acc, acc.gemm
        self.softmax_units, self.softmax_lanes = softmax_units, softmax_lanes
        self.lanes = isa.column_align(acc)
        dw = acc.shell.data_width
        self.records_per_group = max(1, dw // 64)
        self.beats_per_group = max(1, 64 // dw)
        if self.g.cols % self.records_per_group:
            raise ValueError(f"GemmOutput: gemm.cols = {self.g.cols} must be a multiple of the requant records "
                             f"per {dw}-bit beat ({self.records_per_group})")
        super().__init__({
            "cmd": In(stream.Signature(fields_layout())),
            "params": In(stream.Signature(dw)),
            "i": In(stream.Signature(acc_row(acc))),
            "dst": Out(buffer_write(self.lanes)),
            "done": Out(1), "error": Out(8), "abort": In(1),
        })

    def elaborate(self, platform):
        return ResetInserter(self.abort)(self._core())

    def _core(self):
        acc, g = self.acc, self.g
        C, lanes = g.cols, self.lanes
        dw = acc.shell.data_width
        db = dw // 8
        rpg, bpg = self.records_per_group, self.beats_per_group
        m = Module()
        m.submodules.router = router = EpilogueRouter(acc)
        m.submodules.softmax = sm = SoftmaxRows(acc, self.softmax_units, self.softmax_lanes)

        # -- the GEMM's fields, latched with cmd ------------------------------------------------------
        f = self.cmd.payload
        ep = Signal(4)
        live_m, live_n = Signal(16), Signal(16)
        dst_row, dst_word = Signal(16), Signal(16)
        beats = Signal(16)            # params beats of this GEMM
        req_beats = Signal(16)        # ... of them holding requant records
        nl_beat = Signal(16)          # first beat of the nonlinear record
        bidx = Signal(16)             # params beat counter
        ch = Signal(17)               # first channel of the current record group
        err = Signal(8)
        lo = Signal(dw)               # first half of a record (data_width 32)
        recs = [Signal(32, name=f"rec{i}") for i in range(len(isa.GELU_RECORD))]
        has_req = Signal()
        m.d.comb += has_req.eq(Cat(*(ep == e for e in isa.REQUANT_EPILOGUES)).any())

        def align64(x):
            return ((x + 63) >> 6) << 6

        req_bytes = Mux(Cat(*(f.epilogue == e for e in isa.REQUANT_EPILOGUES)).any(), f.n * isa.REQUANT_RECORD_BYTES, 0)
        nl_bytes = Mux(f.epilogue != Epilogue.REQ8, isa.NL_RECORD_BYTES, 0)
        lb = (db - 1).bit_length()

        # -- parameter parsing: requant record groups -> router.params; the nonlinear record -------
        bt = self.params.payload
        grp = Signal(64 * rpg)
        gvalid = Signal()
        if bpg == 1:
            m.d.comb += grp.eq(bt)
            in_req = bidx < req_beats
            m.d.comb += gvalid.eq(self.params.valid & in_req)
        else:
            m.d.comb += grp.eq(Cat(lo, bt))
            in_req = bidx < req_beats
            m.d.comb += gvalid.eq(self.params.valid & in_req & bidx[0])
        rb = layouts.channel_params(g)
        bias_lo, bias_hi = isa.record_limits(acc)["requant"]["bias"]
        mult_hi = isa.record_limits(acc)["requant"]["mult"][1]
        shift_hi = isa.record_limits(acc)["requant"]["shift"][1]
        bad_req = []
        pw = router.params.payload
        cb = (C - 1).bit_length()
        m.d.comb += [pw.addr.eq(ch >> cb), pw.mask.eq(((1 << rpg) - 1) << ch[:cb] if C > 1 else 1)]
        for j in range(rpg):
            r = grp[64 * j:64 * j + 64]
            bias, mult, shift = r[:32].as_signed(), r[32:56], r[56:64]
            bad_req.append(((ch + j) < live_n) & ((bias < bias_lo) | (bias > bias_hi) | (mult > mult_hi)
                                                   | (shift > shift_hi)))
            for lane in range(j, C, rpg):
                m.d.comb += [pw.data[lane].bias.eq(bias), pw.data[lane].mult.eq(mult[:rb["mult"].shape.width]),
                             pw.data[lane].shift.eq(shift[:rb["shift"].shape.width])]

        # -- nonlinear record checks (record_limits of the epilogue's kind): each word checked as
        # it arrives (word w of the record is bits 32j .. 32j + 31 of its beat) and the result
        # registered with it, so CHECK only ORs the words' bits -----------------------------------
        limits = isa.record_limits(acc)
        rec_bad = Signal(len(recs))

        def word_bad(w, v):
            """Word ``w`` of the nonlinear record, value ``v`` (32 bits), outside its limits."""
            bad = Signal(name=f"rec{w}_bad")
            with m.Switch(ep):
                for e, (part, kind) in isa.RECORD_KIND.items():
                    names = isa.SOFTMAX_RECORD if part == "softmax" else isa.GELU_RECORD
                    if w < len(names):
                        nm = names[w]
                        with m.Case(e):
                            m.d.comb += bad.eq(outside(v.as_signed() if (nm in ACT_SIGNED and part != "softmax")
                                                       else v, *limits[kind][nm]))
            return bad
        nl_words = {}                 # record word -> (its beat of the record, its 32 bits in it)
        for k in range(-(-isa.NL_RECORD_BYTES // db)):
            for j in range(dw // 32):
                w = k * (dw // 32) + j
                if w < len(recs):
                    nl_words[w] = (k, bt[32 * j:32 * j + 32])
        nl_bad = {w: word_bad(w, v) for w, (k, v) in nl_words.items()}
        bad_nl = rec_bad.any()

        # -- the datapath's per-GEMM inputs ---------------------------------------------------------
        m.d.comb += [router.mode.eq(ep), router.n.eq(live_n), router.dst_row.eq(dst_row),
                     router.dst_word.eq(dst_word), sm.m_rows.eq(live_m), sm.n.eq(live_n),
                     sm.dst_row.eq(dst_row), sm.dst_word.eq(dst_word)]
        act = router.act
        m.d.comb += [act.in_mult.eq(recs[0]), act.in_shift.eq(recs[1]), act.out_mult.eq(recs[2]),
                     act.out_shift.eq(recs[3]), act.out_min.eq(recs[4]), act.out_max.eq(recs[5])]
        m.d.comb += [sm.params.mult.eq(recs[0]), sm.params.shift.eq(recs[1]), sm.params.out_max.eq(recs[2])]
        wiring.connect(m, router.raw, sm.i)
        is_sm = Signal()
        m.d.comb += is_sm.eq((ep == Epilogue.RAW_SOFTMAX) | (ep == Epilogue.REQ8_SOFTMAX))
        last = Signal()
        valid = Mux(is_sm, sm.o.valid, router.wr.valid)
        for name in ("row", "word", "data", "mask"):
            m.d.comb += getattr(self.dst.payload, name).eq(
                Mux(is_sm, getattr(sm.o.payload, name), getattr(router.wr.payload, name)))
        m.d.comb += [last.eq(Mux(is_sm, sm.o.payload.last, router.wr.payload.last)),
                     sm.o.ready.eq(is_sm & self.dst.ready), router.wr.ready.eq(~is_sm & self.dst.ready)]

        # a softmax row longer than the score memory holds: isa.check refuses it (N_TOO_LARGE,
        # isa.softmax_row_limit); this guard keeps a descriptor that bypassed the check harmless
        too_long = Signal()
        m.d.comb += too_long.eq(((f.epilogue == Epilogue.RAW_SOFTMAX) | (f.epilogue == Epilogue.REQ8_SOFTMAX))
                                & (f.live_n > sm.max_tiles * C))
        m.d.sync += self.done.eq(0)
        with m.FSM(name="gemm_output"):
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    nl_off = align64(req_bytes)
                    m.d.sync += [ep.eq(f.epilogue), live_m.eq(f.live_m), live_n.eq(f.live_n),
                                 dst_row.eq(f.dst_row), dst_word.eq(f.dst_col >> (lanes - 1).bit_length()),
                                 beats.eq(align64(nl_off + nl_bytes) >> lb),
                                 req_beats.eq((req_bytes + db - 1) >> lb), nl_beat.eq(nl_off >> lb),
                                 bidx.eq(0), ch.eq(0),
                                 err.eq(Mux(f.epilogue > max(Epilogue), ErrorCode.CTRL_BAD_FIELD,
                                            Mux(too_long, ErrorCode.N_TOO_LARGE, 0)))]
                    m.d.comb += sm.start.eq(1)
                    m.next = "PARAMS"
            with m.State("PARAMS"):
                m.d.comb += self.params.ready.eq(1)
                m.d.comb += router.params.valid.eq(gvalid)
                with m.If(self.params.valid):
                    m.d.sync += [bidx.eq(bidx + 1), lo.eq(bt)]
                    with m.If(gvalid):
                        m.d.sync += ch.eq(ch + rpg)
                        with m.If(Cat(*bad_req).any()):
                            m.d.sync += err.eq(ErrorCode.CTRL_BAD_PARAMS)
                    for k in range(-(-isa.NL_RECORD_BYTES // db)):
                        with m.If(bidx == nl_beat + k):
                            for w, (kw, v) in nl_words.items():
                                if kw == k:
                                    m.d.sync += [recs[w].eq(v), rec_bad[w].eq(nl_bad[w])]
                    with m.If(bidx == beats - 1):
                        m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(bad_nl & (ep != Epilogue.REQ8) & (err == 0)):
                    m.d.sync += err.eq(ErrorCode.CTRL_BAD_PARAMS)
                with m.If((err != 0) | (bad_nl & (ep != Epilogue.REQ8))):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [router.i.valid.eq(self.i.valid), router.i.payload.eq(self.i.payload),
                             self.i.ready.eq(router.i.ready), self.dst.valid.eq(valid)]
                with m.If(valid & self.dst.ready & last):
                    m.d.sync += [self.done.eq(1), self.error.eq(0)]
                    m.next = "IDLE"
            with m.State("DRAIN"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid & self.i.payload.tag.last):
                    m.d.sync += [self.done.eq(1), self.error.eq(err)]
                    m.next = "IDLE"
        return m
