"""The compiler's whole-accelerator cycle model (``heatvit.compiler.cycles``) without RTL: how
it counts the controller's cycles, prices pruned plans, and refuses what it cannot price.  Its
figures are checked against the RTL's cycle records descriptor by descriptor in
``testbench/test_accel_prune_digits.py`` (the pruned digits model on the Verilator top) and by
``heatvit bench pruning`` (digits and DeiT-T, ``model_error_pct``)."""

from __future__ import annotations

import dataclasses

import pytest

from heatvit import isa
from heatvit.compiler import cycles, models
from heatvit.golden.vit.config import PruningPlan, ViTConfig
from heatvit.presets import PRESETS

ACC = PRESETS["default"]


def small_plan_program(plan):
    return cycles.plan_program(ACC, ViTConfig(), plan)


def test_total_counts_every_record_and_gap():
    """CYCLES = START + the executed descriptors' records + one GAP per descriptor up to END:
    a descriptor skipped at a low live token count still costs its gap."""
    prog = small_plan_program(PruningPlan())
    est = cycles.estimate(prog, ACC)
    assert len(est) == len(prog) - 2                          # all but BEGIN and END run
    assert cycles.total_cycles(prog, est) == (cycles.START_CYCLES + sum(e.cycles for e in est)
                                              + cycles.GAP_CYCLES * len(prog))
    # one live token: the rows past it are skipped (fewer records), the gaps stay
    few = cycles.estimate(prog, ACC, n_live=1)
    assert sum(e.cycles for e in few) < sum(e.cycles for e in est)
    assert cycles.total_cycles(prog, few) - sum(e.cycles for e in few) == \
        cycles.START_CYCLES + cycles.GAP_CYCLES * len(prog)
    assert all(e.cycles > 0 for e in est)


def test_gemm_leads_and_epilogues():
    """A GEMM's record is the engine's cycles plus its lead (weights from DDR: the parameter, and
    a sparse GEMM's bitmap, beats; from a buffer: the later of the first activation tile and
    ``GEMM_BUF_MIN_LEAD``), plus its epilogue's latency; a softmax GEMM's tail grows with its
    rows' beats."""
    g = ACC.gemm
    d = isa.Descriptor(opcode=isa.Op.GEMM, m=65, k=48, n=144, epilogue=isa.Epilogue.REQ8, wsrc=isa.WSrc.DDR)
    eng = g.estimate_cycles(65, 48, 144)
    beats = cycles.param_beats(ACC, d)
    assert beats == 144 * isa.REQUANT_RECORD_BYTES // ACC.shell.data_bytes
    assert cycles.descriptor_cycles(ACC, d, 65, 48, 144, engine=eng) == eng + beats + cycles.GEMM_PARAM_LEAD
    d8 = dataclasses.replace(d, n=16)
    eng8 = g.estimate_cycles(65, 48, 16)
    lead8 = cycles.param_beats(ACC, d8) + cycles.GEMM_PARAM_LEAD      # 65 tokens do not hold it back
    assert lead8 < 65 and cycles.descriptor_cycles(ACC, d8, 65, 48, 16, engine=eng8) == eng8 + lead8
    buf = dataclasses.replace(d8, wsrc=isa.WSrc.BUF, aux=isa.Buf.QKV)
    assert cycles.descriptor_cycles(ACC, buf, 65, 48, 16, engine=eng8) == eng8 + 65 + cycles.GEMM_ACT_LEAD
    sparse = dataclasses.replace(d8, sparse=1, tiles=2)
    b = cycles.bitmap_beats(ACC, sparse)
    assert b == 1                                      # 3 x 1 tiles: one beat, the weights right after it
    assert cycles.descriptor_cycles(ACC, sparse, 65, 48, 16, engine=eng8) == eng8 + lead8 + b
    gelu = dataclasses.replace(d8, epilogue=isa.Epilogue.REQ8_GELU)
    assert cycles.descriptor_cycles(ACC, gelu, 65, 48, 16, engine=eng8) == \
        eng8 + cycles.gemm_lead(ACC, gelu, 65) + cycles.EPILOGUE_LATENCY[isa.Epilogue.REQ8_GELU]
    sig = dataclasses.replace(d8, epilogue=isa.Epilogue.REQ8_SIGMOID, n=3)
    eng3 = g.estimate_cycles(65, 48, 3)
    assert cycles.descriptor_cycles(ACC, sig, 65, 48, 3, engine=eng3) == \
        eng3 + cycles.gemm_lead(ACC, sig, 65) + 65 * 2 + cycles.SIGMOID_CYCLES     # one value a cycle
    sm = dataclasses.replace(d, epilogue=isa.Epilogue.RAW_SOFTMAX, wsrc=isa.WSrc.BUF_T, k=16)
    tails = [cycles.softmax_gemm_tail(ACC, m, 16, m) for m in (17, 42, 43, 65, 197)]
    assert tails == sorted(tails) and len(set(tails)) == len(tails)
    assert cycles.descriptor_cycles(ACC, sm, 43, 16, 43, engine=100) == 100 + cycles.softmax_gemm_tail(ACC, 43, 16, 43)


