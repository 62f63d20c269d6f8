"""The instruction set (heatvit.isa): field layout, encode/decode, checks, the token-buffer config
section and the generated tables of docs/isa.md.  No simulation."""

import random
from pathlib import Path

import pytest

from heatvit import isa
from heatvit.accel_config import BufferConfig
from heatvit.config import DEFAULT, AcceleratorConfig, GemmConfig
from heatvit.errors import ErrorCode
from heatvit.isa import Buf, Descriptor, DescriptorError, Epilogue, Op, WSrc
from heatvit.presets import PRESETS

DOC = Path(__file__).resolve().parents[1] / "docs" / "isa.md"


def test_doc_tables_are_generated():
    doc = DOC.read_text()
    start = doc.index(isa.GENERATED_BEGIN) + len(isa.GENERATED_BEGIN)
    end = doc.index(isa.GENERATED_END)
    assert doc[start:end].strip() == isa.markdown().strip(), "docs/isa.md is stale: regenerate with isa.markdown()"


def random_descriptor(rng: random.Random, op: Op) -> Descriptor:
    kw = {f.name: rng.randrange(f.mask + 1) for f in isa.op_fields(op) if f.name != "opcode"}
    return Descriptor(op, **kw)


@pytest.mark.parametrize("op", list(Op))
def test_encode_decode_round_trip_every_field_value(op):
    rng = random.Random(int(op))
    for _ in range(300):
        d = random_descriptor(rng, op)
        words = isa.encode(d)
        assert len(words) == isa.DESC_WORDS and all(0 <= w < 1 << 32 for w in words)
        assert isa.decode(words) == d
    # extremes: every field at its maximum, then at 0
    top = Descriptor(op, **{f.name: f.mask for f in isa.op_fields(op) if f.name != "opcode"})
    assert isa.decode(isa.encode(top)) == top
    assert isa.decode(isa.encode(Descriptor(op))) == Descriptor(op)


def test_fields_of_one_opcode_are_disjoint_and_distinguishable():
    # Setting one field changes only its own bits: decode recovers it alone.
    for op in Op:
        for f in isa.op_fields(op):
            if f.name == "opcode":
                continue
            d = Descriptor(op, **{f.name: f.mask})
            words = isa.encode(d)
            assert words[f.word] == (op if f.word == 0 else 0) | f.mask << f.lsb
            assert sum(bin(w).count("1") for w in words) == f.width + bin(op).count("1")


def test_encode_accepts_numpy_ints_refuses_others():
    import numpy as np
    assert isa.encode(Descriptor(Op.GEMM, m=np.int64(5))) == isa.encode(Descriptor(Op.GEMM, m=5))
    for bad in (5.0, "5", True):
        with pytest.raises(DescriptorError, match="field m must be an int"):
            isa.encode(Descriptor(Op.GEMM, m=bad))


def test_program_pack_unpack():
    rng = random.Random(1)
    prog = [random_descriptor(rng, rng.choice(list(Op))) for _ in range(50)]
    blob = isa.pack_program(prog)
    assert len(blob) == 50 * isa.DESC_BYTES
    assert isa.unpack_program(blob) == prog
    with pytest.raises(ValueError, match="multiple of 32"):
        isa.unpack_program(blob[:-4])


@pytest.mark.parametrize("field,value,match", [
    ("m", 1 << 16, r"field m = 65536 is out of range; allowed \[0, 65535\]"),
    ("addr", 1 << 32, r"field addr = 4294967296 is out of range"),
    ("epilogue", 16, r"field epilogue = 16 is out of range; allowed \[0, 15\]"),
    ("m", -1, r"field m = -1 is out of range"),
    ("stride", 64, r"GEMM: field stride = 64 must be 0 \(not used by GEMM\)"),
    ("add_shift", 3, r"field add_shift = 3 must be 0"),
])
def test_encode_range_errors_name_field_and_limit(field, value, match):
    with pytest.raises(DescriptorError, match=match) as e:
        isa.encode(Descriptor(Op.GEMM, **{field: value}))
    assert e.value.code == ErrorCode.CTRL_BAD_FIELD


