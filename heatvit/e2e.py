"""Whole images through the whole accelerator in RTL simulation, quietly: the shared core of
``heatvit demo`` and ``heatvit bench e2e``.

* Cases: :func:`digits_case` (the committed digits model on its test images) and
  :func:`deit_case` (a DeiT-T-shaped model of random weights, any depth, on a random image);
  each gives the compiled model image, the host-quantized int8 patches and golden
  ``forward_int``'s logits (and, for a stage check, golden's per-stage dumps).
* :func:`simulate` runs them through ``heatvit_accel_fastsim`` (the accelerator + the HDL DDR
  model, Verilator, no Python per clock cycle; :func:`heatvit.sim.accel_run.run`) in a child
  process whose output (Verilator, g++, make, cocotb) goes to a log file; progress (a tqdm bar
  on a terminal, plain lines otherwise) shows the build and each image; on failure the log's
  tail is printed and :class:`RuntimeError` names the log.
* :func:`layer_table`: measured cycles per layer (the CYCLES records, descriptors of one layer
  summed) beside the compiler's estimate (:mod:`heatvit.compiler.cycles`).
* :func:`check_stages`: a debug build's DEBUG region against golden's stage dumps.

Every run at one config uses the same fast-sim build (tag :data:`TAG`, DDR model of
:data:`DDR_BYTES`: room for a whole DeiT-T image), so the demo, the bench and the tests share it.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heatvit.config import AcceleratorConfig

CONFIG = "default"
"""The preset of the demo, of ``heatvit bench e2e`` (quick too) and of the end-to-end tests: one
Verilator build of the 16 x 16 accelerator serves them all (a DeiT-T block is ~6.4 M cycles on
the ``small`` preset's 4 x 4 array, ~0.5 M here)."""
TAG = "e2e"
DDR_BYTES = 1 << 23
"""The DDR model's size: a DeiT-T image (5.98 MB at 16 x 16) with its I/O regions fits."""
BUILT_MARK = "[heatvit.sim] accel_run on"
"""What :func:`heatvit.sim.runner.run_cocotb` prints once the simulator is built."""


@dataclass
class Case:
    """One model on some images: ``blob`` (the ``heatvit compile`` image for ``acc``), ``patches``
    (B, rows, cols) int8, golden ``logits`` (B, classes), ``labels`` (B,) or None (random
    models), ``dumps``: golden's per-stage dumps per image (only when asked for)."""
    model: str
    acc: AcceleratorConfig
    blob: bytes
    patches: np.ndarray
    logits: np.ndarray
    labels: np.ndarray | None = None
    dumps: list | None = None

    @functools.cached_property
    def image(self):
        """The parsed model image (parsed once: a DeiT-T image is ~6 MB)."""
        from heatvit.compiler import read_image
        return read_image(self.blob, self.acc)


def digits_case(acc: AcceleratorConfig, n: int, start: int = 0, *, debug: bool = False) -> Case:
    """The committed digits model on test images ``start .. start + n``; ``debug``: a debug build
    (every layer's result also stored to DEBUG) and golden's stage dumps to check them against."""
    from heatvit import compiler
    from heatvit.compiler import models
    from heatvit.golden.vit import data as vit_data
    if n < 1:
        raise ValueError(f"the number of images must be at least 1, not {n!r}")
    sp = vit_data.load_splits()
    if start < 0 or start + n > len(sp["test_y"]):
        raise ValueError(f"test images {start}..{start + n - 1} out of range: the digits test split has "
                         f"{len(sp['test_y'])} images")
    qm = compiler.quantize_for(models.load_model(), acc)
    images = vit_data.upscale(sp["test_x"][start:start + n])
    logits, dumps = models.dense_dumps(qm, images) if debug else (models.forward_int(qm, images), None)
    return Case("digits (golden/data/vit_digits.npz)", acc, compiler.compile_model(qm, acc, debug=debug),
                models.patches(qm, images), logits, np.asarray(sp["test_y"][start:start + n]), dumps)


def deit_case(acc: AcceleratorConfig, depth: int = 12, seed: int = 0, *, calib: int = 4) -> Case:
    """A DeiT-T-shaped model (``depth`` blocks) of random weights, quantized on ``calib`` random
    images, on one more random image (:func:`heatvit.compiler.models.random_quantized`)."""
    from heatvit import compiler
    from heatvit.compiler import models
    qm, image = models.random_quantized(acc, "deit_tiny", depth, seed, calib=calib)
    name = "deit_tiny" if depth == 12 else f"deit_tiny ({depth} block{'s' * (depth > 1)})"
    return Case(f"{name}, random weights (seed {seed})", acc, compiler.compile_model(qm, acc),
                models.patches(qm, image), models.forward_int(qm, image))


def simulate(case: Case, workdir: Path, *, log: Path, verbose: bool = False, sim: str = "verilator",
             desc: str = "e2e", damage: bool = False, ddr_bytes: int = DDR_BYTES, tag: str = TAG) -> dict:
    """Run ``case``'s images through ``heatvit_accel_fastsim``; :func:`heatvit.sim.accel_run.run`'s
    result (per image: logits, bit_exact, cycles, wall_s, cpu_s, layers, debug) plus
    ``total_wall_s`` (build included).  ``verbose``: the child's output on our stdout, no log.
    ``ddr_bytes``, ``tag``: the DDR model's size and the build's tag (another build than the
    shared one, e.g. the board-scale runs of :mod:`heatvit.bench.board_rtl`)."""
    workdir = Path(workdir).resolve()                 # the simulator runs in its build directory
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "image.bin").write_bytes(case.blob)
    np.savez(workdir / "case.npz", patches=np.asarray(case.patches, dtype=np.int64), logits=np.asarray(case.logits))
    (workdir / "args.json").write_text(json.dumps({"config": case.acc.to_dict(), "sim": sim, "damage": damage,
                                                      "ddr_bytes": ddr_bytes, "tag": tag}))
    for f in ("result.json", "run.json"):
        (workdir / f).unlink(missing_ok=True)
    # -P: not the working directory first on sys.path (a checkout's heatvit/ would shadow the
    # installed package); the child keeps the working directory, so the same build/ is used.
    cmd = [sys.executable, "-P", "-m", "heatvit.e2e", str(workdir)]
    if verbose:
        rc = subprocess.run(cmd).returncode
    else:
        log = Path(log)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
            try:
                _watch(proc, log, workdir / "result.json", len(case.patches), desc)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        rc = proc.returncode
    if rc != 0:
        if not verbose:
            tail = Path(log).read_text(errors="replace").splitlines()[-200:]
            print("\n".join(tail), file=sys.stderr)
        raise RuntimeError(f"the RTL simulation failed (exit code {rc})" + ("" if verbose else f"; full log: {log}"))
    return json.loads((workdir / "run.json").read_text())


