"""The heatvit compiler: a quantized ViT + an AcceleratorConfig -> one DDR image.

* :func:`compile_model` (``heatvit compile``): float model (quantized here with the config's GEMM
  section) or :class:`~heatvit.golden.quantize.QuantizedViT` -> image bytes (deterministic: the
  same inputs give the same bytes).  A model that does not fit raises :class:`FitError` naming
  the layer and the limit.
* :func:`read_image`: validate an image (truncated, wrong version, damaged, compiled for another
  config -> :class:`ImageError`) and parse it.
* :mod:`.interpret`: the reference interpreter (golden integer ops, descriptor by descriptor).
* :mod:`.cycles`: the analytic per-descriptor cycle estimate.

See docs/isa.md.
"""

from __future__ import annotations

import json
from .emit import FitError, Program, compile_program
from .image import ImageError, ModelImage
from .image import build as _build
from .image import read as read_image
from . import models

__all__ = ["FitError", "ImageError", "ModelImage", "Program", "compile_model", "compile_program",
           "quantize_for", "read_image"]


def quantize_for(model, acc, calib=None, *, calib_count: int = 64, seed: int = 0):
    """Post-training quantization of a float model for ``acc`` (calibration: ``calib`` images, or
    :func:`heatvit.compiler.models.calibration_images`)."""
    if calib is None:
        calib = models.calibration_images(model.cfg, calib_count, seed)
    return models.quantize_model(model, calib, acc.gemm)


def compile_model(model, acc, *, calib=None, debug: bool = False, prune: bool = False, sparse: bool = True) -> bytes:
    """The DDR image of ``model`` (a float model or a ``QuantizedViT``) for ``acc``; ``debug``:
    every layer's result is also stored to the DEBUG region (``interpret.debug_steps`` reads it);
    ``prune``: the model's token selectors run (SELECT descriptors; per-image trace records);
    ``sparse``: weights with all-zero tiles become block-sparse GEMMs (False: all dense)."""
    qm = model if isinstance(model, models.QuantizedViT) else quantize_for(model, acc, calib)
    prog = compile_program(qm, acc, debug=debug, prune=prune, sparse=sparse)
    pruned = prune and bool(qm.plan.blocks)
    cfg = qm.cfg
    memory_map = {
        "config": acc.to_dict(),
        "digest": acc.digest(),
        "model": {"vit": json.loads(cfg.to_json()), "tokens": cfg.num_tokens, "patches": cfg.num_patches,
                  "dense": not pruned, "debug": debug,
                  "plan": {"blocks": list(qm.plan.blocks) if pruned else [],
                           "threshold_q": qm.toksel.threshold_q if pruned else None}},
        "io": prog.io,
        "blocks": prog.blocks,
        "stages": prog.stages,
        "scales": {k: float(v) for k, v in sorted(qm.scales.items())},
    }
    return _build(acc, prog.descs, bytes(prog.data), memory_map)
