"""Every endpoint's logic depth of the accelerator's units, each exported alone (issue 13).

Not a benchmark itself (the leading underscore keeps :func:`heatvit.bench.available` from
listing it).  ``python -m heatvit.bench._depth PRESET UNIT...`` exports each unit of
:data:`UNITS` at preset ``PRESET`` (DSP48E2 primitives instantiated, as the resources bench
does) and prints, per module of the unit (or the modules named after a colon:
``exec_gemm:exec_gemm,exec_gemm.wbuf``; ``exec_gemm:?`` lists the unit's modules),
:func:`._yosys.endpoint_levels`' figures: every-endpoint
levels, the ``ltp`` levels, LUT (LUT-RAM counted) and FF.  yosys runs are cached per module in
:func:`._yosys.cache_dir` (``HEATVIT_YOSYS_CACHE``).
"""

from __future__ import annotations

import json
import sys


def _dma(acc):
    from heatvit.rtl.accel.dma_ports import DmaPorts
    return DmaPorts(acc, 2, 2)


def _wports(acc):
    from heatvit.rtl.accel.weight_ports import WeightPorts
    return WeightPorts(acc)


def _gemm(acc):
    from heatvit.rtl.accel.gemm_exec import GemmExecutor
    return GemmExecutor(acc)


def _seq(acc):
    from heatvit.rtl.accel.sequencer import Sequencer
    return Sequencer(acc)


def _layernorm(acc):
    from heatvit.rtl.accel.layernorm_exec import LayerNormExecutor
    return LayerNormExecutor(acc)


def _add(acc):
    from heatvit.rtl.accel.top import AddOp
    return AddOp(acc)


def _load(acc):
    from heatvit.rtl.accel.io_exec import LoadExecutor
    return LoadExecutor(acc)


def _store(acc):
    from heatvit.rtl.accel.io_exec import StoreExecutor
    return StoreExecutor(acc)


def _top(acc):
    from heatvit.rtl.accel.top import Accelerator
    return Accelerator(acc)


UNITS = {"dma": _dma, "wports": _wports, "exec_gemm": _gemm, "seq": _seq, "exec_layernorm": _layernorm,
         "exec_add": _add, "heatvit_accel": _top}
UNITS.update({"exec_load": _load, "exec_store": _store})
"""Unit name (its top module's name, as in the accelerator) -> its constructor from an
:class:`~heatvit.config.AcceleratorConfig`."""


def unit_verilog(acc, unit: str) -> str:
    """``unit`` (:data:`UNITS`) at ``acc`` as Verilog, DSP48E2 primitives instantiated."""
    from heatvit.rtl.gemm.dsp48e2 import PRIMITIVES
    from heatvit.sim.runner import export_verilog
    return export_verilog(UNITS[unit](acc), unit, platform=PRIMITIVES)


def unit_levels(acc, unit: str, modules: list[str] | None = None, log=None) -> dict[str, dict]:
    """:func:`._yosys.endpoint_levels` of ``unit`` (:data:`UNITS`) at ``acc``: ``modules``, or
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
