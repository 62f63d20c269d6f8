"""Progress of long runs (benchmarks, multi-image simulations, training sweeps).

:func:`progress` wraps an iterable: on a terminal it draws a tqdm bar (on stderr); otherwise
(CI logs, pipes, files) it prints a plain line per step, or per 10 % for long loops, with the
elapsed time, so logs stay readable and free of carriage returns.

    for chunk in progress(chunks, desc="accuracy"):
        ...
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def use_bar(stream: TextIO) -> bool:
    """A bar only on an interactive terminal, and not when ``CI`` is set (or ``HEATVIT_PROGRESS=plain``)."""
    if os.environ.get("HEATVIT_PROGRESS") == "plain" or os.environ.get("CI"):
        return False
    return hasattr(stream, "isatty") and stream.isatty()


def progress(items: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it",
             stream: TextIO | None = None) -> Iterator[T]:
    """Yield ``items``, reporting progress on ``stream`` (default stderr): a tqdm bar on a
    terminal, else lines ``desc: i/total unit (elapsed s)``."""
    stream = stream or sys.stderr
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if use_bar(stream):
        from tqdm import tqdm
        yield from tqdm(items, desc=desc, total=total, unit=unit, file=stream, dynamic_ncols=True)
        return
    t0 = time.monotonic()
    step = 1 if not total or total <= 20 else max(1, total // 10)
    i = 0
    for i, item in enumerate(items, 1):
        yield item
        if i % step == 0 or i == total:
            of = f"/{total}" if total else ""
            print(f"{desc}: {i}{of} {unit} ({time.monotonic() - t0:.0f} s)", file=stream, flush=True)
