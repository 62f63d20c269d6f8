"""Reference interpreter: executes a DDR model image descriptor by descriptor with the golden
integer operations only (``golden.gemm``, ``golden.requant``, ``golden.nonlinear``).

This is the executable specification of the layer controller: every descriptor is checked as the
controller checks it (:func:`heatvit.isa.check` with the live token count; a bad descriptor
raises :class:`heatvit.isa.DescriptorError` carrying the hardware error code), its operands are
read from the token buffers / DDR regions exactly as docs/isa.md defines, and its result is
written back.  With ``trace=True`` every executed descriptor's result (and the epilogue's
intermediate: raw int32 scores before softmax, the 16-bit fc1 values before GELU) is recorded, so
an RTL run can be compared descriptor by descriptor, and :func:`stages` reassembles the golden
model's dump stages from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import isa
from ..golden import nonlinear as NL
from ..golden.gemm import matmul_acc
from ..golden.requant import requantize
from ..golden.token_selector.decision import stage_int
from ..golden.token_selector.int_selector import combine_scores
from ..toksel_config import TokSelConfig
from ..isa import Epilogue, Op, Region, WSrc
from .image import ModelImage


@dataclass
class Step:
    """One executed descriptor: its index, effective shape and results."""
    index: int
    name: str
    op: str
    m: int
    k: int
    n: int
    out: np.ndarray | None = None
    extra: dict = field(default_factory=dict)


def unpack_weights(gcfg, blob: bytes, k: int, n: int, bitmap=None) -> np.ndarray:
    """Inverse of ``golden.gemm.pack_weights``: weight-stream bytes -> ``W[K, N]``.  ``bitmap``
    (bool ``(KT, NT)``): a sparse stream holding only the set tiles; the others are zero."""
    r, c = gcfg.rows, gcfg.cols
    kt, nt = -(-k // r), -(-n // c)
    if bitmap is None:
        w = np.frombuffer(blob, dtype=np.int8, count=nt * kt * r * c).astype(np.int64)
        return w.reshape(nt, kt * r, c).transpose(1, 0, 2).reshape(kt * r, nt * c)[:k, :n]
    keep = np.asarray(bitmap, dtype=bool).T                       # (NT, KT), stream order
    tiles = np.zeros((nt, kt, r, c), dtype=np.int64)
    tiles[keep] = np.frombuffer(blob, dtype=np.int8, count=int(keep.sum()) * r * c).astype(np.int64).reshape(-1, r, c)
    return tiles.transpose(1, 2, 0, 3).reshape(kt * r, nt * c)[:k, :n]


def gemm_bitmap(acc, d, model: bytes) -> np.ndarray:
    """A sparse GEMM's tile bitmap, bool ``(KT, NT)``, read from its parameter block in ``model``
    (the MODEL region); ``DescriptorError`` ``TILE_BITMAP_MISMATCH`` when its set bits are not
    the descriptor's ``tiles``, as the executor reports after reading it."""
    off, size = isa.param_block(acc, d)["bitmap"]
    start = d.addr + off
    if start + size > len(model):
        raise isa.DescriptorError(isa.ErrorCode.CTRL_BAD_ADDRESS,
                                  f"{d.name}: parameter part bitmap ({size} bytes at {start}) passes the image end")
    kt, nt = -(-d.k // acc.gemm.rows), -(-d.n // acc.gemm.cols)
    bm = np.array(isa.unpack_bitmap(model[start:start + size], kt, nt), dtype=bool).reshape(kt, nt)
    if int(bm.sum()) != d.tiles:
        raise isa.DescriptorError(isa.ErrorCode.TILE_BITMAP_MISMATCH,
                                  f"{d.name}: the tile bitmap sets {int(bm.sum())} tiles, the descriptor's tiles = "
                                  f"{d.tiles}")
    return bm


class Machine:
    """The accelerator's architectural state: token buffers, N_live and the three DDR regions."""

    def __init__(self, image: ModelImage, acc):
        self.image, self.acc, self.g = image, acc, acc.gemm
        self.model = image.blob
        self.bufs = {b: np.zeros((s.rows, s.cols), dtype=np.int64) for b, s in isa.token_buffers(acc).items()}
        self.n_live = 0
        self.n_tail = 0
        self.origin = np.zeros(0, dtype=np.int64)    # original patch of every token row (-1 class, -2 package)

    # -- DDR -------------------------------------------------------------------------------------
    def _block(self, d, part: str) -> bytes:
        off, size = isa.param_block(self.acc, d)[part]
        start = d.addr + off
        if start + size > len(self.model):
            raise isa.DescriptorError(isa.ErrorCode.CTRL_BAD_ADDRESS,
                                      f"{d.name}: parameter part {part} ({size} bytes at {start}) passes the image end")
        return self.model[start:start + size]

    def _requant(self, d, n):
        bias, mult, shift = isa.unpack_requant(self._block(d, "requant"), n)
        isa.check_record("requant", {"bias": bias, "mult": mult, "shift": shift}, self.acc, f"{d.name}: ")
        return np.array(bias), np.array(mult), np.array(shift)

    def _record(self, d, kind: str, names, signed=()) -> dict:
        r = isa.unpack_record(names, self._block(d, kind), signed)
        isa.check_record(kind, r, self.acc, f"{d.name}: ")
        return r

    # -- operations ------------------------------------------------------------------------------
    def _gemm(self, d, m, k, n, step: Step) -> np.ndarray:
        g = self.g
        a = self.bufs[d.src][d.src_row:d.src_row + m, d.src_col:d.src_col + k]
        if d.wsrc == WSrc.DDR:
            bitmap = gemm_bitmap(self.acc, d, self.model) if d.sparse else None
            stream = g.rows * g.cols * (d.tiles if d.sparse else isa.tile_grid_size(self.acc, d))
            w = unpack_weights(g, isa.unstripe_weights(self.acc, self._block(d, "weights"), stream), d.k, d.n, bitmap)
        elif d.wsrc == WSrc.BUF:
            w = self.bufs[d.aux][d.aux_row:d.aux_row + k, d.aux_col:d.aux_col + n]
        else:
            w = self.bufs[d.aux][d.aux_row:d.aux_row + n, d.aux_col:d.aux_col + k].T
        acc = matmul_acc(g, a, w)
        kw = dict(acc_bits=g.acc_bits, bias_bits=g.bias_bits, mult_bits=g.mult_bits, max_shift=g.max_shift)
        if d.epilogue == Epilogue.REQ8:
            return requantize(acc, *self._requant(d, n), out_bits=g.act_bits, **kw)
        if d.epilogue in (Epilogue.REQ8_GELU, Epilogue.REQ8_SOFTMAX, Epilogue.REQ8_SIGMOID):
            pre = requantize(acc, *self._requant(d, n), out_bits=g.act_bits, **kw)
            step.extra["pre"] = pre
            part, kind = isa.RECORD_KIND[Epilogue(d.epilogue)]
            if part == "softmax":
                r = isa.unpack_record(isa.SOFTMAX_RECORD, self._block(d, part))
                isa.check_record(kind, r, self.acc, f"{d.name}: ")
                return NL.softmax(pre, NL.SoftmaxParams(**r, s_in=float("nan")), self.acc.nonlinear)
            r = isa.unpack_record(isa.GELU_RECORD, self._block(d, part), ("out_min", "out_max"))
            isa.check_record(kind, r, self.acc, f"{d.name}: ")
            p = NL.ActParams(**r, s_in=float("nan"), s_out=float("nan"))
            return (NL.gelu if part == "gelu" else NL.sigmoid)(pre, p, self.acc.nonlinear)
        if d.epilogue == Epilogue.REQ16_GELU:
            pre = requantize(acc, *self._requant(d, n), out_bits=16, **kw)
            r = self._record(d, "gelu", isa.GELU_RECORD, signed=("out_min", "out_max"))
            p = NL.ActParams(**r, s_in=float("nan"), s_out=float("nan"))
            step.extra["pre"] = pre
            return NL.gelu(pre, p, self.acc.nonlinear)
        r = self._record(d, "softmax", isa.SOFTMAX_RECORD)
        p = NL.SoftmaxParams(**r, s_in=float("nan"))
        step.extra["raw"] = acc
        return NL.softmax(acc, p, self.acc.nonlinear)

    def _layernorm(self, d, m, n) -> np.ndarray:
        r = self._record(d, "ln", isa.LN_RECORD)
        gamma = np.frombuffer(self._block(d, "gamma"), dtype="<i4").astype(np.int64)
        beta = np.frombuffer(self._block(d, "beta"), dtype="<i8").astype(np.int64)
        eps_q = r["eps_q_hi"] << 32 | r["eps_q_lo"]
        isa.check_record("ln", {"gamma": gamma, "beta": beta, "eps_q": eps_q}, self.acc, f"{d.name}: ")
        if r["n"] != n:
            raise isa.DescriptorError(isa.ErrorCode.CTRL_BAD_PARAMS, f"{d.name}: LayerNorm record has n = {r['n']}, "
                                      f"the descriptor n = {n}")
        p = NL.LayerNormParams(gamma, beta, r["g_shift"], eps_q, r["out_bits"],
                               r["in_bits"], float("nan"), float("nan"))
        x = self.bufs[d.src][d.src_row:d.src_row + m, d.src_col:d.src_col + n]
        return NL.layernorm(x, p, self.acc.nonlinear)

    def _mean(self, d, m, n) -> np.ndarray:
        """MEAN: columns ``k..n-1`` replaced by ``divide(column sum, M)`` (the reciprocal unit)."""
        x = self.bufs[d.src][d.src_row:d.src_row + m, d.src_col:d.src_col + n].copy()
        x[:, d.k:] = NL.divide(x[:, d.k:].sum(0), m)[None]
        return x

    def _select(self, d, m, n, st: Step, trace: bytearray) -> np.ndarray:
        """SELECT: the score combiner and the token-selector control unit on the first ``m`` tokens."""
        ts, al = self.acc.toksel, isa.column_align(self.acc)
        aux = self.bufs[d.aux][:m] & 0xFF                             # uint8 probabilities
        t = np.stack([aux[:, d.aux_col + h * al] for h in range(d.heads)], axis=1)
        a = aux[:, d.a_col:d.a_col + d.heads]
        q = combine_scores(a, t, ts.score_bits)
        x = self.bufs[d.src][:m, d.src_col:d.src_col + n]
        if self.n_tail >= m:
            raise isa.DescriptorError(isa.ErrorCode.TOKSEL_BAD_TAIL, f"{d.name}: N_tail = {self.n_tail} >= "
                                      f"{m} tokens")
        cfg = TokSelConfig(max_tokens=ts.max_tokens, dim=n, heads=1, lanes=ts.lanes, threshold=ts.threshold,
                           score_bits=ts.score_bits)
        res = stage_int(cfg, x, q, self.n_tail, d.threshold)
        rec = isa.pack_trace_record(m, res.n_tokens, res.n_kept, res.n_tail, res.keep, d.m)
        if d.addr + len(rec) > len(trace):
            raise isa.DescriptorError(isa.ErrorCode.CTRL_BAD_ADDRESS, f"{d.name}: trace record at {d.addr} passes "
                                      f"the end of the TRACE region ({len(trace)} bytes)")
        trace[d.addr:d.addr + len(rec)] = rec
        origin = self.origin[:m] if len(self.origin) >= m else np.arange(-1, m - 1)
        self.origin = np.concatenate([origin[res.keep], np.full(res.n_tokens - res.n_kept, -2)])
        st.extra.update(scores=q, keep=res.keep, kept_patches=self.origin[self.origin >= 0],
                        n_in=m, n_out=res.n_tokens)
        self.n_live, self.n_tail = res.n_tokens, res.n_tail
        return res.tokens

    def _write(self, d, m, n, y) -> None:
        y = np.asarray(y, dtype=np.int64)
        if y.size and (y.min() < -128 or y.max() > 127):
            raise AssertionError(f"{d.name}: result outside int8 (golden contract broken)")
        self.bufs[d.dst][d.dst_row:d.dst_row + m, d.dst_col:d.dst_col + n] = y

    def step(self, i: int, d, regions: dict) -> Step | None:
        """Execute descriptor ``i``; ``None`` for a skipped (live-clipped to 0 rows) descriptor."""
        isa.check(d, self.acc, self.n_live)
        op = Op(d.opcode)
        if op == Op.BEGIN:
            self.n_live, self.n_tail = d.m, 0
            self.origin = np.arange(-1, d.m - 1)
            return Step(i, d.name, op.name, d.m, 0, 0)
        if op == Op.END:
            return Step(i, d.name, op.name, 0, 0, 0)
        m, k, n = isa.live_dims(d, self.n_live)
        if m == 0:
            return None
        st = Step(i, d.name, op.name, m, k, n)
        if op == Op.GEMM:
            y = self._gemm(d, m, k, n, st)
        elif op == Op.ADD:
            a = self.bufs[d.src][d.src_row:d.src_row + m, d.src_col:d.src_col + n]
            b = self.bufs[d.aux][d.aux_row:d.aux_row + m, d.aux_col:d.aux_col + n]
            y = requantize(a * d.add_mult_a + b * d.add_mult_b, 0, 1, d.add_shift, out_bits=8, mult_bits=1)
        elif op == Op.LAYERNORM:
            y = self._layernorm(d, m, n)
        elif op == Op.COPY:
            y = self.bufs[d.src][d.src_row:d.src_row + m, d.src_col:d.src_col + n].copy()
        elif op == Op.MEAN:
            y = self._mean(d, m, n)
        elif op == Op.SELECT:
            y = self._select(d, m, n, st, regions["TRACE"])
            self.bufs[d.dst][:len(y), d.dst_col:d.dst_col + n] = y
            st.m = len(y)
            st.out = y.copy()
            return st
        elif op == Op.LOAD:
            mem = regions[Region(d.region)]
            if d.addr + d.stride * (m - 1) + n > len(mem):
                raise isa.DescriptorError(isa.ErrorCode.CTRL_BAD_ADDRESS,
                                          f"{d.name}: LOAD of {m} rows at {d.addr} passes the end of region "
                                          f"{Region(d.region).name} ({len(mem)} bytes)")
            rows = [np.frombuffer(mem, dtype=np.int8, count=n, offset=d.addr + r * d.stride) for r in range(m)]
            y = np.stack(rows).astype(np.int64)
        else:  # STORE
            mem = regions[Region(d.region)]
            if d.addr + d.stride * (m - 1) + n > len(mem):
                raise isa.DescriptorError(isa.ErrorCode.CTRL_BAD_ADDRESS,
                                          f"{d.name}: STORE of {m} rows at {d.addr} passes the end of region "
                                          f"{Region(d.region).name} ({len(mem)} bytes)")
            x = self.bufs[d.src][d.src_row:d.src_row + m, d.src_col:d.src_col + n]
            for r in range(m):
                o = d.addr + r * d.stride
                mem[o:o + n] = x[r].astype(np.int8).tobytes()
            st.out = x.copy()
            return st
        if op == Op.GEMM and d.epilogue in isa.UNSIGNED_EPILOGUES:
            st.out = np.asarray(y, dtype=np.int64).copy()          # [0, 255]; the buffer holds the uint8 byte
            self.bufs[d.dst][d.dst_row:d.dst_row + m, d.dst_col:d.dst_col + n] = (st.out + 128) % 256 - 128
            return st
        self._write(d, m, n, y)
        st.out = np.asarray(y, dtype=np.int64).copy()
        return st


@dataclass
class Result:
    """One run: the OUTPUT, DEBUG and TRACE regions' bytes and (``trace``) the executed steps."""
    output: bytes
    steps: list[Step]
    debug: bytes = b""
    trace: bytes = b""


def run(image: ModelImage, acc, input_bytes: bytes, *, trace: bool = False) -> Result:
    """Execute the whole program on one input (the INPUT region's bytes)."""
    isa.check_program(image.program, acc)
    want = image.input["bytes"]
    if len(input_bytes) != want:
        raise ValueError(f"input must be {want} bytes (int8 patches, {image.input['rows']} rows of "
                         f"{image.input['cols']} at stride {image.input['stride']}), got {len(input_bytes)}")
    regions = {Region.MODEL: image.blob, Region.INPUT: bytes(input_bytes),
               Region.OUTPUT: bytearray(image.output["bytes"]), Region.DEBUG: bytearray(image.debug["bytes"]),
               "TRACE": bytearray(image.trace["bytes"])}
    mach = Machine(image, acc)
    steps = []
    for i, d in enumerate(image.program):
        st = mach.step(i, d, regions)
        if trace and st is not None:
            steps.append(st)
        if d.opcode == Op.END:
            break
    return Result(bytes(regions[Region.OUTPUT]), steps, bytes(regions[Region.DEBUG]), bytes(regions["TRACE"]))


def debug_steps(image: ModelImage, debug: bytes, n_live: int | None = None, trace=None) -> list[Step]:
    """The per-descriptor results a debug build stored to the DEBUG region (``debug``: its bytes,
    from the RTL or :func:`run`), as :class:`Step` objects that :func:`stages` assembles (stages
    made of epilogue intermediates, the raw scores and fc1's 16-bit values, are not stored).
    A pruned program: ``trace`` (the run's decoded :class:`~heatvit.compiler.trace.Trace`) gives
    the live token count after every SELECT; the selector's uint8 results come back as the
    stored bytes (int8 patterns)."""
    info = image.debug
    if not info["stores"]:
        raise ValueError("the image is not a debug build (heatvit compile --debug)")
    if len(debug) != info["bytes"]:
        raise ValueError(f"debug region must be {info['bytes']} bytes, got {len(debug)}")
    live = image.program[0].m if n_live is None else n_live
    after = {}
    if trace is not None:
        after = {st["desc"]: r["n_out"] for st, r in zip(image.trace["stages"], trace.records)}
    elif image.trace["stages"]:
        raise ValueError("a pruned program's debug stores need its run's trace (trace=...)")
    live_at, cur = [], live
    for i, d in enumerate(image.program):
        live_at.append(cur)
        cur = after.get(i, cur)
    steps = []
    for e in info["stores"]:
        d = image.program[e["desc"]]
        live = live_at[e["store"]]
        m, k, n = isa.live_dims(d, live) if d.opcode != Op.SELECT else (live, 0, d.n)
        if m == 0:
            continue
        rows = [np.frombuffer(debug, dtype=np.int8, count=n, offset=e["addr"] + r * e["stride"]) for r in range(m)]
        steps.append(Step(e["desc"], d.name, Op(d.opcode).name, m, k, n, np.stack(rows).astype(np.int64)))
    return steps


def pack_input(image: ModelImage, patches) -> bytes:
    """int8 patches ``(rows, cols)`` -> the INPUT region's bytes (rows at the image's stride)."""
    io = image.input
    p = np.asarray(patches)
    if p.shape != (io["rows"], io["cols"]):
        raise ValueError(f"patches must have shape ({io['rows']}, {io['cols']}), got {p.shape}")
    if not np.issubdtype(p.dtype, np.integer) or p.size and (p.min() < -128 or p.max() > 127):
        raise ValueError(f"patches must be int8 values in [-128, 127], got dtype {p.dtype}")
    out = np.zeros((io["rows"], io["stride"]), dtype=np.int8)
    out[:, :io["cols"]] = p
    return out.tobytes()


def unpack_output(image: ModelImage, blob: bytes) -> np.ndarray:
    """The OUTPUT region's bytes -> int8 logits (int64 array of ``num_classes``)."""
    io = image.output
    if len(blob) != io["bytes"]:
        raise ValueError(f"output must be {io['bytes']} bytes, got {len(blob)}")
    return np.frombuffer(blob, dtype=np.int8, count=io["cols"]).astype(np.int64)


def stages(image: ModelImage, steps: list[Step]) -> dict[str, np.ndarray]:
    """The golden dump stages (``embed``, ``blocks.0.attn.q``, ...) assembled from a trace."""
    by_index = {s.index: s for s in steps}
    out = {}
    for name, st in image.memory_map["stages"].items():
        groups: dict = {}
        for idx, value, head, cols in st["parts"]:
            s = by_index.get(idx)
            if s is None or (value != "out" and value not in s.extra):
                continue                      # clipped to N_live, or an intermediate not recorded
            a = s.out if value == "out" else s.extra[value]
            if cols is not None:
                a = a[:, cols[0]:cols[1]]
            groups.setdefault(head, []).append(a)
        if not groups:
            continue
        parts = [np.concatenate(g, axis=0) for g in groups.values()]
        join = st["join"]
        if join == "rows":
            out[name] = parts[0]
        elif join == "stack":
            out[name] = np.stack(parts)
        elif join == "cols":
            out[name] = np.concatenate(parts, axis=1)
        else:  # "row0": a one-row result as a vector
            out[name] = parts[0][0]
    return out
