"""Robustness of the training recipe: the documented training command over several seeds.

``heatvit bench training`` (from the repository root, with the ``train`` extra; long, so not part
of ``heatvit bench`` without names, nor of CI) runs ``python train/train_digits.py --seed S
--work build/train/seedS`` for each seed in ``SEEDS`` (``HEATVIT_TRAIN_SEEDS=0,1,..`` for another
list), ``HEATVIT_TRAIN_JOBS`` (1..8, default 2) at a time with one torch thread each, then evaluates
each model with the accuracy bench (``heatvit bench accuracy --model``, a subprocess: the integer
golden model on the 360 test images) and writes ``build/bench/training.json``: per seed ``seed,
float_top1, int8_top1, pruned_int8_top1, mac_reduction, plan, train_seconds`` (wall),
``train_cpu_seconds``, the pruned float top-1 and ``cycle_reduction`` (GEMM-engine cycles of the
accuracy bench, ``estimate_cycles`` of the model's config); the mean and the sample standard deviation (ddof 1) of each figure; the
targets and whether they are met; the committed model's figures and whether its pruned int8
top-1 lies within one standard deviation of the mean.

A seed whose ``build/train/seedS/vit_digits.npz`` was written by the same command with the same
recipe (the metadata's ``commands`` and ``recipe``) is evaluated again without retraining; delete
the directory to retrain.  After a change of the selector recipe only, the script reuses the
seed's backbone checkpoint (its ``backbone.json`` names the seed, epochs and backbone recipe).  ``--quick``: one seed, one epoch per phase on 64 images (a smoke run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..golden.vit import model as model_io
from ..progress import progress

SEEDS = (0, 1, 2, 3, 4)
SCRIPT = Path("train/train_digits.py")
QUICK_ARGS = ["--epochs", "1", "--sel-epochs", "1", "--limit", "64"]
TARGETS = {"mean_float_top1": 0.97, "mean_pruned_int8_top1": 0.96, "std_pruned_int8_top1": 0.01,
           "mean_mac_reduction": 0.45}
FIGURES = ("float_top1", "int8_top1", "pruned_int8_top1", "pruned_float_top1", "mac_reduction", "cycle_reduction",
           "train_seconds", "train_cpu_seconds")


def load_script(path: Path = SCRIPT):
    """The training script as a module (for its argument parser and recipe)."""
    import importlib.util
    if not path.is_file():
        raise ValueError(f"{path} not found: run the training bench from the repository root")
    spec = importlib.util.spec_from_file_location("train_digits", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def seed_args(seed: int, work: Path, quick: bool) -> list[str]:
    return ["--seed", str(seed), "--work", str(work), *(QUICK_ARGS if quick else [])]


def up_to_date(script, args: list[str]) -> bool:
    """Whether WORK/vit_digits.npz was made by exactly this command and recipe."""
    ns = script.parse_args(args)
    if not ns.out.is_file():
        return False
    meta = model_io.load_npz(ns.out).meta
    return (meta.get("commands") == [script.canonical_command(args)]
            and meta.get("recipe") == json.loads(json.dumps(script.recipe(ns))))


def train(seed: int, args: list[str], log: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        res = subprocess.run([sys.executable, str(SCRIPT), *args], stdout=f, stderr=subprocess.STDOUT, env=env)
    if res.returncode:
        raise RuntimeError(f"training seed {seed} failed (exit {res.returncode}); see {log}")


def evaluated(model: Path, out: Path, quick: bool) -> bool:
    """Whether ``out/accuracy.json`` already evaluates this ``model`` file: written after it, for
    its path, in the same mode (the evaluation is deterministic, so it is not run again)."""
    path = out / "accuracy.json"
    if not (path.is_file() and model.is_file() and path.stat().st_mtime > model.stat().st_mtime):
        return False
    r = json.loads(path.read_text())
    return r.get("model") == str(model) and bool(r.get("quick")) == quick


def evaluate(model: Path, out: Path, quick: bool, log: Path) -> dict:
    """The accuracy bench on ``model`` in a subprocess (so evaluations run in parallel), its
    accuracy.json written to ``out`` (kept when it already evaluates this model file,
    :func:`evaluated`); the training-bench figures from it."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-P", "-m", "heatvit.cli", "bench", "accuracy", "--model", str(model), "--out", str(out),
           *(["--quick"] if quick else [])]
    if not evaluated(model, out, quick):
        with open(log, "a") as f:
            res = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if res.returncode:
            raise RuntimeError(f"evaluating {model} failed (exit {res.returncode}); see {log}")
    r = json.loads((out / "accuracy.json").read_text())
    return {"float_top1": r["float_top1"], "int8_top1": r["int8_top1"], "pruned_int8_top1": r["pruned_int8_top1"],
            "pruned_float_top1": r["pruned_float_top1"], "mac_reduction": r["mac_reduction"],
            "cycle_reduction": 1.0 - r["gemm_cycles_pruned"] / r["gemm_cycles_dense"],
            "plan": {"blocks": r["selector_blocks"], "keep_ratios": r["target_keep_ratios"],
                     "measured_keep": [round(v, 4) for v in r["keep_ratio_per_stage"]]}}


