"""The layer controller's instruction set: fixed-size descriptors of 32-bit words, read by DMA.

A program is a list of descriptors of :data:`DESC_WORDS` little-endian 32-bit words each; every
field sits at a fixed word and bit position (:data:`FIELDS`), so the controller decodes a
descriptor with wires, not a parser.  One opcode is one use of one engine: a GEMM with its
epilogue, a residual add, a LayerNorm, a row copy, a load from / store to DDR.  The first
descriptor is ``BEGIN`` (ISA version, descriptor count, config ID, initial live token count); the
last is ``END``.

Operands live in on-chip **token buffers** (:class:`Buf`; sizes from the ``buffers`` section of
:class:`heatvit.config.AcceleratorConfig`, :func:`token_buffers`): int8, token-major, one token
per row.  A descriptor names a window of a buffer by (buffer, first row, first column) and the
shape.  **Live token count**: the controller holds ``N_live`` (set by ``BEGIN``; the token
selector (``SELECT``) updates it).  A set ``m_live`` flag makes the row count ``min(m, N_live - src_row)``
(the descriptor is skipped when that is <= 0), ``k_live`` / ``n_live`` make ``K`` / ``N``
``min(k, N_live)`` (attention GEMMs, whose K or N is the token count).  A compiler emits a long
GEMM as row chunks of fixed size (``golden`` ``row_chunks``); clipped to ``N_live`` the chunks
are exactly the ones the golden model uses for ``N_live`` tokens.

DDR addresses in descriptors are byte offsets into a **region** (:class:`Region`): the model
image, the input (host-written patches) or the output buffer; the shell holds each region's base.

No Amaranth (and no golden) imports: the board driver uses this module.  ``docs/isa.md`` embeds
:func:`markdown`; ``testbench/test_isa.py`` keeps them equal.
"""

from __future__ import annotations

import numbers
import struct
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum

from .errors import ErrorCode
from .golden.nonlinear.layernorm import moments_bits

ISA_VERSION = (1, 3)
"""(major, minor): a controller runs programs of its major version and any minor <= its own.
1.2 added block-sparse GEMMs (``sparse``, ``tiles``); 1.3 moved a sparse GEMM's weights, with one
weight port, to the DMA beat after its bitmap (1.2: the next :data:`DDR_ALIGN` boundary), so a 1.2
program with a sparse GEMM is not a 1.3 one (:data:`SPARSE_LAYOUT_MINOR`)."""
SPARSE_LAYOUT_MINOR = 3
"""The first minor version whose sparse GEMMs have this layout: older programs with a sparse GEMM
are refused (recompile them)."""
DESC_WORDS = 8
"""32-bit words per descriptor."""
DESC_BYTES = 4 * DESC_WORDS
DDR_ALIGN = 64
"""Every DDR address in a descriptor (and every part of a parameter block) is a multiple of this."""
STRIDE_ALIGN = 16
"""A LOAD/STORE row stride is a multiple of this (one 128-bit AXI beat)."""


def isa_version_word(version: tuple[int, int] = ISA_VERSION) -> int:
    return version[0] << 16 | version[1]


class Op(IntEnum):
    """Opcodes (word 0, bits 7:0).  0 is never valid (zeroed memory is a bad descriptor)."""
    BEGIN = 0x01
    GEMM = 0x02
    ADD = 0x03
    LAYERNORM = 0x04
    COPY = 0x05
    LOAD = 0x06
    STORE = 0x07
    MEAN = 0x08
    SELECT = 0x09
    END = 0x0F


OP_DOC = {
    Op.BEGIN: "first descriptor: ISA version, descriptor count, config ID; sets N_live = m",
    Op.GEMM: "dst = epilogue(src[M,K] @ W[K,N]); W from DDR (addr; block-sparse with sparse = 1) or from buffer aux",
    Op.ADD: "dst = sat8(round((src * add_mult_a + aux * add_mult_b) / 2^add_shift)), M rows of N",
    Op.LAYERNORM: "dst = LayerNorm(src) over rows of N channels, parameters at addr",
    Op.COPY: "dst = src, M rows of N int8 (token gather/copy)",
    Op.LOAD: "dst = DDR[region + addr + i * stride, 0:N], M rows of N int8",
    Op.STORE: "DDR[region + addr + i * stride, 0:N] = src, M rows of N int8",
    Op.MEAN: "dst = src with columns k..N-1 of every row replaced by their mean over the M rows (selector global feature)",
    Op.SELECT: "token selector: combine scores from aux, keep/compact src -> dst, append the package token, "
               "update N_live and N_tail, write the stage's trace record at TRACE + addr",
    Op.END: "end of program: the controller raises done",
}


class Epilogue(IntEnum):
    """What the GEMM engine's int32 accumulators become (word 0, bits 11:8; GEMM only)."""
    REQ8 = 0
    REQ16_GELU = 1
    RAW_SOFTMAX = 2
    REQ8_GELU = 3
    REQ8_SOFTMAX = 4
    REQ8_SIGMOID = 5


EPILOGUE_DOC = {
    Epilogue.REQ8: "requantize to int8 (bias, mult, shift per channel) -> dst",
    Epilogue.REQ16_GELU: "requantize to int16 (per channel) -> GELU unit (GELU record) -> int8 dst",
    Epilogue.RAW_SOFTMAX: "raw int32 rows (no bias, no requant) -> softmax unit (softmax record) -> [0, 127] dst",
    Epilogue.REQ8_GELU: "requantize to int8 (per channel) -> GELU unit (gelu8 record) -> int8 dst (selector MLPs)",
    Epilogue.REQ8_SOFTMAX: "requantize to int8 (per channel) -> softmax unit over the N outputs (softmax8 record) -> "
                           "[0, 255] dst, stored as uint8 (selector keep/prune probabilities)",
    Epilogue.REQ8_SIGMOID: "requantize to int8 (per channel) -> sigmoid (sigmoid record) -> [0, 255] dst, stored as "
                           "uint8 (selector head weights)",
}


UNSIGNED_EPILOGUES = (Epilogue.REQ8_SOFTMAX, Epilogue.REQ8_SIGMOID)
"""Epilogues whose results are unsigned 8-bit ([0, 255]): the buffer byte holds the uint8 pattern."""
REQUANT_EPILOGUES = (Epilogue.REQ8, Epilogue.REQ16_GELU, Epilogue.REQ8_GELU, Epilogue.REQ8_SOFTMAX,
                     Epilogue.REQ8_SIGMOID)
