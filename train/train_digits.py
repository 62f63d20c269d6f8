"""Train the default model: a small DeiT-style ViT on scikit-learn's digits, then its token selectors.

Optional extra (``pip install '.[train]'``: torch 2.13.0 CPU and scikit-learn); run it from the
repository root with the package installed (not editable, as the noxfile does; the script's
own folder, not the root, is first on ``sys.path``, so the checkout's ``heatvit/`` does not
shadow it).  Nothing is written into the source tree unless ``--out`` names a path there: the
model goes to ``build/train/vit_digits.npz`` and checkpoints to ``--work`` (default
``build/train/``).  The committed model was made by the previous recipe, reproduced by::

    python train/train_digits.py --seed 1 --adapt-epochs 0 --no-keep-bias-init --plan 1,3:0.7,0.3 --out golden/data/vit_digits.npz

(its plan fixed: the search is priced on the engine's cycle model, which has changed since.)

(measured then: 275 s of CPU time, one thread: backbone 165 s, plan search 31 s, selectors 79 s.)
The current defaults add the backbone adaptation (``--adapt-epochs 3``) and the keep-bias start
(see ``docs/golden_vit.md``, "Training", for what each measurably changed).  The command, seed,
library versions, recipe and the accelerator config that priced latency are in the model's
metadata, printed by ``heatvit bench accuracy``.  ``heatvit bench training`` runs the recipe
over several seeds.

Phases (``--phase`` starts at one, loading the earlier ones' checkpoints from ``--work``):

1. splits (always, seconds): stratified split of the 1797 digits with a fixed seed
   (``SPLIT_SEED`` = 0, independent of ``--seed``): 360 test images held out, 144 validation
   images (selector-plan search), the rest for training; 128 training images form the PTQ
   calibration subset.  Checked against the committed ``golden/data/digits_splits.npz`` (never
   rewritten; a copy goes to ``--work``).
2. ``backbone`` (``--epochs``, default 40; reused from ``--work`` when its ``backbone.json``
   says the same seed, epochs, limit, recipe and torch made it): the dense ViT, AdamW, linear warmup + cosine decay,
   label smoothing 0.1, gradient clipping, random affine + pixel-noise augmentation of the
   upscaled 32x32 images; the exported weights are an exponential moving average (EMA) of the
   trained ones (steadier than the last step on 1,293 images).
3. ``plan`` (seconds): the fixed default plan :data:`DEFAULT_PLAN` (``--plan BLOCKS:KEEP`` for
   another), checked against the cycle and MAC budgets on ``--config``; or, with ``--plan
   search``, a latency-aware choice of selector blocks and keep ratios: every candidate
   plan is costed in whole-accelerator cycles (``heatvit.compiler.cycles.plan_cycles`` on ``--config``)
   and MACs, and its accuracy estimated on the validation split with class-attention top-k
   pruning of the dense model; the plan closest to the dense predictions within the cycle and
   MAC budgets wins.  If none meets them, the error names the binding budget and the best plan.
4. ``selectors`` (``--sel-epochs``, default 8): the HeatViT/SPViT recipe: selectors inserted
   (keep logits starting at their targets, :func:`init_keep_bias`), Gumbel-softmax (hard)
   keep/prune decisions as attention masks, loss = CE + KL distillation from the dense model +
   weight * sum_stage mean_image (kept fraction - target)^2, fine-tuning the whole model; then the
   threshold cut is calibrated to the targets; then ``--adapt-epochs`` (default 3) epochs fine-tune
   the backbone alone (selectors frozen) on the inference rule's token sets with distillation from
   the dense model (of the pruned and of the dense forward pass), the cut calibrated again before
   every epoch and after the last (see :func:`train_selectors`).
5. ``cut`` (only when asked, seconds): re-calibrate the trained selectors to ``--keep`` targets,
   checked against the same budgets, and export (``--cut-quant``: after a quantization-aware
   phase, calibrated under its fake quantization).  ``train/select_digits.py`` compares the
   models written this way on the validation split (docs/sparsity.md, "Choosing the default
   sparse model").
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform as _platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from heatvit.golden.vit import data as vit_data, model as model_io
from heatvit.golden.vit.config import PruningPlan, ViTConfig
from heatvit.golden.vit.torch_ref import FakeQuant, PrunedViT, VisionTransformer, set_fake_quant

SPLIT_SEED = 0
N_TEST, N_VAL, N_CALIB = 360, 144, 128
PLAN_GRID = (0.7, 0.5, 0.4, 0.3, 0.2, 0.15)
DEFAULT_PLAN = "1,3:0.65,0.3"
"""The plan every seed trains (``--plan``; ``--plan search`` searches per seed instead): selectors
before blocks 1 and 3, the committed model's placement, which the search chose for two of five
seeds and which trained best; the first target 0.65 instead of 0.7 leaves a margin on the 45 %
MAC-reduction target (0.7 measured 45.0 % on the test images).  Per-seed search made the plan a
source of variance: seed 4's search picked one selector before block 2 keeping 0.3, which
collapsed (84.4 % pruned int8)."""
"""Cumulative keep ratios the plan search tries (strictly decreasing from stage to stage)."""


# -- phase 1: splits ------------------------------------------------------------------------

def make_splits(work: Path, limit: int | None = None) -> dict:
    """Split the 1797 digits (fixed seed ``SPLIT_SEED``) and check the test and calibration
    splits against the package's committed ``digits_splits.npz`` (what the accuracy bench
    evaluates on).  A copy is written to ``work/digits_splits.npz``; the committed file is never
    rewritten (a mismatch, e.g. from another scikit-learn, is an error).  ``limit``: keep only
    the first N training and validation images (smoke runs)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    import sklearn

    d = load_digits()
    x = d.images.astype(np.uint8)                     # (1797, 8, 8), grey levels 0..16
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=N_TEST, stratify=y, random_state=SPLIT_SEED)
    train, val = train_test_split(rest, test_size=N_VAL, stratify=y[rest], random_state=SPLIT_SEED)
    calib = np.sort(np.random.default_rng(SPLIT_SEED).choice(train, N_CALIB, replace=False))
    prov = {"source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}), 1797 images",
            "split": f"train_test_split(test_size={N_TEST}, stratify=y, random_state={SPLIT_SEED}) -> test; "
                     f"rest split again (test_size={N_VAL}, stratify, random_state={SPLIT_SEED}) -> val; "
                     f"calib = {N_CALIB} training images drawn with numpy default_rng({SPLIT_SEED})",
            "test_indices": [int(i) for i in np.sort(test)],
            "calib_indices": [int(i) for i in calib]}
    test = np.sort(test)
    arrays = {"test_x": x[test], "test_y": y[test], "calib_x": x[calib], "calib_y": y[calib]}
    np.savez_compressed(work / "digits_splits.npz", **arrays, provenance=np.array(json.dumps(prov)))
    committed = vit_data.load_splits()
    bad = [k for k, v in arrays.items() if not np.array_equal(committed.get(k), v)]
    if bad:
        raise ValueError(f"the splits made here differ from the committed {vit_data.SPLITS} in {bad} "
                         f"(scikit-learn {sklearn.__version__}); they are in {work / 'digits_splits.npz'}: "
                         f"copy that file over the committed one only if the new splits are intended")
    train, val = train[:limit], val[:limit]
    return {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": (x[test], y[test]),
            "calib": (x[calib], y[calib])}


