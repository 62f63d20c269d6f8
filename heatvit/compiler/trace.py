"""Host side of the pruning trace: the TRACE region a pruned program writes, decoded.

Each SELECT descriptor writes one record (:func:`heatvit.isa.pack_trace_record`) at its ``addr``
in the TRACE region: tokens entering and leaving the stage, kept count, the always-kept tail
and the keep mask over the stage's input tokens.  The memory map's ``io.trace`` lists the
records (stage, block it precedes, descriptor, offset).  :func:`read` turns the region's bytes
into the per-image statistics the driver returns: the token count entering every block, the
keep mask of every stage and the original patches still present after it.

No golden and no Amaranth imports (the board driver uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import isa


@dataclass(frozen=True)
class Trace:
    """One image's pruning trace."""
    tokens_per_block: list[int]
    """Tokens entering each encoder block (class and package tokens included)."""
    keep: list[np.ndarray]
    """Keep mask (bool, over the stage's input tokens) of every selector stage."""
    kept_patches: list[np.ndarray]
    """Original patch indices still present after every selector stage, in token order."""
    records: list[dict]
    """The decoded records (``n_in, n_out, n_kept, n_tail, keep`` plus ``stage, block``)."""

    def selects(self) -> list[tuple[int, int]]:
        """``(n_out, pruned)`` of every stage in program order (:func:`heatvit.compiler.cycles.estimate`)."""
        return [(r["n_out"], r["n_in"] - r["n_kept"]) for r in self.records]


def read(image, blob: bytes) -> Trace:
    """Decode the TRACE region's bytes of one run of ``image`` (a ``ModelImage``); a malformed
    region (wrong size, counts that do not chain from stage to stage) raises ``ValueError``."""
    info = image.trace
    if len(blob) != info["bytes"]:
        raise ValueError(f"trace region must be {info['bytes']} bytes, got {len(blob)}")
    n = info["tokens"]
    per_block = [n] * info["blocks"]
    origin = np.arange(-1, n - 1)
    tail = 0
    keeps, patches, records = [], [], []
    for st in info["stages"]:
        r = isa.unpack_trace_record(blob[st["addr"]:st["addr"] + st["bytes"]])
        keep = np.array(r["keep"], dtype=bool)
        pruned = r["n_in"] - r["n_kept"]
        ok = (r["n_in"] == n and int(keep.sum()) == r["n_kept"] and keep[:1].all()
              and r["n_out"] == r["n_kept"] + (pruned > 0) and r["n_tail"] == tail + (pruned > 0)
              and (tail == 0 or keep[n - tail:].all()))
        if not ok:
            raise ValueError(f"trace record of selector stage {st['stage']} is inconsistent: {r['n_in']} tokens "
                             f"in (expected {n}), {r['n_kept']} kept ({int(keep.sum())} in the mask), "
                             f"{r['n_out']} out, tail {r['n_tail']} (previous tail {tail})")
        origin = np.concatenate([origin[keep], np.full(r["n_out"] - r["n_kept"], -2)])
        n, tail = r["n_out"], r["n_tail"]
        for b in range(st["block"], info["blocks"]):
            per_block[b] = n
        keeps.append(keep)
        patches.append(origin[origin >= 0])
        records.append({**r, "stage": st["stage"], "block": st["block"]})
    return Trace(per_block, keeps, patches, records)