"""Epilogues with per-channel requantization records."""
SELECTOR_OPS = (Op.MEAN, Op.SELECT)
SELECTOR_EPILOGUES = (Epilogue.REQ8_SIGMOID,)
"""What only token selectors use: left out of a ``selectors = False`` build
(:attr:`heatvit.config.AcceleratorConfig.selectors`), where they answer ``CTRL_UNSUPPORTED_OP``."""


class WSrc(IntEnum):
    """Where a GEMM's weights come from (word 0, bits 17:16)."""
    DDR = 0
    BUF = 1
    BUF_T = 2


WSRC_DOC = {
    WSrc.DDR: "packed weights in the parameter block at addr (golden pack_weights order); with sparse = 1 a tile "
              "bitmap and only its set tiles",
    WSrc.BUF: "W[k, n] = aux[aux_row + k, aux_col + n] (attn @ V: V from its token buffer)",
    WSrc.BUF_T: "W[k, n] = aux[aux_row + n, aux_col + k] (q @ K^T: K from its token buffer)",
}


class Region(IntEnum):
    """DDR region of a LOAD/STORE address (word 0, bits 19:18); the shell holds each base."""
    MODEL = 0
    INPUT = 1
    OUTPUT = 2
    DEBUG = 3


REGION_DOC = {
    Region.MODEL: "the model image (program, parameters, constant tensors such as the position embedding)",
    Region.INPUT: "the input: int8 patches written by the host",
    Region.OUTPUT: "the output: logits read back by the host",
    Region.DEBUG: "every layer's result, stored by a debug build (`heatvit compile --debug`) for stage checks",
}


WRITABLE_REGIONS = (Region.OUTPUT, Region.DEBUG)
"""The only regions a STORE may write: the accelerator never writes its model or its input."""


class Buf(IntEnum):
    """Token buffers (int8, token-major); sizes from :func:`token_buffers`."""
    X0 = 0
    X1 = 1
    N = 2
    QKV = 3
    P = 4
    CTX = 5
    T = 6
    H = 7


BUF_DOC = {
    Buf.X0: "residual stream (ping)",
    Buf.X1: "residual stream (pong)",
    Buf.N: "LayerNorm output (GEMM input); position embedding during the embedding",
    Buf.QKV: "q | k | v side by side (head h of q at column h*dh, of k at D + h*dh, of v at 2D + h*dh); weight port",
    Buf.P: "attention probabilities of one head, [0, 127]",
    Buf.CTX: "attention context, heads side by side",
    Buf.T: "GEMM output before a residual add (patch embedding, proj, fc2)",
    Buf.H: "MLP hidden (GELU output); patches during the embedding; logits",
}

WEIGHT_PORT_BUFFERS = (Buf.QKV,)
"""Buffers that may feed the engine's weight port (``WSrc.BUF`` / ``WSrc.BUF_T``)."""


@dataclass(frozen=True)
class BufferSpec:
    buf: Buf
    rows: int
    cols: int

    @property
    def bytes(self) -> int:
        return self.rows * self.cols


def token_buffers(acc) -> dict[Buf, BufferSpec]:
    """Rows and columns of every token buffer for an :class:`~heatvit.config.AcceleratorConfig`."""
    b = acc.buffers
    t, d, h = b.max_tokens, b.max_dim, b.max_hidden
    cols = {Buf.X0: d, Buf.X1: d, Buf.N: d, Buf.QKV: 3 * d, Buf.P: t, Buf.CTX: d, Buf.T: d, Buf.H: h}
    return {k: BufferSpec(k, t, c) for k, c in cols.items()}


def column_align(acc) -> int:
    """Column offsets of buffer windows are multiples of this: one buffer word (``max(R, C)`` int8)."""
    return max(acc.gemm.rows, acc.gemm.cols)


# -- fields ------------------------------------------------------------------------------------

_ALL = tuple(Op)
_ROWS = (Op.GEMM, Op.ADD, Op.LAYERNORM, Op.COPY, Op.LOAD, Op.STORE, Op.MEAN, Op.SELECT)
_WIN = (Op.GEMM, Op.ADD, Op.LAYERNORM, Op.COPY, Op.MEAN)
"""Opcodes with a source and a destination window (rows and columns)."""


@dataclass(frozen=True)
class Field:
    name: str
    word: int
    lsb: int
    width: int
    ops: tuple
    doc: str

    @property
    def mask(self) -> int:
        return (1 << self.width) - 1


FIELDS: tuple[Field, ...] = (
    Field("opcode", 0, 0, 8, _ALL, "Op"),
    Field("epilogue", 0, 8, 4, (Op.GEMM,), "Epilogue"),
    Field("m_live", 0, 12, 1, _ROWS, "1: rows = min(m, N_live - src_row) (LOAD: N_live - dst_row)"),
    Field("k_live", 0, 13, 1, (Op.GEMM,), "1: K = min(k, N_live) (attn @ V)"),
    Field("n_live", 0, 14, 1, (Op.GEMM,), "1: N = min(n, N_live) (q @ K^T)"),
    Field("sparse", 0, 15, 1, (Op.GEMM,), "1: block-sparse weights (wsrc DDR): the parameter block holds a tile "
          "bitmap and only the tiles it sets"),
    Field("wsrc", 0, 16, 2, (Op.GEMM,), "WSrc"),
    Field("region", 0, 18, 2, (Op.LOAD, Op.STORE), "Region of addr"),
    Field("src", 1, 0, 4, _WIN + (Op.STORE, Op.SELECT), "source buffer (Buf)"),
    Field("dst", 1, 4, 4, _WIN + (Op.LOAD, Op.SELECT), "destination buffer (Buf)"),
    Field("aux", 1, 8, 4, (Op.GEMM, Op.ADD, Op.SELECT), "GEMM: weight buffer (WSrc.BUF/BUF_T); ADD: second operand; "
          "SELECT: score buffer"),
    Field("tiles", 1, 12, 20, (Op.GEMM,), "sparse: weight tiles stored (the bitmap's set bits); else 0"),
    Field("add_shift", 1, 16, 6, (Op.ADD,), "right shift of the residual add"),
    Field("heads", 1, 16, 8, (Op.SELECT,), "attention heads H: (a, t) pairs per token"),
    Field("src_row", 2, 0, 16, _WIN + (Op.STORE,), "first source row"),
    Field("dst_row", 2, 16, 16, _WIN + (Op.LOAD,), "first destination row"),
    Field("src_col", 3, 0, 16, _WIN + (Op.STORE, Op.SELECT), "first source column"),
    Field("dst_col", 3, 16, 16, _WIN + (Op.LOAD, Op.SELECT), "first destination column"),
    Field("aux_row", 4, 0, 16, (Op.GEMM, Op.ADD), "first row of aux"),
    Field("a_col", 4, 0, 16, (Op.SELECT,), "column of head 0's weight a in aux (head h: a_col + h)"),
    Field("aux_col", 4, 16, 16, (Op.GEMM, Op.ADD, Op.SELECT), "first column of aux (SELECT: head h's keep "
          "probability t at aux_col + h * column_align)"),
    Field("m", 5, 0, 16, _ROWS + (Op.BEGIN,), "rows M (tokens); BEGIN: initial N_live"),
    Field("stride", 5, 16, 16, (Op.LOAD, Op.STORE), "DDR row stride in bytes"),
    Field("k", 6, 0, 16, (Op.GEMM, Op.MEAN), "reduction length K (MEAN: leading columns copied unchanged)"),
    Field("threshold", 6, 0, 16, (Op.SELECT,), "keep a token iff its score > threshold (UQ0.score_bits)"),
    Field("n", 6, 16, 16, _ROWS, "columns N (GEMM: output channels; SELECT: token channels D)"),
    Field("addr", 7, 0, 32, (Op.GEMM, Op.LAYERNORM, Op.LOAD, Op.STORE, Op.SELECT),
          "DDR byte offset (parameter block; LOAD/STORE: data in region; SELECT: trace record in TRACE)"),
    Field("add_mult_a", 7, 0, 16, (Op.ADD,), "multiplier of src"),
    Field("add_mult_b", 7, 16, 16, (Op.ADD,), "multiplier of aux"),
    Field("version", 1, 0, 32, (Op.BEGIN,), "ISA version: major << 16 | minor"),
    Field("count", 2, 0, 32, (Op.BEGIN,), "descriptors in the program, BEGIN and END included"),
    Field("config_id", 3, 0, 32, (Op.BEGIN,), "first 8 hex digits of AcceleratorConfig.digest()"),
)
FIELD = {f.name: f for f in FIELDS}


