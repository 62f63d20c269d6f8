"""The whole accelerator on whole images, in RTL simulation: ``build/bench/e2e.json``.

Runs (each through ``heatvit_accel_fastsim`` in Verilator, :mod:`heatvit.e2e`; no Python per
clock cycle):

* ``digits``: the committed digits model on ``IMAGES`` test images at the default config
  (16 x 16);
* ``deit_tiny``: a DeiT-T-shaped model of random weights, whole (12 blocks), one image, at the
  default config (16 x 16).

Quick (CI): ``QUICK_IMAGES`` digits images and no DeiT-T run, on the same config
(:data:`heatvit.e2e.CONFIG`), so it reuses the Verilator build the tests made (a smaller array
would be a second build, and a DeiT-T block alone is ~6.4 M cycles on the 4 x 4 ``small``
preset; ``testbench/test_e2e.py`` runs one block).  ``HEATVIT_E2E_RUNS=digits`` (comma-separated
run names) runs a subset.

One record per run, with the issue's keys: ``model``, ``config``, ``images``,
``bit_exact_images`` (logits equal golden ``forward_int``'s), ``rtl_top1`` and ``golden_top1``
(top-1 accuracy on the labels; None for a random model, whose predicted classes are in
``rtl_classes`` / ``golden_classes``), ``cycles_mean`` (the CYCLES register: start to done, every
DMA write answered), ``gemm_only_cycles_mean`` (``estimate_cycles`` summed over the program's
GEMMs), ``mac_utilization`` (MACs / (cycles_mean x R x C)), ``sim_cycles_per_s`` (the images'
cycles over their ``infer`` wall time: DDR load and readback included), ``sim_wall_s`` (mean
wall time of one image's ``infer``) and ``layers`` (the first image's, :func:`heatvit.e2e.layer_table`).
The file is rewritten after each run, so a long run's predecessors are kept if it is stopped.
Build and simulator output: ``build/bench/e2e-RUN.log``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from heatvit import e2e
from heatvit.presets import PRESETS

IMAGES = 20
QUICK_IMAGES = 1
RUNS = ("digits", "deit_tiny")


def record(run: str, config: str, case: e2e.Case, res: dict) -> dict:
    """The e2e.json record of one run (``res``: :func:`heatvit.e2e.simulate`'s result)."""
    from heatvit.compiler import cycles as cyc_mod
    acc = case.acc
    g = acc.gemm
    ims = res["images"]
    est = cyc_mod.estimate(case.image.program, acc, model=case.blob)
    summ = cyc_mod.summary(est, acc)
    cyc = [im["cycles"] for im in ims]
    rtl = [int(np.argmax(im["logits"])) for im in ims]
    gold = [int(x) for x in np.argmax(case.logits, 1)]
    labels = None if case.labels is None else [int(x) for x in case.labels]

    def top1(pred):
        return None if labels is None else sum(p == y for p, y in zip(pred, labels)) / len(labels)
    wall = [im["wall_s"] for im in ims]
    return {
        "run": run, "model": case.model, "config": config, "config_digest": acc.digest(),
        "array": f"{g.rows}x{g.cols}", "clock_mhz": acc.clock_mhz, "simulator": "verilator",
        "images": len(ims), "bit_exact_images": sum(im["bit_exact"] for im in ims),
        "rtl_top1": top1(rtl), "golden_top1": top1(gold),
        "rtl_classes": rtl, "golden_classes": gold, "labels": labels,
        "cycles_mean": float(np.mean(cyc)), "cycles": cyc,
        "ms_at_clock_mean": float(np.mean(cyc)) / (acc.clock_mhz * 1e3),
        "gemm_only_cycles_mean": summ["engine"],
        "estimate_overlapped": summ["overlapped"], "estimate_serial": summ["serial"],
        "cycles_over_gemm_only": float(np.mean(cyc)) / summ["engine"],
        "macs": summ["macs"],
        "mac_utilization": summ["macs"] / (float(np.mean(cyc)) * g.rows * g.cols),
        "sim_cycles_per_s": sum(cyc) / sum(wall),
        "sim_cycles_per_cpu_s": sum(cyc) / sum(im["cpu_s"] for im in ims),
        "sim_wall_s": float(np.mean(wall)),
        "build_and_run_wall_s": res["total_wall_s"],
        "layers": e2e.layer_table(case, ims[0], est),
    }


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    config = e2e.CONFIG
    acc = PRESETS[config]
    env = os.environ.get("HEATVIT_E2E_RUNS")
    runs = ["digits"] if quick else list(RUNS)
    if env:
        runs = [r.strip() for r in env.split(",") if r.strip()]
        bad = [r for r in runs if r not in RUNS]
        if bad:
            raise ValueError(f"HEATVIT_E2E_RUNS: unknown run(s) {bad}; runs: {', '.join(RUNS)}")
    out = out_dir / "e2e.json"
    doc = {"quick": quick, "target_cycles_over_gemm_only": 1.15, "runs": [],
           "note": "cycles: the accelerator's CYCLES register; layers: the first image's per-descriptor "
                   "records summed per layer beside the compiler's estimate; sim rates on a shared machine."}
    if quick:
        doc["skipped"] = {"deit_tiny": "~6 M cycles: not in quick mode; testbench/test_e2e.py runs one DeiT-T block"}
    for run in runs:
        t0 = time.perf_counter()
        case = (e2e.digits_case(acc, QUICK_IMAGES if quick else IMAGES) if run == "digits"
                else e2e.deit_case(acc))
        with tempfile.TemporaryDirectory() as tmp:
            res = e2e.simulate(case, Path(tmp), log=out_dir / f"e2e-{run}.log", desc=f"e2e {run}")
        rec = record(run, config, case, res)
        rec["bench_wall_s"] = time.perf_counter() - t0
        doc["runs"].append(rec)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{run} on {config}: {rec['bit_exact_images']}/{rec['images']} bit-exact, top-1 RTL {rec['rtl_top1']} "
              f"golden {rec['golden_top1']}; {rec['cycles_mean']:,.0f} cycles per image = "
              f"{rec['cycles_over_gemm_only']:.3f} x GEMM-only {rec['gemm_only_cycles_mean']:,}, MAC utilization "
              f"{rec['mac_utilization']:.3f}; {rec['sim_cycles_per_s']:,.0f} sim cycles/s, {rec['sim_wall_s']:.1f} s "
              f"per image", flush=True)
    return [out]
