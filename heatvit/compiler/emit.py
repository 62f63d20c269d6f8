"""The compiler proper: a quantized ViT + an AcceleratorConfig -> program, parameter blocks, memory map.

The program follows docs/isa.md ("A dense ViT as the compiler emits it").  Every token-wise
descriptor has ``m_live`` set and covers the model's full token count; GEMMs are split into the
golden model's row chunks (:func:`heatvit.golden.gemm.row_chunks`).  Parameter blocks are
laid out in program order, each at a multiple of :data:`heatvit.isa.DDR_ALIGN`; a block shared by
several descriptors (row chunks, heads) is written once.

Besides the bytes, the compiler records for every descriptor its layer name and, per golden
dump stage (``blocks.0.attn.q``, ...), which descriptors' outputs make up that stage (the
``stages`` entry of the memory map), so the interpreter's per-descriptor outputs can be checked
against the golden model stage by stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import isa
from ..golden.gemm import check_params, pack_weights, row_chunks, tile_bitmap
from ..isa import Buf, Descriptor, Epilogue, Op, Region, WSrc
from . import models


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def align(n: int, a: int = isa.DDR_ALIGN) -> int:
    return _ceil(n, a) * a


class FitError(ValueError):
    """The model does not fit the configuration; the message names the layer and the limit."""


@dataclass
class Program:
    """What :func:`compile_program` produces (addresses relative to the data section)."""
    descs: list[Descriptor] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    blocks: list[dict] = field(default_factory=list)
    stages: dict[str, dict] = field(default_factory=dict)
    io: dict = field(default_factory=dict)

    def add_data(self, name: str, blob: bytes) -> int:
        """Append ``blob`` at the next aligned offset; return the offset."""
        off = align(len(self.data))
        self.data += bytes(off - len(self.data)) + blob
        self.blocks.append({"name": name, "offset": off, "bytes": len(blob)})
        return off

    def emit(self, d: Descriptor) -> int:
        self.descs.append(d)
        return len(self.descs) - 1

    def stage(self, name: str, idx: int, value: str = "out", *, head: int | None = None,
              cols: tuple[int, int] | None = None, join: str = "rows") -> None:
        st = self.stages.setdefault(name, {"join": join, "parts": []})
        st["parts"].append([idx, value, head, None if cols is None else list(cols)])


def _gemm_block(acc, d: Descriptor, layer: str, *, requant=None, gelu=None, softmax=None, sigmoid=None,
                weights=None) -> bytes:
    """The parameter block of GEMM template ``d`` (full n, k)."""
    parts = isa.param_block(acc, d)
    blob = bytearray(isa.param_block_bytes(acc, d))

    def put(part, data):
        off, size = parts[part]
        assert len(data) == size, (part, len(data), size)
        blob[off:off + size] = data

    if "requant" in parts:
        bias, mult, shift = requant
        try:
            bias, mult, shift = check_params(acc.gemm, d.n, bias, mult, shift)
        except ValueError as e:
            raise FitError(f"{layer}: requantization parameters do not fit the GEMM config: {e}") from None
        put("requant", isa.pack_requant(bias, mult, shift))
    if d.epilogue in isa.RECORD_KIND:
        part, kind = isa.RECORD_KIND[Epilogue(d.epilogue)]
        obj = {"gelu": gelu, "softmax": softmax, "sigmoid": sigmoid}[part]
        names = isa.SOFTMAX_RECORD if part == "softmax" else isa.GELU_RECORD
        put(part, _record(acc, kind, names, {k: getattr(obj, k) for k in names}, layer))
    if "bitmap" in parts:
        bitmap = tile_bitmap(acc.gemm, weights)
        put("bitmap", isa.pack_bitmap(bitmap))
        put("weights", isa.stripe_weights(acc, pack_weights(acc.gemm, weights, bitmap).astype(np.int8).tobytes()))
    elif "weights" in parts:
        put("weights", isa.stripe_weights(acc, pack_weights(acc.gemm, weights).astype(np.int8).tobytes()))
    return bytes(blob)


def _checked(acc, kind: str, values: dict, layer: str) -> None:
    try:
        isa.check_record(kind, values, acc)
    except isa.DescriptorError as e:
        raise FitError(f"{layer}: {e}") from None


def _record(acc, kind: str, names, values: dict, layer: str) -> bytes:
    _checked(acc, kind, values, layer)
    return isa.pack_record(names, values)


def _ln_block(acc, p, layer: str) -> bytes:
    d = Descriptor(Op.LAYERNORM, n=p.n)
    parts = isa.param_block(acc, d)
    blob = bytearray(isa.param_block_bytes(acc, d))
    eps = int(p.eps_q)
    if not 0 <= eps < 1 << 64:
        raise FitError(f"{layer}: LayerNorm eps_q = {eps} does not fit 64 bits")
    rec = {"g_shift": p.g_shift, "eps_q_lo": eps & 0xFFFF_FFFF, "eps_q_hi": eps >> 32, "n": p.n,
           "out_bits": p.out_bits, "in_bits": p.in_bits}
    _checked(acc, "ln", {"gamma": p.gamma_q, "beta": p.beta_q}, layer)
    off, size = parts["ln"]
    blob[off:off + size] = _record(acc, "ln", isa.LN_RECORD, rec, layer)
    off, size = parts["gamma"]
    blob[off:off + size] = np.asarray(p.gamma_q, dtype="<i4").tobytes()
    off, size = parts["beta"]
    blob[off:off + size] = np.asarray(p.beta_q, dtype="<i8").tobytes()
    return bytes(blob)


def token_cols(acc, b: Buf) -> int:
    return isa.token_buffers(acc)[b].cols


class _Compiler:
    def __init__(self, qm: models.QuantizedViT, acc, debug: bool = False, prune: bool = False, sparse: bool = True):
        self.qm, self.acc, self.cfg, self.debug, self.sparse = qm, acc, qm.cfg, debug, sparse
        self.prune = prune and bool(qm.plan.blocks)
        self.p = Program()
        self.tokens = self.cfg.num_tokens
        self.selects: dict[int, int] = {}           # block -> index of the SELECT before it
        self._addr: dict[str, int] = {}             # shared parameter blocks by name

    # -- helpers -------------------------------------------------------------------------------
    def gemm(self, layer: str, *, src, dst, m, k, n, addr, epilogue=Epilogue.REQ8, wsrc=WSrc.DDR,
             aux=0, aux_col=0, src_col=0, dst_col=0, live=True, k_live=0, n_live=0, tiles=None) -> list[int]:
        """Emit one GEMM as the golden model's row chunks; return the descriptor indices.
        ``tiles``: stored weight tiles of a block-sparse GEMM (None: dense)."""
        out = []
        for rows in row_chunks(self.acc.gemm, m, k):
            out.append(self.p.emit(Descriptor(
                Op.GEMM, epilogue=epilogue, wsrc=wsrc, m_live=int(live), k_live=k_live, n_live=n_live,
                src=src, dst=dst, aux=aux if wsrc != WSrc.DDR else 0, src_row=rows.start, dst_row=rows.start,
                src_col=src_col, dst_col=dst_col, aux_col=aux_col, m=rows.stop - rows.start, k=k, n=n,
                addr=addr, sparse=int(tiles is not None), tiles=tiles or 0, name=layer)))
        return out

    def linear(self, layer: str, ql, *, src, dst, m, live=True, epilogue=Epilogue.REQ8, gelu=None, softmax=None,
               sigmoid=None, src_col=0, dst_col=0, block: str | None = None) -> list[int]:
        """One Linear layer; ``block``: name of its parameter block when several layers share it
        (the selector's shared MLP), written once."""
        k, n = ql.w.shape
        name = block or layer
        addr = self._addr.get(name)
        tiles = None
        if self.sparse and k <= self.acc.gemm.max_k and n <= self.acc.gemm.max_n:   # else isa.check refuses it
            bitmap = tile_bitmap(self.acc.gemm, ql.w)
            tiles = None if bitmap.all() else int(bitmap.sum())
        if addr is None:
            tmpl = Descriptor(Op.GEMM, epilogue=epilogue, m=1, k=k, n=n, sparse=int(tiles is not None),
                              tiles=tiles or 0)
            blob = _gemm_block(self.acc, tmpl, layer, requant=(ql.bias, ql.mult, ql.shift), gelu=gelu,
                               softmax=softmax, sigmoid=sigmoid, weights=ql.w)
            addr = self._addr[name] = self.p.add_data(name, blob)
        return self.gemm(layer, src=src, dst=dst, m=m, k=k, n=n, addr=addr, epilogue=epilogue, live=live,
                         src_col=src_col, dst_col=dst_col, tiles=tiles)

    def layer_norm(self, layer: str, params, *, src, dst) -> int:
        addr = self.p.add_data(layer, _ln_block(self.acc, params, layer))
        return self.p.emit(Descriptor(Op.LAYERNORM, m_live=1, src=src, dst=dst, m=self.tokens, n=params.n,
                                      addr=addr, name=layer))

    def add(self, layer: str, params, *, src, aux, dst, m=None, src_row=0, aux_row=0, dst_row=0, live=True) -> int:
        ma, mb, sh = (int(v) for v in params)
        return self.p.emit(Descriptor(Op.ADD, m_live=int(live), src=src, aux=aux, dst=dst, src_row=src_row,
                                      aux_row=aux_row, dst_row=dst_row, m=self.tokens if m is None else m,
                                      n=self.cfg.dim, add_mult_a=ma, add_mult_b=mb, add_shift=sh, name=layer))

    # -- the model ------------------------------------------------------------------------------
    def check_fit(self) -> None:
        cfg, b, acc = self.cfg, self.acc.buffers, self.acc
        limits = [
            ("model", "tokens", self.tokens, "buffers.max_tokens", b.max_tokens),
            ("model", "dim", cfg.dim, "buffers.max_dim", b.max_dim),
            ("blocks.*.mlp.fc1", "hidden", cfg.hidden, "buffers.max_hidden", b.max_hidden),
            ("patch_embed", "patch length (in_chans * patch**2)", cfg.patch_k, "buffers.max_hidden", b.max_hidden),
            ("head", "num_classes", cfg.num_classes, "buffers.max_hidden", b.max_hidden),
        ]
        for layer, what, v, name, lim in limits:
            if v > lim:
                raise FitError(f"{layer}: {what} = {v} exceeds {name} = {lim}")
        al = isa.column_align(acc)
        if cfg.head_dim % al:
            raise FitError(f"blocks.*.attn: head_dim = {cfg.head_dim} is not a multiple of {al} "
                           f"(one token-buffer word, max(gemm.rows, gemm.cols))")
        if self.qm.gemm != acc.gemm:
            raise FitError("model: quantized for a different GemmConfig than the accelerator's "
                           "(quantize with AcceleratorConfig.gemm)")
        if self.prune:
            self.check_fit_selectors()

    def check_fit_selectors(self) -> None:
        cfg, acc, ts = self.cfg, self.acc, self.qm.toksel
        if self.qm.selectors and not acc.selectors:
            raise FitError(f"selectors: the model has {len(self.qm.selectors)} token selector(s) but the "
                           f"config has selectors = False (no SELECT / MEAN executors, no REQ8_SIGMOID "
                           f"epilogue); compile it dense (prune = False) or for a config with selectors = True")
        al = isa.column_align(acc)
        if ts.score_bits != acc.toksel.score_bits:
            raise FitError(f"selectors: score_bits = {ts.score_bits} but toksel.score_bits = {acc.toksel.score_bits}")
        if self.tokens > acc.toksel.max_tokens:
            raise FitError(f"selectors: tokens = {self.tokens} exceeds toksel.max_tokens = {acc.toksel.max_tokens}")
        if cfg.heads > acc.toksel.heads:
            raise FitError(f"selectors: heads = {cfg.heads} exceeds toksel.heads = {acc.toksel.heads} "
                           f"(the score combiner's width; the SELECT would end in CTRL_BAD_FIELD)")
        if cfg.dim % acc.toksel.lanes:
            raise FitError(f"selectors: dim = {cfg.dim} is not a multiple of toksel.lanes = {acc.toksel.lanes}")
        for s, q in enumerate(self.qm.selectors):
            if q.gemm_cfg != acc.gemm:
                raise FitError(f"selectors.{s}: quantized for a different GemmConfig than the accelerator's")
        if (cfg.heads + 1) * al > token_cols(acc, Buf.QKV):
            raise FitError(f"selectors: heads = {cfg.heads} need {(cfg.heads + 1) * al} score columns; buffer QKV "
                           f"has {token_cols(acc, Buf.QKV)}")

    def embed(self) -> Buf:
        qm, cfg, p = self.qm, self.cfg, self.p
        n_p, pk, d = cfg.num_patches, cfg.patch_k, cfg.dim
        stride = align(pk, isa.STRIDE_ALIGN)
        p.io["input"] = {"rows": n_p, "cols": pk, "stride": stride, "bytes": n_p * stride,
                         "scale": float(qm.scales["patches"])}
        i = p.emit(Descriptor(Op.LOAD, region=Region.INPUT, dst=Buf.H, m=n_p, n=pk, stride=stride, addr=0,
                              name="patches"))
        p.stage("patches", i)
        for j in self.linear("patch_embed", qm.patch_embed, src=Buf.H, dst=Buf.T, m=n_p, live=False):
            p.stage("patch_embed", j)
        dstride = align(d, isa.STRIDE_ALIGN)
        pos = np.zeros((n_p, dstride), dtype=np.int8)
        pos[:, :d] = qm.pos
        addr = p.add_data("pos_embed", pos.tobytes())
        p.emit(Descriptor(Op.LOAD, region=Region.MODEL, dst=Buf.N, m=n_p, n=d, stride=dstride, addr=addr,
                          name="pos_embed"))
        cls = np.zeros(dstride, dtype=np.int8)
        cls[:d] = qm.cls_row
        addr = p.add_data("cls_token", cls.tobytes())
        i = p.emit(Descriptor(Op.LOAD, region=Region.MODEL, dst=Buf.X0, m=1, n=d, stride=dstride, addr=addr,
                              name="cls_token"))
        p.stage("embed", i)
        i = self.add("embed", qm.add_embed, src=Buf.T, aux=Buf.N, dst=Buf.X0, m=n_p, dst_row=1, live=False)
        p.stage("embed", i)
        return Buf.X0

    def block(self, bi: int, xa: Buf) -> Buf:
        qm, cfg, p, t = self.qm, self.cfg, self.p, self.tokens
        blk, pre = qm.blocks[bi], f"blocks.{bi}."
        d, dh = cfg.dim, cfg.head_dim
        xb = Buf.X1 if xa == Buf.X0 else Buf.X0
        if bi in self.selects:
            p.stage(pre + "in", self.selects[bi])
        else:
            prev = p.stages["embed" if bi == 0 else f"blocks.{bi - 1}.out"]
            p.stages[pre + "in"] = {"join": prev["join"], "parts": [list(x) for x in prev["parts"]]}
        p.stage(pre + "norm1", self.layer_norm(pre + "norm1", blk.norm1, src=xa, dst=Buf.N))
        for j in self.linear(pre + "attn.qkv", blk.qkv, src=Buf.N, dst=Buf.QKV, m=t):
            for name, c0 in (("q", 0), ("k", d), ("v", 2 * d)):
                p.stage(pre + "attn." + name, j, cols=(c0, c0 + dh * cfg.heads))
        # per-head parameter blocks, shared by every head and chunk of the block
        sm_t = Descriptor(Op.GEMM, epilogue=Epilogue.RAW_SOFTMAX, wsrc=WSrc.BUF_T, m=1, k=dh, n=t)
        sm_addr = p.add_data(pre + "attn.softmax", _gemm_block(self.acc, sm_t, pre + "attn.softmax", softmax=blk.softmax))
        av_t = Descriptor(Op.GEMM, epilogue=Epilogue.REQ8, wsrc=WSrc.BUF, m=1, k=t, n=dh)
        av_addr = p.add_data(pre + "attn.av", _gemm_block(self.acc, av_t, pre + "attn.av",
                                                          requant=(0, blk.av_mult, blk.av_shift)))
        for h in range(cfg.heads):
            for j in self.gemm(f"{pre}attn.head{h}.qk", src=Buf.QKV, src_col=h * dh, dst=Buf.P, m=t, k=dh, n=t,
                               addr=sm_addr, epilogue=Epilogue.RAW_SOFTMAX, wsrc=WSrc.BUF_T, aux=Buf.QKV,
                               aux_col=d + h * dh, n_live=1):
                p.stage(pre + "attn.scores", j, "raw", head=h, join="stack")
                p.stage(pre + "attn.softmax", j, head=h, join="stack")
            for j in self.gemm(f"{pre}attn.head{h}.av", src=Buf.P, dst=Buf.CTX, dst_col=h * dh, m=t, k=t, n=dh,
                               addr=av_addr, wsrc=WSrc.BUF, aux=Buf.QKV, aux_col=2 * d + h * dh, k_live=1):
                p.stage(pre + "attn.ctx", j, head=h, join="cols")
        for j in self.linear(pre + "attn.proj", blk.proj, src=Buf.CTX, dst=Buf.T, m=t):
            p.stage(pre + "attn.proj", j)
        p.stage(pre + "res1", self.add(pre + "res1", blk.add1, src=xa, aux=Buf.T, dst=xb))
        p.stage(pre + "norm2", self.layer_norm(pre + "norm2", blk.norm2, src=xb, dst=Buf.N))
        for j in self.linear(pre + "mlp.fc1", blk.fc1, src=Buf.N, dst=Buf.H, m=t, epilogue=Epilogue.REQ16_GELU,
                             gelu=blk.gelu):
            p.stage(pre + "mlp.fc1", j, "pre")
            p.stage(pre + "mlp.gelu", j)
        for j in self.linear(pre + "mlp.fc2", blk.fc2, src=Buf.H, dst=Buf.T, m=t):
            p.stage(pre + "mlp.fc2", j)
        p.stage(pre + "out", self.add(pre + "out", blk.add2, src=xb, aux=Buf.T, dst=xa))
        return xa

    def selector(self, s: int, bi: int, xa: Buf) -> int:
        """Selector ``s`` (before block ``bi``) on the tokens in ``xa``: every MLP layer on the
        engine and the nonlinear units, then SELECT compacting ``xa`` in place.  Scratch: N, H, T
        (MLP activations), QKV (head h's keep/prune probabilities at column h * A, the head
        weights at column H * A; A = one buffer word).  Returns the SELECT's index."""
        q, p, t, d = self.qm.selectors[s], self.p, self.tokens, self.cfg.dim
        al = isa.column_align(self.acc)
        heads, dh = q.heads, q.head_dim
        pre = f"selectors.{s}."
        for j in range(heads):
            mi = 0 if len(q.mlps) == 1 else j
            mlp, hp, bp = q.mlps[mi], f"{pre}head{j}.", f"{pre}mlp{mi}."
            addr = self._addr.get(bp + "norm")
            if addr is None:
                addr = self._addr[bp + "norm"] = p.add_data(bp + "norm", _ln_block(self.acc, mlp.ln, bp + "norm"))
            p.emit(Descriptor(Op.LAYERNORM, m_live=1, src=xa, src_col=j * dh, dst=Buf.N, m=t, n=dh, addr=addr,
                              name=hp + "norm"))
            g8 = Epilogue.REQ8_GELU
            self.linear(hp + "fc0", mlp.fc[0], src=Buf.N, dst=Buf.H, m=t, epilogue=g8, gelu=mlp.gelu[0],
                        block=bp + "fc0")
            p.emit(Descriptor(Op.MEAN, m_live=1, src=Buf.H, dst=Buf.H, m=t, k=dh // 2, n=dh, name=hp + "global"))
            self.linear(hp + "fc1", mlp.fc[1], src=Buf.H, dst=Buf.T, m=t, epilogue=g8, gelu=mlp.gelu[1],
                        block=bp + "fc1")
            self.linear(hp + "fc2", mlp.fc[2], src=Buf.T, dst=Buf.N, m=t, epilogue=g8, gelu=mlp.gelu[2],
                        block=bp + "fc2")
            self.linear(hp + "fc3", mlp.fc[3], src=Buf.N, dst=Buf.QKV, dst_col=j * al, m=t,
                        epilogue=Epilogue.REQ8_SOFTMAX, softmax=mlp.softmax, block=bp + "fc3")
        self.linear(pre + "head_mean", q.mean, src=xa, dst=Buf.T, m=t)
        self.linear(pre + "head_fc1", q.head_fc1, src=Buf.T, dst=Buf.N, m=t, epilogue=Epilogue.REQ8_GELU,
                    gelu=q.head_gelu)
        self.linear(pre + "head_fc2", q.head_fc2, src=Buf.N, dst=Buf.QKV, dst_col=heads * al, m=t,
                    epilogue=Epilogue.REQ8_SIGMOID, sigmoid=q.sigmoid)
        tr = p.io.setdefault("trace", {"bytes": 0, "tokens": t, "blocks": self.cfg.depth, "stages": []})
        off, size = tr["bytes"], isa.trace_record_bytes(t)
        i = p.emit(Descriptor(Op.SELECT, m_live=1, src=xa, dst=xa, aux=Buf.QKV, aux_col=0, a_col=heads * al,
                              heads=heads, m=t, n=d, threshold=self.qm.toksel.threshold_q, addr=off,
                              name=pre + "select"))
        tr["stages"].append({"stage": s, "block": bi, "desc": i, "addr": off, "bytes": size})
        tr["bytes"] = off + size
        p.stage(pre + "keep", i, "keep")
        p.stage(pre + "kept_patches", i, "kept_patches")
        self.selects[bi] = i
        return i

    def head(self, x: Buf) -> None:
        qm, cfg, p = self.qm, self.cfg, self.p
        p.stage("norm", self.layer_norm("norm", qm.norm, src=x, dst=Buf.N))
        for j in self.linear("head", qm.head, src=Buf.N, dst=Buf.H, m=1, live=False):
            p.stage("logits", j, join="row0")
        c = cfg.num_classes
        stride = align(c, isa.STRIDE_ALIGN)
        p.io["output"] = {"rows": 1, "cols": c, "stride": stride, "bytes": stride,
                          "scale": float(qm.scales["logits"])}
        p.emit(Descriptor(Op.STORE, region=Region.OUTPUT, src=Buf.H, m=1, n=c, stride=stride, addr=0, name="logits"))

    def insert_debug_stores(self) -> None:
        """After every descriptor that writes a token buffer, a STORE of its destination window
        to the DEBUG region (same rows, same ``m_live``), so an RTL run exposes every result."""
        p, descs, remap = self.p, [], {}
        entries, off = [], 0
        for i, d in enumerate(p.descs):
            remap[i] = len(descs)
            descs.append(d)
            if d.opcode not in (Op.GEMM, Op.ADD, Op.LAYERNORM, Op.COPY, Op.LOAD, Op.MEAN, Op.SELECT):
                continue
            stride = align(d.n, isa.STRIDE_ALIGN)
            dst_row = 0 if d.opcode == Op.SELECT else d.dst_row
            descs.append(Descriptor(Op.STORE, region=Region.DEBUG, m_live=d.m_live, src=d.dst, src_row=dst_row,
                                    src_col=d.dst_col, m=d.m, n=d.n, stride=stride, addr=off, name=d.name + ":debug"))
            entries.append({"desc": remap[i], "store": len(descs) - 1, "addr": off, "stride": stride})
            off = align(off + d.m * stride)
        p.descs = descs
        for st in p.stages.values():
            for part in st["parts"]:
                part[0] = remap[part[0]]
        for st in p.io.get("trace", {}).get("stages", []):
            st["desc"] = remap[st["desc"]]
        self.selects = {b: remap[i] for b, i in self.selects.items()}
        p.io["debug"] = {"bytes": off, "stores": entries}

    def run(self) -> Program:
        self.check_fit()
        self.p.emit(Descriptor(Op.BEGIN))            # placeholder, filled in below
        x = self.embed()
        for i in range(self.cfg.depth):
            if self.prune and i in self.qm.plan.blocks:
                self.selector(self.qm.plan.blocks.index(i), i, x)
            x = self.block(i, x)
        self.head(x)
        self.p.emit(Descriptor(Op.END))
        if self.debug:
            self.insert_debug_stores()
        self.p.descs[0] = isa.begin(self.acc, len(self.p.descs), self.tokens)
        for d in self.p.descs:
            try:
                isa.check(d, self.acc)
            except isa.DescriptorError as e:
                raise FitError(f"{d.name or Op(d.opcode).name}: does not fit the config: {e}") from None
        return self.p


def compile_program(qm: models.QuantizedViT, acc, *, debug: bool = False, prune: bool = False,
                    sparse: bool = True) -> Program:
    """The program of ``qm`` for ``acc`` (``FitError`` if it does not fit); MODEL-region
    addresses relative to the start of the data section.  ``debug``: store every layer's result
    to the DEBUG region (:meth:`_Compiler.insert_debug_stores`).  ``prune``: run the model's
    token selectors (:meth:`_Compiler.selector`; a model without selectors compiles dense).
    ``sparse``: a Linear layer whose weights have an all-zero ``R x C`` tile becomes a
    block-sparse GEMM (``sparse = 1``: tile bitmap, only the non-zero tiles stored); False: every
    weight GEMM dense."""
    return _Compiler(qm, acc, debug, prune, sparse).run()