def op_fields(op: Op) -> tuple[Field, ...]:
    return tuple(f for f in FIELDS if op in f.ops)


def _check_layout() -> None:
    """No two fields of one opcode overlap, every field lies inside its word (checked at import)."""
    for op in Op:
        used = [0] * DESC_WORDS
        for f in op_fields(op):
            bits = f.mask << f.lsb
            if f.lsb + f.width > 32 or used[f.word] & bits:
                raise AssertionError(f"isa: field {f.name} of {op.name} overlaps or leaves word {f.word}")
            used[f.word] |= bits


_check_layout()


class DescriptorError(ValueError):
    """A descriptor that cannot run; ``code`` is the hardware :class:`ErrorCode` the controller raises."""

    def __init__(self, code: ErrorCode, message: str):
        self.code = ErrorCode(code)
        super().__init__(message)


@dataclass(frozen=True)
class Descriptor:
    """One descriptor; unused fields are 0.  ``encode``/``decode`` convert to/from words."""
    opcode: Op
    epilogue: int = 0
    m_live: int = 0
    k_live: int = 0
    n_live: int = 0
    sparse: int = 0
    wsrc: int = 0
    region: int = 0
    src: int = 0
    dst: int = 0
    aux: int = 0
    tiles: int = 0
    add_shift: int = 0
    heads: int = 0
    src_row: int = 0
    dst_row: int = 0
    src_col: int = 0
    dst_col: int = 0
    aux_row: int = 0
    a_col: int = 0
    aux_col: int = 0
    m: int = 0
    stride: int = 0
    k: int = 0
    threshold: int = 0
    n: int = 0
    addr: int = 0
    add_mult_a: int = 0
    add_mult_b: int = 0
    version: int = 0
    count: int = 0
    config_id: int = 0
    name: str = field(default="", compare=False)
    """Not encoded: the layer this descriptor belongs to (the compiler's memory map keeps it)."""

    def with_(self, **kw) -> "Descriptor":
        return replace(self, **kw)


def encode(d: Descriptor) -> list[int]:
    """The descriptor's :data:`DESC_WORDS` words; a field out of its range or set although its
    opcode does not use it raises ``DescriptorError`` naming the field and the limit."""
    try:
        op = Op(d.opcode)
    except ValueError:
        raise DescriptorError(ErrorCode.CTRL_BAD_OPCODE, f"opcode = {d.opcode!r} is not an Op "
                              f"({', '.join(f'{o.name}={o.value}' for o in Op)})") from None
    used = {f.name for f in op_fields(op)}
    words = [0] * DESC_WORDS
    for f in fields(Descriptor):
        if f.name == "name":
            continue
        v = getattr(d, f.name)
        if f.name not in used:
            if v:
                raise DescriptorError(ErrorCode.CTRL_BAD_FIELD,
                                      f"{op.name}: field {f.name} = {v!r} must be 0 (not used by {op.name})")
            continue
        fd = FIELD[f.name]
        if not isinstance(v, numbers.Integral) or (isinstance(v, bool) and fd.width > 1):
            raise DescriptorError(ErrorCode.CTRL_BAD_FIELD, f"{op.name}: field {f.name} must be an int, not {v!r}")
        if not 0 <= int(v) <= fd.mask:
            raise DescriptorError(ErrorCode.CTRL_BAD_FIELD, f"{op.name}: field {f.name} = {v} is out of range; "
                                  f"allowed [0, {fd.mask}] ({fd.width} bits)")
        words[fd.word] |= int(v) << fd.lsb
    return words


def decode(words) -> Descriptor:
    """Inverse of :func:`encode`: ``DescriptorError`` on an unknown opcode or on bits set outside
    the opcode's fields (the controller's ``CTRL_BAD_OPCODE`` / ``CTRL_BAD_FIELD``)."""
    words = [int(w) for w in words]
    if len(words) != DESC_WORDS:
        raise DescriptorError(ErrorCode.CTRL_BAD_FIELD, f"a descriptor has {DESC_WORDS} words, got {len(words)}")
    for i, w in enumerate(words):
        if not 0 <= w <= 0xFFFF_FFFF:
            raise DescriptorError(ErrorCode.CTRL_BAD_FIELD, f"word {i} = {w} is not a 32-bit unsigned value")
    code = words[0] & 0xFF
    try:
        op = Op(code)
    except ValueError:
        raise DescriptorError(ErrorCode.CTRL_BAD_OPCODE, f"opcode {code:#04x} is not an Op") from None
    kw, covered = {}, [0] * DESC_WORDS
    for f in op_fields(op):
        kw[f.name] = (words[f.word] >> f.lsb) & f.mask
        covered[f.word] |= f.mask << f.lsb
    for i, w in enumerate(words):
        if w & ~covered[i]:
            raise DescriptorError(ErrorCode.CTRL_BAD_FIELD, f"{op.name}: word {i} has bits {w & ~covered[i]:#010x} "
                                  f"set outside the opcode's fields")
    kw["opcode"] = op
    return Descriptor(**kw)


