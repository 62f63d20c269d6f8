"""pytest driver: the token-selector control unit's cocotb tests on every (config, simulator) pair,
plus the configuration checks."""

from pathlib import Path

import pytest

from heatvit.rtl.toksel import TokenSelectorUnit
from heatvit.rtl.toksel.combiner import ScoreCombiner
from heatvit.sim.runner import config_env, run_testbench
from heatvit.toksel_config import TokSelConfig

TOKSEL_CONFIGS = {
    # Small enough for Icarus: 4 chunks of 4 lanes, up to 20 tokens.
    "small": TokSelConfig(max_tokens=20, dim=16, heads=2, lanes=4),
    # DeiT-T-like width on the 16-lane buffer word, 197 tokens + 3 package tokens.
    "deit": TokSelConfig(max_tokens=200, dim=64, heads=4, lanes=16),
    # Odd geometry: 12-bit scores, a 0.3 threshold, 3 chunks of 8 lanes.
    "wide-score": TokSelConfig(max_tokens=40, dim=24, heads=2, lanes=8, score_bits=12, threshold=0.3),
}

# Verilator builds dominate the runtime (~1 min each on a loaded 2-core machine): one Verilator
# build at the DeiT geometry, the small configs on Icarus.
TOKSEL_RUNS = [("small", "icarus"), ("wide-score", "icarus"), ("deit", "verilator")]


@pytest.mark.parametrize("name,sim", TOKSEL_RUNS, ids=[f"{n}-{s}" for n, s in TOKSEL_RUNS])
def test_toksel_unit(name, sim):
    cfg = TOKSEL_CONFIGS[name]
    run_testbench(TokenSelectorUnit(cfg), toplevel="toksel", test_module="tb_toksel",
                  test_dir=Path(__file__).parent / "toksel", sim=sim, env=config_env(cfg), tag=name)


@pytest.mark.parametrize("name,lanes", [("small", 1), ("wide-score", 4), ("wide-score", 8)])
def test_toksel_unit_package_lanes(name, lanes):
    """The package token's ring with other lanes-per-cycle counts than the default (one lane a
    cycle; half; all 8 at once): the same testbench (stalls, keep none / all, chained stages)."""
    cfg = TOKSEL_CONFIGS[name]
    run_testbench(TokenSelectorUnit(cfg, package_lanes=lanes), toplevel="toksel", test_module="tb_toksel",
                  test_dir=Path(__file__).parent / "toksel", sim="icarus", env=config_env(cfg),
                  tag=f"{name}-g{lanes}")


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("lanes", [0, 3, 17, 2.0])
def test_toksel_unit_rejects_package_lanes(lanes):
    with pytest.raises(ValueError, match="package_lanes"):
        TokenSelectorUnit(TOKSEL_CONFIGS["deit"], package_lanes=lanes)


@pytest.mark.parametrize("name,sim", [("small", "icarus"), ("deit", "icarus")])
def test_score_combiner(name, sim):
    cfg = TOKSEL_CONFIGS[name]
    run_testbench(ScoreCombiner(cfg), toplevel="combiner", test_module="tb_combiner",
                  test_dir=Path(__file__).parent / "toksel", sim=sim, env=config_env(cfg), tag=name)


@pytest.mark.parametrize("kw,word", [
    ({"max_tokens": 1}, "max_tokens"), ({"max_tokens": 5000}, "max_tokens"),
    ({"heads": 0}, "heads"), ({"heads": 5}, "heads"), ({"dim": 24, "heads": 4}, "multiple of 4"),
    ({"threshold": 0.0}, "threshold"), ({"threshold": 1.0}, "threshold"), ({"threshold": -0.2}, "threshold"),
    ({"threshold": float("nan")}, "threshold"), ({"lanes": 7}, "lanes"), ({"score_bits": 1}, "score_bits"),
    ({"shared_mlp": 1}, "shared_mlp"),
])
def test_config_rejects(kw, word):
    with pytest.raises(ValueError, match=word):
        TokSelConfig(**kw)


def test_config_token_counts():
    cfg = TokSelConfig(max_tokens=200)
    cfg.check_tokens(200, 3)
    with pytest.raises(ValueError, match="n_tokens"):
        cfg.check_tokens(201)
    with pytest.raises(ValueError, match="n_tail"):
        cfg.check_tokens(5, 5)
    assert cfg.threshold_q == 128 and TokSelConfig(threshold=0.999).threshold_q == 255
