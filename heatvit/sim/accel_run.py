"""cocotb module: whole programs on ``heatvit_accel_fastsim`` (the accelerator + the HDL DDR model)
through :class:`heatvit.driver.accel.Accelerator` on the fast-simulation back end
(:func:`run` is the Python side: build, run, result).

The caller (testbench/test_accel_top.py, ``heatvit bench e2e``, ``heatvit demo``: :mod:`heatvit.e2e`) writes a case directory
(``HEATVIT_ACCEL_CASE``): ``image.bin`` (a ``heatvit compile`` image for ``HEATVIT_CONFIG``),
``case.npz`` (``patches`` (B, rows, cols) int8, ``logits`` (B, classes): the golden logits) and
writes ``result.json`` there: per image the logits, cycles and per-descriptor records, the
decoded SELECT trace records of a pruned program (``trace``: ``n_in, n_out, n_kept, n_tail,
keep, stage, block`` per stage; ``trace_hex``: the TRACE region's bytes), a debug build's DEBUG
region (``debug``, hex), the simulator's wall time, and (``HEATVIT_ACCEL_DAMAGE=1``) the
damaged-program check.
"""

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np

from heatvit.config import AcceleratorConfig
from heatvit.driver.accel import Accelerator
from heatvit.driver.fastsim import open_backend
from heatvit.errors import ErrorCode, HardwareError


@cocotb.test()
async def run_images(dut):
    acc = AcceleratorConfig.from_dict(json.loads(os.environ["HEATVIT_CONFIG"]))
    case = Path(os.environ["HEATVIT_ACCEL_CASE"])
    blob = (case / "image.bin").read_bytes()
    data = np.load(case / "case.npz")
    be = await open_backend(dut, acc, ddr_bytes=int(os.environ["HEATVIT_DDR_BYTES"]))
    drv = Accelerator(acc, be, max_polls=int(os.environ.get("HEATVIT_MAX_POLLS", "200")))
    await drv.check_identity()
    img = drv.load(blob)
    out = {"images": []}
    for b, patches in enumerate(data["patches"]):
        t0, c0 = time.perf_counter(), time.process_time()
        logits, [st] = await drv.infer(patches)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out["images"].append({
            "logits": logits[0].tolist(), "bit_exact": bool(np.array_equal(logits[0], data["logits"][b])),
            "cycles": st.cycles, "wall_s": wall, "cpu_s": cpu,
            "layers": [[lay.index, lay.name, lay.op, lay.start, lay.end] for lay in st.layers],
            "tokens_per_block": list(st.tokens_per_block),
            "trace": [{k: (list(map(bool, v)) if k == "keep" else int(v)) for k, v in r.items()}
                      for r in st.trace.records] if st.trace is not None else None,
            "trace_hex": be.read_mem(drv.bases["TRACE"], drv.sizes["TRACE"]).hex() if drv.sizes["TRACE"] else "",
            **({"debug": st.debug.hex()} if st.debug else {})})
        (case / "result.json").write_text(json.dumps(out))
    if os.environ.get("HEATVIT_ACCEL_DAMAGE"):
        # an unknown opcode in the first GEMM: its error code and index, nothing in OUTPUT; then
        # the repaired program runs right again
        i = next(j for j, d in enumerate(img.program) if d.opcode.name == "GEMM")
        at = drv.bases["PROGRAM"] + 32 * i
        good = be.read_mem(at, 4)
        be.write_mem(at, bytes([0x0A]) + good[1:])
        try:
            await drv.infer(data["patches"][0])
            raise AssertionError("a damaged program ran without an error")
        except HardwareError as e:
            out["damaged"] = {"code": e.code, "index": e.index, "want_index": i,
                              "want_code": int(ErrorCode.CTRL_BAD_OPCODE),
                              "output_zero": be.read_mem(drv.bases["OUTPUT"], drv.sizes["OUTPUT"]) == bytes(drv.sizes["OUTPUT"])}
        be.write_mem(at, good)
        logits, [st] = await drv.infer(data["patches"][0])
        out["repaired_bit_exact"] = bool(np.array_equal(logits[0], data["logits"][0]))
        (case / "result.json").write_text(json.dumps(out))


def run(acc, blob: bytes, patches, logits, workdir, *, sim: str = "verilator", damage: bool = False,
        ddr_bytes: int = 1 << 22, tag: str = "", profile: str = "fast", verilog: str | None = None) -> dict:
    """Run images (int8 ``patches``, golden ``logits``) of model image ``blob`` through
    ``heatvit_accel_fastsim``; this module's ``result.json``, plus ``total_wall_s`` (build and
    run), ``build_wall_s`` and ``build_cpu_s``.  ``profile``: the
    :func:`heatvit.sim.runner.run_cocotb` build profile ("fast": only the top's pins are visible
    to the test, which is all the driver uses).  ``verilog``: the top's Verilog
    (``export_fast(acc, ddr_bytes)``, e.g. cached by the caller), exported here if None."""
    from heatvit.sim.accel_top import TOP_NAME, export_fast
    from heatvit.sim.runner import run_cocotb
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "image.bin").write_bytes(blob)
    np.savez(workdir / "case.npz", patches=np.asarray(patches, dtype=np.int64), logits=np.asarray(logits))
    env = {"HEATVIT_CONFIG": json.dumps(acc.to_dict()), "HEATVIT_DDR_BYTES": str(ddr_bytes),
           "HEATVIT_ACCEL_CASE": str(workdir)}
    if damage:
        env["HEATVIT_ACCEL_DAMAGE"] = "1"
    t0 = time.perf_counter()
    sim_res = run_cocotb(verilog=verilog or export_fast(acc, ddr_bytes), toplevel=TOP_NAME,
                         test_module="accel_run", test_dir=Path(__file__).parent, sim=sim, env=env, tag=tag,
                         profile=profile)
    res = json.loads((workdir / "result.json").read_text())
    res["total_wall_s"] = time.perf_counter() - t0
    res["build_wall_s"], res["build_cpu_s"] = sim_res.build_s, sim_res.build_cpu_s
    return res