def pack_program(descs) -> bytes:
    return b"".join(struct.pack(f"<{DESC_WORDS}I", *encode(d)) for d in descs)


def unpack_program(blob: bytes) -> list[Descriptor]:
    if len(blob) % DESC_BYTES:
        raise ValueError(f"program of {len(blob)} bytes is not a multiple of {DESC_BYTES} (one descriptor)")
    return [decode(struct.unpack_from(f"<{DESC_WORDS}I", blob, i)) for i in range(0, len(blob), DESC_BYTES)]


# -- semantics ---------------------------------------------------------------------------------

def live_dims(d: Descriptor, n_live: int) -> tuple[int, int, int]:
    """Effective (M, K, N) of a descriptor when the controller's live token count is ``n_live``.
    M = 0: the descriptor is skipped."""
    first = d.dst_row if d.opcode == Op.LOAD else d.src_row
    m = min(d.m, max(0, n_live - first)) if d.m_live else d.m
    k = min(d.k, n_live) if d.k_live else d.k
    n = min(d.n, n_live) if d.n_live else d.n
    return m, k, n


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _align(a: int, b: int = DDR_ALIGN) -> int:
    return _ceil(a, b) * b


REQUANT_RECORD_BYTES = 8
"""One output channel: bias int32 (bytes 0-3), mult uint24 (bytes 4-6), shift uint8 (byte 7),
little-endian; the shell's parameter record (``regmap.PARAM_RECORD_BYTES``)."""
NL_RECORD_BYTES = 32
"""GELU / softmax / LayerNorm header record: eight little-endian 32-bit words."""


def param_block(acc, d: Descriptor) -> dict[str, tuple[int, int]]:
    """Parts of a GEMM's or LayerNorm's parameter block: ``{part: (offset from addr, bytes)}``,
    each part starting at a multiple of :data:`DDR_ALIGN`, but the ``weights`` of a sparse GEMM
    at one weight port (``weight_beats_per_cycle = 1``): right after its ``bitmap``, at the next
    multiple of ``shell.data_bytes`` (a DMA beat).  Sized for the descriptor's full
    (not live-clipped) N and K.

    GEMM: ``requant`` (every epilogue but RAW_SOFTMAX: N records), ``gelu`` / ``softmax`` /
    ``sigmoid`` (one record),
    ``weights`` (WSrc.DDR: NT*KT*R words of C int8, golden ``pack_weights`` order); a sparse
    GEMM (``sparse`` = 1) has ``bitmap`` (:func:`pack_bitmap`) before ``weights``, which then
    holds only its ``tiles`` set tiles (``tiles * R`` words, same order).  With
    ``acc.weight_beats_per_cycle = P > 1`` the ``weights`` part is striped over the ``P`` weight
    ports (:func:`stripe_weights`; its size rounded up to ``P`` beats).
    LAYERNORM: ``ln`` (header record), ``gamma`` (N x int32), ``beta`` (N x int64).
    """
    g = acc.gemm
    parts: list[tuple[str, int]] = []
    if d.opcode == Op.GEMM:
        if d.epilogue in REQUANT_EPILOGUES:
            parts.append(("requant", d.n * REQUANT_RECORD_BYTES))
        if d.epilogue in (Epilogue.REQ16_GELU, Epilogue.REQ8_GELU):
            parts.append(("gelu", NL_RECORD_BYTES))
        if d.epilogue in (Epilogue.RAW_SOFTMAX, Epilogue.REQ8_SOFTMAX):
            parts.append(("softmax", NL_RECORD_BYTES))
        if d.epilogue == Epilogue.REQ8_SIGMOID:
            parts.append(("sigmoid", NL_RECORD_BYTES))
        if d.wsrc == WSrc.DDR and d.sparse:
            parts.append(("bitmap", bitmap_bytes(acc, d)))
            parts.append(("weights", stripe_bytes(acc, d.tiles * g.rows * g.cols)))
        elif d.wsrc == WSrc.DDR:
            parts.append(("weights", stripe_bytes(acc, _ceil(d.n, g.cols) * _ceil(d.k, g.rows) * g.rows * g.cols)))
    elif d.opcode == Op.LAYERNORM:
        parts += [("ln", NL_RECORD_BYTES), ("gamma", 4 * d.n), ("beta", 8 * d.n)]
    else:
        raise ValueError(f"{Op(d.opcode).name} has no parameter block")
    out, off = {}, 0
    for name, size in parts:
        out[name] = (off, size)
        # one weight port: a sparse GEMM's weights follow its bitmap at the next DMA beat, so the
        # executor's parameter stream carries no padding between them
        beat = name == "bitmap" and acc.weight_beats_per_cycle == 1
        off = _align(off + size, acc.shell.data_bytes if beat else DDR_ALIGN)
    return out


def stripe_bytes(acc, size: int) -> int:
    """Bytes of a ``weights`` part holding ``size`` bytes of weight stream: ``size`` when
    ``acc.weight_beats_per_cycle`` is 1, else rounded up to whole rows of ``P`` beats."""
    row = acc.weight_beats_per_cycle * acc.shell.data_bytes
    return size if acc.weight_beats_per_cycle == 1 else _ceil(size, row) * row


def stripe_weights(acc, stream: bytes) -> bytes:
    """The ``weights`` part's bytes for the weight stream ``stream`` (:func:`heatvit.golden.pack_weights`
    order).  ``P = acc.weight_beats_per_cycle`` weight ports each read one contiguous share of
    the part, so the stream is cut into beats of ``D = shell.data_bytes`` and beat ``j`` is stored
    in share ``j % P`` at position ``j // P`` (shares one after another, each ``B / P`` beats of the
    zero-padded stream's ``B``): the ports' ``j``-th beats, side by side, are the stream's ``j``-th
    ``P D`` bytes (:class:`heatvit.rtl.accel.weight_ports.WeightPorts`).  ``P = 1``: ``stream``."""
    import numpy as np
    p, d = acc.weight_beats_per_cycle, acc.shell.data_bytes
    if p == 1:
        return bytes(stream)
    a = np.zeros(stripe_bytes(acc, len(stream)), np.uint8)
    a[:len(stream)] = np.frombuffer(bytes(stream), np.uint8)
    return a.reshape(-1, p, d).transpose(1, 0, 2).tobytes()


