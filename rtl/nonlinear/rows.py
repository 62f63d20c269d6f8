"""Row units: Softmax (attention rows) and LayerNorm, ``row_lanes`` elements per cycle, streaming.

Both need a whole-row statistic before a row's first output, so a row is buffered (a ring of
beats) while its statistic is computed.  Their stages (load, statistics, output) work on
different rows at once: each row's statistics travel with its beats through the pipelines, so
back-to-back rows of B beats take B cycles each, whatever the stages' latencies.  A row travels as beats of ``L = cfg.row_lanes`` elements, element
``j`` in lane ``j mod L`` of beat ``j // L``; only a row's last beat may be partial.  Bit-exact
with :mod:`heatvit.golden.nonlinear.softmax` and ``.layernorm``; formats and cycle counts in
docs/nonlinear.md.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.layernorm import moments_bits
from heatvit.golden.nonlinear.tables import table
from heatvit.nonlinear_config import NonlinearConfig

from ..lanes import last_word_lanes
from .pipe import Pipe, round_shift_pipe, table_rom
from .units import SHIFT_BITS, pow2_core, recip_core, rsqrt_core


OUT_ROUND_STAGES = 3
"""Softmax output: registers after the product (rounding add, shift, clamp)."""
LN_OUT_LATENCY = 1 + 1 + 1 + 2 + 1 + 3
"""LayerNorm output: read, centre, times r, rounding add and shift of t, affine, rounding add,
shift and saturation."""


def layernorm_stats_latency(cfg: NonlinearConfig) -> int:
    """LayerNorm statistics pipeline: ``N S2`` and ``S1**2``, the variance, then the rsqrt core
    (normalise 2, the table's Horner evaluator ``1 + 2 degree``, the mantissa 1)."""
    return 2 + 2 + 1 + 2 * table("rsqrt", cfg).degree + 1


SUM_STAGES = 2
"""Register stages of a beat's lane sum (LayerNorm's moments, Softmax's exponentials): a 4-way
add a stage (:func:`_sum_pipe`), so up to ``MAX_ROW_LANES`` = 16 lanes, the same latency at
every lane count."""

LN_MOMENT_STAGES = 2 + SUM_STAGES
"""LayerNorm loader, a beat's handshake to its moments' running sums: the masked lanes, their
squares, the lane sums."""


def layernorm_row_queue(cfg: NonlinearConfig) -> int:
    """Rows whose moments or statistics are in flight or queued for the output: enough for rows
    of one beat to follow each other every cycle."""
    return LN_MOMENT_STAGES + layernorm_stats_latency(cfg) + 4


def layernorm_ring_depth(cfg: NonlinearConfig) -> int:
    """Beats of the LayerNorm input ring: a whole row (the output needs its statistics first)
    plus the beats the loader takes while the moments and statistics are computed."""
    return cfg.max_dim // cfg.row_lanes + LN_MOMENT_STAGES + layernorm_stats_latency(cfg) + 4


def layernorm_row_latency(cfg: NonlinearConfig) -> int:
    """One LayerNorm row of B beats alone takes ``2B +`` this many cycles, its first input
    beat's handshake to its last output beat's (measured, ``row_cycles`` of
    testbench/nonlinear/tb_nonlinear.py): the last beat's moments (:data:`LN_MOMENT_STAGES`
    and the running sums' register), the statistics, the row queue, the output pipeline."""
    return LN_MOMENT_STAGES + 1 + layernorm_stats_latency(cfg) + 1 + LN_OUT_LATENCY


def row_beat(cfg: NonlinearConfig, shape) -> data.StructLayout:
    """``L`` lanes, the number of valid lanes ``count`` (1..L; 0 or > L mean L) and ``last``.

    Inputs: ``count`` is read only on a row's last beat (earlier beats are full).  Outputs: every
    beat carries its count; lanes at or above it are 0.
    """
    return data.StructLayout({"data": data.ArrayLayout(shape, cfg.row_lanes), "count": unsigned(cfg.lane_bits),
                              "last": 1})


def _tree(op, values):
    while len(values) > 1:
        values = [op(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def _max_flat(values):
    """The largest of ``values`` (same signedness): every pair compared at once, then a one-hot
    select (value ``i`` wins if it is above every earlier one and not below any later one), so
    the depth is one comparator and an AND-OR, whatever the count."""
    wins = []
    for i, x in enumerate(values):
        beats_all = Const(1, 1)
        for j, y in enumerate(values):
            if j != i:
                beats_all = beats_all & ((x > y) if j < i else (x >= y))
        wins.append(beats_all)
    out = 0
    for w, x in zip(wins, values):
        out = out | Mux(w, x, 0).as_unsigned()
    return out


MAX_GROUP = 4
"""Softmax loader: lanes whose maximum is taken (and registered) before the row's running one."""


def _sum_pipe(pipe: Pipe, values, name: str):
    """The sum of ``values`` (at most ``4 ** SUM_STAGES``) over :data:`SUM_STAGES` registered
    stages of ``pipe``, a 4-way add a stage (no long adder tree between two registers)."""
    assert len(values) <= 4 ** SUM_STAGES, len(values)
    for s in range(SUM_STAGES):
        values = [pipe.reg(_tree(lambda x, y: x + y, values[i:i + 4]), name=f"{name}_{s}_")
                  for i in range(0, len(values), 4)]
    return values[0]


class RowOutput:
    """The output side both row units share: beats issued back to back, rows one after another.

    The unit drives ``issue`` (a beat is read from its buffer this cycle), ``last`` (it is its
    row's last beat) and ``count`` (its valid lanes) combinationally; they travel ``latency``
    stages gated by ``en = ~o.valid | o.ready`` (backpressure freezes every stage, the unit's
    datapath included) beside the unit's datapath and drive ``o.valid``, ``o.payload.last`` and
    ``o.payload.count``.  ``fire`` = ``issue & en``: the beat is taken.  ``pending``: a beat is
    somewhere in the output pipeline (for ``busy``).
    """

    def __init__(self, m, o, *, lanes: int, latency: int):
        self.o = o
        self.en, self.issue, self.last, self.fire, self.pending = Signal(), Signal(), Signal(), Signal(), Signal()
        self.count = Signal(range(lanes + 1))
        m.d.comb += [self.en.eq(~o.valid | o.ready), self.fire.eq(self.issue & self.en)]
        ctl = Pipe(m, self.en, "octl")
        valids = [self.issue]
        for _ in range(latency):
            valids.append(ctl.reg(valids[-1], 1, "v"))
        last = ctl.delay(self.last, latency, "last")
        count = ctl.delay(self.count, latency, "count")
        m.d.comb += [o.valid.eq(valids[-1]), o.payload.last.eq(last), o.payload.count.eq(count),
                     self.pending.eq(Cat(*valids[1:]).any())]


class Ring:
    """A ring of ``depth`` beats in a memory: ``wa`` (next write), ``ra`` (next read) and ``used``
    (written, not yet read).  Call :meth:`update` once with the write and read strobes."""

    def __init__(self, depth: int, name: str):
        self.depth = depth
        self.wa = Signal(range(depth), name=f"{name}_wa")
        self.ra = Signal(range(depth), name=f"{name}_ra")
        self.used = Signal(range(depth + 1), name=f"{name}_used")
        self.room = Signal(name=f"{name}_room")

    def _next(self, a):
        return Mux(a == self.depth - 1, 0, a + 1)

    def update(self, m, write, read):
        m.d.comb += self.room.eq(self.used != self.depth)
        with m.If(write):
            m.d.sync += self.wa.eq(self._next(self.wa))
        with m.If(read):
            m.d.sync += self.ra.eq(self._next(self.ra))
        m.d.sync += self.used.eq(self.used + write - read)


def softmax_params_layout():
    return data.StructLayout({"mult": unsigned(F.SOFTMAX_MULT_BITS), "shift": unsigned(SHIFT_BITS),
                              "out_max": unsigned(8)})


def softmax_exp_latency(cfg: NonlinearConfig) -> int:
    """Softmax exponential pipeline, read to write-back: the buffer read, ``mx - x``, the product,
    the rounding add, shift and clamp of ``z``, then ``2**-z`` (the table's ``1 + 2 degree`` and
    the rounding add and shift)."""
    return 1 + 1 + 1 + 3 + 1 + 2 * table("pow2", cfg).degree + 2


def softmax_recip_latency(cfg: NonlinearConfig) -> int:
    """Softmax row sum to ``f = r out_max``: the sum's register, the reciprocal core (normalise 2,
    the table's ``1 + 2 degree``, the mantissa 1), then the product."""
    return 1 + 2 + 1 + 2 * table("reciprocal", cfg).degree + 1 + 1


SOFTMAX_SUM_STAGES = 1 + SUM_STAGES
"""Softmax: a beat's exponentials (masked past the row's end) to the row's running sum: their
register, then the lane sum (:data:`SUM_STAGES`)."""


def softmax_row_queue(cfg: NonlinearConfig) -> int:
    """Rows between the exponential pass and the output (in the exponential, sum and reciprocal
    pipelines or queued): enough for rows of one beat to follow each other every cycle."""
    return softmax_exp_latency(cfg) + SOFTMAX_SUM_STAGES + softmax_recip_latency(cfg) + 4


def softmax_row_latency(cfg: NonlinearConfig) -> int:
    """One Softmax row of B beats alone takes ``3B +`` this many cycles, its first input beat's
    handshake to its last output beat's: the row queue to the exponentials, their pipeline, their
    sum (:data:`SOFTMAX_SUM_STAGES`), the reciprocal, the row queue to the output, the output pipeline (measured, ``row_cycles`` of
    testbench/nonlinear/tb_nonlinear.py)."""
    return 1 + softmax_exp_latency(cfg) + SOFTMAX_SUM_STAGES + softmax_recip_latency(cfg) + 1 + 2 + OUT_ROUND_STAGES - 1


class SoftmaxUnit(wiring.Component):
    """Softmax over rows of up to ``cfg.max_tokens`` signed ``cfg.softmax_in_bits`` scores.

    * ``params`` (hold stable): ``mult``/``shift``/``out_max`` from
      :func:`heatvit.golden.nonlinear.softmax_params`.
    * ``i``: :func:`row_beat` of scores; ``last`` ends a row.  A row reaching ``max_tokens``
      elements ends there (the next beat starts a new row) and sets ``overflow`` (sticky until reset).
    * ``o``: :func:`row_beat` of uint8 probabilities in ``[0, out_max]``, same beat structure.

    Three stages overlap, each on a different row: the loader (one beat a cycle into a ring of
    scores; the row's maximum on the fly), the exponentials (one beat a cycle into a ring of
    exponentials; the row's sum, then its reciprocal) and the output (normalise, round, clamp:
    one beat a cycle, stalls on ``o.ready``).  A row's maximum and reciprocal travel with its
    beats, so back-to-back rows take B cycles each (B = beats a row), one row alone
    ``3B +`` :func:`softmax_row_latency` (first input beat to last output beat; docs/nonlinear.md).
    Queues between the stages (:func:`softmax_row_queue` rows) keep rows of one beat at a beat a
    cycle.
    """

    def __init__(self, cfg: NonlinearConfig):
        self.cfg = cfg
        self.pow2_table = table("pow2", cfg)
        self.recip_table = table("reciprocal", cfg)
        super().__init__({
            "params": In(softmax_params_layout()),
            "i": In(stream.Signature(row_beat(cfg, signed(cfg.softmax_in_bits)))),
            "o": Out(stream.Signature(row_beat(cfg, unsigned(8)))),
            "overflow": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        L = cfg.row_lanes
        ib, tb = cfg.softmax_in_bits, cfg.token_bits
        ebits = F.SOFTMAX_EXP_FRAC + 1
        sum_bits = ebits + tb
        depth = cfg.max_tokens // L
        queue = softmax_row_queue(cfg)
        p = self.params
        one = Const(1)
        row = data.StructLayout({"beats": unsigned(depth.bit_length()), "tail": unsigned(L.bit_length())})

        xring = Ring(depth + 4, "x")
        m.submodules.xbuf = xbuf = Memory(shape=data.ArrayLayout(signed(ib), L), depth=xring.depth, init=[])
        xw, xr = xbuf.write_port(), xbuf.read_port()
        ering = Ring(depth + queue + 4, "e")
        m.submodules.ebuf = ebuf = Memory(shape=data.ArrayLayout(unsigned(ebits), L), depth=ering.depth, init=[])
        ew, er = ebuf.write_port(), ebuf.read_port()

        # -- loader: beats into the score ring, the row's maximum on the fly -----------------------
        lo = -(1 << (ib - 1))
        cnt_in = self.i.payload.count
        nv = Signal(range(L + 1))
        m.d.comb += nv.eq(Mux(~self.i.payload.last | (cnt_in == 0) | (cnt_in > L), L, cnt_in))
        lanes_in = [Mux(j < nv, self.i.payload.data[j], lo) for j in range(L)]
        lcnt = Signal(range(depth + 1))
        lmx = Signal(signed(ib))
        # the row's running maximum in two registered steps (MAX_GROUP lanes at a time, then the
        # groups' and the running value): a beat's row record (maximum, length, last-beat lanes)
        # is complete the cycle after its last beat, and q1 then passes it straight through to
        # the exponentials when it is empty (``fresh``), so the row issues when it did before
        load, row_end = Signal(), Signal()
        rec1 = data.StructLayout({"mx": signed(ib), "row": row})
        m.submodules.q1 = q1 = SyncFIFO(width=rec1.size, depth=2)
        pl = Pipe(m, one, "ld")
        l1_v, l1_first, l1_end = pl.reg(load, 1, "v"), pl.reg(lcnt == 0, 1, "first"), pl.reg(load & row_end, 1, "end")
        l1_row = pl.reg(Cat((lcnt + 1)[:len(lcnt)], nv), row.size, "row")
        l1_max = [pl.reg(_max_flat(lanes_in[g:g + MAX_GROUP]), signed(ib), f"max{g // MAX_GROUP}")
                  for g in range(0, L, MAX_GROUP)]
        new_mx = Signal(signed(ib))
        m.d.comb += new_mx.eq(_max_flat(l1_max + [Mux(l1_first, lo, lmx)]))
        with m.If(l1_v):
            m.d.sync += lmx.eq(new_mx)
        fresh = Signal()                               # the row record being written, q1 empty
        m.d.comb += [self.i.ready.eq(xring.room & (q1.level + l1_end < q1.depth)), load.eq(self.i.valid & self.i.ready),
                     row_end.eq(self.i.payload.last | (lcnt == depth - 1)),
                     xw.addr.eq(xring.wa), xw.en.eq(load),
                     fresh.eq(l1_end & ~q1.r_rdy), q1.w_data.eq(Cat(new_mx, l1_row))]
        m.d.comb += [xw.data[j].eq(self.i.payload.data[j]) for j in range(L)]
        with m.If(load):
            with m.If(row_end):
                m.d.sync += lcnt.eq(0)
                with m.If(~self.i.payload.last):
                    m.d.sync += self.overflow.eq(1)
            with m.Else():
                m.d.sync += lcnt.eq(lcnt + 1)

        # -- exponentials (free running): a beat a cycle while the exponential ring has room -------
        h1 = data.View(rec1, Mux(fresh, q1.w_data, q1.r_data))
        reserved = Signal(range(ering.depth + 1))      # exponential slots issued, not yet output
        inflight = Signal(range(queue + 1))            # rows past the exponentials, not yet output
        ei = Signal(range(depth + 1))                  # beat of the row being issued
        ei1 = Signal(range(depth + 2), init=1)         # ei + 1, a register beside it
        issue, elast = Signal(), Signal()
        m.d.comb += [issue.eq((q1.r_rdy | l1_end) & (reserved != ering.depth) & (inflight != queue)),
                     # the last beat: both records' compares side by side, then the pick (no
                     # subtract behind the pick: its chain ran on into qrow's level, issue 13)
                     elast.eq(Mux(fresh, ei1 == data.View(rec1, q1.w_data).row.beats,
                                  ei1 == data.View(rec1, q1.r_data).row.beats)),
                     q1.r_en.eq(issue & elast & q1.r_rdy),
                     q1.w_en.eq(l1_end & ~(fresh & issue & elast)),
                     xr.addr.eq(xring.ra), xr.en.eq(1)]
        with m.If(issue):
            m.d.sync += [ei.eq(Mux(elast, 0, ei1)), ei1.eq(Mux(elast, 1, ei1 + 1))]
        xring.update(m, load, issue)
        # the row's length and last-beat lanes wait for the output beside its reciprocal
        m.submodules.qrow = qrow = SyncFIFO(width=row.size, depth=queue)
        m.d.comb += [qrow.w_en.eq(issue & elast), qrow.w_data.eq(h1.row.as_value())]
        ctl = Pipe(m, one, "ctl")
        v = ctl.reg(issue, 1, "v")                     # xr.data valid from here
        mx = ctl.reg(h1.mx, name="mx")
        first = ctl.reg(ei == 0, 1, "first")
        last = ctl.reg(elast, 1, "last")
        cnt = ctl.reg(Mux(elast, h1.row.tail, L), unsigned(L.bit_length()), "cnt")
        m.submodules.pow2_rom = pow2_rom = table_rom(self.pow2_table)
        zmax = (1 << F.POW2_IN_BITS) - 1
        es = []
        for j in range(L):
            pe = Pipe(m, one, f"exp{j}")
            d2 = pe.reg(mx - xr.data[j], signed(ib + 1), "d")
            p3 = pe.reg(d2.as_unsigned()[:ib] * p.mult, unsigned(ib + F.SOFTMAX_MULT_BITS), "p")
            z, zlat = round_shift_pipe(pe, p3, p.shift, hi=zmax, shape=unsigned(F.POW2_IN_BITS), name="z")
            e, lat = pow2_core(pe, z, F.SOFTMAX_EXP_FRAC, self.pow2_table, pow2_rom)
            es.append(e)
        lat += 2 + zlat
        assert 1 + lat == softmax_exp_latency(cfg)
        v, first, last, cnt = (ctl.delay(x, lat, nm) for x, nm in ((v, "v"), (first, "first"), (last, "last"),
                                                                   (cnt, "cnt")))
        # lanes past the row's end contribute 0 (and are written as 0)
        es = [Mux(cnt > j, e, 0) for j, e in enumerate(es)]
        ev = v                                         # an exponential beat is written
        m.d.comb += [ew.addr.eq(ering.wa), ew.en.eq(ev)]
        m.d.comb += [ew.data[j].eq(es[j]) for j in range(L)]
        # the beat's sum over SUM_STAGES registers, then the row's running sum
        beat_sum = _sum_pipe(ctl, [ctl.reg(e, unsigned(ebits), f"e{j}") for j, e in enumerate(es)], "es")
        v, first, last = (ctl.delay(x, 1 + SUM_STAGES, nm) for x, nm in ((v, "v"), (first, "first"), (last, "last")))
        total = Signal(unsigned(sum_bits))
        row_sum = Signal(unsigned(sum_bits))
        m.d.comb += row_sum.eq(Mux(first, 0, total) + beat_sum)
        with m.If(v):
            m.d.sync += total.eq(row_sum)

        # -- reciprocal of the row sum (free running), f = r out_max -------------------------------
        pr = Pipe(m, one, "rcp")
        sv = pr.reg(v & last, 1, "sv")
        ssum = pr.reg(row_sum, name="sum")
        m.submodules.recip_rom = recip_rom = table_rom(self.recip_table)
        r_out, e_out, rlat = recip_core(pr, ssum, sum_bits, self.recip_table, recip_rom)
        f = pr.reg(r_out * p.out_max, unsigned(F.RECIP_FRAC + 1 + 8), "f")
        big_e = pr.reg(e_out, unsigned(6), "bige")
        sv = pr.delay(sv, rlat + 1, "sv")
        assert rlat + 2 == softmax_recip_latency(cfg)
        rec2 = data.StructLayout({"f": f.shape(), "e": unsigned(6)})
        m.submodules.q2 = q2 = SyncFIFO(width=rec2.size, depth=queue)
        m.d.comb += [q2.w_en.eq(sv), q2.w_data.eq(Cat(f, big_e))]

        # -- output: the rows' beats back to back, each with its row's reciprocal ------------------
        h2, hr = data.View(rec2, q2.r_data), data.View(row, qrow.r_data)
        out = RowOutput(m, self.o, lanes=L, latency=2 + OUT_ROUND_STAGES)
        en_o = out.en
        bo = Signal(range(depth + 1))
        m.d.comb += [out.issue.eq(q2.r_rdy), out.last.eq(bo == hr.beats - 1), out.count.eq(Mux(out.last, hr.tail, L)),
                     q2.r_en.eq(out.fire & out.last), qrow.r_en.eq(out.fire & out.last),
                     er.addr.eq(ering.ra), er.en.eq(en_o)]
        with m.If(out.fire):
            m.d.sync += bo.eq(Mux(out.last, 0, bo + 1))
        ering.update(m, ev, out.fire)
        m.d.sync += [reserved.eq(reserved + issue - out.fire), inflight.eq(inflight + (issue & elast) - q2.r_en)]
        po = Pipe(m, en_o, "out")
        f_1 = po.reg(h2.f, name="f")
        e_2 = po.reg(po.reg(h2.e, name="e"), name="e")
        prods = [po.reg(er.data[j] * f_1, unsigned(ebits + f.shape().width), f"prod{j}") for j in range(L)]
        for j in range(L):
            # round by 16 + E (add, shift), clamp to out_max: OUT_ROUND_STAGES registers
            y, _ = round_shift_pipe(po, prods[j], e_2, offset=F.RECIP_FRAC, hi=p.out_max,
                                    shape=unsigned(8), name=f"y{j}")
            m.d.comb += self.o.payload.data[j].eq(y)
        m.d.comb += self.busy.eq((lcnt != 0) | q1.r_rdy | l1_end | (inflight != 0) | out.pending)
        return m


def layernorm_params_layout(cfg: NonlinearConfig):
    return data.StructLayout({"length": unsigned(cfg.dim_bits),
                              "eps": unsigned(moments_bits(cfg.layernorm_in_bits, cfg.dim_bits)),
                              "out_shift": unsigned(SHIFT_BITS)})


def layernorm_affine_layout(cfg: NonlinearConfig):
    return data.StructLayout({"index": unsigned(max(1, (cfg.max_dim - 1).bit_length())),
                              "gamma": signed(F.LN_GAMMA_BITS), "beta": signed(F.LN_BETA_BITS)})


class LayerNormUnit(wiring.Component):
    """LayerNorm over rows of ``params.length`` (1 .. ``cfg.max_dim``) signed ``layernorm_in_bits`` inputs.

    * ``params`` (hold stable while a row is in the unit, ``busy``, and from the cycle before a
      row's first beat on): ``length`` = N, ``eps`` = ``eps_q``, ``out_shift`` = ``12 + g_shift``
      of :class:`heatvit.golden.nonlinear.LayerNormParams`; a length of 0 counts as 1, one above
      ``max_dim`` as ``max_dim``.
    * ``affine`` (always ready): ``(index, gamma G_i, beta B_i)`` writes channel ``index``'s affine
      parameters (load all N before the first row).
    * ``i``: beats of ``row_lanes`` inputs, ``ceil(N / row_lanes)`` per row (lanes past N in the
      last beat are ignored); ``o``: :func:`row_beat` of int8 results.

    Three stages overlap, each on a different row: the loader (one beat a cycle into a ring of
    :func:`layernorm_ring_depth` beats; the row's moments on the fly), the statistics pipeline
    (variance, rsqrt: :func:`layernorm_stats_latency` cycles, a row a cycle, into a queue of
    :func:`layernorm_row_queue` rows) and the output (normalise, affine: one beat a cycle,
    :data:`LN_OUT_LATENCY` deep, stalls on ``o.ready``).  A row's statistics travel with its
    beats, so the next row's beats follow the last one's without a gap: back-to-back rows take B
    cycles each, one row alone ``2B +`` :func:`layernorm_row_latency` (first input beat to last
    output beat; docs/nonlinear.md).
    """

    def __init__(self, cfg: NonlinearConfig, out_bits: int = 8):
        self.cfg, self.out_bits = cfg, out_bits
        self.rsqrt_table = table("rsqrt", cfg)
        super().__init__({
            "params": In(layernorm_params_layout(cfg)),
            "affine": In(stream.Signature(layernorm_affine_layout(cfg))),
            "i": In(stream.Signature(data.ArrayLayout(signed(cfg.layernorm_in_bits), cfg.row_lanes))),
            "o": Out(stream.Signature(row_beat(cfg, signed(out_bits)))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        L, log_l = cfg.row_lanes, cfg.row_lanes.bit_length() - 1
        ib, db = cfg.layernorm_in_bits, cfg.dim_bits
        mb = moments_bits(ib, db)
        depth = cfg.max_dim // L
        p = self.params
        # a length outside 1 .. max_dim is clamped into it (never an address wrap or a hang); the
        # row length, its beats and last-beat lanes are registered (params are held stable), so
        # no datapath starts at the params port
        # from N - 1 (no chain behind the clamp): beats - 1 = (N - 1) >> log L, the last beat's
        # lanes (N - 1) mod L + 1, lane j of it valid iff (N - 1) mod L >= j
        n_in, nm1 = Signal(range(cfg.max_dim + 1)), Signal(range(cfg.max_dim))
        over = p.length > cfg.max_dim
        m.d.comb += [n_in.eq(Mux(p.length == 0, 1, Mux(over, cfg.max_dim, p.length))),
                     nm1.eq(Mux(p.length == 0, 0, Mux(over, cfg.max_dim - 1, p.length - 1)))]
        n = Signal(range(cfg.max_dim + 1), init=1)
        tail = Signal(range(L + 1), init=1)
        beats_m1 = Signal(range(depth + 1))
        tail_mask = Signal(L, init=1)              # lanes of the last beat: j < tail
        m.d.sync += [n.eq(n_in), tail.eq(nm1[:log_l] + 1), beats_m1.eq(nm1 >> log_l),
                     tail_mask.eq(last_word_lanes(nm1, L))]

        ring = Ring(layernorm_ring_depth(cfg), "x")
        m.submodules.xbuf = xbuf = Memory(shape=data.ArrayLayout(signed(ib), L), depth=ring.depth, init=[])
        xw, xr = xbuf.write_port(), xbuf.read_port()
        affine = data.StructLayout({"gamma": signed(F.LN_GAMMA_BITS), "beta": signed(F.LN_BETA_BITS)})
        m.d.comb += self.affine.ready.eq(1)
        ars = []
        for j in range(L):
            mem = m.submodules[f"abuf{j}"] = Memory(shape=affine, depth=depth, init=[])
            aw, ar = mem.write_port(), mem.read_port()
            index = self.affine.payload.index
            m.d.comb += [aw.addr.eq(index >> log_l), aw.data.gamma.eq(self.affine.payload.gamma),
                         aw.data.beta.eq(self.affine.payload.beta),
                         aw.en.eq(self.affine.valid & ((index & (L - 1)) == j))]
            ars.append(ar)

        # -- loader: beats into the ring, the row's moments S1, S2 on the fly ----------------------
        cnt = Signal(range(depth + 1))             # beat of the row being loaded
        ls1 = Signal(signed(ib + db + 1))
        ls2 = Signal(unsigned(2 * ib + db))
        last_beat = Signal()
        m.d.comb += last_beat.eq(cnt == beats_m1)
        # rows whose moments are in their pipeline, the statistics pipeline or its queue
        queue = layernorm_row_queue(cfg)
        queued = Signal(range(queue + 1))
        load = Signal()
        m.d.comb += [self.i.ready.eq(ring.room & (~last_beat | (queued != queue))),
                     load.eq(self.i.valid & self.i.ready),
                     xw.addr.eq(ring.wa), xw.data.eq(self.i.payload), xw.en.eq(load)]
        # the beat's moments (free running, LN_MOMENT_STAGES): the masked lanes, their squares,
        # the lane sums (SUM_STAGES), then the row's running sums S1, S2
        one = Const(1)
        mp = Pipe(m, one, "mom")
        xs = [mp.reg(Mux(~last_beat | tail_mask[j], self.i.payload[j], 0), signed(ib), f"x{j}") for j in range(L)]
        mv, mfirst, mlast = mp.reg(load, 1, "v"), mp.reg(cnt == 0, 1, "first"), mp.reg(last_beat, 1, "last")
        sqs = [mp.reg(x * x, unsigned(2 * ib), f"sq{j}") for j, x in enumerate(xs)]
        xs = [mp.reg(x, name=f"x{j}") for j, x in enumerate(xs)]
        beat_s1, beat_s2 = _sum_pipe(mp, xs, "s1"), _sum_pipe(mp, sqs, "s2")
        mv, mfirst, mlast = (mp.delay(x, 1 + SUM_STAGES, nm) for x, nm in ((mv, "v"), (mfirst, "first"), (mlast, "last")))
        new_s1, new_s2 = Mux(mfirst, 0, ls1) + beat_s1, Mux(mfirst, 0, ls2) + beat_s2
        sv = Signal()                              # a row's moments enter the statistics pipeline
        ss1, ss2 = Signal.like(ls1), Signal.like(ls2)
        m.d.sync += sv.eq(0)
        with m.If(mv):
            m.d.sync += [ls1.eq(new_s1), ls2.eq(new_s2)]
            with m.If(mlast):
                m.d.sync += [sv.eq(1), ss1.eq(new_s1), ss2.eq(new_s2)]
        with m.If(load):
            with m.If(last_beat):
                m.d.sync += cnt.eq(0)
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)

        # -- statistics (free running, a row a cycle): variance, rsqrt -----------------------------
        ps = Pipe(m, one, "st")
        v = ps.reg(sv, 1, "v")
        s1 = ps.reg(ss1, name="s1")
        # D = max(var, 1), var = ((N S2 - S1**2) << LN_EPS_FRAC) + eps_q (eps_q has LN_EPS_FRAC
        # fraction bits) = ((N S2 + eps_hi - S1**2) << LN_EPS_FRAC) | eps_lo: eps_hi is added
        # with the product N S2, so var is one subtract and var == 0 an equality beside it
        eps_lo, eps_hi = p.eps[:F.LN_EPS_FRAC], p.eps[F.LN_EPS_FRAC:]
        ns2 = ps.reg(n * ss2 + eps_hi, unsigned(max(2 * ib + 2 * db, len(eps_hi)) + 1), "ns2")
        s1sq = ps.reg(ss1 * ss1, unsigned(2 * (ib + db)), "s1sq")
        var_zero = (ns2 == s1sq) & (eps_lo == 0)
        dval = ps.reg(Mux(var_zero, 1, Cat(eps_lo, ns2 - s1sq)), unsigned(mb), "dval")
        v, s1 = ps.reg(v, name="v"), ps.reg(s1, name="s1")
        m.submodules.rsqrt_rom = rom = table_rom(self.rsqrt_table)
        r_out, k_out, rlat = rsqrt_core(Pipe(m, one, "rsq"), dval, mb, self.rsqrt_table, rom)
        v, s1 = ps.delay(v, rlat, "v"), ps.delay(s1, rlat, "s1")
        # D carries eps's fraction bits (2**LN_EPS_FRAC too large): k - LN_EPS_FRAC / 2
        sh1 = (k_out - F.LN_EPS_FRAC // 2 + (F.RSQRT_FRAC - F.LN_NORM_FRAC))[:SHIFT_BITS]
        assert 2 + rlat == layernorm_stats_latency(cfg)
        stats = data.StructLayout({"s1": s1.shape(), "r": unsigned(F.RSQRT_FRAC + 1), "sh1": unsigned(SHIFT_BITS)})
        m.submodules.rowq = rowq = SyncFIFO(width=stats.size, depth=queue)
        head = data.View(stats, rowq.r_data)
        m.d.comb += [rowq.w_en.eq(v), rowq.w_data.eq(Cat(s1, r_out, sh1))]

        # -- output: the queued rows' beats back to back, each with its row's statistics -----------
        out = RowOutput(m, self.o, lanes=L, latency=LN_OUT_LATENCY)
        en_o = out.en
        bi = Signal(range(depth))                  # beat of the row being issued
        m.d.comb += [out.issue.eq(rowq.r_rdy), out.last.eq(bi == beats_m1), out.count.eq(Mux(out.last, tail, L)),
                     rowq.r_en.eq(out.fire & out.last),
                     xr.addr.eq(ring.ra), xr.en.eq(en_o)]
        with m.If(out.fire):
            m.d.sync += bi.eq(Mux(out.last, 0, bi + 1))
        ring.update(m, load, out.fire)
        m.d.sync += queued.eq(queued + (load & last_beat) - rowq.r_en)
        m.d.comb += [ar.addr.eq(bi) for ar in ars] + [ar.en.eq(en_o) for ar in ars]
        pc = Pipe(m, en_o, "row")
        s1_1, r_1, sh_1 = pc.reg(head.s1, name="s1"), pc.reg(head.r, name="r"), pc.reg(head.sh1, name="sh")
        r_2, sh_2 = pc.reg(r_1, name="r"), pc.reg(sh_1, name="sh")
        sh_3 = pc.reg(sh_2, name="sh")
        olast = self.o.payload.last
        lo, hi = -(1 << (self.out_bits - 1)), (1 << (self.out_bits - 1)) - 1
        tb = F.LN_NORM_FRAC + (db + 1) // 2 + 3
        for j in range(L):
            po = Pipe(m, en_o, f"out{j}")
            # stage 2: centred value c = N x - S1 (exact); 3: c * r; 4: t = round(c r / 2**sh1)
            c = po.reg(n * xr.data[j] - s1_1, signed(ib + db + 2), "c")
            g, b = po.reg(ars[j].data.gamma, name="g"), po.reg(ars[j].data.beta, name="b")
            cr = po.reg(c * r_2, signed(ib + db + 2 + F.RSQRT_FRAC + 2), "cr")
            g, b = po.reg(g, name="g"), po.reg(b, name="b")
            t, tlat = round_shift_pipe(po, cr, sh_3, shape=signed(tb), name="t")
            g, b = po.delay(g, tlat, "g"), po.delay(b, tlat, "b")
            # then: affine; rounding add, shift, saturation (lanes past the row's end: 0)
            acc = po.reg(t * g + b, signed(F.LN_BETA_BITS + 1), "acc")
            y, _ = round_shift_pipe(po, acc, p.out_shift, lo=lo, hi=hi, shape=signed(self.out_bits), name="y")
            m.d.comb += self.o.payload.data[j].eq(Mux(~olast | (j < tail), y, 0))
        m.d.comb += self.busy.eq((cnt != 0) | (queued != 0) | out.pending)
        return m
