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

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from heatvit import isa
from heatvit.config import AcceleratorConfig
from heatvit.errors import ErrorCode

from ..nonlinear.pipe import Pipe

E = ErrorCode


def decoded_layout() -> data.StructLayout:
    """Every :data:`heatvit.isa.FIELDS` entry at its width."""
    return data.StructLayout({f.name: f.width for f in isa.FIELDS})


def fields_layout() -> data.StructLayout:
    """:func:`decoded_layout` plus ``live_m/k/n``: the clipped shape."""
    return data.StructLayout({**decoded_layout().members, "live_m": 16, "live_k": 16, "live_n": 16})


def _ceil_shift(x, s: int):
    """``ceil(x / 2**s)`` (x unsigned): one add."""
    return (x + ((1 << s) - 1)) >> s if s else x


def _or(values):
    """The bitwise OR of ``values`` (0 for none)."""
    out = Const(0, 8)
    for v in values:
        out = out | v
    return out


def checked_layout() -> data.StructLayout:
    """:class:`DescriptorChecker`'s result: ``fields``, ``code`` and, from the fields, what the
    sequencer decides on (registered with them, so its CHECK state compares nothing wide):
    ``version_ok`` (the ISA version and ``config_id`` this build runs), ``begin`` / ``end``
    (the opcode) and ``skip`` (no live rows)."""
    return data.StructLayout({"fields": fields_layout(), "code": 8, "version_ok": 1, "begin": 1, "end": 1,
                              "skip": 1})


CHECK_GROUP = 4
"""The checker's last stage takes an opcode's checks this many at a time (see :func:`_first_code`)."""


def _first_code(fails, codes):
    """The 8-bit code of the first of ``fails`` (bits) that is set, 0 if none, as AND-OR logic:
    ``codes`` are constants or 8-bit values; each is ANDed with its fail bit and no earlier one."""
    terms = []
    for i, (bit, c) in enumerate(zip(fails, codes)):
        first = bit & ~Cat(*fails[:i]).any() if i else bit
        terms.append(first.replicate(8) & (Const(int(c), 8) if isinstance(c, int) else c))
    return _or(terms)


def _signed(x):
    """Unsigned ``x`` as a signed value of one bit more (the same number)."""
    return Cat(x, Const(0, 1)).as_signed()


def _align64_words(x, s: int):
    """``ceil(x * 2**s / 64)`` (x unsigned): the 64-byte blocks of ``x`` units of ``2**s`` bytes."""
    return x << (s - 6) if s >= 6 else _ceil_shift(x, 6 - s)


CHECKER_LATENCY = 6
"""Cycles from a descriptor's handshake on ``i`` to its result on ``o`` (:class:`DescriptorChecker`'s
register stages: decode, live shape, products, checks, each group's first failing check, the
first failing group's)."""


