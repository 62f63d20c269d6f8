"""The compiler's whole-accelerator cycle model (``heatvit.compiler.cycles``) against the RTL's
cycle records at every live token count regime of attention's ``q k^T`` GEMM (its transposed
weights read from the QKV buffer that also holds its activations, the softmax epilogue): the
dense digits program with BEGIN's live token count set to ``m`` (every live-clipped descriptor,
``q k^T`` at ``m x 16 x m``), on the whole accelerator in Verilator (the e2e build,
``heatvit.e2e.CONFIG``), each descriptor's record next to ``cycles.estimate(n_live=m)``.

Token counts: 1 and 8 (one N tile, fewer rows than the array's 16), 15 and 16 (the gap the
fitted tail had: 18 cycles short), 17, 20 and 26 (two N tiles: the transposing weight source
sets the pace, and its reads share the QKV port with the activation reads), 33 (three N tiles,
where the fitted form was fitted).  The model (``cycles.buffer_t_tiles`` / ``buffer_t_rows``)
was measured on every count from 1 to 48 here and on the DeiT-T shape (K = 64; 1 to 8, 12 to
40, 71): within one cycle, the one being the buffer crossbar's round-robin state, which the
previous ``q k^T`` leaves (here consecutive heads alternate)."""

from __future__ import annotations

import json

import numpy as np
import pytest

TOKENS = (1, 8, 15, 16, 17, 20, 26, 33)
QK_TOLERANCE = 1


def programs_at(image, tokens):
    """The image's program once per live token count (BEGIN's ``m``), packed back to back."""
    from heatvit import isa
    return b"".join(isa.pack_program([image.program[0].with_(m=t), *image.program[1:]]) for t in tokens)


@pytest.mark.slow
def test_qk_softmax_cycles_small_m(tmp_path):
    from pathlib import Path

    from heatvit import e2e, isa
    from heatvit.compiler import cycles
    from heatvit.presets import PRESETS
    from heatvit.sim.accel_top import TOP_NAME
    from heatvit.sim.runner import run_cocotb, simulator_available
    if not simulator_available("verilator"):
        pytest.skip("verilator not installed")
    acc = PRESETS[e2e.CONFIG]
    case = e2e.digits_case(acc, 1)
    img = case.image
    (tmp_path / "image.bin").write_bytes(case.blob)
    np.save(tmp_path / "patches.npy", np.asarray(case.patches[0], dtype=np.int64))
    (tmp_path / "programs.bin").write_bytes(programs_at(img, TOKENS))
    env = {"HEATVIT_CONFIG": json.dumps(acc.to_dict()), "HEATVIT_DDR_BYTES": str(e2e.DDR_BYTES),
           "HEATVIT_ACCEL_CASE": str(tmp_path.resolve())}
    # the build test_accel_top.py::test_accel_fastsim_digits and `heatvit bench e2e` use
    run_cocotb(verilog=e2e.fast_verilog(acc, e2e.DDR_BYTES), toplevel=TOP_NAME, test_module="accel_sweep",
               test_dir=Path(__file__).parent / "accel", sim="verilator", env=env, tag=e2e.TAG, profile="fast")
    runs = json.loads((tmp_path / "result.json").read_text())
    assert len(runs) == len(TOKENS)
    qk_seen = set()
    for t, run in zip(TOKENS, runs):
        est = {e.index: e for e in cycles.estimate(img.program, acc, n_live=t)}
        off = []
        for idx, name, op, start, end in run["layers"]:
            e = est.get(idx)
            rtl, model = end - start, (e.cycles if e else 0)
            d = img.program[idx]
            qk = op == "GEMM" and d.wsrc == isa.WSrc.BUF_T
            if qk:
                qk_seen.add(t)
                assert (e.m, e.k, e.n) == (t, 16, t), (t, name, e)
                assert abs(rtl - model) <= QK_TOLERANCE, f"{t} tokens, {name}: RTL {rtl} cycles, model {model}"
            elif rtl != model:
                off.append((name, rtl, model))
        # everything else exact, but a LOAD's DMA may take a cycle more
        assert all(abs(r - m) <= 1 for _, r, m in off), (t, off)
        total = cycles.total_cycles(img.program, list(est.values()))
        assert abs(total - run["cycles"]) <= 18, (t, run["cycles"], total)
        print(f"{t} tokens: CYCLES {run['cycles']:,}, model {total:,}; off the model: {off}")
    assert qk_seen == set(TOKENS)