def unstripe_weights(acc, part: bytes, size: int) -> bytes:
    """Inverse of :func:`stripe_weights`: the first ``size`` bytes of the weight stream."""
    import numpy as np
    p, d = acc.weight_beats_per_cycle, acc.shell.data_bytes
    if p == 1:
        return bytes(part[:size])
    if len(part) % (p * d):
        raise ValueError(f"unstripe_weights: a part of {len(part)} bytes is not whole rows of {p} x {d} bytes")
    a = np.frombuffer(bytes(part), np.uint8).reshape(p, -1, d).transpose(1, 0, 2)
    return a.tobytes()[:size]


def tile_grid_size(acc, d: Descriptor) -> int:
    """``KT * NT``: weight tiles of a GEMM's full (not live-clipped) ``k x n`` weights."""
    return _ceil(d.k, acc.gemm.rows) * _ceil(d.n, acc.gemm.cols)


def bitmap_bytes(acc, d: Descriptor) -> int:
    """Bytes of a sparse GEMM's ``bitmap`` part: one bit per weight tile, ``ceil(KT * NT / 8)``."""
    return _ceil(tile_grid_size(acc, d), 8)


def pack_bitmap(bitmap) -> bytes:
    """A tile bitmap (``bitmap[kt][nt]`` truthy = tile stored, shape ``(KT, NT)``, the layout of
    ``golden.gemm.tile_bitmap``) as the ``bitmap`` part: bit ``i = nt * KT + kt`` (the weight
    stream's tile order) is bit ``i % 8`` of byte ``i // 8`` (LSB first), zero-padded."""
    rows = [list(r) for r in bitmap]
    kt_n, nt_n = len(rows), len(rows[0]) if rows else 0
    out = bytearray(_ceil(kt_n * nt_n, 8))
    for nt in range(nt_n):
        for kt in range(kt_n):
            if rows[kt][nt]:
                i = nt * kt_n + kt
                out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def unpack_bitmap(blob: bytes, kt_n: int, nt_n: int) -> list[list[bool]]:
    """Inverse of :func:`pack_bitmap`: ``(KT, NT)`` nested lists of bool (bits past ``KT * NT``
    are not read)."""
    if len(blob) < _ceil(kt_n * nt_n, 8):
        raise ValueError(f"bitmap of {len(blob)} bytes is too short for {kt_n} x {nt_n} tiles")
    return [[bool(blob[(nt * kt_n + kt) >> 3] >> ((nt * kt_n + kt) & 7) & 1) for nt in range(nt_n)]
            for kt in range(kt_n)]


def param_block_bytes(acc, d: Descriptor) -> int:
    parts = param_block(acc, d)
    return max((_align(o + s) for o, s in parts.values()), default=0)


# -- records -----------------------------------------------------------------------------------

def pack_requant(bias, mult, shift) -> bytes:
    """Per-channel requantization records (:data:`REQUANT_RECORD_BYTES` each)."""
    out = bytearray()
    for b, m, s in zip(bias, mult, shift):
        b, m, s = int(b), int(m), int(s)
        if not (-(1 << 31) <= b < (1 << 31) and 0 <= m < (1 << 24) and 0 <= s < 256):
            raise ValueError(f"requant record (bias {b}, mult {m}, shift {s}) is out of range; "
                             f"allowed int32, uint24, uint8")
        out += struct.pack("<iI", b, m | s << 24)
    return bytes(out)


def unpack_requant(blob: bytes, n: int) -> tuple[list[int], list[int], list[int]]:
    bias, mult, shift = [], [], []
    for i in range(n):
        b, ms = struct.unpack_from("<iI", blob, i * REQUANT_RECORD_BYTES)
        bias.append(b), mult.append(ms & 0xFFFFFF), shift.append(ms >> 24)
    return bias, mult, shift


GELU_RECORD = ("in_mult", "in_shift", "out_mult", "out_shift", "out_min", "out_max", "in_bits")
"""GELU record words (``heatvit.golden.nonlinear.ActParams``); out_min/out_max signed.  The
sigmoid record has the same words."""
SIGMOID_RECORD = GELU_RECORD
SOFTMAX_RECORD = ("mult", "shift", "out_max", "in_bits")
"""Softmax record words (``heatvit.golden.nonlinear.SoftmaxParams``)."""
LN_RECORD = ("g_shift", "eps_q_lo", "eps_q_hi", "n", "out_bits", "in_bits")
"""LayerNorm header words (``heatvit.golden.nonlinear.LayerNormParams``); eps_q = hi << 32 | lo."""


