"""The cycle model of the overlapped weight loading, the ``zcu102`` preset and the perf bench's
model (no RTL: the engine's cycle counts are checked against RTL in test_gemm/test_tileskip)."""

import dataclasses

import numpy as np
import pytest

from heatvit.bench import perf
from heatvit.config import GemmConfig
from heatvit.presets import PRESETS


def cfg(rows, cols, depth=None, packing=1):
    return GemmConfig(rows=rows, cols=cols, dsp_packing=packing, act_buffer_words=4096, max_m=256,
                      max_k=3072, max_n=3072, weight_fifo_depth=depth or max(3, 2 * rows))


@pytest.mark.parametrize("rows,cols", [(1, 2), (2, 2), (4, 4), (8, 4), (16, 16), (32, 64), (64, 64)])
def test_tile_floor_is_the_load_time(rows, cols):
    """A tile costs max(M, R) (R + 1 with a FIFO of exactly R words; 2 on a one-row array): no
    term in C, none in 2R."""
    g = cfg(rows, cols)
    assert g.weight_segments * g.weight_segment_rows == rows
    assert g.min_tile_cycles == max(rows, 2)
    if rows >= 4:
        assert cfg(rows, cols, depth=rows).min_tile_cycles == rows + 1
    for m in (1, rows - 1, rows, rows + 1, 197):
        if 1 <= m <= 256:
            one, two = g.estimate_cycles(m, rows, cols), g.estimate_cycles(m, 2 * rows, cols)
            assert two - one == max(m, g.min_tile_cycles)


