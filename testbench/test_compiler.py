"""The compiler and the DDR model image: determinism, layout, the validating reader on every kind
of damage, and models that do not fit.  NumPy only (no simulation)."""

import os
import struct
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from heatvit import compiler, isa
from heatvit.accel_config import BufferConfig
from heatvit.compiler import FitError, ImageError, image, interpret, models
from heatvit.config import DEFAULT, AcceleratorConfig, GemmConfig
from heatvit.presets import PRESETS


def cli(*args, cwd, env=None):
    """The installed ``heatvit`` command, run outside the checkout (which would shadow the package)."""
    return subprocess.run([sys.executable, "-c", "import sys; from heatvit.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def digits():
    model = models.load_model()
    qm = compiler.quantize_for(model, DEFAULT)
    return model, qm, compiler.compile_model(qm, DEFAULT)


def test_image_is_deterministic(digits, tmp_path):
    model, qm, blob = digits
    assert compiler.compile_model(qm, DEFAULT) == blob
    assert compiler.compile_model(model, DEFAULT) == blob           # quantized inside, same calibration
    # another process (another hash seed), through the CLI
    out = tmp_path / "digits.hvim"
    res = cli("compile", "--out", str(out), cwd=tmp_path, env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == blob
    assert "descriptors" in res.stdout and DEFAULT.digest() in res.stdout


def test_image_layout(digits):
    _, qm, blob = digits
    img = compiler.read_image(blob, DEFAULT)
    h, mm = img.header, img.memory_map
    assert h["magic"] == image.MAGIC and h["digest"] == DEFAULT.digest() and h["total_bytes"] == len(blob)
    prog = img.program
    assert prog[0].opcode == isa.Op.BEGIN and prog[-1].opcode == isa.Op.END and h["program_count"] == len(prog)
    assert prog[0].m == qm.cfg.num_tokens
    isa.check_program(prog, DEFAULT)
    data_off, data_len = mm["sections"]["data"]
    spans = sorted((b["offset"], b["offset"] + b["bytes"]) for b in mm["blocks"])
    assert all(a % isa.DDR_ALIGN == 0 for a, _ in spans)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:])), "data blocks overlap"
    assert spans[0][0] >= data_off and spans[-1][1] <= data_off + data_len
    # every MODEL-region reference lands inside the data section
    for d in prog:
        if d.opcode in (isa.Op.GEMM, isa.Op.LAYERNORM):
            end = d.addr + isa.param_block_bytes(DEFAULT, d)
            assert data_off <= d.addr and end <= data_off + align_up(data_len), d.name
    # the packed weights in the image are the model's
    qkv = next(d for d in prog if d.name == "blocks.0.attn.qkv")
    off, size = isa.param_block(DEFAULT, qkv)["weights"]
    w = interpret.unpack_weights(DEFAULT.gemm, blob[qkv.addr + off:qkv.addr + off + size], qkv.k, qkv.n)
    assert np.array_equal(w, qm.blocks[0].qkv.w)
    assert [e["name"] for e in mm["descriptors"]] == [d.name for d in prog]


