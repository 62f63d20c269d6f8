"""Token-selector control unit: cycles per selector and resources, DeiT-T/S/B widths.

Writes ``toksel.json``.  For each of DeiT-T/S/B (D = 192/384/768) the unit is built with 16
lanes (the ``bench`` GEMM array's rows) and run in RTL simulation on 197 tokens at three keep
ratios (no stalls; every write and count checked bit-exactly against the golden model).  The
unit's own cycles (command accepted -> result taken) are set against the GEMM-engine cycles of
one encoder block of the same model on the 16 x 16 array (``GemmConfig.estimate_cycles``, the
engine's exact cycle model; attention GEMMs counted once per head); target < 2 %.  For context
the selector's own MLP GEMMs (run on the GEMM engine) are given too.  Resources: Debian
``yosys`` ``synth_xilinx -family xcup`` of the exported Verilog (LUT = LUT1..LUT6 plus LUTs used
as RAM, FF, DSP48E2, CARRY8/CARRY4), and separately of the score combiner that turns per-head
``(a, t)`` into the unit's score stream (on the nonlinear path: its reciprocal unit and one
multiply).  Quick mode: a 10-token, D = 16 model on the ``small`` preset's 4 lanes, no synthesis.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

from heatvit.golden.token_selector.int_selector import selector_gemm_shapes
from heatvit.presets import PRESETS
from heatvit.toksel_config import TokSelConfig

from . import _yosys
from .gemm import DEIT, QUICK_MODELS, block_gemms

TARGET_FRACTION = 0.02
KEEPS = (0.7, 0.0, 1.0)        # SPViT's first-stage keep ratio, keep-none (worst case), keep-all
TOKENS = 197


def _model(model: str):
    return {**DEIT, **QUICK_MODELS}[model]


def block_gemm_cycles(model: str, preset: str = "bench") -> int:
    g = PRESETS[preset].gemm
    heads = _model(model).heads
    return sum(g.estimate_cycles(e["M"], e["K"], e["N"]) * (heads if e["layer"] in ("qk_t", "attn_v") else 1)
               for e in block_gemms(model))


def selector_gemm_cycles(dim: int, heads: int, n: int, preset: str = "bench") -> int:
    g = PRESETS[preset].gemm
    return sum(g.estimate_cycles(*s) for s in selector_gemm_shapes(dim, heads, n))


def unit_config(model: str, preset: str = "bench") -> TokSelConfig:
    v = _model(model)
    return TokSelConfig(max_tokens=256, dim=v.dim, heads=v.heads, lanes=PRESETS[preset].gemm.rows)


def measure_cycles(cfg: TokSelConfig, *, tokens: int = TOKENS, sim: str = "icarus",
                   tag: str = "bench") -> list[dict]:
    """Run the ``measure`` cocotb test of :mod:`heatvit.sim.toksel_tb` on ``tokens`` tokens."""
    from heatvit.rtl.toksel import TokenSelectorUnit
    from heatvit.sim import runner
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        env = runner.config_env(cfg)
        env["HEATVIT_STAGES"] = json.dumps([{"n": tokens, "keep": k} for k in KEEPS])
        env["HEATVIT_RESULT"] = str(result)
        runner.run_cocotb(verilog=runner.export_verilog(TokenSelectorUnit(cfg), "toksel"), toplevel="toksel",
                          test_module="toksel_tb", test_dir=Path(runner.__file__).parent, sim=sim, env=env,
                          tag=f"{tag}-{cfg.dim}")
        return json.loads(result.read_text())


def synthesize(component, top: str) -> dict:
    """Resource estimate of ``component`` from Debian yosys ``synth_xilinx -family xcup``."""
    if not _yosys.available():
        return {"error": "yosys not found (apt-get install yosys)"}
    cells = _yosys.cell_counts(component, top)
    version = _yosys.version()
    lut_logic = sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
    lut_ram = sum(v * _yosys.LUTRAM_LUTS[k] for k, v in cells.items() if k in _yosys.LUTRAM_LUTS)
    return {
        "tool": version, "command": "synth_xilinx -family xcup",
        "lut": lut_logic + lut_ram, "lut_logic": lut_logic, "lut_as_ram": lut_ram,
        "ff": sum(v for k, v in cells.items() if re.fullmatch(r"FD[A-Z]+", k)),
        "dsp": sum(v for k, v in cells.items() if k.startswith("DSP")),
        "bram": sum(v for k, v in cells.items() if k.startswith("RAMB")),
        "carry": sum(v for k, v in cells.items() if k.startswith("CARRY")),
    }


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    from heatvit.rtl.toksel import ScoreCombiner, TokenSelectorUnit
    models = list(QUICK_MODELS if quick else DEIT)
    preset = "small" if quick else "bench"
    # ``make`` builds the component only when it is synthesized (quick mode builds none, so
    # Amaranth does not warn of an unused elaboratable)
    synth = (lambda make, top: {"skipped": "quick mode"}) if quick else (lambda make, top: synthesize(make(), top))
    rows = []
    t0 = time.perf_counter()
    for model in models:
        cfg = unit_config(model, preset)
        tokens = _model(model).num_tokens
        runs = measure_cycles(cfg, tokens=tokens)
        block = block_gemm_cycles(model, preset)
        sel_gemm = selector_gemm_cycles(cfg.dim, cfg.heads, tokens, preset)
        worst = max(r["cycles"] for r in runs)
        row = {
            "model": model, "dim": cfg.dim, "heads": cfg.heads, "lanes": cfg.lanes, "tokens": tokens,
            "unit_cycles": {f"keep_{r['keep']}": r["cycles"] for r in runs},
            "tokens_out": {f"keep_{r['keep']}": r["n_out"] for r in runs},
            "unit_cycles_worst": worst,
            "block_gemm_cycles": block,
            "fraction_of_block": round(worst / block, 5),
            "selector_mlp_gemm_cycles": sel_gemm,
            "selector_mlp_fraction_of_block": round(sel_gemm / block, 5),
            "bit_exact": all(r["bit_exact"] for r in runs),
            "resources": synth(lambda: TokenSelectorUnit(cfg), "toksel"),
            "combiner_resources": synth(lambda: ScoreCombiner(cfg), "combiner"),
        }
        rows.append(row)
        print(f"{model}: unit {worst} cycles = {100 * row['fraction_of_block']:.2f}% of a block's "
              f"{block} GEMM cycles; resources {row['resources']}", flush=True)
    from heatvit.nonlinear_config import NonlinearConfig
    from heatvit.rtl.nonlinear.serial_recip import SerialReciprocal
    from heatvit.rtl.toksel.combiner import DEN_BITS
    out = {
        "unit": "heatvit.rtl.toksel.TokenSelectorUnit",
        "combiner": "heatvit.rtl.toksel.ScoreCombiner (no DSP: its reciprocal is the shift-add SerialReciprocal)",
        "quick": quick,
        "reciprocal_unit_resources": synth(lambda: SerialReciprocal(NonlinearConfig(), DEN_BITS), "recip"),
        "gemm_array": f"{PRESETS[preset].gemm.rows}x{PRESETS[preset].gemm.cols}",
        "cycle_source": "RTL simulation (Icarus), command accepted -> result taken, no stalls; "
                        "block GEMM cycles from GemmConfig.estimate_cycles",
        "target_fraction": TARGET_FRACTION,
        "models": rows,
        "meets_target": all(r["fraction_of_block"] < TARGET_FRACTION for r in rows),
        "no_dsp": None if quick else all(r["resources"].get("dsp", 0) == 0 for r in rows),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    path = out_dir / "toksel.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    return [path]
