"""The reference interpreter against the golden dense integer forward: logits and every dump stage
bit-exact, on the digits model over many test images, on the small preset (row-chunked GEMMs),
on random timm-shaped models (3 channels, other widths and class counts) and on a DeiT-T-shaped
block at 224 px; the live token count; bad inputs and bad descriptors."""

import os
from dataclasses import replace

import numpy as np
import pytest

from heatvit import compiler, isa
from heatvit.compiler import interpret, models
from heatvit.config import DEFAULT
from heatvit.errors import ErrorCode
from heatvit.golden.vit import data as vit_data
from heatvit.presets import PRESETS

from compiler_checks import check_bit_exact

SEED = int(os.environ.get("HEATVIT_SEED", "2026"))


def digits_images(n, start=0):
    sp = vit_data.load_splits()
    return vit_data.upscale(sp["test_x"][start:start + n])


@pytest.fixture(scope="module")
def digits_qm():
    return compiler.quantize_for(models.load_model(), DEFAULT)


def test_digits_bit_exact_many_images(digits_qm):
    images = digits_images(24)
    _, logits = check_bit_exact(digits_qm, DEFAULT, images)
    labels = vit_data.load_splits()["test_y"][:24]
    assert np.mean(np.argmax(logits, 1) == labels) > 0.8      # the image is a working classifier


def test_digits_small_preset_row_chunks():
    acc = PRESETS["small"]                      # 4 x 4 array, max_m = 64 < 65 tokens: every GEMM in 2 chunks
    qm = compiler.quantize_for(models.load_model(), acc)
    img, _ = check_bit_exact(qm, acc, digits_images(3, start=100))
    qkv = [d for d in img.program if d.name == "blocks.0.attn.qkv"]
    assert [(d.src_row, d.m) for d in qkv] == [(0, 64), (64, 1)]


