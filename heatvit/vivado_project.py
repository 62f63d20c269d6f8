"""``heatvit vivado``: write the ZCU102 Vivado project directory (see heatvit.platform.vivado).

    heatvit vivado [--config NAME|file.json] [--out build/vivado] [--jobs 8]
                   [--data-width BITS] [--burst-len BEATS] [--no-lint]

The shell is the config's ``shell`` section; ``--data-width`` / ``--burst-len`` override it (the
written ``heatvit_config.json`` holds the result, so the driver and CONFIG_ID agree).  Every
top module written (``heatvit_accel``, ``heatvit_top``: the whole accelerator) is linted with Verilator ``-Wall``
(``heatvit.cli.ACCEL_LINT_WAIVERS``) unless ``--no-lint``.

Then copy the directory to a machine with Vivado and run ``vivado -mode batch -source build.tcl``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from heatvit.cli import ACCEL_LINT_WAIVERS, lint
    from heatvit.platform.vivado import VERILOG_TOPS, write_project
    from heatvit.presets import load_config

    ap = argparse.ArgumentParser(prog="heatvit vivado", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="default", help="preset name or AcceleratorConfig JSON file")
    ap.add_argument("--out", default="build/vivado", help="project directory to write")
    ap.add_argument("--jobs", type=int, default=8, help="Vivado run jobs")
    ap.add_argument("--data-width", type=int, default=None,
                    help="AXI4 master data bits (default: the config's shell.data_width)")
    ap.add_argument("--burst-len", type=int, default=None,
                    help="longest AXI4 burst (default: the config's shell.burst_len)")
    ap.add_argument("--no-lint", action="store_true", help="skip the Verilator lint of the written tops")
    args = ap.parse_args(argv)
    acc = load_config(args.config)
    changes = {k: v for k, v in (("data_width", args.data_width), ("burst_len", args.burst_len))
               if v is not None}
    try:
        acc = dataclasses.replace(acc, shell=dataclasses.replace(acc.shell, **changes))
        acc.shell.check_gemm(acc.gemm)
    except ValueError as e:
        ap.error(str(e))
    files = write_project(Path(args.out), acc, jobs=args.jobs)
    print(f"wrote {len(files)} files to {args.out} (config {acc.digest()}):")
    for f in files:
        print(f"  {f} ({f.stat().st_size} bytes)")
    if not args.no_lint:
        for top, rel in VERILOG_TOPS.items():
            lint([Path(args.out) / r for r in rel], top, ACCEL_LINT_WAIVERS)
            print(f"verilator --lint-only -Wall {top}: clean (waived: {', '.join(ACCEL_LINT_WAIVERS)})")
    print(f"build on a Vivado machine: cd {args.out} && vivado -mode batch -source build.tcl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
