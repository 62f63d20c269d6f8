"""Pictures of the benchmark results (``heatvit plot``), drawn with matplotlib (the ``plot`` extra).

Every plot is registered with :func:`register` under a name, with the benchmark JSON it reads
(a file name under the bench directory, default ``build/bench/``)::

    @register("gemm", "gemm.json", "GEMM-engine utilization per encoder GEMM")
    def gemm(fig, data): ...          # draw into the matplotlib Figure

Registered: ``gemm`` (``gemm.json``), ``nonlinear`` (``nonlinear.json``), ``training``
(``training.json``), ``perf`` (``perf.json``), ``e2e`` (``e2e.json``).  ``heatvit plot [NAME ...] [--bench DIR] [--out DIR]`` draws the named plots (default: every plot
whose JSON exists) to ``DIR/NAME.png`` (default ``build/plots/``).  A new plot (per-layer
latency of the whole accelerator, a performance table) is one more decorated function.  No
pyplot state: figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def _mpl():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("drawing needs matplotlib: pip install 'heatvit[plot]'") from None
    return matplotlib


def new_figure(figsize=(8, 4.5), layout: str | None = "constrained"):
    """A pyplot-free matplotlib figure (constrained layout: titles, labels and legends never overlap)."""
    _mpl()
    from matplotlib.figure import Figure
    return Figure(figsize=figsize, layout=layout)


def save(fig, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


@dataclass(frozen=True)
class Plot:
    name: str
    source: str
    """Benchmark JSON file name (under the bench directory)."""
    title: str
    draw: Callable


PLOTS: dict[str, Plot] = {}


def register(name: str, source: str, title: str):
    """Decorator: register ``draw(fig, data)`` as plot ``name`` of the JSON file ``source``."""
    def deco(draw):
        if name in PLOTS:
            raise ValueError(f"plot {name!r} is already registered")
        PLOTS[name] = Plot(name, source, title, draw)
        return draw
    return deco


def render(name: str, data):
    """The figure of plot ``name`` for the loaded JSON ``data``."""
    if name not in PLOTS:
        raise ValueError(f"unknown plot {name!r}; available: {', '.join(PLOTS)}")
    fig = new_figure()
    PLOTS[name].draw(fig, data)
    return fig


def _bar_labels(ax, bars, fmt):
    ax.bar_label(bars, labels=[fmt(b.get_height()) for b in bars], fontsize=6, padding=1, rotation=90)


@register("gemm", "gemm.json", "GEMM-engine utilization per encoder GEMM")
def gemm(fig, rows):
    """Grouped bars: utilization (ideal / measured cycles) of each encoder GEMM, one bar per model;
    the benchmark's minimum target as a line."""
    from .bench.gemm import TARGET_MIN
    if not isinstance(rows, list) or not rows:
        raise ValueError("gemm.json: expected a non-empty list of GEMM entries")
    models = list(dict.fromkeys(r["model"] for r in rows))
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    util = {(r["model"], r["layer"]): r["utilization"] for r in rows}
    ax = fig.subplots()
    width = 0.8 / len(models)
    x = np.arange(len(layers))
    for i, m in enumerate(models):
        h = [util.get((m, lay), np.nan) for lay in layers]
        bars = ax.bar(x + (i - (len(models) - 1) / 2) * width, h, width, label=m)
        _bar_labels(ax, bars, lambda v: f"{v:.3f}")
    ax.axhline(TARGET_MIN, color="red", ls="--", lw=1, label=f"target min {TARGET_MIN}")
    ax.set_xticks(x, layers)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("utilization = ideal / measured cycles")
    ax.set_xlabel("GEMM of one encoder block (attention GEMMs: one head), 197 tokens")
    ax.set_title(f"GEMM engine {rows[0]['rows']} x {rows[0]['cols']}: utilization in RTL simulation")
    ax.legend(fontsize=8, loc="upper center", ncol=len(models) + 1)


