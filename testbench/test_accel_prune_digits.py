"""The committed pruned digits model (token selectors at blocks 1 and 3) through the whole
accelerator in Verilator (``heatvit_accel_fastsim``, :data:`heatvit.e2e.CONFIG`: the build and DDR size the
dense digits e2e test uses), driven by :class:`heatvit.driver.accel.Accelerator`: per image the
logits, the keep mask of every selector stage (the SELECT records the RTL wrote to the TRACE
region) and the tokens entering every block (``Stats.tokens_per_block``) equal golden
``forward_int(prune=True)``; the compiler's whole-accelerator cycle model
(``compiler.cycles.estimate`` / ``total_cycles`` at the run's live token counts) against every
descriptor's cycle record (within 12 cycles or 2 %, most exact) and the CYCLES register (within
0.5 %); the heat map drawn from the RTL's masks says they equal golden's.
Images: 2 consecutive test images from a seeded start (HEATVIT_SEED, logged)."""

from __future__ import annotations

import numpy as np
import pytest

from heatvit.sim.runner import pick_seed, simulator_available

IMAGES = 2
DESCRIPTOR_TOLERANCE = 12
DESCRIPTOR_REL_TOLERANCE = 0.02
EXACT_SHARE = 0.8
IMAGE_TOLERANCE = 0.005


@pytest.mark.slow
def test_accel_fastsim_pruned_digits(tmp_path):
    from heatvit import heatmap
    from heatvit.bench import pruning
    from heatvit.compiler import cycles, models
    from heatvit.golden.vit import data as vit_data
    from heatvit.presets import PRESETS
    if not simulator_available("verilator"):
        pytest.skip("verilator not installed")
    seed = pick_seed()
    n_test = len(vit_data.load_splits()["test_y"])
    start = seed % (n_test - IMAGES)
    print(f"HEATVIT_SEED={seed}: test images {start}..{start + IMAGES - 1}")
    model = models.load_model()
    images, labels = pruning.digits_images(IMAGES, start, model.cfg.image_size)
    r = heatmap.rtl_decisions(model, images, workdir=tmp_path / "run")
    run = r["run"]
    acc = PRESETS[heatmap.RTL_PRESET]
    stages = len(model.plan.blocks)
    tokens = pruning.golden_tokens(run["dumps"], model.cfg.depth)
    keeps = pruning.golden_masks(run["dumps"], stages)
    for i, (res, tr) in enumerate(zip(run["result"]["images"], run["traces"])):
        where = f"seed {seed}, test image {start + i}"
        assert res["bit_exact"] and np.array_equal(res["logits"], run["logits"][i]), \
            f"{where}: logits {res['logits']} != golden {run['logits'][i].tolist()}"
        assert res["tokens_per_block"] == tokens[i], f"{where}: tokens {res['tokens_per_block']} != golden {tokens[i]}"
        assert tr.tokens_per_block == tokens[i]
        for s in range(stages):
            assert np.array_equal(tr.keep[s], keeps[i][s]), f"{where}: stage {s} keep mask differs from golden"
        assert r["equal"][i], f"{where}: kept patches differ from golden"
        assert tokens[i][-1] < tokens[i][0], f"{where}: nothing pruned ({tokens[i]})"
        # cycles: the CYCLES register covers every descriptor record; the compiler's whole-accelerator
        # cycle model against every descriptor's record: within DESCRIPTOR_TOLERANCE cycles or
        # DESCRIPTOR_REL_TOLERANCE of the record, whichever is larger (q.k^T: within one cycle at
        # every live token count, testbench/test_cycle_model_rtl.py; a pruned SELECT: the control
        # unit's toksel_cycles misses a few data-dependent cycles), at
        # least EXACT_SHARE of them exact, the whole image within IMAGE_TOLERANCE of CYCLES
        layers = res["layers"]
        assert layers and 0 < layers[-1][4] <= res["cycles"], f"{where}: cycles {res['cycles']}, records {layers[-1]}"
        mc = pruning.model_check(run["image"].program, layers, cycles.image_cycles(run["image"], acc, tr))
        bad = [r for r in mc["descriptors"]
               if abs(r[3] - r[4]) > max(DESCRIPTOR_TOLERANCE, DESCRIPTOR_REL_TOLERANCE * r[3])]
        assert not bad, f"{where}: (index, name, op, RTL, model) off the cycle model: {bad[:8]}"
        assert mc["exact"] >= EXACT_SHARE * mc["count"], f"{where}: {mc['exact']}/{mc['count']} descriptors exact"
        assert abs(mc["total"] - res["cycles"]) <= IMAGE_TOLERANCE * res["cycles"], \
            f"{where}: CYCLES {res['cycles']}, cycle model {mc['total']}"
        got = [lay[4] - lay[3] for lay in layers if lay[2] == "SELECT"]
        assert len(got) == stages
        print(f"test image {start + i}: {res['cycles']:,} cycles, tokens {res['tokens_per_block']}, SELECT {got}")
    fig = heatmap.render(model, images, labels, first=start, rtl=r)
    assert f"equal to golden on {IMAGES}/{IMAGES} images" in fig._suptitle.get_text()
    heatmap.save(fig, tmp_path / "heatmap_rtl.png")
    assert (tmp_path / "heatmap_rtl.png").stat().st_size > 0