def run_seed(script, seed: int, args: list[str], root: Path, quick: bool, retrain: bool) -> dict:
    """Train seed ``seed`` (unless ``retrain`` is false), then evaluate its model."""
    work, log = root / f"seed{seed}", root / f"seed{seed}.log"
    if retrain:
        train(seed, args, log)
    row = {"seed": seed, **evaluate(work / "vit_digits.npz", work / "eval", quick, root / f"seed{seed}.eval.log")}
    times = json.loads((work / "run.json").read_text())[-1]
    row["train_seconds"] = round(sum(times["seconds"].values()), 1)
    row["train_cpu_seconds"] = round(sum(times.get("cpu_seconds", {}).values()), 1)
    row["command"] = script.canonical_command(args)
    return row


def main(out_dir: Path, quick: bool = False) -> list[Path]:
    script = load_script()
    seeds = SEEDS[:1] if quick else SEEDS
    if os.environ.get("HEATVIT_TRAIN_SEEDS"):
        text = os.environ["HEATVIT_TRAIN_SEEDS"]
        try:
            seeds = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"HEATVIT_TRAIN_SEEDS must be comma-separated integers, not {text!r}") from None
    root = Path("build/train") / ("quick" if quick else "")
    jobs = int(os.environ.get("HEATVIT_TRAIN_JOBS", "2"))
    if not 1 <= jobs <= 8:
        raise ValueError(f"HEATVIT_TRAIN_JOBS must be 1..8, not {jobs!r}")
    runs = {s: seed_args(s, root / f"seed{s}", quick) for s in seeds}
    todo = [s for s in seeds if not up_to_date(script, runs[s])]
    for s in seeds:
        if s not in todo:
            print(f"seed {s}: reusing {root / f'seed{s}'} (same command and recipe); evaluating it again", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(run_seed, script, s, runs[s], root, quick, s in todo) for s in seeds]
        committed_f = pool.submit(evaluate, model_io.DEFAULT_MODEL, root / "committed_eval", quick,
                                  root / "committed_eval.log")
        rows = []
        for f in progress(futures, desc="training + evaluating seeds", unit="seed"):
            rows.append(f.result())
            print(f"seed {rows[-1]['seed']}: " + ", ".join(f"{k} {rows[-1][k]:.4f}" for k in FIGURES[:6]), flush=True)
        committed = committed_f.result()
    stats = {}
    for k in FIGURES:
        v = np.array([r[k] for r in rows], float)
        stats[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                    "min": float(v.min()), "max": float(v.max())}
    mean, std = stats["pruned_int8_top1"]["mean"], stats["pruned_int8_top1"]["std"]
    met = {"mean_float_top1": stats["float_top1"]["mean"] >= TARGETS["mean_float_top1"],
           "mean_pruned_int8_top1": mean >= TARGETS["mean_pruned_int8_top1"],
           "std_pruned_int8_top1": std is not None and std <= TARGETS["std_pruned_int8_top1"],
           "mean_mac_reduction": stats["mac_reduction"]["mean"] >= TARGETS["mean_mac_reduction"],
           "committed_within_one_std": std is not None and abs(committed["pruned_int8_top1"] - mean) <= std}
    res = {"seeds": rows, "stats": stats, "std": "sample standard deviation (ddof 1) over the seeds",
           "targets": TARGETS, "targets_met": met,
           "committed": {"model": str(model_io.DEFAULT_MODEL), **committed,
                         "meta_commands": model_io.load_npz(model_io.DEFAULT_MODEL).meta.get("commands")},
           "quick": quick, "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    path = Path(out_dir) / "training.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"{'figure':18s} {'mean':>8s} {'std':>8s}")
    for k in FIGURES:
        sd = stats[k]["std"]
        print(f"{k:18s} {stats[k]['mean']:8.4f} {'-' if sd is None else f'{sd:8.4f}':>8s}")
    print(f"targets met: {met}")
    return [path]
