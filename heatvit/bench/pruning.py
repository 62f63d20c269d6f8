"""Token pruning at run time in RTL: models with token selectors through the whole accelerator
(``heatvit_accel_fastsim``, Verilator, no Python per clock cycle), driven by
:class:`heatvit.driver.accel.Accelerator`, beside the same model's dense program.

Runs: the committed digits model on ``IMAGES`` test images (quick: ``QUICK_IMAGES``), and (full
run only) DeiT-T of random weights with random-init selectors before blocks 3, 6, 9 calibrated to
keep about 0.7 / 0.49 / 0.34 of the patches (:func:`deit_model`), one image.

Per image of the pruned run: logits, keep masks (the SELECT records the RTL wrote to the TRACE
region) and tokens entering every block against golden ``forward_int(prune=True)``; the
``CYCLES`` register; the selector descriptors' cycles (their per-descriptor records, layers named
``selectors.*``) over the image's cycles, and per opcode; the compiler's whole-accelerator cycle
model (:func:`heatvit.compiler.cycles.estimate` at the run's live token counts,
:func:`~heatvit.compiler.cycles.total_cycles`) against the measured cycles, whole image and
every descriptor's record (:func:`model_check`).  The dense program's cycles are measured on
``dense_images`` images (its timing does not depend on the data: the figures say whether they
were equal).  MACs: GEMM ``m * k * n`` at the live token counts (selector GEMMs included).

Accuracy (digits): ``rtl_top1`` / ``golden_top1`` are the arg-max classes of the RTL and golden
pruned logits of the simulated images, ``*_accuracy`` their agreement with the labels;
``golden_pruned_test_accuracy`` / ``golden_dense_test_accuracy`` are golden's on the whole test
split (no RTL).

Resources: the selector's share of the accelerator, from yosys (:func:`selector_resources`;
full run with :data:`SYNTH_ENV` set only: tens of minutes for the parts, hours for the whole).

Everything on :data:`heatvit.e2e.CONFIG` (the default 16 x 16 config) with the build the demo,
``bench e2e`` and the e2e tests use (:func:`shared_build`: same Verilog, same DDR size, computed
once).  Writes ``build/bench/pruning.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from heatvit.config import AcceleratorConfig
from heatvit.presets import PRESETS

IMAGES = 50
QUICK_IMAGES = 2
DEIT_PLAN = ((3, 6, 9), (0.7, 0.49, 0.343))
"""DeiT-T's selectors (before blocks 3, 6, 9) and the kept fractions of the patches they are
calibrated to (:func:`heatvit.compiler.models.set_keep_ratios` on the run's image)."""
DEIT_SEED = 0


def shared_build(acc: AcceleratorConfig) -> dict:
    """``accel_run.run`` keywords of the fast-sim build the demo, ``bench e2e`` and the e2e tests
    use (:mod:`heatvit.e2e`: its tag, DDR size and cached Verilog), so no second Verilator build.
    Call once per process and pass it on: :func:`heatvit.e2e.fast_verilog` hashes the package's
    sources every time."""
    from heatvit import e2e
    return {"tag": e2e.TAG, "ddr_bytes": e2e.DDR_BYTES, "verilog": e2e.fast_verilog(acc, e2e.DDR_BYTES)}


def digits_images(n: int, start: int = 0, size: int | None = None):
    """``n`` digits test images (float, upscaled to ``size``, default the committed model's) and labels."""
    from heatvit.compiler import models
    from heatvit.golden.vit import data as vit_data
    sp = vit_data.load_splits()
    size = size or models.load_model().cfg.image_size
    return vit_data.upscale(sp["test_x"][start:start + n], size), np.asarray(sp["test_y"][start:start + n])


def run_pruned(qm, acc: AcceleratorConfig, images, workdir: Path, build: dict | None = None) -> dict:
    """The pruned program of ``qm`` (a ``QuantizedViT`` with selectors) for ``acc`` on ``images``
    through ``heatvit_accel_fastsim`` (Verilator, :func:`heatvit.sim.accel_run.run`, the
    e2e build: ``build``, default :func:`shared_build`): ``image`` (the parsed ``ModelImage``), ``blob``, ``patches``, golden
    ``logits`` and ``dumps`` (``forward_int(prune=True)``), ``result`` (``accel_run``'s
    result.json) and ``traces`` (the TRACE region of each image decoded,
    :class:`heatvit.compiler.trace.Trace`)."""
    from heatvit import compiler
    from heatvit.compiler import models, read_image
    from heatvit.compiler import trace as trace_mod
    from heatvit.sim.accel_run import run
    if not qm.plan.blocks:
        raise ValueError("run_pruned: the model has no token selectors (its pruning plan is empty)")
    blob = compiler.compile_model(qm, acc, prune=True)
    img = read_image(blob, acc)
    patches = models.patches(qm, images)
    logits, dumps = models.pruned_dumps(qm, images)
    res = run(acc, blob, patches, logits, Path(workdir), **(build or shared_build(acc)))
    traces = [trace_mod.read(img, bytes.fromhex(r["trace_hex"])) for r in res["images"]]
    return {"image": img, "blob": blob, "patches": patches, "logits": logits, "dumps": dumps, "result": res,
            "traces": traces}


def golden_masks(dumps: list[dict], stages: int) -> list[list[np.ndarray]]:
    """Golden keep masks per image, per selector stage."""
    return [[np.asarray(d[f"selectors.{s}.keep"], dtype=bool) for s in range(stages)] for d in dumps]


def golden_tokens(dumps: list[dict], depth: int) -> list[list[int]]:
    """Golden tokens entering every block, per image."""
    return [[int(d[f"blocks.{b}.in"].shape[0]) for b in range(depth)] for d in dumps]


def check_image(res: dict, logits, tokens: list[int], masks: list[np.ndarray]) -> dict:
    """One RTL image result (``heatvit.sim.accel_run`` ``result.json`` entry) against golden:
    ``logits``, ``tokens``, ``masks`` equal (bools) and the first difference (``why``)."""
    got_masks = [np.asarray(r["keep"], dtype=bool) for r in (res["trace"] or [])]
    out = {"logits": bool(np.array_equal(res["logits"], logits)),
           "tokens": list(res["tokens_per_block"]) == list(tokens),
           "masks": len(got_masks) == len(masks) and all(np.array_equal(g, w) for g, w in zip(got_masks, masks))}
    out["why"] = "" if all(out.values()) else (
        f"logits {res['logits']} vs {list(map(int, logits))}; tokens {res['tokens_per_block']} vs {tokens}; "
        f"masks equal: {out['masks']}")
    return out


def model_check(program, layers: list, estimates: list) -> dict:
    """The cycle model (:func:`heatvit.compiler.cycles.estimate`, ``cycles``) against one image's
    records (``[index, name, op, start, end]``): every executed descriptor's ``(index, name, op,
    measured, model)`` in ``descriptors``, the worst ``max_abs_error`` (cycles) and
    ``max_rel_error`` (of the record), ``exact`` (descriptors equal), and ``total``
    (:func:`heatvit.compiler.cycles.total_cycles`, for the image's CYCLES register)."""
    from heatvit.compiler import cycles
    est = {e.index: e for e in estimates}
    rows = [(i, name, op, end - start, est[i].cycles) for i, name, op, start, end in layers if i in est]
    missing = sorted(set(est) - {r[0] for r in rows})
    if missing:
        raise ValueError(f"model_check: descriptors {missing[:5]} are in the model but have no cycle record")
    return {"descriptors": rows, "exact": sum(g == w for *_, g, w in rows), "count": len(rows),
            "max_abs_error": max((abs(g - w) for *_, g, w in rows), default=0),
            "max_rel_error": max((abs(g - w) / g for *_, g, w in rows if g), default=0.0),
            "total": cycles.total_cycles(program, estimates)}


def by_op(layers: list, program, *, selectors_only: bool = False) -> dict[str, int]:
    """Measured cycles (records) per opcode (GEMMs per epilogue, ``GEMM/REQ8_GELU``), of the
    selector descriptors only with ``selectors_only``."""
    from heatvit.isa import Epilogue, Op
    out: dict[str, int] = {}
    for i, name, op, start, end in layers:
        if selectors_only and not name.startswith("selectors."):
            continue
        d = program[i]
        key = f"GEMM/{Epilogue(d.epilogue).name}" if Op(d.opcode) == Op.GEMM else op
        out[key] = out.get(key, 0) + end - start
    return {k: v for k, v in out.items() if v}


def selector_cycles(layers: list) -> int:
    """Cycles of the selector descriptors (layers ``selectors.*``) of one image's records."""
    return sum(end - start for _, name, _, start, end in layers if name.startswith("selectors."))


def macs(estimates: list) -> int:
    return sum(e.m * e.k * e.n for e in estimates if e.op == "GEMM")


def golden_test_accuracy(qm) -> dict:
    """Golden integer top-1 on the whole test split, dense and with the selectors."""
    from heatvit.compiler import models
    from heatvit.golden.vit import data as vit_data
    from heatvit.golden.vit import int_forward as vit_int
    sp = vit_data.load_splits()
    x, y = vit_data.upscale(sp["test_x"], qm.cfg.image_size), np.asarray(sp["test_y"])
    dense = np.argmax(models.forward_int(qm, x), 1)
    pruned = np.argmax(vit_int.forward_int(qm, x, prune=True), 1)
    return {"test_images": int(len(y)), "golden_dense_test_accuracy": float(np.mean(dense == y)),
            "golden_pruned_test_accuracy": float(np.mean(pruned == y))}


def run_model(qm, acc: AcceleratorConfig, images, labels, dense_images: int, workdir: Path, build: dict,
              first: int = 0) -> dict:
    """``qm``'s pruned program on ``images`` and its dense program on the first ``dense_images``
    of them, on RTL (the shared build ``build``); the bench's figures per image (``first``: the
    first image's number, for the record)."""
    from heatvit import compiler
    from heatvit.compiler import cycles, models, read_image
    from heatvit.sim.accel_run import run
    p = run_pruned(qm, acc, images, workdir / "pruned", build)
    dense = compiler.compile_model(qm, acc)
    img_d = read_image(dense, acc)
    res_d = run(acc, dense, p["patches"][:dense_images], models.forward_int(qm, images[:dense_images]),
                workdir / "dense", **build)
    masks = golden_masks(p["dumps"], len(qm.plan.blocks))
    tokens = golden_tokens(p["dumps"], qm.cfg.depth)
    est_d = cycles.estimate(img_d.program, acc, model=dense)
    prog = p["image"].program
    per_image = []
    for i, (r, tr) in enumerate(zip(p["result"]["images"], p["traces"])):
        chk = check_image(r, p["logits"][i], tokens[i], masks[i])
        est = cycles.image_cycles(p["image"], acc, tr)
        mc = model_check(prog, r["layers"], est)
        per_image.append({
            "image": first + i, "label": None if labels is None else int(labels[i]),
            "rtl_top1": int(np.argmax(r["logits"])), "golden_top1": int(np.argmax(p["logits"][i])),
            **{f"{k}_equal": v for k, v in chk.items() if k != "why"}, "why": chk["why"],
            "tokens_per_block": r["tokens_per_block"],
            "kept_patch_fraction": [round(len(k) / qm.cfg.num_patches, 4) for k in tr.kept_patches],
            "cycles": r["cycles"], "model_cycles": mc["total"],
            "model_descriptors_exact": mc["exact"], "model_descriptors": mc["count"],
            "model_descriptor_max_error": mc["max_abs_error"], "model_descriptor_max_rel_error": mc["max_rel_error"],
            "selector_cycles": selector_cycles(r["layers"]), "macs": macs(est),
            "by_op": by_op(r["layers"], prog), "selector_by_op": by_op(r["layers"], prog, selectors_only=True),
            "sim_wall_s": round(r["wall_s"], 1)})
    dense_checks = [model_check(img_d.program, r["layers"], est_d) for r in res_d["images"]]
    return {"per_image": per_image, "dense_cycles": [r["cycles"] for r in res_d["images"]],
            "dense_bit_exact": [r["bit_exact"] for r in res_d["images"]],
            "dense_macs": macs(est_d), "dense_model": dense_checks, "dense_by_op": by_op(res_d["images"][0]["layers"], img_d.program),
            "qm": qm, "build_and_run_wall_s": round(p["result"]["total_wall_s"] + res_d["total_wall_s"], 1)}


def run_digits(acc: AcceleratorConfig, n: int, dense_images: int, workdir: Path, build: dict, *,
               start: int = 0) -> dict:
    """The committed digits model: ``n`` pruned and ``dense_images`` dense test images (from
    ``start``) on RTL (:func:`run_model`)."""
    from heatvit import compiler
    from heatvit.compiler import models
    qm = compiler.quantize_for(models.load_model(), acc)
    images, labels = digits_images(n, start, qm.cfg.image_size)
    r = run_model(qm, acc, images, labels, dense_images, workdir, build, start)
    r["model"] = (f"digits (golden/data/vit_digits.npz), selectors at blocks {list(qm.plan.blocks)}, "
                  f"keep ratios {list(qm.plan.keep_ratios)}")
    return r


def deit_model(acc: AcceleratorConfig, seed: int = DEIT_SEED, calib: int = 4):
    """DeiT-T of random weights with random-init selectors before the blocks of :data:`DEIT_PLAN`,
    quantized on ``calib`` random images, and one more random image, the selectors' keep logits
    shifted to keep about the plan's fractions of the patches on it
    (:func:`heatvit.compiler.models.random_quantized`).  Returns ``(qm, image)``."""
    from heatvit.compiler import models
    return models.random_quantized(acc, "deit_tiny", None, seed, calib=calib, plan=models.PruningPlan(*DEIT_PLAN))


def run_deit(acc: AcceleratorConfig, workdir: Path, build: dict) -> dict:
    """:func:`deit_model` on RTL, pruned and dense, one image (:func:`run_model`)."""
    qm, image = deit_model(acc)
    r = run_model(qm, acc, image, None, 1, workdir, build)
    r["model"] = (f"deit_tiny, random weights (seed {DEIT_SEED}), random-init selectors before blocks "
                  f"{list(DEIT_PLAN[0])} calibrated to keep {list(DEIT_PLAN[1])} of the patches")
    return r


def summarize(r: dict, config: str) -> dict:
    """The pruning.json run entry of :func:`run_model`'s result."""
    im = r["per_image"]
    n = len(im)
    cyc_p = float(np.mean([x["cycles"] for x in im]))
    cyc_d = float(np.mean(r["dense_cycles"]))
    mac_p = float(np.mean([x["macs"] for x in im]))
    err = [abs(x["model_cycles"] - x["cycles"]) / x["cycles"] * 100 for x in im]
    err_d = [abs(c["total"] - m) / m * 100 for c, m in zip(r["dense_model"], r["dense_cycles"])]
    frac = [x["selector_cycles"] / x["cycles"] for x in im]
    sel_ops: dict[str, float] = {}
    for x in im:
        for k, v in x["selector_by_op"].items():
            sel_ops[k] = sel_ops.get(k, 0) + v / x["cycles"] / n
    labelled = im[0]["label"] is not None
    return {
        "model": r["model"], "config": config, "simulator": "verilator", "images": n,
        "bit_exact_images": sum(x["logits_equal"] and x["tokens_equal"] and x["masks_equal"] for x in im),
        "bit_exact_logits": sum(x["logits_equal"] for x in im),
        "keep_masks_equal": sum(x["masks_equal"] for x in im),
        "tokens_equal": sum(x["tokens_equal"] for x in im),
        "rtl_top1": [x["rtl_top1"] for x in im], "golden_top1": [x["golden_top1"] for x in im],
        **({"labels": [x["label"] for x in im],
            "rtl_top1_accuracy": float(np.mean([x["rtl_top1"] == x["label"] for x in im])),
            "golden_top1_accuracy": float(np.mean([x["golden_top1"] == x["label"] for x in im]))} if labelled else {}),
        "tokens_per_block_mean": [float(v) for v in np.mean([x["tokens_per_block"] for x in im], 0)],
        "kept_patch_fraction_mean": [float(v) for v in np.mean([x["kept_patch_fraction"] for x in im], 0)],
        "cycles_dense": r["dense_cycles"], "cycles_dense_mean": cyc_d,
        "dense_cycles_equal_across_images": len(set(r["dense_cycles"])) == 1,
        "dense_bit_exact_images": sum(r["dense_bit_exact"]),
        "cycles_pruned": [x["cycles"] for x in im], "cycles_pruned_mean": cyc_p,
        "cycle_reduction": 1 - cyc_p / cyc_d, "mac_reduction": 1 - mac_p / r["dense_macs"],
        "cycle_over_mac_reduction": (1 - cyc_p / cyc_d) / (1 - mac_p / r["dense_macs"]),
        "selector_cycle_fraction": float(np.mean(frac)), "selector_cycle_fraction_max": float(np.max(frac)),
        "selector_cycle_fraction_by_op": {k: round(v, 5) for k, v in sorted(sel_ops.items(), key=lambda kv: -kv[1])},
        "model_error_pct": max(err), "model_error_pct_dense": max(err_d),
        "model_cycles": [x["model_cycles"] for x in im], "model_cycles_dense": [c["total"] for c in r["dense_model"]],
        "model_descriptors_exact": sum(x["model_descriptors_exact"] for x in im),
        "model_descriptors": sum(x["model_descriptors"] for x in im),
        "model_descriptor_max_error": max(x["model_descriptor_max_error"] for x in im),
        "model_descriptor_max_rel_error": max(x["model_descriptor_max_rel_error"] for x in im),
        "by_op_first_image": im[0]["by_op"], "dense_by_op": r["dense_by_op"],
        "per_image": [{k: v for k, v in x.items() if k not in ("by_op", "selector_by_op")} for x in im],
        "build_and_run_wall_s": r["build_and_run_wall_s"],
    }


def selector_parts(acc: AcceleratorConfig) -> dict:
    """The selector hardware inside :class:`heatvit.rtl.accel.top.Accelerator` (what a dense-only
    accelerator would not have): the selector executor (SELECT: score combiner + token-selector
    unit, and MEAN, one module with one reciprocal: ``SelectorExecutor``), and the epilogue's
    ``REQ8_SIGMOID`` row serializer (``SerialAct``; the sigmoid itself runs on the GELU unit's
    lane 0, whose few extra LUTs are inside the GELU unit).  The selector's LayerNorm, Linear,
    GELU and softmax run on the backbone's units."""
    from heatvit.rtl.accel.epilogue import SIGMOID_OUT_BITS, SerialAct
    from heatvit.rtl.accel.selector_exec import SelectorExecutor
    return {"selector_exec": SelectorExecutor(acc),
            "sigmoid_unit": SerialAct(acc, in_bits=8, out_bits=SIGMOID_OUT_BITS)}


WHOLE_SYNTH_TIMEOUT_S = 4 * 3600
"""yosys on the whole accelerator: more than 30 min on a loaded 2-core machine at the small preset."""


def synth(component, top: str, timeout: int = 1800) -> dict:
    """LUT (LUT-RAM and SRL included), FF, DSP, BRAM (RAMB cells) of ``component`` from Debian
    yosys ``synth_xilinx -family xcup``, counted as :func:`heatvit.bench.resources.count` does."""
    from heatvit.bench import _yosys
    from heatvit.bench.resources import count
    r = count(_yosys.cell_counts(component, top, timeout=timeout))
    return {"lut": r["LUT"], "ff": r["FF"], "dsp": r["DSP48E2"], "bram": r["BRAM36"]}


def selector_resources(acc: AcceleratorConfig, config: str, *, whole: bool = True) -> dict:
    """yosys (``synth_xilinx -family xcup``) of each selector part (:func:`selector_parts`,
    synthesized alone) and, with ``whole``, of the whole accelerator: the parts' sum over the
    whole (``share``) and the accelerator without them (``without_selector`` = whole - parts)."""
    import subprocess

    from heatvit.bench import _yosys
    from heatvit.rtl.accel.top import Accelerator
    if not _yosys.available():
        return {"error": "yosys not found (apt-get install yosys)"}
    keys = ("lut", "ff", "dsp", "bram")
    parts = {name: synth(c, name) for name, c in selector_parts(acc).items()}
    total = {k: sum(p[k] for p in parts.values()) for k in keys}
    out = {"config": config, "config_digest": acc.digest(), "tool": _yosys.version(),
           "command": "synth_xilinx -family xcup", "selector_parts": parts, "selector": total,
           "note": "parts synthesized alone (no cross-boundary optimization); LUT includes LUT-RAM and SRLs"}
    if whole:
        try:
            acc_res = synth(Accelerator(acc), "heatvit_accel", timeout=WHOLE_SYNTH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            out["accelerator"] = {"error": f"yosys did not finish in {WHOLE_SYNTH_TIMEOUT_S} s"}
            return out
        out.update({"accelerator": acc_res, "without_selector": {k: acc_res[k] - total[k] for k in keys},
                    "share": {k: total[k] / acc_res[k] if acc_res[k] else 0.0 for k in keys}})
    return out


def measured_selector_share(path: Path) -> dict:
    """The selector hardware's cost from ``resources.json`` (``HEATVIT_RESOURCES=accelerator`` /
    ``board heatvit bench resources``: the whole accelerator with and without selectors,
    hierarchical yosys), per configuration (``default`` 16 x 16, ``zcu102``): the LUT, FF, DSP
    and BRAM difference, its share of the accelerator with selectors, the selector modules' own
    DSPs and whether issue 12's targets hold.  A measurement of other RTL than the installed one
    is reported as stale, not used."""
    from .perf import rtl_digest
    if not path.exists():
        return {"skipped": f"no {path} (HEATVIT_RESOURCES=accelerator / board heatvit bench resources "
                           f"measures the accelerator with and without selectors)"}
    doc, digest = json.loads(path.read_text()), rtl_digest()
    out = {"how": "yosys 0.23 synth_xilinx -family xcup -noiopad, hierarchical (resources.json): "
                  "share = (with selectors - without) / with selectors",
           "target": {"own_dsp": 0, "lut_share_max": 0.05}}
    for part, preset in (("accelerator", "default"), ("board", "zcu102")):
        entry = doc.get(part) or {}
        if "selector" not in entry:
            out[preset] = {"skipped": f"resources.json has no {part!r} measurement"}
        elif entry.get("rtl_digest") != digest:
            out[preset] = {"stale": f"measured on RTL {entry.get('rtl_digest')}, installed RTL is {digest}"}
        else:
            sel = entry["selector"]
            out[preset] = {"lut_share": round(sel["share_of_accelerator"]["LUT"], 4),
                           "difference": sel["difference"], "own_modules": sel["own_modules"],
                           "with_selectors": entry["builds"][0]["resources"],
                           "without_selectors": entry["builds"][1]["resources"], "meets": sel["meets"],
                           "rtl_digest": digest}
    return out


NOTE = ("cycles: the CYCLES register (start to done, every DMA write answered). selector_cycle_fraction: "
        "the selectors.* descriptors' records over the image's cycles (mean over images; _by_op: per opcode / "
        "GEMM epilogue). model_error_pct: |compiler.cycles.total_cycles (the whole-accelerator model: every "
        "descriptor's record, descriptor fetch and controller gaps) - CYCLES| / CYCLES, max over images; "
        "model_descriptor_*: the model against every descriptor's record. mac_reduction: GEMM MACs at the live "
        "token counts, selector GEMMs included. bit_exact_images: logits, keep masks and tokens per block all "
        "equal golden forward_int(prune=True). kept_patch_fraction: patches kept after each selector over all patches.")

SYNTH_ENV = "HEATVIT_PRUNING_SYNTH"
"""Full run only: ``parts`` synthesizes the selector parts with yosys (tens of minutes), ``whole``
also the whole accelerator (hours); unset: no synthesis (``resources`` says so)."""


def main(out_dir: Path, quick: bool = False, images: int | None = None) -> list[Path]:
    import os

    from heatvit import e2e
    name = e2e.CONFIG                       # the demo's and bench e2e's build: no second one
    acc = PRESETS[name]
    n = images or (QUICK_IMAGES if quick else IMAGES)
    build = shared_build(acc)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        r = run_digits(acc, n, 1 if quick else 2, Path(tmp) / "digits", build)
        runs.append(summarize(r, name))
        if not quick:
            runs.append(summarize(run_deit(acc, Path(tmp) / "deit", build), name))
    doc = {"quick": quick, "runs": runs, "note": NOTE}
    if quick:
        doc["not_run"] = "quick mode: the DeiT-T run (full mode only: ~10 CPU-min on the 16 x 16 build)"
    else:
        doc["accuracy"] = golden_test_accuracy(r["qm"])
    synth_mode = os.environ.get(SYNTH_ENV, "")
    if synth_mode not in ("", "parts", "whole"):
        raise ValueError(f"{SYNTH_ENV} must be 'parts', 'whole' or unset, not {synth_mode!r}")
    doc["resources"] = (selector_resources(acc, name, whole=synth_mode == "whole") if synth_mode and not quick else
                        measured_selector_share(out_dir / "resources.json"))
    out = out_dir / "pruning.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    for run in runs:
        print(f"pruning, {run['model'].split(',')[0]} on {name}: {run['bit_exact_images']}/{run['images']} bit-exact "
              f"(logits, masks, tokens); cycles dense {run['cycles_dense_mean']:,.0f}, pruned "
              f"{run['cycles_pruned_mean']:,.0f} (-{run['cycle_reduction']:.1%}; MACs -{run['mac_reduction']:.1%}); "
              f"selector {run['selector_cycle_fraction']:.2%} of cycles; model error {run['model_error_pct']:.2f} %",
              flush=True)
    return [out]
