"""Pruned programs (issue 12, software side): the compiler emits every selector as GEMM /
LAYERNORM / MEAN descriptors plus a SELECT; the reference interpreter runs them bit-exactly
against golden ``forward_int(prune=True)`` (logits, every dump stage, keep masks, token counts);
the TRACE region decodes to the golden token counts and masks; the cycle model prices every
descriptor at the live token count, and its token-selector unit cost matches the RTL."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from heatvit import isa
from heatvit.compiler import compile_model, cycles, interpret, models, quantize_for, read_image
from heatvit.compiler import trace as T
from heatvit.config import DEFAULT
from heatvit.errors import ErrorCode
from heatvit.isa import Buf, Descriptor, DescriptorError, Op

SEED = int(os.environ.get("HEATVIT_SEED", "12"))


def digits_images(count: int, start: int = 0) -> np.ndarray:
    from heatvit.golden.vit import data
    x = data.load_splits()["test_x"][start:start + count]
    return data.upscale(x, models.load_model().cfg.image_size)


@pytest.fixture(scope="module")
def digits():
    qm = quantize_for(models.load_model(), DEFAULT)
    img = read_image(compile_model(qm, DEFAULT, prune=True), DEFAULT)
    return qm, img


def run_checked(qm, img, images, acc=DEFAULT) -> list[T.Trace]:
    """Run every image through the interpreter and check it against the golden pruned forward:
    logits, every golden dump stage, the decoded trace.  Returns the traces."""
    logits, dumps = models.pruned_dumps(qm, images)
    traces = []
    for i in range(len(images)):
        patches = models.patches(qm, images[i:i + 1])[0]
        r = interpret.run(img, acc, interpret.pack_input(img, patches), trace=True)
        np.testing.assert_array_equal(interpret.unpack_output(img, r.output), logits[i], err_msg=f"image {i} logits")
        st = interpret.stages(img, r.steps)
        missing = sorted(set(dumps[i]) - set(st))
        assert not missing, f"image {i}: stages not reproduced: {missing}"
        for k, v in dumps[i].items():
            np.testing.assert_array_equal(np.asarray(st[k]), np.asarray(v), err_msg=f"image {i} stage {k}")
        tr = T.read(img, r.trace)
        depth = qm.cfg.depth
        assert tr.tokens_per_block == [dumps[i][f"blocks.{b}.in"].shape[0] for b in range(depth)]
        for s in range(len(qm.plan.blocks)):
            np.testing.assert_array_equal(tr.keep[s], dumps[i][f"selectors.{s}.keep"])
            np.testing.assert_array_equal(tr.kept_patches[s], dumps[i][f"selectors.{s}.kept_patches"])
        traces.append(tr)
    return traces


# -- ISA ------------------------------------------------------------------------------------------

def test_trace_record_round_trip_and_bounds():
    rng = np.random.default_rng(SEED)
    for m in (1, 2, 7, 8, 9, 65, 197, 4096):
        n_in = int(rng.integers(1, m + 1))
        keep = rng.random(n_in) < 0.5
        blob = isa.pack_trace_record(n_in, 3, int(keep.sum()), 2, keep, m)
        assert len(blob) == isa.trace_record_bytes(m) and len(blob) % isa.DDR_ALIGN == 0
        r = isa.unpack_trace_record(blob)
        assert (r["n_in"], r["n_out"], r["n_kept"], r["n_tail"]) == (n_in, 3, int(keep.sum()), 2)
        assert r["keep"] == list(keep)
    with pytest.raises(ValueError, match="too short for 200 tokens"):
        isa.unpack_trace_record(isa.pack_trace_record(200, 1, 1, 0, [True], 8)[:16])


def select(**kw) -> Descriptor:
    base = dict(src=Buf.X0, dst=Buf.X0, aux=Buf.QKV, aux_col=0, a_col=64, heads=3, m=65, n=48, threshold=128,
                addr=0)
    return Descriptor(Op.SELECT, **{**base, **kw})


@pytest.mark.parametrize("d,code,match", [
    (select(heads=0), ErrorCode.CTRL_BAD_FIELD, r"heads = 0"),
    (select(m=300), ErrorCode.CTRL_BAD_SHAPE, r"m = 300 exceeds toksel.max_tokens = 256"),
    (select(n=40), ErrorCode.CTRL_BAD_SHAPE, r"n = 40 is not a multiple of toksel.lanes = 16"),
    (select(threshold=256), ErrorCode.CTRL_BAD_FIELD, r"threshold = 256 exceeds the largest score 255"),
    (select(a_col=8), ErrorCode.CTRL_BAD_ADDRESS, r"head weights column 8 is not a multiple of 16"),
    (select(aux_col=3 * 768 - 16, heads=3), ErrorCode.CTRL_BAD_SHAPE, r"keep probabilities columns"),
    (select(addr=32), ErrorCode.CTRL_BAD_ADDRESS, r"addr = 0x20 is not a multiple of 64"),
    (select(dst=11), ErrorCode.CTRL_BAD_BUFFER, r"dst = 11 is not a token buffer"),
    (Descriptor(Op.MEAN, src=Buf.H, dst=Buf.H, m=4, k=16, n=16), ErrorCode.CTRL_BAD_SHAPE, r"k = 16 .* must be < n = 16"),
])
def test_selector_descriptor_checks(d, code, match):
    with pytest.raises(DescriptorError, match=match) as e:
        isa.check(d, DEFAULT)
    assert e.value.code == code


def test_selector_fields_do_not_move_dense_fields():
    """accelsim decodes the 1.0 fields: every field a dense opcode uses keeps its position."""
    dense = {"opcode": (0, 0, 8), "epilogue": (0, 8, 4), "m_live": (0, 12, 1), "k_live": (0, 13, 1),
             "n_live": (0, 14, 1), "wsrc": (0, 16, 2), "region": (0, 18, 2), "src": (1, 0, 4), "dst": (1, 4, 4),
             "aux": (1, 8, 4), "add_shift": (1, 16, 6), "src_row": (2, 0, 16), "dst_row": (2, 16, 16),
             "src_col": (3, 0, 16), "dst_col": (3, 16, 16), "aux_row": (4, 0, 16), "aux_col": (4, 16, 16),
             "m": (5, 0, 16), "stride": (5, 16, 16), "k": (6, 0, 16), "n": (6, 16, 16), "addr": (7, 0, 32)}
    for name, pos in dense.items():
        f = isa.FIELD[name]
        assert (f.word, f.lsb, f.width) == pos, name
    assert [int(o) for o in (Op.BEGIN, Op.GEMM, Op.ADD, Op.LAYERNORM, Op.COPY, Op.LOAD, Op.STORE, Op.END)] == \
        [1, 2, 3, 4, 5, 6, 7, 15]


# -- digits ---------------------------------------------------------------------------------------

def test_digits_program_shape(digits):
    qm, img = digits
    ops = [Op(d.opcode) for d in img.program]
    assert ops.count(Op.SELECT) == len(qm.plan.blocks) == len(img.trace["stages"])
    assert ops.count(Op.MEAN) == len(qm.plan.blocks) * qm.cfg.heads
    assert img.memory_map["model"]["dense"] is False
    # every token-wise descriptor after the first SELECT follows N_live
    first = ops.index(Op.SELECT)
    for d in img.program[first:]:
        if d.opcode in (Op.GEMM, Op.ADD, Op.LAYERNORM, Op.MEAN, Op.SELECT) and d.name != "head":
            assert d.m_live, d.name
    # the SELECT carries what the control unit needs
    for st, i in zip(img.trace["stages"], [i for i, o in enumerate(ops) if o == Op.SELECT]):
        d = img.program[i]
        assert st["desc"] == i and d.threshold == qm.toksel.threshold_q and d.n == qm.cfg.dim
        assert d.heads == qm.cfg.heads and d.m == qm.cfg.num_tokens and d.src == d.dst
    # the dense build of the same model has no selector descriptors
    dense = read_image(compile_model(qm, DEFAULT), DEFAULT)
    assert not any(d.opcode in (Op.SELECT, Op.MEAN) for d in dense.program)


def test_cli_prune_is_deterministic(digits, tmp_path):
    qm, img = digits
    import subprocess
    import sys
    out = tmp_path / "p.hvim"
    res = subprocess.run([sys.executable, "-c", "import sys; from heatvit.cli import main; sys.exit(main())",
                          "compile", "--prune", "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONHASHSEED": "7"})
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == img.blob == compile_model(qm, DEFAULT, prune=True)


def test_digits_pruned_bit_exact(digits):
    qm, img = digits
    count = 48 if os.environ.get("HEATVIT_FULL") else 12
    traces = run_checked(qm, img, digits_images(count))
    # the selectors prune: fewer tokens after every stage on average
    tok = np.array([t.tokens_per_block for t in traces])
    assert tok[:, -1].mean() < qm.cfg.num_tokens


def test_digits_debug_build_pruned(digits):
    """A pruned debug build stores every result, SELECT and MEAN included, at the live counts."""
    qm, _ = digits
    img = read_image(compile_model(qm, DEFAULT, prune=True, debug=True), DEFAULT)
    x = digits_images(1, start=3)
    r = interpret.run(img, DEFAULT, interpret.pack_input(img, models.patches(qm, x)[0]), trace=True)
    steps = interpret.debug_steps(img, r.debug, trace=T.read(img, r.trace))
    want = {s.index: s for s in r.steps}
    assert steps and all(s.index in want for s in steps)
    for s in steps:
        ref = want[s.index].out
        if s.op == "GEMM" and img.program[s.index].epilogue in isa.UNSIGNED_EPILOGUES:
            ref = (ref + 128) % 256 - 128                 # the buffer holds the uint8 byte
        np.testing.assert_array_equal(s.out, ref, err_msg=s.name)


# -- other models and bad input -------------------------------------------------------------------

def tiny_pruned(seed: int, **shape):
    cfg = models.ViTConfig(**{**dict(image_size=32, patch_size=8, in_chans=3, dim=64, depth=4, heads=2,
                                     mlp_ratio=2.0, num_classes=10), **shape})
    depth = cfg.depth
    plan = models.PruningPlan(tuple(range(1, depth))[:3], (0.7, 0.49, 0.343)[:min(3, depth - 1)])
    model = models.random_model(cfg, seed, plan=plan)
    rng = np.random.default_rng(seed)
    calib = rng.random((4, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32)
    return model, quantize_for(model, DEFAULT, calib), rng


@pytest.mark.parametrize("seed,shape", [
    (1, {}),
    (2, dict(dim=96, heads=3, depth=3)),
    (3, dict(dim=128, heads=4, depth=5, patch_size=4)),
    (4, dict(dim=64, heads=1, depth=2)),
])
def test_random_timm_models_with_random_selectors(seed, shape):
    _, qm, rng = tiny_pruned(SEED * 100 + seed, **shape)
    cfg = qm.cfg
    # a score combiner as wide as the model's heads (DEFAULT's takes 3: more is refused, see
    # test_compiler_refuses_selectors_that_do_not_fit)
    acc = DEFAULT if cfg.heads <= DEFAULT.toksel.heads else dataclasses.replace(
        DEFAULT, toksel=dataclasses.replace(DEFAULT.toksel, dim=4 * cfg.heads * DEFAULT.toksel.lanes, heads=cfg.heads))
    images = rng.random((3, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32)
    # thresholds around the score distribution so that some stages prune and some do not
    for thr in (0.3, 0.5, 0.7):
        q = models.with_threshold(qm, thr)
        img = read_image(compile_model(q, acc, prune=True), acc)
        run_checked(q, img, images, acc)


def test_threshold_keeps_none_and_all():
    _, qm, rng = tiny_pruned(SEED + 7)
    cfg = qm.cfg
    images = rng.random((2, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32)
    none = models.with_threshold(qm, 0.999)                      # threshold_q = 255: no score exceeds it
    img = read_image(compile_model(none, DEFAULT, prune=True), DEFAULT)
    for tr in run_checked(none, img, images):
        # the class token and the first stage's package token remain; later stages have nothing
        # left to prune (both are always kept) and append no package token
        assert tr.tokens_per_block == [cfg.num_tokens] + [2] * len(qm.plan.blocks)
        assert tr.keep[0].sum() == 1 and all(k.all() for k in tr.keep[1:])
        assert all(len(p) == 0 for p in tr.kept_patches)
    every = models.with_threshold(qm, 1e-3)                      # threshold_q = 0
    img = read_image(compile_model(every, DEFAULT, prune=True), DEFAULT)
    for tr in run_checked(every, img, images):
        assert all(k.all() for k in tr.keep) and tr.tokens_per_block == [cfg.num_tokens] * cfg.depth


def test_every_score_equal():
    """No position embedding and a constant image: every patch token, hence every score, is equal;
    the stage keeps all patches or none, bit-exact either way."""
    cfg = models.ViTConfig(image_size=32, patch_size=8, in_chans=3, dim=64, depth=3, heads=2, mlp_ratio=2.0,
                           num_classes=10)
    plan = models.PruningPlan((1, 2), (0.7, 0.49))
    model = models.random_model(cfg, SEED, plan=plan)
    model.weights["pos_embed"][:] = 0
    image = np.full((1, 3, 32, 32), 0.4, dtype=np.float32)
    qm = quantize_for(model, DEFAULT, np.concatenate([image, np.full_like(image, 0.6)]))
    from heatvit.golden.token_selector.int_selector import selector_scores_int
    from heatvit.golden.vit import int_forward
    dumps: list = []
    int_forward.forward_int(qm, image, prune=False, dumps=dumps)
    scores = selector_scores_int(qm.selectors[0], dumps[0]["blocks.0.out"])
    assert len(set(scores[1:].tolist())) == 1, "patch scores differ"
    for thr in (scores[1] / 256 - 1e-3, scores[1] / 256 + 2e-3):   # just below / above the common score
        q = models.with_threshold(qm, float(np.clip(thr, 1e-3, 0.999)))
        img = read_image(compile_model(q, DEFAULT, prune=True), DEFAULT)
        tr = run_checked(q, img, image)[0]
        assert tr.keep[0][1:].all() or not tr.keep[0][1:].any()


def test_interpreter_rejects_bad_tail_and_short_trace(digits):
    qm, img = digits
    x = digits_images(1)
    r = interpret.run(img, DEFAULT, interpret.pack_input(img, models.patches(qm, x)[0]))
    with pytest.raises(ValueError, match=f"trace region must be {img.trace['bytes']} bytes"):
        T.read(img, r.trace[:-1])
    bad = bytearray(r.trace)
    bad[0] ^= 1                                           # n_in of stage 0 no longer the token count
    with pytest.raises(ValueError, match="trace record of selector stage 0 is inconsistent"):
        T.read(img, bytes(bad))
    # a SELECT whose always-kept tail is not below its token count: the unit's TOKSEL_BAD_TAIL
    mach = interpret.Machine(img, DEFAULT)
    mach.n_live, mach.n_tail = 3, 3
    d = img.program[img.trace["stages"][0]["desc"]]
    with pytest.raises(DescriptorError) as e:
        mach.step(0, d, {"TRACE": bytearray(img.trace["bytes"])})
    assert e.value.code == ErrorCode.TOKSEL_BAD_TAIL


def test_compiler_refuses_selectors_that_do_not_fit(digits):
    qm, _ = digits
    import dataclasses
    q = dataclasses.replace(qm, toksel=dataclasses.replace(qm.toksel, score_bits=10))
    with pytest.raises(ValueError, match="score_bits = 10 but toksel.score_bits = 8"):
        compile_model(q, DEFAULT, prune=True)
    few = dataclasses.replace(DEFAULT, toksel=dataclasses.replace(DEFAULT.toksel, heads=qm.cfg.heads - 1))
    with pytest.raises(ValueError, match=rf"heads = {qm.cfg.heads} exceeds toksel.heads = {qm.cfg.heads - 1}"):
        compile_model(qm, few, prune=True)


# -- cycles ---------------------------------------------------------------------------------------

def test_cycles_follow_the_trace(digits):
    qm, img = digits
    x = digits_images(4)
    dense = cycles.estimate(img.program, DEFAULT)                 # every stage keeps all
    for i in range(len(x)):
        r = interpret.run(img, DEFAULT, interpret.pack_input(img, models.patches(qm, x[i:i + 1])[0]), trace=True)
        tr = T.read(img, r.trace)
        est = cycles.image_cycles(img, DEFAULT, tr)
        # every descriptor priced at the live count the interpreter saw
        by_index = {s.index: s for s in r.steps}
        for e in est:
            s = by_index[e.index]
            if e.op == "SELECT":
                assert e.m == tr.records[[st["desc"] for st in img.trace["stages"]].index(e.index)]["n_in"]
            else:
                assert (e.m, e.k, e.n) == (s.m, s.k, s.n), e.name
        assert sum(e.engine for e in est) < sum(e.engine for e in dense)
        frac = cycles.selector_fraction(est)
        assert 0 < frac < 0.5


def test_toksel_cycle_formula_matches_rtl(tmp_path):
    """The unit's measured cycles (cocotb ``measure`` on Icarus, no stalls) against
    :func:`cycles.toksel_cycles` on digits-width and DeiT-T-width tokens."""
    pytest.importorskip("cocotb")
    from heatvit.rtl.toksel import TokenSelectorUnit
    from heatvit.sim import runner
    from heatvit.toksel_config import TokSelConfig
    stages = [(65, 0), (65, 1), (65, 0.5), (30, 0.7), (7, 0.3), (1, 1), (2, 0)]
    cfg = TokSelConfig(max_tokens=256, dim=48, heads=3, lanes=16)
    result = tmp_path / "result.json"
    env = runner.config_env(cfg)
    env["HEATVIT_STAGES"] = json.dumps([{"n": n, "keep": k} for n, k in stages])
    env["HEATVIT_RESULT"] = str(result)
    runner.run_cocotb(verilog=runner.export_verilog(TokenSelectorUnit(cfg), "toksel"), toplevel="toksel",
                      test_module="toksel_tb", test_dir=Path(runner.__file__).parent, sim="icarus", env=env,
                      tag="compiler-prune-48")
    for r in json.loads(result.read_text()):
        n, keep, n_out = r["n"], r["keep"], r["n_out"]
        if keep == 1:
            pruned = 0
        elif keep == 0:
            pruned = n - 1
        else:
            assert n_out < n, "ambiguous stage (one pruned token or none)"
            pruned = n - (n_out - 1)
        assert cycles.toksel_cycles(cfg, n, cfg.dim, pruned) == r["cycles"], r


@pytest.mark.slow
def test_deit_tiny_pruned_keep_ratios():
    """DeiT-T shape, random weights, random-init selectors tuned to keep about 0.7 / 0.49 / 0.34 of
    the patches on the image: bit-exact, and the cycle model prices the pruned run below dense."""
    cfg = models.vit_config("deit_tiny")
    plan = models.PruningPlan((3, 6, 9), (0.7, 0.49, 0.343))
    model = models.random_model(cfg, SEED, plan=plan)
    rng = np.random.default_rng(SEED)
    qm = quantize_for(model, DEFAULT, rng.random((4, 3, 224, 224)).astype(np.float32))
    image = rng.random((1, 3, 224, 224)).astype(np.float32)
    qm = models.set_keep_ratios(qm, image[0], plan.keep_ratios)
    img = read_image(compile_model(qm, DEFAULT, prune=True), DEFAULT)
    tr = run_checked(qm, img, image)[0]
    ratios = [len(p) / cfg.num_patches for p in tr.kept_patches]
    np.testing.assert_allclose(ratios, plan.keep_ratios, atol=0.02)
    est = cycles.image_cycles(img, DEFAULT, tr)
    dense = cycles.estimate(read_image(compile_model(qm, DEFAULT), DEFAULT).program, DEFAULT)
    assert sum(e.engine for e in est) < 0.7 * sum(e.engine for e in dense)
    assert 0 < cycles.selector_fraction(est, "engine") < 0.03