def tensors(split, size: int):
    x, y = split
    return torch.as_tensor(vit_data.upscale(x, size)), torch.as_tensor(y)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random affine (rotation +-12 deg, scale 0.9..1.1, shift +-10%; digits are centred), then
    Gaussian pixel noise (sigma 0.05, images in [0, 1])."""
    b = x.shape[0]
    ang = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(12)
    sc = 1 + (torch.rand(b, generator=gen) * 2 - 1) * 0.1
    sh = (torch.rand(b, 2, generator=gen) * 2 - 1) * 0.2
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, sh[:, 0]], 1), torch.stack([sin, cos, sh[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    return x + 0.05 * torch.randn(x.shape, generator=gen)


def accuracy(model, x, y, bs=256) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + bs]) for i in range(0, len(x), bs)]).argmax(1)
    return float((pred == y).float().mean())


def cosine_lr(opt, step, total, base, warmup):
    lr = base * step / warmup if step < warmup else base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for g in opt.param_groups:
        g["lr"] = lr


# -- phase 2: backbone ----------------------------------------------------------------------

BACKBONE = {"lr": 1e-3, "weight_decay": 0.05, "batch": 32, "warmup_epochs": 3, "label_smoothing": 0.1,
            "clip_grad_norm": 1.0, "ema_decay": 0.995, "pos_init": "sincos", "augment": "affine rot 12 deg, scale 0.1, shift 0.1 + noise 0.05"}


def sincos_pos_embed(cfg: ViTConfig) -> torch.Tensor:
    """(1, tokens, dim) 2-D sine-cosine position embedding (MAE's), zero for the class token: a
    patch of the upscaled digits carries about one source pixel, so where it is matters from the
    first step; a learned embedding starting from noise spends epochs finding that out."""
    g, d = cfg.grid, cfg.dim
    if d % 4:
        raise ValueError(f"sincos_pos_embed: dim must be a multiple of 4, not {d}")
    omega = 1.0 / 10000 ** (torch.arange(d // 4, dtype=torch.float64) / (d // 4))
    yy, xx = torch.meshgrid(torch.arange(g, dtype=torch.float64), torch.arange(g, dtype=torch.float64), indexing="ij")
    parts = []
    for pos in (yy.reshape(-1), xx.reshape(-1)):
        ang = pos[:, None] * omega[None]
        parts += [torch.sin(ang), torch.cos(ang)]
    pe = torch.cat(parts, 1)
    return torch.cat([torch.zeros(1, d, dtype=torch.float64), pe], 0)[None].float()


def train_backbone(cfg: ViTConfig, splits, work: Path, epochs: int, seed: int) -> VisionTransformer:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    h = BACKBONE
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xtr, ytr = tensors(splits["train"], cfg.image_size)
    xva, yva = tensors(splits["val"], cfg.image_size)
    model = VisionTransformer(cfg)
    if h["pos_init"] == "sincos":
        with torch.no_grad():
            model.pos_embed.copy_(sincos_pos_embed(cfg))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(h["ema_decay"]))
    opt = torch.optim.AdamW(model.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
    bs = h["batch"]
    per_epoch = math.ceil(len(xtr) / bs)
    steps = epochs * per_epoch
    step = 0
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), bs):
            j = perm[i:i + bs]
            cosine_lr(opt, step, steps, h["lr"], min(steps // 2, h["warmup_epochs"] * per_epoch))
            loss = F.cross_entropy(model(augment(xtr[j], gen)), ytr[j], label_smoothing=h["label_smoothing"])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), h["clip_grad_norm"])
            opt.step()
            ema.update_parameters(model)
            step += 1
        if ep % 5 == 4 or ep == epochs - 1:
            print(f"backbone epoch {ep + 1}/{epochs}: loss {loss.item():.3f}, val {accuracy(model, xva, yva):.4f}"
                  f" (EMA {accuracy(ema.module, xva, yva):.4f}), {time.time() - t0:.0f} s", flush=True)
    model = ema.module
    torch.save(model.state_dict(), work / "backbone.pt")
    return model.eval()


def backbone_key(args) -> dict:
    """What determines the trained backbone (training is deterministic on one thread)."""
    return {"seed": args.seed, "epochs": args.epochs, "limit": args.limit, "backbone": BACKBONE,
            "torch": torch.__version__}


def backbone(cfg: ViTConfig, splits, args):
    """Phase 2, or its checkpoint ``WORK/backbone.pt`` when ``WORK/backbone.json`` says the same
    seed, epochs, image limit, recipe and torch version made it (the same weights: the run is
    deterministic), e.g. when only the selector recipe changed.  Returns (model, wall s, CPU s);
    a reused checkpoint reports the seconds it took to train."""
    key = json.loads(json.dumps(backbone_key(args)))
    stamp = args.work / "backbone.json"
    if stamp.is_file() and (args.work / "backbone.pt").is_file():
        saved = json.loads(stamp.read_text())
        if saved.get("key") == key:
            print(f"backbone: reusing {args.work / 'backbone.pt'} (same seed, epochs and recipe)", flush=True)
            model = VisionTransformer(cfg)
            model.load_state_dict(torch.load(args.work / "backbone.pt"))
            return model.eval(), saved["seconds"], saved["cpu_seconds"]
    t0, c0 = time.time(), time.process_time()
    model = train_backbone(cfg, splits, args.work, args.epochs, args.seed)
    wall, cpu = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
    stamp.write_text(json.dumps({"key": key, "seconds": wall, "cpu_seconds": cpu}, indent=1) + "\n")
    return model, wall, cpu


# -- phase 3: latency-aware selector plan ---------------------------------------------------

def candidate_plans(cfg: ViTConfig, max_selectors: int = 3, grid=PLAN_GRID):
    for n_sel in range(1, max_selectors + 1):
        for blocks in itertools.combinations(range(1, cfg.depth), n_sel):
            for ratios in itertools.product(grid, repeat=n_sel):
                if all(r2 < r1 for r1, r2 in zip(ratios, ratios[1:])):
                    yield PruningPlan(blocks, ratios)


def topk_prune_logits(model: VisionTransformer, x: torch.Tensor, plan: PruningPlan) -> torch.Tensor:
    """Accuracy proxy of a plan without trained selectors: before each selector block keep the
    top-k present patch tokens by the previous block's class-token attention (mean over heads)."""
    with torch.no_grad():
        h = model.embed(x)
        b, n = h.shape[:2]
        policy = torch.ones(b, n)
        attn = None
        for i, blk in enumerate(model.blocks):
            if i in plan.blocks:
                k = max(1, round(plan.keep_ratios[plan.blocks.index(i)] * (n - 1)))
                cls_attn = attn[:, :, 0, :].mean(1) * policy
                cls_attn[:, 0] = float("inf")
                idx = cls_attn.topk(k + 1, dim=1).indices
                policy = torch.zeros_like(policy).scatter_(1, idx, 1.0)
            h, attn = blk(h, policy)
        return model.head_logits(h)


def plan_cost(acc, cfg: ViTConfig, plan: PruningPlan) -> tuple[float, float]:
    """(cycles, MACs) of one forward pass under ``plan`` as fractions of the dense pass; cycles
    from the compiler's whole-accelerator cycle model (``heatvit.compiler.cycles.plan_cycles``:
    every descriptor of the compiled program, selectors' LayerNorm / MEAN / SELECT and the
    controller's overheads included, measured against the RTL per descriptor)."""
    from heatvit.compiler.cycles import plan_cycles
    from heatvit.golden.vit.latency import plan_macs
    dense = PruningPlan()
    return (plan_cycles(acc, cfg, plan) / plan_cycles(acc, cfg, dense),
            plan_macs(cfg, plan) / plan_macs(cfg, dense))


def describe(plan: PruningPlan) -> str:
    return f"selectors before blocks {list(plan.blocks)} keeping {list(plan.keep_ratios)}"


def check_budgets(acc, acc_name: str, cfg: ViTConfig, plans, budget: float, mac_budget: float):
    """The plans within both budgets, each as (cycle ratio, MAC ratio, plan).  None: a
    ``ValueError`` naming the budget that binds and the best plan found."""
    costs = [(*plan_cost(acc, cfg, p), p) for p in plans]
    ok = [c for c in costs if c[0] <= budget and c[1] <= mac_budget]
    if ok:
        return ok
    where = f"on config {acc_name!r} ({acc.gemm.rows} x {acc.gemm.cols} array)"
    within_macs = [c for c in costs if c[1] <= mac_budget]
    if not within_macs:
        best = min(costs, key=lambda c: (c[1], c[0]))
        why = f"the MAC budget binds (--mac-budget {mac_budget}: no plan saves enough MACs)"
    elif min(c[0] for c in costs) > budget:
        best = min(costs, key=lambda c: (c[0], c[1]))
        why = f"the cycle budget binds (--latency-budget {budget}: no plan is fast enough at any MAC count)"
    else:
        best = min(within_macs, key=lambda c: (c[0], c[1]))
        why = (f"the cycle budget binds (--latency-budget {budget}) among the plans within the MAC "
               f"budget (--mac-budget {mac_budget})")
    raise ValueError(f"no selector plan {where} meets the budgets: {why}; the best plan found, {describe(best[2])}, "
                     f"costs {best[0]:.3f} of the dense cycles and {best[1]:.3f} of the dense MACs")


def choose_plan(cfg: ViTConfig, model: VisionTransformer, x: torch.Tensor, acc, acc_name: str,
                budget: float, mac_budget: float):
    """Among plans whose accelerator cycles are <= budget * dense and MACs <= mac_budget * dense (at
    the target keep ratios), the one whose top-k proxy stays closest (mean KL) to the dense
    model's predictions on ``x``."""
    with torch.no_grad():
        ref = F.log_softmax(model(x), -1)
    results = []
    for ratio, mac_ratio, plan in check_budgets(acc, acc_name, cfg, candidate_plans(cfg), budget, mac_budget):
        logp = F.log_softmax(topk_prune_logits(model, x, plan), -1)
        kl = float(F.kl_div(logp, ref, log_target=True, reduction="batchmean"))
        results.append((kl, ratio, mac_ratio, plan))
    results.sort(key=lambda r: (r[0], r[1]))
    for kl, ratio, mac_ratio, plan in results[:5]:
        print(f"  {describe(plan)}: cycles {ratio:.3f}, MACs {mac_ratio:.3f} of dense, KL {kl:.4f}")
    kl, ratio, mac_ratio, plan = results[0]
    return plan, {"cycle_ratio": ratio, "mac_ratio": mac_ratio, "proxy_kl": kl, "candidates": len(results),
                  "budget": budget, "mac_budget": mac_budget}


# -- phase 4: selectors -----------------------------------------------------------------------

SELECTORS = {"lrs": (5e-3, 1e-4), "adapt_lrs": (0.0, 1e-4), "ratio_weight": 2.0, "distill_weight": 0.5,
             "batch": 32, "calibration_images": 512, "adapt_recalibrate": "every epoch",
             "adapt_dense_distill_weight": 0.5}
"""Selector-phase hyperparameters.  ``adapt_recalibrate``: the adaptation phase re-calibrates the
cut before every epoch (not only after the phase); ``adapt_dense_distill_weight``: weight of a
second distillation term in the adaptation loss, KL(backbone without selectors || dense teacher),
which keeps the exported backbone a good dense model while it adapts to the cut."""


def fit_pruned(student, teacher, splits, cfg, epochs: int, *, decision: str, lrs: tuple[float, float],
               seed: int, ratio_weight: float = SELECTORS["ratio_weight"],
               distill_weight: float = SELECTORS["distill_weight"], dense_weight: float = 0.0,
               before_epoch=None, after_step=None, tag: str = ""):
    """Fine-tune the pruned model: loss = CE + distill_weight * KL(student || dense teacher)
    + ratio_weight * sum_stage mean_image (decided kept fraction - target)^2 (with Gumbel
    decisions also the expected fraction, from the keep probabilities).
    ``lrs``: (selector lr, backbone lr), cosine decay; a zero lr freezes that part.
    ``dense_weight``: adds dense_weight * KL(backbone alone, no selectors || teacher).
    ``before_epoch(epoch)``: called before every epoch (e.g. to re-calibrate the cut); must draw
    no random numbers.  ``after_step()``: called after every optimizer step (e.g. to re-apply
    block masks)."""
    gen = torch.Generator().manual_seed(seed)
    student.decision = decision
    xtr, ytr = tensors(splits["train"], cfg.image_size)
    xva, yva = tensors(splits["val"], cfg.image_size)
    parts = [(list(student.selectors.parameters()), lrs[0]), (list(student.backbone.parameters()), lrs[1])]
    for params, lr in parts:
        for q in params:
            q.requires_grad_(lr > 0)
    groups = [{"params": params, "lr": lr} for params, lr in parts if lr > 0]
    opt = torch.optim.AdamW(groups, weight_decay=0.05)
    base = [g["lr"] for g in groups]
    bs = SELECTORS["batch"]
    steps = epochs * math.ceil(len(xtr) / bs)
    targets = torch.tensor(student.plan.keep_ratios)
    step, t0 = 0, time.time()
    for ep in range(epochs):
        if before_epoch is not None:
            before_epoch(ep)
        student.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), bs):
            j = perm[i:i + bs]
            for g, lr in zip(opt.param_groups, base):
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            xb = augment(xtr[j], gen)
            with torch.no_grad():
                t_logits = teacher(xb)
            logits, ratios, _, _ = student(xb)
            # per image (as DynamicViT): every image must keep about its target, so the selector
            # ranks the tokens within an image instead of keeping whole images or none
            kept = torch.stack(ratios, 1)                                   # (B, stages)
            loss_ratio = ((kept - targets) ** 2).mean(0).sum()
            if decision == "gumbel":      # with the threshold rule the mean probability need not match
                expected = torch.stack(student.expected, 1)
                loss_ratio = loss_ratio + ((expected - targets) ** 2).mean(0).sum()
            loss_kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(t_logits, -1), log_target=True,
                               reduction="batchmean")
            loss = (F.cross_entropy(logits, ytr[j], label_smoothing=0.1) + ratio_weight * loss_ratio
                    + distill_weight * loss_kl)
            if dense_weight:
                loss = loss + dense_weight * F.kl_div(F.log_softmax(student.backbone(xb), -1),
                                                      F.log_softmax(t_logits, -1), log_target=True,
                                                      reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
            step += 1
        if True:                          # every epoch (cheap: 144 images; no random numbers drawn)
            acc, keep = evaluate_pruned(student, xva, yva)
            print(f"{tag} epoch {ep + 1}/{epochs}: loss {loss.item():.3f} (ratio {loss_ratio.item():.4f}), "
                  f"val {acc:.4f}, keep {keep}, {time.time() - t0:.0f} s", flush=True)
    for q in student.parameters():
        q.requires_grad_(True)
    return student.eval()


def evaluate_pruned(student, x, y):
    """(top-1, mean kept fraction per stage) of the pruned model at inference (threshold rule)."""
    student.eval()
    with torch.no_grad():
        lg, rs, _, _ = student(x)
    return float((lg.argmax(1) == y).float().mean()), [round(float(r.mean()), 3) for r in rs]


def calibrate_keep_bias(student, x, iters: int = 18, tol: float = 1e-3) -> list[float]:
    """Make the inference rule (keep score > 0.5) keep the target fractions: for each stage in
    order, bisect one offset ``c`` added to every head's keep logit (``b.3[:, 0]``; the combined
    keep score rises monotonically with it) until the mean kept fraction of the original patches
    on ``x`` matches the stage's target (within ``tol``, or after ``iters`` halvings).  Gumbel-trained keep probabilities rank tokens but are
    not polarized around 0.5; this folds the cut into the weights, so inference stays the plain
    threshold decision of the token-selector golden model."""
    student.eval()
    offsets = []
    n_patch = student.backbone.cfg.num_patches
    with torch.no_grad():
        for s, target in enumerate(student.plan.keep_ratios):
            sel = student.selectors[s]
            # the stage's inputs (tokens, presence) depend only on the earlier, already calibrated
            # stages: one forward pass to capture them, then only the selector runs per offset
            seen = []
            hook = sel.register_forward_hook(lambda mod, inp, out: seen.append(inp))
            student(x)
            hook.remove()
            tokens, policy = seen[0]
            present = policy[:, 1:1 + n_patch]              # the original patch slots
            b3 = sel.b[3]
            base = b3[:, 0].clone()
            lo, hi = -30.0, 30.0
            for _ in range(iters):
                c = (lo + hi) / 2
                b3[:, 0] = base + c
                keep_p = sel(tokens, policy)[0][:, 1:1 + n_patch]
                kept = float(((keep_p > student.threshold).float() * present).sum(1).mean() / n_patch)
                if abs(kept - target) < tol:
                    break
                lo, hi = (lo, c) if kept > target else (c, hi)
            offsets.append(c)
    return offsets


def recalibrate(student, splits, cfg) -> None:
    xcal, _ = tensors(splits["train"], cfg.image_size)
    xva, yva = tensors(splits["val"], cfg.image_size)
    offsets = calibrate_keep_bias(student, xcal[:SELECTORS["calibration_images"]])
    print(f"keep-logit offsets {[round(c, 3) for c in offsets]}: val (top-1, keep) "
          f"{evaluate_pruned(student, xva, yva)}", flush=True)


def init_keep_bias(student) -> list[float]:
    """Start every selector keeping its target share of the tokens it sees: the keep logit's
    bias (``b.3[:, 0]``, every head) set to logit(target_s / target_{s-1}), instead of zero (about
    half kept), so the ratio loss need not first drag the scores there.  Not sufficient alone:
    with 8 epochs and a 0.5 first-stage target (zero bias either way) the threshold rule still kept
    93 % at stage 1 at the end; the adaptation phase is what recovered the accuracy (its effect
    was measured, this one's was not separated, see docs/golden_vit.md)."""
    biases, prev = [], 1.0
    with torch.no_grad():
        for sel, target in zip(student.selectors, student.plan.keep_ratios):
            rel = min(max(target / prev, 1e-3), 1 - 1e-3)
            sel.b[3][:, 0] = math.log(rel / (1 - rel))
            biases.append(math.log(rel / (1 - rel)))
            prev = target
    return biases


def train_selectors(cfg, backbone, plan, splits, work: Path, epochs: int, adapt_epochs: int, seed: int,
                    keep_bias_init: bool = True):
    """HeatViT selector training: selectors inserted, whole model fine-tuned with hard Gumbel-softmax
    decisions, the ratio loss and distillation from the dense model; then the threshold cut is
    calibrated to the targets (:func:`calibrate_keep_bias`) and, if ``adapt_epochs``, the backbone
    alone (selectors frozen, ``SELECTORS["adapt_lrs"]``) trains for that many epochs on the token
    sets of the inference rule itself (keep score > 0.5; the same loss, its ratio term reaching the
    backbone through a straight-through gradient; plus ``SELECTORS["adapt_dense_distill_weight"]``
    times the dense pass's distillation) with the cut re-calibrated before every epoch after the
    first and after the last.  Measured on seeds
    0 and 1: validation top-1 after the first cut 88.2 and 94.4 %, after the adaptation 95.1 and
    97.2 % (docs/golden_vit.md, "Where the accuracy was lost")."""
    torch.manual_seed(seed + 1)
    teacher = VisionTransformer(cfg)
    teacher.load_state_dict(backbone.state_dict())
    teacher.eval()
    student = PrunedViT(backbone, plan)
    if keep_bias_init:
        init_keep_bias(student)
    fit_pruned(student, teacher, splits, cfg, epochs, decision="gumbel", lrs=SELECTORS["lrs"], seed=seed + 1,
               tag="selectors")
    recalibrate(student, splits, cfg)
    if adapt_epochs:
        # the backbone learns the calibrated cut's token sets (selectors frozen: adapt_lrs[0] = 0);
        # as it trains the keep scores move under the frozen cut, so the cut is calibrated again
        # before every epoch (the first starts on the one just calibrated)
        def recut(ep):
            if ep and SELECTORS["adapt_recalibrate"] == "every epoch":
                recalibrate(student, splits, cfg)
        fit_pruned(student, teacher, splits, cfg, adapt_epochs, decision="threshold", lrs=SELECTORS["adapt_lrs"],
                   seed=seed + 2, dense_weight=SELECTORS["adapt_dense_distill_weight"], before_epoch=recut,
                   tag="adapt")
        recalibrate(student, splits, cfg)
    torch.save(student.state_dict(), work / "pruned.pt")
    return student.eval()


# -- optional: static block pruning of the weights (issue 14, Parikh et al. 2024) ---------------

BLOCK_PRUNE = {"lr": 3e-4, "weight_decay": 0.05, "distill_weight": 1.0, "temperature": 1.0, "batch": 32,
               "final_epochs": 2, "density_rule": "uniform", "order": "weights-first",
               "layers": "blocks.*.attn.qkv, attn.proj, mlp.fc1, mlp.fc2 (patch embedding and head stay dense)",
               "criterion": "L2 norm of each R x C weight tile, per layer",
               "schedule": "cubic: density(e) = d + (1 - d) (1 - (e + 1) / ramp)^3, then d"}
"""Block-pruning defaults (``--block-lr``, ``--block-distill``, ``--block-temp``,
``--block-final-epochs``, ``--density-rule`` override them; the run's values are in the model's
metadata, ``block_prune.recipe``)."""
DENSITY_RULES = ("uniform", "covered", "latency")
BLOCK_ORDERS = ("weights-first", "tokens-first")


def block_layers(model: VisionTransformer) -> list[tuple[str, torch.nn.Linear]]:
    """The Linear layers block pruning prunes (the encoder's GEMMs with weights from DDR)."""
    out = []
    for i, b in enumerate(model.blocks):
        out += [(f"blocks.{i}.attn.qkv", b.attn.qkv), (f"blocks.{i}.attn.proj", b.attn.proj),
                (f"blocks.{i}.mlp.fc1", b.mlp.fc1), (f"blocks.{i}.mlp.fc2", b.mlp.fc2)]
    return out


def tile_norms(weight: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Squared L2 norm of every ``R x C`` tile of ``W = weight.T`` (K x N), ``(NT * KT,)`` in
    (nt, kt) order."""
    n, k = weight.shape
    kt, nt = -(-k // rows), -(-n // cols)
    w = F.pad(weight.detach().abs(), (0, kt * rows - k, 0, nt * cols - n))
    return w.pow(2).reshape(nt, cols, kt, rows).sum((1, 3)).flatten()


def expand_tiles(keep: torch.Tensor, shape, rows: int, cols: int) -> torch.Tensor:
    """A (NT * KT,) tile keep vector as the Linear weight's (N, K) mask."""
    n, k = shape
    kt, nt = -(-k // rows), -(-n // cols)
    return keep.reshape(nt, kt).repeat_interleave(cols, 0).repeat_interleave(rows, 1)[:n, :k]


def tile_mask(weight: torch.Tensor, rows: int, cols: int, density: float, cover: bool = False) -> torch.Tensor:
    """Keep mask of a Linear weight (N, K) (the GEMM's ``W = weight.T``, K x N) at the engine's
    tile granularity: the ``round(density * T)`` (at least 1) of its ``T = ceil(K/R) * ceil(N/C)``
    ``R x C`` tiles of largest L2 norm (ties: the lower tile index) stay.  ``cover`` (the
    ``covered`` density rule): every N-tile column keeps its strongest tile first (when the count
    allows one per column), the rest by norm: an all-zero column of tiles still costs the engine
    one pass of M rows for its bias and requantization, as much as a column with one tile, so its
    last tile is not worth pruning."""
    norms = tile_norms(weight, rows, cols)
    n, k = weight.shape
    kt, nt = -(-k // rows), -(-n // cols)
    keep = max(1, round(density * norms.numel()))
    m = torch.zeros(norms.numel(), dtype=torch.bool)
    if cover and keep >= nt:
        m[torch.arange(nt) * kt + torch.argmax(norms.reshape(nt, kt), 1)] = True
        keep -= nt
    rest = torch.argsort(-norms.masked_fill(m, -1.0), stable=True)[:keep]
    m[rest] = True
    return expand_tiles(m, weight.shape, rows, cols)


def tile_costs(acc, cfg: ViTConfig, plan: PruningPlan | None) -> dict[str, float]:
    """Engine cycles per weight tile of every :func:`block_layers` GEMM (the cycle model,
    ``GemmConfig.estimate_cycles`` of the dense GEMM over its ``split_shape`` pieces, divided by
    its tile count) at the token counts ``plan`` leaves each block (None: every token)."""
    from heatvit.golden.gemm import split_shape
    from heatvit.golden.vit.latency import plan_tokens
    g = acc.gemm
    tokens = plan_tokens(cfg, plan)[0] if plan is not None and plan.blocks else [cfg.num_tokens] * cfg.depth
    d, hd = cfg.dim, cfg.hidden
    out = {}
    for i, m in enumerate(tokens):
        for lin, (k, n) in (("attn.qkv", (d, 3 * d)), ("attn.proj", (d, d)), ("mlp.fc1", (d, hd)), ("mlp.fc2", (hd, d))):
            tiles = -(-k // g.rows) * -(-n // g.cols)
            out[f"blocks.{i}.{lin}"] = sum(g.estimate_cycles(*p) for p in split_shape(g, m, k, n)) / tiles
    return out


def latency_masks(layers, rows: int, cols: int, density: float, costs: dict[str, float],
                  floor: float | None = None) -> dict[str, torch.Tensor]:
    """The latency-aware per-layer density rule: keep the tiles that buy the most weight per
    engine cycle until the kept tiles cost ``density`` of the layers' dense cycles.  A tile's
    value is its squared norm over its layer's mean (sum over all of the layer's tiles, pruned
    ones count as 0, divided by their number: so a layer already cut deep has its survivors
    valued higher), divided by its layer's cycles per tile (:func:`tile_costs`): a tile of a
    block that sees fewer tokens saves fewer cycles when pruned.  Greedy on value (the knapsack
    rule); every layer keeps at least its ``floor`` share of its tiles (default half the target,
    at least one tile: without it the rule empties the first blocks, whose tiles cost ~3x those
    after the last selector).  Returns the (N, K) masks by name."""
    vals, owner, budget = [], [], 0.0
    keep = {}
    for li, (name, lin) in enumerate(layers):
        nrm = tile_norms(lin.weight, rows, cols).double()
        mean = nrm.mean().clamp_min(1e-30)
        vals.append(nrm / mean / costs[name])
        owner.append(torch.full((nrm.numel(),), li))
        budget += density * nrm.numel() * costs[name]
        keep[name] = torch.zeros(nrm.numel(), dtype=torch.bool)
    v, o = torch.cat(vals), torch.cat(owner)
    local = torch.cat([torch.arange(len(x)) for x in vals])
    spent = 0.0
    floor = density / 2 if floor is None else floor
    for li, (name, _) in enumerate(layers):                # the floor: the strongest tiles
        n_min = max(1, round(floor * len(vals[li])))
        keep[name][torch.argsort(-vals[li], stable=True)[:n_min]] = True
        spent += n_min * costs[name]
    for idx in torch.argsort(-v, stable=True).tolist():
        name = layers[int(o[idx])][0]
        j = int(local[idx])
        if keep[name][j] or v[idx] <= 0:
            continue
        if spent + costs[name] > budget + 1e-9:
            continue                                       # a cheaper tile further down may still fit
        keep[name][j] = True
        spent += costs[name]
    return {name: expand_tiles(keep[name], lin.weight.shape, rows, cols) for name, lin in layers}


def mask_gradients(masks: dict, layers) -> list:
    """Gradient hooks that keep every pruned weight at exactly 0 under any later fine-tuning
    (a fresh Adam state and zero gradients leave a zero weight at zero; weight decay too)."""
    return [lin.weight.register_hook(lambda g, name=name: g * masks[name]) for name, lin in layers]


def apply_masks(masks: dict, layers) -> None:
    with torch.no_grad():
        for name, lin in layers:
            lin.weight.mul_(masks[name])


def distill_loss(logits, t_logits, temperature: float):
    """KL(student || teacher) on temperature-softened logits, times T^2 (Hinton et al.)."""
    t = temperature
    return F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(t_logits / t, -1), log_target=True,
                    reduction="batchmean") * t * t


def block_prune(cfg, model, splits, acc, density: float, epochs: int, seed: int, work: Path,
                h: dict = BLOCK_PRUNE, plan: PruningPlan | None = None):
    """Gradual structured pruning of :func:`block_layers` to ``density`` of their ``R x C`` tiles
    (``acc``'s array), fine-tuning the whole model with CE + KL distillation from the dense model
    (``h``: :data:`BLOCK_PRUNE` with overrides); the density falls on a cubic schedule over
    ``epochs - final_epochs`` epochs (tiles re-ranked by norm each epoch; a pruned tile's norm is
    0, so it stays pruned), then ``final_epochs`` at the target.  ``h["density_rule"]``:
    ``uniform`` (every layer keeps the share) or ``latency`` (:func:`latency_masks` with
    :func:`tile_costs` at ``plan``'s token counts: the share is of the layers' engine cycles).
    Returns the masks (by layer name), their gradient hooks installed."""
    torch.manual_seed(seed + 3)
    gen = torch.Generator().manual_seed(seed + 3)
    teacher = VisionTransformer(cfg)
    teacher.load_state_dict(model.state_dict())
    teacher.eval()
    layers = block_layers(model)
    R, C = acc.gemm.rows, acc.gemm.cols
    costs = tile_costs(acc, cfg, plan) if h["density_rule"] == "latency" else None
    masks = {name: torch.ones_like(lin.weight) for name, lin in layers}
    mask_gradients(masks, layers)
    xtr, ytr = tensors(splits["train"], cfg.image_size)
    xva, yva = tensors(splits["val"], cfg.image_size)
    opt = torch.optim.AdamW(model.parameters(), lr=h["lr"], weight_decay=h["weight_decay"])
    bs = h["batch"]
    steps, step = epochs * math.ceil(len(xtr) / bs), 0
    ramp = max(1, epochs - h["final_epochs"])
    t0 = time.time()
    for ep in range(epochs):
        dens, kept = step_masks(masks, layers, R, C, density, ep, ramp, costs, h["density_rule"])
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), bs):
            j = perm[i:i + bs]
            for g in opt.param_groups:
                g["lr"] = h["lr"] * 0.5 * (1 + math.cos(math.pi * step / steps))
            xb = augment(xtr[j], gen)
            with torch.no_grad():
                t_logits = teacher(xb)
            logits = model(xb)
            loss = (F.cross_entropy(logits, ytr[j], label_smoothing=0.1)
                    + h["distill_weight"] * distill_loss(logits, t_logits, h["temperature"]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            apply_masks(masks, layers)            # the Adam moments of just-pruned weights
            step += 1
        print(f"block-prune epoch {ep + 1}/{epochs}: density {dens:.3f} (weights kept {kept:.3f}), loss {loss.item():.3f}, "
              f"val {accuracy(model, xva, yva):.4f}, {time.time() - t0:.0f} s", flush=True)
    torch.save({"model": model.state_dict(), "masks": masks}, work / "blocked.pt")
    return masks


def step_masks(masks: dict, layers, R: int, C: int, density: float, ep: int, ramp: int, costs,
               rule: str) -> tuple[float, float]:
    """One step of the gradual schedule, before epoch ``ep``: the cubic density for the epoch
    (``density`` from ``ramp`` epochs on), every layer's tiles re-ranked (latency rule when
    ``costs`` is given, else uniform or covered) into ``masks`` in place, the weights masked.
    Returns the epoch's density and the share of weights kept."""
    dens = density + (1 - density) * max(0.0, 1 - (ep + 1) / ramp) ** 3
    new = (latency_masks(layers, R, C, dens, costs) if costs is not None
           else {name: tile_mask(lin.weight, R, C, dens, rule == "covered") for name, lin in layers})
    for name, _ in layers:
        masks[name].copy_(new[name].float())
    apply_masks(masks, layers)
    return dens, sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def block_prune_tokens(cfg, student, splits, acc, density: float, epochs: int, seed: int, work: Path,
                       h: dict = BLOCK_PRUNE):
    """The tokens-first order (``--block-order tokens-first``): block pruning of the trained
    token-pruned model (:class:`PrunedViT`, selectors trained on the dense weights), on the
    inference rule's token sets: :func:`fit_pruned` with threshold decisions (straight-through),
    backbone at ``h["lr"]`` and selectors at a tenth of it (cosine), loss CE + ratio term
    + ``h["distill_weight"]`` KL(pruned pass || dense float backbone ``work/backbone.pt``)
    + the adaptation phase's dense-pass distillation; before every epoch the density steps down
    the cubic schedule (:data:`BLOCK_PRUNE`, tiles re-ranked by norm, uniform or latency rule as in
    :func:`block_prune`) and the cut is re-calibrated, and once more after the last epoch.
    So the weights are pruned for the metric that counts, the token-pruned model's.  Saves
    ``work/blocked.pt`` (backbone and masks) and returns the masks, gradient hooks installed."""
    torch.manual_seed(seed + 3)
    teacher = VisionTransformer(cfg)
    teacher.load_state_dict(torch.load(work / "backbone.pt"))
    teacher.eval()
    layers = block_layers(student.backbone)
    R, C = acc.gemm.rows, acc.gemm.cols
    costs = tile_costs(acc, cfg, student.plan) if h["density_rule"] == "latency" else None
    masks = {name: torch.ones_like(lin.weight) for name, lin in layers}
    mask_gradients(masks, layers)
    ramp = max(1, epochs - h["final_epochs"])

    def step_down(ep):
        dens, kept = step_masks(masks, layers, R, C, density, ep, ramp, costs, h["density_rule"])
        print(f"block-prune (tokens first) epoch {ep + 1}/{epochs}: density {dens:.3f} (weights kept {kept:.3f})",
              flush=True)
        recalibrate(student, splits, cfg)

    fit_pruned(student, teacher, splits, cfg, epochs, decision="threshold", lrs=(h["lr"] / 10, h["lr"]),
               seed=seed + 3, distill_weight=h["distill_weight"],
               dense_weight=SELECTORS["adapt_dense_distill_weight"], before_epoch=step_down,
               after_step=lambda: apply_masks(masks, layers), tag="block-prune")
    recalibrate(student, splits, cfg)
    torch.save({"model": student.backbone.state_dict(), "masks": masks}, work / "blocked.pt")
    torch.save(student.state_dict(), work / "pruned.pt")
    return masks


def block_info(masks: dict, acc, density: float, epochs: int, h: dict = BLOCK_PRUNE) -> dict:
    """The model metadata's ``block_prune`` entry: target, tile shape, kept / total tiles per layer."""
    R, C = acc.gemm.rows, acc.gemm.cols
    tiles = {}
    for name, m in masks.items():
        n, k = m.shape
        kt, nt = -(-k // R), -(-n // C)
        full = F.pad(m, (0, kt * R - k, 0, nt * C - n)).reshape(nt, C, kt, R).amax((1, 3))
        tiles[name] = [int(full.sum()), kt * nt]
    return {"density": density, "epochs": epochs, "tile": [R, C], "recipe": h, "tiles": tiles}


# -- optional: quantization-aware fine-tuning (issue 14) ----------------------------------------

QAT = {"lrs": (1e-4, 2e-4), "distill_weight": 0.5, "dense_distill_weight": 0.5, "decision": "threshold",
       "teacher": "the dense backbone (before block pruning), float",
       "scales": "golden post-training quantization (quantize_model) on the 128 calibration images, "
                 "before every epoch and after the last",
       "fake_quant": "weights int8 per output channel; every integer-forward tensor at its golden scale "
                     "(round half away, straight-through gradient)"}
"""Quantization-aware fine-tuning defaults (``--qat-lr`` sets both learning rates)."""


def golden_scales(cfg, student, plan, splits) -> dict:
    """The activation scales the golden post-training quantization gives the current weights
    (:func:`heatvit.golden.vit.quantize.quantize_model` on the calibration split: what the
    accuracy bench and the compiler quantize with)."""
    from heatvit.golden.vit.quantize import quantize_model
    calib = vit_data.upscale(splits["calib"][0], cfg.image_size)
    return quantize_model(numpy_model(cfg, student, plan), calib).scales


def train_qat(cfg, student, splits, work: Path, epochs: int, seed: int, h: dict = QAT):
    """The joint phase: backbone and selectors fine-tuned together under fake quantization
    (:class:`~heatvit.golden.vit.torch_ref.FakeQuant`: the golden int8 scheme, scales from the
    golden quantization of the current weights, re-derived before every epoch), on the inference
    rule's token sets (straight-through), with distillation from the dense float backbone
    (``work/backbone.pt``) of the pruned and of the dense-token forward pass; the selector cut is
    re-calibrated under fake quantization before every epoch and after the last.  Pruned weights
    stay 0 (the block-pruning gradient hooks).  Returns the student, fake quantization off."""
    teacher = VisionTransformer(cfg)
    teacher.load_state_dict(torch.load(work / "backbone.pt"))
    teacher.eval()
    bb = student.backbone

    def requantize(ep):
        set_fake_quant(bb, None)
        set_fake_quant(bb, FakeQuant(golden_scales(cfg, student, student.plan, splits)))
        recalibrate(student, splits, cfg)

    fit_pruned(student, teacher, splits, cfg, epochs, decision=h["decision"], lrs=h["lrs"], seed=seed + 4,
               distill_weight=h["distill_weight"], dense_weight=h["dense_distill_weight"], before_epoch=requantize,
               tag="qat")
    requantize(epochs)
    xva, yva = tensors(splits["val"], cfg.image_size)
    print(f"qat: val fake-quant dense {accuracy(bb, xva, yva):.4f}", flush=True)
    set_fake_quant(bb, None)
    print(f"qat: val float (top-1, keep) {evaluate_pruned(student, xva, yva)}, dense {accuracy(bb, xva, yva):.4f}",
          flush=True)
    torch.save(student.state_dict(), work / "qat.pt")
    return student.eval()


# -- export ----------------------------------------------------------------------------------

def versions() -> dict:
    import sklearn
    from importlib.metadata import version
    return {"python": _platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "heatvit": version("heatvit")}


def recipe(args) -> dict:
    """The training recipe of a run (hyperparameters; in the model's metadata; the budgets are
    in its ``plan_search`` entry)."""
    return {"backbone_epochs": args.epochs, "selector_epochs": args.sel_epochs, "adapt_epochs": args.adapt_epochs,
            "keep_bias_init": args.keep_bias_init,
            "limit": args.limit, "backbone": BACKBONE, "selectors": SELECTORS, "plan_grid": PLAN_GRID,
            **({"qat_epochs": args.qat_epochs, "qat": args.qat_recipe} if args.qat_epochs else {}),
            **getattr(args, "qat_recipe_of_cut", {})}


def numpy_model(cfg, student, plan, meta=None):
    """The golden :class:`~heatvit.golden.vit.model.ViTModel` of a trained :class:`PrunedViT`
    (timm-named backbone + ``selectors.I.*``)."""
    sd = {k[len("backbone."):] if k.startswith("backbone.") else k: v.detach().numpy().copy()
          for k, v in student.state_dict().items()}
    return model_io.from_state_dict(cfg, sd, plan, meta)


def export(cfg, student, plan, plan_info, args, splits, acc, commands) -> Path:
    """Write ``args.out``: timm-named backbone + ``selectors.I.*`` + provenance metadata (no
    timings, so the same command gives the same arrays and metadata)."""
    xte, yte = tensors(splits["test"], cfg.image_size)
    student.eval()
    with torch.no_grad():
        pruned_acc = float((student(xte)[0].argmax(1) == yte).float().mean())
    meta = {"trained_by": "train/train_digits.py", "commands": commands, "seed": args.seed,
            "versions": versions(), "torch": torch.__version__,
            "recipe": recipe(args),
            "latency_config": {"spec": str(args.config), "digest": acc.digest(),
                               "gemm": [acc.gemm.rows, acc.gemm.cols]},
            "plan_search": plan_info,
            "torch_test_top1": {"dense": accuracy(student.backbone, xte, yte), "pruned": pruned_acc},
            **getattr(args, "extra_meta", {})}
    model = numpy_model(cfg, student, plan, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model_io.save_npz(model, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes): torch test top-1 {meta['torch_test_top1']}",
          flush=True)
    return args.out


LOCATION_ARGS = ("--work", "--out", "--threads")
"""Arguments that do not change the trained model (where files go, torch threads)."""


def canonical_command(argv) -> str:
    """The command as recorded in the metadata: ``argv`` without :data:`LOCATION_ARGS`, so the
    same training gives the same metadata wherever its files go."""
    kept, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in LOCATION_ARGS:
            skip = True
        elif not a.startswith(tuple(f"{x}=" for x in LOCATION_ARGS)):
            kept.append(a)
    return " ".join(["python train/train_digits.py", *map(shlex.quote, kept)])


def parse_plan(text: str) -> PruningPlan:
    """``'1,3:0.7,0.3'`` -> ``PruningPlan((1, 3), (0.7, 0.3))`` (checked against the model config)."""
    try:
        blocks, ratios = text.split(":")
        blocks, ratios = tuple(int(b) for b in blocks.split(",")), tuple(float(r) for r in ratios.split(","))
    except ValueError:
        raise ValueError(f"--plan must be 'BLOCKS:KEEP' like '1,3:0.7,0.3', not {text!r}") from None
    plan = PruningPlan(blocks, ratios)
    if len(plan.blocks) != len(plan.keep_ratios) or list(plan.blocks) != sorted(set(plan.blocks)):
        raise ValueError(f"--plan must give increasing blocks and one keep ratio per block, not {text!r}")
    r = plan.keep_ratios
    if not (all(0 < v < 1 for v in r) and all(b < a for a, b in zip(r, r[1:]))):
        raise ValueError(f"--plan keep ratios must decrease strictly within (0, 1), not {text!r}")
    plan.check(ViTConfig())
    return plan


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=["all", "backbone", "plan", "selectors", "cut", "qat"], default="all",
                    help="start at this phase (earlier phases are loaded from --work); 'cut': only re-calibrate "
                         "the trained selectors (work/qat.pt after a quantization-aware phase, else work/pruned.pt) to "
                         "the --keep targets, check the budgets, export; "
                         "'qat': only the quantization-aware phase (--qat-epochs) from work/pruned.pt, then export")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed: initialization, batch order, augmentation, Gumbel noise (the data "
                         "splits are fixed); default 0 (the committed model)")
    ap.add_argument("--config", default="default",
                    help="accelerator config whose GEMM cycle model prices the plan search: preset name or "
                         "JSON file (default: default, 16 x 16)")
    ap.add_argument("--plan", type=str, default=DEFAULT_PLAN,
                    help="selector plan 'BLOCKS:KEEP', e.g. '1,3:0.7,0.3' (selectors before blocks 1 and 3 "
                         "keeping 70 %% and 30 %% of the patches), checked against the budgets, or 'search': the "
                         f"latency-aware search on this seed's backbone (phase 'plan'); default {DEFAULT_PLAN}")
    ap.add_argument("--keep", type=str, default=None,
                    help="comma-separated cumulative keep-ratio targets replacing the plan's (phase 'cut')")
    ap.add_argument("--cut-quant", action=argparse.BooleanOptionalAction, default=False,
                    help="phase 'cut' after a quantization-aware phase (work/qat.pt): calibrate the cut under the "
                         "golden int8 fake quantization, as that phase calibrates its own (default: in float)")
    ap.add_argument("--work", type=Path, default=Path("build/train"), help="checkpoint directory")
    ap.add_argument("--out", type=Path, default=None, help="model file to write (default: WORK/vit_digits.npz)")
    ap.add_argument("--epochs", type=int, default=40, help="backbone epochs (default 40)")
    ap.add_argument("--sel-epochs", type=int, default=8, help="selector fine-tuning epochs (Gumbel-softmax; default 8)")
    ap.add_argument("--adapt-epochs", type=int, default=3,
                    help="epochs fine-tuning the backbone (selectors frozen) on the inference rule's decisions "
                         "after the threshold calibration (default 3; 0: the recipe of the committed model)")
    ap.add_argument("--keep-bias-init", action=argparse.BooleanOptionalAction, default=True,
                    help="start each selector's keep logit at its target share (default on; "
                         "--no-keep-bias-init: the recipe of the committed model)")
    ap.add_argument("--block-prune", type=float, default=None, metavar="DENSITY",
                    help="static block pruning (issue 14): after the backbone, prune every encoder Linear to this "
                         "share of its R x C weight tiles (--config's array) with a gradual schedule and distillation, "
                         "then train the selectors on the pruned backbone (pruned tiles stay 0)")
    ap.add_argument("--block-epochs", type=int, default=8,
                    help="block-pruning fine-tuning epochs (default 8; with --block-prune)")
    ap.add_argument("--block-lr", type=float, default=BLOCK_PRUNE["lr"],
                    help=f"block-pruning peak learning rate (AdamW, cosine; default {BLOCK_PRUNE['lr']})")
    ap.add_argument("--block-distill", type=float, default=BLOCK_PRUNE["distill_weight"],
                    help=f"weight of the distillation from the dense model while block pruning "
                         f"(default {BLOCK_PRUNE['distill_weight']})")
    ap.add_argument("--block-temp", type=float, default=BLOCK_PRUNE["temperature"],
                    help=f"distillation temperature while block pruning (default {BLOCK_PRUNE['temperature']})")
    ap.add_argument("--block-final-epochs", type=int, default=BLOCK_PRUNE["final_epochs"],
                    help=f"block-pruning epochs at the target density after the schedule (default "
                         f"{BLOCK_PRUNE['final_epochs']})")
    ap.add_argument("--density-rule", choices=DENSITY_RULES, default=BLOCK_PRUNE["density_rule"],
                    help="per-layer density: 'uniform' (every layer keeps DENSITY of its tiles), 'covered' (the "
                         "same count, every N-tile column keeping at least its strongest tile: an all-zero column still "
                         "costs the engine a pass for its bias) or 'latency' "
                         "(tiles ranked by norm per engine cycle of the cycle model at the plan's token counts, kept "
                         "until they cost DENSITY of the layers' dense cycles)")
    ap.add_argument("--block-order", choices=BLOCK_ORDERS, default=BLOCK_PRUNE["order"],
                    help="'weights-first' (default: block pruning of the dense backbone, then the selectors) or "
                         "'tokens-first' (selectors on the dense weights, then block pruning of the token-pruned "
                         "model on the inference rule's token sets, distillation at temperature 1)")
    ap.add_argument("--qat-epochs", type=int, default=0,
                    help="quantization-aware fine-tuning epochs after the selectors (default 0: none): backbone and "
                         "selectors together under the golden int8 scheme's fake quantization, distilled from the "
                         "dense backbone")
    ap.add_argument("--qat-lr", type=float, default=None,
                    help=f"peak learning rate of the quantization-aware phase, selectors and backbone (cosine; "
                         f"default {QAT['lrs'][0]} / {QAT['lrs'][1]})")
    ap.add_argument("--limit", type=int, default=None,
                    help="use only the first N training and validation images (smoke runs)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a shared 2-core machine more threads run far slower)")
    ap.add_argument("--latency-budget", type=float, default=0.8,
                    help="largest allowed pruned/dense accelerator cycle ratio of a plan (default 0.8)")
    ap.add_argument("--mac-budget", type=float, default=0.55,
                    help="largest allowed pruned/dense MAC ratio of a plan at its target keep ratios (default 0.55)")
    args = ap.parse_args(argv)
    args.out = args.out or args.work / "vit_digits.npz"
    args.fixed_plan = None if args.plan == "search" else parse_plan(args.plan)
    if args.block_prune is not None and not 0 < args.block_prune <= 1:
        ap.error(f"--block-prune must be a density in (0, 1], not {args.block_prune}")
    if not (args.block_lr > 0 and args.block_distill >= 0 and args.block_temp > 0):
        ap.error(f"--block-lr and --block-temp must be > 0 and --block-distill >= 0, not {args.block_lr}, "
                 f"{args.block_temp}, {args.block_distill}")
    if args.block_final_epochs < 0:
        ap.error(f"--block-final-epochs must be >= 0, not {args.block_final_epochs}")
    args.block_recipe = {**BLOCK_PRUNE, "lr": args.block_lr, "distill_weight": args.block_distill,
                         "temperature": args.block_temp, "final_epochs": args.block_final_epochs,
                         "density_rule": args.density_rule, "order": args.block_order}
    if args.qat_epochs < 0 or (args.qat_lr is not None and not args.qat_lr > 0):
        ap.error(f"--qat-epochs must be >= 0 and --qat-lr > 0, not {args.qat_epochs}, {args.qat_lr}")
    if args.phase == "qat" and not args.qat_epochs:
        ap.error("--phase qat needs --qat-epochs N (N >= 1)")
    args.qat_recipe = {**QAT, **({"lrs": (args.qat_lr, args.qat_lr)} if args.qat_lr is not None else {})}
    if args.limit is not None and args.limit < 16:
        ap.error(f"--limit must be >= 16, not {args.limit}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    from heatvit.presets import load_config
    acc = load_config(args.config)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "run.json"
    order = ["backbone", "plan", "selectors", "cut", "qat"]
    start = 0 if args.phase == "all" else order.index(args.phase)
    command = canonical_command(argv)
    # provenance across resumed runs: the commands that made the checkpoints this run loads
    runs = json.loads(log.read_text()) if start > 0 and log.is_file() else []
    if start > 0 and runs and runs[-1].get("seed") != args.seed:
        raise ValueError(f"--seed {args.seed} differs from the seed {runs[-1]['seed']} of the checkpoints in "
                         f"{args.work}")
    times = dict(runs[-1]["seconds"]) if runs else {}
    cpu = dict(runs[-1].get("cpu_seconds", {})) if runs else {}
    runs.append({"command": command, "seed": args.seed, "seconds": times, "cpu_seconds": cpu})
    splits = make_splits(args.work, args.limit)
    cfg = ViTConfig()
    t0, c0 = time.time(), time.process_time()
    if start == 0:
        model, times["backbone"], cpu["backbone"] = backbone(cfg, splits, args)
    else:
        model = VisionTransformer(cfg)
        model.load_state_dict(torch.load(args.work / "backbone.pt"))
        model.eval()
    masks = None
    tokens_first = args.block_prune is not None and args.block_order == "tokens-first"
    if args.block_prune is not None and not (tokens_first and args.phase not in ("cut", "qat")):
        if start == 0:
            t0, c0 = time.time(), time.process_time()
            masks = block_prune(cfg, model, splits, acc, args.block_prune, args.block_epochs, args.seed, args.work,
                                args.block_recipe, args.fixed_plan)
            times["block_prune"], cpu["block_prune"] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
        else:
            saved = torch.load(args.work / "blocked.pt")
            model.load_state_dict(saved["model"])
            masks = saved["masks"]
            mask_gradients(masks, block_layers(model))
        args.extra_meta = {"block_prune": block_info(masks, acc, args.block_prune, args.block_epochs,
                                                         args.block_recipe)}
    t0, c0 = time.time(), time.process_time()
    if start <= 1:
        xs, _ = tensors(splits["val"], cfg.image_size)
        if args.fixed_plan is not None:
            plan = args.fixed_plan
            (ratio, mac_ratio, _), = check_budgets(acc, args.config, cfg, [plan], args.latency_budget, args.mac_budget)
            plan_info = {"fixed": args.plan, "cycle_ratio": ratio, "mac_ratio": mac_ratio,
                         "budget": args.latency_budget, "mac_budget": args.mac_budget}
        else:
            plan, plan_info = choose_plan(cfg, model, xs, acc, args.config, args.latency_budget, args.mac_budget)
        (args.work / "plan.json").write_text(json.dumps({"blocks": plan.blocks, "keep_ratios": plan.keep_ratios,
                                                          **plan_info}, indent=1))
        times["plan"], cpu["plan"] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
    else:
        d = json.loads((args.work / "plan.json").read_text())
        plan = PruningPlan(tuple(d["blocks"]), tuple(d["keep_ratios"]))
        plan_info = {k: v for k, v in d.items() if k not in ("blocks", "keep_ratios")}
    if args.keep:
        plan_info["trained_keep_ratios"] = list(plan.keep_ratios)
        plan = PruningPlan(plan.blocks, tuple(float(v) for v in args.keep.split(",")))
        plan.check(cfg)
        check_budgets(acc, args.config, cfg, [plan], args.latency_budget, args.mac_budget)
        plan_info["cycle_ratio"], plan_info["mac_ratio"] = plan_cost(acc, cfg, plan)
    print(f"plan: {describe(plan)}: {plan_info}", flush=True)
    t0, c0 = time.time(), time.process_time()
    if args.phase in ("cut", "qat"):
        student = PrunedViT(model, plan)
        # 'cut' re-calibrates the last trained state: after a quantization-aware phase, its qat.pt
        last = "qat.pt" if args.phase == "cut" and (args.work / "qat.pt").is_file() else "pruned.pt"
        student.load_state_dict(torch.load(args.work / last))
        if last == "qat.pt" and not args.qat_epochs and len(runs) > 1:
            # the recipe of the state re-calibrated here: the quantization-aware phase of the run
            # that wrote qat.pt (its command), recorded without running it again
            made = parse_args(shlex.split(runs[-2]["command"])[2:])
            args.qat_recipe_of_cut = {"qat_epochs": made.qat_epochs, "qat": made.qat_recipe}
        if args.phase == "cut":
            quant = args.cut_quant and last == "qat.pt"
            if quant:
                # the cut the deployed int8 model sees: calibrated under the fake quantization
                # the quantization-aware phase trained (and calibrated its own cut) under
                set_fake_quant(student.backbone, FakeQuant(golden_scales(cfg, student, plan, splits)))
            recalibrate(student, splits, cfg)
            set_fake_quant(student.backbone, None)
            plan_info["cut_calibration"] = "fake-quantized" if quant else "float"
    else:
        student = train_selectors(cfg, model, plan, splits, args.work, args.sel_epochs, args.adapt_epochs, args.seed,
                                  args.keep_bias_init)
        times["selectors"], cpu["selectors"] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
        if tokens_first:
            t0, c0 = time.time(), time.process_time()
            masks = block_prune_tokens(cfg, student, splits, acc, args.block_prune, args.block_epochs, args.seed,
                                       args.work, args.block_recipe)
            times["block_prune"], cpu["block_prune"] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
            args.extra_meta = {"block_prune": block_info(masks, acc, args.block_prune, args.block_epochs,
                                                             args.block_recipe)}
    if args.qat_epochs:
        t0, c0 = time.time(), time.process_time()
        student = train_qat(cfg, student, splits, args.work, args.qat_epochs, args.seed, args.qat_recipe)
        times["qat"], cpu["qat"] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
    if masks is not None:
        layers = block_layers(student.backbone)
        if any(bool((lin.weight * (1 - masks[name])).any()) for name, lin in layers):
            raise AssertionError("block pruning: a pruned weight left 0 during the selector training")
    export(cfg, student, plan, plan_info, args, splits, acc, [r["command"] for r in runs])
    log.write_text(json.dumps(runs, indent=1) + "\n")
    return args.out


if __name__ == "__main__":
    main()
