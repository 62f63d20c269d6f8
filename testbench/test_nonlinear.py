"""pytest driver: every nonlinear unit (one NonlinearBank build) on each (config, simulator) pair."""

from pathlib import Path

import pytest

from heatvit.nonlinear_config import NonlinearConfig
from heatvit.rtl.nonlinear.bank import NonlinearBank
from heatvit.sim.runner import config_env, run_testbench

NL_CONFIGS = {
    # The deployment sizes: 2 lanes, 256-token softmax rows, 768-channel LayerNorm rows.
    "full": NonlinearConfig(lanes=2, row_lanes=4, max_tokens=256, max_dim=768),
    # Small rows, one lane, narrower inputs and a tighter table budget: Icarus-sized.
    "small": NonlinearConfig(lanes=1, row_lanes=2, max_tokens=24, max_dim=40, softmax_in_bits=20,
                             layernorm_in_bits=12, max_segments_log2=7),
}

NL_RUNS = [("full", "verilator"), ("small", "icarus")]


@pytest.mark.parametrize("name,sim", NL_RUNS, ids=[f"{n}-{s}" for n, s in NL_RUNS])
def test_nonlinear_units(name, sim):
    cfg = NL_CONFIGS[name]
    run_testbench(NonlinearBank(cfg), toplevel="nonlinear_bank", test_module="tb_nonlinear",
                  test_dir=Path(__file__).parent / "nonlinear", sim=sim, env=config_env(cfg), tag=name)
