"""Block-sparse GEMMs in the ISA and the compiler (issue 14): the descriptor fields and their
checks, the tile bitmap's byte layout, the compiler emitting ``sparse = 1`` for weights with
all-zero tiles, the interpreter bit-exact against the golden forward (which sees the same zero
tiles as zero weights), a damaged bitmap, and the cycle model's sparse path."""

import os

import numpy as np
import pytest

from heatvit import compiler, isa
from heatvit.compiler import cycles, image, interpret, models
from heatvit.compiler.image import ModelImage
from heatvit.config import DEFAULT
from heatvit.errors import ErrorCode
from heatvit.golden.gemm import apply_tile_mask, pack_weights, tile_bitmap, tile_grid
from heatvit.isa import Descriptor, Op, WSrc
from heatvit.presets import PRESETS

from compiler_checks import check_bit_exact

SEED = int(os.environ.get("HEATVIT_SEED", "2026"))


def linears(qm):
    """Every (name, QLinear) of a quantized ViT's backbone."""
    out = [("patch_embed", qm.patch_embed), ("head", qm.head)]
    for i, b in enumerate(qm.blocks):
        out += [(f"blocks.{i}.attn.qkv", b.qkv), (f"blocks.{i}.attn.proj", b.proj),
                (f"blocks.{i}.mlp.fc1", b.fc1), (f"blocks.{i}.mlp.fc2", b.fc2)]
    return out


def block_prune(qm, acc, density: float, rng, empty_column: str | None = None) -> dict:
    """Zero a random ``1 - density`` of every layer's ``R x C`` weight tiles in place (at least one
    tile, at least one kept); ``empty_column``: also clear N tile 0 of that layer entirely."""
    maps = {}
    for name, ql in linears(qm):
        kt, nt = tile_grid(acc.gemm, *ql.w.shape)
        keep = rng.random((kt, nt)) < density
        keep.flat[rng.integers(kt * nt)] = False
        if name == empty_column:
            keep[:, 0] = False
        if not keep.any():
            keep.flat[-1] = True
        ql.w = apply_tile_mask(acc.gemm, ql.w, keep)
        maps[name] = tile_bitmap(acc.gemm, ql.w)
    return maps


@pytest.fixture(scope="module")
def micro():
    """A 2-block random ViT quantized for the default 16 x 16 config, block-pruned at density 0.5
    (fc1 of block 0 has an all-zero N tile), with 3 test images."""
    cfg = models.ViTConfig(image_size=32, patch_size=8, in_chans=3, dim=64, depth=2, heads=4, mlp_ratio=4.0,
                           num_classes=37)
    rng = np.random.default_rng(SEED)
    model = models.random_model(cfg, SEED, std=0.2)
    qm = compiler.quantize_for(model, DEFAULT, rng.random((8, 3, 32, 32)).astype(np.float32))
    maps = block_prune(qm, DEFAULT, 0.5, rng, empty_column="blocks.0.mlp.fc1")
    return qm, maps, rng.random((3, 3, 32, 32)).astype(np.float32)


# -- ISA --------------------------------------------------------------------------------------------

def gemm(**kw):
    base = dict(src=isa.Buf.N, dst=isa.Buf.T, m=4, k=64, n=64, addr=0)
    return Descriptor(Op.GEMM, **{**base, **kw})


def test_sparse_fields_round_trip_and_block():
    d = gemm(sparse=1, tiles=5)
    assert isa.decode(isa.encode(d)) == d
    parts = isa.param_block(DEFAULT, d)
    assert list(parts) == ["requant", "bitmap", "weights"]
    assert parts["bitmap"] == (64 * 8, 2)                       # 4 x 4 tiles: 16 bits
    assert parts["weights"] == (64 * 8 + 16, 5 * 16 * 16)       # the next 16-byte beat after the bitmap
    dense = isa.param_block(DEFAULT, gemm())
    assert dense["weights"][1] == 16 * 16 * 16
    assert isa.param_block_bytes(DEFAULT, d) < isa.param_block_bytes(DEFAULT, gemm())
    # a field set on an opcode that does not use it is refused
    with pytest.raises(isa.DescriptorError, match="tiles"):
        isa.encode(Descriptor(Op.ADD, tiles=1))


@pytest.mark.parametrize("kw, code, what", [
    (dict(sparse=1, tiles=17), ErrorCode.TILE_COUNT_TOO_LARGE, "tiles = 17 exceeds the 16"),
    (dict(tiles=3), ErrorCode.CTRL_BAD_FIELD, "needs sparse = 1"),
    (dict(sparse=1, tiles=1, wsrc=WSrc.BUF, aux=isa.Buf.QKV), ErrorCode.CTRL_BAD_FIELD, "needs weights from DDR"),
])
def test_sparse_descriptor_checks(kw, code, what):
    with pytest.raises(isa.DescriptorError, match=what) as e:
        isa.check(gemm(**kw), DEFAULT)
    assert e.value.code == code