def _images_done(result: Path) -> int:
    try:
        return len(json.loads(result.read_text())["images"])
    except (OSError, ValueError, KeyError):
        return 0                                    # not written yet, or being written


def _watch(proc, log: Path, result: Path, total: int, desc: str) -> None:
    """Progress of the child ``proc`` until it exits: the build, then each image."""
    from heatvit.progress import use_bar
    bar = None
    t0 = time.monotonic()
    if use_bar(sys.stderr):
        from tqdm import tqdm
        bar = tqdm(total=total, desc=f"{desc}: elaborating and building the simulator", unit="image", file=sys.stderr,
                   dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} images [{elapsed}]")
    else:
        print(f"{desc}: elaborating and building the simulator (Verilator; reused on later runs) ...", file=sys.stderr, flush=True)
    built, done = False, 0
    try:
        while True:
            running = proc.poll() is None
            if not built and BUILT_MARK in log.read_text(errors="replace"):
                built = True
                if bar is not None:
                    bar.set_description(f"{desc}: simulating")
                else:
                    print(f"{desc}: simulator ready ({time.monotonic() - t0:.0f} s); simulating {total} image(s)",
                          file=sys.stderr, flush=True)
            n = _images_done(result)
            if n > done:
                if bar is not None:
                    bar.update(n - done)
                else:
                    print(f"{desc}: image {n}/{total} done ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
                done = n
            if not running:
                return
            time.sleep(0.5)
    finally:
        if bar is not None:
            bar.close()


def layer_table(case: Case, image_result: dict, estimates: list | None = None) -> list[dict]:
    """Per layer (program order): ``name, op, m, k, n, descriptors``, ``cycles_measured`` (the
    image's CYCLES records of the layer's descriptors, summed), ``cycles_estimated`` (the
    compiler's estimate with each descriptor's phases overlapped), ``cycles_gemm_only``
    (``estimate_cycles``) and ``cycles_serial`` (phases added).  ``estimates``: the program's
    :func:`heatvit.compiler.cycles.estimate` if the caller has it already."""
    from heatvit.compiler import cycles
    if estimates is None:
        estimates = cycles.estimate(case.image.program, case.acc, model=case.blob)
    measured: dict[str, int] = {}
    for _, name, _, start, end in image_result["layers"]:
        measured[name] = measured.get(name, 0) + end - start
    return [{"name": r["name"], "op": r["op"], "m": r["m"], "k": r["k"], "n": r["n"],
             "descriptors": r["descriptors"], "cycles_measured": measured.get(r["name"], 0),
             "cycles_estimated": r["overlapped"], "cycles_gemm_only": r["engine"], "cycles_serial": r["serial"]}
            for r in cycles.by_layer(estimates)]


def check_stages(case: Case, b: int, debug_hex: str) -> tuple[int, str | None]:
    """Image ``b``'s DEBUG region (a debug build's, hex) against golden's dumps: (stages compared,
    the first stage that differs or None)."""
    from heatvit.compiler import interpret
    img = case.image
    got = interpret.stages(img, interpret.debug_steps(img, bytes.fromhex(debug_hex)))
    for name, arr in got.items():
        if not np.array_equal(arr, case.dumps[b][name]):
            return len(got), name
    return len(got), None


NOT_IN_VERILOG = ("bench", "compiler", "driver")
"""Subpackages the accelerator's Verilog is not made from (nothing under ``rtl/`` or ``sim/``
imports them): a change there keeps :func:`fast_verilog`'s cached text."""


def verilog_sources_hash(acc: AcceleratorConfig, ddr_bytes: int):
    """A SHA-256 object over ``acc``, ``ddr_bytes`` and every source file of the installed package
    the accelerator's Verilog is made from (all but :data:`NOT_IN_VERILOG`): the key of
    :func:`fast_verilog`'s cache, and the start of any measurement key that depends on the RTL."""
    import hashlib

    import heatvit
    pkg = Path(heatvit.__file__).parent
    h = hashlib.sha256(json.dumps([acc.to_dict(), ddr_bytes]).encode())
    for f in sorted(p for p in pkg.rglob("*") if p.suffix in (".py", ".v") and p.is_file()):
        if f.relative_to(pkg).parts[0] not in NOT_IN_VERILOG:
            h.update(str(f.relative_to(pkg)).encode() + b"\0" + f.read_bytes())
    return h


def fast_verilog(acc: AcceleratorConfig, ddr_bytes: int = DDR_BYTES) -> str:
    """``heatvit_accel_fastsim``'s Verilog (:func:`heatvit.sim.accel_top.export_fast`), cached
    under ``build/sim/verilog/``: elaborating the 16 x 16 accelerator takes minutes, and every
    run needs the text (the build directory is chosen by its digest).  The key covers the config,
    ``ddr_bytes`` and every source file of the installed package but those of the compiler, the
    driver and the benches (:data:`NOT_IN_VERILOG`), so any change to what the Verilog is made
    from re-exports."""
    from heatvit.sim.accel_top import TOP_NAME, export_fast
    from heatvit.sim.runner import build_root, exclusive
    h = verilog_sources_hash(acc, ddr_bytes)
    path = build_root() / "sim" / "verilog" / f"{TOP_NAME}-{h.hexdigest()[:16]}.v"
    with exclusive(path.parent):            # concurrent callers elaborate once
        if path.is_file():
            return path.read_text()
        text = export_fast(acc, ddr_bytes)
        tmp = path.with_suffix(f".tmp{id(text)}")
        tmp.write_text(text)
        tmp.replace(path)
        return text


def _child(workdir: str) -> None:
    """The child process of :func:`simulate`: build and run, write ``run.json``."""
    from heatvit.sim.accel_run import run
    wd = Path(workdir)
    args = json.loads((wd / "args.json").read_text())
    data = np.load(wd / "case.npz")
    acc = AcceleratorConfig.from_dict(args["config"])
    ddr_bytes = args.get("ddr_bytes", DDR_BYTES)
    res = run(acc, (wd / "image.bin").read_bytes(), data["patches"], data["logits"], wd, sim=args["sim"],
              damage=args["damage"], ddr_bytes=ddr_bytes, tag=args.get("tag", TAG),
              verilog=fast_verilog(acc, ddr_bytes))
    (wd / "run.json").write_text(json.dumps(res))


if __name__ == "__main__":
    _child(sys.argv[1])
