"""pytest driver: the GEMM engine's cocotb tests on every (config, simulator) pair."""

from pathlib import Path

import pytest

from gemm_configs import GEMM_CONFIGS, GEMM_RUNS
from heatvit.rtl.gemm import GemmEngine
from heatvit.sim.runner import config_env, export_verilog, run_cocotb, simulator_available


@pytest.mark.parametrize("name,sim", GEMM_RUNS, ids=[f"{n}-{s}" for n, s in GEMM_RUNS])
def test_gemm_engine(name, sim):
    if not simulator_available(sim):
        pytest.skip(f"{sim} not installed (CI installs it; see .ci/run)")
    cfg = GEMM_CONFIGS[name]
    verilog = export_verilog(GemmEngine(cfg), "gemm_engine")
    env = config_env(cfg)
    if sim == "icarus":
        env["HEATVIT_QUICK"] = "1"   # Icarus runs ~8x slower: fewer random shapes
    run_cocotb(verilog=verilog, toplevel="gemm_engine", test_module="tb_gemm",
               test_dir=Path(__file__).parent / "gemm", sim=sim, env=env, tag=name)
