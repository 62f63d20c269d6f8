"""Golden ViT, integer model: post-training quantization, the integer forward (dense and with
token selectors) against the float forward stage by stage, the dumps that localize a mismatch,
DeiT-T widths, the committed default model and the accuracy bench.  NumPy only."""

import numpy as np
import pytest

from heatvit.golden.gemm import gemm
from heatvit.golden.vit import data as vit_data, float_forward as vit_float, int_forward as vit_int
from heatvit.golden.vit import latency as vit_latency, model as model_io, quantize, selector as vit_selector
from heatvit.golden.vit.config import PruningPlan, ViTConfig
from heatvit.golden.vit.selector import selector_param_shapes

CFG = ViTConfig(depth=4)
PLAN = PruningPlan((1, 3), (0.6, 0.3))


def random_model(cfg=CFG, plan=PLAN, seed=0, std=0.2, sel_std=0.3):
    rng = np.random.default_rng(seed)
    sd = {k: rng.normal(0.0, std, s).astype(np.float32) for k, s in cfg.state_dict_shapes().items()}
    for k in ("norm1.weight", "norm2.weight"):
        for i in range(cfg.depth):
            sd[f"blocks.{i}.{k}"] += 1.0
    sd["norm.weight"] += 1.0
    for i in range(len(plan.blocks)):
        for k, s in selector_param_shapes(cfg).items():
            sd[f"selectors.{i}.{k}"] = rng.normal(0.0, sel_std, s).astype(np.float32)
    return model_io.from_state_dict(cfg, sd, plan)


@pytest.fixture(scope="module")
def digits():
    sp = vit_data.load_splits()
    return vit_data.upscale(sp["test_x"][:6]), vit_data.upscale(sp["calib_x"][:24])


@pytest.fixture(scope="module")
def quantized(digits):
    model = random_model()
    return model, quantize.quantize_model(model, digits[1])


def _rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-9))


def test_integer_dense_tracks_float_stage_by_stage(digits, quantized):
    model, qm = quantized
    x = digits[0]
    fd: dict = {}
    yf = vit_float.forward_float(model, x, dump=fd)
    dumps: list = []
    yi = vit_int.forward_int(qm, x, dumps=dumps)
    assert yi.dtype == np.int64 and yi.min() >= -128 and yi.max() <= 127
    for name in ("embed", "blocks.0.norm1", "blocks.0.attn.proj", "blocks.1.mlp.gelu", "blocks.3.out", "norm"):
        deq = np.stack([d[name] for d in dumps]) * qm.scales[name]
        # a few int8 LSBs of the stage's range: the integer model follows the float one
        assert _rel_err(deq, fd[name]) < 0.1, name
    assert _rel_err(yi * qm.scales["logits"], yf) < 0.12
    assert np.mean(np.argmax(yi, 1) == np.argmax(yf, 1)) >= 5 / 6


def test_every_float_stage_is_dumped_by_the_integer_model(digits, quantized):
    model, qm = quantized
    fd: dict = {}
    vit_float.forward_float(model, digits[0][:1], dump=fd)
    dumps: list = []
    vit_int.forward_int(qm, digits[0][:1], dumps=dumps)
    assert set(fd) <= set(dumps[0])
    assert all(np.issubdtype(np.asarray(v).dtype, np.integer) for k, v in dumps[0].items()
               if k != "patches" and not k.startswith("selectors."))


