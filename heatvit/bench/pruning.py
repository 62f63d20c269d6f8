"""Token pruning at run time in RTL: the digits model with its token selectors through the whole
accelerator (``heatvit_accel_fastsim``, Verilator, no Python per clock cycle), driven by
:class:`heatvit.driver.accel.Accelerator`, beside the same model's dense program.

Per image of the pruned run: logits, keep masks (the SELECT records the RTL wrote to the TRACE
region) and tokens entering every block against golden ``forward_int(prune=True)``; the
``CYCLES`` register; the selector descriptors' cycles (their per-descriptor records, layers named
``selectors.*``) over the image's cycles; the compiler's cycle model
(:func:`heatvit.compiler.cycles.estimate` at the run's live token counts) against the measured
cycles, whole image and per opcode.  The dense program's cycles are measured on
``dense_images`` images (its timing does not depend on the data: the figures say whether they
were equal).  MACs: GEMM ``m * k * n`` at the live token counts (selector GEMMs included).

Accuracy: ``rtl_top1`` / ``golden_top1`` are the arg-max classes of the RTL and golden pruned
logits of the simulated images, ``*_accuracy`` their agreement with the labels;
``golden_pruned_test_accuracy`` / ``golden_dense_test_accuracy`` are golden's on the whole test
split (no RTL).

Resources: the selector's share of the accelerator, from yosys (:func:`resources`; full run
only, and only with ``--synth``-like cost: see ``SYNTH``).

Quick (CI): the ``small`` preset, 2 pruned and 1 dense image (the Verilator build is the one the
digits e2e test uses: same Verilog, same DDR size).  Full: ``IMAGES`` pruned images.  Writes
``build/bench/pruning.json``.  Not run here: the DeiT-T shape (needs the default 16 x 16 config's
Verilator build of the whole accelerator, not affordable on this machine yet).
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
DDR_BYTES = 1 << 22
"""The digits e2e test's DDR size (one Verilator build for the dense and the pruned program)."""


def digits_images(n: int, start: int = 0, size: int | None = None):
    """``n`` digits test images (float, upscaled to ``size``, default the committed model's) and labels."""
    from heatvit.compiler import models
    from heatvit.golden.vit import data as vit_data
    sp = vit_data.load_splits()
    size = size or models.load_model().cfg.image_size
    return vit_data.upscale(sp["test_x"][start:start + n], size), np.asarray(sp["test_y"][start:start + n])