def align_up(n):
    return -(-n // isa.DDR_ALIGN) * isa.DDR_ALIGN


def _patch_header(blob, field, value, fix_crc=True):
    fmt = image._HEADER_FMT
    names = [n for n, _, _ in image.HEADER_FIELDS]
    vals = list(struct.unpack_from(fmt, blob, 0))
    vals[names.index(field)] = value
    out = bytearray(blob)
    struct.pack_into(fmt, out, 0, *vals)
    return bytes(out)


def test_reader_rejects_every_defect(digits):
    _, _, blob = digits
    small = PRESETS["small"]
    cases = [
        (blob[:40], r"truncated: 40 bytes, shorter than the 64-byte header"),
        (blob[:-1], rf"truncated: the header says {len(blob)} bytes, got {len(blob) - 1}"),
        (blob[:len(blob) // 2], r"truncated"),
        (blob + b"\0", r"trailing bytes"),
        (b"XXXX" + blob[4:], r"not a heatvit model image: magic b'XXXX'"),
        (_patch_header(blob, "format", 2), r"format version 2 is not supported; this reader reads version 1"),
        (_patch_header(blob, "isa_version", 2 << 16), r"ISA version 2.0 is not supported"),
        (_patch_header(blob, "isa_version", 1 << 16 | 9), r"ISA version 1.9 is not supported"),
        (blob[:5000] + bytes([blob[5000] ^ 1]) + blob[5001:], r"damaged: crc32"),
        (blob[:-3] + b"]]]", r"damaged: crc32"),
    ]
    for bad, match in cases:
        with pytest.raises(ImageError, match=match):
            compiler.read_image(bad, DEFAULT)
    with pytest.raises(ImageError, match=rf"compiled for config {DEFAULT.digest()}, not for this accelerator's {small.digest()}"):
        compiler.read_image(blob, small)
    compiler.read_image(blob)            # no config given: structure only


def test_reader_rejects_bad_program(digits):
    _, _, blob = digits
    hdr = compiler.read_image(blob).header
    po = hdr["program_offset"]

    def with_word(word_index, value):
        out = bytearray(blob)
        struct.pack_into("<I", out, po + 4 * word_index, value)
        return _recrc(bytes(out))

    with pytest.raises(ImageError, match=r"opcode 0x00 is not an Op"):
        compiler.read_image(with_word(isa.DESC_WORDS * 3, 0), DEFAULT)
    # descriptor 1 (the patch LOAD) with a destination row beyond its buffer
    d1 = compiler.read_image(blob).program[1]
    words = isa.encode(d1.with_(dst_row=190))
    out = bytearray(blob)
    struct.pack_into(f"<{isa.DESC_WORDS}I", out, po + isa.DESC_BYTES, *words)
    with pytest.raises(ImageError, match=r"descriptor 1: LOAD patches: destination rows 190 \+ 64 exceed buffer H's 197"):
        compiler.read_image(_recrc(bytes(out)), DEFAULT)


def _recrc(blob):
    import zlib
    return _patch_header(blob, "crc32", zlib.crc32(blob[image.HEADER_BYTES:]))


def test_models_that_do_not_fit_are_refused(digits):
    model, _, _ = digits
    calib = models.calibration_images(model.cfg, 16)

    def compile_for(acc):
        return compiler.compile_model(compiler.quantize_for(model, acc, calib), acc)

    cases = [
        (replace(DEFAULT, buffers=BufferConfig(max_tokens=64)), r"model: tokens = 65 exceeds buffers.max_tokens = 64"),
        (replace(DEFAULT, buffers=BufferConfig(max_dim=32)), r"model: dim = 48 exceeds buffers.max_dim = 32"),
        (replace(DEFAULT, buffers=BufferConfig(max_hidden=64)), r"blocks.\*.mlp.fc1: hidden = 96 exceeds buffers.max_hidden = 64"),
        (AcceleratorConfig(gemm=GemmConfig(rows=32, cols=32)), r"blocks.\*.attn: head_dim = 16 is not a multiple of 32"),
        (AcceleratorConfig(gemm=GemmConfig(max_n=128, max_k=128)),
         r"blocks.0.attn.qkv: does not fit the config: GEMM blocks.0.attn.qkv: n = 144 exceeds gemm.max_n = 128"),
    ]
    for acc, match in cases:
        with pytest.raises(FitError, match=match):
            compile_for(acc)
    # quantized for one GEMM config, compiled for another
    qm = compiler.quantize_for(model, DEFAULT, calib)
    with pytest.raises(FitError, match="quantized for a different GemmConfig"):
        compiler.compile_model(qm, PRESETS["small"])
    # a float model whose requantization needs more multiplier bits than the config has
    narrow = AcceleratorConfig(gemm=GemmConfig(mult_bits=8))
    qm8 = compiler.quantize_for(model, narrow, calib)
    compiler.compile_model(qm8, narrow)      # fits when quantized for it
    qm8.blocks[2].fc2.mult[3] = 300
    with pytest.raises(FitError, match=r"blocks.2.mlp.fc2: requantization parameters do not fit the GEMM config"):
        compiler.compile_model(qm8, narrow)


def test_cli_errors(tmp_path):
    res = cli("compile", "--config", "nope", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert res.returncode == 2 and "neither a preset" in res.stderr
    res = cli("compile", "--model", str(tmp_path / "none.npz"), "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_doc_image_header_is_generated():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "isa.md").read_text()
    start = doc.index(image.GENERATED_BEGIN) + len(image.GENERATED_BEGIN)
    assert doc[start:doc.index(image.GENERATED_END)].strip() == image.markdown().strip()


def test_cli_timm_shapes(tmp_path):
    """A raw timm state dict (.npz) of a given shape, and random weights of a named shape."""
    cfg = models.ViTConfig(image_size=32, patch_size=8, in_chans=3, dim=32, depth=1, heads=2, mlp_ratio=2.0,
                           num_classes=5)
    model = models.random_model(cfg, 3)
    np.savez(tmp_path / "sd.npz", **model.weights)
    vit = cfg.to_json()
    res = cli("compile", "--vit", vit, "--model", str(tmp_path / "sd.npz"), "--calib", "4", "--out",
              str(tmp_path / "a.hvim"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    want = compiler.compile_model(model, DEFAULT, calib=models.calibration_images(cfg, 4, 0))
    assert (tmp_path / "a.hvim").read_bytes() == want
    res = cli("compile", "--vit", vit, "--random", "3", "--calib", "4", "--out", str(tmp_path / "b.hvim"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b.hvim").read_bytes() == want        # same seed, same weights
    for args, match in ((["--random", "1"], "--random needs --vit"),
                        (["--vit", "deit_tiny"], "--vit needs --model"),
                        (["--vit", "nope", "--random", "1"], "neither a name"),
                        (["--vit", vit, "--model", str(tmp_path / "x.bin")], "does not exist")):
        res = cli("compile", *args, "--out", str(tmp_path / "c.hvim"), cwd=tmp_path)
        assert res.returncode == 2 and match in res.stderr, res.stderr
    sd = dict(model.weights)
    sd.pop("head.bias")
    np.savez(tmp_path / "bad.npz", **sd)
    res = cli("compile", "--vit", vit, "--model", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "c.hvim"), cwd=tmp_path)
    assert res.returncode == 2 and "missing key(s) 'head.bias'" in res.stderr, res.stderr
