"""Descriptor decode and check: the layer controller's first step on every fetched descriptor.

Eight 32-bit words in (one descriptor, :mod:`heatvit.isa`), the decoded fields and an error code
out: the first failing check of :func:`heatvit.isa.decode` then :func:`heatvit.isa.check`, in
their order and with their :class:`~heatvit.errors.ErrorCode` (0 = runnable), on the live-clipped
shape (``n_live``, :func:`heatvit.isa.live_dims`).  Program-level checks (``BEGIN`` version and
config ID, ``END`` within ``count``: ``CTRL_BAD_PROGRAM``) are the sequencer's, not this unit's.
All widths are unsigned; the comparisons are on full field widths, so no oversized value can be
truncated into a valid-looking one.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode

E = ErrorCode


def fields_layout() -> data.StructLayout:
    """Every :data:`heatvit.isa.FIELDS` entry at its width (plus ``live_m/k/n``: the clipped shape)."""
    return data.StructLayout({**{f.name: f.width for f in isa.FIELDS},
                              "live_m": 16, "live_k": 16, "live_n": 16})


def _align64(m: Module, x, name: str):
    """``ceil(x / 64) * 64`` (x unsigned)."""
    s = Signal(len(x) + 7, name=name)
    m.d.comb += s.eq(((x + 63) >> 6) << 6)
    return s


class DescriptorChecker(wiring.Component):
    """``i``: a descriptor's 8 words; ``o``: ``fields`` (decoded) and ``code`` (``ErrorCode``, 0
    = runnable), one cycle later (registered; backpressure honoured).  ``n_live``: the
    controller's live token count, held while a descriptor is checked."""

    def __init__(self, acc: AcceleratorConfig):
        self.acc = acc
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(32, isa.DESC_WORDS))),
            "o": Out(stream.Signature(data.StructLayout({"fields": fields_layout(), "code": 8}))),
            "n_live": In(16),
        })

    def elaborate(self, platform):
        acc, g = self.acc, self.acc.gemm
        m = Module()
        w = self.i.payload
        f = Signal(fields_layout())
        op = w[0][:8]

        # -- decode: every field of every opcode at its place; bits outside the opcode's fields ---
        for fd in isa.FIELDS:
            with m.Switch(op):
                with m.Case(*fd.ops):
                    m.d.comb += getattr(f, fd.name).eq(w[fd.word][fd.lsb:fd.lsb + fd.width])
        known = Signal()
        stray = Signal()
        m.d.comb += known.eq(0)
        with m.Switch(op):
            for o in isa.Op:
                with m.Case(o):
                    m.d.comb += known.eq(1)
                    covered = [0] * isa.DESC_WORDS
                    for fd in isa.op_fields(o):
                        covered[fd.word] |= fd.mask << fd.lsb
                    m.d.comb += stray.eq(Cat(*((w[i] & Const(~c & 0xFFFF_FFFF, 32)) != 0
                                               for i, c in enumerate(covered))).any())

        # -- live shape ------------------------------------------------------------------------------
        nl = self.n_live
        first = Mux(op == isa.Op.LOAD, f.dst_row, f.src_row)
        room = Signal(17)
        m.d.comb += room.eq(Mux(nl > first, nl - first, 0))
        mm, kk, nn = f.live_m, f.live_k, f.live_n
        m.d.comb += [
            mm.eq(Mux(f.m_live & (room < f.m), room, f.m)),
            kk.eq(Mux(f.k_live & (nl < f.k), nl, f.k)),
            nn.eq(Mux(f.n_live & (nl < f.n), nl, f.n)),
        ]

        # -- checks in isa.check's order -------------------------------------------------------------
        bufs = isa.token_buffers(acc)
        align = isa.column_align(acc)
        R, C = g.rows, g.cols

        def window(buf, row, col, rows, cols):
            """[(condition, code)] of isa.check's window()."""
            over_r = Signal()
            over_c = Signal()
            with m.Switch(buf):
                for b, spec in bufs.items():
                    with m.Case(b):
                        m.d.comb += [over_r.eq(row + rows > spec.rows), over_c.eq(col + cols > spec.cols)]
            return [(buf >= len(isa.Buf), E.CTRL_BAD_BUFFER), (over_r, E.CTRL_BAD_SHAPE),
                    (over_c, E.CTRL_BAD_SHAPE), ((col % align) != 0, E.CTRL_BAD_ADDRESS)]

        def ddr(size):
            return [((f.addr & 63) != 0, E.CTRL_BAD_ADDRESS), (f.addr + size > (1 << 32), E.CTRL_BAD_ADDRESS)]

        nt = (f.n + (C - 1)) // C
        kt = (f.k + (R - 1)) // R
        gemm_pbb = Signal(48)
        req = Mux(Cat(*(f.epilogue == e for e in isa.REQUANT_EPILOGUES)).any(),
                  _align64(m, f.n * isa.REQUANT_RECORD_BYTES, "req_bytes"), 0)
        # every epilogue but REQ8 has one nonlinear record (GELU, softmax or sigmoid)
        nlrec = Mux(f.epilogue != isa.Epilogue.REQ8, _align64(m, Const(isa.NL_RECORD_BYTES, 7), "nl_bytes"), 0)
        grid = Signal(40)
        m.d.comb += grid.eq(nt * kt)
        if self.acc.weight_beats_per_cycle == 1:    # the weights follow the bitmap at the next beat
            D = self.acc.shell.data_bytes
            sp = _align64(m, ((((grid + 7) >> 3) + D - 1) // D) * D + f.tiles * (R * C), "sp_bytes")
        else:
            sp = _align64(m, (grid + 7) >> 3, "bitmap_bytes") + _align64(m, f.tiles * (R * C), "sp_bytes")
        wgt = Mux(f.wsrc == isa.WSrc.DDR, Mux(f.sparse, sp, _align64(m, grid * (R * C), "wgt_bytes")), 0)
        m.d.comb += gemm_pbb.eq(req + nlrec + wgt)
        ln_pbb = Signal(48)
        m.d.comb += ln_pbb.eq(_align64(m, Const(isa.NL_RECORD_BYTES, 7), "ln_hdr")
                              + _align64(m, f.n * 4, "gamma_bytes") + _align64(m, f.n * 8, "beta_bytes"))
        act_words = Signal(40)
        m.d.comb += act_words.eq(((kk + (R - 1)) // R) * mm)
        aux_rows = Mux(f.wsrc == isa.WSrc.BUF, kk, nn)
        aux_cols = Mux(f.wsrc == isa.WSrc.BUF, nn, kk)
        zero = lambda code: [(f.m == 0, code), (f.n == 0, code)]   # noqa: E731

        lim = acc.buffers.max_tokens
        ts = acc.toksel
        Op = isa.Op
        checks = {
            Op.BEGIN: [((f.m < 1) | (f.m > lim), E.CTRL_BAD_SHAPE)],
            Op.END: [],
            Op.GEMM: [
                (f.epilogue > max(isa.Epilogue), E.CTRL_BAD_FIELD), (f.wsrc > max(isa.WSrc), E.CTRL_BAD_FIELD),
                ((f.wsrc == isa.WSrc.DDR) & (f.k_live | f.n_live), E.CTRL_BAD_FIELD),
                (f.sparse & (f.wsrc != isa.WSrc.DDR), E.CTRL_BAD_FIELD),
                ((f.tiles != 0) & ~f.sparse, E.CTRL_BAD_FIELD),
                *[(c & (mm != 0), code) for c, code in zero(E.ZERO_DIMENSION)
                  + [(f.k == 0, E.ZERO_DIMENSION)]],
                (mm == 0, 0),
                (mm > g.max_m, E.M_TOO_LARGE), (kk > g.max_k, E.K_TOO_LARGE), (nn > g.max_n, E.N_TOO_LARGE),
                (f.sparse & (f.tiles > grid), E.TILE_COUNT_TOO_LARGE),
                (act_words > g.act_buffer_words, E.ACT_BUFFER_OVERFLOW),
                *window(f.src, f.src_row, f.src_col, mm, kk),
                *window(f.dst, f.dst_row, f.dst_col, mm, nn),
                *[(c & (f.wsrc != isa.WSrc.DDR), code) for c, code in
                  [(~Cat(*(f.aux == b for b in isa.WEIGHT_PORT_BUFFERS)).any(), E.CTRL_BAD_BUFFER),
                   *window(f.aux, f.aux_row, f.aux_col, aux_rows, aux_cols)]],
                (((f.epilogue == isa.Epilogue.RAW_SOFTMAX) | (f.epilogue == isa.Epilogue.REQ8_SOFTMAX))
                 & (nn > isa.softmax_row_limit(acc)), E.N_TOO_LARGE),
                *ddr(gemm_pbb),
            ],
        }
        rows_ops = {
            Op.ADD: [*window(f.src, f.src_row, f.src_col, mm, nn), *window(f.dst, f.dst_row, f.dst_col, mm, nn),
                     *window(f.aux, f.aux_row, f.aux_col, mm, nn)],
            Op.LAYERNORM: [*window(f.src, f.src_row, f.src_col, mm, nn),
                           *window(f.dst, f.dst_row, f.dst_col, mm, nn),
                           (nn > acc.nonlinear.max_dim, E.CTRL_BAD_SHAPE), *ddr(ln_pbb)],
            Op.COPY: [*window(f.src, f.src_row, f.src_col, mm, nn), *window(f.dst, f.dst_row, f.dst_col, mm, nn)],
            Op.MEAN: [(f.k >= nn, E.CTRL_BAD_SHAPE),
                      *window(f.src, f.src_row, f.src_col, mm, nn), *window(f.dst, f.dst_row, f.dst_col, mm, nn)],
            Op.SELECT: [(f.heads < 1, E.CTRL_BAD_FIELD), (f.m > ts.max_tokens, E.CTRL_BAD_SHAPE),
                        ((nn % ts.lanes) != 0, E.CTRL_BAD_SHAPE), (f.threshold > ts.score_max, E.CTRL_BAD_FIELD),
                        *window(f.src, 0, f.src_col, mm, nn), *window(f.dst, 0, f.dst_col, mm, nn),
                        *window(f.aux, 0, f.aux_col, mm, (f.heads - 1) * align + 1),
                        *window(f.aux, 0, f.a_col, mm, f.heads),
                        *ddr(_align64(m, 8 + ((f.m + 7) >> 3), "select_trace_bytes"))],
            Op.LOAD: [*window(f.dst, f.dst_row, f.dst_col, mm, nn),
                      ((f.stride < nn) | ((f.stride % isa.STRIDE_ALIGN) != 0), E.CTRL_BAD_ADDRESS),
                      *ddr(f.stride * mm)],
            Op.STORE: [(~Cat(*(f.region == r for r in isa.WRITABLE_REGIONS)).any(), E.CTRL_BAD_FIELD),
                       *[(c & (mm != 0), code) for c, code in zero(E.CTRL_BAD_SHAPE)], (mm == 0, 0),
                       *window(f.src, f.src_row, f.src_col, mm, nn),
                       ((f.stride < nn) | ((f.stride % isa.STRIDE_ALIGN) != 0), E.CTRL_BAD_ADDRESS),
                       *ddr(f.stride * mm)],
        }
        for o, lst in rows_ops.items():
            if o == Op.STORE:
                checks[o] = lst
            else:
                checks[o] = [*[(c & (mm != 0), code) for c, code in zero(E.CTRL_BAD_SHAPE)], (mm == 0, 0), *lst]
        if not acc.selectors:      # isa.check: no token-selector hardware in this build
            checks[Op.GEMM].insert(1, (Cat(*(f.epilogue == e for e in isa.SELECTOR_EPILOGUES)).any(),
                                       E.CTRL_UNSUPPORTED_OP))
            for o in isa.SELECTOR_OPS:
                checks[o].insert(0, (Const(1), E.CTRL_UNSUPPORTED_OP))

        code = Signal(8)
        with m.If(~known):
            m.d.comb += code.eq(E.CTRL_BAD_OPCODE)
        with m.Elif(stray):
            m.d.comb += code.eq(E.CTRL_BAD_FIELD)
        with m.Else():
            with m.Switch(op):
                for o, lst in checks.items():
                    with m.Case(o):
                        for i, (cond, c) in enumerate(lst):
                            with (m.If if i == 0 else m.Elif)(cond):
                                m.d.comb += code.eq(c)

        # -- one registered stage ------------------------------------------------------------------
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.fields.eq(f),
                         self.o.payload.code.eq(code)]
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        return m