@pytest.mark.parametrize("shape", [
    dict(image_size=32, patch_size=8, in_chans=3, dim=64, depth=2, heads=4, mlp_ratio=4.0, num_classes=37),
    dict(image_size=48, patch_size=4, in_chans=3, dim=96, depth=1, heads=2, mlp_ratio=3.0, num_classes=1000),
])
def test_random_timm_shaped_models(shape):
    cfg = models.ViTConfig(**shape)
    model = models.random_model(cfg, SEED, std=0.2)
    rng = np.random.default_rng(SEED + 1)
    qm = compiler.quantize_for(model, DEFAULT, rng.random((8, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32))
    check_bit_exact(qm, DEFAULT, rng.random((2, cfg.in_chans, cfg.image_size, cfg.image_size)).astype(np.float32))


def test_deit_tiny_block_bit_exact():
    """DeiT-T shapes (224 px, 16 px patches: 197 tokens, dim 192, 3 heads, hidden 768, 1000
    classes), one block of random weights: the patch embedding (K = 768) and fc2 run in chunks."""
    cfg = replace(models.vit_config("deit_tiny"), depth=1)
    model = models.random_model(cfg, SEED, std=0.05)
    rng = np.random.default_rng(SEED + 2)
    qm = compiler.quantize_for(model, DEFAULT, rng.random((2, 3, 224, 224)).astype(np.float32))
    img, _ = check_bit_exact(qm, DEFAULT, rng.random((1, 3, 224, 224)).astype(np.float32))
    chunks = [d for d in img.program if d.name == "patch_embed"]
    assert len(chunks) == 3 and chunks[0].m == 85        # 4096 // ceil(768/16) = 85 rows per chunk
    assert img.program[0].m == 197


def with_live(img, tokens):
    prog = list(img.program)
    prog[0] = prog[0].with_(m=tokens)
    return replace(img, program=prog)


def test_live_token_count(digits_qm):
    """BEGIN's N_live < the model's tokens: the blocks and head run on the first N_live tokens,
    as golden does on those tokens (row chunks, q.k^T's N and attn.v's K all clipped)."""
    for acc in (DEFAULT, PRESETS["small"]):
        qm = digits_qm if acc is DEFAULT else compiler.quantize_for(models.load_model(), acc)
        img = compiler.read_image(compiler.compile_model(qm, acc), acc)
        image = digits_images(1, start=7)
        patches = interpret.pack_input(img, models.patches(qm, image)[0])
        for tokens in (1, 2, 17, 63, 64, 65):
            res = interpret.run(with_live(img, tokens), acc, patches, trace=True)
            want = models.forward_first_tokens(qm, image[0], tokens)
            assert np.array_equal(interpret.unpack_output(img, res.output), want), (acc.digest(), tokens)
            qk = next(s for s in res.steps if s.name == "blocks.0.attn.head0.qk")
            assert (qk.m, qk.k, qk.n) == (min(tokens, 64 if acc is PRESETS["small"] else 65), 16, tokens)


def test_bad_inputs_and_descriptors(digits_qm):
    img = compiler.read_image(compiler.compile_model(digits_qm, DEFAULT), DEFAULT)
    with pytest.raises(ValueError, match=r"input must be 1024 bytes"):
        interpret.run(img, DEFAULT, b"\0" * 10)
    with pytest.raises(ValueError, match=r"patches must have shape \(64, 16\), got \(64, 15\)"):
        interpret.pack_input(img, np.zeros((64, 15), dtype=np.int8))
    with pytest.raises(ValueError, match=r"patches must be int8 values"):
        interpret.pack_input(img, np.full((64, 16), 200))
    with pytest.raises(ValueError, match=r"patches must be int8 values"):
        interpret.pack_input(img, np.zeros((64, 16), dtype=np.float32))
    good = interpret.pack_input(img, np.zeros((64, 16), dtype=np.int8))
    with pytest.raises(isa.DescriptorError, match="initial N_live") as e:
        interpret.run(with_live(img, 0), DEFAULT, good)
    assert e.value.code == ErrorCode.CTRL_BAD_SHAPE
    # a descriptor the controller must refuse, found while running
    prog = list(img.program)
    i = next(j for j, d in enumerate(prog) if d.name == "blocks.1.mlp.fc1")
    prog[i] = prog[i].with_(dst_col=3072)
    with pytest.raises(isa.DescriptorError, match=r"descriptor \d+: GEMM blocks.1.mlp.fc1: destination columns "
                       r"3072 \+ 96 exceed buffer H's 3072 columns") as e:
        interpret.run(replace(img, program=prog), DEFAULT, good)
    assert e.value.code == ErrorCode.CTRL_BAD_SHAPE


def row_chunks_of(acc, m, k):
    from heatvit.golden.gemm import row_chunks
    return row_chunks(acc.gemm, m, k)


def test_cycle_estimate(digits_qm):
    from heatvit.compiler import cycles
    nl = DEFAULT.nonlinear
    # unit costs as docs/nonlinear.md measures them (4 lanes): softmax 197 scores, B = 50: one row
    # 3B + 32 = 182, then B = 50 per row; LayerNorm 768 channels, B = 192: 2B + 25 = 409, then 192
    assert cycles.softmax_cycles(nl, 1, 197) == 182 and cycles.softmax_cycles(nl, 3, 197) == 182 + 2 * 50
    assert cycles.layernorm_cycles(nl, 1, 768) == 409 and cycles.layernorm_cycles(nl, 2, 768) == 409 + 192
    # units taking alternate rows: 3 rows on 2 units cost the unit with 2 of them
    assert cycles.softmax_cycles(nl, 3, 197, units=2) == 182 + 50
    for qm, acc in ((digits_qm, DEFAULT),
                    (compiler.quantize_for(models.load_model(), PRESETS["small"]), PRESETS["small"])):
        img = compiler.read_image(compiler.compile_model(qm, acc), acc)
        est = cycles.estimate(img.program, acc)
        tot = cycles.summary(est, acc)
        # GEMM-only: the golden latency model's cycles of the same forward pass, chunk by chunk
        assert tot["engine"] == models.dense_gemm_cycles(qm.cfg, acc.gemm)
        assert tot["macs"] == sum(m * k * n for m, k, n in qm.cfg.gemm_shapes())
        assert tot["engine"] <= tot["overlapped"] <= tot["serial"]
        for e in est:
            assert e.overlapped <= e.serial
            if e.op == "GEMM":
                assert e.engine == acc.gemm.estimate_cycles(e.m, e.k, e.n)
        layers = cycles.by_layer(est)
        assert sum(r["serial"] for r in layers) == tot["serial"] and len({r["name"] for r in layers}) == len(layers)
        qkv = next(r for r in layers if r["name"] == "blocks.0.attn.qkv")
        assert (qkv["m"], qkv["k"], qkv["n"]) == (65, 48, 144)
        assert qkv["descriptors"] == len(row_chunks_of(acc, 65, 48))
        # fewer live tokens: fewer cycles, and descriptors past N_live drop out
        fewer = cycles.estimate(img.program, acc, n_live=20)
        assert cycles.summary(fewer, acc)["engine"] < tot["engine"]
        assert all(e.m <= 20 for e in fewer if e.name.startswith("blocks."))


def test_handwritten_program_copy_load_store():
    """COPY (the token gather the selector will use), LOAD/STORE regions and ``m_live`` on a
    program written by hand, through the image writer and reader."""
    from heatvit.compiler import image
    from heatvit.isa import Buf, Descriptor, Op, Region
    acc = DEFAULT
    rng = np.random.default_rng(SEED)
    x = rng.integers(-128, 128, (5, 32))
    body = [Descriptor(Op.LOAD, region=Region.INPUT, dst=Buf.X0, m=5, n=32, stride=32),
            Descriptor(Op.COPY, m_live=1, src=Buf.X0, src_row=1, dst=Buf.X1, dst_row=2, dst_col=16, m=3, n=32),
            Descriptor(Op.STORE, region=Region.OUTPUT, src=Buf.X1, m=5, n=64, stride=64)]
    io = {"input": {"rows": 5, "cols": 32, "stride": 32, "bytes": 160},
          "output": {"rows": 5, "cols": 64, "stride": 64, "bytes": 320}}
    for live in (5, 3, 1):
        prog = [isa.begin(acc, len(body) + 2, live), *body, Descriptor(Op.END)]
        img = compiler.read_image(image.build(acc, prog, b"", {"io": io}), acc)
        res = interpret.run(img, acc, x.astype(np.int8).tobytes(), trace=True)
        y = np.frombuffer(res.output, dtype=np.int8).reshape(5, 64).astype(np.int64)
        rows = max(0, min(3, live - 1))
        want = np.zeros((5, 64), dtype=np.int64)
        want[2:2 + rows, 16:48] = x[1:1 + rows]
        assert np.array_equal(y, want), live
        assert [s.op for s in res.steps] == ["BEGIN", "LOAD"] + (["COPY"] if rows else []) + ["STORE", "END"]
    # a LOAD past its region's end is refused
    bad = [isa.begin(acc, 3, 5), body[0].with_(addr=64), Descriptor(Op.END)]
    img = compiler.read_image(image.build(acc, bad, b"", {"io": io}), acc)
    with pytest.raises(isa.DescriptorError, match="passes the end of region INPUT") as e:
        interpret.run(img, acc, bytes(160))
    assert e.value.code == ErrorCode.CTRL_BAD_ADDRESS


def test_debug_build_exposes_every_stage(digits_qm):
    """``debug=True``: every layer's result is also stored to the DEBUG region, and the stages
    read back from those bytes alone equal golden's (all but the epilogue intermediates)."""
    acc = DEFAULT
    plain = compiler.read_image(compiler.compile_model(digits_qm, acc), acc)
    img = compiler.read_image(compiler.compile_model(digits_qm, acc, debug=True), acc)
    assert img.header["debug_bytes"] == img.debug["bytes"] > 0 and plain.header["debug_bytes"] == 0
    stores = [d for d in img.program if d.opcode == isa.Op.STORE and d.region == isa.Region.DEBUG]
    assert len(stores) == len(img.debug["stores"]) == sum(
        d.opcode in (isa.Op.GEMM, isa.Op.ADD, isa.Op.LAYERNORM, isa.Op.LOAD) for d in plain.program)
    images = digits_images(2, start=40)
    logits, dumps = models.dense_dumps(digits_qm, images)
    patches = models.patches(digits_qm, images)
    for b in range(2):
        res = interpret.run(img, acc, interpret.pack_input(img, patches[b]))
        assert np.array_equal(interpret.unpack_output(img, res.output), logits[b])
        st = interpret.stages(img, interpret.debug_steps(img, res.debug))
        internal = {k for k in dumps[b] if k.endswith("attn.scores") or k.endswith("mlp.fc1")}
        assert set(st) == set(dumps[b]) - internal
        for name, got in st.items():
            assert np.array_equal(got, dumps[b][name]), name
    # live tokens: the stores clip with their layers
    tokens = 20
    res = interpret.run(with_live(img, tokens), acc, interpret.pack_input(img, patches[0]))
    st = interpret.stages(img, interpret.debug_steps(img, res.debug, n_live=tokens))
    assert st["blocks.5.out"].shape == (tokens, 48) and st["blocks.0.attn.softmax"].shape == (3, tokens, tokens)
    assert np.array_equal(interpret.unpack_output(img, res.output), models.forward_first_tokens(digits_qm, images[0], tokens))
    with pytest.raises(ValueError, match="not a debug build"):
        interpret.debug_steps(plain, b"")
    with pytest.raises(ValueError, match=r"debug region must be \d+ bytes, got 3"):
        interpret.debug_steps(img, b"abc")


def test_corrupted_programs_fail_cleanly(digits_qm):
    """Random bit flips in the program (CRC recomputed, so the reader's checksum cannot catch
    them): every outcome is a clean refusal (ImageError at load, DescriptorError with a hardware
    code while running) or a completed run; never another exception."""
    import random
    import struct
    import zlib
    from heatvit.compiler import image
    acc = DEFAULT
    blob = compiler.compile_model(digits_qm, acc)
    img0 = compiler.read_image(blob, acc)
    inp = interpret.pack_input(img0, models.patches(digits_qm, digits_images(1))[0])
    po, n = img0.header["program_offset"], len(img0.program)
    rng = random.Random(SEED)
    seen = set()
    for _ in range(60):
        b = bytearray(blob)
        off = po + rng.randrange(1, n - 1) * isa.DESC_BYTES + 4 * rng.randrange(isa.DESC_WORDS)
        struct.pack_into("<I", b, off, struct.unpack_from("<I", b, off)[0] ^ 1 << rng.randrange(32))
        vals = list(struct.unpack_from(image._HEADER_FMT, b, 0))
        vals[-1] = zlib.crc32(bytes(b[image.HEADER_BYTES:]))
        struct.pack_into(image._HEADER_FMT, b, 0, *vals)
        try:
            interpret.run(compiler.read_image(bytes(b), acc), acc, inp)
            seen.add("ran")
        except compiler.ImageError:
            seen.add("refused at load")
        except isa.DescriptorError as e:
            assert e.code >= ErrorCode.CTRL_BAD_OPCODE or e.code <= ErrorCode.ACT_BUFFER_OVERFLOW
            seen.add("refused while running")
    assert seen == {"ran", "refused at load", "refused while running"}
