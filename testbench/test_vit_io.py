"""Golden ViT: config checks, timm state-dict import (errors name the key and both shapes),
image checks, and the float forward against PyTorch (runs when torch is importable)."""

import json

import numpy as np
import pytest

from heatvit.golden.vit import data as vit_data, float_forward as vit_float, model as model_io
from heatvit.golden.vit.config import PruningPlan, ViTConfig

DEIT_T = ViTConfig(image_size=224, patch_size=16, in_chans=3, dim=192, depth=12, heads=3, mlp_ratio=4.0,
                   num_classes=1000)


def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)          # more threads crawl on a loaded 2-core machine
    return torch


def random_state_dict(cfg: ViTConfig, seed: int = 0, std: float = 0.2) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, std, s).astype(np.float32) for k, s in cfg.state_dict_shapes().items()}


def test_deit_t_keys_and_shapes():
    shapes = DEIT_T.state_dict_shapes()
    assert shapes["patch_embed.proj.weight"] == (192, 3, 16, 16)
    assert shapes["pos_embed"] == (1, 197, 192)
    assert shapes["blocks.11.attn.qkv.weight"] == (576, 192)
    assert shapes["blocks.11.mlp.fc1.weight"] == (768, 192)
    assert shapes["head.weight"] == (1000, 192)
    assert len(shapes) == 4 + 12 * 12 + 4
    n_params = sum(int(np.prod(s)) for s in shapes.values())
    assert n_params == 5_717_416                      # timm deit_tiny_patch16_224
    assert DEIT_T.dense_macs() == sum(m * k * n for m, k, n in DEIT_T.gemm_shapes())
    assert abs(DEIT_T.dense_macs() / 1e9 - 1.26) < 0.02   # reference.md: DeiT-T 1.26 GMACs


def test_deit_t_random_state_dict_loads():
    sd = random_state_dict(DEIT_T)
    m = model_io.from_state_dict(DEIT_T, sd)
    assert set(m.weights) == set(sd)
    assert all(m.weights[k].dtype == np.float32 and np.array_equal(m.weights[k], sd[k]) for k in sd)


def test_missing_key_named_with_shape():
    sd = random_state_dict(DEIT_T)
    del sd["blocks.7.attn.proj.bias"]
    with pytest.raises(ValueError, match=r"missing key\(s\) 'blocks\.7\.attn\.proj\.bias' \(shape \(192,\)\)"):
        model_io.from_state_dict(DEIT_T, sd)


def test_extra_key_named():
    sd = random_state_dict(DEIT_T)
    sd["dist_token"] = np.zeros((1, 1, 192), np.float32)
    with pytest.raises(ValueError, match=r"unexpected key\(s\) 'dist_token'"):
        model_io.from_state_dict(DEIT_T, sd)


def test_wrong_shape_names_key_and_both_shapes():
    sd = random_state_dict(DEIT_T)
    sd["blocks.3.mlp.fc1.weight"] = np.zeros((768, 191), np.float32)
    with pytest.raises(ValueError, match=r"key 'blocks\.3\.mlp\.fc1\.weight' has shape \(768, 191\); "
                                         r"expected \(768, 192\)"):
        model_io.from_state_dict(DEIT_T, sd)


def test_non_finite_weight_rejected():
    cfg = ViTConfig()
    sd = random_state_dict(cfg)
    sd["head.bias"][3] = np.nan
    with pytest.raises(ValueError, match="'head.bias'.*NaN"):
        model_io.from_state_dict(cfg, sd)


@pytest.mark.parametrize("kw, match", [
    (dict(patch_size=5), "patch_size = 5 does not divide image_size = 32"),
    (dict(heads=5), "heads = 5 does not divide dim = 48"),
    (dict(depth=0), r"depth = 0 is out of range; allowed \[1, 256\]"),
    (dict(mlp_ratio=0.0), "mlp_ratio"),
    (dict(eps=0.0), "eps"),
])
def test_config_checks(kw, match):
    with pytest.raises(ValueError, match=match):
        ViTConfig(**kw)


