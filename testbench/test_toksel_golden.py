"""Golden token selector: decisions, compaction, package token, float and integer selectors."""

from fractions import Fraction

import numpy as np
import pytest

from heatvit.golden.linear import quantize_float
from heatvit.golden.token_selector import decision as D
from heatvit.golden.token_selector import float_selector as FS
from heatvit.golden.token_selector import int_selector as IS
from heatvit.toksel_config import TokSelConfig

CFG = TokSelConfig(max_tokens=64, dim=32, heads=2, lanes=8)


def _round_half_away(fr: Fraction) -> int:
    mag = abs(fr)
    q = int(mag + Fraction(1, 2))          # floor(|x| + 1/2)
    return -q if fr < 0 else q


def test_package_int_is_the_rounded_weighted_mean():
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = int(rng.integers(1, 12))
        x = rng.integers(-128, 128, size=(p, 5))
        w = rng.integers(0, 4 if rng.random() < 0.3 else 256, size=p)
        got = D.package_int(x, w)
        ww = w if w.sum() else np.ones_like(w)
        want = [_round_half_away(Fraction(int(ww @ x[:, c]), int(ww.sum()))) for c in range(5)]
        assert list(got) == want
        assert got.min() >= -128 and got.max() <= 127
    # a tie rounds away from zero: (1*1 + 1*2) / 2 = 1.5 -> 2 and -1.5 -> -2
    assert list(D.package_int([[1, -1], [2, -2]], [1, 1])) == [2, -2]


def test_decisions_class_tail_and_strict_threshold():
    thr = CFG.threshold_q
    q = np.array([0, thr, thr + 1, 0, thr + 5, 0])
    keep = D.decide_int(CFG, q, n_tail=2)
    assert list(keep) == [True, False, True, False, True, True]
    assert list(D.positions(keep)) == [0, -1, 1, -1, 2, 3]
    res = D.stage_int(CFG, np.arange(6 * 32).reshape(6, 32) % 100, q, 2)
    assert res.n_tokens == 5 and res.n_tail == 3 and res.n_kept == 4
    # keep-none: class token, tail, one package token
    res = D.stage_int(CFG, np.zeros((10, 32), dtype=np.int64), np.zeros(10, dtype=np.int64), 1)
    assert res.n_tokens == 3 and res.n_tail == 2
    # keep-all and a single token: nothing appended
    assert D.stage_int(CFG, np.ones((4, 32), dtype=np.int64), np.full(4, 255)).n_tokens == 4
    assert D.stage_int(CFG, np.ones((1, 32), dtype=np.int64), [0]).n_tokens == 1


def test_float_and_int_stages_agree_on_quantized_scores():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, size=(40, 32))
    q = rng.integers(0, 256, size=40)
    ri = D.stage_int(CFG, x, q, 1)
    rf = D.stage_float(x.astype(np.float32), q / 256.0, 1, 0.5)
    assert np.array_equal(ri.keep, rf.keep)
    assert np.abs(ri.tokens - rf.tokens).max() <= 0.5 + 1e-4


def test_gather_is_in_place_safe_and_chunk_major():
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = int(rng.integers(1, CFG.max_tokens + 1))
        res = D.stage_int(CFG, rng.integers(-128, 128, size=(n, 32)), rng.integers(0, 256, size=n), 0)
        n2, pos = res.n_tokens, D.positions(res.keep)
        for k in range(CFG.chunks):
            for i in np.flatnonzero(res.keep):
                assert k * n2 + pos[i] <= k * n + i
            assert k * n2 + n2 - 1 <= k * n + n - 1
        words = D.token_words(CFG, res.tokens)
        assert [a for a, _ in D.gather_writes(CFG, res)] == list(range(words.shape[0]))


def test_three_stages_shrink_and_carry_package_tokens():
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, size=(50, 32))
    tail = 0
    for s in range(3):
        res = D.stage_int(CFG, x, rng.integers(0, 256, size=x.shape[0]), tail)
        assert res.n_tail == tail + 1 and np.array_equal(res.tokens[res.n_kept - tail:res.n_kept], x[x.shape[0] - tail:])
        assert np.array_equal(res.tokens[0], x[0])
        x, tail = res.tokens, res.n_tail