def record_limits(acc) -> dict[str, dict[str, tuple[int, int]]]:
    """Allowed range of every record word (and of the per-channel values), per record kind: what
    the compiler writes and what the controller may rely on; :func:`check_record` applies it."""
    g = acc.gemm
    return {
        "requant": {"bias": (-(1 << (g.bias_bits - 1)), (1 << (g.bias_bits - 1)) - 1),
                    "mult": (0, (1 << g.mult_bits) - 1), "shift": (0, g.max_shift)},
        "gelu": {"in_mult": (0, 0xFFFF), "in_shift": (0, 63), "out_mult": (0, 0xFFFF), "out_shift": (0, 63),
                 "out_min": (-128, 127), "out_max": (-128, 127), "in_bits": (16, 16)},
        "softmax": {"mult": (1, (1 << 24) - 1), "shift": (0, 63), "out_max": (1, 127), "in_bits": (g.acc_bits, g.acc_bits)},
        "ln": {"g_shift": (0, 30), "n": (1, acc.nonlinear.max_dim), "out_bits": (8, 8), "in_bits": (8, 8),
               "eps_q": (0, ((1 << moments_bits(8, acc.nonlinear.dim_bits)) - 1) // 2),
               "gamma": (-(1 << 17) + 1, (1 << 17) - 1), "beta": (-(1 << 47) + 1, (1 << 47) - 1)},
        "gelu8": {"in_mult": (0, 0xFFFF), "in_shift": (0, 63), "out_mult": (0, 0xFFFF), "out_shift": (0, 63),
                  "out_min": (-128, 127), "out_max": (-128, 127), "in_bits": (8, 8)},
        "softmax8": {"mult": (1, (1 << 24) - 1), "shift": (0, 63), "out_max": (1, 255), "in_bits": (8, 8)},
        "sigmoid": {"in_mult": (0, 0xFFFF), "in_shift": (0, 63), "out_mult": (0, 0xFFFF), "out_shift": (0, 63),
                    "out_min": (0, 0), "out_max": (1, 255), "in_bits": (8, 8)},
    }


RECORD_KIND = {Epilogue.REQ16_GELU: ("gelu", "gelu"), Epilogue.RAW_SOFTMAX: ("softmax", "softmax"),
               Epilogue.REQ8_GELU: ("gelu", "gelu8"), Epilogue.REQ8_SOFTMAX: ("softmax", "softmax8"),
               Epilogue.REQ8_SIGMOID: ("sigmoid", "sigmoid")}
"""Epilogue -> (parameter-block part, :func:`record_limits` kind) of its nonlinear record."""


def check_record(kind: str, values: dict, acc, where: str = "") -> None:
    """``DescriptorError`` (``CTRL_BAD_PARAMS``) naming the first value outside :func:`record_limits`;
    ``values`` maps a word name to an int or a sequence of ints (per-channel values)."""
    for name, (lo, hi) in record_limits(acc)[kind].items():
        if name not in values:
            continue
        v = values[name]
        vals = [int(x) for x in v] if hasattr(v, "__len__") else [int(v)]
        bad = [x for x in vals if not lo <= x <= hi]
        if bad:
            raise DescriptorError(ErrorCode.CTRL_BAD_PARAMS, f"{where}{kind} record: {name} = {bad[0]} is out of "
                                  f"range; allowed [{lo}, {hi}]")


def pack_record(names: tuple[str, ...], values: dict) -> bytes:
    """An :data:`NL_RECORD_BYTES` record of the named 32-bit words (signed or unsigned), zero-padded."""
    words = []
    for nm in names:
        v = int(values[nm])
        if not -(1 << 31) <= v < (1 << 32):
            raise ValueError(f"record word {nm} = {v} does not fit 32 bits")
        words.append(v & 0xFFFF_FFFF)
    return struct.pack(f"<{NL_RECORD_BYTES // 4}I", *(words + [0] * (NL_RECORD_BYTES // 4 - len(words))))


def unpack_record(names: tuple[str, ...], blob: bytes, signed: tuple[str, ...] = ()) -> dict[str, int]:
    vals = struct.unpack_from(f"<{len(names)}I", blob)
    out = {}
    for nm, v in zip(names, vals):
        out[nm] = v - (1 << 32) if nm in signed and v >= (1 << 31) else v
    return out


# -- checks ------------------------------------------------------------------------------------

def softmax_row_limit(acc) -> int:
    """The longest softmax row (``n`` of a ``RAW_SOFTMAX`` / ``REQ8_SOFTMAX`` GEMM): the score
    memory holds rows of this many scores (``rtl/accel/softmax_rows.py``)."""
    return min(acc.gemm.max_n, acc.nonlinear.max_tokens, acc.buffers.max_tokens)


def check(d: Descriptor, acc, n_live: int | None = None) -> None:
    """Every check the controller makes before executing ``d`` (``DescriptorError`` with the
    hardware error code; the message names the field and its limit).  ``n_live``: check the
    live-clipped shape (default: the full one)."""
    encode(d)                                   # field ranges and unused fields
    op = Op(d.opcode)
    bufs = token_buffers(acc)
    g = acc.gemm
    lim = acc.buffers.max_tokens

    def bad(code, msg):
        raise DescriptorError(code, f"{op.name}{' ' + d.name if d.name else ''}: {msg}")

    if op == Op.BEGIN:
        if d.m < 1 or d.m > lim:
            bad(ErrorCode.CTRL_BAD_SHAPE, f"m (initial N_live) = {d.m} is out of range; allowed [1, {lim}]")
        return
    if op == Op.END:
        return
    if not acc.selectors and (op in SELECTOR_OPS or (op == Op.GEMM and d.epilogue in SELECTOR_EPILOGUES)):
        what = f"epilogue {Epilogue(d.epilogue).name}" if op == Op.GEMM else "this opcode"
        bad(ErrorCode.CTRL_UNSUPPORTED_OP, f"{what} needs the token-selector hardware; this config has "
            f"selectors = False")
    if op == Op.GEMM:
        for name, enum in (("epilogue", Epilogue), ("wsrc", WSrc)):
            if getattr(d, name) not in set(enum):
                bad(ErrorCode.CTRL_BAD_FIELD, f"{name} = {getattr(d, name)} is not a {enum.__name__}")
        if d.wsrc == WSrc.DDR and (d.k_live or d.n_live):
            bad(ErrorCode.CTRL_BAD_FIELD, "k_live / n_live need weights from a buffer (wsrc BUF or BUF_T)")
        if d.sparse and d.wsrc != WSrc.DDR:
            bad(ErrorCode.CTRL_BAD_FIELD, "sparse = 1 needs weights from DDR (wsrc DDR)")
        if d.tiles and not d.sparse:
            bad(ErrorCode.CTRL_BAD_FIELD, f"tiles = {d.tiles} needs sparse = 1")
    if op == Op.STORE and d.region not in WRITABLE_REGIONS:
        bad(ErrorCode.CTRL_BAD_FIELD, f"region = {Region(d.region).name}: STORE writes only "
            f"{' or '.join(r.name for r in WRITABLE_REGIONS)}")
    m, k, n = (d.m, d.k, d.n) if n_live is None else live_dims(d, n_live)
    if n_live is None or m > 0:
        for name, v in (("m", d.m), ("n", d.n)) + ((("k", d.k),) if op == Op.GEMM else ()):
            if v == 0:
                bad(ErrorCode.ZERO_DIMENSION if op == Op.GEMM else ErrorCode.CTRL_BAD_SHAPE, f"{name} = 0")
    if m == 0:
        return
    align = column_align(acc)

    def window(role, buf_field, row, col, rows, cols):
        b = getattr(d, buf_field)
        if b not in set(Buf):
            bad(ErrorCode.CTRL_BAD_BUFFER, f"{buf_field} = {b} is not a token buffer; allowed [0, {len(Buf) - 1}]")
        spec = bufs[Buf(b)]
        if row + rows > spec.rows:
            bad(ErrorCode.CTRL_BAD_SHAPE, f"{role} rows {row} + {rows} exceed buffer {Buf(b).name}'s {spec.rows} rows")
        if col + cols > spec.cols:
            bad(ErrorCode.CTRL_BAD_SHAPE, f"{role} columns {col} + {cols} exceed buffer {Buf(b).name}'s "
                f"{spec.cols} columns")
        if col % align:
            bad(ErrorCode.CTRL_BAD_ADDRESS, f"{role} column {col} is not a multiple of {align} (one buffer word)")

    def ddr(size):
        if d.addr % DDR_ALIGN:
            bad(ErrorCode.CTRL_BAD_ADDRESS, f"addr = {d.addr:#x} is not a multiple of {DDR_ALIGN}")
        if d.addr + size > 1 << 32:
            bad(ErrorCode.CTRL_BAD_ADDRESS, f"addr {d.addr:#x} + {size} bytes passes 4 GiB")

    if op == Op.GEMM:
        if m > g.max_m:
            bad(ErrorCode.M_TOO_LARGE, f"m = {m} exceeds gemm.max_m = {g.max_m}")
        if k > g.max_k:
            bad(ErrorCode.K_TOO_LARGE, f"k = {k} exceeds gemm.max_k = {g.max_k}")
        if n > g.max_n:
            bad(ErrorCode.N_TOO_LARGE, f"n = {n} exceeds gemm.max_n = {g.max_n}")
        if d.sparse and d.tiles > tile_grid_size(acc, d):
            bad(ErrorCode.TILE_COUNT_TOO_LARGE, f"tiles = {d.tiles} exceeds the {tile_grid_size(acc, d)} tiles of "
                f"ceil(k/R) * ceil(n/C) = ceil({d.k}/{g.rows}) * ceil({d.n}/{g.cols})")
        words = _ceil(k, g.rows) * m
        if words > g.act_buffer_words:
            bad(ErrorCode.ACT_BUFFER_OVERFLOW, f"ceil(k/R) * m = ceil({k}/{g.rows}) * {m} = {words} exceeds "
                f"gemm.act_buffer_words = {g.act_buffer_words}")
        window("source", "src", d.src_row, d.src_col, m, k)
        window("destination", "dst", d.dst_row, d.dst_col, m, n)
        if d.wsrc != WSrc.DDR:
            if d.aux not in WEIGHT_PORT_BUFFERS:
                bad(ErrorCode.CTRL_BAD_BUFFER, f"aux = {d.aux} cannot feed the weight port; allowed "
                    f"{', '.join(f'{b.name}={b.value}' for b in WEIGHT_PORT_BUFFERS)}")
            r, c = (k, n) if d.wsrc == WSrc.BUF else (n, k)
            window("weight", "aux", d.aux_row, d.aux_col, r, c)
        if d.epilogue in (Epilogue.RAW_SOFTMAX, Epilogue.REQ8_SOFTMAX) and n > softmax_row_limit(acc):
            bad(ErrorCode.N_TOO_LARGE, f"softmax row n = {n} exceeds the score memory's row of "
                f"{softmax_row_limit(acc)} (min of gemm.max_n, nonlinear.max_tokens, buffers.max_tokens)")
        ddr(param_block_bytes(acc, d))
    elif op == Op.SELECT:
        ts = acc.toksel
        if d.heads < 1:
            bad(ErrorCode.CTRL_BAD_FIELD, "heads = 0; allowed >= 1")
        if d.m > ts.max_tokens:
            bad(ErrorCode.CTRL_BAD_SHAPE, f"m = {d.m} exceeds toksel.max_tokens = {ts.max_tokens}")
        if n % ts.lanes:
            bad(ErrorCode.CTRL_BAD_SHAPE, f"n = {n} is not a multiple of toksel.lanes = {ts.lanes} (whole token words)")
        if d.threshold > ts.score_max:
            bad(ErrorCode.CTRL_BAD_FIELD, f"threshold = {d.threshold} exceeds the largest score "
                f"{ts.score_max} (toksel.score_bits = {ts.score_bits})")
        window("source", "src", 0, d.src_col, m, n)
        window("destination", "dst", 0, d.dst_col, m, n)
        window("keep probabilities", "aux", 0, d.aux_col, m, (d.heads - 1) * align + 1)
        window("head weights", "aux", 0, d.a_col, m, d.heads)
        ddr(trace_record_bytes(d.m))
    elif op in (Op.ADD, Op.LAYERNORM, Op.COPY, Op.MEAN):
        if op == Op.MEAN and d.k >= n:
            bad(ErrorCode.CTRL_BAD_SHAPE, f"k = {d.k} (columns copied unchanged) must be < n = {n}")
        window("source", "src", d.src_row, d.src_col, m, n)
        window("destination", "dst", d.dst_row, d.dst_col, m, n)
        if op == Op.ADD:
            window("second operand", "aux", d.aux_row, d.aux_col, m, n)
        if op == Op.LAYERNORM:
            if n > acc.nonlinear.max_dim:
                bad(ErrorCode.CTRL_BAD_SHAPE, f"n = {n} exceeds nonlinear.max_dim = {acc.nonlinear.max_dim}")
            ddr(param_block_bytes(acc, d))
    elif op in (Op.LOAD, Op.STORE):
        if op == Op.LOAD:
            window("destination", "dst", d.dst_row, d.dst_col, m, n)
        else:
            window("source", "src", d.src_row, d.src_col, m, n)
        if d.stride < n or d.stride % STRIDE_ALIGN:
            bad(ErrorCode.CTRL_BAD_ADDRESS, f"stride = {d.stride} must be >= n = {n} and a multiple of {STRIDE_ALIGN}")
        ddr(d.stride * m)


def trace_record_bytes(m: int) -> int:
    """Bytes of one SELECT trace record for up to ``m`` input tokens (:func:`pack_trace_record`)."""
    return _align(8 + _ceil(m, 8))


def pack_trace_record(n_in: int, n_out: int, n_kept: int, n_tail: int, keep, m: int) -> bytes:
    """A SELECT stage's trace record: word 0 = ``n_in | n_out << 16`` (tokens entering and
    leaving the stage), word 1 = ``n_kept | n_tail << 16`` (kept input tokens, always-kept tail
    after the stage), then the keep mask, bit ``i`` of byte ``8 + i // 8`` = token ``i`` kept
    (LSB first; bits from ``n_in`` on are 0), zero-padded to :func:`trace_record_bytes`."""
    bits = bytearray(_ceil(m, 8))
    for i, k in enumerate(keep):
        if k:
            bits[i >> 3] |= 1 << (i & 7)
    blob = struct.pack("<II", n_in | n_out << 16, n_kept | n_tail << 16) + bytes(bits)
    return blob + bytes(trace_record_bytes(m) - len(blob))


def unpack_trace_record(blob: bytes) -> dict:
    """Inverse of :func:`pack_trace_record`: ``n_in, n_out, n_kept, n_tail, keep`` (list of bool)."""
    w0, w1 = struct.unpack_from("<II", blob)
    n_in = w0 & 0xFFFF
    if len(blob) < 8 + _ceil(n_in, 8):
        raise ValueError(f"trace record of {len(blob)} bytes is too short for {n_in} tokens")
    keep = [bool(blob[8 + (i >> 3)] >> (i & 7) & 1) for i in range(n_in)]
    return {"n_in": n_in, "n_out": w0 >> 16, "n_kept": w1 & 0xFFFF, "n_tail": w1 >> 16, "keep": keep}


def config_id(acc) -> int:
    """The ``BEGIN`` descriptor's (and the shell's ``CONFIG_ID``) value for a config."""
    return int(acc.digest()[:8], 16)


def begin(acc, count: int, tokens: int) -> Descriptor:
    return Descriptor(Op.BEGIN, version=isa_version_word(), count=count, config_id=config_id(acc), m=tokens)


def check_program(descs, acc) -> None:
    """Program-level checks (``CTRL_BAD_PROGRAM``) plus :func:`check` of every descriptor."""
    descs = list(descs)
    if not descs or descs[0].opcode != Op.BEGIN:
        raise DescriptorError(ErrorCode.CTRL_BAD_PROGRAM, "a program starts with BEGIN")
    b = descs[0]
    major, minor = b.version >> 16, b.version & 0xFFFF
    if major != ISA_VERSION[0] or minor > ISA_VERSION[1]:
        raise DescriptorError(ErrorCode.CTRL_BAD_PROGRAM, f"BEGIN: ISA version {major}.{minor} is not supported; "
                              f"allowed {ISA_VERSION[0]}.0 .. {ISA_VERSION[0]}.{ISA_VERSION[1]}")
    if b.config_id != config_id(acc):
        raise DescriptorError(ErrorCode.CTRL_BAD_PROGRAM, f"BEGIN: config ID {b.config_id:#010x} != "
                              f"{config_id(acc):#010x} (AcceleratorConfig {acc.digest()})")
    if b.count != len(descs):
        raise DescriptorError(ErrorCode.CTRL_BAD_PROGRAM, f"BEGIN: count = {b.count} but the program has "
                              f"{len(descs)} descriptors")
    ends = [i for i, d in enumerate(descs) if d.opcode == Op.END]
    if ends != [len(descs) - 1] or any(d.opcode == Op.BEGIN for d in descs[1:]):
        raise DescriptorError(ErrorCode.CTRL_BAD_PROGRAM, "a program has one BEGIN first and one END last")
    for i, d in enumerate(descs):
        try:
            check(d, acc)
        except DescriptorError as e:
            raise DescriptorError(e.code, f"descriptor {i}: {e}") from None


# -- documentation -----------------------------------------------------------------------------

def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


GENERATED_BEGIN = "<!-- generated by heatvit.isa.markdown(); testbench/test_isa.py checks it -->"
GENERATED_END = "<!-- end of generated tables -->"


def markdown(acc=None) -> str:
    """The generated tables of docs/isa.md (opcodes, fields, enums, buffers for ``acc``, records)."""
    if acc is None:
        from .config import DEFAULT as acc
    out = [f"ISA version {ISA_VERSION[0]}.{ISA_VERSION[1]} (`{isa_version_word():#010x}`); "
           f"{DESC_WORDS} words ({DESC_BYTES} bytes) per descriptor; DDR addresses aligned to {DDR_ALIGN} bytes.", ""]
    out += ["### Opcodes", "", "| Code | Op | Fields | Meaning |", "|---|---|---|---|"]
    for op in Op:
        names = ", ".join(f"`{f.name}`" for f in op_fields(op) if f.name != "opcode")
        out.append(f"| `{op.value:#04x}` | `{op.name}` | {names or '-'} | {_md_escape(OP_DOC[op])} |")
    out += ["", "### Fields", "", "| Word | Bits | Field | Used by | Meaning |", "|---|---|---|---|---|"]
    for f in sorted(FIELDS, key=lambda f: (f.word, f.ops == (Op.BEGIN,), f.lsb)):
        bits = f"{f.lsb + f.width - 1}:{f.lsb}" if f.width > 1 else f"{f.lsb}"
        ops = "all" if f.ops == _ALL else ", ".join(o.name for o in f.ops)
        out.append(f"| {f.word} | {bits} | `{f.name}` | {ops} | {_md_escape(f.doc)} |")
    for title, enum, doc in (("Epilogues (`epilogue`)", Epilogue, EPILOGUE_DOC),
                             ("Weight sources (`wsrc`)", WSrc, WSRC_DOC),
                             ("DDR regions (`region`)", Region, REGION_DOC)):
        out += ["", f"### {title}", "", "| Value | Name | Meaning |", "|---|---|---|"]
        out += [f"| {e.value} | `{e.name}` | {_md_escape(doc[e])} |" for e in enum]
    bufs = token_buffers(acc)
    total = sum(b.bytes for b in bufs.values())
    out += ["", f"### Token buffers (default config: {acc.buffers.max_tokens} tokens, "
            f"max_dim {acc.buffers.max_dim}, max_hidden {acc.buffers.max_hidden})", "",
            "| Id | Buffer | Rows | Columns | Bytes | Weight port | Role |", "|---|---|---|---|---|---|---|"]
    for b, s in bufs.items():
        wp = "yes" if b in WEIGHT_PORT_BUFFERS else ""
        out.append(f"| {b.value} | `{b.name}` | {s.rows} | {s.cols} | {s.bytes:,} | {wp} | {_md_escape(BUF_DOC[b])} |")
    out.append(f"| | total | | | {total:,} | | |")
    out += ["", "### Records (little-endian)", "",
            "| Record | Bytes | Layout |", "|---|---|---|",
            f"| requant | {REQUANT_RECORD_BYTES} per channel | bias int32 (bytes 0-3), mult uint24 (4-6), shift uint8 (7) |",
            f"| gelu | {NL_RECORD_BYTES} | 32-bit words: {', '.join(GELU_RECORD)}; rest 0 |",
            f"| softmax | {NL_RECORD_BYTES} | 32-bit words: {', '.join(SOFTMAX_RECORD)}; rest 0 |",
            f"| ln | {NL_RECORD_BYTES} | 32-bit words: {', '.join(LN_RECORD)}; rest 0 |",
            f"| sigmoid | {NL_RECORD_BYTES} | 32-bit words: {', '.join(SIGMOID_RECORD)}; rest 0 |",
            "| trace (SELECT) | `trace_record_bytes(m)` | word 0: n_in \\| n_out << 16; word 1: n_kept \\| "
            "n_tail << 16; then the keep mask, bit i of byte 8 + i // 8 (LSB first), zero-padded to 64 bytes |",
            "| gamma | 4 per channel | int32 (signed 18-bit value) |",
            "| beta | 8 per channel | int64 (signed 48-bit value) |"]
    out += ["", "### Record limits (default config; `record_limits`, error `CTRL_BAD_PARAMS`)", "",
            "| Record | Value | Allowed |", "|---|---|---|"]
    for kind, lims in record_limits(acc).items():
        out += [f"| {kind} | `{name}` | [{lo}, {hi}] |" for name, (lo, hi) in lims.items()]
    return "\n".join(out)
