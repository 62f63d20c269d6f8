"""Row units: Softmax (attention rows) and LayerNorm, one element per cycle, streaming.

Both buffer one row (they need a whole-row statistic before the first output), then stream the
result out under backpressure.  Bit-exact with :mod:`heatvit.golden.nonlinear.softmax` and
``.layernorm``; formats and cycle counts in docs/nonlinear.md.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear.layernorm import moments_bits
from heatvit.golden.nonlinear.tables import table
from heatvit.nonlinear_config import NonlinearConfig

from .pipe import Pipe, round_shift_var, saturate, table_rom
from .units import SHIFT_BITS, pow2_core, recip_core, rsqrt_core


def _valid_chain(m, en, valid, n: int, name: str):
    for s in range(n):
        v = Signal(name=f"{name}{s + 1}")
        with m.If(en):
            m.d.sync += v.eq(valid)
        valid = v
    return valid


def softmax_params_layout():
    return data.StructLayout({"mult": unsigned(F.SOFTMAX_MULT_BITS), "shift": unsigned(SHIFT_BITS),
                              "out_max": unsigned(8)})


class SoftmaxUnit(wiring.Component):
    """Softmax over rows of up to ``cfg.max_tokens`` signed ``cfg.softmax_in_bits`` scores.

    * ``params`` (hold stable): ``mult``/``shift``/``out_max`` from
      :func:`heatvit.golden.nonlinear.softmax_params`.
    * ``i``: ``(data, last)``; ``last`` ends a row.  A row reaching ``max_tokens`` elements ends
      there (the next element starts a new row) and sets ``overflow`` (sticky until reset).
    * ``o``: ``(data uint8 in [0, out_max], last)``, one beat per input element, in order.

    Phases per row (no overlap between rows): load and max (N cycles), exponentials and sum
    (N + pipeline), one reciprocal, normalise and stream out (N + pipeline, stalls on ``o.ready``).
    """

    def __init__(self, cfg: NonlinearConfig):
        self.cfg = cfg
        self.pow2_table = table("pow2", cfg)
        self.recip_table = table("reciprocal", cfg)
        super().__init__({
            "params": In(softmax_params_layout()),
            "i": In(stream.Signature(data.StructLayout({"data": signed(cfg.softmax_in_bits), "last": 1}))),
            "o": Out(stream.Signature(data.StructLayout({"data": unsigned(8), "last": 1}))),
            "overflow": Out(1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        ib, tb = cfg.softmax_in_bits, cfg.token_bits
        ebits = F.SOFTMAX_EXP_FRAC + 1
        sum_bits = ebits + tb
        m.submodules.buf = buf = Memory(shape=unsigned(max(ib, ebits)), depth=cfg.max_tokens, init=[])
        wr, rd = buf.write_port(), buf.read_port()
        p = self.params

        n = Signal(range(cfg.max_tokens + 1))
        cnt = Signal(range(cfg.max_tokens + 1))
        mx = Signal(signed(ib))
        total = Signal(unsigned(sum_bits))
        idx = Signal(range(cfg.max_tokens + 1))
        done = Signal(range(cfg.max_tokens + 1))
        r = Signal(unsigned(F.RECIP_FRAC + 1))
        big_e = Signal(unsigned(6))
        f = Signal(unsigned(F.RECIP_FRAC + 1 + 8))

        # -- exponential pipeline (free running while in EXP) -----------------------------------
        one = Const(1)
        pe = Pipe(m, one, "exp")
        in_exp = Signal()
        issue = Signal()
        m.d.comb += issue.eq(in_exp & (idx < n))
        v = pe.reg(issue, 1, "v")                         # rd.data valid from here
        a = pe.reg(idx, idx.shape(), "a")
        x1 = rd.data[:ib].as_signed()
        d2 = pe.reg(mx - x1, signed(ib + 1), "d")
        v, a = pe.reg(v, 1, "v"), pe.reg(a, name="a")
        p3 = pe.reg(d2.as_unsigned()[:ib] * p.mult, unsigned(ib + F.SOFTMAX_MULT_BITS), "p")
        v, a = pe.reg(v, 1, "v"), pe.reg(a, name="a")
        zmax = (1 << F.POW2_IN_BITS) - 1
        zr = round_shift_var(p3, p.shift)
        z4 = pe.reg(Mux(zr > zmax, zmax, zr), unsigned(F.POW2_IN_BITS), "z")
        v, a = pe.reg(v, 1, "v"), pe.reg(a, name="a")
        m.submodules.pow2_rom = pow2_rom = table_rom(self.pow2_table)
        e, lat = pow2_core(pe, z4, F.SOFTMAX_EXP_FRAC, self.pow2_table, pow2_rom)
        v, a = pe.delay(v, lat, "v"), pe.delay(a, lat, "a")

        # -- reciprocal of the row sum -------------------------------------------------------------
        pr = Pipe(m, one, "rcp")
        m.submodules.recip_rom = recip_rom = table_rom(self.recip_table)
        r_out, e_out, rlat = recip_core(pr, total, sum_bits, self.recip_table, recip_rom)
        wait = Signal(range(rlat + 3))

        # -- output pipeline (stalls on backpressure) ----------------------------------------------
        en_o = Signal()
        m.d.comb += en_o.eq(~self.o.valid | self.o.ready)
        in_out = Signal()
        oidx = Signal(range(cfg.max_tokens + 1))
        oissue = Signal()
        m.d.comb += oissue.eq(in_out & (oidx < n))
        po = Pipe(m, en_o, "out")
        ov = po.reg(oissue, 1, "v")
        olast = po.reg(oidx == n - 1, 1, "last")
        prod = po.reg(rd.data[:ebits] * f, unsigned(ebits + f.shape().width), "prod")
        ov, olast = po.reg(ov, 1, "v"), po.reg(olast, 1, "last")
        y = round_shift_var(prod, big_e + F.RECIP_FRAC)
        y = po.reg(Mux(y > p.out_max, p.out_max, y), unsigned(8), "y")
        ov, olast = po.reg(ov, 1, "v"), po.reg(olast, 1, "last")
        m.d.comb += [self.o.valid.eq(ov), self.o.payload.data.eq(y), self.o.payload.last.eq(olast)]

        # -- memory port sharing (unconditional assignments: see _phase_flags) ---------------------
        m.d.comb += [rd.addr.eq(Mux(in_out, oidx, idx)), rd.en.eq(Mux(in_out, en_o, 1))]

        with m.FSM(name="softmax") as fsm:
            with m.State("LOAD"):
                with m.If(self.i.valid):
                    x = self.i.payload.data
                    m.d.comb += [wr.addr.eq(cnt), wr.data.eq(x.as_unsigned()), wr.en.eq(1)]
                    with m.If((cnt == 0) | (x > mx)):
                        m.d.sync += mx.eq(x)
                    full = cnt == cfg.max_tokens - 1
                    with m.If(self.i.payload.last | full):
                        m.d.sync += [n.eq(cnt + 1), cnt.eq(0), idx.eq(0), done.eq(0), total.eq(0)]
                        with m.If(~self.i.payload.last):
                            m.d.sync += self.overflow.eq(1)
                        m.next = "EXP"
                    with m.Else():
                        m.d.sync += cnt.eq(cnt + 1)
            with m.State("EXP"):
                with m.If(issue):
                    m.d.sync += idx.eq(idx + 1)
                with m.If(v):
                    m.d.comb += [wr.addr.eq(a), wr.data.eq(e), wr.en.eq(1)]
                    m.d.sync += [total.eq(total + e), done.eq(done + 1)]
                with m.If(done == n):
                    m.d.sync += wait.eq(0)
                    m.next = "RECIP"
            with m.State("RECIP"):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == rlat):
                    m.d.sync += [r.eq(r_out), big_e.eq(e_out)]
                with m.If(wait == rlat + 1):
                    m.d.sync += [f.eq(r * p.out_max), oidx.eq(0)]
                    m.next = "OUT"
            with m.State("OUT"):
                with m.If(oissue & en_o):
                    m.d.sync += oidx.eq(oidx + 1)
                with m.If(self.o.valid & self.o.ready & self.o.payload.last):
                    m.next = "LOAD"
        _phase_flags(m, fsm, self.i.ready, self.busy, in_out, in_exp)
        return m


def _phase_flags(m, fsm, ready, busy, in_out, in_exp=None):
    """State decodes as unconditional assignments.

    Icarus evaluates an ``always @*`` block only when one of its inputs changes; a flag assigned
    inside an FSM state whose register never leaves its initial value would stay X.
    """
    m.d.comb += [ready.eq(fsm.ongoing("LOAD")), busy.eq(~fsm.ongoing("LOAD")), in_out.eq(fsm.ongoing("OUT"))]
    if in_exp is not None:
        m.d.comb += in_exp.eq(fsm.ongoing("EXP"))


def layernorm_params_layout(cfg: NonlinearConfig):
    return data.StructLayout({"length": unsigned(cfg.dim_bits),
                              "eps": unsigned(moments_bits(cfg.layernorm_in_bits, cfg.dim_bits)),
                              "out_shift": unsigned(SHIFT_BITS)})


def layernorm_affine_layout(cfg: NonlinearConfig):
    return data.StructLayout({"index": unsigned(max(1, (cfg.max_dim - 1).bit_length())),
                              "gamma": signed(F.LN_GAMMA_BITS), "beta": signed(F.LN_BETA_BITS)})


class LayerNormUnit(wiring.Component):
    """LayerNorm over rows of ``params.length`` (1 .. ``cfg.max_dim``) signed ``layernorm_in_bits`` inputs.

    * ``params`` (hold stable): ``length`` = N, ``eps`` = ``eps_q``, ``out_shift`` = ``12 + g_shift``
      of :class:`heatvit.golden.nonlinear.LayerNormParams`; a length of 0 counts as 1, one above
      ``max_dim`` as ``max_dim``.
    * ``affine`` (always ready): ``(index, gamma G_i, beta B_i)`` writes channel ``index``'s affine
      parameters (load all N before the first row).
    * ``i``: the row's N elements, back to back rows; ``o``: ``(data int8, last)``.
    """

    def __init__(self, cfg: NonlinearConfig, out_bits: int = 8):
        self.cfg, self.out_bits = cfg, out_bits
        self.rsqrt_table = table("rsqrt", cfg)
        super().__init__({
            "params": In(layernorm_params_layout(cfg)),
            "affine": In(stream.Signature(layernorm_affine_layout(cfg))),
            "i": In(stream.Signature(signed(cfg.layernorm_in_bits))),
            "o": Out(stream.Signature(data.StructLayout({"data": signed(out_bits), "last": 1}))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        cfg = self.cfg
        m = Module()
        ib, db = cfg.layernorm_in_bits, cfg.dim_bits
        mb = moments_bits(ib, db)
        p = self.params
        # a length outside 1 .. max_dim is clamped into it (never an address wrap or a hang)
        n = Signal(range(cfg.max_dim + 1))
        m.d.comb += n.eq(Mux(p.length == 0, 1, Mux(p.length > cfg.max_dim, cfg.max_dim, p.length)))

        m.submodules.xbuf = xbuf = Memory(shape=signed(ib), depth=cfg.max_dim, init=[])
        m.submodules.abuf = abuf = Memory(shape=data.StructLayout({"gamma": signed(F.LN_GAMMA_BITS),
                                                                   "beta": signed(F.LN_BETA_BITS)}),
                                          depth=cfg.max_dim, init=[])
        xw, xr = xbuf.write_port(), xbuf.read_port()
        aw, ar = abuf.write_port(), abuf.read_port()
        m.d.comb += [
            self.affine.ready.eq(1),
            aw.addr.eq(self.affine.payload.index),
            aw.data.gamma.eq(self.affine.payload.gamma),
            aw.data.beta.eq(self.affine.payload.beta),
            aw.en.eq(self.affine.valid),
        ]

        cnt = Signal(range(cfg.max_dim + 1))
        s1 = Signal(signed(ib + db + 1))
        s2 = Signal(unsigned(2 * ib + db))
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

        en_o = Signal()
        m.d.comb += en_o.eq(~self.o.valid | self.o.ready)
        in_out = Signal()
        oidx = Signal(range(cfg.max_dim + 1))
        oissue = Signal()
        m.d.comb += oissue.eq(in_out & (oidx < n))
        m.d.comb += [xr.addr.eq(oidx), xr.en.eq(en_o), ar.addr.eq(oidx), ar.en.eq(en_o)]
        po = Pipe(m, en_o, "out")
        ov = po.reg(oissue, 1, "v")
        olast = po.reg(oidx == n - 1, 1, "last")
        # stage 2: centred value c = N x - S1 (exact)
        c = po.reg(n * xr.data - s1, signed(ib + db + 2), "c")
        g, b = po.reg(ar.data.gamma, name="g"), po.reg(ar.data.beta, name="b")
        ov, olast = po.reg(ov, 1, "v"), po.reg(olast, 1, "last")
        # stage 3: c * r; stage 4: t = round(c r / 2**(16 + k - 12))
        tb = F.LN_NORM_FRAC + (db + 1) // 2 + 3
        cr = po.reg(c * r, signed(ib + db + 2 + F.RSQRT_FRAC + 2), "cr")
        g, b = po.reg(g, name="g"), po.reg(b, name="b")
        ov, olast = po.reg(ov, 1, "v"), po.reg(olast, 1, "last")
        t = po.reg(round_shift_var(cr, sh1), signed(tb), "t")
        g, b = po.reg(g, name="g"), po.reg(b, name="b")
        ov, olast = po.reg(ov, 1, "v"), po.reg(olast, 1, "last")
        # stage 5: affine; stage 6: rounding shift and saturation
        acc = po.reg(t * g + b, signed(F.LN_BETA_BITS + 1), "acc")
        ov, olast = po.reg(ov, 1, "v"), po.reg(olast, 1, "last")
        lo, hi = -(1 << (self.out_bits - 1)), (1 << (self.out_bits - 1)) - 1
        y = po.reg(saturate(round_shift_var(acc, p.out_shift), lo, hi), signed(self.out_bits), "y")
        ov, olast = po.reg(ov, 1, "v"), po.reg(olast, 1, "last")
        m.d.comb += [self.o.valid.eq(ov), self.o.payload.data.eq(y), self.o.payload.last.eq(olast)]

        with m.FSM(name="layernorm") as fsm:
            with m.State("LOAD"):
                with m.If(self.i.valid):
                    x = self.i.payload
                    m.d.comb += [xw.addr.eq(cnt), xw.data.eq(x), xw.en.eq(1)]
                    first = cnt == 0
                    m.d.sync += [s1.eq(Mux(first, 0, s1) + x), s2.eq(Mux(first, 0, s2) + x * x)]
                    with m.If(cnt + 1 >= n):
                        m.d.sync += cnt.eq(0)
                        m.next = "STATS"
                    with m.Else():
                        m.d.sync += cnt.eq(cnt + 1)
            with m.State("STATS"):
                m.d.sync += [ns2.eq(n * s2), s1sq.eq(s1 * s1), wait.eq(0)]
                m.next = "VAR"
            with m.State("VAR"):
                v = ns2 - s1sq + p.eps
                m.d.sync += dval.eq(Mux(v == 0, 1, v))
                m.next = "RSQRT"
            with m.State("RSQRT"):
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == rlat):
                    m.d.sync += [r.eq(r_out), sh1.eq(k_out + (F.RSQRT_FRAC - F.LN_NORM_FRAC)), oidx.eq(0)]
                    m.next = "OUT"
            with m.State("OUT"):
                with m.If(oissue & en_o):
                    m.d.sync += oidx.eq(oidx + 1)
                with m.If(self.o.valid & self.o.ready & self.o.payload.last):
                    m.next = "LOAD"
        _phase_flags(m, fsm, self.i.ready, self.busy, in_out)
        return m
