"""AcceleratorConfig as one tree: sections, resizing, JSON files with and without sections."""

import dataclasses
import json

import pytest

from heatvit.config import AcceleratorConfig, GemmConfig
from heatvit.presets import PRESETS, load_config
from heatvit.shell_config import ShellConfig
from heatvit.toksel_config import TokSelConfig


@pytest.mark.parametrize("rows,cols", [(4, 4), (8, 16), (32, 32), (64, 64), (64, 16), (1, 2)])
@pytest.mark.parametrize("preset", ["default", "small", "bench"])
def test_with_array_derives_dependent_fields(preset, rows, cols):
    base = dataclasses.replace(PRESETS[preset], shell=ShellConfig(data_width=64), clock_mhz=250.0)
    acc = base.with_array(rows, cols)
    assert (acc.gemm.rows, acc.gemm.cols, acc.toksel.lanes) == (rows, cols, rows)
    # Everything else is kept.
    # ... except a weight FIFO too shallow for one tile of the new rows, raised to two tiles.
    depth = base.gemm.weight_fifo_depth if base.gemm.weight_fifo_depth >= rows else 2 * rows
    assert acc.gemm.weight_fifo_depth == depth
    assert dataclasses.replace(acc.gemm, rows=base.gemm.rows, cols=base.gemm.cols,
                               weight_fifo_depth=base.gemm.weight_fifo_depth) == base.gemm
    assert dataclasses.replace(acc.toksel, lanes=base.toksel.lanes) == base.toksel
    assert (acc.nonlinear, acc.shell, acc.clock_mhz) == (base.nonlinear, base.shell, base.clock_mhz)
    # The derived token buffers are derived again for the new engine.
    assert acc.buffers == AcceleratorConfig(gemm=acc.gemm, nonlinear=acc.nonlinear, toksel=acc.toksel).buffers
    assert AcceleratorConfig.from_dict(json.loads(json.dumps(acc.to_dict()))) == acc


def test_resizing_without_the_helper_is_rejected_with_a_hint():
    acc = AcceleratorConfig()
    with pytest.raises(ValueError, match="toksel.lanes = 16 must equal gemm.rows = 64.*with_array"):
        dataclasses.replace(acc, gemm=dataclasses.replace(acc.gemm, rows=64))


def test_with_gemm_checks_like_the_constructor():
    acc = AcceleratorConfig()
    assert acc.with_gemm(max_m=197).gemm.max_m == 197
    with pytest.raises(ValueError, match="rows = 3 is not a power of two"):
        acc.with_array(3, 4)
    with pytest.raises(ValueError, match="lanes = 64 does not divide dim = 96"):
        dataclasses.replace(acc, toksel=TokSelConfig(dim=96, heads=3)).with_array(64, 16)
    with pytest.raises(TypeError):
        acc.with_gemm(bogus=1)
    # An explicit buffers section is kept, and checked against the resized engine.
    from heatvit.accel_config import BufferConfig
    custom = dataclasses.replace(acc, buffers=BufferConfig(max_tokens=100, max_dim=384, max_hidden=1536))
    assert custom.with_array(32, 32).buffers == custom.buffers
    with pytest.raises(ValueError, match="max_hidden"):
        custom.with_gemm(max_k=1024, act_buffer_words=4096)


def test_sections_from_json(tmp_path):
    acc = AcceleratorConfig(gemm=GemmConfig(rows=8, cols=4), shell=ShellConfig(burst_len=8))
    assert set(acc.to_dict()) == {"gemm", "nonlinear", "toksel", "buffers", "shell", "clock_mhz", "selectors"}
    path = tmp_path / "acc.json"
    path.write_text(json.dumps(acc.to_dict()))
    assert load_config(path) == acc and load_config(path).digest() == acc.digest()
    # A file from before a section existed: the missing sections take their defaults.
    for missing in ("shell", "toksel", "buffers", "nonlinear"):
        d = acc.to_dict()
        del d[missing]
        path.write_text(json.dumps(d))
        got = load_config(path)
        assert getattr(got, missing) == getattr(AcceleratorConfig(gemm=acc.gemm), missing)


def test_row_lanes_rule():
    """The row units' lane rule in one place (``config.check_row_lanes``): what the derived
    ``layernorm_lanes`` / ``softmax_lanes`` pick passes it, anything else is refused naming the
    fields it must divide."""
    from heatvit.config import DEFAULT, MAX_ROW_LANES, check_row_lanes
    for acc in (DEFAULT, DEFAULT.with_array(64, 32), DEFAULT.with_array(2, 2), DEFAULT.with_array(8, 4)):
        check_row_lanes("t", "lanes", acc.layernorm_lanes, nonlinear__max_dim=acc.nonlinear.max_dim)
        check_row_lanes("t", "lanes", acc.softmax_lanes, gemm__cols=acc.gemm.cols,
                        nonlinear__max_tokens=acc.nonlinear.max_tokens)
        assert acc.softmax_units == 1 and acc.softmax_lanes == min(acc.gemm.cols, MAX_ROW_LANES)
    for bad in (0, 3, 2 * MAX_ROW_LANES, 1.0, True, 64):
        with pytest.raises(ValueError, match=r"X: lanes must be a power of two up to 16 dividing nonlinear.max_dim = 48"):
            check_row_lanes("X", "lanes", bad, nonlinear__max_dim=48)
    check_row_lanes("X", "lanes", 16, nonlinear__max_dim=48)
    with pytest.raises(ValueError, match="gemm.cols = 8"):
        check_row_lanes("X", "lanes", 16, gemm__cols=8)