def test_decode_rejects_bad_opcode_and_stray_bits():
    for code in (0, 0x0A, 0x0E, 0x10, 0xFF):
        with pytest.raises(DescriptorError, match="is not an Op") as e:
            isa.decode([code] + [0] * 7)
        assert e.value.code == ErrorCode.CTRL_BAD_OPCODE
    # every bit outside END's fields is an error
    for word in range(isa.DESC_WORDS):
        for bit in range(32):
            if word == 0 and bit < 8:
                continue
            words = [int(Op.END)] + [0] * 7
            words[word] |= 1 << bit
            with pytest.raises(DescriptorError, match="outside the opcode's fields") as e:
                isa.decode(words)
            assert e.value.code == ErrorCode.CTRL_BAD_FIELD
    # bit 20 of word 0 belongs to no GEMM field (bit 15 is GEMM's sparse flag since ISA 1.2)
    with pytest.raises(DescriptorError):
        isa.decode([int(Op.GEMM) | 1 << 20] + [0] * 7)
    assert isa.decode([int(Op.GEMM) | 1 << 15] + [0] * 7).sparse == 1
    with pytest.raises(DescriptorError, match="8 words"):
        isa.decode([int(Op.END)] * 7)


def gemm(**kw):
    base = dict(src=Buf.N, dst=Buf.QKV, m=65, k=48, n=144, addr=0x1000)
    base.update(kw)
    return Descriptor(Op.GEMM, **base)


def test_check_accepts_valid_descriptors():
    isa.check(gemm(), DEFAULT)
    isa.check(gemm(epilogue=Epilogue.RAW_SOFTMAX, wsrc=WSrc.BUF_T, aux=Buf.QKV, aux_col=48, dst=Buf.P,
                   m=197, k=64, n=197, m_live=1, n_live=1), DEFAULT)
    isa.check(Descriptor(Op.ADD, src=Buf.X0, aux=Buf.T, dst=Buf.X1, m=197, n=768, add_mult_a=40000,
                         add_mult_b=30000, add_shift=16), DEFAULT)
    isa.check(Descriptor(Op.LOAD, dst=Buf.H, m=196, n=768, stride=768, addr=0), DEFAULT)


@pytest.mark.parametrize("d,code,match", [
    (gemm(m=300), ErrorCode.M_TOO_LARGE, r"m = 300 exceeds gemm.max_m = 256"),
    (gemm(k=4000), ErrorCode.K_TOO_LARGE, r"k = 4000 exceeds gemm.max_k = 3072"),
    (gemm(n=0), ErrorCode.ZERO_DIMENSION, r"n = 0"),
    (gemm(m=197, k=768, src=Buf.H), ErrorCode.ACT_BUFFER_OVERFLOW, r"ceil\(768/16\) \* 197 = 9456 exceeds gemm.act_buffer_words = 4096"),
    (gemm(dst=9), ErrorCode.CTRL_BAD_BUFFER, r"dst = 9 is not a token buffer; allowed \[0, 7\]"),
    (gemm(dst=Buf.T, dst_row=190, m=10), ErrorCode.CTRL_BAD_SHAPE, r"destination rows 190 \+ 10 exceed buffer T's 197 rows"),
    (gemm(dst=Buf.T, dst_col=672, n=144), ErrorCode.CTRL_BAD_SHAPE, r"destination columns 672 \+ 144 exceed buffer T's 768"),
    (gemm(src_col=8), ErrorCode.CTRL_BAD_ADDRESS, r"source column 8 is not a multiple of 16"),
    (gemm(addr=0x1010), ErrorCode.CTRL_BAD_ADDRESS, r"addr = 0x1010 is not a multiple of 64"),
    (gemm(wsrc=WSrc.BUF, aux=Buf.X0), ErrorCode.CTRL_BAD_BUFFER, r"aux = 0 cannot feed the weight port; allowed QKV=3"),
    (gemm(wsrc=3), ErrorCode.CTRL_BAD_FIELD, r"wsrc = 3 is not a WSrc"),
    (gemm(epilogue=6), ErrorCode.CTRL_BAD_FIELD, r"epilogue = 6 is not a Epilogue"),
    (gemm(k_live=1), ErrorCode.CTRL_BAD_FIELD, r"k_live / n_live need weights from a buffer"),
    (Descriptor(Op.LOAD, dst=Buf.H, m=4, n=20, stride=20), ErrorCode.CTRL_BAD_ADDRESS, r"stride = 20 must be >= n = 20 and a multiple of 16"),
    (Descriptor(Op.STORE, src=Buf.H, m=4, n=16, stride=16, region=0), ErrorCode.CTRL_BAD_FIELD, r"region = MODEL: STORE writes only OUTPUT or DEBUG"),
    (Descriptor(Op.STORE, src=Buf.H, m=4, n=16, stride=16, region=1), ErrorCode.CTRL_BAD_FIELD, r"region = INPUT: STORE writes only"),
    (Descriptor(Op.LAYERNORM, src=Buf.H, dst=Buf.H, m=4, n=1024, addr=0), ErrorCode.CTRL_BAD_SHAPE, r"n = 1024 exceeds nonlinear.max_dim = 768"),
    (Descriptor(Op.ADD, src=Buf.X0, dst=Buf.X1, aux=Buf.P, m=4, n=256), ErrorCode.CTRL_BAD_SHAPE, r"second operand columns 0 \+ 256 exceed buffer P's 197"),
    (Descriptor(Op.BEGIN, m=198), ErrorCode.CTRL_BAD_SHAPE, r"initial N_live\) = 198 is out of range; allowed \[1, 197\]"),
])
def test_check_errors_name_field_and_limit(d, code, match):
    with pytest.raises(DescriptorError, match=match) as e:
        isa.check(d, DEFAULT)
    assert e.value.code == code