def run_pruned(qm, acc: AcceleratorConfig, images, workdir: Path, *, tag: str = "small") -> dict:
    """The pruned program of ``qm`` (a ``QuantizedViT`` with selectors) for ``acc`` on ``images``
    through ``heatvit_accel_fastsim`` (Verilator, :func:`heatvit.sim.accel_run.run`, DDR
    ``DDR_BYTES``): ``image`` (the parsed ``ModelImage``), ``blob``, ``patches``, golden
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
    res = run(acc, blob, patches, logits, Path(workdir), tag=tag, ddr_bytes=DDR_BYTES)
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


def measured_by_op(layers: list, estimates: list) -> dict[str, dict[str, int]]:
    """Measured (per-descriptor records) and estimated cycles summed per opcode, for one image."""
    out: dict[str, dict[str, int]] = {}
    for _, _, op, start, end in layers:
        out.setdefault(op, {"measured": 0, "overlapped": 0, "serial": 0})["measured"] += end - start
    for e in estimates:
        r = out.setdefault(e.op, {"measured": 0, "overlapped": 0, "serial": 0})
        r["overlapped"] += e.overlapped
        r["serial"] += e.serial
    return out


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


def run_digits(acc: AcceleratorConfig, n: int, dense_images: int, workdir: Path, *, start: int = 0,
               tag: str = "small") -> dict:
    """Run ``n`` pruned and ``dense_images`` dense digits test images (from ``start``) on RTL; the
    bench's figures per image."""
    from heatvit import compiler
    from heatvit.compiler import cycles, models, read_image
    from heatvit.sim.accel_run import run
    qm = compiler.quantize_for(models.load_model(), acc)
    images, labels = digits_images(n, start, qm.cfg.image_size)
    p = run_pruned(qm, acc, images, workdir / "pruned", tag=tag)
    dense = compiler.compile_model(qm, acc)
    img_d = read_image(dense, acc)
    res_d = run(acc, dense, p["patches"][:dense_images], models.forward_int(qm, images[:dense_images]),
                workdir / "dense", tag=tag, ddr_bytes=DDR_BYTES)
    masks = golden_masks(p["dumps"], len(qm.plan.blocks))
    tokens = golden_tokens(p["dumps"], qm.cfg.depth)
    est_d = cycles.estimate(img_d.program, acc)
    per_image = []
    for i, (r, tr) in enumerate(zip(p["result"]["images"], p["traces"])):
        chk = check_image(r, p["logits"][i], tokens[i], masks[i])
        est = cycles.estimate(p["image"].program, acc, selects=tr.selects())
        summ = cycles.summary(est, acc)
        sel_rec = [x for x in r["layers"] if x[2] == "SELECT"]
        per_image.append({
            "image": start + i, "label": int(labels[i]), "rtl_top1": int(np.argmax(r["logits"])),
            "golden_top1": int(np.argmax(p["logits"][i])),
            **{f"{k}_equal": v for k, v in chk.items() if k != "why"}, "why": chk["why"],
            "tokens_per_block": r["tokens_per_block"], "cycles": r["cycles"],
            "selector_cycles": selector_cycles(r["layers"]), "macs": macs(est),
            "estimate_overlapped": summ["overlapped"], "estimate_serial": summ["serial"],
            "select_descriptors": [{"measured": x[4] - x[3], "estimate": e.overlapped, "n": e.m, "pruned": pr}
                                   for x, e, (_, pr) in zip(sel_rec, [e for e in est if e.op == "SELECT"],
                                                            tr.selects())],
            "by_op": measured_by_op(r["layers"], est), "sim_wall_s": round(r["wall_s"], 1)})
    dense_cycles = [r["cycles"] for r in res_d["images"]]
    return {"per_image": per_image, "dense_cycles": dense_cycles,
            "dense_bit_exact": [r["bit_exact"] for r in res_d["images"]],
            "dense_macs": macs(est_d), "dense_estimate_overlapped": cycles.summary(est_d, acc)["overlapped"],
            "dense_by_op": measured_by_op(res_d["images"][0]["layers"], est_d), "qm": qm,
            "build_and_run_wall_s": round(p["result"]["total_wall_s"] + res_d["total_wall_s"], 1)}


def summarize(r: dict, config: str) -> dict:
    """The pruning.json run entry of :func:`run_digits`' result."""
    im = r["per_image"]
    n = len(im)
    cyc_p = float(np.mean([x["cycles"] for x in im]))
    cyc_d = float(np.mean(r["dense_cycles"]))
    mac_p = float(np.mean([x["macs"] for x in im]))
    err = {k: [abs(x[f"estimate_{k}"] - x["cycles"]) / x["cycles"] * 100 for x in im] for k in ("overlapped", "serial")}
    sel = [s for x in im for s in x["select_descriptors"]]
    return {
        "model": "digits (golden/data/vit_digits.npz), selectors at blocks "
                 f"{list(r['qm'].plan.blocks)}, keep ratios {list(r['qm'].plan.keep_ratios)}",
        "config": config, "simulator": "verilator", "images": n,
        "bit_exact_images": sum(x["logits_equal"] and x["tokens_equal"] and x["masks_equal"] for x in im),
        "bit_exact_logits": sum(x["logits_equal"] for x in im),
        "keep_masks_equal": sum(x["masks_equal"] for x in im),
        "tokens_equal": sum(x["tokens_equal"] for x in im),
        "rtl_top1": [x["rtl_top1"] for x in im], "golden_top1": [x["golden_top1"] for x in im],
        "labels": [x["label"] for x in im],
        "rtl_top1_accuracy": float(np.mean([x["rtl_top1"] == x["label"] for x in im])),
        "golden_top1_accuracy": float(np.mean([x["golden_top1"] == x["label"] for x in im])),
        "tokens_per_block_mean": [float(v) for v in np.mean([x["tokens_per_block"] for x in im], 0)],
        "cycles_dense": r["dense_cycles"], "cycles_dense_mean": cyc_d,
        "dense_cycles_equal_across_images": len(set(r["dense_cycles"])) == 1,
        "dense_bit_exact_images": sum(r["dense_bit_exact"]),
        "cycles_pruned": [x["cycles"] for x in im], "cycles_pruned_mean": cyc_p,
        "cycle_reduction": 1 - cyc_p / cyc_d, "mac_reduction": 1 - mac_p / r["dense_macs"],
        "cycle_over_mac_reduction": (1 - cyc_p / cyc_d) / (1 - mac_p / r["dense_macs"]),
        "selector_cycle_fraction": float(np.mean([x["selector_cycles"] / x["cycles"] for x in im])),
        "model_error_pct": max(err["overlapped"]), "model_error_pct_serial": max(err["serial"]),
        "select_estimate_exact": all(s["measured"] == s["estimate"] for s in sel),
        "select_descriptors_max_error": max((abs(s["measured"] - s["estimate"]) for s in sel), default=0),
        "dense_estimate_overlapped": r["dense_estimate_overlapped"],
        "by_op_first_image": im[0]["by_op"], "dense_by_op": r["dense_by_op"],
        "per_image": [{k: v for k, v in x.items() if k != "by_op"} for x in im],
        "build_and_run_wall_s": r["build_and_run_wall_s"],
    }