def test_config_accepts_numpy_scalars():
    cfg = ViTConfig(dim=np.int64(48), depth=np.int32(6), mlp_ratio=np.float32(2.0), eps=np.float64(1e-6))
    assert cfg == ViTConfig() and type(cfg.dim) is int and type(cfg.mlp_ratio) is float
    assert ViTConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="ViTConfig.dim must be an int"):
        ViTConfig(dim=np.float64(48.0))


@pytest.mark.parametrize("blocks, ratios, match", [
    ((2, 4), (0.5,), "2 blocks but 1 keep_ratios"),
    ((4, 2), (0.5, 0.3), "strictly increasing"),
    ((2, 4), (0.3, 0.5), "non-increasing"),
    ((2,), (1.5,), r"allowed each in \(0, 1\]"),
])
def test_plan_checks(blocks, ratios, match):
    with pytest.raises(ValueError, match=match):
        PruningPlan(blocks, ratios)


def test_plan_block_range():
    with pytest.raises(ValueError, match=r"PruningPlan.blocks has 6; allowed \[1, 5\]"):
        PruningPlan((6,), (0.5,)).check(ViTConfig())


@pytest.mark.parametrize("shape", [(2, 1, 32, 31), (2, 3, 32, 32), (1, 32, 32), (2, 1, 64, 64)])
def test_wrong_image_shape_is_an_error(shape):
    cfg = ViTConfig()
    model = model_io.from_state_dict(cfg, random_state_dict(cfg))
    with pytest.raises(ValueError, match=r"expected \(B, 1, 32, 32\).*never resized"):
        vit_float.forward_float(model, np.zeros(shape, np.float32))


def test_npz_round_trip(tmp_path):
    cfg = ViTConfig(depth=2)
    m = model_io.from_state_dict(cfg, random_state_dict(cfg), meta={"note": "x"})
    model_io.save_npz(m, tmp_path / "m.npz")
    m2 = model_io.load_npz(tmp_path / "m.npz")
    assert m2.cfg == cfg and m2.meta == {"note": "x"} and m2.plan == m.plan
    assert all(np.array_equal(m.weights[k], m2.weights[k]) for k in m.weights)


def test_upscale_digits():
    x = np.zeros((1, 8, 8), np.uint8)
    x[0, 3, 4] = 16
    up = vit_data.upscale(x)
    assert up.shape == (1, 1, 32, 32) and up.dtype == np.float32
    assert np.isclose(up.sum(), 16.0)                 # bilinear x4 spreads one pixel over 16 in total
    assert up.max() <= 1.0 and up.min() >= 0.0
    with pytest.raises(ValueError, match=r"integers in \[0, 16\]"):
        vit_data.upscale(np.full((1, 8, 8), 17, np.uint8))


