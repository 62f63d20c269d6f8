"""Model configuration of the golden ViT: shapes, timm DeiT key names, and MAC counts.

A :class:`ViTConfig` describes a DeiT-style ViT (no distillation token) the way timm builds it:
``patch_embed.proj`` is a stride-``patch_size`` convolution, a class token and a learned position
embedding are added, ``depth`` pre-norm encoder blocks follow, then the final ``norm`` and the
``head`` on the class token.  LayerNorm uses ``eps`` (timm's ViT: 1e-6) and GELU is the exact
erf form.  :class:`PruningPlan` says before which blocks a token selector runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from ...validate import check_int as _check_int
from ...validate import section_from_dict as _section_from_dict


@dataclass(frozen=True)
class ViTConfig:
    """Shapes of a DeiT-style ViT.  Every field is checked; derived sizes are properties."""

    image_size: int = 32
    """Input height = width in pixels (images must be exactly this size: no resizing)."""
    patch_size: int = 4
    """Square patch side; ``image_size`` must be a multiple of it."""
    in_chans: int = 1
    """Input channels."""
    dim: int = 48
    """Embedding width D."""
    depth: int = 6
    """Number of encoder blocks L."""
    heads: int = 3
    """Attention heads H; ``dim`` must be a multiple of it."""
    mlp_ratio: float = 2.0
    """MLP hidden width = int(dim * mlp_ratio) (timm's rule)."""
    num_classes: int = 10
    """Classifier outputs."""
    eps: float = 1e-6
    """LayerNorm epsilon (timm's ViT uses 1e-6)."""

    def __post_init__(self):
        own = "ViTConfig"
        for f in dataclasses.fields(self):                  # NumPy scalars -> Python numbers
            v = getattr(self, f.name)
            if isinstance(v, (np.integer, np.floating)) and not isinstance(v, np.bool_):
                object.__setattr__(self, f.name, v.item())
        _check_int(own, "image_size", self.image_size, 1, 4096)
        _check_int(own, "patch_size", self.patch_size, 1, self.image_size)
        if self.image_size % self.patch_size:
            raise ValueError(f"{own}.patch_size = {self.patch_size} does not divide image_size = "
                             f"{self.image_size}; allowed: divisors of image_size")
        _check_int(own, "in_chans", self.in_chans, 1, 64)
        _check_int(own, "dim", self.dim, 1, 8192)
        _check_int(own, "depth", self.depth, 1, 256)
        _check_int(own, "heads", self.heads, 1, self.dim)
        if self.dim % self.heads:
            raise ValueError(f"{own}.heads = {self.heads} does not divide dim = {self.dim}; "
                             f"allowed: divisors of dim")
        if not (isinstance(self.mlp_ratio, (int, float)) and 0.0 < float(self.mlp_ratio) <= 64.0):
            raise ValueError(f"{own}.mlp_ratio = {self.mlp_ratio!r} is out of range; allowed (0, 64]")
        if self.hidden < 1:
            raise ValueError(f"{own}.mlp_ratio = {self.mlp_ratio} gives an empty MLP; allowed "
                             f">= {1 / self.dim}")
        _check_int(own, "num_classes", self.num_classes, 1, 100000)
        if not (isinstance(self.eps, (int, float)) and 0.0 < float(self.eps) < 1.0):
            raise ValueError(f"{own}.eps = {self.eps!r} is out of range; allowed (0, 1)")

    # -- derived sizes -----------------------------------------------------------------------
    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    @property
    def num_tokens(self) -> int:
        """Patches plus the class token."""
        return self.num_patches + 1

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @property
    def patch_k(self) -> int:
        """Reduction length of the patch-embedding GEMM (C * P * P)."""
        return self.in_chans * self.patch_size * self.patch_size

    # -- timm key names ----------------------------------------------------------------------
    def state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every key of a timm DeiT state dict for this config, with its shape, in timm order."""
        d, hd = self.dim, self.hidden
        shapes: dict[str, tuple[int, ...]] = {
            "cls_token": (1, 1, d),
            "pos_embed": (1, self.num_tokens, d),
            "patch_embed.proj.weight": (d, self.in_chans, self.patch_size, self.patch_size),
            "patch_embed.proj.bias": (d,),
        }
        for i in range(self.depth):
            p = f"blocks.{i}."
            shapes.update({
                p + "norm1.weight": (d,), p + "norm1.bias": (d,),
                p + "attn.qkv.weight": (3 * d, d), p + "attn.qkv.bias": (3 * d,),
                p + "attn.proj.weight": (d, d), p + "attn.proj.bias": (d,),
                p + "norm2.weight": (d,), p + "norm2.bias": (d,),
                p + "mlp.fc1.weight": (hd, d), p + "mlp.fc1.bias": (hd,),
                p + "mlp.fc2.weight": (d, hd), p + "mlp.fc2.bias": (d,),
            })
        shapes.update({"norm.weight": (d,), "norm.bias": (d,),
                       "head.weight": (self.num_classes, d), "head.bias": (self.num_classes,)})
        return shapes

    # -- MAC counts --------------------------------------------------------------------------
    def block_macs(self, n: int) -> int:
        """Multiply-accumulates of one encoder block on ``n`` tokens (all GEMMs)."""
        d, hd = self.dim, self.hidden
        return (n * d * 3 * d            # qkv
                + 2 * n * n * d          # q @ k^T and attn @ v, all heads
                + n * d * d              # proj
                + 2 * n * d * hd)        # fc1, fc2

    def embed_macs(self) -> int:
        return self.num_patches * self.patch_k * self.dim

    def head_macs(self) -> int:
        return self.dim * self.num_classes

    def dense_macs(self) -> int:
        """MACs of one dense forward pass (patch embedding, blocks, head)."""
        return self.embed_macs() + self.depth * self.block_macs(self.num_tokens) + self.head_macs()

    def gemm_shapes(self, tokens_per_block: list[int] | tuple[int, ...] | None = None) -> list[tuple[int, int, int]]:
        """Every GEMM ``(m, k, n)`` of a forward pass, with ``tokens_per_block[i]`` tokens in block i.

        Attention is one GEMM per head for ``q @ k^T`` (m=n_tok, k=head_dim, n=n_tok) and for
        ``attn @ v`` (m=n_tok, k=n_tok, n=head_dim).  The sum of ``m*k*n`` is the MAC count.
        """
        if tokens_per_block is None:
            tokens_per_block = [self.num_tokens] * self.depth
        if len(tokens_per_block) != self.depth:
            raise ValueError(f"tokens_per_block has {len(tokens_per_block)} entries; allowed "
                             f"exactly depth = {self.depth}")
        d, hd, dh = self.dim, self.hidden, self.head_dim
        shapes = [(self.num_patches, self.patch_k, d)]
        for n in tokens_per_block:
            shapes.append((n, d, 3 * d))
            shapes += [(n, dh, n), (n, n, dh)] * self.heads
            shapes += [(n, d, d), (n, d, hd), (n, hd, d)]
        shapes.append((1, d, self.num_classes))
        return shapes

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        return _section_from_dict(cls, d)


@dataclass(frozen=True)
class PruningPlan:
    """Token selectors: one runs before each block in ``blocks`` (zero-based, increasing).

    ``keep_ratios[i]`` is the training target of the fraction of the *original* patch tokens
    still kept after selector i (cumulative, as SPViT's 0.7, 0.49, 0.343), used by the training
    loss and the latency model; at inference the selector decides per token.
    """

    blocks: tuple[int, ...] = ()
    keep_ratios: tuple[float, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "keep_ratios", tuple(float(r) for r in self.keep_ratios))
        if len(self.blocks) != len(self.keep_ratios):
            raise ValueError(f"PruningPlan: {len(self.blocks)} blocks but {len(self.keep_ratios)} "
                             f"keep_ratios; allowed: one keep ratio per selector block")
        if any(b2 <= b1 for b1, b2 in zip(self.blocks, self.blocks[1:])):
            raise ValueError(f"PruningPlan.blocks = {self.blocks} must be strictly increasing")
        if any(not 0.0 < r <= 1.0 for r in self.keep_ratios):
            raise ValueError(f"PruningPlan.keep_ratios = {self.keep_ratios}; allowed each in (0, 1]")
        if any(r2 > r1 for r1, r2 in zip(self.keep_ratios, self.keep_ratios[1:])):
            raise ValueError(f"PruningPlan.keep_ratios = {self.keep_ratios} must be non-increasing "
                             f"(they are cumulative)")

    def check(self, cfg: ViTConfig) -> None:
        for b in self.blocks:
            if not 1 <= b < cfg.depth:
                raise ValueError(f"PruningPlan.blocks has {b}; allowed [1, {cfg.depth - 1}] "
                                 f"(a selector runs before an encoder block, never before block 0)")

    def planned_tokens(self, cfg: ViTConfig) -> list[int]:
        """Tokens entering each block if every selector kept exactly its target ratio
        (class token + kept patches + one package token after the first selector)."""
        self.check(cfg)
        tokens, n = [], cfg.num_tokens
        for i in range(cfg.depth):
            if i in self.blocks:
                r = self.keep_ratios[self.blocks.index(i)]
                n = 1 + max(1, round(r * cfg.num_patches)) + 1
            tokens.append(n)
        return tokens
