"""Benchmarks run by ``nox -s bench`` / ``heatvit bench``; each writes JSON under build/bench/.

Every module in this package whose name does not start with ``_`` is a benchmark named after the
module and defines ``main(out_dir: Path, quick: bool) -> list[Path]``; adding a benchmark is
adding such a module.  ``heatvit bench NAME ...`` runs a subset.  Figures are measured (RTL
simulation cycle counts, synthesis estimates, test-set accuracy), never hard-coded.

``quick=True`` must run the same code paths on small configurations and shapes (the ``small``
preset, Icarus, no long synthesis) so that the whole set finishes in a few minutes: CI
(``.ci/run``) runs ``heatvit bench --quick`` after the tests, so no benchmark breaks unnoticed.

Benchmarks in ``ON_REQUEST`` (the multi-seed training sweep: long, needs torch) run only when
named, never in the default set (nor in CI's quick run).
"""

from __future__ import annotations

import importlib
import pkgutil
import time
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
    wall = {}
    for name in names:
        mod = importlib.import_module(f"{__name__}.{name}")
        print(f"== bench {name}{' (quick)' if quick else ''}", flush=True)
        t0 = time.perf_counter()
        written += mod.main(out_dir, quick=quick)
        wall[name] = time.perf_counter() - t0
        print(f"== bench {name}: {wall[name]:.0f} s", flush=True)
    print("== bench wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items())
          + f"; total {sum(wall.values()):.0f} s", flush=True)
    return written