def test_gemm_stage_is_the_golden_gemm(digits, quantized):
    """fc2 of block 2 recomputed from its dumped input with the GEMM golden model, and fc1 (16-bit
    output for GELU) and the raw q @ k^T scores by hand."""
    _, qm = quantized
    dumps: list = []
    vit_int.forward_int(qm, digits[0][:1], dumps=dumps)
    d, blk = dumps[0], qm.blocks[2]
    lay = blk.fc2
    assert np.array_equal(gemm(qm.gemm, d["blocks.2.mlp.gelu"], lay.w, lay.bias, lay.mult, lay.shift), d["blocks.2.mlp.fc2"])

    def by_hand(x, lay, bits):         # int64 accumulation, multiply, round half away from zero, saturate
        p = (x.astype(np.int64) @ lay.w + lay.bias) * lay.mult
        q = np.sign(p) * ((np.abs(p) + (1 << (lay.shift - 1))) >> lay.shift)
        return np.clip(q, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    assert np.array_equal(by_hand(d["blocks.2.mlp.gelu"], lay, 8), d["blocks.2.mlp.fc2"])
    f1 = by_hand(d["blocks.2.norm2"], blk.fc1, 16)
    assert np.array_equal(f1, d["blocks.2.mlp.fc1"]) and np.abs(f1).max() > 127
    dh = CFG.head_dim
    q, k = d["blocks.2.attn.q"][:, :dh], d["blocks.2.attn.k"][:, :dh]
    assert np.array_equal(q @ k.T, d["blocks.2.attn.scores"][0])


def test_pruned_integer_model(digits, quantized):
    model, qm = quantized
    dumps: list = []
    yp = vit_int.forward_int(qm, digits[0], prune=True, dumps=dumps)
    fd: dict = {}
    vit_float.forward_float(model, digits[0], prune=True, dump=fd)
    assert yp.shape == (6, CFG.num_classes)
    for d in dumps:
        tokens = [d[f"blocks.{i}.in"].shape[0] for i in range(CFG.depth)]
        assert tokens[0] == CFG.num_tokens and tokens == sorted(tokens, reverse=True)
        kept = [d[f"selectors.{s}.kept_patches"] for s in range(len(PLAN.blocks))]
        assert set(kept[1]) <= set(kept[0]) <= set(range(CFG.num_patches))
        assert np.all(np.diff(kept[0]) > 0)           # kept tokens stay in their original order
    # the decisions follow the float model's on most tokens
    agree = np.mean([np.mean(a == b) for a, b in zip([d["selectors.0.keep"] for d in dumps], fd["selectors.0.keep"])])
    assert agree > 0.9


def test_selectors_keeping_everything_give_the_dense_result(digits):
    """Threshold 0 on a keep score: no token is pruned, so the pruned model is the dense one bit for bit."""
    model = random_model(seed=3)
    for sel in model.selectors:                       # force 'keep' for every token: bias of the last layer
        sel["b.3"][:, 0] = 50.0
        sel["b.3"][:, 1] = -50.0
    qm = quantize.quantize_model(model, digits[1][:8])
    dumps: list = []
    yp = vit_int.forward_int(qm, digits[0][:2], prune=True, dumps=dumps)
    assert np.array_equal(yp, vit_int.forward_int(qm, digits[0][:2]))
    assert all(d["blocks.3.in"].shape[0] == CFG.num_tokens for d in dumps)


def test_selector_gemm_shapes_match_the_token_selector_golden(quantized):
    _, qm = quantized
    for n in (1, 17, CFG.num_tokens):
        assert vit_selector.selector_gemm_shapes(CFG, n) == qm.selectors[0].gemm_shapes(n)


def test_macs_counted_from_token_counts():
    cfg = ViTConfig()
    assert vit_latency.macs(cfg, [cfg.num_tokens] * cfg.depth) == cfg.dense_macs()
    plan = PruningPlan((2,), (0.5,))
    assert vit_latency.plan_macs(cfg, plan) < cfg.dense_macs()


def test_wrong_images_rejected(quantized):
    _, qm = quantized
    with pytest.raises(ValueError, match="never resized"):
        vit_int.forward_int(qm, np.zeros((1, 3, 32, 32), np.float32))


def test_accuracy_bench_keys(digits):
    from heatvit.bench import accuracy
    res = accuracy.evaluate(random_model(), limit=3)
    assert res["n_test"] == 3
    for k in ("float_top1", "int8_top1", "pruned_int8_top1"):
        assert 0.0 <= res[k] <= 1.0
    assert len(res["keep_ratio_per_stage"]) == len(PLAN.blocks)
    assert 0 < res["macs_pruned"] and res["macs_dense"] == CFG.dense_macs()


def test_committed_default_model():
    """The trained default model loads with NumPy alone, prunes, and classifies the first test images."""
    model = model_io.load_npz()
    assert model.plan.blocks and model.meta.get("trained_by") == "train/train_digits.py"
    sp = vit_data.load_splits()
    x, y = vit_data.upscale(sp["test_x"][:24]), sp["test_y"][:24]
    qm = quantize.quantize_model(model, vit_data.upscale(sp["calib_x"][:32]))
    dumps: list = []
    pred = vit_int.forward_int(qm, x, prune=True, dumps=dumps).argmax(1)
    assert np.mean(pred == y) >= 0.85
    last = np.mean([len(d[f"selectors.{len(model.plan.blocks) - 1}.kept_patches"]) for d in dumps])
    assert last < 0.6 * model.cfg.num_patches         # the selectors prune


def test_deit_t_shapes_run_in_integer():
    """DeiT-T widths (224x224x3, patch 16, dim 192, 3 heads, MLP 768; 2 blocks to stay quick): the
    patch embedding and fc2 need more activation-buffer words than the engine has, so they run as
    several GEMMs over token ranges; the result still follows the float model."""
    cfg = ViTConfig(image_size=224, patch_size=16, in_chans=3, dim=192, depth=2, heads=3, mlp_ratio=4.0,
                    num_classes=1000)
    rng = np.random.default_rng(5)
    sd = {k: rng.normal(0.0, 0.05, s).astype(np.float32) for k, s in cfg.state_dict_shapes().items()}
    for k in ("blocks.0.norm1.weight", "blocks.0.norm2.weight", "blocks.1.norm1.weight", "blocks.1.norm2.weight",
              "norm.weight"):
        sd[k] += 1.0
    model = model_io.from_state_dict(cfg, sd)
    x = rng.random((1, 3, 224, 224)).astype(np.float32)
    qm = quantize.quantize_model(model, x)
    assert len(vit_int.row_chunks(qm, cfg.num_patches, cfg.patch_k)) > 1
    yi = vit_int.forward_int(qm, x)[0] * qm.scales["logits"]
    yf = vit_float.forward_float(model, x)[0]
    assert np.corrcoef(yi, yf)[0, 1] > 0.95


def _deit_model(cfg, plan, seed=7):
    rng = np.random.default_rng(seed)
    sd = {k: rng.normal(0.0, 0.05, s).astype(np.float32) for k, s in cfg.state_dict_shapes().items()}
    for k in sd:
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            sd[k] += 1.0
    for i in range(len(plan.blocks)):
        for k, s in selector_param_shapes(cfg).items():
            sd[f"selectors.{i}.{k}"] = rng.normal(0.0, 0.3, s).astype(np.float32)
    return model_io.from_state_dict(cfg, sd, plan), rng


def test_deit_s_selector_gemms_fit_the_engine():
    """DeiT-S widths (dim 384, 6 heads, 197 tokens; 2 blocks, one selector) with the default
    engine: the selector's head-mean GEMM (197 x 384 x 6) needs ceil(384/16) * 197 = 4728 buffer
    words > 4096, so it runs in row chunks like every GEMM of the model.  Chunking never changes
    a result: an engine with a buffer big enough for one piece gives the same logits and keeps."""
    import dataclasses
    from heatvit.config import GemmConfig
    cfg = ViTConfig(image_size=224, patch_size=16, in_chans=3, dim=384, depth=2, heads=6, mlp_ratio=4.0,
                    num_classes=1000)
    plan = PruningPlan((1,), (0.7,))
    model, rng = _deit_model(cfg, plan)
    x = rng.random((1, 3, 224, 224)).astype(np.float32)
    qm = quantize.quantize_model(model, x)
    g = qm.gemm
    assert -(-cfg.dim // g.rows) * cfg.num_tokens > g.act_buffer_words
    dumps: list = []
    y = vit_int.forward_int(qm, x, prune=True, dumps=dumps)
    big = GemmConfig(act_buffer_words=1 << 16)
    assert len(vit_int.row_chunks(dataclasses.replace(qm, gemm=big), cfg.num_tokens, cfg.dim)) == 1
    qb = dataclasses.replace(qm, gemm=big,
                             selectors=[dataclasses.replace(s, gemm_cfg=big) for s in qm.selectors])
    dumps_b: list = []
    assert np.array_equal(y, vit_int.forward_int(qb, x, prune=True, dumps=dumps_b))
    assert np.array_equal(dumps[0]["selectors.0.keep"], dumps_b[0]["selectors.0.keep"])
    # the latency model costs the same pieces instead of rejecting the long GEMM
    assert vit_latency.plan_cycles(g, cfg, plan) > vit_latency.plan_cycles(big, cfg, plan) > 0


def test_input_scale_is_calibrated_and_pixels_are_never_clipped(digits):
    """The pixel scale is calibrated like every activation (it was fixed at 1/127, clipping
    every pixel beyond about [-1, 1], so an image at 3.0 gave the logits of one at 1.0).  DeiT's
    mean/std-normalized range [-2.2, 2.7] is represented to half an LSB, and pixels outside the
    calibrated range are an error, never clipped."""
    from heatvit.golden.vit.float_forward import patchify
    model = random_model()
    calib = np.random.default_rng(11).uniform(-2.2, 2.7, (8, 1, 32, 32)).astype(np.float32)
    qm = quantize.quantize_model(model, calib)
    s = qm.scales["patches"]
    assert s == pytest.approx(np.abs(calib).max() / 127)
    lo, hi = qm.input_range
    assert lo < -2.2 and hi > 2.7
    dumps: list = []
    vit_int.forward_int(qm, calib[:1], dumps=dumps)
    assert np.abs(dumps[0]["patches"] * s - patchify(model.cfg, calib[:1])[0]).max() <= s / 2 + 1e-9
    # an image at 3.0 vs one at 1.0 (both were 127 at the fixed scale)
    q3 = quantize.quantize_model(model, digits[1], input_amax=3.0)
    ones = np.ones((1, 1, 32, 32), np.float32)
    assert not np.array_equal(vit_int.forward_int(q3, 3.0 * ones), vit_int.forward_int(q3, ones))
    img = digits[0][:1] / digits[0][:1].max()
    # calibrated on [0, 1] digits: the scale stays 1/127, and 3.0 is out of range
    q1 = quantize.quantize_model(model, digits[1])
    assert q1.scales["patches"] == pytest.approx(1 / 127)
    with pytest.raises(ValueError, match=r"images have pixels in \[0, 3\]; the quantized model accepts .* never clipped"):
        vit_int.forward_int(q1, 3.0 * img)
    with pytest.raises(ValueError, match="input_amax must be finite and positive"):
        quantize.quantize_model(model, digits[1][:2], input_amax=0.0)