@pytest.mark.parametrize("cfg", [ViTConfig(), DEIT_T], ids=["digits", "deit-t"])
def test_float_forward_matches_pytorch(cfg):
    torch = _torch()
    from heatvit.golden.vit.torch_ref import VisionTransformer
    torch.manual_seed(1)
    tm = VisionTransformer(cfg).eval()
    with torch.no_grad():                             # weights well away from init so every op matters
        for p in tm.parameters():
            p.normal_(0.0, 0.2)
    model = model_io.from_state_dict(cfg, tm.state_dict())
    b = 4 if cfg.image_size <= 32 else 1
    x = np.random.default_rng(2).random((b, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32)
    dump = {}
    y = vit_float.forward_float(model, x, dump=dump)
    with torch.no_grad():
        yt = tm(torch.as_tensor(x)).numpy()
        et = tm.embed(torch.as_tensor(x)).numpy()
    assert np.abs(dump["embed"] - et).max() <= 1e-4
    assert np.abs(y - yt).max() <= 1e-4, np.abs(y - yt).max()
    assert np.abs(yt).max() > 0.5                     # not a trivially small output


def test_pruned_float_forward_matches_pytorch():
    """Token selectors: the float golden (kept tokens gathered, package token appended) against
    the PyTorch training twin (masks), same weights, one image at a time."""
    torch = _torch()
    from heatvit.golden.vit.torch_ref import PrunedViT, VisionTransformer
    cfg, plan = ViTConfig(depth=4), PruningPlan((1, 3), (0.6, 0.3))
    torch.manual_seed(3)
    bb = VisionTransformer(cfg)
    tm = PrunedViT(bb, plan).eval()
    x = np.random.default_rng(4).random((6, 1, 32, 32)).astype(np.float32)
    with torch.no_grad():
        for name, p in tm.named_parameters():
            p.normal_(0.0, 0.3 if name.startswith("selectors") else 0.2)
        for blk in bb.blocks:
            blk.norm1.weight.add_(1.0), blk.norm2.weight.add_(1.0)
        for s, sel in enumerate(tm.selectors):          # bias each selector to prune about half
            sel.w[3].mul_(10.0)
            lo, hi = -60.0, 60.0
            for _ in range(14):
                c = (lo + hi) / 2
                sel.b[3][:, 0] = c
                left = tm(torch.as_tensor(x))[1][s].mean()
                lo, hi = (lo, c) if left > 0.6 ** (s + 1) else (c, hi)
    sd = {k[len("backbone."):] if k.startswith("backbone.") else k: v for k, v in tm.state_dict().items()}
    model = model_io.from_state_dict(cfg, sd, plan)
    dump = {}
    y = vit_float.forward_float(model, x, prune=True, dump=dump)
    with torch.no_grad():
        yt, ratios, _, _ = tm(torch.as_tensor(x))
    kept = np.array([[len(k) for k in dump[f"selectors.{s}.kept_patches"]] for s in range(2)]).T
    same = np.all(kept == np.stack([r.numpy() for r in ratios], 1) * cfg.num_patches, axis=1)
    # a keep score within float rounding of the threshold may flip (the biases above put many near it)
    assert same.sum() >= 5, kept
    assert 0 < kept.min() and kept.max() < cfg.num_patches      # the selectors really prune
    err = np.abs(y - yt.numpy())[same].max()
    assert err <= 1e-4, err


def test_training_threshold_cut_calibration():
    """train/train_digits.py's threshold-cut calibration makes the inference rule (keep score >
    0.5) keep each stage's target fraction of the patch tokens."""
    torch = _torch()
    import importlib.util
    from pathlib import Path
    from heatvit.golden.vit.torch_ref import PrunedViT, VisionTransformer
    spec = importlib.util.spec_from_file_location(
        "train_digits", Path(__file__).resolve().parent.parent / "train" / "train_digits.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    cfg, plan = ViTConfig(depth=3), PruningPlan((1, 2), (0.6, 0.3))
    torch.manual_seed(0)
    tm = PrunedViT(VisionTransformer(cfg), plan)
    x = torch.rand(16, 1, 32, 32)
    train.calibrate_keep_bias(tm, x, iters=20)
    acc, keep = train.evaluate_pruned(tm, x, torch.zeros(16, dtype=torch.long))
    assert np.allclose(keep, plan.keep_ratios, atol=0.03), keep


def test_bfloat16_state_dict_and_images_are_converted():
    """A bfloat16 state dict and bfloat16 images (NumPy has no bfloat16) load through float32;
    a tensor with no real NumPy form is an error naming its key."""
    torch = _torch()
    cfg = ViTConfig(depth=1, dim=16, heads=2)
    sd = random_state_dict(cfg)
    bf = {k: torch.as_tensor(v).to(torch.bfloat16) for k, v in sd.items()}
    m = model_io.from_state_dict(cfg, bf)
    for k, v in bf.items():
        assert m.weights[k].dtype == np.float32 and np.array_equal(m.weights[k], v.float().numpy())
    x = torch.rand(2, 1, 32, 32).to(torch.bfloat16)
    assert np.array_equal(vit_float.forward_float(m, x), vit_float.forward_float(m, x.float().numpy()))
    bad = dict(bf, **{"head.bias": torch.zeros(10, dtype=torch.complex64)})
    with pytest.raises(ValueError, match="state dict key 'head.bias': expected a real-valued array"):
        model_io.from_state_dict(cfg, bad)
    with pytest.raises(ValueError, match="images: expected a real-valued array"):
        vit_float.forward_float(m, torch.zeros(1, 1, 32, 32, dtype=torch.complex64))