def test_sparse_zero_and_full_tile_counts_are_valid():
    isa.check(gemm(sparse=1, tiles=0), DEFAULT)
    isa.check(gemm(sparse=1, tiles=16), DEFAULT)


@pytest.mark.parametrize("kt, nt", [(1, 1), (3, 5), (4, 4), (7, 3), (48, 12)])
def test_bitmap_bytes_round_trip(kt, nt):
    rng = np.random.default_rng(SEED + kt * 100 + nt)
    bm = rng.random((kt, nt)) < 0.4
    blob = isa.pack_bitmap(bm)
    assert len(blob) == -(-kt * nt // 8)
    assert np.array_equal(np.array(isa.unpack_bitmap(blob, kt, nt)).reshape(kt, nt), bm)
    bits = np.unpackbits(np.frombuffer(blob, np.uint8), bitorder="little")[:kt * nt]
    assert np.array_equal(bits, bm.T.reshape(-1))               # bit nt * KT + kt, stream order


# -- compiler and interpreter --------------------------------------------------------------------

def check_run(qm, acc, images, blob):
    return check_bit_exact(qm, acc, images, blob)[0]


def test_compiler_emits_sparse_gemms_bit_exact(micro):
    qm, maps, images = micro
    blob = compiler.compile_model(qm, DEFAULT)
    img = check_run(qm, DEFAULT, images, blob)
    g = DEFAULT.gemm
    seen = set()
    for d in img.program:
        if d.opcode != Op.GEMM or d.wsrc != WSrc.DDR:
            continue
        assert d.sparse == 1, d.name
        bm = maps[d.name]
        assert d.tiles == int(bm.sum()), d.name
        assert np.array_equal(interpret.gemm_bitmap(DEFAULT, d, img.blob), bm)
        off, size = isa.param_block(DEFAULT, d)["weights"]
        ql = dict(linears(qm))[d.name]
        assert img.blob[d.addr + off:d.addr + off + size] == pack_weights(g, ql.w, bm).astype(np.int8).tobytes()
        seen.add(d.name)
    assert seen == set(maps)
    dense_blob = compiler.compile_model(qm, DEFAULT, sparse=False)
    dense = check_run(qm, DEFAULT, images[:1], dense_blob)
    assert not any(d.sparse for d in dense.program)
    assert len(blob) < len(dense_blob)


def test_reader_refuses_sparse_images_of_the_old_layout(micro):
    """ISA 1.3 moved a sparse GEMM's weights to the beat after its bitmap: an image whose header
    says an older minor and holds sparse GEMMs is refused (recompile), a dense one still loads."""
    import struct

    from heatvit.compiler import ImageError

    def with_minor(blob, minor):
        names = [n for n, _, _ in image.HEADER_FIELDS]
        vals = list(struct.unpack_from(image._HEADER_FMT, blob, 0))
        vals[names.index("isa_version")] = isa.ISA_VERSION[0] << 16 | minor
        out = bytearray(blob)
        struct.pack_into(image._HEADER_FMT, out, 0, *vals)   # the crc covers the body only
        return bytes(out)

    qm, _, _ = micro
    blob = compiler.compile_model(qm, DEFAULT)
    assert compiler.read_image(blob, DEFAULT).header["isa_version"] == isa.isa_version_word()
    for minor in range(isa.SPARSE_LAYOUT_MINOR):
        with pytest.raises(ImageError, match=rf"ISA version 1\.{minor} has block-sparse GEMMs .* recompile"):
            compiler.read_image(with_minor(blob, minor))
    dense = compiler.compile_model(qm, DEFAULT, sparse=False)
    compiler.read_image(with_minor(dense, isa.SPARSE_LAYOUT_MINOR - 1), DEFAULT)


def test_dense_weights_compile_dense():
    """A model without all-zero tiles (the committed digits model) compiles exactly as before."""
    qm = compiler.quantize_for(models.load_model(), PRESETS["small"])
    img = compiler.read_image(compiler.compile_model(qm, PRESETS["small"]), PRESETS["small"])
    assert not any(d.sparse or d.tiles for d in img.program)


def test_sparse_small_preset_row_chunks():
    """The 4 x 4 preset: every GEMM in row chunks, each chunk a sparse descriptor on one block."""
    acc = PRESETS["small"]
    cfg = models.ViTConfig(image_size=32, patch_size=8, in_chans=3, dim=16, depth=1, heads=2, mlp_ratio=2.0,
                           num_classes=10)
    rng = np.random.default_rng(SEED + 1)
    qm = compiler.quantize_for(models.random_model(cfg, SEED, std=0.2), acc, rng.random((4, 3, 32, 32)).astype(np.float32))
    block_prune(qm, acc, 0.3, rng, empty_column="blocks.0.attn.proj")
    img = check_run(qm, acc, rng.random((2, 3, 32, 32)).astype(np.float32), compiler.compile_model(qm, acc))
    sparse = [d for d in img.program if d.sparse]
    assert len({d.addr for d in sparse}) == 6 and len(sparse) >= 6


def test_damaged_bitmap_is_tile_bitmap_mismatch(micro):
    qm, _, images = micro
    img = compiler.read_image(compiler.compile_model(qm, DEFAULT), DEFAULT)
    d = next(d for d in img.program if d.opcode == Op.GEMM and d.sparse and d.name == "blocks.0.mlp.fc1")
    off, size = isa.param_block(DEFAULT, d)["bitmap"]
    blob = bytearray(img.blob)
    blob[d.addr + off] ^= 1                                      # tile (kt 0, nt 0): cleared -> set
    bad = ModelImage(img.header, img.program, img.memory_map, bytes(blob))
    patches = models.patches(qm, images[:1])
    with pytest.raises(isa.DescriptorError, match="sets .* tiles, the descriptor's tiles") as e:
        interpret.run(bad, DEFAULT, interpret.pack_input(bad, patches[0]))
    assert e.value.code == ErrorCode.TILE_BITMAP_MISMATCH


# -- cycle model --------------------------------------------------------------------------------

def test_cycle_model_prices_sparse_gemms(micro):
    qm, maps, _ = micro
    img = compiler.read_image(compiler.compile_model(qm, DEFAULT), DEFAULT)
    dense = compiler.read_image(compiler.compile_model(qm, DEFAULT, sparse=False), DEFAULT)
    est = cycles.image_cycles(img, DEFAULT)
    est_dense = cycles.estimate(dense.program, DEFAULT)
    g = DEFAULT.gemm
    by_index = {e.index: e for e in est}
    for i, d in enumerate(img.program):
        if d.opcode == Op.GEMM and d.sparse:
            e = by_index[i]
            assert e.engine == g.estimate_cycles(e.m, e.k, e.n, maps[d.name])
            parts = isa.param_block(DEFAULT, d)
            assert e.ddr == -(-sum(size for _, size in parts.values()) // 16)
            assert parts["weights"][1] == d.tiles * g.rows * g.cols
    sparse_gemm = sum(e.engine for e in est if img.program[e.index].sparse)
    dense_gemm = sum(e.engine for e in est_dense if dense.program[e.index].wsrc == WSrc.DDR and e.op == "GEMM")
    assert sparse_gemm < dense_gemm
    assert sum(e.ddr for e in est) < sum(e.ddr for e in est_dense)
    with pytest.raises(ValueError, match="pass model="):
        cycles.estimate(img.program, DEFAULT)


@pytest.mark.parametrize("name, density", [("vit_digits_sparse", 0.5), ("vit_digits_sparse70", 0.7),
                                           ("vit_digits_sparse30", 0.3)])
def test_committed_block_sparse_digits_model(name, density):
    """The committed block-sparse digits models (train_digits.py --block-prune, recipes in
    docs/sparsity.md): pruned in the default array's R x C tiles (what its GEMM engine skips);
    at the default config every encoder Linear is a block-sparse GEMM keeping its recorded tiles,
    and the interpreter's logits equal the golden integer forward's."""
    from heatvit.golden.vit import data as vit_data, model as model_io
    model = model_io.load_npz(model_io.DEFAULT_MODEL.with_name(f"{name}.npz"))
    info = model.meta["block_prune"]
    acc = DEFAULT
    assert info["tile"] == [acc.gemm.rows, acc.gemm.cols] and info["density"] == density
    qm = compiler.quantize_for(model, acc)
    img = compiler.read_image(compiler.compile_model(qm, acc), acc)
    tiles = {d.name: d.tiles for d in img.program if d.sparse}
    # a layer that keeps every tile (the latency rule may leave one dense) compiles as a dense GEMM
    assert tiles == {name: kept for name, (kept, total) in info["tiles"].items() if kept < total}
    assert tiles, "no block-sparse GEMM"
    images = vit_data.upscale(vit_data.load_splits()["test_x"][:2])
    check_run(qm, acc, images, compiler.compile_model(qm, acc))
