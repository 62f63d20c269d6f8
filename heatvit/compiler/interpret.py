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


def unpack_weights(gcfg, blob: bytes, k: int, n: int) -> np.ndarray:
    """Inverse of ``golden.gemm.pack_weights``: weight-stream bytes -> ``W[K, N]``."""
    r, c = gcfg.rows, gcfg.cols
    kt, nt = -(-k // r), -(-n // c)
    w = np.frombuffer(blob, dtype=np.int8, count=nt * kt * r * c).astype(np.int64)
    return w.reshape(nt, kt * r, c).transpose(1, 0, 2).reshape(kt * r, nt * c)[:k, :n]


class Machine:
    """The accelerator's architectural state: token buffers, N_live and the three DDR regions."""

    def __init__(self, image: ModelImage, acc):
        self.image, self.acc, self.g = image, acc, acc.gemm
        self.model = image.blob
        self.bufs = {b: np.zeros((s.rows, s.cols), dtype=np.int64) for b, s in isa.token_buffers(acc).items()}
        self.n_live = 0

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
            w = unpack_weights(g, self._block(d, "weights"), d.k, d.n)
        elif d.wsrc == WSrc.BUF:
            w = self.bufs[d.aux][d.aux_row:d.aux_row + k, d.aux_col:d.aux_col + n]
        else:
            w = self.bufs[d.aux][d.aux_row:d.aux_row + n, d.aux_col:d.aux_col + k].T
        acc = matmul_acc(g, a, w)
        kw = dict(acc_bits=g.acc_bits, bias_bits=g.bias_bits, mult_bits=g.mult_bits, max_shift=g.max_shift)
        if d.epilogue == Epilogue.REQ8:
            return requantize(acc, *self._requant(d, n), out_bits=g.act_bits, **kw)
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
        isa.check_record("ln", {"gamma": gamma, "beta": beta}, self.acc, f"{d.name}: ")
        if r["n"] != n:
            raise isa.DescriptorError(isa.ErrorCode.CTRL_BAD_PARAMS, f"{d.name}: LayerNorm record has n = {r['n']}, "
                                      f"the descriptor n = {n}")
        p = NL.LayerNormParams(gamma, beta, r["g_shift"], r["eps_q_hi"] << 32 | r["eps_q_lo"], r["out_bits"],
                               r["in_bits"], float("nan"), float("nan"))
        x = self.bufs[d.src][d.src_row:d.src_row + m, d.src_col:d.src_col + n]
        return NL.layernorm(x, p, self.acc.nonlinear)

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
            self.n_live = d.m
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
        self._write(d, m, n, y)
        st.out = np.asarray(y, dtype=np.int64).copy()
        return st


@dataclass
class Result:
    """One run: the OUTPUT and DEBUG regions' bytes and (``trace``) the executed steps."""
    output: bytes
    steps: list[Step]
    debug: bytes = b""


def run(image: ModelImage, acc, input_bytes: bytes, *, trace: bool = False) -> Result:
    """Execute the whole program on one input (the INPUT region's bytes)."""
    isa.check_program(image.program, acc)
    want = image.input["bytes"]
    if len(input_bytes) != want:
        raise ValueError(f"input must be {want} bytes (int8 patches, {image.input['rows']} rows of "
                         f"{image.input['cols']} at stride {image.input['stride']}), got {len(input_bytes)}")
    regions = {Region.MODEL: image.blob, Region.INPUT: bytes(input_bytes),
               Region.OUTPUT: bytearray(image.output["bytes"]), Region.DEBUG: bytearray(image.debug["bytes"])}
    mach = Machine(image, acc)
    steps = []
    for i, d in enumerate(image.program):
        st = mach.step(i, d, regions)
        if trace and st is not None:
            steps.append(st)
        if d.opcode == Op.END:
            break
    return Result(bytes(regions[Region.OUTPUT]), steps, bytes(regions[Region.DEBUG]))


def debug_steps(image: ModelImage, debug: bytes, n_live: int | None = None) -> list[Step]:
    """The per-descriptor results a debug build stored to the DEBUG region (``debug``: its bytes,
    from the RTL or :func:`run`), as :class:`Step` objects that :func:`stages` assembles (stages
    made of epilogue intermediates, the raw scores and fc1's 16-bit values, are not stored)."""
    info = image.debug
    if not info["stores"]:
        raise ValueError("the image is not a debug build (heatvit compile --debug)")
    if len(debug) != info["bytes"]:
        raise ValueError(f"debug region must be {info['bytes']} bytes, got {len(debug)}")
    live = image.program[0].m if n_live is None else n_live
    steps = []
    for e in info["stores"]:
        d = image.program[e["desc"]]
        m, k, n = isa.live_dims(d, live)
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
