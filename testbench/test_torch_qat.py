"""Fake quantization of the torch twin (``heatvit.golden.vit.torch_ref.FakeQuant``, the
quantization-aware phase of ``train/train_digits.py``): its rounding is the golden host
conversion's, its weights the golden per-channel int8 weights, off it is the float model, and on
it tracks the golden integer forward of the committed digits model stage by stage (the integer
nonlinear units and bias rounding are not modelled, so closely, not exactly).  Needs torch."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from heatvit.golden.linear import quantize_float, quantize_linear  # noqa: E402
from heatvit.golden.vit import data as vit_data, model as model_io  # noqa: E402
from heatvit.golden.vit.int_forward import forward_int  # noqa: E402
from heatvit.golden.vit.quantize import quantize_model  # noqa: E402
from heatvit.golden.vit.torch_ref import (FakeQuant, VisionTransformer, fake_quant,  # noqa: E402
                                          set_fake_quant)


def test_fake_quant_rounds_like_the_host_conversion():
    rng = np.random.default_rng(0)
    s = 0.037
    x = np.concatenate([rng.normal(0, 3, 500), (np.arange(-140, 141) + 0.5) * s, [0.0, 200.0, -200.0]])
    for bits in (8, 16):
        got = fake_quant(torch.as_tensor(x, dtype=torch.float64), s, bits).numpy()
        assert np.allclose(got, quantize_float(x, s, bits) * s, rtol=0, atol=1e-12)


def test_straight_through_gradient():
    x = torch.linspace(-3, 3, 50, requires_grad=True)
    fake_quant(x, 0.1).sum().backward()
    assert torch.equal(x.grad, torch.ones(50))


def test_weights_are_the_golden_int8_weights():
    w = np.random.default_rng(1).normal(0, 0.2, (24, 40))
    w[3] = 0                                           # an all-zero (pruned) row stays 0
    ql = quantize_linear(w, None, 1.0, 1.0)
    got = FakeQuant.weight(torch.as_tensor(w)).numpy()
    assert np.allclose(got, (ql.w.T * ql.s_w[:, None]), rtol=0, atol=1e-12)
    assert not got[3].any()


@pytest.fixture(scope="module")
def committed():
    model = model_io.load_npz()
    sp = vit_data.load_splits()
    calib = vit_data.upscale(sp["calib_x"], model.cfg.image_size)
    x = vit_data.upscale(sp["test_x"][:24], model.cfg.image_size)
    bb = VisionTransformer(model.cfg)
    bb.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in model.weights.items()})
    return model, quantize_model(model, calib), bb.eval(), x


def test_off_is_the_float_model(committed):
    model, qm, bb, x = committed
    xt = torch.as_tensor(x)
    with torch.no_grad():
        ref = bb(xt)
        set_fake_quant(bb, FakeQuant(qm.scales))
        fq = bb(xt)
        set_fake_quant(bb, None)
        assert torch.equal(bb(xt), ref)
    assert not torch.equal(fq, ref)


def test_tracks_the_golden_integer_forward(committed):
    """The fake-quantized logits are the integer model's within a few of its LSBs (closer than the
    float model's) and pick its class on nearly every image (a near tie may differ: measured 22 of
    24 at seed-free fixed inputs)."""
    model, qm, bb, x = committed
    want = forward_int(qm, x).astype(np.float64) * qm.scales["logits"]
    with torch.no_grad():
        flt = bb(torch.as_tensor(x)).numpy().astype(np.float64)
    set_fake_quant(bb, FakeQuant(qm.scales))
    try:
        with torch.no_grad():
            got = bb(torch.as_tensor(x)).numpy().astype(np.float64)
    finally:
        set_fake_quant(bb, None)
    lsb = qm.scales["logits"]
    err = np.abs(got - want)
    assert np.median(err) <= 3 * lsb, np.median(err) / lsb
    assert err.mean() < np.abs(flt - want).mean()
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.9
    # the fake-quantized values sit on the integer grid of every stage
    assert np.allclose(got / lsb, np.round(got / lsb), atol=1e-3)
