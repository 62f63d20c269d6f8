"""Static block weight pruning with and without dynamic token pruning (issue 14, Parikh et al.).

For weight densities 1.0, 0.7, 0.5, 0.3 of the digits model's encoder Linear layers (the share
of their ``R x C`` weight tiles kept, at the ``small`` preset's 4 x 4 tiles: the array the digits
model runs on in RTL, and a granularity this 48-channel model survives; pruned one-shot at the
default 16 x 16 tiles it falls to 16 % validation top-1 at density 0.56), each without and
with its token selectors:

* ``float_top1`` / ``int8_top1`` on the held-out test split (``heatvit.bench.accuracy.evaluate``:
  the float reference and the integer golden forward; with token pruning the pruned columns);
* per image, from the compiled program run through the reference interpreter
  (``heatvit.compiler.interpret``, bit-exact with golden) and the cycle model
  (``heatvit.compiler.cycles``, live token counts from each image's SELECT trace): ``macs`` (the
  MACs the engine performs: a sparse GEMM's ``m k n`` times its stored share of tiles),
  ``weight_bytes`` (weights streamed from DDR), ``gemm_cycles`` (``estimate_cycles`` with each
  sparse GEMM's bitmap, exact against the engine RTL) and ``executor_cycles`` (the larger of that
  and the executor's activation gate, ``cycles.sparse_act_bound``), and ``cycle_reduction``
  against the dense model without token pruning;
* ``rtl``: measured cycles of the GEMM executor RTL (Amaranth simulator, ``small`` preset) on
  block 0's ``mlp.fc1`` of each model (16 tokens; quick: ``attn.proj``, 4 tokens), bit-exact
  against the interpreter;
* ``board``: the same densities for DeiT-S and DeiT-B on the ``zcu102`` preset with the DDR
  model of ``heatvit bench perf`` (random tile masks of each density; with and without that
  bench's token-pruning plan): cycles, ms, weight MB and DDR traffic per image.

Where the models come from: density 1.0 is the committed ``vit_digits.npz``; a density with a
committed block-pruned model (``vit_digits_sparse.npz``, trained by ``train/train_digits.py
--block-prune``, its metadata says how) uses it, the others are the committed model pruned in
one shot by tile norm without fine-tuning (``"source"`` says which).  The whole-model RTL run
(``rtl_cycles_mean`` over 20 images in the issue) is not measured here: the accelerator top's
Verilator build is ``heatvit bench e2e``'s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..golden.vit import data as vit_data, model as model_io

DENSITIES = (1.0, 0.7, 0.5, 0.3)
QUICK_DENSITIES = (1.0, 0.5)
"""``--quick`` (CI): the same code paths on two densities, 8 test images, DeiT-S only, an 8-row GEMM."""
SPARSE_MODEL = Path(model_io.DEFAULT_MODEL).with_name("vit_digits_sparse.npz")
ENCODER_LINEARS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


def tile_mask(w: np.ndarray, rows: int, cols: int, density: float) -> np.ndarray:
    """Keep mask of a timm Linear weight ``(N, K)``: the ``round(density * T)`` (>= 1) ``R x C``
    tiles of ``W = w.T`` with the largest L2 norm (ties: the lower tile index), as
    ``train/train_digits.py``'s ``tile_mask``."""
    n, k = w.shape
    kt, nt = -(-k // rows), -(-n // cols)
    p = np.zeros((nt * cols, kt * rows))
    p[:n, :k] = np.asarray(w, dtype=np.float64) ** 2
    norms = p.reshape(nt, cols, kt, rows).sum((1, 3)).ravel()
    keep = max(1, round(density * norms.size))
    m = np.zeros(norms.size, dtype=bool)
    m[np.argsort(-norms, kind="stable")[:keep]] = True
    return np.repeat(np.repeat(m.reshape(nt, kt), cols, 0), rows, 1)[:n, :k]


def one_shot(model, density: float, rows: int, cols: int):
    """``model`` with every encoder Linear pruned to ``density`` of its tiles (no fine-tuning)."""
    sd = {k: np.array(v) for k, v in model.state_dict().items()}
    for i in range(model.cfg.depth):
        for lin in ENCODER_LINEARS:
            key = f"blocks.{i}.{lin}.weight"
            sd[key] = sd[key] * tile_mask(sd[key], rows, cols, density)
    return model_io.from_state_dict(model.cfg, sd, model.plan, {**model.meta, "one_shot_density": density})


def models_by_density(acc, densities=DENSITIES) -> dict:
    base = model_io.load_npz()
    out = {1.0: (base, "committed dense-weight model")}
    trained = model_io.load_npz(SPARSE_MODEL) if SPARSE_MODEL.is_file() else None
    info = trained.meta.get("block_prune", {}) if trained is not None else {}
    td = info.get("density") if info.get("tile") == [acc.gemm.rows, acc.gemm.cols] else None
    for d in densities[1:]:
        if td is not None and abs(td - d) < 1e-9:
            out[d] = (trained, f"trained: {' ; '.join(trained.meta.get('commands', []))}")
        else:
            out[d] = (one_shot(base, d, acc.gemm.rows, acc.gemm.cols),
                      "committed model pruned in one shot by tile norm, not fine-tuned")
    return out


def program_figures(img, acc, traces) -> dict:
    """Mean per-image MACs, DDR weight bytes and cycles of ``img`` over its runs' traces (None:
    one dense-token run)."""
    from .. import isa
    from ..compiler import cycles
    from ..compiler.interpret import gemm_bitmap
    g = acc.gemm
    share = {}
    for i, d in enumerate(img.program):
        if d.opcode == isa.Op.GEMM and d.sparse:
            bm = gemm_bitmap(acc, d, img.blob)
            share[i] = (bm.sum() / bm.size, bm)
    rows = []
    for tr in traces:
        est = cycles.image_cycles(img, acc, tr)
        macs = wbytes = gemm = execu = 0
        for e in est:
            if e.op != "GEMM":
                continue
            d = img.program[e.index]
            s, bm = share.get(e.index, (1.0, None))
            macs += e.m * e.k * e.n * s
            if d.wsrc == isa.WSrc.DDR:
                wbytes += isa.param_block(acc, d)["weights"][1]
            gemm += e.engine
            execu += max(e.engine, e.act_load) if bm is not None else e.engine
        rows.append((macs, wbytes, gemm, execu))
    a = np.array(rows, dtype=np.float64).mean(0)
    return {"macs": float(a[0]), "weight_bytes": float(a[1]), "gemm_cycles": float(a[2]),
            "executor_cycles": float(a[3])}


def digits_rows(acc, n_images: int, quick: bool) -> list[dict]:
    from .. import compiler
    from ..compiler import interpret, models, trace as trace_mod
    from .accuracy import evaluate
    splits = vit_data.load_splits()
    images = vit_data.upscale(splits["test_x"][:n_images])
    out = []
    for density, (model, source) in models_by_density(acc, QUICK_DENSITIES if quick else DENSITIES).items():
        t0 = time.perf_counter()
        accr = evaluate(model, splits, limit=8 if quick else None, calib_limit=32 if quick else None)
        qm = compiler.quantize_for(model, acc)
        for prune in (False, True):
            img = compiler.read_image(compiler.compile_model(qm, acc, prune=prune), acc)
            traces = [None]
            if prune:
                patches = models.patches(qm, images)
                traces = [trace_mod.read(img, interpret.run(img, acc, interpret.pack_input(img, p)).trace)
                          for p in patches]
            fig = program_figures(img, acc, traces)
            out.append({"density": density, "token_pruning": prune, "source": source,
                        "float_top1": accr["pruned_float_top1" if prune else "float_top1"],
                        "int8_top1": accr["pruned_int8_top1" if prune else "int8_top1"],
                        "n_test": accr["n_test"], "images_for_cycles": len(traces),
                        "sparse_gemms": sum(1 for d in img.program if d.sparse), **fig})
        print(f"sparsity: density {density}: {time.perf_counter() - t0:.0f} s", flush=True)
    base = next(r for r in out if r["density"] == 1.0 and not r["token_pruning"])
    for r in out:
        r["cycle_reduction"] = 1 - r["gemm_cycles"] / base["gemm_cycles"]
        r["executor_cycle_reduction"] = 1 - r["executor_cycles"] / base["executor_cycles"]
        r["mac_reduction"] = 1 - r["macs"] / base["macs"]
        r["weight_bytes_ratio"] = r["weight_bytes"] / base["weight_bytes"]
    return out


def rtl_rows(quick: bool) -> list[dict]:
    """Block 0's fc1 on its first 16 tokens (quick: attn.proj on 4) of each model on the GEMM
    executor RTL (``small`` preset, one Amaranth simulation for all; it runs about 30 cycles per
    second on the shared machine), bit-exact against the interpreter."""
    from .. import compiler
    from ..compiler import cycles as cycles_mod
    from ..compiler.interpret import Machine, Step, gemm_bitmap
    from ..presets import PRESETS
    acc = PRESETS["small"]
    g = acc.gemm
    cases, out = [], []
    for density, (model, source) in models_by_density(acc, QUICK_DENSITIES if quick else DENSITIES).items():
        qm = compiler.quantize_for(model, acc)
        img = compiler.read_image(compiler.compile_model(qm, acc), acc)
        d = next(x for x in img.program if x.name == ("blocks.0.attn.proj" if quick else "blocks.0.mlp.fc1"))
        d = d.with_(m=4 if quick else 16)
        mach = Machine(img, acc)
        mach.bufs[d.src][:] = np.random.default_rng(0).integers(-128, 128, mach.bufs[d.src].shape)
        m, k, n = d.m, d.k, d.n
        want = mach._gemm(d, m, k, n, Step(0, d.name, "GEMM", m, k, n))
        cases.append((img.blob, d, mach, want))
        bm = gemm_bitmap(acc, d, img.blob) if d.sparse else None
        est = g.estimate_cycles(m, k, n, bm)
        gate = cycles_mod.sparse_act_bound(g, m, bm) if bm is not None else 0
        out.append({"density": density, "source": source, "layer": d.name, "m": m, "k": k, "n": n,
                    "sparse": bool(d.sparse), "tiles": int(d.tiles) if d.sparse else -(-k // g.rows) * -(-n // g.cols),
                    "estimate_engine": est, "estimate_executor": max(est, gate), "config": "small"})
    for r, cyc in zip(out, run_executor(acc, cases)):
        r.update(rtl_cycles=cyc, bit_exact=True)
    base = next(r for r in out if r["density"] == 1.0)
    for r in out:
        r["rtl_cycle_ratio"] = r["rtl_cycles"] / base["rtl_cycles"]
    return out


def run_executor(acc, cases) -> list[int]:
    """GEMMs ``(model blob, descriptor, interpreter machine, expected result)`` one after the
    other on one GEMM executor RTL with the real GemmOutput; each dst window checked against the
    interpreter's; cycles from each descriptor's acceptance to its ``done``."""
    from amaranth.sim import Simulator

    from .. import isa
    from ..rtl.accel.gemm_exec import GemmExecutor
    from ..sim.streams import unpack_lanes
    dut = GemmExecutor(acc)
    A, D = isa.column_align(acc), acc.shell.data_bytes
    cur = {}
    res = []

    def responder(req, data, words):
        """A background process: every request taken on ``req`` queues ``words(payload)`` on ``data``."""
        async def process(ctx):
            q = []
            ctx.set(req.ready, 1)
            while True:
                ctx.set(data.valid, bool(q))
                if q:
                    ctx.set(data.payload, q[0])
                _, _, rv, rp, dr = await ctx.tick().sample(req.valid, req.payload, data.ready)
                if q and dr:
                    q.pop(0)
                if rv:
                    q += words(rp)
        return process

    def src_words(cp):                      # one activation word of the src buffer
        d, mach = cur["d"], cur["mach"]
        row, word = int(cp.row), int(cp.word)
        return [int.from_bytes(mach.bufs[d.src][row, word * A:word * A + A].astype(np.int8).tobytes(), "little")]

    def dma_words(rp):                      # the requested beats of the model image
        off, blob = int(rp.offset), cur["blob"]
        return [int.from_bytes(blob[off + b * D:off + b * D + D].ljust(D, b"\0"), "little")
                for b in range(int(rp.beats))]

    src = responder(dut.src.cmd, dut.src.data, src_words)
    dma = responder(dut.dma_rd.req, dut.dma_rd.data, dma_words)

    async def sink(ctx):
        ctx.set(dut.dst.ready, 1)
        while True:
            _, _, v, p = await ctx.tick().sample(dut.dst.valid, dut.dst.payload)
            if v:
                lanes = unpack_lanes(int(p.data), 8, A)
                for i in range(A):
                    if int(p.mask) >> i & 1:
                        cur["dst"][int(p.row), int(p.word) * A + i] = lanes[i]

    async def tb(ctx):
        for blob, d, mach, _ in cases:
            cur.update(blob=blob, d=d, mach=mach, dst=mach.bufs[d.dst].copy())
            fields = {fd.name: int(getattr(d, fd.name)) for fd in isa.FIELDS}
            fields.update(live_m=d.m, live_k=d.k, live_n=d.n)
            ctx.set(dut.cmd.payload, fields)
            ctx.set(dut.cmd.valid, 1)
            await ctx.tick().until(dut.cmd.ready)
            ctx.set(dut.cmd.valid, 0)
            cycles = 1
            while True:
                _, _, done, err = await ctx.tick().sample(dut.done, dut.error)
                cycles += 1
                if done:
                    break
            res.append((cycles, int(err), cur["dst"]))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for p in (src, dma, sink):
        sim.add_testbench(p, background=True)
    sim.add_testbench(tb)
    sim.run()
    for (cycles, err, dst), (_, d, _, want) in zip(res, cases):
        if err:
            raise RuntimeError(f"sparsity bench: the GEMM executor reported error {err} on {d.name}")
        w = np.asarray(want, dtype=np.int64)
        if d.epilogue in isa.UNSIGNED_EPILOGUES:
            w = (w + 128) % 256 - 128
        if not np.array_equal(dst[d.dst_row:d.dst_row + d.m, d.dst_col:d.dst_col + d.n], w):
            raise RuntimeError(f"sparsity bench: the GEMM executor's {d.name} result differs from the interpreter's")
    return [r[0] for r in res]


def board_rows(quick: bool) -> list[dict]:
    """DeiT-S/B at the zcu102 preset: per density (random tile masks) with and without the perf
    bench's token-pruning plan, the engine cycles with the DDR model's stream bound per stored tile."""
    from ..config import ceil_div
    from ..golden.gemm import split_shape
    from ..golden.vit import latency
    from ..golden.vit.config import PruningPlan
    from ..presets import PRESETS
    from . import perf
    from ..compiler.models import vit_config
    acc = PRESETS["zcu102"]
    g, clock = acc.gemm, acc.clock_mhz
    bpc = perf.DdrModel().bytes_per_cycle(clock)
    stream = ceil_div(g.rows * g.cols, int(bpc)) if bpc < g.cols else g.rows
    rng = np.random.default_rng(14)
    out = []
    for name in (("deit_small",) if quick else ("deit_small", "deit_base")):
        cfg = vit_config(name)
        d, hd = cfg.dim, cfg.hidden
        weight_kn = {(d, 3 * d), (d, d), (d, hd), (hd, d)}
        for plan in (PruningPlan(), perf.PLAN):
            tokens, selectors = latency.plan_tokens(cfg, plan) if plan.blocks else ([cfg.num_tokens] * cfg.depth, [])
            for density in QUICK_DENSITIES if quick else DENSITIES:
                masks = {}
                cycles = wbytes = macs = 0
                shapes = latency.model_gemms(cfg, tokens, selectors)
                n_encoder = 1 + cfg.depth * (4 + 2 * cfg.heads)      # patch embedding, then the blocks
                for i, (m0, k, n) in enumerate(shapes):
                    kt, nt = ceil_div(k, g.rows), ceil_div(n, g.cols)
                    # the encoder Linears only (patch embedding, head and selector GEMMs dense)
                    sparse = 0 < i < n_encoder and (k, n) in weight_kn and density < 1
                    if sparse and (k, n) not in masks:
                        bm = np.zeros(kt * nt, dtype=bool)
                        bm[rng.permutation(kt * nt)[:max(1, round(density * kt * nt))]] = True
                        masks[(k, n)] = bm.reshape(kt, nt)
                    bm = masks.get((k, n)) if sparse else None
                    t = int(bm.sum()) if bm is not None else kt * nt
                    macs += m0 * k * n * t / (kt * nt)
                    for m, _, _ in split_shape(g, m0, k, n):
                        c = g.estimate_cycles(m, k, n, bm)
                        c += max(0, stream - g.rows) + (t - 1) * max(0, stream - max(m, g.min_tile_cycles))
                        cycles += c
                        wbytes += t * g.rows * g.cols
                out.append({"model": name, "config": "zcu102", "density": density,
                            "token_pruning": bool(plan.blocks), "cycles": int(cycles), "macs": float(macs),
                            "ms": cycles / (clock * 1e3), "fps": clock * 1e6 / cycles,
                            "weight_mbytes": wbytes / 1e6, "ddr_gbytes_per_s": wbytes / (cycles / (clock * 1e6)) / 1e9})
        base = {r["model"]: r for r in out if r["density"] == 1.0 and not r["token_pruning"]}
    for r in out:
        b = base[r["model"]]
        r["cycle_reduction"] = 1 - r["cycles"] / b["cycles"]
        r["weight_bytes_ratio"] = r["weight_mbytes"] / b["weight_mbytes"]
    return out


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    from ..presets import PRESETS
    acc = PRESETS["small"]
    t0 = time.perf_counter()
    doc = {"quick": quick, "densities": list(QUICK_DENSITIES if quick else DENSITIES), "config": "small",
           "tile": [acc.gemm.rows, acc.gemm.cols], "digits": digits_rows(acc, 2 if quick else 20, quick)}
    doc["rtl"] = rtl_rows(quick)
    doc["board"] = board_rows(quick)
    doc["not_measured"] = ["rtl_cycles_mean: whole-model RTL over 20 images (the accelerator top's Verilator build, "
                           "heatvit bench e2e) was not run for the block-sparse models"]
    doc["wall_s"] = time.perf_counter() - t0
    path = Path(out_dir) / "sparsity.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    for r in doc["digits"]:
        print(f"density {r['density']:.1f} tokens {'pruned' if r['token_pruning'] else 'all   '}: int8 "
              f"{r['int8_top1']:.4f}, MACs {r['macs']:,.0f} (-{r['mac_reduction']:.1%}), weights "
              f"{r['weight_bytes']:,.0f} B, GEMM cycles -{r['cycle_reduction']:.1%} ({r['source'][:40]})")
    for r in doc["rtl"]:
        print(f"RTL {r['layer']} density {r['density']}: {r['rtl_cycles']} cycles ({r['rtl_cycle_ratio']:.3f} of "
              f"dense), estimate {r['estimate_executor']}")
    return [path]