def test_live_dims_clip_and_skip():
    d = gemm(m=64, src_row=128, dst_row=128, m_live=1)
    assert isa.live_dims(d, 197) == (64, 48, 144)
    assert isa.live_dims(d, 150) == (22, 48, 144)
    assert isa.live_dims(d, 128) == (0, 48, 144)          # skipped
    isa.check(d, DEFAULT, n_live=128)                     # a skipped descriptor has nothing to check
    qk = gemm(wsrc=WSrc.BUF_T, aux=Buf.QKV, n=197, k=64, m=197, n_live=1, m_live=1)
    assert isa.live_dims(qk, 100) == (100, 64, 100)
    load = Descriptor(Op.LOAD, dst=Buf.X0, dst_row=1, m=196, n=16, stride=16, m_live=1)
    assert isa.live_dims(load, 50) == (49, 0, 16)
    # the row chunks of a long GEMM, clipped to N_live, are golden's row_chunks for N_live tokens
    g = DEFAULT.gemm
    k = 768
    step = min(g.max_m, g.act_buffer_words // -(-k // g.rows))
    chunks = [gemm(src=Buf.H, k=k, m=min(step, 197 - r), src_row=r, dst_row=r, m_live=1) for r in range(0, 197, step)]
    for live in (1, step - 1, step, step + 1, 150, 197):
        got = [(c.src_row, isa.live_dims(c, live)[0]) for c in chunks if isa.live_dims(c, live)[0]]
        want = [(i, min(step, live - i)) for i in range(0, live, step)]
        assert got == want


def test_param_block_layout():
    acc = DEFAULT
    d = gemm(epilogue=Epilogue.REQ16_GELU, n=100, k=40)
    parts = isa.param_block(acc, d)
    assert parts == {"requant": (0, 800), "gelu": (832, 32), "weights": (896, 7 * 3 * 16 * 16)}
    assert isa.param_block_bytes(acc, d) == 896 + 5376
    assert all(o % isa.DDR_ALIGN == 0 for o, _ in parts.values())
    sm = isa.param_block(acc, gemm(epilogue=Epilogue.RAW_SOFTMAX, wsrc=WSrc.BUF_T, aux=Buf.QKV))
    assert sm == {"softmax": (0, 32)}
    # a sparse GEMM's weights follow its bitmap at the next DMA beat (one weight port), else at 64
    sp = isa.param_block(acc, gemm(epilogue=Epilogue.REQ8, n=100, k=40, sparse=1, tiles=3))
    assert sp == {"requant": (0, 800), "bitmap": (832, 3), "weights": (832 + acc.shell.data_bytes, 3 * 16 * 16)}
    wide = PRESETS["zcu102"]          # weight ports: the part stays at 64
    assert wide.weight_beats_per_cycle > 1
    spw = isa.param_block(wide, gemm(epilogue=Epilogue.REQ8, n=100, k=40, sparse=1, tiles=1))
    assert spw["weights"][0] == 896
    ln = isa.param_block(acc, Descriptor(Op.LAYERNORM, n=48))
    assert ln == {"ln": (0, 32), "gamma": (64, 192), "beta": (256, 384)}


def test_records_round_trip_and_range():
    blob = isa.pack_requant([-(1 << 31), 5, (1 << 31) - 1], [0, 65535, (1 << 24) - 1], [0, 49, 255])
    assert len(blob) == 3 * isa.REQUANT_RECORD_BYTES
    assert isa.unpack_requant(blob, 3) == ([-(1 << 31), 5, (1 << 31) - 1], [0, 65535, (1 << 24) - 1], [0, 49, 255])
    with pytest.raises(ValueError, match="out of range"):
        isa.pack_requant([1 << 31], [0], [0])
    rec = {"in_mult": 40000, "in_shift": 30, "out_mult": 1, "out_shift": 2, "out_min": -128, "out_max": 127, "in_bits": 16}
    b = isa.pack_record(isa.GELU_RECORD, rec)
    assert len(b) == isa.NL_RECORD_BYTES
    assert isa.unpack_record(isa.GELU_RECORD, b, signed=("out_min", "out_max")) == rec
    with pytest.raises(ValueError, match="does not fit 32 bits"):
        isa.pack_record(isa.SOFTMAX_RECORD, {"mult": 1 << 32, "shift": 0, "out_max": 0, "in_bits": 0})


def test_check_program():
    acc = DEFAULT
    body = [gemm()]
    prog = [isa.begin(acc, 3, 65), *body, Descriptor(Op.END)]
    isa.check_program(prog, acc)
    cases = [
        (prog[1:], "starts with BEGIN"),
        ([prog[0].with_(version=2 << 16), *prog[1:]], r"ISA version 2.0 is not supported"),
        ([prog[0].with_(version=1 << 16 | 7), *prog[1:]], r"ISA version 1.7 is not supported"),
        ([prog[0].with_(config_id=1), *prog[1:]], r"config ID 0x00000001 !="),
        ([prog[0].with_(count=4), *prog[1:]], r"count = 4 but the program has 3"),
        ([prog[0], *body, gemm()], "one END last"),
        ([prog[0].with_(count=4), Descriptor(Op.END), *body, Descriptor(Op.END)], "one END last"),
        ([prog[0], gemm(m=0), prog[2]], r"descriptor 1: GEMM: m = 0"),
    ]
    for p, match in cases:
        with pytest.raises(DescriptorError, match=match):
            isa.check_program(p, acc)
    other = AcceleratorConfig(gemm=GemmConfig(rows=8, cols=8))
    with pytest.raises(DescriptorError, match="config ID"):
        isa.check_program(prog, other)


def test_buffer_config_section():
    assert DEFAULT.buffers == BufferConfig(197, 768, 3072)
    assert PRESETS["small"].buffers == BufferConfig(197, 256, 256)     # clipped to gemm.max_n
    assert AcceleratorConfig.from_dict(DEFAULT.to_dict()) == DEFAULT
    d = DEFAULT.to_dict()
    d["buffers"]["max_hidden"] = 4096
    with pytest.raises(ValueError, match=r"buffers.max_hidden = 4096 exceeds gemm.max_k = 3072"):
        AcceleratorConfig.from_dict(d)
    d["buffers"] = {"max_tokens": 300}
    with pytest.raises(ValueError, match=r"buffers.max_tokens = 300 exceeds nonlinear.max_tokens = 256"):
        AcceleratorConfig.from_dict(d)
    d["buffers"] = {"max_tokens": 1}
    with pytest.raises(ValueError, match=r"BufferConfig.max_tokens = 1 is out of range; allowed \[2, 4096\]"):
        AcceleratorConfig.from_dict(d)
    d["buffers"] = {"bogus": 1}
    with pytest.raises(ValueError, match="unknown keys"):
        AcceleratorConfig.from_dict(d)
    bufs = isa.token_buffers(DEFAULT)
    assert bufs[Buf.QKV].cols == 3 * 768 and bufs[Buf.P].cols == 197 and bufs[Buf.H].cols == 3072
    assert all(s.rows == 197 for s in bufs.values())


def test_board_side_modules_need_no_amaranth(tmp_path):
    """The board driver imports the ISA and reads images on a PYNQ image without Amaranth."""
    import subprocess
    import sys
    code = ("import sys; sys.modules['amaranth'] = None\n"
            "import heatvit.isa, heatvit.compiler, heatvit.compiler.interpret, heatvit.compiler.cycles\n"
            "assert not any(m.startswith('amaranth') and sys.modules[m] for m in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_record_limits():
    isa.check_record("gelu", {"in_bits": 16, "out_min": -128, "out_max": 127}, DEFAULT)
    with pytest.raises(DescriptorError, match=r"x: gelu record: out_max = 200 is out of range; allowed \[-128, 127\]") as e:
        isa.check_record("gelu", {"out_max": 200}, DEFAULT, "x: ")
    assert e.value.code == ErrorCode.CTRL_BAD_PARAMS
    with pytest.raises(DescriptorError, match=r"requant record: mult = 65536 is out of range; allowed \[0, 65535\]"):
        isa.check_record("requant", {"mult": [1, 65536]}, DEFAULT)
    with pytest.raises(DescriptorError, match=r"requant record: shift = 50 is out of range; allowed \[0, 49\]"):
        isa.check_record("requant", {"shift": [50]}, DEFAULT)
    with pytest.raises(DescriptorError, match=r"softmax record: out_max = 255 is out of range; allowed \[1, 127\]"):
        isa.check_record("softmax", {"out_max": 255}, DEFAULT)
    with pytest.raises(DescriptorError, match=r"ln record: gamma = 131072 is out of range"):
        isa.check_record("ln", {"gamma": [0, 1 << 17]}, DEFAULT)