def selector_parts(acc: AcceleratorConfig) -> dict:
    """The selector hardware inside :class:`heatvit.rtl.accel.top.Accelerator` (what a dense-only
    accelerator would not have): the SELECT executor (score combiner + token-selector unit), the
    MEAN executor, and the epilogue's sigmoid unit (``REQ8_SIGMOID``; ``array cols`` lanes).  The
    selector's LayerNorm, Linear, GELU and softmax run on the backbone's units."""
    import dataclasses

    from heatvit.rtl.accel.epilogue import SIGMOID_OUT_BITS
    from heatvit.rtl.accel.mean_exec import MeanExecutor
    from heatvit.rtl.accel.select_exec import SelectExecutor
    from heatvit.rtl.nonlinear.units import ActUnit
    return {"select_exec": SelectExecutor(acc), "mean_exec": MeanExecutor(acc),
            "sigmoid_unit": ActUnit(dataclasses.replace(acc.nonlinear, lanes=acc.gemm.cols), "sigmoid", in_bits=8,
                                    out_bits=SIGMOID_OUT_BITS)}


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


NOTE = ("cycles: the CYCLES register (start to done, every DMA write answered). selector_cycle_fraction: "
        "the selectors.* descriptors' records over the image's cycles. model_error_pct: "
        "|compiler.cycles.estimate 'overlapped' (the longest phase of each descriptor) - measured| / measured, "
        "max over images ('_serial': all phases added). mac_reduction: GEMM MACs at the live token counts, "
        "selector GEMMs included. bit_exact_images: logits, keep masks and tokens per block all equal golden "
        "forward_int(prune=True).")


def main(out_dir: Path, quick: bool = False, images: int | None = None) -> list[Path]:
    name = "small"
    acc = PRESETS[name]
    n = images or (QUICK_IMAGES if quick else IMAGES)
    with tempfile.TemporaryDirectory() as tmp:
        r = run_digits(acc, n, 1 if quick else 2, Path(tmp), tag=name)
    run = summarize(r, name)
    doc = {"quick": quick, "runs": [run], "note": NOTE,
           "not_run": "DeiT-T shape (random weights, keep ~0.7/0.49/0.34): needs the default 16 x 16 "
                      "config's Verilator build of the whole accelerator (issue 11)"}
    if not quick:
        doc["accuracy"] = golden_test_accuracy(r["qm"])
    doc["resources"] = (selector_resources(acc, name) if not quick else
                        {"skipped": "quick mode: no synthesis (heatvit bench pruning, full, runs yosys)"})
    out = out_dir / "pruning.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"pruning, digits on {name}: {run['bit_exact_images']}/{n} bit-exact (logits, masks, tokens); cycles "
          f"dense {run['cycles_dense_mean']:,.0f}, pruned {run['cycles_pruned_mean']:,.0f} "
          f"(-{run['cycle_reduction']:.1%}; MACs -{run['mac_reduction']:.1%}); selector {run['selector_cycle_fraction']:.2%}"
          f" of cycles; model error {run['model_error_pct']:.1f} %", flush=True)
    return [out]
