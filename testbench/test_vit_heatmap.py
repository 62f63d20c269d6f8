"""The pruning heat-map picture: PNG encoding (decoded back independently) and the command."""

import struct
import zlib

import numpy as np
import pytest

from heatvit import heatmap
from heatvit.golden.vit import model as model_io
from test_vit_int import random_model


def decode_png(data: bytes) -> np.ndarray:
    """Minimal decoder for what write_png writes (8-bit RGB, filter 0, one or more IDAT)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", None, None
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert (depth, ctype) == (8, 2)
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(h, w, 3)


def test_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    heatmap.write_png(tmp_path / "x.png", rgb)
    assert np.array_equal(decode_png((tmp_path / "x.png").read_bytes()), rgb)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        heatmap.write_png(tmp_path / "y.png", rgb.astype(np.float32))


def test_heatmap_command(tmp_path, capsys):
    model = random_model()
    model_io.save_npz(model, tmp_path / "m.npz")
    out = tmp_path / "h.png"
    assert heatmap.main(["--model", str(tmp_path / "m.npz"), "--out", str(out), "--images", "2", "--scale", "2"]) == 0
    pic = decode_png(out.read_bytes())
    side = model.cfg.image_size * 2
    g = heatmap.GAP
    assert pic.shape == (g + 2 * (side + g), g + (1 + len(model.plan.blocks)) * (side + g), 3)
    assert "wrote" in capsys.readouterr().out
    # the panels after a stage differ from the input panel (patches are tinted kept/pruned)
    assert not np.array_equal(pic[g:g + side, g:g + side], pic[g:g + side, 2 * g + side:2 * g + 2 * side])


def test_heatmap_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        heatmap.main(["--images", "0", "--out", str(tmp_path / "h.png")])
