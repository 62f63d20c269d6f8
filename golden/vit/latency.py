"""Latency model of a ViT forward pass on the GEMM engine, and MAC counts with pruning.

Every GEMM of the model (patch embedding, per block qkv / per-head q@k^T and attn@v / proj /
fc1 / fc2, the head, and each token selector's GEMMs) is costed with the engine's exact cycle
model ``GemmConfig.estimate_cycles(m, k, n)`` (operands on chip), split into the row chunks the
engine runs it as (:func:`heatvit.golden.gemm.split_shape`, the rule the integer forward uses).  Nonlinear units run
alongside the GEMM stream and are not counted.  The training script's latency-aware plan search
and the accuracy bench use these numbers.
"""

from __future__ import annotations

from ...config import GemmConfig
from ..gemm import split_shape
from .config import PruningPlan, ViTConfig
from .selector import selector_gemm_shapes


def model_gemms(cfg: ViTConfig, tokens_per_block, selector_tokens=()) -> list[tuple[int, int, int]]:
    """All GEMM shapes of one forward pass: ``tokens_per_block[i]`` tokens enter block i and
    selector j sees ``selector_tokens[j]`` tokens (class token included)."""
    shapes = cfg.gemm_shapes(list(tokens_per_block))
    for n in selector_tokens:
        shapes += selector_gemm_shapes(cfg, n)
    return shapes


def macs(cfg: ViTConfig, tokens_per_block, selector_tokens=()) -> int:
    return sum(m * k * n for m, k, n in model_gemms(cfg, tokens_per_block, selector_tokens))


def cycles(gemm: GemmConfig, cfg: ViTConfig, tokens_per_block, selector_tokens=()) -> int:
    return sum(gemm.estimate_cycles(*piece) for shape in model_gemms(cfg, tokens_per_block, selector_tokens)
               for piece in split_shape(gemm, *shape))


def plan_tokens(cfg: ViTConfig, plan: PruningPlan) -> tuple[list[int], list[int]]:
    """(tokens entering each block, tokens entering each selector) if every selector keeps
    exactly its target ratio."""
    tokens = plan.planned_tokens(cfg)
    before = [cfg.num_tokens] + tokens[:-1]
    return tokens, [before[b] for b in plan.blocks]


def plan_cycles(gemm: GemmConfig, cfg: ViTConfig, plan: PruningPlan) -> int:
    """Engine cycles of one forward pass under ``plan`` (dense if the plan is empty)."""
    return cycles(gemm, cfg, *plan_tokens(cfg, plan))


def plan_macs(cfg: ViTConfig, plan: PruningPlan) -> int:
    return macs(cfg, *plan_tokens(cfg, plan))
