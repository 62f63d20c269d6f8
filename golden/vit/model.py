"""Model import: timm DeiT state dicts (without timm) and the committed default model.

A state dict is any mapping from timm key names (``patch_embed.proj.weight``,
``blocks.N.attn.qkv.weight``, ...) to arrays: NumPy arrays, or PyTorch tensors (converted
with ``.detach().cpu().numpy()``; bfloat16, which NumPy lacks, through float32; torch is never imported
here).  Token-selector weights, if
any, live under ``selectors.I.`` (I = selector index, see :class:`PruningPlan`); their key names
and shapes come from the token-selector golden model.

Every problem is a ``ValueError`` naming the key: a missing key, an unexpected key, or a tensor
of the wrong shape (both shapes given).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..checks import real_array
from .config import PruningPlan, ViTConfig
from .selector import selector_param_shapes

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "vit_digits.npz"
"""The committed default model (trained on scikit-learn's digits by train/train_digits.py)."""


def _to_numpy(key: str, value) -> np.ndarray:
    arr = real_array(f"state dict key {key!r}", value)   # torch tensors (bfloat16 too) without torch
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"state dict key {key!r}: contains NaN or infinity")
    return arr.astype(np.float32)


def check_state_dict(expected: dict[str, tuple[int, ...]], state_dict, what: str = "state dict") -> dict[str, np.ndarray]:
    """Return ``{key: float32 array}`` after checking keys and shapes against ``expected``.

    Raises ``ValueError`` naming every missing key (with the shape it must have), every
    unexpected key, or the first key whose tensor has the wrong shape (both shapes).
    """
    keys = list(state_dict.keys())
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in keys if k not in expected]
    if missing:
        listed = ", ".join(f"{k!r} (shape {expected[k]})" for k in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        raise ValueError(f"{what}: missing key(s) {listed}{more}")
    if extra:
        listed = ", ".join(repr(k) for k in extra[:8])
        more = f" and {len(extra) - 8} more" if len(extra) > 8 else ""
        raise ValueError(f"{what}: unexpected key(s) {listed}{more}")
    out = {}
    for k, shape in expected.items():
        got = tuple(np.shape(state_dict[k].detach() if hasattr(state_dict[k], "detach") else state_dict[k]))
        if got != tuple(shape):
            raise ValueError(f"{what}: key {k!r} has shape {got}; expected {tuple(shape)}")
        out[k] = _to_numpy(k, state_dict[k])
    return out


@dataclass
class ViTModel:
    """A float model: config, timm-named float32 weights, and (optional) token selectors."""

    cfg: ViTConfig
    weights: dict[str, np.ndarray]
    plan: PruningPlan = field(default_factory=PruningPlan)
    selectors: list[dict[str, np.ndarray]] = field(default_factory=list)
    """One dict per selector (key names of the token-selector golden model, no prefix)."""
    meta: dict = field(default_factory=dict)
    """Provenance (how the weights were produced), free-form JSON-able."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Backbone plus selectors in one flat timm-style dict (selectors under ``selectors.I.``)."""
        sd = dict(self.weights)
        for i, sel in enumerate(self.selectors):
            sd.update({f"selectors.{i}.{k}": v for k, v in sel.items()})
        return sd


def selector_shapes(cfg: ViTConfig) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of one token selector for this model (token-selector golden)."""
    return selector_param_shapes(cfg)


def expected_shapes(cfg: ViTConfig, plan: PruningPlan) -> dict[str, tuple[int, ...]]:
    shapes = cfg.state_dict_shapes()
    if plan.blocks:
        one = selector_shapes(cfg)
        for i in range(len(plan.blocks)):
            shapes.update({f"selectors.{i}.{k}": s for k, s in one.items()})
    return shapes


def from_state_dict(cfg: ViTConfig, state_dict, plan: PruningPlan | None = None, meta: dict | None = None) -> ViTModel:
    """Build a :class:`ViTModel` from a timm DeiT state dict (plus ``selectors.I.*`` keys if
    ``plan`` places selectors), checking every key and shape."""
    plan = plan or PruningPlan()
    plan.check(cfg)
    flat = check_state_dict(expected_shapes(cfg, plan), state_dict)
    weights = {k: flat[k] for k in cfg.state_dict_shapes()}
    selectors = []
    for i in range(len(plan.blocks)):
        p = f"selectors.{i}."
        selectors.append({k[len(p):]: v for k, v in flat.items() if k.startswith(p)})
    return ViTModel(cfg, weights, plan, selectors, dict(meta or {}))


def save_npz(model: ViTModel, path: str | Path) -> None:
    """Write a model as one compressed .npz: arrays under their state-dict names plus a JSON
    header (``__config__``, ``__plan__``, ``__meta__``)."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in model.state_dict().items()}
    arrays["__config__"] = np.array(model.cfg.to_json())
    arrays["__plan__"] = np.array(json.dumps({"blocks": list(model.plan.blocks),
                                              "keep_ratios": list(model.plan.keep_ratios)}))
    arrays["__meta__"] = np.array(json.dumps(model.meta, sort_keys=True))
    np.savez_compressed(path, **arrays)


def load_npz(path: str | Path | None = None) -> ViTModel:
    """Load a model written by :func:`save_npz` (default: the committed digits model)."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise ValueError(f"model file {path} does not exist")
    with np.load(path, allow_pickle=False) as z:
        for k in ("__config__", "__plan__"):
            if k not in z.files:
                raise ValueError(f"model file {path}: missing {k!r} (not written by save_npz?)")
        cfg = ViTConfig.from_dict(json.loads(str(z["__config__"])))
        plan_d = json.loads(str(z["__plan__"]))
        plan = PruningPlan(tuple(plan_d["blocks"]), tuple(plan_d["keep_ratios"]))
        meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
        sd = {k: z[k] for k in z.files if not k.startswith("__")}
    return from_state_dict(cfg, sd, plan, meta)
