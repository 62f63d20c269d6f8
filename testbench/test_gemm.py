"""pytest driver: the GEMM engine's cocotb tests on every (config, simulator) pair."""

from pathlib import Path

import pytest

from gemm_configs import GEMM_CONFIGS, GEMM_RUNS
from heatvit.rtl.gemm import GemmEngine
from heatvit.sim.runner import config_env, run_testbench


@pytest.mark.parametrize("name,sim", GEMM_RUNS, ids=[f"{n}-{s}" for n, s in GEMM_RUNS])
def test_gemm_engine(name, sim):
    cfg = GEMM_CONFIGS[name]
    run_testbench(GemmEngine(cfg), toplevel="gemm_engine", test_module="tb_gemm",
                  test_dir=Path(__file__).parent / "gemm", sim=sim, env=config_env(cfg), tag=name)