@register("nonlinear", "nonlinear.json", "nonlinear units: error vs I-BERT")
def nonlinear(fig, data):
    """Max and mean error (output LSBs, log scale) of each nonlinear unit beside I-BERT's kernel
    at the same widths; the 1-LSB target as a line.  Units without an I-BERT twin are drawn alone."""
    entries = data.get("entries") if isinstance(data, dict) else None
    if not entries:
        raise ValueError("nonlinear.json: expected {'entries': [...], 'meta': {...}}")
    by_name = {e["name"]: e for e in entries}
    ours = [n for n in by_name if not n.startswith("ibert_")]
    floor = 1e-4                                   # an exact unit (error 0) still gets a visible stub
    axes = fig.subplots(1, 2)
    x = np.arange(len(ours))
    for ax, key, what in zip(axes, ("max_err_lsb", "mean_err_lsb"), ("max", "mean")):
        for off, label, names in ((-0.2, "heatvit", ours), (0.2, "I-BERT", [f"ibert_{n}" for n in ours])):
            h = [max(by_name[n][key], floor) if n in by_name else np.nan for n in names]
            bars = ax.bar(x + off, h, 0.4, label=label)
            ax.bar_label(bars, labels=["" if n not in by_name else f"{by_name[n][key]:.3g}" for n in names],
                         fontsize=6, padding=1, rotation=90)
        ax.axhline(1.0, color="red", ls="--", lw=1, label="1 LSB (target, max)")
        ax.set_yscale("log")
        top = max(e[key] for e in entries)
        ax.set_ylim(floor / 2, max(100.0, top * 30))
        ax.set_xticks(x, [n.replace("_to_", "->\n").replace("_", " ") + ("" if f"ibert_{n}" in by_name else "\n(no I-BERT)")
                          for n in ours], fontsize=7, rotation=30)
        ax.set_ylabel(f"{what} |error| (output LSB)")
        ax.set_title(f"{what} error vs float64 reference")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Nonlinear units: heatvit vs I-BERT at the same widths (golden models, bit-exact with RTL)",
                 fontsize=9)


@register("training", "training.json", "training recipe over seeds: top-1 and MAC reduction")
def training(fig, data):
    """Per seed: float, int8 and pruned-int8 top-1 (bars) with each figure's mean (line) and the
    targets; MAC reduction per seed beside it."""
    rows = data.get("seeds") if isinstance(data, dict) else None
    if not rows:
        raise ValueError("training.json: expected {'seeds': [...], 'stats': {...}, ...}")
    ax, ax2 = fig.subplots(1, 2, width_ratios=(3, 1))
    seeds = [str(r["seed"]) for r in rows]
    x = np.arange(len(rows))
    keys = (("float_top1", "float"), ("int8_top1", "int8"), ("pruned_int8_top1", "int8 + selectors"))
    for i, (k, label) in enumerate(keys):
        vals = [100 * r[k] for r in rows]
        mean = float(np.mean(vals))
        bars = ax.bar(x + (i - 1) * 0.27, vals, 0.27, label=f"{label} (mean {mean:.2f})")
        _bar_labels(ax, bars, lambda v: f"{v:.1f}")
    targets = data.get("targets", {})
    if "mean_pruned_int8_top1" in targets:
        ax.axhline(100 * targets["mean_pruned_int8_top1"], color="red", ls="--", lw=1,
                   label=f"target mean, with selectors ({100 * targets['mean_pruned_int8_top1']:.0f})")
    lo = min(100 * min(r[k] for r in rows) for k, _ in keys)
    ax.set_ylim(max(0.0, lo - 3), 101)
    ax.set_xticks(x, seeds)
    ax.set_xlabel("training seed")
    ax.set_ylabel("top-1 on 360 test images (%)")
    ax.set_title("accuracy per seed")
    ax.legend(fontsize=7, loc="lower right")
    mac = [100 * r["mac_reduction"] for r in rows]
    bars = ax2.bar(x, mac, 0.6, color="tab:gray")
    _bar_labels(ax2, bars, lambda v: f"{v:.1f}")
    if "mean_mac_reduction" in targets:
        ax2.axhline(100 * targets["mean_mac_reduction"], color="red", ls="--", lw=1, label="target mean")
        ax2.legend(fontsize=7, loc="lower right")
    ax2.set_xticks(x, seeds)
    ax2.set_ylim(0, 100)
    ax2.set_xlabel("training seed")
    ax2.set_ylabel("MAC reduction with selectors (%)")
    ax2.set_title("MACs saved")
    fig.suptitle("Training recipe over seeds (heatvit bench training)", fontsize=10)


