"""Row units: Softmax (attention rows) and LayerNorm, ``row_lanes`` elements per cycle, streaming.

Both buffer one row (they need a whole-row statistic before the first output), then stream the
result out under backpressure; a loader fills the next row into the beats the output phase has
already read, so loading overlaps the previous row's output.  A row travels as beats of ``L = cfg.row_lanes`` elements, element
``j`` in lane ``j mod L`` of beat ``j // L``; only a row's last beat may be partial.  Bit-exact
with :mod:`heatvit.golden.nonlinear.softmax` and ``.layernorm``; formats and cycle counts in
docs/nonlinear.md.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.layernorm import moments_bits
from heatvit.golden.nonlinear.tables import table
from heatvit.nonlinear_config import NonlinearConfig

from .pipe import Pipe, round_shift_pipe, table_rom
from .units import SHIFT_BITS, pow2_core, recip_core, rsqrt_core


OUT_ROUND_STAGES = 3
"""Softmax output: registers after the product (rounding add, shift, clamp)."""
LN_OUT_LATENCY = 1 + 1 + 1 + 2 + 1 + 3
"""LayerNorm output: read, centre, times r, rounding add and shift of t, affine, rounding add,
shift and saturation."""


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


def _phase_flags(m, fsm, in_idle, in_out, in_exp=None):
    """State decodes as unconditional assignments.

    Icarus evaluates an ``always @*`` block only when one of its inputs changes; a flag assigned
    inside an FSM state whose register never leaves its initial value would stay X.
    """
    m.d.comb += [in_idle.eq(fsm.ongoing("IDLE")), in_out.eq(fsm.ongoing("OUT"))]
    if in_exp is not None:
        m.d.comb += in_exp.eq(fsm.ongoing("EXP"))


class RowOutput:
    """The output side both row units share: streams a buffered row out beat by beat.

    While ``active`` (the unit's output phase), beat ``idx`` of the row buffer is read whenever
    the pipeline advances (``en = ~o.valid | o.ready``: backpressure freezes every stage, the
    unit's datapath included); its valid and ``last`` flag travel ``latency`` enable-gated stages
    beside the unit's datapath and drive ``o.valid``, ``o.payload.last`` and
    ``o.payload.count`` (``tail`` on the last beat, ``lanes`` before).  Call :meth:`start` when
    the row is ready to go out (``idx`` back to 0) and :meth:`run` inside the output state.
    """

    def __init__(self, m, o, *, beats, tail, depth: int, lanes: int, latency: int):
        self.o = o
        self.en = Signal()
        self.active = Signal()
        self.idx = Signal(range(depth + 1))        # next beat to read
        self.issue = Signal()
        m.d.comb += [self.en.eq(~o.valid | o.ready), self.issue.eq(self.active & (self.idx < beats))]
        ctl = Pipe(m, self.en, "octl")
        valid = ctl.delay(self.issue, latency, "v")
        self.last = ctl.delay(self.idx == beats - 1, latency, "last")
        m.d.comb += [o.valid.eq(valid), o.payload.last.eq(self.last),
                     o.payload.count.eq(Mux(self.last, tail, lanes))]

    def start(self):
        """Statements that rewind the output to the row's first beat."""
        return [self.idx.eq(0)]

    def run(self, m, then: str):
        """Inside the output state: advance ``idx``; go to state ``then`` after the last beat."""
        with m.If(self.issue & self.en):
            m.d.sync += self.idx.eq(self.idx + 1)
        with m.If(self.o.valid & self.o.ready & self.o.payload.last):
            m.next = then


def softmax_params_layout():
    return data.StructLayout({"mult": unsigned(F.SOFTMAX_MULT_BITS), "shift": unsigned(SHIFT_BITS),
                              "out_max": unsigned(8)})


class SoftmaxUnit(wiring.Component):
    """Softmax over rows of up to ``cfg.max_tokens`` signed ``cfg.softmax_in_bits`` scores.

    * ``params`` (hold stable): ``mult``/``shift``/``out_max`` from
      :func:`heatvit.golden.nonlinear.softmax_params`.
    * ``i``: :func:`row_beat` of scores; ``last`` ends a row.  A row reaching ``max_tokens``
      elements ends there (the next beat starts a new row) and sets ``overflow`` (sticky until reset).
    * ``o``: :func:`row_beat` of uint8 probabilities in ``[0, out_max]``, same beat structure.

    Phases per row of B beats: load and max (B cycles), exponentials and sum (B + 20), one
    reciprocal (~12), normalise and stream out (B + 5, stalls on ``o.ready``).  The next row loads
    while the current one streams out (into beats already read), so back-to-back rows take
    2B + 30 cycles each (measured; docs/nonlinear.md).
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
        m.submodules.buf = buf = Memory(shape=data.ArrayLayout(unsigned(max(ib, ebits)), L), depth=depth, init=[])
        wr, rd = buf.write_port(), buf.read_port()
        p = self.params

        beats = Signal(range(depth + 1))               # beats of the row being processed
        tail = Signal(range(L + 1))                    # valid lanes of its last beat
        mx = Signal(signed(ib))
        # loader: fills the buffer with the next row while the previous one is streamed out
        lcnt = Signal(range(depth + 1))
        lmx = Signal(signed(ib))
        lfull = Signal()                               # a complete row waits for the processor
        lbeats = Signal(range(depth + 1))
        ltail = Signal(range(L + 1))
        total = Signal(unsigned(sum_bits))
        idx = Signal(range(depth + 1))
        done = Signal(range(depth + 1))
        r = Signal(unsigned(F.RECIP_FRAC + 1))
        big_e = Signal(unsigned(6))
        f = Signal(unsigned(F.RECIP_FRAC + 1 + 8))

        # -- exponential pipelines (free running while in EXP) ----------------------------------
        one = Const(1)
        ctl = Pipe(m, one, "ctl")
        in_exp = Signal()
        issue = Signal()
        m.d.comb += issue.eq(in_exp & (idx < beats))
        v = ctl.reg(issue, 1, "v")                     # rd.data valid from here
        a = ctl.reg(idx, idx.shape(), "a")
        full = ctl.reg(idx != beats - 1, 1, "full")
        m.submodules.pow2_rom = pow2_rom = table_rom(self.pow2_table)
        zmax = (1 << F.POW2_IN_BITS) - 1
        es = []
        for j in range(L):
            pe = Pipe(m, one, f"exp{j}")
            x1 = rd.data[j][:ib].as_signed()
            d2 = pe.reg(mx - x1, signed(ib + 1), "d")
            p3 = pe.reg(d2.as_unsigned()[:ib] * p.mult, unsigned(ib + F.SOFTMAX_MULT_BITS), "p")
            z, zlat = round_shift_pipe(pe, p3, p.shift, hi=zmax, shape=unsigned(F.POW2_IN_BITS), name="z")
            e, lat = pow2_core(pe, z, F.SOFTMAX_EXP_FRAC, self.pow2_table, pow2_rom)
            es.append(e)
        lat += 2 + zlat
        v, a, full = ctl.delay(v, lat, "v"), ctl.delay(a, lat, "a"), ctl.delay(full, lat, "full")
        # lanes past the row's end contribute 0 (and are written back as 0)
        es = [Mux(full | (j < tail), e, 0) for j, e in enumerate(es)]
        e_sum = _tree(lambda x, y: x + y, es)

        # -- reciprocal of the row sum -------------------------------------------------------------
        pr = Pipe(m, one, "rcp")
        m.submodules.recip_rom = recip_rom = table_rom(self.recip_table)
        r_out, e_out, rlat = recip_core(pr, total, sum_bits, self.recip_table, recip_rom)
        wait = Signal(range(rlat + 3))

        # -- output pipeline (stalls on backpressure): read, multiply, round and clamp -------------
        out = RowOutput(m, self.o, beats=beats, tail=tail, depth=depth, lanes=L, latency=2 + OUT_ROUND_STAGES)
        en_o, in_out, oidx = out.en, out.active, out.idx
        po = Pipe(m, en_o, "out")
        prods = [po.reg(rd.data[j][:ebits] * f, unsigned(ebits + f.shape().width), f"prod{j}") for j in range(L)]
        for j in range(L):
            # round by 16 + E (add, shift), clamp to out_max: OUT_ROUND_STAGES registers
            y, _ = round_shift_pipe(po, prods[j], big_e, offset=F.RECIP_FRAC, hi=p.out_max,
                                    shape=unsigned(8), name=f"y{j}")
            m.d.comb += self.o.payload.data[j].eq(y)

        # -- memory port sharing (unconditional assignments: see _phase_flags) ---------------------
        m.d.comb += [rd.addr.eq(Mux(in_out, oidx, idx)), rd.en.eq(Mux(in_out, en_o, 1))]

        # -- input beat: valid lanes and their maximum ---------------------------------------------
        lo = -(1 << (ib - 1))
        cnt_in = self.i.payload.count
        nv = Signal(range(L + 1))
        m.d.comb += nv.eq(Mux(~self.i.payload.last | (cnt_in == 0) | (cnt_in > L), L, cnt_in))
        lanes_in = [Mux(j < nv, self.i.payload.data[j], lo) for j in range(L)]

        # -- loader: may write a beat the output phase has already read, never one still needed --
        in_idle = Signal()
        load_ok = Signal()
        m.d.comb += [load_ok.eq(~lfull & (in_idle | (in_out & (lcnt < oidx)))), self.i.ready.eq(load_ok)]
        with m.If(self.i.valid & load_ok):
            m.d.comb += [wr.addr.eq(lcnt), wr.en.eq(1)]
            m.d.comb += [wr.data[j].eq(self.i.payload.data[j].as_unsigned()) for j in range(L)]
            # the row's running maximum: one compare deep (all pairs at once), not a tree
            m.d.sync += lmx.eq(_max_flat(lanes_in + [Mux(lcnt == 0, lo, lmx)]))
            with m.If(self.i.payload.last | (lcnt == depth - 1)):
                m.d.sync += [lbeats.eq(lcnt + 1), ltail.eq(nv), lcnt.eq(0), lfull.eq(1)]
                with m.If(~self.i.payload.last):
                    m.d.sync += self.overflow.eq(1)
            with m.Else():
                m.d.sync += lcnt.eq(lcnt + 1)

        # -- processor: exponentials and sum, reciprocal, normalise and output ---------------------
        with m.FSM(name="softmax") as fsm:
            with m.State("IDLE"):
                with m.If(lfull):
                    m.d.sync += [beats.eq(lbeats), tail.eq(ltail), mx.eq(lmx), lfull.eq(0), idx.eq(0),
                                 done.eq(0), total.eq(0)]
                    m.next = "EXP"
            with m.State("EXP"):
                with m.If(issue):
                    m.d.sync += idx.eq(idx + 1)
                with m.If(v):
                    m.d.comb += [wr.addr.eq(a), wr.en.eq(1)]
                    m.d.comb += [wr.data[j].eq(es[j]) for j in range(L)]
                    m.d.sync += [total.eq(total + e_sum), done.eq(done + 1)]
                with m.If(done == beats):
                    m.d.sync += wait.eq(0)
                    m.next = "RECIP"
            with m.State("RECIP"):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == rlat):
                    m.d.sync += [r.eq(r_out), big_e.eq(e_out)]
                with m.If(wait == rlat + 1):
                    m.d.sync += [f.eq(r * p.out_max), *out.start()]
                    m.next = "OUT"
            with m.State("OUT"):
                out.run(m, "IDLE")
        _phase_flags(m, fsm, in_idle, in_out, in_exp)
        m.d.comb += self.busy.eq(~in_idle | lfull | (lcnt != 0))
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

    * ``params`` (hold stable, from the cycle before a row's first beat on): ``length`` = N,
      ``eps`` = ``eps_q``, ``out_shift`` = ``12 + g_shift``
      of :class:`heatvit.golden.nonlinear.LayerNormParams`; a length of 0 counts as 1, one above
      ``max_dim`` as ``max_dim``.
    * ``affine`` (always ready): ``(index, gamma G_i, beta B_i)`` writes channel ``index``'s affine
      parameters (load all N before the first row).
    * ``i``: beats of ``row_lanes`` inputs, ``ceil(N / row_lanes)`` per row (lanes past N in the
      last beat are ignored); ``o``: :func:`row_beat` of int8 results.

    Phases per row of B beats: load and moments (B cycles), variance (2), rsqrt (~10), normalise,
    affine and stream out (B + 9, stalls on ``o.ready``).  The next row loads while the current one
    streams out, so back-to-back rows take B + 21 cycles each (measured; docs/nonlinear.md).
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
        n_in = Signal(range(cfg.max_dim + 1))
        m.d.comb += n_in.eq(Mux(p.length == 0, 1, Mux(p.length > cfg.max_dim, cfg.max_dim, p.length)))
        n = Signal(range(cfg.max_dim + 1), init=1)
        beats = Signal(range(depth + 1), init=1)
        tail = Signal(range(L + 1), init=1)
        beats_in = (n_in + (L - 1)) >> log_l
        tail_in = n_in - ((beats_in - 1) << log_l)
        beats_m1 = Signal(range(depth + 1))
        tail_mask = Signal(L, init=1)              # lanes of the last beat: j < tail
        m.d.sync += [n.eq(n_in), beats.eq(beats_in), tail.eq(tail_in), beats_m1.eq(beats_in - 1),
                     tail_mask.eq(Cat(*[tail_in > j for j in range(L)]))]

        m.submodules.xbuf = xbuf = Memory(shape=data.ArrayLayout(signed(ib), L), depth=depth, init=[])
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

        s1 = Signal(signed(ib + db + 1))               # moments of the row being processed
        s2 = Signal(unsigned(2 * ib + db))
        # loader: fills the buffer with the next row while the previous one is streamed out
        cnt = Signal(range(depth + 1))
        ls1 = Signal(signed(ib + db + 1))
        ls2 = Signal(unsigned(2 * ib + db))
        lfull = Signal()
        ns2 = Signal(unsigned(2 * ib + 2 * db))
        s1sq = Signal(unsigned(2 * (ib + db)))
        dval = Signal(unsigned(mb))
        r = Signal(unsigned(F.RSQRT_FRAC + 1))
        sh1 = Signal(unsigned(6))
        wait = Signal(range(64))

        one = Const(1)
        pr = Pipe(m, one, "rsq")
        m.submodules.rsqrt_rom = rom = table_rom(self.rsqrt_table)
        r_out, k_out, rlat = rsqrt_core(pr, dval, mb, self.rsqrt_table, rom)
        k_out = k_out - F.LN_EPS_FRAC // 2        # D carries eps's fraction bits: 2**LN_EPS_FRAC too large

        out = RowOutput(m, self.o, beats=beats, tail=tail, depth=depth, lanes=L, latency=LN_OUT_LATENCY)
        en_o, in_out, oidx, olast = out.en, out.active, out.idx, out.last
        m.d.comb += [xr.addr.eq(oidx), xr.en.eq(en_o)]
        m.d.comb += [ar.addr.eq(oidx) for ar in ars] + [ar.en.eq(en_o) for ar in ars]
        lo, hi = -(1 << (self.out_bits - 1)), (1 << (self.out_bits - 1)) - 1
        tb = F.LN_NORM_FRAC + (db + 1) // 2 + 3
        for j in range(L):
            po = Pipe(m, en_o, f"out{j}")
            # stage 2: centred value c = N x - S1 (exact); 3: c * r; 4: t = round(c r / 2**sh1)
            c = po.reg(n * xr.data[j] - s1, signed(ib + db + 2), "c")
            g, b = po.reg(ars[j].data.gamma, name="g"), po.reg(ars[j].data.beta, name="b")
            cr = po.reg(c * r, signed(ib + db + 2 + F.RSQRT_FRAC + 2), "cr")
            g, b = po.reg(g, name="g"), po.reg(b, name="b")
            t, tlat = round_shift_pipe(po, cr, sh1, shape=signed(tb), name="t")
            g, b = po.delay(g, tlat, "g"), po.delay(b, tlat, "b")
            # then: affine; rounding add, shift, saturation (lanes past the row's end: 0)
            acc = po.reg(t * g + b, signed(F.LN_BETA_BITS + 1), "acc")
            y, _ = round_shift_pipe(po, acc, p.out_shift, lo=lo, hi=hi, shape=signed(self.out_bits), name="y")
            m.d.comb += self.o.payload.data[j].eq(Mux(~olast | (j < tail), y, 0))

        # -- input beat: moments over the valid lanes ----------------------------------------------
        # (the last beat's index and lane mask are registers: an equality and a mask before the sums)
        last_beat = cnt == beats_m1
        xs = [Mux(~last_beat | tail_mask[j], self.i.payload[j], 0) for j in range(L)]
        beat_s1 = _tree(lambda x, y: x + y, xs)
        beat_s2 = _tree(lambda x, y: x + y, [x * x for x in xs])

        in_idle = Signal()
        load_ok = Signal()
        m.d.comb += [load_ok.eq(~lfull & (in_idle | (in_out & (cnt < oidx)))), self.i.ready.eq(load_ok)]
        with m.If(self.i.valid & load_ok):
            m.d.comb += [xw.addr.eq(cnt), xw.data.eq(self.i.payload), xw.en.eq(1)]
            first = cnt == 0
            m.d.sync += [ls1.eq(Mux(first, 0, ls1) + beat_s1), ls2.eq(Mux(first, 0, ls2) + beat_s2)]
            with m.If(cnt + 1 >= beats):
                m.d.sync += [cnt.eq(0), lfull.eq(1)]
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)

        with m.FSM(name="layernorm") as fsm:
            with m.State("IDLE"):
                with m.If(lfull):
                    m.d.sync += [s1.eq(ls1), s2.eq(ls2), lfull.eq(0)]
                    m.next = "STATS"
            with m.State("STATS"):
                m.d.sync += [ns2.eq(n * s2), s1sq.eq(s1 * s1), wait.eq(0)]
                m.next = "VAR"
            with m.State("VAR"):
                v = ((ns2 - s1sq) << F.LN_EPS_FRAC) + p.eps          # eps_q has LN_EPS_FRAC fraction bits
                m.d.sync += dval.eq(Mux(v == 0, 1, v))
                m.next = "RSQRT"
            with m.State("RSQRT"):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == rlat):
                    m.d.sync += [r.eq(r_out), sh1.eq(k_out + (F.RSQRT_FRAC - F.LN_NORM_FRAC)), *out.start()]
                    m.next = "OUT"
            with m.State("OUT"):
                out.run(m, "IDLE")
        _phase_flags(m, fsm, in_idle, in_out)
        m.d.comb += self.busy.eq(~in_idle | lfull | (cnt != 0))
        return m
