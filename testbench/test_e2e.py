"""The main job and the end-to-end bench's core (:mod:`heatvit.e2e`): ``heatvit demo`` classifies
digits test images through the whole accelerator in Verilator, quietly, every stage checked;
one DeiT-T block (random weights, dense) runs bit-exact through the whole accelerator.

The simulations use the fast-sim build that ``test_accel_fastsim_digits`` and
``heatvit bench e2e --quick`` use (``CONFIG``, tag ``heatvit.e2e.TAG``): one Verilator build."""

import json

import numpy as np
import pytest

from heatvit import cli, e2e
from heatvit.presets import PRESETS

CONFIG = e2e.CONFIG
"""The preset the simulations here run on (the build the CI digits test uses too)."""


def verilator():
    from heatvit.sim.runner import simulator_available
    if not simulator_available("verilator"):
        pytest.skip("verilator not installed")


def test_demo_bad_arguments(capsys):
    """Bad demo options are a clear error (exit 2), before anything is built."""
    assert cli.main(["demo", "--images", "0"]) == 2
    assert "--images must be at least 1, not 0" in capsys.readouterr().err
    assert cli.main(["demo", "--shape", "4", "4", "4"]) == 2
    assert "--shape is an option of `heatvit demo gemm`" in capsys.readouterr().err
    assert cli.main(["demo", "--start", "359", "--images", "2", "--config", CONFIG]) == 2
    assert "test images 359..360 out of range: the digits test split has 360 images" in capsys.readouterr().err


def test_check_stages_finds_the_first_wrong_stage():
    """A debug build's DEBUG region, as the interpreter writes it, passes every stage against
    golden's dumps; one flipped bit is reported at the stage that holds it."""
    from heatvit.compiler import interpret
    acc = PRESETS[CONFIG]
    case = e2e.digits_case(acc, 1, start=3, debug=True)
    img = case.image
    res = interpret.run(img, acc, interpret.pack_input(img, case.patches[0]))
    n, bad = e2e.check_stages(case, 0, res.debug.hex())
    assert bad is None and n == len(case.dumps[0]) - 2 * 6   # all but scores and fc1 of 6 blocks
    entry = next(e for e in img.debug["stores"] if img.program[e["desc"]].name == "blocks.4.attn.proj")
    broken = bytearray(res.debug)
    broken[entry["addr"]] ^= 1
    assert e2e.check_stages(case, 0, bytes(broken).hex()) == (n, "blocks.4.attn.proj")


@pytest.mark.slow
def test_demo_digits(tmp_path, capfd):
    """``heatvit demo``: digits test images through the whole accelerator (Verilator): every
    image's logits and stages bit-exact, its class and cycles printed, a per-layer PNG; the
    build and simulator output only in the log file."""
    verilator()
    rc = cli.main(["demo", "--config", CONFIG, "--images", "1", "--start", "11", "--out", str(tmp_path)])
    out, err = capfd.readouterr()
    assert rc == 0, out + err
    lines = out.splitlines()
    assert len(lines) < 20, out                       # quiet: no compiler or simulator banners
    assert not any(w in out + err for w in ("V e r i l a t i o n", "make:", "cocotb.regression", "-DVERILATOR")), out
    row = next(line.split() for line in lines if line.split()[:1] == ["11"])
    from heatvit.golden.vit import data as vit_data
    assert row[1] == str(int(vit_data.load_splits()["test_y"][11]))
    assert row[4:7] == ["bit-exact", "83/83", "exact"], row
    assert "1/1 images bit-exact with golden forward_int" in out
    png = tmp_path / "demo_layers.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (tmp_path / "demo.log").read_text()
    assert e2e.BUILT_MARK in log


@pytest.mark.slow
def test_deit_block_e2e(tmp_path):
    """One DeiT-T block (197 tokens, dim 192, 3 heads, MLP 768; random weights, dense) with its
    embedding and head, through the whole accelerator: logits bit-exact with golden
    ``forward_int``; per-layer cycles recorded for every layer."""
    verilator()
    case = e2e.deit_case(PRESETS[CONFIG], depth=1)
    res = e2e.simulate(case, tmp_path / "case", log=tmp_path / "sim.log", desc="deit block")
    (im,) = res["images"]
    assert im["bit_exact"], f"logits differ from golden (log {tmp_path / 'sim.log'})"
    layers = e2e.layer_table(case, im)
    assert {r["name"] for r in layers} >= {"blocks.0.attn.qkv", "blocks.0.mlp.fc1", "head"}
    assert all(r["cycles_measured"] > 0 for r in layers), [r for r in layers if not r["cycles_measured"]]
    gemm = [r for r in layers if r["op"] == "GEMM"]
    assert all(r["cycles_measured"] >= r["cycles_gemm_only"] for r in gemm)
    print(json.dumps({"cycles": im["cycles"], "wall_s": im["wall_s"],
                      "gemm_only": sum(r["cycles_gemm_only"] for r in layers)}))
    assert np.argmax(im["logits"]) == np.argmax(case.logits[0])


def test_e2e_plot_bars_are_the_layer_cycles():
    """``heatvit plot e2e``: one panel per run, a measured and an estimated bar per layer at its
    value; a debug build's stores are left out."""
    pytest.importorskip("matplotlib")
    from heatvit import plot
    layers = [{"name": n, "op": op, "m": 1, "k": 1, "n": 1, "descriptors": 1, "cycles_measured": c,
               "cycles_estimated": e, "cycles_gemm_only": g, "cycles_serial": e}
              for n, op, c, e, g in (("blocks.0.attn.qkv", "GEMM", 900, 800, 700), ("blocks.0.norm1", "LAYERNORM", 300, 250, 0),
                                     ("blocks.0.norm1:debug", "STORE", 50, 40, 0))]
    data = {"runs": [{"model": "m", "config": "default", "layers": layers},
                     {"model": "m2", "config": "default", "layers": layers[:1]}]}
    fig = plot.render("e2e", data)
    assert len(fig.axes) == 2
    heights = sorted(p.get_height() for p in fig.axes[0].patches)
    assert heights == [250, 300, 800, 900]
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["blocks.0.attn.qkv", "blocks.0.norm1"]
    with pytest.raises(ValueError, match="e2e.json: expected"):
        plot.render("e2e", {"records": []})
