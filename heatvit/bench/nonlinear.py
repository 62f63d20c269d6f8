"""Error table of the nonlinear units beside I-BERT's, with latency and resource figures.

Writes ``build/bench/nonlinear.json``: ``{"entries": [...], "meta": {...}}``; every entry has
exactly the keys ``name, input_bits, output_bits, segments, degree, inputs_tested, max_err_lsb,
mean_err_lsb, latency_cycles, dsp, lut``.  Errors are measured with the golden models (bit-exact
with the RTL, which the cocotb tests check) against float64 references rounded to the output
format: ``|ours - round(ref)|`` in output LSBs.  Latency is measured in simulation (Amaranth's
simulator, no stalls): elementwise units from input to output handshake, row units from the first
input to the last output of one row.  ``dsp``/``lut``: Debian yosys ``synth_xilinx -family xcup``
of one lane (null when yosys is missing, in quick mode, or for I-BERT, which has no RTL here).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from heatvit.golden import nonlinear as NL
from heatvit.golden.nonlinear import formats as F
from heatvit.golden.nonlinear import ibert
from heatvit.golden.nonlinear.reference import (gelu_ref, layernorm_ref, round_half_away, sigmoid_ref,
                                                 softmax_ref)
from heatvit.golden.nonlinear.tables import table
from heatvit.nonlinear_config import NonlinearConfig

from . import _yosys

SOFTMAX_ROW = 197          # DeiT tokens
LAYERNORM_ROW = 768        # DeiT-B channels
ROW_CYCLES: dict = {}      # steady-state cycles per row of back-to-back rows (measured)


def _err(y, ref, out_lo=None, out_hi=None):
    r = round_half_away(ref)
    if out_lo is not None:
        r = np.clip(r, out_lo, out_hi)
    d = np.abs(np.asarray(y, np.float64) - r)
    return float(d.max()), float(d.mean())


def _entry(name, in_bits, out_bits, tbl, n, err, latency=None, res=None):
    seg, deg = (tbl.segments, tbl.degree) if tbl is not None else (1, 2)
    res = res or {}
    return {"name": name, "input_bits": in_bits, "output_bits": out_bits, "segments": seg, "degree": deg,
            "inputs_tested": int(n), "max_err_lsb": round(err[0], 4), "mean_err_lsb": round(err[1], 5),
            "latency_cycles": latency, "dsp": res.get("dsp"), "lut": res.get("lut")}


# -- measurements in simulation -----------------------------------------------------------------

def _latency_elementwise(dut, x0, setup=None) -> int:
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out = {}

    async def tb(ctx):
        if setup:
            setup(ctx)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload[0], x0)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for cyc in range(1, 200):
            if ctx.get(dut.o.valid):
                out["lat"] = cyc
                return
            await ctx.tick()
    sim.add_testbench(tb)
    sim.run()
    return out["lat"]


def _latency_row(dut, beats, setup=None, rows: int = 1):
    """Cycles from the first input handshake to the first row's last output handshake (inclusive);
    with ``rows`` back-to-back copies of ``beats``, also the steady-state cycles per row."""
    beats = beats * rows
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    out = {}

    async def tb(ctx):
        if setup:
            await setup(ctx)
        ctx.set(dut.o.ready, 1)
        i, cyc, start = 0, 0, None
        while True:
            if i < len(beats):
                ctx.set(dut.i.valid, 1)
                beats[i](ctx)
            else:
                ctx.set(dut.i.valid, 0)
            _, _, iv, ir, ov, last = await ctx.tick().sample(dut.i.valid, dut.i.ready, dut.o.valid,
                                                            dut.o.payload.last)
            cyc += 1
            if iv and ir:
                start = cyc if start is None else start
                i += 1
            if ov and last:
                out.setdefault("lasts", []).append(cyc)
                if len(out["lasts"]) == rows:
                    lasts = out["lasts"]
                    out["lat"] = lasts[0] - start + 1
                    out["per_row"] = (lasts[-1] - lasts[0]) / max(1, rows - 1)
                    return
            if cyc > 20 * len(beats) + 500:
                raise RuntimeError("row unit produced no last beat")
    sim.add_testbench(tb)
    sim.run()
    return (out["lat"], out["per_row"]) if rows > 1 else out["lat"]


def _synth(factory, name: str) -> dict:
    if not _yosys.available():
        return {}
    cells = _yosys.cell_counts(factory(), name)
    return {"dsp": cells.get("DSP48E2", 0), "lut": sum(v for k, v in cells.items() if re.fullmatch(r"LUT\d", k))}


# -- the table ---------------------------------------------------------------------------------

def elementwise_entries(cfg, rng, quick, measure, synth):
    from heatvit.rtl.nonlinear.units import ActUnit, ExpUnit, ReciprocalUnit, RsqrtUnit
    entries = []
    act_bits = F.ACT_BITS

    def act_setup(dut, p):
        def setup(ctx):
            for k in ("in_mult", "in_shift", "out_mult", "out_shift", "out_min", "out_max"):
                ctx.set(getattr(dut.params, k), getattr(p, k))
        return setup

    # GELU core: Q7.12 -> Q7.12, every input
    x = np.arange(-(1 << (act_bits - 1)), 1 << (act_bits - 1))
    xf = x / (1 << F.ACT_FRAC)
    ref = gelu_ref(xf) * (1 << F.ACT_FRAC)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    gelu8 = ActUnit(cfg, "gelu", in_bits=32, out_bits=8)
    p8 = NL.gelu_params(2.0 ** -11, 16 / 127, in_bits=16)
    lat = _latency_elementwise(gelu8, 100, act_setup(gelu8, p8)) if measure else None
    res = synth(lambda: ActUnit(cfg, "gelu", in_bits=32, out_bits=8), "gelu_unit")
    tg = table("gelu", cfg)
    entries.append(_entry("gelu", act_bits, act_bits, tg, len(x), _err(NL.gelu_fixed(x, cfg), ref, lo, hi), lat, res))
    q, s = ibert.i_gelu(x, 2.0 ** -F.ACT_FRAC)
    entries.append(_entry("ibert_gelu", act_bits, act_bits, None, len(x),
                          _err(np.clip(round_half_away(q * s * (1 << F.ACT_FRAC)), lo, hi), ref, lo, hi)))
    # GELU deployment: int16 at 2**-11 -> int8 at 16/127, every input
    x = np.arange(-(1 << 15), 1 << 15)
    ref = gelu_ref(x * p8.s_in) / p8.s_out
    entries.append(_entry("gelu_int16_to_int8", 16, 8, tg, len(x), _err(NL.gelu(x, p8, cfg), ref, -128, 127), lat, res))
    q, s = ibert.i_gelu(x, p8.s_in)
    entries.append(_entry("ibert_gelu_int16_to_int8", 16, 8, None, len(x),
                          _err(np.clip(round_half_away(q * s / p8.s_out), -128, 127), ref, -128, 127)))
    # sigmoid core: Q7.12 -> Q1.15
    x = np.arange(-(1 << (act_bits - 1)), 1 << (act_bits - 1))
    sig = ActUnit(cfg, "sigmoid", in_bits=32, out_bits=17)
    ps = NL.sigmoid_params(2.0 ** -12)
    lat = _latency_elementwise(sig, 100, act_setup(sig, ps)) if measure else None
    entries.append(_entry("sigmoid", act_bits, F.SIGMOID_FRAC + 1, table("sigmoid", cfg), len(x),
                          _err(NL.sigmoid_fixed(x, cfg), sigmoid_ref(x / (1 << F.ACT_FRAC)) * (1 << F.SIGMOID_FRAC)),
                          lat, synth(lambda: ActUnit(cfg, "sigmoid", in_bits=32, out_bits=8), "sigmoid_unit")))
    # exp(-x): Q4.12 -> Q1.15, every input
    x = np.arange(1 << F.EXP_IN_BITS)
    ref = np.exp(-x / (1 << F.EXP_IN_FRAC)) * (1 << F.EXP_OUT_FRAC)
    eu = ExpUnit(cfg)
    lat = _latency_elementwise(eu, 100) if measure else None
    tp = table("pow2", cfg)
    entries.append(_entry("exp", F.EXP_IN_BITS, F.EXP_OUT_FRAC + 1, tp, len(x), _err(NL.exp_neg(x, cfg), ref), lat,
                          synth(lambda: ExpUnit(cfg), "exp_unit")))
    q, s = ibert.i_exp(-x, 2.0 ** -F.EXP_IN_FRAC)
    entries.append(_entry("ibert_exp", F.EXP_IN_BITS, F.EXP_OUT_FRAC + 1, None, len(x),
                          _err(round_half_away(q * s * (1 << F.EXP_OUT_FRAC)), ref)))
    # reciprocal / rsqrt: every 16-bit input plus random 32-bit ones; 17-bit mantissa out
    n_rand = (1 << 16) if quick else (1 << 20)
    x = np.concatenate([np.arange(1, 1 << 16), rng.integers(1 << 16, 1 << 32, n_rand), [(1 << 32) - 1]])
    for name, fn, unit, tname, ref_fn in (
            ("reciprocal", NL.reciprocal, lambda: ReciprocalUnit(cfg, 32), "reciprocal", lambda x, e: 2.0 ** (16 + e) / x),
            ("rsqrt", NL.rsqrt, lambda: RsqrtUnit(cfg, 32), "rsqrt", lambda x, e: 2.0 ** (16 + e) / np.sqrt(x))):
        r, e = fn(x, 32, cfg)
        lat = _latency_elementwise(unit(), 12345) if measure else None
        entries.append(_entry(name, 32, F.RECIP_FRAC + 1, table(tname, cfg), len(x), _err(r, ref_fn(x, e)), lat,
                              synth(unit, f"{name}_unit")))
    return entries


def softmax_rows(rng, n_rows, n_tok, cfg):
    """Batches of random rows: each batch its own calibrated scale and logit spread."""
    batches = []
    per = max(1, n_rows // 10)
    for _ in range(n_rows // per):
        s_in = float(10 ** rng.uniform(-5, -1))
        std = float(10 ** rng.uniform(-0.5, 1.0))                # logit spread 0.3 .. 10
        x = np.clip(np.round(rng.normal(0, std, (per, n_tok)) / s_in), -2 ** 31, 2 ** 31 - 1).astype(np.int64)
        batches.append((s_in, x))
    lo, hi = -2 ** 31, 2 ** 31 - 1
    spike = np.full(n_tok, lo)
    spike[n_tok // 2] = hi
    adv = [np.zeros(n_tok, int), np.full(n_tok, 77), spike, np.full(n_tok, lo), np.full(n_tok, hi),
           np.array([3]), np.r_[hi, lo], rng.integers(lo, hi, cfg.max_tokens, endpoint=True)]
    return batches, adv


def softmax_entries(cfg, rng, quick, measure, synth):
    from heatvit.rtl.nonlinear.rows import SoftmaxUnit
    n_rows = 1000 if quick else 10_000
    batches, adv = softmax_rows(rng, n_rows, SOFTMAX_ROW, cfg)
    ours, theirs, n = [], [], 0
    for s_in, x in batches + [(0.01, r[None]) for r in adv] + [(2.0 ** -10, r[None]) for r in adv]:
        p = NL.softmax_params(s_in)
        ref = softmax_ref(x * s_in) * 255
        ours.append(np.abs(NL.softmax(x, p, cfg) - round_half_away(ref)).ravel())
        theirs.append(np.abs(ibert.softmax(x, s_in) - round_half_away(ref)).ravel())
        n += len(x)
    lat = res = None
    if measure:
        dut = SoftmaxUnit(cfg)
        p = NL.softmax_params(0.01)
        row = rng.integers(-500, 500, SOFTMAX_ROW)

        async def setup(ctx):
            for k in ("mult", "shift", "out_max"):
                ctx.set(getattr(dut.params, k), getattr(p, k))

        L = cfg.row_lanes

        def beat(chunk, last):
            def f(ctx):
                for j, v in enumerate(chunk):
                    ctx.set(dut.i.payload.data[j], int(v))
                ctx.set(dut.i.payload.count, len(chunk))
                ctx.set(dut.i.payload.last, last)
            return f
        lat, per_row = _latency_row(dut, [beat(row[b:b + L], int(b + L >= len(row))) for b in range(0, len(row), L)],
                                    setup, rows=3)
        ROW_CYCLES["softmax"] = per_row
    res = synth(lambda: SoftmaxUnit(cfg), "softmax_unit")
    stats = lambda e: (float(np.concatenate(e).max()), float(np.concatenate(e).mean()))
    tp = table("pow2", cfg)
    return [_entry("softmax", cfg.softmax_in_bits, 8, tp, n, stats(ours), lat, res),
            _entry("ibert_softmax", cfg.softmax_in_bits, 8, None, n, stats(theirs))]


def layernorm_entries(cfg, rng, quick, measure, synth):
    from heatvit.rtl.nonlinear.rows import LayerNormUnit
    n_rows = 1000 if quick else 10_000
    ours, theirs, n = [], [], 0
    per = n_rows // 10
    setups = []
    for b in range(10):
        dim = [192, 384, 768][b % 3] if b < 9 else int(rng.integers(2, cfg.max_dim + 1))
        gamma, beta = rng.normal(1, 0.4, dim), rng.normal(0, 0.4, dim)
        s_x = float(10 ** rng.uniform(-2, -0.5))
        s_out = float((np.abs(gamma).max() * 3 + np.abs(beta).max()) / 127)
        std = float(rng.uniform(5, 60))
        x = np.clip(np.round(rng.normal(0, std, (per, dim)) + rng.normal(0, std / 2, (per, 1))), -128, 127)
        setups.append((gamma, beta, s_x, s_out, x.astype(np.int64)))
    for dim in (768, 1):
        gamma, beta = rng.normal(1, 0.4, dim), rng.normal(0, 0.4, dim)
        spike = np.full(dim, -128)
        spike[0] = 127
        adv = np.stack([np.zeros(dim, int), np.full(dim, 9), spike, np.full(dim, -128), np.full(dim, 127)])
        setups.append((gamma, beta, 0.05, float((np.abs(gamma).max() * 3 + np.abs(beta).max()) / 127), adv))
    for gamma, beta, s_x, s_out, x in setups:
        p = NL.layernorm_params(gamma, beta, 1e-6, s_x, s_out, cfg=cfg)
        ref = np.clip(round_half_away(layernorm_ref(x * s_x, gamma, beta, 1e-6) / s_out), -128, 127)
        ours.append(np.abs(NL.layernorm(x, p, cfg) - ref).ravel())
        theirs.append(np.abs(ibert.layernorm(x, gamma, beta, 1e-6, s_x, s_out) - ref).ravel())
        n += len(x)
    lat = None
    if measure:
        dut = LayerNormUnit(cfg)
        dim = LAYERNORM_ROW
        p = NL.layernorm_params(np.ones(dim), np.zeros(dim), 1e-6, 0.05, 0.03, cfg=cfg)
        row = rng.integers(-128, 128, dim)

        async def setup(ctx):
            ctx.set(dut.params.length, dim)
            ctx.set(dut.params.eps, p.eps_q)
            ctx.set(dut.params.out_shift, p.out_shift)

        L = cfg.row_lanes

        def beat(chunk):
            def f(ctx):
                for j, v in enumerate(chunk):
                    ctx.set(dut.i.payload[j], int(v))
            return f
        lat, per_row = _latency_row(dut, [beat(row[b:b + L]) for b in range(0, dim, L)], setup, rows=3)
        ROW_CYCLES["layernorm"] = per_row
    res = synth(lambda: LayerNormUnit(cfg), "layernorm_unit")
    stats = lambda e: (float(np.concatenate(e).max()), float(np.concatenate(e).mean()))
    tr = table("rsqrt", cfg)
    return [_entry("layernorm", cfg.layernorm_in_bits, 8, tr, n, stats(ours), lat, res),
            _entry("ibert_layernorm", cfg.layernorm_in_bits, 8, None, n, stats(theirs))]


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    t0 = time.time()
    cfg = NonlinearConfig()
    rng = np.random.default_rng(20231)
    use_yosys = not quick and _yosys.available()
    synth = _synth if use_yosys else (lambda factory, name: {})
    entries = elementwise_entries(cfg, rng, quick, True, synth)
    entries += softmax_entries(cfg, rng, quick, True, synth)
    entries += layernorm_entries(cfg, rng, quick, True, synth)
    targets = {e["name"]: e["max_err_lsb"] <= 1 for e in entries if not e["name"].startswith("ibert")}
    meta = {
        "config": cfg.to_dict(),
        "error": "max / mean of |ours - round(float64 reference)| in output LSBs; references: erf GELU, "
                 "exp, 1/x, 1/sqrt(x) (mantissa at the unit's exponent), float softmax and LayerNorm of the "
                 "dequantized inputs, saturated to the output range",
        "inputs_tested": "elements for elementwise units (exhaustive where input_bits <= 20; reciprocal/rsqrt: "
                         "every 16-bit input + random 32-bit), rows for softmax / layernorm (random + adversarial)",
        "latency": f"cycles, no stalls: elementwise input->output; softmax one row of {SOFTMAX_ROW}, layernorm "
                   f"one row of {LAYERNORM_ROW}, first input -> last output, {cfg.row_lanes} elements per beat",
        "row_cycles_back_to_back": dict(ROW_CYCLES),
        "resources": "yosys synth_xilinx -family xcup, one lane, LUT1..LUT6 and DSP48E2 cells"
                     if use_yosys else "not run (quick mode or yosys missing)",
        "ibert": "I-BERT integer kernels at our input scale; result rescaled to our output format with one "
                 "exact rounding (LayerNorm affine in float): flatters I-BERT",
        "targets_met": targets,
        "seconds": round(time.time() - t0, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "nonlinear.json"
    path.write_text(json.dumps({"entries": entries, "meta": meta}, indent=1))
    for e in entries:
        print(f"{e['name']:28s} in {e['input_bits']:2d} out {e['output_bits']:2d} seg {e['segments']:3d} "
              f"deg {e['degree']} n {e['inputs_tested']:8d} max {e['max_err_lsb']:9.4f} mean {e['mean_err_lsb']:9.5f} "
              f"lat {e['latency_cycles']} dsp {e['dsp']} lut {e['lut']}")
    return [path]
