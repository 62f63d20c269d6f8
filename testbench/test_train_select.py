"""``train/select_digits.py``: the model choice on the validation split (issue 14).

The MAC count it selects under is the sparsity bench's (the compiled program's GEMMs, a sparse
one's ``m k n`` times its stored share of tiles) on the same image, the rule picks what its
docstring says, the measured fields agree with ``heatvit.bench.accuracy.evaluate``, and bad input
is refused.  Needs torch and scikit-learn (the ``train`` extra; skipped without)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heatvit import compiler
from heatvit.compiler import cycles, interpret, models as cmodels, trace as trace_mod
from heatvit.compiler.interpret import gemm_bitmap
from heatvit.config import DEFAULT
from heatvit.golden.vit import data as vit_data, model as model_io

import train_scripts

ROOT = Path(__file__).resolve().parent.parent
SPARSE = Path(model_io.DEFAULT_MODEL).with_name("vit_digits_sparse.npz")


def _select():
    return train_scripts.load("select_digits")


def test_tile_share():
    s = _select()
    w = np.zeros((40, 20))                      # W = w.T is 20 x 40: 2 x 3 tiles of 16 x 16
    assert s.tile_share(w, 16, 16) == 0.0
    w[33, 17] = 1.0                             # K tile 1, N tile 2 (a padded edge tile)
    assert s.tile_share(w, 16, 16) == 1 / 6
    w[0, 0] = -2.0
    assert s.tile_share(w, 16, 16) == 2 / 6


def test_pruned_macs_is_the_programs():
    """One image of the committed sparse model through the compiled program (interpreter trace,
    cycle model's GEMM shapes, each sparse GEMM's bitmap share): the same MACs as
    :func:`select_digits.pruned_macs` at the golden forward's token counts."""
    s = _select()
    model = model_io.load_npz(SPARSE)
    qm = compiler.quantize_for(model, DEFAULT)
    images = vit_data.upscale(vit_data.load_splits()["test_x"][:1])
    img = compiler.read_image(compiler.compile_model(qm, DEFAULT, prune=True), DEFAULT)
    tr = trace_mod.read(img, interpret.run(img, DEFAULT, interpret.pack_input(img, cmodels.patches(qm, images)[0])).trace)
    program = 0.0
    for e in cycles.image_cycles(img, DEFAULT, tr):
        if e.op == "GEMM":
            d = img.program[e.index]
            bm = gemm_bitmap(DEFAULT, d, img.blob) if d.sparse else np.ones(1)
            program += e.m * e.k * e.n * bm.sum() / bm.size
    _, (dump,) = cmodels.pruned_dumps(qm, images)
    cfg = model.cfg
    tokens = [dump[f"blocks.{i}.in"].shape[0] for i in range(cfg.depth)]
    sel = [dump[f"blocks.{b - 1}.out"].shape[0] for b in model.plan.blocks]
    assert tokens[-1] < cfg.num_tokens                     # the selectors pruned: not the dense count
    assert s.pruned_macs(model, tokens, sel, DEFAULT.gemm.rows, DEFAULT.gemm.cols) == pytest.approx(program, rel=1e-12)


def test_measure_agrees_with_accuracy_evaluate():
    s = _select()
    from heatvit.bench.accuracy import evaluate
    sp = vit_data.load_splits()
    x, y, calib = sp["calib_x"][-6:], sp["calib_y"][-6:], sp["calib_x"][:16]
    r = s.measure(SPARSE, x, y, calib, 16, 16)
    ref = evaluate(model_io.load_npz(SPARSE), {"test_x": x, "test_y": y, "calib_x": calib})
    assert r["n_val"] == 6 and r["val_pruned_int8_top1"] == ref["pruned_int8_top1"]
    assert r["val_pruned_int8_correct"] == round(6 * ref["pruned_int8_top1"])
    assert r["val_int8_top1"] == ref["int8_top1"] and r["val_pruned_float_top1"] == ref["pruned_float_top1"]
    assert r["val_pruned_int8_nll"] > 0 and r["macs_dense"] == ref["macs_dense"]
    # weight pruning on top of the token pruning: fewer MACs than the dense-weight count
    assert 0 < r["macs"] < ref["macs_pruned"] and r["mac_reduction"] == pytest.approx(1 - r["macs"] / r["macs_dense"])


def test_choice_rule():
    s = _select()

    def row(name, top1, nll, red):
        return {"model": name, "val_pruned_int8_top1": top1, "val_pruned_int8_nll": nll, "mac_reduction": red}

    rows = [row("a", 0.97, 0.10, 0.65), row("b", 0.98, 0.20, 0.61), row("c", 0.99, 0.05, 0.59),
            row("d", 0.98, 0.15, 0.62), row("e", 0.98, 0.15, 0.63)]
    assert s.choose(rows, 0.6)["model"] == "e"     # c misses the MAC bound; b, d, e tie; e: lower nll than b, more MACs saved than d
    assert s.choose(rows, 0.5)["model"] == "c"
    assert s.choose(rows + [row("f", 0.98, 0.15, 0.63)], 0.6)["model"] == "e"     # full tie: the earlier one
    assert s.choose(rows, 0.7) is None


def test_cli_refuses_bad_input(tmp_path):
    _select()
    res = subprocess.run([sys.executable, "train/select_digits.py", str(tmp_path / "none.npz")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "candidate model files not found" in res.stderr
    res = subprocess.run([sys.executable, "train/select_digits.py", str(SPARSE), "--min-mac-reduction", "1.5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "--min-mac-reduction must be in [0, 1), not 1.5" in res.stderr