def test_plan_cycles_prices_pruning():
    """A plan that keeps fewer tokens costs fewer whole-accelerator cycles; the selectors' own
    descriptors are priced (a plan keeping every patch costs more than dense)."""
    cfg = ViTConfig()
    dense = cycles.plan_cycles(ACC, cfg, PruningPlan())
    keep_all = cycles.plan_cycles(ACC, cfg, PruningPlan((1,), (1.0,)))
    light = cycles.plan_cycles(ACC, cfg, PruningPlan((1,), (0.7,)))
    heavy = cycles.plan_cycles(ACC, cfg, PruningPlan((1, 3), (0.5, 0.2)))
    assert keep_all > dense > light > heavy
    # the planned SELECT outcomes chain: tokens out of stage s enter stage s + 1
    plan = PruningPlan((1, 3), (0.5, 0.2))
    tokens = plan.planned_tokens(cfg)
    sel = cycles.plan_selects(cfg, plan)
    assert [n for n, _ in sel] == [tokens[1], tokens[3]]
    assert sel[0][1] == cfg.num_tokens - (tokens[1] - 1)


def test_row_unit_latencies_match_rtl():
    """The model's row-unit and checker constants are the RTL's (the units' one-row latencies at the tables
    of every preset; rows ``B`` cycles apart: testbench/nonlinear/tb_nonlinear.py ``row_cycles``)."""
    from heatvit.rtl.accel.layernorm_exec import cycles as ln_exec_cycles
    from heatvit.rtl.accel.descriptor import CHECKER_LATENCY
    from heatvit.rtl.nonlinear.rows import layernorm_row_latency, softmax_row_latency
    assert cycles.CHECK_CYCLES == CHECKER_LATENCY
    for name, acc in PRESETS.items():
        nl = acc.nonlinear
        assert layernorm_row_latency(nl) == cycles.LN_ROW_LATENCY, name
        assert softmax_row_latency(nl) == cycles.SOFTMAX_ROW_LATENCY, name
    d = isa.Descriptor(opcode=isa.Op.LAYERNORM, m=197, n=192)
    assert cycles.descriptor_cycles(ACC, d, 197, 0, 192) == ln_exec_cycles(ACC, 197, 192) + 8   # the parameter read, dispatch


def test_refuses():
    d = isa.Descriptor(opcode=isa.Op.BEGIN, m=65)
    with pytest.raises(ValueError, match="BEGIN has no cycle record"):
        cycles.descriptor_cycles(ACC, d, 65, 0, 0)
    prog = small_plan_program(PruningPlan((1,), (0.5,)))
    with pytest.raises(ValueError, match="selects has 0 entries"):
        cycles.estimate(prog, ACC, selects=[])


def test_models_random_plan_program_has_selectors():
    prog = small_plan_program(PruningPlan((1,), (0.5,)))
    assert sum(isa.Op(d.opcode) == isa.Op.SELECT for d in prog) == 1
    assert models.PruningPlan is PruningPlan
