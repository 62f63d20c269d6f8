"""Benchmarks run by ``nox -s bench`` / ``heatvit bench``; each writes JSON under build/bench/.

Every module in this package that defines ``main(out_dir: Path, quick: bool) -> list[Path]``
is a benchmark named after the module; ``heatvit bench NAME ...`` runs a subset.  Benchmarks in
``ON_REQUEST`` (the multi-seed training sweep: long, needs torch) run only when named.
Figures are measured (RTL simulation cycle counts, synthesis estimates, test-set accuracy),
never hard-coded.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path


ON_REQUEST = {"training"}


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def run(names: list[str] | None, out_dir: Path, quick: bool = False) -> list[Path]:
    names = names or [n for n in available() if n not in ON_REQUEST]
    unknown = set(names) - set(available())
    if unknown:
        raise ValueError(f"unknown benchmark(s) {sorted(unknown)}; available {available()}")
    written: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        mod = importlib.import_module(f"{__name__}.{name}")
        print(f"== bench {name}", flush=True)
        written += mod.main(out_dir, quick=quick)
    return written