class DescriptorChecker(wiring.Component):
    """``i``: a descriptor's 8 words; ``o``: ``fields`` (decoded) and ``code`` (``ErrorCode``, 0
    = runnable), :data:`CHECKER_LATENCY` cycles later (a pipeline of registered stages;
    backpressure on ``o`` freezes every stage, a descriptor a cycle when ``o`` is ready).
    ``n_live``: the controller's live token count, sampled with the descriptor.

    The stages (each register to register, a few LUT levels; ``heatvit bench perf``'s logic
    depth): 1 decode (the opcode's fields, stray bits by word); 2 the live-clipped shape, tile counts,
    the DDR room ``2**32 - addr`` and the parameter block's parts that need no product; 3 the
    products (weight tile grid, activation words, LOAD/STORE bytes) and the room left after the
    block's fixed parts; 4 every check of the opcode as a bit; 5 and 6 the first failing check's code.
    The DDR bound ``addr + size > 2**32`` is checked as ``size > 2**32 - addr`` and a block's
    64-byte-aligned parts against the room in 64-byte units (exact integer identities, e.g.
    ``64 ceil(g / 512) > r  <=>  g > 512 floor(r / 64)``), so no long add chain precedes a
    comparison.  Stage 5 takes each opcode's checks :data:`CHECK_GROUP` at a time (whether one
    of a group fails, the first failing one's code), stage 6 the first failing group's code; the
    stray bits are OR-ed a word a stage (stage 1), then by opcode (stage 2)."""

    def __init__(self, acc: AcceleratorConfig):
        self.acc = acc
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(32, isa.DESC_WORDS))),
            "o": Out(stream.Signature(checked_layout())),
            "n_live": In(16),
        })

    def elaborate(self, platform):
        acc, g = self.acc, self.acc.gemm
        m = Module()
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]
        p = Pipe(m, en, "chk")
        w = self.i.payload
        Op = isa.Op

        # -- stage 1: decode: every field of every opcode at its place; bits outside its fields ---
        f0 = Signal(decoded_layout())
        op0 = w[0][:8]
        for fd in isa.FIELDS:
            with m.Switch(op0):
                with m.Case(*fd.ops):
                    m.d.comb += getattr(f0, fd.name).eq(w[fd.word][fd.lsb:fd.lsb + fd.width])
        # stray bits: each word's OR of the bits outside an opcode's fields in it (one register
        # per distinct word and mask) and the opcode one-hot, registered; then the descriptor's
        # own opcode's ORs (no 256-input OR in one cycle)
        word_or: dict[tuple[int, int], Signal] = {}
        per_op = []
        for o in Op:
            covered = [0] * isa.DESC_WORDS
            for fd in isa.op_fields(o):
                covered[fd.word] |= fd.mask << fd.lsb
            mine = []
            for i, c in enumerate(covered):
                mask = ~c & 0xFFFF_FFFF
                if mask and (i, mask) not in word_or:
                    word_or[i, mask] = p.reg((w[i] & Const(mask, 32)) != 0, 1, f"stray_w{i}_")
                if mask:
                    mine.append(word_or[i, mask])
            per_op.append(mine)
        valid = p.reg(self.i.valid, 1, "v")
        f1 = p.reg(f0, name="f")
        is_op1 = p.reg(Cat(*(op0 == o for o in Op)), len(Op), "isop")
        known, stray = Signal(), Signal()
        m.d.comb += [known.eq(is_op1.any()),
                     stray.eq(Cat(*(is_op1[j] & Cat(*mine).any() for j, mine in enumerate(per_op) if mine)).any())]
        first = p.reg(Mux(op0 == Op.LOAD, f0.dst_row, f0.src_row), 16, "first")
        nl = p.reg(self.n_live, 16, "nl")

        # -- stage 2: live shape (isa.live_dims), tile counts, DDR room, the block's fixed parts --
        R, C = g.rows, g.cols
        lr, lc, lrc = R.bit_length() - 1, C.bit_length() - 1, (R * C).bit_length() - 1
        P1 = acc.weight_beats_per_cycle == 1             # isa.param_block: sparse weights at the next beat
        ld = acc.shell.data_bytes.bit_length() - 1
        f2 = Signal(fields_layout())
        room = Mux(nl > first, nl - first, 0)
        k_clip = f1.k_live & (nl < f1.k)
        m.d.comb += [*(getattr(f2, fd.name).eq(getattr(f1, fd.name)) for fd in isa.FIELDS),
                     f2.live_m.eq(Mux(f1.m_live & (room < f1.m), room, f1.m)),
                     f2.live_k.eq(Mux(k_clip, nl, f1.k)),
                     f2.live_n.eq(Mux(f1.n_live & (nl < f1.n), nl, f1.n))]
        is_req = Cat(*(f1.epilogue == e for e in isa.REQUANT_EPILOGUES)).any()
        assert isa.REQUANT_RECORD_BYTES == 8 and isa.NL_RECORD_BYTES <= 64
        # the GEMM block's fixed parts in 64-byte units: requant records (8 bytes a channel), one
        # nonlinear record for every epilogue but REQ8
        fixed_q = Mux(is_req, _ceil_shift(f1.n, 3), 0) + (f1.epilogue != isa.Epilogue.REQ8)
        stages2 = dict(
            valid=p.reg(valid, 1, "v"), known=p.reg(known, 1, "known"), stray=p.reg(stray, 1, "stray"),
            nt=p.reg(_ceil_shift(f1.n, lc), 17, "nt"), kt=p.reg(_ceil_shift(f1.k, lr), 17, "kt"),
            kt_live=p.reg(Mux(k_clip, _ceil_shift(nl, lr), _ceil_shift(f1.k, lr)), 17, "ktl"),
            room=p.reg(Const(1 << 32, 33) - f1.addr, 33, "room"),          # 2**32 - addr >= 1
            fixed=p.reg(fixed_q << 6, 24, "fixed"),
            # align64(tiles R C); one weight port: tiles R C (the weights follow the bitmap at a beat)
            sp=p.reg(f1.tiles << lrc if P1 else _align64_words(f1.tiles, lrc) << 6, 40, "sp"),
            # LAYERNORM: a 64-byte header, gamma (4 bytes a channel), beta (8), each 64-aligned
            ln_a=p.reg(_ceil_shift(f1.n, 4), 13, "lna"), ln_b=p.reg(_ceil_shift(f1.n, 3), 14, "lnb"),
            # SELECT's trace record: align64(8 + ceil(m / 8)) = 64 ceil((m + 64) / 512)
            sel=p.reg(_ceil_shift(f1.m + 64, 9) << 6, 15, "sel"),
            heads_cols=p.reg((f1.heads - 1) * isa.column_align(acc) + 1, 24, "hcols"),
        )
        f2 = p.reg(f2, name="f")
        s2 = stages2

        # -- stage 3: products; the DDR room left after the GEMM block's fixed parts -------------
        mm, kk, nn = f2.live_m, f2.live_k, f2.live_n
        ta = _signed(s2["room"]) - s2["fixed"]
        s3 = dict(
            valid=p.reg(s2["valid"], 1, "v"), known=p.reg(s2["known"], 1, "known"),
            stray=p.reg(s2["stray"], 1, "stray"), room=p.reg(s2["room"], name="room"),
            grid=p.reg(s2["nt"] * s2["kt"], 34, "grid"),
            act_words=p.reg(s2["kt_live"] * mm, 33, "actw"),
            ddr_rows=p.reg(f2.stride * mm, 32, "rowsb"),
            ta=p.reg(ta, signed(35), "ta"),
            tas=p.reg((((ta >> 6) << 6) if P1 else ta) - s2["sp"], signed(42), "tas"),
            ln=p.reg((s2["ln_a"] + s2["ln_b"] + 1) << 6, 21, "ln"),
            sel=p.reg(s2["sel"], name="sel"), heads_cols=p.reg(s2["heads_cols"], name="hcols"),
            aux_rows=p.reg(Mux(f2.wsrc == isa.WSrc.BUF, kk, nn), 16, "auxr"),
            aux_cols=p.reg(Mux(f2.wsrc == isa.WSrc.BUF, nn, kk), 16, "auxc"),
        )
        f = p.reg(f2, name="f")

        # -- stage 4: every check of the opcode, in isa.check's order, as a bit ------------------
        mm, kk, nn = f.live_m, f.live_k, f.live_n
        grid = s3["grid"]
        bufs = isa.token_buffers(acc)
        align = isa.column_align(acc)

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

        def ddr(over):
            """isa.check's ddr(): ``over`` is ``addr + size > 2**32``."""
            return [((f.addr & 63) != 0, E.CTRL_BAD_ADDRESS), (over, E.CTRL_BAD_ADDRESS)]

        # GEMM: addr + fixed + weights > 2**32, i.e. weights > ta (ta = 2**32 - addr - fixed):
        # dense align64(grid R C) > ta  <=>  grid R C > 64 floor(ta / 64)  <=>  grid > that / (R C);
        # sparse align64(ceil(grid / 8)) = 64 ceil(grid / 512) > tas (tas = ta - align64(tiles R C))
        # <=>  grid > 512 floor(tas / 64); one weight port (the weights at the bitmap's next beat,
        # isa.param_block): align64(D ceil(grid / 8D) + tiles R C) > ta  <=>  D ceil(grid / 8D) >
        # tas (tas = 64 floor(ta / 64) - tiles R C)  <=>  grid > 8D floor(tas / D)
        ta, tas = s3["ta"], s3["tas"]
        dense_lim = (ta >> lrc) if lrc >= 6 else ((ta >> 6) << (6 - lrc))
        sparse_lim = ((tas >> ld) << (ld + 3)) if P1 else ((tas >> 6) << 9)
        gemm_over = Mux(f.wsrc != isa.WSrc.DDR, ta < 0,
                        Mux(f.sparse, _signed(grid) > sparse_lim, _signed(grid) > dense_lim))
        room = s3["room"]
        zero = lambda code: [(f.m == 0, code), (f.n == 0, code)]   # noqa: E731

        lim = acc.buffers.max_tokens
        ts = acc.toksel
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
                (s3["act_words"] > g.act_buffer_words, E.ACT_BUFFER_OVERFLOW),
                *window(f.src, f.src_row, f.src_col, mm, kk),
                *window(f.dst, f.dst_row, f.dst_col, mm, nn),
                *[(c & (f.wsrc != isa.WSrc.DDR), code) for c, code in
                  [(~Cat(*(f.aux == b for b in isa.WEIGHT_PORT_BUFFERS)).any(), E.CTRL_BAD_BUFFER),
                   *window(f.aux, f.aux_row, f.aux_col, s3["aux_rows"], s3["aux_cols"])]],
                (((f.epilogue == isa.Epilogue.RAW_SOFTMAX) | (f.epilogue == isa.Epilogue.REQ8_SOFTMAX))
                 & (nn > isa.softmax_row_limit(acc)), E.N_TOO_LARGE),
                *ddr(gemm_over),
            ],
        }
        rows_ops = {
            Op.ADD: [*window(f.src, f.src_row, f.src_col, mm, nn), *window(f.dst, f.dst_row, f.dst_col, mm, nn),
                     *window(f.aux, f.aux_row, f.aux_col, mm, nn)],
            Op.LAYERNORM: [*window(f.src, f.src_row, f.src_col, mm, nn),
                           *window(f.dst, f.dst_row, f.dst_col, mm, nn),
                           (nn > acc.nonlinear.max_dim, E.CTRL_BAD_SHAPE), *ddr(s3["ln"] > room)],
            Op.COPY: [*window(f.src, f.src_row, f.src_col, mm, nn), *window(f.dst, f.dst_row, f.dst_col, mm, nn)],
            Op.MEAN: [(f.k >= nn, E.CTRL_BAD_SHAPE),
                      *window(f.src, f.src_row, f.src_col, mm, nn), *window(f.dst, f.dst_row, f.dst_col, mm, nn)],
            Op.SELECT: [(f.heads < 1, E.CTRL_BAD_FIELD), (f.m > ts.max_tokens, E.CTRL_BAD_SHAPE),
                        ((nn % ts.lanes) != 0, E.CTRL_BAD_SHAPE), (f.threshold > ts.score_max, E.CTRL_BAD_FIELD),
                        *window(f.src, 0, f.src_col, mm, nn), *window(f.dst, 0, f.dst_col, mm, nn),
                        *window(f.aux, 0, f.aux_col, mm, s3["heads_cols"]),
                        *window(f.aux, 0, f.a_col, mm, f.heads),
                        *ddr(s3["sel"] > room)],
            Op.LOAD: [*window(f.dst, f.dst_row, f.dst_col, mm, nn),
                      ((f.stride < nn) | ((f.stride % isa.STRIDE_ALIGN) != 0), E.CTRL_BAD_ADDRESS),
                      *ddr(s3["ddr_rows"] > room)],
            Op.STORE: [(~Cat(*(f.region == r for r in isa.WRITABLE_REGIONS)).any(), E.CTRL_BAD_FIELD),
                       *[(c & (mm != 0), code) for c, code in zero(E.CTRL_BAD_SHAPE)], (mm == 0, 0),
                       *window(f.src, f.src_row, f.src_col, mm, nn),
                       ((f.stride < nn) | ((f.stride % isa.STRIDE_ALIGN) != 0), E.CTRL_BAD_ADDRESS),
                       *ddr(s3["ddr_rows"] > room)],
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
        hits = {o: p.reg(Cat(*(c for c, _ in lst)), len(lst), f"hit_{o.name.lower()}")
                for o, lst in checks.items() if lst}
        valid4 = p.reg(s3["valid"], 1, "valid")
        # an unknown opcode or stray bits decide the code alone: their code now, the opcodes' off
        pre_on = ~s3["known"] | s3["stray"]
        pre = p.reg(Mux(~s3["known"], int(E.CTRL_BAD_OPCODE), int(E.CTRL_BAD_FIELD)) & pre_on.replicate(8), 8, "pre")
        is_op = {o: p.reg((f.opcode == o) & ~pre_on, 1, f"is_{o.name.lower()}") for o in hits}
        f4 = p.reg(f, name="f")

        # -- stage 5: per opcode, in groups of CHECK_GROUP checks, whether one fails and the
        # first failing one's code (AND-OR logic, :func:`_first_code`), the opcode's alone --------
        fails5, firsts5 = [], []
        for o, bits in hits.items():
            codes = [c for _, c in checks[o]]
            groups = [range(i, min(i + CHECK_GROUP, len(codes))) for i in range(0, len(codes), CHECK_GROUP)]
            nm = o.name.lower()
            fails5.append(p.reg(Cat(*(Cat(*(bits[i] for i in grp)).any() & is_op[o] for grp in groups)),
                                len(groups), f"fails_{nm}"))
            firsts5.append([p.reg(_first_code([bits[i] for i in grp], [codes[i] for i in grp])
                                  & is_op[o].replicate(8), 8, f"first_{nm}") for grp in groups])
        valid5, pre5, f5 = p.reg(valid4, 1, "valid"), p.reg(pre, 8, "pre"), p.reg(f4, name="f")

        # -- stage 6: the first failing group's code, OR-ed over the opcodes (one is on) ----------
        code = Signal(8)
        m.d.comb += code.eq(_or([pre5, *(_first_code(list(fs), firsts) for fs, firsts in zip(fails5, firsts5))]))
        major, minor = f5.version[16:], f5.version[:16]
        with m.If(en):
            m.d.sync += [self.o.valid.eq(valid5), self.o.payload.fields.eq(f5), self.o.payload.code.eq(code),
                         self.o.payload.version_ok.eq((major == isa.ISA_VERSION[0]) & (minor <= isa.ISA_VERSION[1])
                                                      & (f5.config_id == isa.config_id(acc))),
                         self.o.payload.begin.eq(f5.opcode == Op.BEGIN), self.o.payload.end.eq(f5.opcode == Op.END),
                         self.o.payload.skip.eq(f5.live_m == 0)]
        return m