@pytest.mark.parametrize("call,word", [
    (lambda: D.stage_int(CFG, np.zeros((65, 32), dtype=np.int64), np.zeros(65, dtype=np.int64)), "allowed \\[1, 64\\]"),
    (lambda: D.stage_int(CFG, np.zeros((4, 32), dtype=np.int64), np.zeros(4, dtype=np.int64), 4), "n_tail"),
    (lambda: D.stage_int(CFG, np.zeros((4, 16), dtype=np.int64), np.zeros(4, dtype=np.int64)), "dim"),
    (lambda: D.stage_int(CFG, np.zeros((4, 32), dtype=np.int64), np.full(4, 256)), "scores"),
    (lambda: D.stage_int(CFG, np.full((4, 32), 128), np.zeros(4, dtype=np.int64)), "x has values"),
    (lambda: D.stage_int(CFG, np.zeros((4, 32)), np.zeros(4, dtype=np.int64)), "integer array"),
    (lambda: D.stage_float(np.zeros((4, 8)), np.zeros(4), 0, 1.5), "threshold"),
    (lambda: FS.selector_scores_float({}, np.zeros((3, 32)), 2), "missing keys"),
])
def test_bad_input(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_param_shape_error_names_the_key():
    p = FS.random_params(np.random.default_rng(0), 32, 2)
    p["w.1"] = np.zeros((2, 8, 15), dtype=np.float32)
    with pytest.raises(ValueError, match="'w.1' has shape"):
        FS.selector_scores_float(p, np.zeros((3, 32)), 2)


def test_shared_mlp_equals_replicated_per_head_mlp():
    rng = np.random.default_rng(5)
    p = FS.random_params(rng, 48, 3, shared=True)
    rep = {k: (np.repeat(v, 3, axis=0) if k.startswith(("w.", "b.", "norm")) else v) for k, v in p.items()}
    x = rng.standard_normal((20, 48)).astype(np.float32)
    assert np.array_equal(FS.selector_scores_float(p, x, 3), FS.selector_scores_float(rep, x, 3))
    amax = FS.calibrate(p, [x], 3)
    xi = quantize_float(x, amax["x"] / 127)
    qs = IS.quantize_selector(p, amax, heads=3, s_x=amax["x"] / 127)
    qr = IS.quantize_selector(rep, amax, heads=3, s_x=amax["x"] / 127)
    assert len(qs.mlps) == 1 and len(qr.mlps) == 3
    assert np.array_equal(IS.selector_scores_int(qs, xi), IS.selector_scores_int(qr, xi))


def test_float_selector_matches_the_pytorch_training_selector():
    torch = pytest.importorskip("torch")
    vt = pytest.importorskip("heatvit.golden.vit.torch_ref")
    from heatvit.golden.vit.config import ViTConfig
    torch.set_num_threads(1)
    cfg = ViTConfig(image_size=32, patch_size=8, dim=32, depth=2, heads=2)
    sel = vt.TokenSelector(cfg)
    rng = np.random.default_rng(6)
    p = FS.random_params(rng, 32, 2)
    sel.load_state_dict({k: torch.as_tensor(v) for k, v in p.items()})
    x = rng.standard_normal((17, 32)).astype(np.float32)
    with torch.no_grad():
        _, ref = sel(torch.as_tensor(x)[None], torch.ones(1, 17))
    got = FS.selector_scores_float(p, x, 2, cfg.eps)
    assert np.abs(got - ref[0].numpy()).max() <= 1e-5


def test_int_selector_tracks_the_float_selector():
    rng = np.random.default_rng(7)
    d, h = 64, 4
    p = FS.random_params(rng, d, h)
    # a stronger keep/prune logit so scores spread over (0, 1)
    p["w.3"] = p["w.3"] * 6
    xs = [rng.standard_normal((n, d)).astype(np.float32) * 2 for n in (50, 30)]
    amax = FS.calibrate(p, xs, h)
    s_x = amax["x"] / 127
    q = IS.quantize_selector(p, amax, heads=h, s_x=s_x)
    cfg = TokSelConfig(max_tokens=64, dim=d, heads=h, lanes=16)
    for x in xs:
        xi = quantize_float(x, s_x)
        pf = FS.selector_scores_float(p, xi.astype(np.float32) * np.float32(s_x), h)[:, 0]
        qi = IS.selector_scores_int(q, xi)
        assert qi.min() >= 0 and qi.max() <= 255
        err = np.abs(qi / 256 - pf)
        assert err.mean() < 0.02 and err.max() < 0.08, (err.mean(), err.max())
        ri = IS.select_int(cfg, q, xi)
        rf = FS.select_float(p, xi.astype(np.float32) * np.float32(s_x), h)
        margin = np.abs(pf - 0.5) > 0.05
        assert np.array_equal(ri.keep[margin], rf.keep[margin])
        assert np.array_equal(ri.tokens, D.stage_int(cfg, xi, qi).tokens)


def test_combine_scores():
    t = np.array([[255, 0], [100, 200], [0, 0], [7, 9]])
    a = np.array([[255, 255], [0, 0], [10, 30], [0, 255]])
    q = IS.combine_scores(a, t, 8)
    assert list(q) == [128, 151, 0, 9]   # (255/2)*256/255, mean 150/255*256, 0, 9*256/255
