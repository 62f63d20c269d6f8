"""The whole accelerator on whole images: the digits model through ``heatvit_accel_fastsim``
(rtl/accel/top.py + the HDL DDR model, Verilator, no Python per clock cycle), driven by
:class:`heatvit.driver.accel.Accelerator`.

Per image: the job's ``CYCLES`` register, the per-descriptor cycle records (the CYCLES region)
summed per layer name and set beside the compiler's estimate (``heatvit.compiler.cycles``:
engine-only, serial and overlapped phases), and the logits compared with golden
``forward_int``.  Simulation speed: the image's cycles over the wall and the CPU seconds of
``infer`` (simulator process, Python included).  Quick: the ``small`` preset (4 x 4), one image;
full: the default config (16 x 16), ``IMAGES`` images.  Writes ``build/bench/accel.json``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from heatvit.config import AcceleratorConfig
from heatvit.presets import PRESETS

IMAGES = 4


def digits_case(acc: AcceleratorConfig, n: int, start: int = 0):
    """(model image, int8 patches, golden logits, labels) of ``n`` digits test images."""
    from heatvit import compiler
    from heatvit.compiler import models
    from heatvit.golden.vit import data as vit_data
    qm = compiler.quantize_for(models.load_model(), acc)
    sp = vit_data.load_splits()
    images = vit_data.upscale(sp["test_x"][start:start + n])
    return (compiler.compile_model(qm, acc), models.patches(qm, images), models.forward_int(qm, images),
            sp["test_y"][start:start + n])


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    from heatvit.compiler import cycles, read_image
    from heatvit.sim.accel_run import run
    name = "small" if quick else "default"
    acc = PRESETS[name]
    n = 1 if quick else IMAGES
    blob, patches, logits, labels = digits_case(acc, n)
    img = read_image(blob, acc)
    with tempfile.TemporaryDirectory() as tmp:
        res = run(acc, blob, patches, logits, tmp, tag=name)      # the build the e2e test uses too
    est = cycles.estimate(img.program, acc, model=img.blob)
    summ = cycles.summary(est, acc)
    first = res["images"][0]
    measured: dict[str, int] = {}
    for _, lname, _, start, end in first["layers"]:
        measured[lname] = measured.get(lname, 0) + end - start
    layers = [{"name": r["name"], "op": r["op"], "m": r["m"], "k": r["k"], "n": r["n"],
               "descriptors": r["descriptors"], "cycles": measured.get(r["name"], 0),
               "estimate_engine": r["engine"], "estimate_overlapped": r["overlapped"],
               "estimate_serial": r["serial"]} for r in cycles.by_layer(est)]
    cyc = [im["cycles"] for im in res["images"]]
    g = acc.gemm
    doc = {
        "quick": quick, "model": "digits (golden/data/vit_digits.npz)", "config": name,
        "config_digest": acc.digest(), "simulator": "verilator", "images": n,
        "bit_exact_images": sum(im["bit_exact"] for im in res["images"]),
        "rtl_top1": [int(np.argmax(im["logits"])) for im in res["images"]],
        "golden_top1": [int(x) for x in np.argmax(logits, 1)], "labels": [int(x) for x in labels],
        "cycles": cyc, "cycles_mean": float(np.mean(cyc)),
        "ms_at_clock_mean": float(np.mean(cyc)) / (acc.clock_mhz * 1e3),
        "gemm_only_cycles": summ["engine"], "estimate_overlapped": summ["overlapped"],
        "estimate_serial": summ["serial"],
        "mac_utilization": summ["macs"] / (float(np.mean(cyc)) * g.rows * g.cols),
        "sim_cycles_per_s": [round(im["cycles"] / im["wall_s"]) for im in res["images"]],
        "sim_cycles_per_cpu_s": [round(im["cycles"] / im["cpu_s"]) for im in res["images"]],
        "sim_wall_s": [round(im["wall_s"], 2) for im in res["images"]],
        "build_and_run_wall_s": round(res["total_wall_s"], 1),
        "layers": layers,
        "note": "cycles: the accelerator's CYCLES register (start to done, every DMA write answered); "
                "layers: per-descriptor records of the first image summed per layer; sim rates per "
                "image's infer() (DDR load/readback included) on a shared machine.",
    }
    out = out_dir / "accel.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"digits on {name}: {doc['bit_exact_images']}/{n} bit-exact, {doc['cycles_mean']:,.0f} cycles per image "
          f"(GEMM-only estimate {summ['engine']:,}, overlapped {summ['overlapped']:,}), "
          f"{doc['sim_cycles_per_s']} sim cycles/s", flush=True)
    return [out]