@register("perf", "perf.json", "board configuration: DeiT latency vs published, pruning by array")
def perf(fig, data):
    """Left: ms per image for DeiT-T/S/B, dense and pruned, on the board configuration, beside the
    published ZCU102 accelerators (ms = 1000 / FPS).  Right: DeiT-S cycle reduction from pruning
    per array size, this engine and the previous ``max(M, 2R + C)`` floor, against the MAC
    reduction."""
    models = data.get("models") if isinstance(data, dict) else None
    if not models:
        raise ValueError("perf.json: expected {'models': {...}, 'pruning_by_array': [...], ...}")
    ax, ax2 = fig.subplots(1, 2, width_ratios=(3, 2))
    names = list(models)
    x = np.arange(len(names))
    for off, key in ((-0.2, "dense"), (0.2, "pruned")):
        bars = ax.bar(x + off, [models[n][key]["ms"] for n in names], 0.4, label=f"heatvit {data['array']} {key}")
        _bar_labels(ax, bars, lambda v: f"{v:.2f}")
    for i, row in enumerate(data.get("published", [])):
        if row["model"].replace("ViT-S", "DeiT-S") in names:
            ms = row.get("ms") or 1000.0 / row["fps"]
            ax.plot(names.index(row["model"].replace("ViT-S", "DeiT-S")) + 0.45, ms, marker="o^sDv"[i % 5],
                    ls="", label=f"{row['work']} {row.get('precision', '')}".strip())
    ax.set_xticks(x, names)
    ax.set_ylabel(f"ms per image at {data['clock_mhz']:g} MHz")
    res = (data.get("board_measured") or {}).get("resources")
    used = (f"\n{res['DSP48E2']:,.0f} DSP48E2, {res['LUT']:,.0f} LUT, {res['BRAM36']:,.1f} BRAM36 (yosys, whole accelerator)"
            if res else "")
    ax.set_title(f"{data['array']} array, {data['dsp_packing']} MACs/DSP48E2, GEMM cycles + DDR model{used}", fontsize=9)
    ax.legend(fontsize=6, loc="upper left")
    rows = data.get("pruning_by_array", [])
    xa = np.arange(len(rows))
    for off, key, label in ((-0.27, "mac_reduction", "MACs"), (0, "cycle_reduction", "cycles"),
                            (0.27, "floor_model_cycle_reduction", "cycles, max(M, 2R + C) floor")):
        bars = ax2.bar(xa + off, [100 * r[key] for r in rows], 0.27, label=label)
        _bar_labels(ax2, bars, lambda v: f"{v:.1f}")
    ax2.set_xticks(xa, [r["array"] for r in rows], fontsize=7)
    ax2.set_ylim(0, 50)
    ax2.set_ylabel("reduction by pruning, DeiT-S (%)")
    ax2.set_title("pruning's saving by array size")
    ax2.legend(fontsize=6, loc="upper right")



def draw_layers(ax, layers: list[dict], title: str) -> None:
    """Per-layer cycles of one image on the whole accelerator: measured (CYCLES records) beside the
    compiler's estimate (phases overlapped) as bars, GEMM-only (``estimate_cycles``) as ticks;
    ``layers``: :func:`heatvit.e2e.layer_table` rows (a debug build's ``:debug`` stores left out)."""
    rows = [r for r in layers if not r["name"].endswith(":debug")]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["cycles_measured"] for r in rows], 0.4, label="measured (RTL, CYCLES records)")
    ax.bar(x + 0.2, [r["cycles_estimated"] for r in rows], 0.4, label="estimate, phases overlapped")
    ax.plot(x, [r["cycles_gemm_only"] or np.nan for r in rows], "k_", ms=8, label="GEMM-only (estimate_cycles)")
    ax.set_xticks(x, [r["name"] for r in rows], rotation=90, fontsize=5 if len(rows) > 40 else 7)
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_yscale("log")
    ax.set_ylabel("cycles")
    tot = sum(r["cycles_measured"] for r in rows)
    est = sum(r["cycles_estimated"] for r in rows)
    ax.set_title(f"{title}: {tot:,} cycles measured over layers, estimate {est:,}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")


@register("e2e", "e2e.json", "whole accelerator: per-layer cycles, measured vs estimated")
def e2e(fig, data):
    """One panel per run of ``heatvit bench e2e``: its image's per-layer cycles (:func:`draw_layers`)."""
    runs = data.get("runs") if isinstance(data, dict) else None
    if not runs:
        raise ValueError("e2e.json: expected {'runs': [...], ...}")
    fig.set_size_inches(max(8.0, 0.12 * max(len(r["layers"]) for r in runs)), 4.5 * len(runs))
    for ax, r in zip(np.atleast_1d(fig.subplots(len(runs), 1)), runs):
        draw_layers(ax, r["layers"], f"{r['model']} on {r['config']}")

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="heatvit plot", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help=f"plots to draw ({', '.join(PLOTS)}; default: every plot whose JSON exists)")
    ap.add_argument("--bench", type=Path, default=Path("build/bench"), help="directory of the benchmark JSONs")
    ap.add_argument("--out", type=Path, default=Path("build/plots"), help="directory of the PNGs")
    ap.add_argument("--dpi", type=int, default=120)
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in PLOTS]
    if unknown:
        raise ValueError(f"unknown plot(s) {unknown}; available: {', '.join(PLOTS)}")
    names = args.names or [n for n, p in PLOTS.items() if (args.bench / p.source).is_file()]
    if not names:
        raise ValueError(f"no benchmark JSON in {args.bench} for any plot ({', '.join(PLOTS)}); run `heatvit bench` first")
    for name in names:
        src = args.bench / PLOTS[name].source
        if not src.is_file():
            raise ValueError(f"plot {name!r} reads {src}, which does not exist (run `heatvit bench {name}`)")
        try:
            data = json.loads(src.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{src}: not valid JSON ({e})") from None
        path = save(render(name, data), args.out / f"{name}.png", dpi=args.dpi)
        print(f"wrote {path}: {PLOTS[name].title} (from {src})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
