"""The whole accelerator top (Amaranth simulator) on a block-sparse micro ViT (issue 14): every
encoder Linear keeps half of its 4 x 4 weight tiles (one with an all-zero N tile), the compiler
emits block-sparse GEMMs, and every stored layer result and the logits are bit-exact with
heatvit.compiler.interpret.  Seeds: HEATVIT_SEED."""

import numpy as np

from heatvit import compiler
from heatvit.compiler import interpret, models
from heatvit.sim.runner import pick_seed

from test_accel_top import run_program, tiny_acc
from test_sparse_compiler import block_prune


def test_accelerator_micro_vit_block_sparse():
    seed = pick_seed()
    print(f"HEATVIT_SEED={seed}")
    acc = tiny_acc()
    cfg = models.ViTConfig(image_size=8, patch_size=4, in_chans=1, dim=8, depth=1, heads=2, mlp_ratio=2.0,
                           num_classes=4)
    rng = np.random.default_rng(seed)
    qm = compiler.quantize_for(models.random_model(cfg, seed % 1000), acc, calib_count=8)
    block_prune(qm, acc, 0.5, rng, empty_column="blocks.0.mlp.fc1")
    blob = compiler.compile_model(qm, acc, debug=True)
    img = compiler.read_image(blob, acc)
    assert sum(1 for d in img.program if d.sparse) == 6          # patch embedding, qkv, proj, fc1, fc2, head
    inp = interpret.pack_input(img, rng.integers(-128, 128, (img.input["rows"], img.input["cols"])))
    img, [(st, out, dbg, _, _)] = run_program(acc, blob, inp, seed)
    want = interpret.run(img, acc, inp, trace=True)
    assert st["ERROR"] == 0, f"seed {seed}: {st}"
    if dbg != want.debug:
        got_steps = interpret.debug_steps(img, dbg)
        for g, w in zip(got_steps, interpret.debug_steps(img, want.debug)):
            assert np.array_equal(g.out, w.out), f"seed {seed}: first difference at {w.name} ({w.op})"
        raise AssertionError(f"seed {seed}: DEBUG region differs")
    assert out == want.output, f"seed {seed}: logits differ"
