"""Smoke run of ``train/train_digits.py --block-prune --qat-epochs 1`` (issue 14): one epoch per
phase on a slice.  The pruned tiles of every encoder Linear are exactly zero in the written model at
the config's tile shape (they stayed 0 through the selector and quantization-aware training), the metadata says what was kept, and
the compiler turns those layers into block-sparse GEMMs that the interpreter runs bit-exactly
against the golden integer forward.  Needs torch and scikit-learn (skipped without)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heatvit import compiler
from heatvit.compiler import interpret, models
from heatvit.config import DEFAULT
from heatvit.golden.gemm import tile_bitmap
from heatvit.golden.vit import data as vit_data, model as model_io

import train_scripts

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_work(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    work = tmp_path_factory.mktemp("train_block")
    res = subprocess.run([sys.executable, "train/train_digits.py", "--seed", "3", "--epochs", "1", "--sel-epochs", "1",
                          "--adapt-epochs", "0", "--limit", "64", "--block-prune", "0.5", "--block-epochs", "2",
                          "--qat-epochs", "1", "--work", str(work)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return work


@pytest.fixture(scope="module")
def smoke(smoke_work):
    return model_io.load_npz(smoke_work / "vit_digits.npz")


def test_block_pruned_model(smoke):
    info = smoke.meta["block_prune"]
    assert info["density"] == 0.5 and info["tile"] == [16, 16]
    assert smoke.meta["commands"][0].endswith("--block-prune 0.5 --block-epochs 2 --qat-epochs 1")
    assert smoke.meta["recipe"]["qat_epochs"] == 1 and smoke.meta["recipe"]["qat"]["decision"] == "threshold"
    assert len(info["tiles"]) == 4 * smoke.cfg.depth
    qm = compiler.quantize_for(smoke, DEFAULT)
    layers = {}
    for i, b in enumerate(qm.blocks):
        layers.update({f"blocks.{i}.attn.qkv": b.qkv, f"blocks.{i}.attn.proj": b.proj,
                       f"blocks.{i}.mlp.fc1": b.fc1, f"blocks.{i}.mlp.fc2": b.fc2})
    for name, (kept, total) in info["tiles"].items():
        assert kept == max(1, round(0.5 * total)), name
        # int8 weights: the pruned tiles are zero (a kept tile could quantize to zero, not here)
        assert int(tile_bitmap(DEFAULT.gemm, layers[name].w).sum()) == kept, name
    img = compiler.read_image(compiler.compile_model(qm, DEFAULT), DEFAULT)
    sparse = {d.name: d.tiles for d in img.program if d.sparse}
    assert sparse == {name: kept for name, (kept, _) in info["tiles"].items()}
    images = vit_data.upscale(vit_data.load_splits()["test_x"][:2])
    logits, _ = models.dense_dumps(qm, images)
    patches = models.patches(qm, images)
    for b in range(2):
        res = interpret.run(img, DEFAULT, interpret.pack_input(img, patches[b]))
        assert np.array_equal(interpret.unpack_output(img, res.output), logits[b])


def test_cut_under_fake_quantization(smoke_work):
    """``--phase cut --cut-quant`` after the quantization-aware phase: the cut is calibrated under
    the golden int8 fake quantization (the metadata says so) and differs from the float cut of the
    same state; the backbone and the selectors' other weights are the trained ones in both."""
    cut = ["--phase", "cut", "--keep", "0.65,0.3", "--seed", "3", "--limit", "64", "--block-prune", "0.5",
           "--work", str(smoke_work)]
    models = {}
    for how, extra in (("fake-quantized", ["--cut-quant"]), ("float", [])):
        out = smoke_work / f"cut_{how}.npz"
        res = subprocess.run([sys.executable, "train/train_digits.py", *cut, *extra, "--out", str(out)], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        models[how] = model_io.load_npz(out)
        assert models[how].meta["plan_search"]["cut_calibration"] == how
        assert models[how].plan.keep_ratios == (0.65, 0.3)
    a, b = (m.state_dict() for m in models.values())
    differ = sorted(k for k in a if not np.array_equal(a[k], b[k]))
    assert differ and all(k.startswith("selectors.") and k.endswith(".b.3") for k in differ), differ


def _train_module():
    return train_scripts.load("train_digits")


@pytest.mark.parametrize("density", [0.7, 0.5, 0.3])
def test_latency_density_rule(density):
    """The latency-aware per-layer rule on a random model: the kept tiles cost at most
    ``density`` of the layers' dense cycles (the cycle model at the plan's token counts) and no
    less than that minus one tile; every layer keeps its floor (half the target); with equal tile
    norms in expectation, the blocks after the last selector (a third of the tokens) keep a larger
    share than block 0 (all tokens)."""
    import torch
    t = _train_module()
    from heatvit.golden.gemm import split_shape
    from heatvit.golden.vit.config import ViTConfig
    cfg = ViTConfig()
    torch.manual_seed(0)
    model = t.VisionTransformer(cfg)
    plan = t.parse_plan("1,3:0.7,0.3")
    g = DEFAULT.gemm
    costs = t.tile_costs(DEFAULT, cfg, plan)
    tokens = plan.planned_tokens(cfg)
    assert costs["blocks.0.mlp.fc1"] == sum(g.estimate_cycles(*p) for p in split_shape(g, tokens[0], cfg.dim, cfg.hidden)) / (
        -(-cfg.dim // g.rows) * -(-cfg.hidden // g.cols))
    layers = t.block_layers(model)
    masks = t.latency_masks(layers, g.rows, g.cols, density, costs)
    kept = total = 0.0
    share = {}
    for name, lin in layers:
        on = t.tile_norms(lin.weight * masks[name], g.rows, g.cols) > 0
        assert torch.equal(masks[name], t.expand_tiles(on, lin.weight.shape, g.rows, g.cols).to(masks[name].dtype))
        kept += int(on.sum()) * costs[name]
        total += on.numel() * costs[name]
        share[name] = float(on.float().mean())
        assert int(on.sum()) >= max(1, round(density / 2 * on.numel())), name
    assert density * total - max(costs.values()) <= kept <= density * total + 1e-6
    late = np.mean([v for k, v in share.items() if int(k.split(".")[1]) >= plan.blocks[-1]])
    assert late > np.mean([v for k, v in share.items() if k.startswith("blocks.0.")])


@pytest.mark.parametrize("density", [0.7, 0.5, 0.35, 0.1])
def test_covered_density_rule(density):
    """The ``covered`` rule keeps the uniform rule's count of tiles per layer, but every N-tile
    column keeps at least its strongest tile whenever the count allows one per column (an empty
    column costs the engine a pass anyway: ``GemmConfig.estimate_cycles``), the rest by norm."""
    import torch
    t = _train_module()
    g = DEFAULT.gemm
    torch.manual_seed(1)
    for n, k in ((144, 48), (48, 48), (96, 48), (48, 96)):
        w = torch.randn(n, k) * torch.rand(n, 1) ** 3        # uneven rows: some columns weak
        kt, nt = -(-k // g.rows), -(-n // g.cols)
        norms = t.tile_norms(w, g.rows, g.cols).reshape(nt, kt)
        plain = t.tile_mask(w, g.rows, g.cols, density)
        m = t.tile_mask(w, g.rows, g.cols, density, cover=True)
        on = m.reshape(nt, g.cols, kt, g.rows)[:, 0, :, 0].bool()
        count = max(1, round(density * kt * nt))
        assert int(on.sum()) == count == int(plain.reshape(nt, g.cols, kt, g.rows)[:, 0, :, 0].sum())
        if count >= nt:
            assert bool(on.any(1).all())
            assert bool(on[torch.arange(nt), norms.argmax(1)].all())
            extra = on.clone()
            extra[torch.arange(nt), norms.argmax(1)] = False
            if bool(extra.any()) and bool((~on).any()):    # the rest by norm
                assert float(norms[extra].min()) >= float(norms[~on].max())
        else:
            assert torch.equal(m, plain)
        g_cycles = [g.estimate_cycles(65, k, n, on.T.numpy()), g.estimate_cycles(
            65, k, n, plain.reshape(nt, g.cols, kt, g.rows)[:, 0, :, 0].bool().T.numpy())]
        assert g_cycles[0] <= g_cycles[1]


def test_tokens_first_smoke(tmp_path):
    """``--block-order tokens-first --density-rule covered``: the selectors train on the dense
    weights, then the token-pruned model is block pruned; the written model's encoder Linears
    keep the covered rule's tiles (every N-tile column non-empty), exactly zero elsewhere, and the
    metadata records the order."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    res = subprocess.run([sys.executable, "train/train_digits.py", "--seed", "2", "--epochs", "1", "--sel-epochs", "1",
                          "--adapt-epochs", "0", "--limit", "32", "--block-prune", "0.5", "--block-epochs", "2",
                          "--block-order", "tokens-first", "--density-rule", "covered", "--work", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    model = model_io.load_npz(tmp_path / "vit_digits.npz")
    info = model.meta["block_prune"]
    assert info["recipe"]["order"] == "tokens-first" and info["recipe"]["density_rule"] == "covered"
    qm = compiler.quantize_for(model, DEFAULT)
    for i, b in enumerate(qm.blocks):
        for lin, layer in (("attn.qkv", b.qkv), ("attn.proj", b.proj), ("mlp.fc1", b.fc1), ("mlp.fc2", b.fc2)):
            bitmap = tile_bitmap(DEFAULT.gemm, layer.w)                    # (KT, NT)
            kept, total = info["tiles"][f"blocks.{i}.{lin}"]
            assert int(bitmap.sum()) == kept == max(1, round(0.5 * total))
            assert bitmap.any(0).all(), f"blocks.{i}.{lin}: an empty N-tile column"
