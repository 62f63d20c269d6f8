"""Golden tile-skipping API (heatvit.golden tile_bitmap / pack_weights bitmap / tile_descriptors)
and the sparse cycle model's arithmetic; the RTL side is testbench/test_tileskip.py."""

import numpy as np
import pytest

from heatvit import golden
from heatvit.config import GemmConfig, ceil_div

CFGS = [GemmConfig(rows=4, cols=4, max_k=300, max_n=300, max_m=64, act_buffer_words=4096),
        GemmConfig(rows=8, cols=4, max_k=300, max_n=300, max_m=64, act_buffer_words=4096)]
SHAPES = [(1, 1), (4, 4), (5, 3), (17, 9), (32, 33), (1, 40), (40, 1)]


def _sparse_w(cfg, rng, k, n, density):
    kt, nt = ceil_div(k, cfg.rows), ceil_div(n, cfg.cols)
    bitmap = rng.random((kt, nt)) < density
    w = rng.integers(cfg.weight_min, cfg.weight_max + 1, size=(k, n))
    w[w == 0] = 1                             # every kept tile really is non-zero
    return golden.apply_tile_mask(cfg, w, bitmap), bitmap


@pytest.mark.parametrize("cfg", CFGS, ids=["4x4", "8x4"])
@pytest.mark.parametrize("k,n", SHAPES)
def test_bitmap_and_packing(cfg, k, n):
    rng = np.random.default_rng(k * 1000 + n)
    for density in (0.0, 0.3, 0.7, 1.0):
        w, bitmap = _sparse_w(cfg, rng, k, n, density)
        assert np.array_equal(golden.tile_bitmap(cfg, w), bitmap)
        # Brute force: tile (kt, nt) is set iff its block has a non-zero weight.
        for kt, nt in np.ndindex(bitmap.shape):
            block = w[kt * cfg.rows:(kt + 1) * cfg.rows, nt * cfg.cols:(nt + 1) * cfg.cols]
            assert bitmap[kt, nt] == bool(block.any())
        dense = golden.pack_weights(cfg, w).reshape(bitmap.shape[1], bitmap.shape[0], cfg.rows, cfg.cols)
        sparse = golden.pack_weights(cfg, w, bitmap)
        assert np.array_equal(sparse, dense[bitmap.T].reshape(-1, cfg.cols))
        assert np.array_equal(golden.pack_weights(cfg, w, skip_zero_tiles=True), sparse)
        assert sparse.shape[0] == int(bitmap.sum()) * cfg.rows
        assert golden.weight_stream_bytes(cfg, k, n, bitmap) == sparse.size
        assert golden.weight_stream_bytes(cfg, k, n) == dense.size
        # A superset bitmap (all ones) streams the zero tiles too: the dense stream.
        assert np.array_equal(golden.pack_weights(cfg, w, np.ones_like(bitmap)), golden.pack_weights(cfg, w))


@pytest.mark.parametrize("cfg", CFGS, ids=["4x4", "8x4"])
def test_descriptors(cfg):
    rng = np.random.default_rng(7)
    for k, n in SHAPES:
        for density in (0.0, 0.2, 0.6, 1.0):
            bitmap = rng.random((ceil_div(k, cfg.rows), ceil_div(n, cfg.cols))) < density
            desc = golden.tile_descriptors(cfg, bitmap, k, n)
            empty_cols = int((~bitmap.any(axis=0)).sum())
            assert desc.shape == (int(bitmap.sum()) + empty_cols, 3)
            # Rebuild the bitmap from the stream: one column per `last`.
            rebuilt, col = np.zeros_like(bitmap), 0
            for kt, last, empty in desc:
                if not empty:
                    assert not rebuilt[kt, col]
                    rebuilt[kt, col] = True
                else:
                    assert last == 1 and not bitmap[:, col].any()
                col += int(last)
            assert col == bitmap.shape[1] and np.array_equal(rebuilt, bitmap)
            assert np.array_equal(golden.tile_counts(cfg, bitmap, k, n), bitmap.sum(axis=0))


def test_arithmetic_unchanged():
    """A masked GEMM is an ordinary GEMM of the masked weights (zero blocks are zero weights)."""
    cfg = CFGS[0]
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, size=(6, 17))
    w, bitmap = _sparse_w(cfg, rng, 17, 9, 0.5)
    ref = a @ w
    assert np.array_equal(golden.matmul_acc(cfg, a, w), ref)
    keep = np.repeat(np.repeat(bitmap, 4, 0), 4, 1)[:17, :9]
    assert np.array_equal(ref, a @ np.where(keep, w, 0))


def test_bad_inputs():
    cfg = CFGS[0]
    w = np.ones((8, 8), dtype=np.int64)
    with pytest.raises(ValueError, match="bitmap\\[1, 0\\] is 0"):
        golden.pack_weights(cfg, w, np.array([[1, 1], [0, 1]]))
    with pytest.raises(ValueError, match="shape"):
        golden.pack_weights(cfg, w, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="either bitmap or skip_zero_tiles"):
        golden.pack_weights(cfg, w, np.ones((2, 2), bool), skip_zero_tiles=True)
    with pytest.raises(ValueError, match="bitmap has values"):
        golden.check_bitmap(cfg, np.full((2, 2), 2), 8, 8)
    with pytest.raises(ValueError, match="k must be"):
        golden.tile_descriptors(cfg, np.ones((2, 2), bool), 0, 8)
    with pytest.raises(ValueError, match="tiles must be a"):
        cfg.estimate_cycles(4, 8, 8, np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="counts must be in"):
        cfg.estimate_cycles(4, 8, 8, np.array([3, 0]))
    with pytest.raises(TypeError, match="tiles must be a bool"):
        cfg.estimate_cycles(4, 8, 8, np.ones((2, 2)))


@pytest.mark.parametrize("cfg", CFGS, ids=["4x4", "8x4"])
def test_cycle_model_properties(cfg):
    rng = np.random.default_rng(11)
    for m in (1, cfg.min_tile_cycles - 1, cfg.min_tile_cycles, 40):
        for k, n in SHAPES:
            kt, nt = ceil_div(k, cfg.rows), ceil_div(n, cfg.cols)
            dense = cfg.estimate_cycles(m, k, n)
            assert cfg.estimate_cycles(m, k, n, np.ones((kt, nt), bool)) == dense
            bitmap = rng.random((kt, nt)) < 0.5
            by_map = cfg.estimate_cycles(m, k, n, bitmap)
            assert by_map == cfg.estimate_cycles(m, k, n, bitmap.sum(axis=0))
            assert by_map <= dense
            # Adding a tile never makes the GEMM faster.
            if not bitmap.all():
                more = bitmap.copy()
                more[tuple(np.argwhere(~bitmap)[0])] = True
                assert cfg.estimate_cycles(m, k, n, more) >= by_map
            # All-zero: one pass of M rows per N tile.
            zero = cfg.estimate_cycles(m, k, n, np.zeros((kt, nt), bool))
            assert zero == cfg.pipeline_fill_cycles - cfg.first_tile_lead_cycles + nt * m
