"""The DSP48E2 processing elements in Amaranth's simulator: unpacked and packed (two int8 MACs
per DSP48E2), bit-exact against integer dot products at every int8 corner.

Each case streams activation rows through a :class:`SystolicArray` with one weight tile at a
time (shifted in segment by segment, committed with the first row, drained before the next tile) and compares every
column sum with NumPy.  One packed DSP48E2 cascade is exact up to ``packed_max_rows`` (8) rows;
deeper packed columns are 8-row segments, so the worst cases sit at 8, 16 and 32 rows: every low
product at its maximum (-128 x -128) and at its minimum, in every segment.
"""

import itertools
import re
import shutil
import subprocess

import numpy as np
import pytest
from amaranth.sim import Simulator

from heatvit.config import GemmConfig
from heatvit.rtl.gemm.dsp48e2 import Dsp48e2Config
from heatvit.rtl.gemm.systolic_array import SystolicArray

CORNERS = (-128, -127, -1, 0, 1, 126, 127)


def cfg_for(rows, cols, packing):
    return GemmConfig(rows=rows, cols=cols, dsp_packing=packing, max_k=256, max_n=256,
                      act_buffer_words=256)


def run_array(cfg: GemmConfig, tiles) -> list[np.ndarray]:
    """``tiles``: list of ``(W[R, C], A[M, R])``; returns each tile's ``A @ W`` from the RTL."""
    dut = SystolicArray(cfg)
    R, lat = cfg.rows, cfg.array_latency
    results = []

    async def bench(ctx):
        ctx.set(dut.en, 1)
        for w, acts in tiles:
            for k in range(R):
                ctx.set(dut.w_word, [int(x) for x in w[k]])
                ctx.set(dut.w_shift, 1)
                ctx.set(dut.w_seg, k // cfg.weight_segment_rows)
                await ctx.tick()
            ctx.set(dut.w_shift, 0)
            await ctx.tick()    # the shift register stage: the last word reaches the array
            out = []
            for t in range(len(acts) + lat):
                row = acts[t] if t < len(acts) else np.zeros(R, dtype=np.int64)
                ctx.set(dut.act, [int(x) for x in row])
                ctx.set(dut.commit, int(t == 0))
                if t >= lat:
                    out.append([int(x) for x in ctx.get(dut.psum)])
                await ctx.tick()
            results.append(np.array(out, dtype=np.int64))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


def check(cfg, tiles):
    got = run_array(cfg, tiles)
    for i, ((w, acts), y) in enumerate(zip(tiles, got)):
        expected = np.asarray(acts, dtype=np.int64) @ np.asarray(w, dtype=np.int64)
        bad = np.argwhere(y != expected)
        assert not len(bad), (f"tile {i}: {len(bad)} sums differ; first at {tuple(bad[0])}: "
                              f"got {y[tuple(bad[0])]}, expected {expected[tuple(bad[0])]}")


@pytest.mark.parametrize("packing", [1, 2])
def test_single_row_all_activations(packing):
    """One row, two columns: every int8 activation against every corner weight pair."""
    cfg = cfg_for(1, 2, packing)
    acts = np.arange(-128, 128, dtype=np.int64).reshape(-1, 1)
    tiles = [(np.array([[lo, hi]]), acts) for lo, hi in itertools.product(CORNERS, CORNERS)]
    check(cfg, tiles)


@pytest.mark.parametrize("rows", [1, 2, 4, 8, 16, 32])
def test_packed_extremes(rows):
    """All -128/127 combinations of (activation, w_lo, w_hi), every row alike (the column sums'
    extremes: rows x 16384 and rows x -16256 in both fields), then random mixes of -128/127."""
    cfg = cfg_for(rows, 4, 2)
    rng = np.random.default_rng(rows)
    tiles = []
    for a, lo, hi in itertools.product((-128, 127), repeat=3):
        w = np.tile([lo, hi, hi, lo], (rows, 1))
        tiles.append((w, np.full((2, rows), a)))
    for _ in range(6):
        w = rng.choice([-128, 127], size=(rows, 4))
        tiles.append((w, rng.choice([-128, 127], size=(8, rows))))
    check(cfg, tiles)


@pytest.mark.parametrize("rows,cols,packing", [(4, 4, 1), (8, 2, 1), (4, 4, 2), (8, 8, 2), (16, 4, 2),
                                               (64, 2, 2)])
def test_random(rows, cols, packing):
    rng = np.random.default_rng(rows * 100 + cols * 10 + packing)
    cfg = cfg_for(rows, cols, packing)
    tiles = [(rng.integers(-128, 128, size=(rows, cols)), rng.integers(-128, 128, size=(m, rows)))
             for m in (1, 3, 17)]
    check(cfg, tiles)


def test_packing_config_checks():
    cfg = cfg_for(8, 2, 2)
    assert (cfg.packing_shift, cfg.packed_max_rows, cfg.packing_offset) == (18, 8, -8 * 16256)
    assert [cfg_for(r, 2, 2).packing_segment_rows for r in (2, 8, 16, 64)] == [2, 8, 8, 8]
    # The low field holds a segment's low sum minus L: at most G * (16384 + 16256) < 2^18.
    assert 8 * (16384 + 16256) < 1 << 18 <= 9 * (16384 + 16256)
    with pytest.raises(ValueError, match=r"cols = 1 must be even with dsp_packing = 2"):
        cfg_for(4, 1, 2)
    with pytest.raises(ValueError, match=r"dsp_packing must be 1 or 2, not 3"):
        cfg_for(4, 4, 3)


def test_dsp_config_checks():
    with pytest.raises(ValueError, match=r"acascreg must be one of \(1,\) with areg = 1, not 2"):
        Dsp48e2Config(areg=1, acascreg=2)
    with pytest.raises(ValueError, match=r"z must be one of \['pcin', 'zero'\], not 'p'"):
        Dsp48e2Config(z="p")
    with pytest.raises(ValueError, match=r"w must be one of \['c', 'zero'\], not 'p'"):
        Dsp48e2Config(w="p")
    with pytest.raises(ValueError, match=r"breg must be 0, 1 or 2, not 3"):
        Dsp48e2Config(breg=3)


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")
@pytest.mark.parametrize("rows,cols,packing", [(4, 4, 1), (8, 4, 2), (16, 4, 2)])
def test_primitive_export(rows, cols, packing, tmp_path):
    """The Vivado/yosys export instantiates R x C / dsp_packing DSP48E2 cells whose port and
    parameter names exist on yosys' DSP48E2 black box, and no multiplier or adder in fabric."""
    from heatvit.rtl.gemm.dsp48e2 import PRIMITIVES
    from heatvit.sim.runner import export_verilog
    src = tmp_path / "array.v"
    src.write_text(export_verilog(SystolicArray(cfg_for(rows, cols, packing)), "array", platform=PRIMITIVES))
    script = (f"read_verilog -lib +/xilinx/cells_xtra.v; read_verilog {src}; hierarchy -check -top array; "
              f"proc; flatten; opt_clean; tee -o {tmp_path}/stat.txt stat")
    res = subprocess.run(["yosys", "-q", "-p", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    stat = (tmp_path / "stat.txt").read_text()
    cells = dict((k, int(v)) for k, v in re.findall(r"^\s+(\S+)\s+(\d+)\s*$", stat, re.M))
    assert cells.get("DSP48E2") == rows * cols // packing, stat
    assert "$mul" not in cells, stat
    # Fabric adders: only the packed pairs' weight packing (top) and low sum per segment.
    segments = rows // cfg_for(rows, cols, packing).packing_segment_rows
    assert cells.get("$add", 0) == (0 if packing == 1 else (1 + segments) * cols // packing), stat
