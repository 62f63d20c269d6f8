"""Named configurations, and loading a config from a name or a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

from .config import AcceleratorConfig, GemmConfig
from .toksel_config import TokSelConfig

PRESETS: dict[str, AcceleratorConfig] = {
    # The shipped default: a 16 x 16 array whose activation buffer holds a 197-token, K = 768
    # GEMM (DeiT-B qkv/fc1) and whose parameter buffer holds N = 3072 (fc1).
    "default": AcceleratorConfig(),
    # A small array for quick simulation.
    "small": AcceleratorConfig(gemm=GemmConfig(rows=4, cols=4, act_buffer_words=1024, max_m=64,
                                               max_k=1024, max_n=256, weight_fifo_depth=8,
                                               out_fifo_depth=4)),
    # Every DeiT-T/S/B encoder GEMM at 197 tokens with its activations on chip
    # (fc2 of DeiT-B: ceil(3072/16) * 197 = 37824 words).
    "bench": AcceleratorConfig(gemm=GemmConfig(rows=16, cols=16, act_buffer_words=37824,
                                               max_m=197, max_k=3072, max_n=3072)),
    # The ZCU102 board configuration (XCZU9EG): 64 x 32 packed, 2048 int8 MACs on 1024 DSP48E2s,
    # the most MACs whose whole accelerator stays within 80% of every resource (the next power of
    # two, 64 x 64, needs 2048 DSPs for the array alone; 32 x 64 has the same MACs but 64 output
    # lanes, and the epilogue's per-lane requantizer, GELU and sigmoid units then take ~93% of
    # the LUTs: docs/perf.md); buffers for every DeiT-T/S/B GEMM at 197 tokens with activations
    # on chip (fc2 of DeiT-B: ceil(3072/64) * 197 = 9456 words), and a weight FIFO of two tiles.
    # The token selector takes up to 12 heads (DeiT-B; the SELECT executor's score combiner is
    # that wide), so pruned DeiT-S and DeiT-B programs run (with the default 3 heads a DeiT-S
    # SELECT ends in CTRL_BAD_FIELD: found by the board-scale RTL run, bench/_board_rtl.py).
    # The weights stream from DDR through two AXI HP ports of their own (weight_beats_per_cycle = 2:
    # 2 x 16 bytes a cycle, the array's 32-lane weight word a cycle; one port left a 64-row tile
    # 128 cycles of weights, more than the 69 tokens of the last pruned stage take).
    # Resources, logic depth and the latency table: `heatvit bench perf`.
    "zcu102": AcceleratorConfig(gemm=GemmConfig(rows=64, cols=32, dsp_packing=2, act_buffer_words=9456,
                                                max_m=197, max_k=3072, max_n=3072, weight_fifo_depth=128,
                                                out_fifo_depth=16),
                                toksel=TokSelConfig(dim=768, heads=12, lanes=64), weight_beats_per_cycle=2),
}


def load_config(spec: str | Path) -> AcceleratorConfig:
    """A preset name, or a path to a JSON file written by ``AcceleratorConfig.to_dict``.

    Files written before the shell was a section load too: an ``AcceleratorConfig`` without
    ``shell`` takes the default shell, and the old two-part ``heatvit_config.json``
    (``{"accelerator": ..., "shell": ...}``) becomes one config."""
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"config {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"config file {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path}: expected a JSON object")
    if set(data) == {"accelerator", "shell"} and isinstance(data["accelerator"], dict):
        data = {**data["accelerator"], "shell": data["shell"]}
    try:
        return AcceleratorConfig.from_dict(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"config file {path}: {e}") from None
