"""Smoke run of the training script (one epoch per phase on a slice) and the documented commands.

Needs torch and scikit-learn (the ``train`` extra; CI installs torch); skipped cleanly without.
Runs from the repository root the way the docs say (``python train/train_digits.py``,
``heatvit bench accuracy --model``, ``heatvit heatmap --model``), so a checkout's ``heatvit/``
folder shadowing the installed package would show here.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heatvit.golden.vit import data as vit_data, model as model_io

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "train" / "train_digits.py"


def run(args, **kw):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)


def heatvit_cli():
    exe = shutil.which("heatvit", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the heatvit console script is not installed next to this Python")
    return exe


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    work = tmp_path_factory.mktemp("train")
    splits_before = vit_data.SPLITS.read_bytes()
    res = run([sys.executable, str(SCRIPT.relative_to(ROOT)), "--seed", "3", "--epochs", "1", "--sel-epochs", "1",
               "--adapt-epochs", "2", "--limit", "64", "--work", str(work)])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert vit_data.SPLITS.read_bytes() == splits_before            # the committed splits are never rewritten
    return work, res.stdout


def test_smoke_writes_loadable_model(smoke):
    work, out = smoke
    model = model_io.load_npz(work / "vit_digits.npz")             # default --out: WORK/vit_digits.npz
    assert model.plan.blocks and len(model.selectors) == len(model.plan.blocks)
    m = model.meta
    assert m["seed"] == 3
    # the recorded command leaves out where files go (--work, --out): same training, same metadata
    assert m["commands"] == ["python train/train_digits.py --seed 3 --epochs 1 --sel-epochs 1 --adapt-epochs 2 "
                             "--limit 64"]
    assert {"python", "torch", "numpy", "scikit-learn", "heatvit"} <= set(m["versions"])
    assert m["latency_config"]["spec"] == "default" and m["latency_config"]["gemm"] == [16, 16]
    assert m["recipe"]["backbone_epochs"] == 1 and m["recipe"]["limit"] == 64
    assert m["plan_search"]["cycle_ratio"] <= 0.8 and m["plan_search"]["mac_ratio"] <= 0.55
    # the default plan is the fixed one (no per-seed search), checked against the budgets
    from heatvit.bench.training import load_script
    td = load_script(SCRIPT)
    assert m["plan_search"]["fixed"] == td.DEFAULT_PLAN
    assert model.plan == td.parse_plan(td.DEFAULT_PLAN)
    # the cut is calibrated after the Gumbel epochs, before the second adaptation epoch and after the last
    assert out.count("keep-logit offsets") == 3
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("adapt epoch")] == \
        ["adapt epoch 1/2", "adapt epoch 2/2"]
    runs = json.loads((work / "run.json").read_text())
    assert set(runs[-1]["seconds"]) == {"backbone", "plan", "selectors"}
    # the splits copy in the work directory equals the committed splits
    with np.load(work / "digits_splits.npz") as z, np.load(vit_data.SPLITS) as c:
        assert all(np.array_equal(z[k], c[k]) for k in ("test_x", "test_y", "calib_x", "calib_y"))


def test_cut_checks_budgets(smoke):
    work, _ = smoke
    plan = json.loads((work / "plan.json").read_text())
    loose = ",".join(str(0.99 - 0.01 * i) for i in range(len(plan["blocks"])))
    res = run([sys.executable, "train/train_digits.py", "--phase", "cut", "--keep", loose, "--seed", "3",
               "--limit", "64", "--work", str(work), "--out", str(work / "cut.npz")])
    assert res.returncode != 0
    assert "no selector plan on config 'default' (16 x 16 array) meets the budgets" in res.stderr
    assert "binds" in res.stderr and not (work / "cut.npz").exists()
    res = run([sys.executable, "train/train_digits.py", "--phase", "cut", "--seed", "4", "--work", str(work)])
    assert res.returncode != 0 and "differs from the seed 3" in res.stderr


def test_documented_eval_commands(smoke, tmp_path):
    work, _ = smoke
    exe = heatvit_cli()
    model = work / "vit_digits.npz"
    res = run([exe, "bench", "accuracy", "--quick", "--model", str(model), "--out", str(tmp_path)])
    assert res.returncode == 0, res.stderr[-3000:]
    acc = json.loads((tmp_path / "accuracy.json").read_text())
    assert acc["model"] == str(model) and acc["provenance"]["seed"] == 3
    assert "seed 3" in res.stdout and "train/train_digits.py --seed 3" in res.stdout
    pytest.importorskip("matplotlib")
    res = run([exe, "heatmap", "--model", str(model), "--images", "1", "--out", str(tmp_path / "h.png")])
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_plan_search_names_binding_budget():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from heatvit.bench.training import load_script
    from heatvit.config import AcceleratorConfig, GemmConfig
    from heatvit.golden.vit.config import PruningPlan, ViTConfig
    td = load_script(SCRIPT)
    cfg = ViTConfig()
    plans = list(td.candidate_plans(cfg))
    acc = AcceleratorConfig()
    with pytest.raises(ValueError, match=r"the MAC budget binds \(--mac-budget 0.05.*best plan found, selectors "
                                         r"before blocks \[\d"):
        td.check_budgets(acc, "default", cfg, plans, 0.8, 0.05)
    with pytest.raises(ValueError, match=r"the cycle budget binds \(--latency-budget 0.1: no plan is fast enough"):
        td.check_budgets(acc, "default", cfg, plans, 0.1, 1.0)
    # one selector at block 1 is fast but saves too few MACs; three selectors save MACs but cost cycles
    pair = [PruningPlan((1,), (0.5,)), PruningPlan((1, 3, 4), (0.7, 0.4, 0.2))]
    (c1, m1), (c2, m2) = (td.plan_cost(acc, cfg, p) for p in pair)
    assert c1 < c2 and m1 > m2
    budget = round(c2 - 0.005, 3)                      # below the three-selector plan's cycles
    with pytest.raises(ValueError, match=rf"the cycle budget binds \(--latency-budget {budget}\) among the plans "
                                         r"within the MAC budget .*selectors before blocks \[1, 3, 4\]"):
        td.check_budgets(acc, "default", cfg, pair, budget, m2)
    assert td.check_budgets(acc, "default", cfg, plans, 0.8, 0.55)
    # plans are priced on the compiled program (compiler.cycles.plan_cycles): pruning pays on an
    # 8 x 8 array too; a config the model does not fit on (32 x 32: a 32-lane buffer word against
    # 16-channel heads) is refused by name
    small = AcceleratorConfig(gemm=GemmConfig(rows=8, cols=8))
    assert td.check_budgets(small, "8", cfg, plans, 0.8, 0.55)
    with pytest.raises(ValueError, match=r"on config '8' \(8 x 8 array\)"):
        td.check_budgets(small, "8", cfg, plans, 0.1, 0.55)
    with pytest.raises(ValueError, match=r"head_dim = 16 is not a multiple of 32"):
        td.check_budgets(AcceleratorConfig(gemm=GemmConfig(rows=32, cols=32)), "32", cfg, plans, 0.8, 0.55)


def test_recorded_command_and_reuse(smoke):
    """The metadata's command leaves out where files go; the training bench reuses a model made
    by the same command and recipe and retrains otherwise."""
    from heatvit.bench.training import load_script, up_to_date
    td = load_script(SCRIPT)
    assert td.canonical_command(["--seed", "2", "--work", "w", "--out=o.npz", "--threads", "2", "--epochs", "5"]) == \
        "python train/train_digits.py --seed 2 --epochs 5"
    work, _ = smoke
    args = ["--seed", "3", "--epochs", "1", "--sel-epochs", "1", "--adapt-epochs", "2", "--limit", "64",
            "--work", str(work)]
    assert up_to_date(td, args)
    assert not up_to_date(td, [*args[:-2], "--work", str(work / "elsewhere")])     # no model there
    assert not up_to_date(td, ["--seed", "3", "--epochs", "2", *args[4:]])        # another recipe


def test_plan_search():
    """``--plan search``: the latency-aware search returns a plan within both budgets, the one of
    least proxy KL (on an untrained model and 8 images: the mechanics, not the choice)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import torch
    from heatvit.bench.training import load_script
    from heatvit.config import AcceleratorConfig
    from heatvit.golden.vit.config import ViTConfig
    from heatvit.golden.vit.torch_ref import VisionTransformer
    td = load_script(SCRIPT)
    assert td.parse_args(["--plan", "search"]).fixed_plan is None
    cfg = ViTConfig()
    torch.manual_seed(0)
    x = torch.rand(8, cfg.in_chans, cfg.image_size, cfg.image_size)
    plan, info = td.choose_plan(cfg, VisionTransformer(cfg).eval(), x, AcceleratorConfig(), "default", 0.8, 0.55)
    assert info["cycle_ratio"] <= 0.8 and info["mac_ratio"] <= 0.55 and info["candidates"] > 10
    assert (info["cycle_ratio"], info["mac_ratio"]) == td.plan_cost(AcceleratorConfig(), cfg, plan)


