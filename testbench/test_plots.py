"""``heatvit plot``: the benchmark pictures are written and labelled; bad input is a clear error;
the progress helper draws a bar on a terminal and plain lines elsewhere."""

import io
import json

import pytest

from heatvit import progress as prog

matplotlib = pytest.importorskip("matplotlib")

from heatvit import plot  # noqa: E402
from heatvit.bench.gemm import TARGET_MIN, block_gemms  # noqa: E402
from heatvit.presets import PRESETS  # noqa: E402


def gemm_rows():
    """gemm.json as the bench writes it, cycles from the engine's exact cycle model."""
    g = PRESETS["bench"].gemm
    rows = []
    for model in ("DeiT-T", "DeiT-S"):
        for e in block_gemms(model):
            cyc = g.estimate_cycles(e["M"], e["K"], e["N"])
            ideal = g.ideal_cycles(e["M"], e["K"], e["N"])
            rows.append({**e, "rows": g.rows, "cols": g.cols, "cycles": cyc, "ideal_cycles": ideal,
                         "utilization": round(ideal / cyc, 4)})
    return rows


def nonlinear_data():
    keys = dict(input_bits=8, output_bits=8, segments=16, degree=2, inputs_tested=256, latency_cycles=3,
                dsp=None, lut=None)
    entries = [{"name": "gelu", "max_err_lsb": 1.0, "mean_err_lsb": 0.02, **keys},
               {"name": "ibert_gelu", "max_err_lsb": 7.0, "mean_err_lsb": 1.5, **keys},
               {"name": "sigmoid", "max_err_lsb": 0.0, "mean_err_lsb": 0.0, **keys},
               {"name": "softmax", "max_err_lsb": 1.0, "mean_err_lsb": 0.1, **keys},
               {"name": "ibert_softmax", "max_err_lsb": 3.0, "mean_err_lsb": 0.4, **keys}]
    return {"entries": entries, "meta": {}}


def all_texts(fig):
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return out


def test_gemm_plot_labelled():
    rows = gemm_rows()
    fig = plot.render("gemm", rows)
    t = all_texts(fig)
    assert {"DeiT-T", "DeiT-S", f"target min {TARGET_MIN}", "qkv", "fc2"} <= set(t)
    assert "GEMM engine 16 x 16: utilization in RTL simulation" in t
    (ax,) = fig.axes
    heights = sorted(round(p.get_height(), 4) for p in ax.patches)
    assert heights == sorted(r["utilization"] for r in rows)       # one bar per GEMM, at its value


def test_nonlinear_plot_labelled():
    fig = plot.render("nonlinear", nonlinear_data())
    t = all_texts(fig)
    assert {"heatvit", "I-BERT", "1 LSB (target, max)", "gelu", "sigmoid\n(no I-BERT)", "softmax"} <= set(t)
    assert "max |error| (output LSB)" in t and "mean |error| (output LSB)" in t
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    # bar labels carry the measured values (sigmoid exact: 0, drawn as a stub but labelled 0)
    labels = [t.get_text() for t in ax.texts]
    assert {"1", "7", "0"} <= set(labels)


def test_plot_command_writes_pngs(tmp_path, capsys):
    from matplotlib.image import imread
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "gemm.json").write_text(json.dumps(gemm_rows()))
    (bench / "nonlinear.json").write_text(json.dumps(nonlinear_data()))
    assert plot.main(["--bench", str(bench), "--out", str(tmp_path / "plots"), "--dpi", "50"]) == 0
    for name in ("gemm", "nonlinear"):
        pic = imread(tmp_path / "plots" / f"{name}.png")
        assert pic.shape[0] > 100 and pic.shape[1] > 200
    assert capsys.readouterr().out.count("wrote") == 2


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown plot"):
        plot.main(["nope", "--bench", str(tmp_path)])
    with pytest.raises(ValueError, match="no benchmark JSON"):
        plot.main(["--bench", str(tmp_path)])
    with pytest.raises(ValueError, match="does not exist"):
        plot.main(["gemm", "--bench", str(tmp_path)])
    (tmp_path / "gemm.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        plot.main(["gemm", "--bench", str(tmp_path)])
    (tmp_path / "gemm.json").write_text("{}")
    with pytest.raises(ValueError, match="non-empty list"):
        plot.main(["gemm", "--bench", str(tmp_path), "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="already registered"):
        plot.register("gemm", "x.json", "again")(lambda fig, data: None)


def test_plot_registry_extends():
    @plot.register("test_extra", "extra.json", "a registered plot")
    def extra(fig, data):
        fig.subplots().set_title(data["title"])
    try:
        fig = plot.render("test_extra", {"title": "hello"})
        assert fig.axes[0].get_title() == "hello"
    finally:
        del plot.PLOTS["test_extra"]


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_plain_lines(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    s = io.StringIO()
    assert list(prog.progress(range(5), desc="job", stream=s)) == list(range(5))
    lines = s.getvalue().splitlines()
    assert [x.split(" (")[0] for x in lines] == [f"job: {i}/5 it" for i in range(1, 6)]
    s = io.StringIO()
    list(prog.progress(range(100), desc="long", unit="img", stream=s))
    assert len(s.getvalue().splitlines()) == 10 and "long: 100/100 img" in s.getvalue()
    assert "\r" not in s.getvalue()


def test_progress_bar_on_terminal(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HEATVIT_PROGRESS", raising=False)
    s = Tty()
    assert list(prog.progress(range(3), desc="bar", stream=s)) == [0, 1, 2]
    assert "\r" in s.getvalue() and "3/3" in s.getvalue()          # tqdm redraws the line
    monkeypatch.setenv("CI", "true")
    s = Tty()
    list(prog.progress(range(3), desc="ci", stream=s))
    assert "\r" not in s.getvalue() and "ci: 3/3 it" in s.getvalue()


def test_training_plot_labelled():
    rows = [{"seed": s, "float_top1": 0.97 + 0.002 * s, "int8_top1": 0.968, "pruned_int8_top1": 0.96 - 0.001 * s,
             "mac_reduction": 0.46} for s in range(3)]
    fig = plot.render("training", {"seeds": rows, "targets": {"mean_pruned_int8_top1": 0.96, "mean_mac_reduction": 0.45}})
    t = all_texts(fig)
    assert {"accuracy per seed", "MACs saved", "training seed", "0", "1", "2", "target mean"} <= set(t)
    assert "float (mean 97.20)" in t and "int8 + selectors (mean 95.90)" in t
    with pytest.raises(ValueError, match="training.json"):
        plot.render("training", {})
