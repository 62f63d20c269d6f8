"""Every endpoint's logic depth of the accelerator's units, each exported alone (issue 13).

Not a benchmark itself (the leading underscore keeps :func:`heatvit.bench.available` from
listing it).  ``python -m heatvit.bench._depth PRESET UNIT...`` exports each unit of
:data:`UNIT_CLASSES` at preset ``PRESET`` (DSP48E2 primitives instantiated, as the resources bench
does) and prints, per module of the unit (or the modules named after a colon:
``exec_gemm:exec_gemm,exec_gemm.wbuf``; ``exec_gemm:?`` lists the unit's modules),
:func:`._yosys.endpoint_levels`' figures: every-endpoint
levels, the ``ltp`` levels, LUT (LUT-RAM counted) and FF.  yosys runs are cached per module in
:func:`._yosys.cache_dir` (``HEATVIT_YOSYS_CACHE``).
"""

from __future__ import annotations

import importlib
import json
import sys


UNIT_CLASSES: dict[str, tuple[str, str, tuple]] = {
    "dma": ("dma_ports", "DmaPorts", (2, 2)),
    "wports": ("weight_ports", "WeightPorts", ()),
    "exec_gemm": ("gemm_exec", "GemmExecutor", ()),
    "seq": ("sequencer", "Sequencer", ()),
    "exec_layernorm": ("layernorm_exec", "LayerNormExecutor", ()),
    "exec_add": ("top", "AddOp", ()),
    "exec_select": ("selector_exec", "SelectorExecutor", ()),
    "exec_mean": ("mean_exec", "MeanExecutor", ()),
    "exec_load": ("io_exec", "LoadExecutor", ()),
    "exec_store": ("io_exec", "StoreExecutor", ()),
    "heatvit_accel": ("top", "Accelerator", ()),
}
"""Unit name (its top module's name, as in the accelerator) -> (module of
:mod:`heatvit.rtl.accel`, class, arguments after the :class:`~heatvit.config.AcceleratorConfig`),
imported only when the unit is built.  ``exec_select`` is the selectors' executor
(:class:`~heatvit.rtl.accel.selector_exec.SelectorExecutor`: COPY, MEAN and SELECT in one module,
as the accelerator builds it); ``exec_mean`` is :class:`~heatvit.rtl.accel.mean_exec.MeanExecutor`
alone (its logic is part of ``exec_select``'s own module in the accelerator)."""


def build_unit(acc, unit: str):
    """``unit`` (:data:`UNIT_CLASSES`) constructed at ``acc``."""
    if unit not in UNIT_CLASSES:
        raise ValueError(f"unknown unit {unit!r}: one of {', '.join(UNIT_CLASSES)}")
    module, cls, args = UNIT_CLASSES[unit]
    return getattr(importlib.import_module(f"heatvit.rtl.accel.{module}"), cls)(acc, *args)


def unit_verilog(acc, unit: str) -> str:
    """``unit`` (:data:`UNIT_CLASSES`) at ``acc`` as Verilog, DSP48E2 primitives instantiated."""
    from heatvit.rtl.gemm.dsp48e2 import PRIMITIVES
    from heatvit.sim.runner import export_verilog
    return export_verilog(build_unit(acc, unit), unit, platform=PRIMITIVES)


def unit_levels(acc, unit: str, modules: list[str] | None = None, log=None) -> dict[str, dict]:
    """:func:`._yosys.endpoint_levels` of ``unit`` (:data:`UNIT_CLASSES`) at ``acc``: ``modules``, or
    every module of the unit."""
    from . import _yosys
    return _yosys.endpoint_levels(unit_verilog(acc, unit), modules, log=log)


def main(argv: list[str]) -> None:
    from heatvit.presets import PRESETS
    acc = PRESETS[argv[0]]
    for spec in argv[1:]:
        unit, _, names = spec.partition(":")
        if names == "?":            # the unit's modules, largest first (bytes of Verilog)
            from . import _yosys
            mods = _yosys.split_modules(_yosys.prepare(unit_verilog(acc, unit)))
            for n, (text, _) in sorted(mods.items(), key=lambda kv: -len(kv[1][0])):
                print(len(text), n.lstrip("\\"))
            continue
        got = unit_levels(acc, unit, names.split(",") if names else None, log=print)
        for name, r in sorted(got.items(), key=lambda kv: -kv[1]["levels"]):
            print(json.dumps({"preset": argv[0], "module": name, **{k: r[k] for k in
                              ("levels", "ltp_levels", "lut", "ff", "source", "net", "deepest_nets", "path")}}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