def test_fixed_plan_parsing():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from heatvit.bench.training import load_script
    td = load_script(SCRIPT)
    plan = td.parse_plan("1,3:0.7,0.3")
    assert plan.blocks == (1, 3) and plan.keep_ratios == (0.7, 0.3)
    for bad in ("1,3", "1,x:0.7,0.3", "1:0.7,0.3", "3,1:0.7,0.3", "1,3:0.3,0.7", "1:1.2"):
        with pytest.raises(ValueError, match=r"--plan must|PruningPlan"):
            td.parse_plan(bad)
    with pytest.raises(ValueError, match=r"never before block 0"):
        td.parse_plan("0:0.5")


def test_same_command_same_model(smoke, tmp_path):
    """The documented command is deterministic: a second run in a fresh directory gives the same
    arrays; a run in the first directory reuses its backbone checkpoint (same seed, epochs and
    recipe) and gives the same arrays again."""
    work, _ = smoke
    args = ["--seed", "3", "--epochs", "1", "--sel-epochs", "1", "--adapt-epochs", "2", "--limit", "64"]
    res = run([sys.executable, "train/train_digits.py", *args, "--work", str(tmp_path)])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "reusing" not in res.stdout
    res = run([sys.executable, "train/train_digits.py", *args, "--work", str(work), "--out", str(tmp_path / "again.npz")])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "backbone: reusing" in res.stdout
    with np.load(work / "vit_digits.npz") as a, np.load(tmp_path / "vit_digits.npz") as b, \
            np.load(tmp_path / "again.npz") as c:
        assert set(a.files) == set(b.files) == set(c.files)
        for k in a.files:
            assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]), k


def test_bench_keeps_evaluation_of_same_model(tmp_path):
    """The training bench re-runs the accuracy bench unless its accuracy.json was written after
    the model file, for that path and mode."""
    import os
    from heatvit.bench.training import evaluated
    model, out = tmp_path / "m.npz", tmp_path / "eval"
    out.mkdir()
    model.write_bytes(b"x")
    assert not evaluated(model, out, False)                                  # nothing written yet
    (out / "accuracy.json").write_text(json.dumps({"model": str(model), "quick": False}))
    os.utime(model, (1, 1))
    assert evaluated(model, out, False)
    assert not evaluated(model, out, True)                                   # another mode
    assert not evaluated(tmp_path / "other.npz", out, False)                 # another (missing) model
    os.utime(model, None)
    os.utime(out / "accuracy.json", (2, 2))
    assert not evaluated(model, out, False)                                  # model newer: retrained