@pytest.mark.parametrize("rows,cols", [(2, 2), (4, 4), (8, 4), (16, 16), (64, 32)])
def test_sparse_schedule_agrees_with_dense(rows, cols):
    g = cfg(rows, cols)
    rng = np.random.default_rng(rows + cols)
    for m in (1, rows // 2 + 1, rows, 3 * rows + 1):
        k, n = 5 * rows, 3 * cols
        assert g.estimate_cycles(m, k, n, np.full(3, 5)) == g.estimate_cycles(m, k, n)
        counts = rng.integers(0, 6, size=3)
        fewer = np.maximum(counts - 1, 0)
        assert g.estimate_cycles(m, k, n, fewer) <= g.estimate_cycles(m, k, n, counts)


def test_weight_fifo_must_hold_a_tile():
    with pytest.raises(ValueError, match="weight_fifo_depth = 8 cannot hold one weight tile of rows = 16"):
        GemmConfig(rows=16, cols=16, weight_fifo_depth=8)
    GemmConfig(rows=16, cols=16, weight_fifo_depth=16)


def test_zcu102_preset():
    acc = PRESETS["zcu102"]
    g = acc.gemm
    assert (g.rows, g.cols, g.dsp_packing) == (64, 32, 2)
    assert g.rows * g.cols // g.dsp_packing <= 0.8 * 2520           # the array's DSP48E2s
    for name, vit in perf.DEIT.items():                             # every DeiT GEMM fits
        for m, k, n in vit.gemm_shapes():
            g.check_gemm_shape(min(m, g.max_m), k, n)


def test_ddr_model_prices_bandwidth_bound_tiles():
    g = PRESETS["zcu102"].gemm
    ddr = perf.DdrModel()
    assert ddr.bytes_per_cycle(300) == pytest.approx(19.2e9 * 0.8 / 300e6)        # the DDR caps 4 ports
    assert perf.DdrModel(ports=1).bytes_per_cycle(300) == pytest.approx(16 * 0.8)
    m, k, n = 69, 384, 1536
    exact = g.estimate_cycles(m, k, n)
    assert perf.gemm_cycles(g, m, k, n, None) == exact
    assert perf.gemm_cycles(g, m, k, n, 1e9) == exact                               # no bound
    slow = perf.gemm_cycles(g, m, k, n, 8.0)          # 2048-byte tiles at 8 B/cycle: 256 cycles each
    tiles = (k // g.rows) * (n // g.cols)
    assert slow == exact + (256 - g.rows) + (tiles - 1) * (256 - m)
    # the preset's two weight ports at the assumed 0.8: 25.6 B/cycle, a 2,048-byte tile in 80 cycles,
    # so at 69 tokens each tile after the first waits 11; at efficiency 1 (32 B/cycle) none does
    acc = PRESETS["zcu102"]
    ports = perf.DdrModel(ports=acc.weight_beats_per_cycle)
    assert ports.bytes_per_cycle(300) == pytest.approx(25.6)
    bpc = min(ports.bytes_per_cycle(300), perf.weight_path_bytes_per_cycle(acc))
    assert perf.gemm_cycles(g, m, k, n, bpc) == exact + (80 - g.rows) + (tiles - 1) * (80 - m)
    full = perf.DdrModel(ports=2, efficiency=1.0).bytes_per_cycle(300)
    assert perf.gemm_cycles(g, m, k, n, min(full, perf.weight_path_bytes_per_cycle(acc))) == exact


def test_weight_stream_term_at_the_weight_path_width():
    """``cycles.weight_stream_extra``: 0 when a beat of the weight path holds a word (the preset's two
    ports), ``S - R + 1`` more on the first tile and ``S - max(M, R)`` on each later one when it
    does not (one port: ``S = 2R``)."""
    import dataclasses
    from heatvit.compiler import cycles
    acc = PRESETS["zcu102"]
    assert cycles.weight_stream_extra(acc, 69, 384, 1536) == 0
    one = dataclasses.replace(acc, weight_beats_per_cycle=1)
    tiles = (384 // 64) * (1536 // 32)
    assert cycles.weight_stream_extra(one, 69, 384, 1536) == 128 - 64 + 1 + (tiles - 1) * (128 - 69)
    assert cycles.weight_stream_extra(one, 197, 384, 1536) == 65


def test_floor_model_is_the_previous_engine():
    g = cfg(16, 16)
    # The old closed form: R + (R + C + 1) + 11 + (T - 1) * max(M, 2R + C) + M.
    assert perf.floor_model_cycles(g, 197, 192, 576) == 85164          # docs/shell.md: the old engine, measured
    assert perf.floor_model_cycles(g, 10, 32, 16) == 16 + 33 + 11 + 48 + 10


def test_perf_plot_labelled():
    pytest.importorskip("matplotlib")
    from heatvit import plot
    g = PRESETS["zcu102"].gemm
    models = {}
    for name, vit in perf.DEIT.items():
        d, p = (perf.model_run(g, vit, plan, 300.0, perf.DdrModel()) for plan in (perf.PruningPlan(), perf.PLAN))
        models[name] = {"dense": d, "pruned": p}
    data = {"models": models, "array": "64x32", "dsp_packing": 2, "clock_mhz": 300.0,
            "published": perf.PUBLISHED, "pruning_by_array": perf.pruning_by_array(quick=True)}
    fig = plot.render("perf", data)
    texts = {t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + [ax.title]}
    assert {"DeiT-T", "DeiT-S", "DeiT-B", "16x16", "32x32", "pruning's saving by array size"} <= texts
    with pytest.raises(ValueError, match="perf.json"):
        plot.render("perf", {})
    data["board_measured"] = {"resources": {"DSP48E2": 1700, "LUT": 150000.0, "FF": 1, "BRAM36": 650.5}}
    fig = plot.render("perf", data)
    assert any("1,700 DSP48E2, 150,000 LUT, 650.5 BRAM36" in ax.get_title() for ax in fig.axes)


def test_bram36_tiles_by_the_cheapest_aspect_ratio():
    assert perf.bram36(256, 18912) == 142.5          # 285 RAMB18E2 of 1K x 18 (512 x 72: 148)
    assert perf.bram36(2048, 197) == 28.5            # 57 RAMB18E2 of 512 x 36
    assert perf.bram36(9, 4096) == 1                 # one 4K x 9
    assert perf.bram36(512, 64) == 0                 # a FIFO of 64 words: LUT-RAM
    assert perf.bram36(1, 65) == 0.5


def test_board_search_prices_every_array():
    mems = [("buf", 512, 2364)] * 5                  # 5 x 37.5 BRAM36 (75 RAMB18E2 of 1K x 18)
    est = perf.board_estimate(32, 64, mems)
    assert est["parts"]["array"]["DSP48E2"] == 1024
    assert est["parts"]["array"]["how"].startswith("measured")
    assert est["parts"]["memories"]["BRAM36"] == 187.5
    assert est["total"]["DSP48E2"] == 1024 + round(39 * 64 / 16)
    assert est["fits"] and est["supported"]
    big = perf.board_estimate(64, 64, mems)
    assert big["over"] == ["DSP48E2"] and not big["fits"]
    assert not perf.board_estimate(56, 64, mems)["supported"]
    found = perf.board_search(mems, None)
    assert found["largest_supported_fit"] == "32x64"
    assert found["largest_fit_any_shape"] in ("56x64", "64x56")
    with pytest.raises(ValueError, match="not a power of two"):
        GemmConfig(rows=56, cols=64, dsp_packing=2)  # why 56 x 64 is not a preset


def test_longest_path_report_parsed():
    from heatvit.bench._yosys import longest_path
    ltp = ("Longest topological path in top (length=3):\n    0: \\a\n"
           "    1: \\x (via $abc$1$lut7)\n    2: \\y (via $auto$carry$3)\n    3: \\z (via $abc$1$lut9)\n")
    luts = "top/$abc$1$lut7\ntop/$abc$1$lut9\n"
    got = longest_path(ltp, luts)
    assert (got["cells"], got["luts"], got["carry"], got["other"]) == (3, 2, 1, 0)
    assert longest_path("", "")["cells"] == 0


def test_targets_say_what_bounds_them():
    g = PRESETS["zcu102"].gemm
    big = PRESETS["zcu102"].with_gemm(rows=64, cols=64).gemm
    models, big_runs = {}, {}
    for name, vit in perf.DEIT.items():
        d, p = (perf.model_run(g, vit, plan, 300.0, perf.DdrModel()) for plan in (perf.PruningPlan(), perf.PLAN))
        p["cycle_reduction"] = 1 - p["cycles"] / d["cycles"]
        p["mac_reduction"] = 1 - p["macs"] / d["macs"]
        models[name] = {"dense": d, "pruned": p}
        bp = perf.model_run(big, vit, perf.PLAN, 300.0, perf.DdrModel())
        big_runs[name] = {"pruned_ms": bp["ms"], "pruned_fps": bp["fps"]}
    targets = {t["target"]: t for t in perf.target_bounds(models, big_runs, g, big, 1180)}
    speed = targets["DeiT-B pruned >= 100 FPS"]
    assert speed["met"] == (models["DeiT-B"]["pruned"]["fps"] >= 100)
    assert "DSP48E2" in speed["bound"] and "2,016" in speed["bound"] and "~156" in speed["bound"]
    assert targets["mac_utilization >= 0.9 dense"]["met"]
    assert "weight stream" not in speed["bound"]    # no stream term in these runs
    assert "MACs / (2,048 MACs/cycle x 300 MHz) = " in speed["bound"]      # the DSP floor's arithmetic
    # with the weight path's rate and the unbounded cycles beside them, the numbers name it first
    assert perf.weight_path_bytes_per_cycle(PRESETS["zcu102"]) == 32.0    # 2 weight ports: a word a cycle
    path = perf.weight_path_bytes_per_cycle(dataclasses.replace(PRESETS["zcu102"], weight_beats_per_cycle=1))
    assert path == 16.0                                                    # one port: half a word a cycle
    for name, vit in perf.DEIT.items():
        p = perf.model_run(g, vit, perf.PLAN, 300.0, perf.DdrModel(), path)
        p["cycles_without_ddr_bound"] = perf.model_run(g, vit, perf.PLAN, 300.0, None)["cycles"]
        models[name]["pruned"].update(p)
    targets = {t["target"]: t for t in perf.target_bounds(models, big_runs, g, big, 1180)}
    assert targets["DeiT-B pruned >= 100 FPS"]["bound"].startswith("the weight stream")


def test_board_estimate_scales_units_by_lanes():
    first = {"epilogue": {"component": "2 columns", "cells_total": {"DSP48E2": 24, "LUT6": 100, "FDRE": 10}}}
    second = {"epilogue_4col": {"component": "4 columns", "cells_total": {"DSP48E2": 40, "LUT6": 180, "FDRE": 10}}}
    prop = perf.board_estimate(64, 32, None, first)["parts"]["epilogue"]
    assert (prop["DSP48E2"], prop["LUT"], prop["FF"]) == (24 * 16, 100 * 16, 10 * 16)   # x cols / 2
    two = perf.board_estimate(64, 32, None, first, second)["parts"]["epilogue"]
    assert (two["DSP48E2"], two["LUT"], two["FF"]) == (8 + 8 * 32, 20 + 40 * 32, 10)    # fixed + per lane
    assert "fixed + per lane" in two["how"]
    assert "memories" not in perf.board_estimate(64, 32)["parts"]


def test_candidate_arrays_scaled_from_measured_units():
    """The candidates' resources: the engine by MACs, the output path's per-column units by
    columns, the softmax row unit and the rest kept, BRAM kept; the models' figures improve with
    MACs and the odd shapes say the RTL does not build them."""
    units = {"exec_gemm.engine": {"DSP48E2": 1030, "LUT": 10000, "FF": 20000, "BRAM36": 20},
             "exec_gemm.output.router.gelu_unit": {"DSP48E2": 160, "LUT": 30000, "FF": 30000, "BRAM36": 0},
             "exec_gemm.output.softmax.unit0": {"DSP48E2": 160, "LUT": 25000, "FF": 10000, "BRAM36": 40},
             "buf_x0": {"DSP48E2": 0, "LUT": 100, "FF": 10, "BRAM36": 40}}
    got = perf.scale_units(units, 64, 32, 64, 48)
    assert got == {"DSP48E2": 1030 * 1.5 + 160 * 1.5 + 160, "LUT": 10000 * 1.5 + 30000 * 1.5 + 25000 + 100,
                   "FF": 20000 * 1.5 + 30000 * 1.5 + 10000 + 10, "BRAM36": 100}
    assert perf.scale_units(units, 64, 32, 64, 32) == {k: sum(u[k] for u in units.values()) for k in perf.TOTALS}
    cands = {e["array"]: e for e in perf.candidate_arrays(PRESETS["zcu102"], {"units": units})}
    assert set(cands) == {"64x48", "96x32", "64x64"}
    assert not cands["64x48"]["supported_by_rtl"] and cands["64x64"]["supported_by_rtl"]
    assert cands["64x48"]["weight_ports"] == 3 and cands["64x64"]["weight_ports"] == 4
    assert cands["64x64"]["over"] == ["DSP48E2"] and cands["64x64"]["non_array_dsp48e2"] == 2060 + 320 + 160 - 2048
    assert cands["64x64"]["DeiT-S"]["pruned_ms"] < cands["64x48"]["DeiT-S"]["pruned_ms"]
    assert "resources" not in perf.candidate_arrays(PRESETS["zcu102"], None)[0]
    with pytest.raises(ValueError, match="power of two"):
        GemmConfig(rows=64, cols=48)
