"""pytest driver of the GEMM engine's tile-skipping cocotb tests (testbench/gemm/tb_tileskip.py)
on the small configs, Verilator and Icarus (Icarus with fewer shapes)."""

from pathlib import Path

import pytest

from gemm_configs import GEMM_CONFIGS
from heatvit.rtl.gemm import GemmEngine
from heatvit.sim.runner import config_env, run_testbench

RUNS = [("4x4", "verilator"), ("8x4", "verilator"), ("4x4", "icarus"), ("8x4", "icarus")]


@pytest.mark.parametrize("name,sim", RUNS, ids=[f"{n}-{s}" for n, s in RUNS])
def test_tileskip_engine(name, sim):
    cfg = GEMM_CONFIGS[name]
    run_testbench(GemmEngine(cfg), toplevel="gemm_engine", test_module="tb_tileskip",
                  test_dir=Path(__file__).parent / "gemm", sim=sim, env=config_env(cfg), tag=name)


def test_quick_bench_shares_the_16x16_build():
    """``heatvit bench tileskip --quick`` runs its digits GEMMs on this suite's ``16x16`` engine
    under the same tag, so CI builds that Verilator model once (test_gemm.py) and the bench reuses it."""
    from heatvit.bench import tileskip
    assert tileskip.QUICK_RTL_GEMM == GEMM_CONFIGS[tileskip.QUICK_RTL_TAG]
